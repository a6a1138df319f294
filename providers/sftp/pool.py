"""SSH connections of one site, shared by every transfer, within the server's limits.

OpenSSH's per-connection process does the encryption for every channel of that
connection, and ``MaxSessions`` (10 by default) caps the channels one connection may
open. So the pool keeps several connections (``sftp_max_connections``) and hands out
SFTP channels (one per file being moved: each is its own sftp-server on the far end)
spread over them; exec channels for ``sha256sum`` borrow a free slot. Channels go back
to the pool after each file, so a thousand small files cost a handful of logins rather
than a thousand (OpenPype opened a connection per file).

A connection that drops (server restart, network cut) is forgotten when asyncssh
notices, and the next request opens a new one; a server that refuses a channel below
the configured limit teaches the pool its real ``MaxSessions``.

Everything here runs on the provider's event loop thread, so it needs no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from app.errors import PermanentError, TransientError
from providers.sftp.errors import (
    auth_error,
    host_key_error,
    is_connection_error,
    sftp_server_exited_error,
    subsystem_refused_error,
    unreachable_error,
)
from providers.sftp.options import SftpOptions

__all__ = ["Channel", "SessionPool"]

_log = logging.getLogger(__name__)

#: AES-GCM first: with AES-NI it moved about 1.6x the bytes of asyncssh's default
#: chacha20 on loopback (providers-on-loopback §2.2); all of these are strong.
ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
#: Busy channels a connection carries before the pool prefers opening another
#: connection (while under ``sftp_max_connections``): spreads the server-side
#: encryption over several processes without a login per file.
SPREAD_AT = 2
#: SFTP channels in a row that may close before the SFTP handshake while their connection
#: stays up before the server's SFTP program is judged broken (the channel-open budget).
_EARLY_EXITS = 3
#: The pause after such a close: a connection that is going down (a server restart) has
#: shown it by then, so its channels are not mistaken for a broken SFTP program.
_EARLY_EXIT_PAUSE_S = 0.05
#: How often a refused open is tried again while the server frees a closed channel's
#: slot (tens of milliseconds on an idle server, longer on a busy one).
_SLOT_POLL_S = 0.05


@dataclass(eq=False)
class _Connection:
    ssh: Any
    number: int
    limit: int
    idle: list[Any] = field(default_factory=list)
    #: Channels open or being opened on this connection (busy + idle SFTP + exec).
    sessions: int = 0
    #: Channels being opened (counted in ``sessions`` too), not yet confirmed.
    opening: int = 0
    #: Channels closed whose close is not yet confirmed (counted in ``sessions`` too):
    #: the server may or may not have freed their slots.
    closing: int = 0
    #: Commands running (counted in ``sessions`` too): each frees its slot on the server
    #: as it ends, which this side counts a moment later, so a refusal meanwhile does
    #: not tell the limit either.
    commands: int = 0
    busy: int = 0
    alive: bool = True
    #: The server has accepted a channel here: a later refusal with nothing else open or
    #: opening is a closed channel's slot it has not freed yet, not a server that refuses
    #: channels.
    served: bool = False


@dataclass(eq=False)
class Channel:
    """A leased SFTP channel; give it back with :meth:`SessionPool.release`."""

    conn: _Connection
    sftp: Any


class SessionPool:
    """Connections and channels of one site (see the module docstring)."""

    def __init__(self, site: str, options: SftpOptions, client_key: Any | None) -> None:
        self._site = site
        self._options = options
        self._client_key = client_key
        self._conns: list[_Connection] = []
        self._connecting = 0
        self._closed = False
        self._wakeup: asyncio.Event | None = None
        self._watchers: set[asyncio.Task] = set()
        #: Logins made so far (tests and the benchmark read it).
        self.connects = 0

    # -- waiting ------------------------------------------------------------------------

    def _notify(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    async def _wait(self, deadline: float, what: str) -> None:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TransientError(
                f"all SFTP channels to {self._options.host} (site '{self._site}') stayed busy for "
                f"{self._options.stall_timeout_s:g} s while waiting for {what}; will retry")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), remaining)

    # -- connections --------------------------------------------------------------------

    def _live(self) -> list[_Connection]:
        return [conn for conn in self._conns if conn.alive]

    def _can_connect(self) -> bool:
        return len(self._live()) + self._connecting < self._options.max_connections

    def _connect_kwargs(self) -> dict[str, Any]:
        options = self._options
        auth = []
        if self._client_key is not None:
            auth.append("publickey")
        if options.password:
            auth += ["keyboard-interactive", "password"]
        return {
            "port": options.port,
            "username": options.user,
            "password": options.password or None,
            "client_keys": [self._client_key] if self._client_key is not None else None,
            "known_hosts": options.known_hosts,
            "preferred_auth": auth,
            "agent_path": None,
            "config": None,
            "encryption_algs": list(ENCRYPTION_ALGS),
            "compression_algs": None,
            "connect_timeout": options.connect_timeout_s,
            "login_timeout": options.connect_timeout_s,
            "keepalive_interval": options.keepalive_s,
            "keepalive_count_max": 3,
        }

    async def connect_once(self) -> Any:
        """One login, classified: PermanentError for a wrong key/password or host key,
        TransientError when the server cannot be reached."""
        options = self._options
        try:
            return await asyncio.wait_for(
                asyncssh.connect(options.host, **self._connect_kwargs()),
                options.connect_timeout_s + 5)
        except asyncssh.HostKeyNotVerifiable:
            raise await self._host_key_problem() from None
        except asyncssh.PermissionDenied as exc:
            raise auth_error(self._site, options, exc) from None
        except (OSError, TimeoutError, asyncssh.Error, EOFError) as exc:
            raise unreachable_error(self._site, options, exc) from None

    async def _host_key_problem(self) -> PermanentError:
        """Tell an unknown key from a changed one, and show the key the server offers."""
        options = self._options
        known = False
        with contextlib.suppress(Exception):
            entries = asyncssh.read_known_hosts(options.known_hosts).match(
                options.host, options.host, options.port)
            known = bool(entries[0] or entries[1] or entries[3] or entries[5])
        offered = None
        with contextlib.suppress(Exception):
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(options.host, options.port), options.connect_timeout_s)
            if key is not None:
                offered = f"a {key.get_algorithm()} key {key.get_fingerprint('sha256')}"
        return host_key_error(self._site, options, known, offered)

    async def _connect(self) -> _Connection:
        self._connecting += 1
        try:
            ssh = await self.connect_once()
        finally:
            self._connecting -= 1
            self._notify()
        self.connects += 1
        conn = _Connection(ssh=ssh, number=self.connects, limit=self._options.max_sessions)
        if self._closed:
            ssh.close()
            raise TransientError(f"site '{self._site}' is shutting down")
        self._conns.append(conn)
        watcher = asyncio.ensure_future(self._watch(conn))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        _log.debug("sftp %s: connection %d open", self._site, conn.number)
        return conn

    async def _watch(self, conn: _Connection) -> None:
        with contextlib.suppress(Exception):
            await conn.ssh.wait_closed()
        self._forget(conn)

    def _forget(self, conn: _Connection) -> None:
        if not conn.alive:
            return
        conn.alive = False
        with contextlib.suppress(ValueError):
            self._conns.remove(conn)
        for sftp in conn.idle:
            with contextlib.suppress(Exception):
                sftp.exit()
        conn.sessions -= len(conn.idle)
        conn.idle.clear()
        _log.info("sftp %s: connection %d closed", self._site, conn.number)
        self._notify()

    def kill(self, conn: _Connection) -> None:
        """Drop a connection that stalled: every channel on it is as stuck."""
        with contextlib.suppress(Exception):
            conn.ssh.abort()
        self._forget(conn)

    def _pick(self) -> _Connection | None:
        """The connection to open the next channel on, or None to open a connection."""
        free = [conn for conn in self._live() if conn.sessions < conn.limit]
        if not free:
            return None
        best = min(free, key=lambda conn: conn.sessions)
        if best.busy >= SPREAD_AT and self._can_connect():
            return None
        return best

    # -- SFTP channels ------------------------------------------------------------------

    async def acquire(self) -> Channel:
        """An SFTP channel: an idle one, a new one on a connection with room, or one on a
        new connection; waits (up to the stall timeout) when all are busy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._options.stall_timeout_s
        failures = refusals = early_exits = 0
        while True:
            if self._closed:
                raise TransientError(f"site '{self._site}' is shutting down")
            for conn in self._live():
                if conn.idle:
                    conn.busy += 1
                    return Channel(conn, conn.idle.pop())
            conn = self._pick()
            if conn is None and self._can_connect() and self._connecting == 0:
                # One login at a time once one connection is up: a burst of requests
                # waits for it instead of opening every allowed connection at once.
                conn = await self._connect()
            if conn is None:
                await self._wait(deadline, "an SFTP channel")
                continue
            conn.sessions += 1
            conn.busy += 1
            conn.opening += 1
            try:
                sftp = await asyncio.wait_for(conn.ssh.start_sftp_client(),
                                              self._options.stall_timeout_s)
            except BaseException as exc:
                conn.sessions -= 1
                conn.busy -= 1
                conn.opening -= 1
                self._notify()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                if isinstance(exc, asyncssh.ChannelOpenError) and conn.alive:
                    refusals = await self._after_refusal(conn, exc, 0, refusals, deadline,
                                                         "an SFTP channel")
                    continue
                if isinstance(exc, asyncssh.SFTPConnectionLost):
                    early_exits = await self._after_early_exit(conn, early_exits)
                    if early_exits:
                        continue
                else:
                    early_exits = 0
                failures += 1
                self._channel_failed(conn, exc, failures)
                continue
            conn.opening -= 1
            conn.served = True
            self._notify()  # refusals waiting for the opens in flight to settle
            return Channel(conn, sftp)

    async def _after_refusal(self, conn: _Connection, exc: asyncssh.ChannelOpenError, own: int,
                             refusals: int, deadline: float, what: str) -> int:
        """Learn from a refused channel on ``conn`` (``own``: the refused channel's slot
        when still counted in ``conn.sessions``) and pause as the cause asks; returns the
        refusals that count towards 'refuses every channel'."""
        if await self._refusal_explained(conn, exc, own, deadline, what):
            return refusals
        refusals += 1
        if refusals >= 3 and exc.code == asyncssh.OPEN_REQUEST_SESSION_FAILED:
            raise subsystem_refused_error(self._site, self._options, exc.reason) from None
        if refusals >= 3:
            raise PermanentError(
                f"the SFTP server {self._options.host} refuses every channel for site "
                f"'{self._site}' ({exc.reason}); check that the SFTP subsystem is enabled "
                "for this user") from None
        await asyncio.sleep(0.1 * refusals)
        return refusals

    async def _refusal_explained(self, conn: _Connection, exc: asyncssh.ChannelOpenError,
                                 own: int, deadline: float, what: str) -> bool:
        """True when a refused channel is explained by the server's session limit (then
        learnt) or by a slot it has not freed yet (then paused for, within the stall
        timeout); False when it may refuse channels at all.

        A refusal tells the limit only by the channels the server had accepted, and an
        SFTP channel counts as accepted once its subsystem has started, several round
        trips after the server took its slot (longer the busier the server). So opens
        still in flight on the connection are waited for first: judged while they were
        pending, the refusals behind one accepted open on a ``MaxSessions 1`` server read
        as 'refuses every channel' on a loaded machine."""
        if exc.code == asyncssh.OPEN_REQUEST_SESSION_FAILED:
            return False  # the channel opened, the subsystem or command was refused
        while conn.opening > 0 and conn.alive:
            await self._wait(deadline, what)
        if conn.closing > 0 or conn.commands > 0:
            # A close not yet confirmed here, or a command ending, may have freed its
            # slot on the server, which then took another channel: counting it would
            # learn a limit one too high (seen under load: 'allows 2' from a MaxSessions 1
            # server). Wait for them and try again; a refusal with none pending says the
            # limit.
            while (conn.closing > 0 or conn.commands > 0) and conn.alive:
                await self._wait(deadline, what)
            return True
        accepted = conn.sessions - own - conn.opening
        if accepted > 0:
            self._learn_limit(conn, accepted)
            return True
        if not conn.served:
            return False
        # Nothing open here, yet refused: OpenSSH frees a session's slot once the process
        # that served it has exited, which can come after it confirmed the channel's
        # close, and no message says when. Poll, within the stall timeout.
        if asyncio.get_running_loop().time() + _SLOT_POLL_S > deadline:
            raise TransientError(
                f"the SFTP server {self._options.host} kept refusing channels for site "
                f"'{self._site}' ({exc.reason}) for {self._options.stall_timeout_s:g} s while "
                f"waiting for {what}; will retry") from None
        await asyncio.sleep(_SLOT_POLL_S)
        return True

    async def _after_early_exit(self, conn: _Connection, early_exits: int) -> int:
        """An SFTP channel closed before the SFTP handshake. Returns the early exits in a
        row (0 when the connection went down with it: a drop, handled as any failure);
        raises PermanentError at :data:`_EARLY_EXITS` in a row.

        A connection that stays up while its channel closes before the first SFTP packet
        is a server whose SFTP program exited at once; once is a fluke, the same on fresh
        channels again and again is a ``Subsystem sftp`` line naming a missing program,
        which no retry fixes. A restart or a cut network takes the connection down too."""
        await asyncio.sleep(_EARLY_EXIT_PAUSE_S)
        if not conn.alive or conn.ssh.is_closed():
            return 0
        early_exits += 1
        _log.info("sftp %s: an SFTP channel on connection %d closed before the SFTP handshake "
                  "(%d in a row)", self._site, conn.number, early_exits)
        if early_exits >= _EARLY_EXITS:
            raise sftp_server_exited_error(self._site, self._options, early_exits) from None
        return early_exits

    def _channel_failed(self, conn: _Connection, exc: BaseException, failures: int) -> None:
        """Forget a connection that a failed channel open showed dead; raise on the
        third failure."""
        if isinstance(exc, TimeoutError):
            self.kill(conn)
        elif is_connection_error(exc):
            self._forget(conn)
        if failures >= 3:
            raise TransientError(
                f"cannot open an SFTP channel to {self._options.host} for site '{self._site}': "
                f"{getattr(exc, 'reason', '') or exc or type(exc).__name__}; will retry") from None

    def _learn_limit(self, conn: _Connection, accepted: int) -> None:
        """A channel was refused with ``accepted`` open: the server's MaxSessions is lower
        than ours. Said once per value learnt (refusals of opens in flight repeat it)."""
        if accepted < conn.limit:
            conn.limit = accepted
            _log.warning("sftp %s: the server allows %d channels per connection; set "
                         "sites.%s.sftp_max_sessions to %d", self._site, accepted, self._site,
                         accepted)

    def release(self, channel: Channel, broken: bool = False) -> None:
        """Give a channel back; ``broken`` closes it (its connection may still serve)."""
        conn = channel.conn
        conn.busy -= 1
        if broken or not conn.alive or self._closed:
            self._close_channel(conn, channel.sftp)
        else:
            conn.idle.append(channel.sftp)
        self._notify()

    def _close_channel(self, conn: _Connection, sftp: Any) -> None:
        """Close an SFTP channel. Its slot stays counted until the server confirms the
        close: OpenSSH refuses a new channel on that slot until then, which on a server
        with few sessions per connection looked like a refusal of every channel."""
        with contextlib.suppress(Exception):
            sftp.exit()
        if not conn.alive:
            return
        if self._closed:
            conn.sessions -= 1
            return
        conn.closing += 1
        task = asyncio.ensure_future(self._slot_freed(conn, sftp))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _slot_freed(self, conn: _Connection, sftp: Any) -> None:
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sftp.wait_closed(), self._options.stall_timeout_s)
        finally:
            conn.closing -= 1
            if conn.alive:
                conn.sessions -= 1
            self._notify()

    # -- commands -------------------------------------------------------------------------

    async def run_command(self, command: str, timeout: float) -> Any:
        """Run a shell command on the server on a free channel slot; returns asyncssh's
        SSHCompletedProcess (exit_status, stdout, stderr)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._options.stall_timeout_s
        refused = 0
        while True:
            if self._closed:
                raise TransientError(f"site '{self._site}' is shutting down")
            live = self._live()
            free = [conn for conn in live if conn.sessions < conn.limit]
            conn = min(free, key=lambda c: c.sessions) if free else None
            if conn is None:
                spare = [c for c in live if c.idle]
                if spare:
                    # Close an idle SFTP channel for the command, and wait until the
                    # server has freed its slot before opening one there.
                    sftp = spare[0].idle.pop()
                    spare[0].closing += 1
                    try:
                        with contextlib.suppress(Exception):
                            sftp.exit()
                            await asyncio.wait_for(sftp.wait_closed(),
                                                   self._options.stall_timeout_s)
                    finally:
                        spare[0].closing -= 1
                        if spare[0].alive:
                            spare[0].sessions -= 1
                        self._notify()
                    continue
                if self._can_connect():
                    conn = await self._connect()
            if conn is None:
                await self._wait(deadline, "a channel for a command")
                continue
            conn.sessions += 1
            counted = True
            # Opening until the server accepts the channel: counted as accepted before
            # that, a refusal of an SFTP channel meanwhile read this open as a channel the
            # server holds (seen under load: 'allows 2' from a MaxSessions 1 server).
            conn.opening += 1
            try:
                try:
                    process = await conn.ssh.create_process(
                        command, stdin=asyncssh.DEVNULL, encoding="utf-8", errors="replace")
                finally:
                    conn.opening -= 1
                    self._notify()  # refusals waiting for the opens in flight to settle
                conn.served = True
                conn.commands += 1
                try:
                    return await process.wait(check=False, timeout=timeout)
                finally:
                    conn.commands -= 1
            except asyncssh.ChannelOpenError as exc:
                # Refused: this open holds no slot. Uncounted before the refusal is judged,
                # which may wait: other refusals judged meanwhile must not count it either.
                counted = False
                if conn.alive:
                    conn.sessions -= 1
                if await self._refusal_explained(conn, exc, 0, deadline, "a channel for a command"):
                    continue
                refused += 1
                if refused >= 3:
                    raise
            finally:
                if counted and conn.alive:
                    conn.sessions -= 1
                self._notify()
            await asyncio.sleep(0.1 * refused)

    # -- shutdown -------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        return len(self._live())

    async def close(self) -> None:
        self._closed = True
        conns, self._conns = list(self._conns), []
        for conn in conns:
            conn.alive = False
            with contextlib.suppress(Exception):
                conn.ssh.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ssh.wait_closed(), 2)
        for watcher in list(self._watchers):
            watcher.cancel()
        self._notify()
