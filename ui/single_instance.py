"""One tray per user and configuration: a second launch shows the first one's window.

A lock file decides who is first (QLockFile notices a lock left by a crashed process and
takes it over), so two launches at the same moment cannot both win. The first instance
listens on a local socket; a later one connects, sends ``show``, and exits 0.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

__all__ = ["SingleInstance", "server_name"]

_log = logging.getLogger(__name__)
_SHOW = b"show\n"


def server_name(state_dir: Path) -> str:
    """A socket name per user and state folder, short enough for every platform."""
    user = os.environ.get("USER") or os.environ.get("USERNAME") or "user"
    digest = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return f"sitesync-{user}-{digest}"


class SingleInstance(QObject):
    """``acquire()`` True: we are the first (``show_requested`` fires when another
    launch asks). False: another instance runs and was asked to show itself."""

    show_requested = Signal()

    def __init__(self, state_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = server_name(state_dir)
        self._lock = QLockFile(str(state_dir / "tray.lock"))
        self._lock.setStaleLockTime(0)  # only a dead owner's lock is stale, never by age
        self._server: QLocalServer | None = None
        self._clients: list[QLocalSocket] = []

    def acquire(self, wait_ms: int = 3000) -> bool:
        if self._lock.tryLock(100):
            QLocalServer.removeServer(self.name)  # a socket file left by a crash
            self._server = QLocalServer(self)
            self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
            self._server.newConnection.connect(self._on_connection)
            if not self._server.listen(self.name):
                _log.warning("cannot listen on %s: %s", self.name, self._server.errorString())
            return True
        self._ask_primary_to_show(wait_ms)
        return False

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._lock.unlock()

    def _ask_primary_to_show(self, wait_ms: int) -> None:
        """The first instance may still be starting: retry the connection for a while."""
        socket = QLocalSocket()
        step = 200
        for _ in range(max(1, wait_ms // step)):
            socket.connectToServer(self.name)
            if socket.waitForConnected(step):
                socket.write(_SHOW)
                socket.waitForBytesWritten(1000)
                socket.disconnectFromServer()
                return
        _log.warning("another SiteSync tray holds the lock but does not answer on %s", self.name)

    @Slot()
    def _on_connection(self) -> None:
        assert self._server is not None
        while self._server.hasPendingConnections():
            client = self._server.nextPendingConnection()
            self._clients.append(client)
            client.readyRead.connect(self._on_ready_read)
            client.disconnected.connect(self._on_disconnected)
            if client.bytesAvailable():
                self._on_ready_read()

    @Slot()
    def _on_ready_read(self) -> None:
        for client in list(self._clients):
            if client.canReadLine() and bytes(client.readLine().data()).strip() == _SHOW.strip():
                self.show_requested.emit()

    @Slot()
    def _on_disconnected(self) -> None:
        gone = QLocalSocket.LocalSocketState.UnconnectedState
        for client in [c for c in self._clients if c.state() == gone]:
            self._clients.remove(client)
            client.deleteLater()
