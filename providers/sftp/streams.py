"""Pipelined, recoverable SFTP reads and writes of one file (run on the provider's loop).

SFTP is request/response: a file moves in blocks of at most the server's limit (255 KiB
for OpenSSH), and speed comes from keeping many block requests in flight. Both streams
keep a window of requests outstanding, so the engine's 4 MiB ``write``/``read`` calls
return as soon as there is room instead of after a full round trip per chunk.

Both streams survive a dropped connection (a killed session, a server restart): they
open a fresh channel and carry on from the last byte the server confirmed — the upload
keeps every block until the server has acknowledged it and everything before it, and
resends from that confirmed offset; the download re-opens the file and continues from
the next byte the engine has not received, after checking the file was not replaced
meanwhile. After ``RECOVERIES`` attempts the error goes to the engine, which retries
later and resumes from the partial file on the server.

A stream that makes no progress for the site's stall timeout is treated like a drop:
the connection is killed (every channel on it would be as stuck) and recovery starts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import stat as stat_mod
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncssh

from app.errors import PermanentError, SiteSyncError, TransientError
from providers.sftp.errors import classify, is_connection_error
from providers.sftp.options import SftpOptions
from providers.sftp.pool import Channel, SessionPool

__all__ = ["BLOCK_BYTES", "RECOVERIES", "Download", "Upload", "bounded", "hash_remote_file"]

_log = logging.getLogger(__name__)

#: Largest block per request; OpenSSH announces 261,120 bytes (limits@openssh.com) and
#: drops a session whose packet exceeds 256 KiB, so never more than the server says.
BLOCK_BYTES = 255 * 1024
#: Block requests in flight per stream (about 4 MiB, twice the SSH channel window).
WINDOW = 16
#: Reconnect attempts of one stream before the error goes to the engine, and the pause
#: before each (a restarting sshd needs a moment to listen again).
RECOVERIES = 3
_RECOVERY_DELAYS = (0.3, 1.0, 3.0)

Reopen = Callable[[Channel], Awaitable[Any]]
T = TypeVar("T")
# Files are opened with ``block_size=0``: each read/write is then exactly one SFTP request.
# (With a block size asyncssh splits a call into helper tasks of its own, which outlive
# a cancelled call and fail unobserved when the connection drops.)


async def bounded(awaitable: Awaitable[T], seconds: float) -> T:
    """``awaitable`` with a time limit (TimeoutError), without the extra task that
    ``asyncio.wait_for`` creates for every call: a small file makes a dozen requests."""
    async with asyncio.timeout(seconds):
        return await awaitable


class StallError(Exception):
    """No request of a stream finished within the stall timeout."""


def _block_size(sftp: Any, attr: str) -> int:
    limit = getattr(sftp.limits, attr, 0) or 0
    return min(BLOCK_BYTES, limit) if limit else 32 * 1024


class _Stream:
    """What uploads and downloads share: the channel, the window, stalls, recovery."""

    def __init__(self, pool: SessionPool, site: str, options: SftpOptions, path: str,
                 doing: str) -> None:
        self.pool = pool
        self.site = site
        self.options = options
        self.path = path
        self.doing = doing
        self.channel: Channel | None = None
        self.file: Any = None
        self.tasks: dict[asyncio.Task, int] = {}
        self.recoveries = 0

    def classify(self, exc: BaseException) -> SiteSyncError:
        if isinstance(exc, StallError):
            return TransientError(
                f"transfer of {self.path} on site '{self.site}' stalled: nothing moved for "
                f"{self.options.stall_timeout_s:g} s (sites.{self.site}.sftp_stall_timeout_s); "
                "will retry and resume")
        return classify(exc, self.site, self.options, self.doing, self.path)

    async def _next_done(self) -> set[asyncio.Task]:
        done, _ = await asyncio.wait(list(self.tasks), timeout=self.options.stall_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if not done:
            raise StallError()
        return done

    async def _drop_tasks(self) -> None:
        tasks = list(self.tasks)
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _close_file(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            with contextlib.suppress(Exception):
                await bounded(file.close(), min(5.0, self.options.stall_timeout_s))

    def _release(self, broken: bool) -> None:
        channel, self.channel = self.channel, None
        if channel is not None:
            self.pool.release(channel, broken=broken)

    async def _abandon(self, exc: BaseException) -> None:
        """Drop the channel after a connection error or a stall."""
        await self._drop_tasks()
        self.file = None
        channel, self.channel = self.channel, None
        if channel is not None:
            if isinstance(exc, StallError | TimeoutError):
                self.pool.kill(channel.conn)
            self.pool.release(channel, broken=True)

    async def recover(self, exc: BaseException, reopen: Reopen) -> None:
        """After a connection error: reconnect and ``reopen`` the file on a new channel,
        or raise the classified error once the attempts are spent."""
        await self._abandon(exc)
        last: BaseException = exc
        while self.recoveries < RECOVERIES:
            delay = _RECOVERY_DELAYS[min(self.recoveries, len(_RECOVERY_DELAYS) - 1)]
            self.recoveries += 1
            _log.info("sftp %s: %s while %s %s; reconnecting (attempt %d of %d)", self.site,
                      type(last).__name__, self.doing, self.path, self.recoveries, RECOVERIES)
            await asyncio.sleep(delay)
            try:
                self.channel = await self.pool.acquire()
                await reopen(self.channel)
                return
            except TransientError as error:  # server still unreachable: try again
                last = error
                self._release(broken=True)
            except BaseException as error:
                if not is_connection_error(error) and not isinstance(error, StallError):
                    self._release(broken=False)
                    raise
                last = error
                await self._abandon(error)
        raise self.classify(last) from last


class Upload(_Stream):
    """Writes one part file; see the module docstring.

    ``confirmed`` is the end of the prefix the server has acknowledged without gaps;
    ``blocks`` holds every block above it (in flight, or acknowledged out of order), so
    after a reconnect everything from ``confirmed`` on can be sent again.
    """

    def __init__(self, pool: SessionPool, site: str, options: SftpOptions, part: str) -> None:
        super().__init__(pool, site, options, part, "writing")
        self.part = part
        self.pos = 0
        self.confirmed = 0
        self.blocks: dict[int, bytes] = {}
        self.acked: set[int] = set()
        self.block = BLOCK_BYTES
        self.disk_full_check: Callable[[BaseException], Awaitable[SiteSyncError]] | None = None

    async def create(self, channel: Channel) -> None:
        """Create the part, failing if anything (a file, a symlink) has that name."""
        self.channel = channel
        flags = asyncssh.FXF_READ | asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_EXCL
        self.file = await bounded(
            channel.sftp.open(self.part, flags, encoding=None, block_size=0),
            self.options.stall_timeout_s)
        self.block = _block_size(channel.sftp, "max_write_len")
        self.pos = self.confirmed = 0

    async def open(self, channel: Channel, offset: int, existing: int) -> None:
        """Open the part on ``channel`` (already leased), keeping ``offset`` of the
        ``existing`` bytes a part file already holds."""
        self.channel = channel
        flags = asyncssh.FXF_READ | asyncssh.FXF_WRITE | asyncssh.FXF_CREAT
        if offset == 0:
            flags |= asyncssh.FXF_TRUNC
        self.file = await bounded(
            channel.sftp.open(self.part, flags, encoding=None, block_size=0),
            self.options.stall_timeout_s)
        if offset == 0 and existing:
            # OpenSSH honours FXF_TRUNC, but say it explicitly for servers that ignore
            # it: a stale tail must not survive a fresh start.
            await bounded(self.file.truncate(0), self.options.stall_timeout_s)
        self.block = _block_size(channel.sftp, "max_write_len")
        self.pos = self.confirmed = offset

    async def _reopen(self, channel: Channel) -> None:
        try:
            attrs = await bounded(channel.sftp.lstat(self.part),
                                           self.options.stall_timeout_s)
            kept = attrs.size or 0
        except asyncssh.SFTPNoSuchFile:
            kept = 0
        if kept < self.confirmed:
            raise TransientError(
                f"the SFTP server kept only {kept} of the {self.confirmed} bytes it had "
                f"confirmed for {self.part} (site '{self.site}'); will retry from there")
        self.file = await bounded(
            channel.sftp.open(self.part, asyncssh.FXF_READ | asyncssh.FXF_WRITE, encoding=None, block_size=0),
            self.options.stall_timeout_s)
        self.acked.clear()
        for offset in sorted(self.blocks):
            self._send(offset, self.blocks[offset])
        _log.info("sftp %s: resumed %s at confirmed offset %d", self.site, self.part, self.confirmed)

    def _send(self, offset: int, data: bytes) -> None:
        task = asyncio.ensure_future(self.file.write(data, offset))
        self.tasks[task] = offset

    def _acknowledge(self, offset: int) -> None:
        self.acked.add(offset)
        while self.confirmed in self.acked:
            self.acked.discard(self.confirmed)
            self.confirmed += len(self.blocks.pop(self.confirmed))

    async def _settle(self) -> None:
        """Wait for at least one request; acknowledge, recover or raise."""
        try:
            done = await self._next_done()
        except StallError as exc:
            await self.recover(exc, self._reopen)
            return
        failure: BaseException | None = None
        for task in done:
            offset = self.tasks.pop(task)
            exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
            if exc is None:
                self._acknowledge(offset)
            elif failure is None:
                failure = exc
        if failure is None:
            return
        if is_connection_error(failure):
            await self.recover(failure, self._reopen)
            return
        await self._drop_tasks()
        if isinstance(failure, asyncssh.SFTPFailure) and self.disk_full_check is not None:
            raise await self.disk_full_check(failure) from failure
        raise self.classify(failure) from failure

    async def write(self, data: bytes) -> None:
        for start in range(0, len(data), self.block):
            while len(self.tasks) >= WINDOW:
                await self._settle()
            block = data[start:start + self.block]
            self.blocks[self.pos] = block
            self._send(self.pos, block)
            self.pos += len(block)

    async def drain(self) -> None:
        while self.tasks:
            await self._settle()
        if self.blocks:  # every request finished, yet a gap: cannot happen, but never commit it
            raise TransientError(f"upload of {self.part} on site '{self.site}' has unconfirmed "
                                 "data; will retry")

    async def settle_quietly(self, timeout: float) -> bool:
        """For a pause: give requests in flight ``timeout`` seconds to finish, without
        reconnecting; True if they all did (the channel is then in a clean state)."""
        pending: set[asyncio.Task] = set(self.tasks)
        if pending:
            with contextlib.suppress(Exception):
                _, pending = await asyncio.wait(pending, timeout=timeout)
        await self._drop_tasks()
        return not pending


class Download(_Stream):
    """Reads one file in order from ``pos``; see the module docstring."""

    def __init__(self, pool: SessionPool, site: str, options: SftpOptions, path: str) -> None:
        super().__init__(pool, site, options, path, "reading")
        self.pos = 0
        self.next = 0
        self.size = 0
        self.eof: int | None = None
        self.ready: dict[int, bytes] = {}
        self.block = BLOCK_BYTES
        self.identity: tuple[int | None, int | None] = (None, None)
        self.is_link = False

    async def open(self, channel: Channel, offset: int, follow: bool = True) -> None:
        """Open ``path`` on ``channel`` (already leased). The open and a stat of the path
        go out together (one round trip); :meth:`changed` later compares the handle and
        the path with what the stat saw. With ``follow=False`` the stat is an lstat and
        :attr:`is_link` tells whether the path is a symlink (the caller checks it)."""
        self.channel = channel
        sftp = channel.sftp
        opened, attrs = await asyncio.gather(
            bounded(sftp.open(self.path, "rb", encoding=None, block_size=0),
                             self.options.stall_timeout_s),
            bounded((sftp.stat if follow else sftp.lstat)(self.path),
                             self.options.stall_timeout_s),
            return_exceptions=True)
        if isinstance(opened, BaseException) or isinstance(attrs, BaseException):
            if not isinstance(opened, BaseException):
                with contextlib.suppress(Exception):
                    await opened.close()
            raise opened if isinstance(opened, BaseException) else attrs
        self.file = opened
        if attrs.permissions is not None and stat_mod.S_ISLNK(attrs.permissions):
            self.is_link = True
            return
        if attrs.permissions is not None and not stat_mod.S_ISREG(attrs.permissions):
            await self._close_file()
            raise PermanentError(f"{self.path} on site '{self.site}' is not a regular file "
                                 "(a folder?); remove or rename it")
        self.size = attrs.size or 0
        self.identity = (attrs.size, attrs.mtime)
        self.block = _block_size(channel.sftp, "max_read_len")
        self.pos = self.next = offset

    async def _reopen(self, channel: Channel) -> None:
        file = await bounded(channel.sftp.open(self.path, "rb", encoding=None, block_size=0),
                                      self.options.stall_timeout_s)
        attrs = await bounded(file.stat(), self.options.stall_timeout_s)
        if (attrs.size, attrs.mtime) != self.identity:
            with contextlib.suppress(Exception):
                await file.close()
            raise TransientError(
                f"{self.path} on site '{self.site}' changed while it was being read (size or "
                "time differ after reconnecting); will retry from the start")
        self.file = file
        self.ready.clear()
        self.next = self.pos
        _log.info("sftp %s: resumed reading %s at %d", self.site, self.path, self.pos)

    def _fill(self) -> None:
        while (len(self.tasks) + len(self.ready) < WINDOW and self.eof is None
               and self.next <= self.size):
            self._request(self.next, self.block)
            self.next += self.block

    def _request(self, offset: int, length: int) -> None:
        task = asyncio.ensure_future(self.file.read(length, offset))
        self.tasks[task] = offset
        task.length = length  # type: ignore[attr-defined]

    async def _settle(self) -> None:
        try:
            done = await self._next_done()
        except StallError as exc:
            await self.recover(exc, self._reopen)
            return
        failure: BaseException | None = None
        for task in done:
            offset = self.tasks.pop(task)
            exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
            if exc is not None:
                if isinstance(exc, asyncssh.SFTPEOFError):
                    self.eof = offset if self.eof is None else min(self.eof, offset)
                elif failure is None:
                    failure = exc
                continue
            data = task.result()
            if not data:
                self.eof = offset if self.eof is None else min(self.eof, offset)
                continue
            self.ready[offset] = data
            end = offset + len(data)
            self.size = max(self.size, end)  # the file grew: keep reading (the engine decides)
            wanted = task.length  # type: ignore[attr-defined]
            if len(data) < wanted:
                if end == self.size:
                    # Short at the size seen when opening: the end (a file still growing
                    # is caught by changed(), which compares sizes after the last byte).
                    self.eof = end if self.eof is None else min(self.eof, end)
                else:  # a short read mid-file: ask for the rest of that block
                    self._request(end, wanted - len(data))
        if failure is None:
            return
        if is_connection_error(failure):
            await self.recover(failure, self._reopen)
            return
        await self._drop_tasks()
        raise self.classify(failure) from failure

    @property
    def at_end(self) -> bool:
        """Every byte up to the end of the file has been handed out."""
        return self.eof is not None and self.pos >= self.eof

    async def read(self, size: int) -> bytes:
        out: list[bytes] = []
        need = size
        while need > 0:
            if self.eof is not None and self.pos >= self.eof:
                break
            block = self.ready.pop(self.pos, None)
            if block is None:
                self._fill()
                if not self.tasks:
                    break
                await self._settle()
                continue
            piece = block[:need]
            if len(block) > need:
                self.ready[self.pos + need] = block[need:]
            out.append(piece)
            self.pos += len(piece)
            need -= len(piece)
        self._fill()
        return b"".join(out)

    async def changed(self) -> str | None:
        """After the last byte: whether the file was written to, or replaced, while it was
        read. SFTP v3 gives size and whole-second mtime only (no inode, no ctime), so a
        same-size rewrite within the same second goes unseen here; the recorded checksum
        catches it when there is one."""
        if self.file is None or self.channel is None:
            return None
        handle, path = await asyncio.gather(
            bounded(self.file.stat(), self.options.stall_timeout_s),
            bounded(self.channel.sftp.stat(self.path), self.options.stall_timeout_s),
            return_exceptions=True)
        for result in (handle, path):
            if isinstance(result, BaseException) and not isinstance(
                    result, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
                raise self.classify(result) from result
        if isinstance(handle, BaseException):
            raise self.classify(handle) from handle
        if (handle.size, handle.mtime) != self.identity:
            return "it was modified while being read"
        if isinstance(path, BaseException):
            return None  # deleted or renamed away: the open handle still gave one version
        if (path.size, path.mtime) != self.identity:
            return "it was replaced by another file while being read"
        return None

    async def finish(self) -> None:
        await self._drop_tasks()
        await self._close_file()


async def hash_remote_file(file: Any, size: int, stall_s: float,
                           algorithms: set[str]) -> tuple[int, dict[str, str]]:
    """Hash a file by reading it back over SFTP through an open handle (the "reread"
    verification): requests pipelined like a download, bytes hashed in order. Returns
    (bytes read, digests). Errors are raised as they come: the caller classifies them."""
    hashers = [hashlib.new(name) for name in sorted(algorithms)]
    block = BLOCK_BYTES
    queue: collections.deque[tuple[int, int, asyncio.Future]] = collections.deque()
    issued = 0
    total = 0

    def request(offset: int, length: int) -> asyncio.Future:
        return asyncio.ensure_future(file.read(length, offset))

    try:
        while True:
            while len(queue) < WINDOW and issued <= size:
                queue.append((issued, block, request(issued, block)))
                issued += block
            if not queue:
                break
            offset, length, task = queue.popleft()
            data = await bounded(task, stall_s)
            while True:
                if not data:
                    return total, _digests(hashers, sorted(algorithms))
                for hasher in hashers:
                    hasher.update(data)
                total += len(data)
                if len(data) >= length:
                    break
                if offset + len(data) == size:  # the size fstat just gave: done
                    return total, _digests(hashers, sorted(algorithms))
                offset, length = offset + len(data), length - len(data)
                data = await bounded(file.read(length, offset), stall_s)
            if not queue and issued > size:
                # The file is longer than it was: keep reading until the server says EOF.
                size = issued
    finally:
        for _, _, task in queue:
            task.cancel()
        await asyncio.gather(*(task for _, _, task in queue), return_exceptions=True)
    return total, _digests(hashers, sorted(algorithms))


def _digests(hashers: list[Any], names: list[str]) -> dict[str, str]:
    return {name: hasher.hexdigest() for name, hasher in zip(names, hashers, strict=True)}
