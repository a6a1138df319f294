"""Run blocking work (store, network, engine stop) off the GUI thread; results come back
to the GUI thread.

The GUI thread must never wait on a database or a server: a slow MongoDB would freeze the
tray menu. Callers hand a plain function to :meth:`Background.submit` with callbacks;
the function runs on its own daemon thread, and the callbacks run in the GUI thread.
Daemon threads (not a QThreadPool, whose destructor waits) so that quitting the app is
never held up by a query stuck on an unreachable server. The UI submits few tasks (a
status count every few seconds, a settings change), so a thread per task is cheap.

Delivery goes through a queued signal to a bound method of this GUI-thread QObject
(never a lambda: PySide6 would run a lambda in the worker thread, qt-tray.md pitfall 1).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot

__all__ = ["Background"]

_log = logging.getLogger(__name__)

Done = Callable[[Any], None]
Failed = Callable[[BaseException], None]


class Background(QObject):
    """Runs callables on daemon threads. Construct it in the GUI thread."""

    _finished = Signal(int, object, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tickets = itertools.count(1)
        self._lock = threading.Lock()
        self._callbacks: dict[int, tuple[Done | None, Failed | None]] = {}
        self._running: dict[int, threading.Thread] = {}
        self._closed = False
        self._finished.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    @property
    def busy(self) -> bool:
        """Whether some task has not delivered its result yet."""
        return bool(self._callbacks)

    def submit(self, fn: Callable[[], Any], on_done: Done | None = None,
               on_error: Failed | None = None, name: str = "sitesync-ui-task") -> None:
        """Run ``fn()`` on a new daemon thread; ``on_done(result)`` or ``on_error(exc)`` then
        runs in the GUI thread. An error without ``on_error`` is logged, never lost."""
        ticket = next(self._tickets)
        self._callbacks[ticket] = (on_done, on_error)
        thread = threading.Thread(target=self._run, args=(ticket, fn), name=name, daemon=True)
        with self._lock:
            self._running[ticket] = thread
        thread.start()

    def wait(self, timeout_s: float = 10.0) -> bool:
        """Block until every running task returned (tests and shutdown); True if they did.
        Their callbacks still need the event loop to run."""
        with self._lock:
            threads = list(self._running.values())
        for thread in threads:
            thread.join(timeout_s)
        return not any(t.is_alive() for t in threads)

    def _run(self, ticket: int, fn: Callable[[], Any]) -> None:
        try:
            result, error = fn(), None
        except BaseException as exc:  # delivered to the caller's on_error
            result, error = None, exc
        with self._lock:
            self._running.pop(ticket, None)
            # Under the lock: close() must not return while an emit is under way, or the
            # QObject could be deleted under it.
            if not self._closed:
                self._finished.emit(ticket, result, error)

    def close(self) -> None:
        """No more results are delivered (before the app and this object go away);
        tasks still running finish on their daemon threads unheard."""
        with self._lock:
            self._closed = True
        self._callbacks.clear()

    @Slot(int, object, object)
    def _deliver(self, ticket: int, result: object, error: object) -> None:
        on_done, on_error = self._callbacks.pop(ticket, (None, None))
        if error is not None:
            if on_error is not None:
                on_error(error)
            else:
                _log.error("background task failed: %s", error, exc_info=error)
        elif on_done is not None:
            on_done(result)
