"""sftp: a site on an SSH server (a studio's storage exposed to remote artists).

Compared with OpenPype's SFTP handler (pysftp: a new connection per file, completion
detected by polling the remote size, host-key checking switched off, every interrupted
transfer restarted from zero), this provider:

* checks the server's host key against a known_hosts file by default (an unknown or a
  changed key is an error that says how to fix it; opting out is an explicit setting);
* keeps a pool of connections per site and an SFTP channel per file being moved, within
  the server's ``MaxSessions`` (:mod:`providers.sftp.pool`);
* uploads to ``.<name>.sitesync-part`` beside the target, verifies size and content on
  the server (SHA-256 run over SSH, or a re-read: :mod:`providers.sftp.verify`), then
  renames atomically with ``posix-rename@openssh.com``;
* resumes: a dropped connection reconnects and continues from the confirmed offset
  inside the same transfer (:mod:`providers.sftp.streams`), and a transfer the engine
  retries later continues from the part file's size;
* times out connects and stalled transfers, and classifies errors like the other
  providers (:mod:`providers.sftp.errors`).

The provider interface is synchronous and shared by the engine's worker threads; the
SFTP work runs on one asyncio loop thread per site (:mod:`providers.sftp.loop`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import posixpath
import stat as stat_mod
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import asyncssh

from app.errors import (
    CancelledTransfer,
    ConfigError,
    PathEscapeError,
    PermanentError,
    SiteSyncError,
    TransientError,
)
from providers.base import Features, Provider, Reader, RemoteFile, Writer
from providers.local_drive import PART_SUFFIX, part_path
from providers.paths import is_inside, parse_roots, safe_join, select_root, split_rootless
from providers.sftp import shared
from providers.sftp.errors import classify, is_connection_error
from providers.sftp.loop import LoopClosedError
from providers.sftp.options import SftpOptions, parse_options
from providers.sftp.pool import Channel
from providers.sftp.streams import RECOVERIES, Download, Upload, bounded

__all__ = ["SftpProvider"]

_log = logging.getLogger(__name__)
T = TypeVar("T")

_MISSING = (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath)
#: Folders known to exist inside their root are not checked again for this long: a
#: thousand files in one folder then cost no extra round trips each.
_DIR_CACHE_S = 60.0
_DIR_CACHE_MAX = 10_000
#: How long a paused or interrupted upload waits for its requests in flight.
_SETTLE_S = 1.0
#: Writes smaller than this (together) are held back until the next call that moves data.
_HOLD_BYTES = 1 << 20


def _load_key(site: str, options: SftpOptions) -> Any | None:
    """Read (and decrypt) the private key now, so a wrong passphrase is a settings error
    the engine and `sitesync doctor` show before any file is tried."""
    if not options.key_path:
        return None
    try:
        return asyncssh.read_private_key(options.key_path, options.key_passphrase or None)
    except asyncssh.KeyEncryptionError as exc:
        if "bcrypt" in str(exc):
            raise ConfigError(f"site '{site}': the SSH key {options.key_path} is encrypted the "
                              "OpenSSH way, which needs the Python package 'bcrypt'",
                              key=f"sites.{site}.sftp_key",
                              fix="install it (pip install bcrypt)") from None
        raise ConfigError(f"site '{site}': wrong passphrase for the SSH key {options.key_path}",
                          key=f"sites.{site}.sftp_key_pass",
                          fix="set the key's passphrase") from None
    except asyncssh.KeyImportError as exc:
        if "passphrase" in str(exc).lower():
            raise ConfigError(f"site '{site}': the SSH key {options.key_path} is encrypted",
                              key=f"sites.{site}.sftp_key_pass",
                              fix="set its passphrase in sftp_key_pass") from None
        raise ConfigError(f"site '{site}': {options.key_path} is not a usable private key ({exc})",
                          key=f"sites.{site}.sftp_key",
                          fix="point it at an OpenSSH or PEM private key file") from None
    except OSError as exc:
        raise ConfigError(f"site '{site}': cannot read the SSH key {options.key_path} "
                          f"({exc.strerror or exc})", key=f"sites.{site}.sftp_key",
                          fix="make the file readable by the user running SiteSync") from None


async def _fsync(file: Any) -> None:
    with contextlib.suppress(asyncssh.SFTPOpUnsupported):  # a server without fsync@openssh.com
        await file.fsync()


class _Interruptible:
    """A stream whose blocked call another thread can cut short (a pause)."""

    def __init__(self, provider: SftpProvider) -> None:
        self._provider = provider
        self._future: concurrent.futures.Future | None = None
        self._interrupted = False

    def interrupt(self) -> None:
        self._interrupted = True
        future = self._future
        if future is not None:
            future.cancel()

    def _stream_call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._interrupted:
            coro.close()
            raise CancelledTransfer("transfer interrupted")
        future = self._provider._submit(coro)
        self._future = future
        if self._interrupted:
            future.cancel()
        try:
            return future.result(self._provider._stream_timeout)
        except concurrent.futures.CancelledError:
            raise CancelledTransfer("transfer interrupted") from None
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise self._provider._no_answer() from None
        finally:
            self._future = None


class SftpReader(_Interruptible, Reader):
    """The engine's view of a :class:`~providers.sftp.streams.Download`."""

    def __init__(self, provider: SftpProvider, download: Download) -> None:
        super().__init__(provider)
        self._download: Download | None = download
        self._at_end = False

    def read(self, size: int) -> bytes:
        download = self._download
        if download is None:
            raise ValueError("reader is closed")
        if self._at_end:  # known at the last call: no round trip to say b""
            return b""
        data = self._stream_call(download.read(size))
        self._at_end = download.at_end
        return data

    def changed(self) -> str | None:
        if self._download is None:
            return None
        return self._provider._run(self._download.changed())

    def close(self) -> None:
        """Returns at once: the handle is closed and the channel handed back on the loop
        (nothing the engine waits for)."""
        download, self._download = self._download, None
        if download is not None:
            with contextlib.suppress(SiteSyncError):
                self._provider._submit(self._provider._close_download(download))


class SftpWriter(_Interruptible, Writer):
    """The engine's view of an :class:`~providers.sftp.streams.Upload` into the part."""

    def __init__(self, provider: SftpProvider, upload: Upload, rootless: str, final: str) -> None:
        super().__init__(provider)
        self._upload: Upload | None = upload
        self._rootless = rootless
        self._final = final
        self.offset = upload.confirmed
        #: Small writes held back and sent with the next large one or with the commit: a
        #: small file then costs one call into the loop instead of two.
        self._held: list[bytes] = []
        self._held_bytes = 0

    def _open(self) -> Upload:
        if self._upload is None:
            raise ValueError(f"writer for {self._rootless} is already committed or aborted")
        return self._upload

    def _take_held(self, data: bytes = b"") -> bytes:
        held, self._held, self._held_bytes = self._held, [], 0
        return b"".join([*held, data]) if held else data

    def write(self, data: bytes) -> None:
        upload = self._open()
        if self._held_bytes + len(data) < _HOLD_BYTES:
            self._held.append(bytes(data))
            self._held_bytes += len(data)
            return
        self._stream_call(upload.write(self._take_held(data)))

    def commit(self, expected_size: int, expected_hashes: Mapping[str, str]) -> RemoteFile:
        upload = self._open()
        self._upload = None
        return self._stream_call(self._provider._commit(upload, self._rootless, self._final,
                                                        expected_size, expected_hashes,
                                                        self._take_held()))

    def abort(self, keep_partial: bool) -> None:
        upload, self._upload = self._upload, None
        self._take_held()  # never sent: the resume starts from what the server has
        if upload is not None:
            self._provider._run_quietly(self._provider._abort(upload, keep_partial))


class SftpProvider(Provider):
    """A site whose roots are folders on an SSH/SFTP server.

    Options (the site's settings): ``root`` (root name -> absolute path on the server),
    ``sftp_host``, ``sftp_port`` (22), ``sftp_user``, ``sftp_key`` (+ ``sftp_key_pass``)
    and/or ``sftp_pass``, ``known_hosts`` (default ``~/.ssh/known_hosts``),
    ``insecure_skip_host_key_check`` (false), ``sftp_verify`` (auto | hash | reread),
    ``sftp_connect_timeout_s`` (15), ``sftp_stall_timeout_s`` (60),
    ``sftp_max_connections`` (4), ``sftp_max_sessions`` (10). See docs/providers/sftp.md.
    """

    kind = "sftp"

    def __init__(self, site: str, config: Mapping[str, Any]) -> None:
        super().__init__(site, config)
        self.options = parse_options(site, config)
        self._roots = parse_roots(site, config, pathmod=posixpath)
        key = _load_key(site, self.options)
        #: Shared with the site's other providers (other projects): one pool per site.
        self._connections = shared.attach(site, self.options, key)
        self._loop = self._connections.loop
        self.pool = self._connections.pool
        self.verifier = self._connections.verifier
        self._closed = False
        if self.options.known_hosts is None:
            _log.warning("sftp %s: the host key of %s is NOT checked (insecure_skip_host_key_check): "
                         "anyone between this machine and the server can read and change the files",
                         site, self.options.host)
        self._real_roots: dict[str, str] = {}
        self._dirs: dict[str, float] = {}
        options = self.options
        #: Metadata calls: a connect plus a few requests, each bounded by the stall timeout.
        self._op_timeout = options.connect_timeout_s + 3 * options.stall_timeout_s + 10
        #: Stream calls may reconnect RECOVERIES times before giving up by themselves.
        per_try = options.connect_timeout_s + 2 * options.stall_timeout_s
        self._stream_timeout = (RECOVERIES + 1) * per_try + 10

    def __repr__(self) -> str:
        return f"SftpProvider(site={self.site!r}, {self.options.address}, roots={sorted(self._roots)})"

    @property
    def features(self) -> Features:  # type: ignore[override]
        return Features(resumable_upload=True, ranged_read=True, atomic_rename=True,
                        server_hashes=frozenset(), local=False,
                        verification=self.verifier.method)

    # -- calling the loop ---------------------------------------------------------------

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        try:
            return self._loop.submit(coro)
        except LoopClosedError:
            raise TransientError(f"site '{self.site}' was closed (settings changed or shutting "
                                 "down); will retry") from None

    def _no_answer(self) -> TransientError:
        return TransientError(f"the SFTP server {self.options.host}:{self.options.port} stopped "
                              f"answering (site '{self.site}'); will retry")

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = self._submit(coro)
        try:
            return future.result(timeout or self._op_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise self._no_answer() from None
        except concurrent.futures.CancelledError:
            raise CancelledTransfer("interrupted") from None
        except BaseException:
            future.cancel()
            raise

    def _run_quietly(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Clean-up work (abort, close) that must not raise over the real error."""
        try:
            self._run(coro, timeout=min(self._op_timeout, 30.0))
        except Exception as exc:
            _log.info("sftp %s: clean-up step failed: %s", self.site, exc)

    async def _t(self, awaitable: Awaitable[T]) -> T:
        """One request, bounded by the stall timeout."""
        return await bounded(awaitable, self.options.stall_timeout_s)

    async def _on_channel(self, op: Callable[[Channel], Awaitable[T]], doing: str, path: str,
                          keep: bool = False) -> T:
        """Run ``op`` on a pooled channel; a stale pooled connection gets one retry on a
        fresh one. ``keep``: the result owns the channel (a stream) on success."""
        for attempt in (1, 2):
            channel = await self.pool.acquire()
            try:
                result = await op(channel)
            except asyncio.CancelledError:
                self.pool.release(channel)
                raise
            except BaseException as exc:
                broken = is_connection_error(exc)
                if isinstance(exc, TimeoutError):
                    self.pool.kill(channel.conn)
                self.pool.release(channel, broken=broken)
                if broken and attempt == 1:
                    continue
                raise classify(exc, self.site, self.options, doing, path) from exc
            if not keep:
                self.pool.release(channel)
            return result
        raise AssertionError("unreachable")

    # -- paths --------------------------------------------------------------------------

    def _locate(self, rootless_path: str) -> tuple[str, str]:
        """(root path, server path) after the lexical checks (no network)."""
        name, parts = split_rootless(rootless_path)
        if parts[-1].endswith(PART_SUFFIX):
            raise PermanentError(
                f"file names ending in {PART_SUFFIX!r} are reserved for SiteSync's "
                f"temporary files: {rootless_path!r}; rename the published file")
        root = select_root(self.site, self._roots, name)
        return root, safe_join(root, parts, posixpath)

    def resolve(self, rootless_path: str) -> str:
        """The server path; like local_drive, also refuses one that symlinks on the
        server lead out of its root (one round trip)."""
        root, path = self._locate(rootless_path)

        async def op(channel: Channel) -> None:
            await self._check_inside(channel.sftp, root, path, rootless_path)

        self._run(self._on_channel(op, "checking", path))
        return path

    def _root_missing(self, root: str) -> PermanentError:
        return PermanentError(
            f"root folder of site '{self.site}' does not exist on the SFTP server "
            f"{self.options.host}: {root}; create it there or fix sites.{self.site}.root")

    async def _real_root(self, sftp: Any, root: str) -> str:
        """The root's real path on the server (an absent root is an error, never created)."""
        real = self._real_roots.get(root)
        if real is None:
            try:
                attrs = await self._t(sftp.stat(root))
            except _MISSING:
                raise self._root_missing(root) from None
            if attrs.permissions is not None and not stat_mod.S_ISDIR(attrs.permissions):
                raise PermanentError(f"root of site '{self.site}' is not a folder on the SFTP server: "
                                     f"{root}; fix sites.{self.site}.root")
            real = await self._t(sftp.realpath(root))
            self._real_roots[root] = real
        return real

    async def _check_inside(self, sftp: Any, root: str, path: str, rootless: str,
                            folder: bool = False) -> None:
        """Refuse a path that symlinks on the server lead out of the root: the real path
        of ``path`` (or of its deepest existing folder) must be inside the root's."""
        real_root = await self._real_root(sftp, root)
        probe = path
        while True:
            try:
                real = await self._t(sftp.realpath(probe))
                break
            except _MISSING:
                parent = posixpath.dirname(probe)
                if parent == probe or not is_inside(root, parent):
                    raise self._root_missing(root) from None
                probe = parent
        if not is_inside(real_root, real) or (real == real_root and probe == path and not folder):
            raise PathEscapeError(
                f"refusing {rootless!r} on site '{self.site}': a symlink on the server makes it "
                f"resolve to {real}, outside root {root}")
        if probe == path and real == posixpath.join(real_root, posixpath.relpath(path, root)):
            # No symlink anywhere below the root: its folder can be trusted for a while.
            self._trust(path if folder else posixpath.dirname(path))

    def _trust(self, folder: str) -> None:
        if len(self._dirs) > _DIR_CACHE_MAX:
            self._dirs.clear()
        self._dirs[folder] = time.monotonic()

    def _folder_trusted(self, folder: str) -> bool:
        """Whether ``folder`` was found inside its root within the last _DIR_CACHE_S."""
        checked = self._dirs.get(folder)
        return checked is not None and time.monotonic() - checked < _DIR_CACHE_S

    async def _ensure_folder(self, sftp: Any, root: str, folder: str, rootless: str) -> None:
        """Create the target's folder (below the root only) after checking that its
        deepest existing ancestor is inside the root."""
        if self._folder_trusted(folder):
            return
        missing = []
        probe = folder
        while True:
            try:
                attrs = await self._t(sftp.stat(probe))
            except _MISSING:
                if probe == root or not is_inside(root, probe):
                    self._real_roots.pop(root, None)
                    raise self._root_missing(root) from None
                missing.append(probe)
                probe = posixpath.dirname(probe)
                continue
            if attrs.permissions is not None and not stat_mod.S_ISDIR(attrs.permissions):
                raise PermanentError(
                    f"a file is in the way of folder {probe} on site '{self.site}' "
                    f"({self.options.host}); rename or remove it")
            break
        await self._check_inside(sftp, root, probe, rootless, folder=True)
        for path in reversed(missing):
            try:
                await self._t(sftp.mkdir(path))
            except (asyncssh.SFTPFailure, asyncssh.SFTPFileAlreadyExists) as exc:
                try:  # another worker made it meanwhile?
                    attrs = await self._t(sftp.stat(path))
                except _MISSING:
                    raise classify(exc, self.site, self.options, "writing", path) from exc
                if attrs.permissions is not None and not stat_mod.S_ISDIR(attrs.permissions):
                    raise PermanentError(f"a file is in the way of folder {path} on site "
                                         f"'{self.site}' ({self.options.host}); rename or remove it") from exc
        self._trust(folder)

    # -- operations -----------------------------------------------------------------------

    def stat(self, rootless_path: str) -> RemoteFile | None:
        root, path = self._locate(rootless_path)

        async def op(channel: Channel) -> RemoteFile | None:
            sftp = channel.sftp
            await self._real_root(sftp, root)
            attrs = None
            if self._folder_trusted(posixpath.dirname(path)):
                # The folder was checked lately: a plain file in it is inside the root,
                # so one lstat answers; only a symlink needs its target checked.
                try:
                    attrs = await self._t(sftp.lstat(path))
                except _MISSING:
                    return None
                if attrs.permissions is not None and stat_mod.S_ISLNK(attrs.permissions):
                    attrs = None
            if attrs is None:
                check = asyncio.ensure_future(self._check_inside(sftp, root, path, rootless_path))
                try:
                    attrs = await self._t(sftp.stat(path))
                except _MISSING:
                    attrs = None
                finally:
                    await check  # a refused path wins over whatever stat found
            if attrs is None:
                return None
            if attrs.permissions is not None and not stat_mod.S_ISREG(attrs.permissions):
                raise PermanentError(f"{path} on site '{self.site}' ({self.options.host}) is not a "
                                     "regular file (a folder?); remove or rename it")
            return RemoteFile(path=rootless_path, size=attrs.size or 0,
                              id=posixpath.basename(path), mtime=attrs.mtime)

        return self._run(self._on_channel(op, "checking", path))

    def open_reader(self, rootless_path: str, offset: int = 0) -> Reader:
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        root, path = self._locate(rootless_path)

        async def op(channel: Channel) -> Download:
            if self._folder_trusted(posixpath.dirname(path)):
                # A plain file in a folder checked lately is inside the root; only a
                # symlink needs the full check below.
                download = Download(self.pool, self.site, self.options, path)
                await download.open(channel, offset, follow=False)
                if not download.is_link:
                    return download
                await download._close_file()
            check = asyncio.ensure_future(self._check_inside(channel.sftp, root, path, rootless_path))
            download = Download(self.pool, self.site, self.options, path)
            try:
                await download.open(channel, offset)
            except BaseException:
                await asyncio.gather(check, return_exceptions=True)
                if check.done() and not check.cancelled() and check.exception() is not None:
                    raise check.exception() from None
                raise
            try:
                await check
            except BaseException:
                await download._close_file()
                raise
            return download

        download = self._run(self._on_channel(op, "reading", path, keep=True))
        return SftpReader(self, download)

    async def _close_download(self, download: Download) -> None:
        try:
            await download.finish()
        finally:
            download._release(broken=False)

    def open_writer(self, rootless_path: str, size: int, resume: bool = True) -> Writer:
        root, final = self._locate(rootless_path)
        part = part_path(final)

        async def op(channel: Channel) -> Upload:
            sftp = channel.sftp
            folder = posixpath.dirname(final)
            upload = Upload(self.pool, self.site, self.options, part)
            upload.disk_full_check = lambda exc: self._disk_full(sftp, part, size, exc)
            attrs = None
            for attempt in (1, 2):
                await self._ensure_folder(sftp, root, folder, rootless_path)
                # Usually there is no part yet: an exclusive create never follows a
                # symlink nor truncates anything, so it needs no lstat before it.
                try:
                    await upload.create(channel)
                    return upload
                except _MISSING:  # the (cached) folder was removed meanwhile
                    self._dirs.pop(folder, None)
                    if attempt == 2:
                        raise
                    continue
                except (asyncssh.SFTPFailure, asyncssh.SFTPFileAlreadyExists) as exc:
                    refused: BaseException = exc  # it exists (or the server said no)
                try:
                    attrs = await self._t(sftp.lstat(part))
                    break
                except _MISSING:
                    if attempt == 2:  # not there, yet the create failed: say why
                        raise refused from None
            kept = 0
            if attrs is not None and attrs.permissions is not None:
                if stat_mod.S_ISLNK(attrs.permissions):
                    raise PathEscapeError(f"refusing {rootless_path!r} on site '{self.site}': a "
                                          f"symlink is in the way at {part}; remove it")
                if not stat_mod.S_ISREG(attrs.permissions):
                    raise PermanentError(f"temporary name {part} on site '{self.site}' is not a "
                                         "regular file; remove it")
                kept = attrs.size or 0
            offset = kept if resume and kept <= size else 0
            await upload.open(channel, offset, kept)
            return upload

        upload = self._run(self._on_channel(op, "writing", part, keep=True))
        return SftpWriter(self, upload, rootless_path, final)

    async def _disk_full(self, sftp: Any, part: str, size: int, exc: BaseException) -> SiteSyncError:
        """OpenSSH reports ENOSPC (and EDQUOT) as a bare "Failure"; ask the file system."""
        folder = posixpath.dirname(part)
        free = None
        with contextlib.suppress(Exception):
            vfs = await self._t(sftp.statvfs(folder))
            free = vfs.bavail * (vfs.frsize or vfs.bsize)
        if free is not None and free < max(size, 1 << 20):
            return PermanentError(
                f"disk full on the SFTP server for site '{self.site}' ({self.options.host}: "
                f"{free} bytes free in {folder}, the file needs {size}); free space on the "
                "server, then retry")
        shown = f" ({free} bytes free)" if free is not None else ""
        return TransientError(
            f"the SFTP server refused to write {part} for site '{self.site}' "
            f"({getattr(exc, 'reason', '') or exc}){shown}: the disk may be full or the user "
            "over quota; will retry")

    async def _commit(self, upload: Upload, rootless: str, final: str, expected_size: int,
                      expected_hashes: Mapping[str, str], held: bytes = b"") -> RemoteFile:
        wanted = {name.lower(): value.lower() for name, value in expected_hashes.items()
                  if name.lower() in hashlib.algorithms_guaranteed}
        part = upload.part
        try:
            if held:
                await upload.write(held)
            while True:
                try:
                    await upload.drain()
                    assert upload.channel is not None and upload.file is not None
                    # fsync@openssh.com and the size, in one round trip.
                    _, attrs = await self._t(asyncio.gather(_fsync(upload.file), upload.file.stat()))
                    size = attrs.size or 0
                    problems = []
                    got: dict[str, str] = {}
                    if size != expected_size:
                        problems.append(f"size {size} bytes, expected {expected_size}")
                    else:
                        got = await self._verify(upload, size, set(wanted))
                        problems += [f"{name} {got[name]}, expected {value}"
                                     for name, value in sorted(wanted.items()) if got[name] != value]
                    break
                except SiteSyncError:
                    raise
                except BaseException as exc:
                    if is_connection_error(exc) and not isinstance(exc, asyncio.CancelledError):
                        await upload.recover(exc, upload._reopen)
                        continue
                    raise
            if problems:
                await self._discard(upload)
                raise TransientError(
                    f"verification failed on site '{self.site}' for {final} ({self.options.host}): "
                    f"{'; '.join(problems)}; the partial copy was discarded and the next attempt "
                    "starts over")
            await upload._close_file()
            if upload.channel is None:  # given back for the server's hash command
                upload.channel = await self.pool.acquire()
            await self._rename(upload.channel.sftp, part, final)
            upload._release(broken=False)
        except (asyncio.CancelledError, TransientError):
            # Interrupted (a pause, a connection that did not come back): the part stays
            # for the next attempt, whose commit verifies it all again.
            await self._keep(upload)
            raise
        except SiteSyncError:
            await self._discard(upload)
            raise
        except BaseException as exc:
            error = classify(exc, self.site, self.options, "writing", final)
            await (self._keep(upload) if isinstance(error, TransientError) else self._discard(upload))
            raise error from exc
        return RemoteFile(path=rootless, size=size, id=posixpath.basename(final),
                          mtime=attrs.mtime, hashes={"sha256": got["sha256"]})

    async def _verify(self, upload: Upload, size: int, wanted: set[str]) -> dict[str, str]:
        """Digests of the stored part: the server's SHA-256 when it can compute one,
        else the part read back (see :mod:`providers.sftp.verify`)."""
        verifier = self.verifier
        if verifier.wants_server_hash(size, wanted):
            # The command needs a channel slot of its own and the part's handle is not
            # needed meanwhile: give the channel back first. With every slot held by
            # uploads at this step (a server with MaxSessions 1), waiting for another
            # one would never end.
            await upload._close_file()
            upload._release(broken=False)
            digest = await verifier.server_sha256(upload.part, size)
            if digest is not None:
                return {"sha256": digest}
            # auto, and the server runs no hash command: read the part back.
            upload.channel = await self.pool.acquire()
            upload.file = await self._t(upload.channel.sftp.open(upload.part, "rb", encoding=None,
                                                                 block_size=0))
        return await verifier.reread(upload.file, size, wanted)

    async def _rename(self, sftp: Any, part: str, final: str) -> None:
        try:
            await self._t(sftp.posix_rename(part, final))
            return
        except asyncssh.SFTPOpUnsupported:
            pass
        # A server without posix-rename: a plain rename refuses an existing target, so the
        # old version is removed first (briefly absent, never half-written).
        _log.warning("sftp %s: server lacks posix-rename; replacing %s is not atomic", self.site, final)
        with contextlib.suppress(*_MISSING):
            await self._t(sftp.remove(final))
        await self._t(sftp.rename(part, final))

    async def _discard(self, upload: Upload) -> None:
        """Remove the part (a failure or a mismatch): on the upload's channel if it still
        works, else on a fresh one; best effort — a leftover is verified before any use."""
        await upload._drop_tasks()
        await upload._close_file()
        channel, upload.channel = upload.channel, None
        try:
            if channel is None:
                channel = await asyncio.wait_for(self.pool.acquire(), self.options.connect_timeout_s)
            with contextlib.suppress(*_MISSING):
                await self._t(channel.sftp.remove(upload.part))
        except Exception as exc:
            _log.info("sftp %s: could not remove %s: %s", self.site, upload.part, exc)
            if channel is not None:
                self.pool.release(channel, broken=is_connection_error(exc))
            return
        self.pool.release(channel)

    async def _keep(self, upload: Upload) -> None:
        """Leave the part for a resume. Requests in flight get a moment to land; if the
        server does not answer (a pause on a stuck server must not wait for it), the
        channel is dropped instead: the server keeps whatever it wrote, and the next
        attempt resumes from the part's size and verifies the whole file."""
        if await upload.settle_quietly(_SETTLE_S):
            await upload._close_file()
            upload._release(broken=False)
        else:
            upload.file = None
            upload._release(broken=True)

    async def _abort(self, upload: Upload, keep_partial: bool) -> None:
        await (self._keep(upload) if keep_partial else self._discard(upload))

    def delete(self, rootless_path: str) -> None:
        """Remove the file and its part file, if present; folders stay."""
        root, path = self._locate(rootless_path)

        async def op(channel: Channel) -> None:
            sftp = channel.sftp
            await self._check_inside(sftp, root, posixpath.dirname(path), rootless_path, folder=True)
            for target in (path, part_path(path)):
                with contextlib.suppress(*_MISSING):
                    await self._t(sftp.remove(target))

        self._run(self._on_channel(op, "deleting", path))

    def move(self, source_path: str, target_path: str) -> RemoteFile:
        """Rename within the site without ever replacing a file: SFTP's plain rename,
        which OpenSSH performs as link + unlink and refuses when the target exists."""
        src_root, src = self._locate(source_path)
        dst_root, dst = self._locate(target_path)

        async def op(channel: Channel) -> RemoteFile:
            sftp = channel.sftp
            await self._check_inside(sftp, src_root, src, source_path)
            try:
                attrs = await self._t(sftp.stat(src))
            except _MISSING:
                raise PermanentError(f"cannot move {src} on site '{self.site}': it does not "
                                     "exist") from None
            if attrs.permissions is not None and not stat_mod.S_ISREG(attrs.permissions):
                raise PermanentError(f"cannot move {src} on site '{self.site}': not a regular file")
            await self._ensure_folder(sftp, dst_root, posixpath.dirname(dst), target_path)
            try:
                await self._t(sftp.lstat(dst))
                exists = True
            except _MISSING:
                exists = False
            if exists:
                raise PermanentError(f"cannot move {src} to {dst} on site '{self.site}': the "
                                     "target already exists")
            try:
                await self._t(sftp.rename(src, dst))
            except (asyncssh.SFTPFailure, asyncssh.SFTPFileAlreadyExists) as exc:
                with contextlib.suppress(*_MISSING):
                    await self._t(sftp.lstat(dst))
                    raise PermanentError(f"cannot move {src} to {dst} on site '{self.site}': the "
                                         "target already exists") from exc
                raise
            moved = await self._t(sftp.stat(dst))
            return RemoteFile(path=target_path, size=moved.size or 0, id=posixpath.basename(dst),
                              mtime=moved.mtime)

        return self._run(self._on_channel(op, "writing", dst))

    # -- housekeeping -------------------------------------------------------------------------

    def sweep_partials(self, max_age_s: float) -> list[str]:
        """Remove ``.<name>.sitesync-part`` files under every root whose mtime is older
        than ``max_age_s``. SFTP has no locks: a part being written is told apart by its
        mtime, which every write moves. Symlinks are never followed (the server's
        readdir reports them as links). One listing per folder, eight at a time on one
        channel; each request bounded by the stall timeout, the walk itself is not."""
        try:
            return self._loop.call(self._on_channel(lambda channel: self._sweep(channel, max_age_s),
                                                    "checking", self.options.host), None)
        except LoopClosedError:
            return []
        except concurrent.futures.CancelledError:
            return []

    async def _sweep(self, channel: Channel, max_age_s: float) -> list[str]:
        sftp = channel.sftp
        cutoff = time.time() - max_age_s
        removed: list[str] = []
        limit = asyncio.Semaphore(8)

        async def visit(folder: str) -> list[str]:
            async with limit:
                try:
                    entries = await self._t(sftp.readdir(folder))
                except asyncssh.SFTPError:
                    return []  # vanished or unreadable: housekeeping never fails the site
            folders = []
            for entry in entries:
                name, attrs = entry.filename, entry.attrs
                if name in (".", "..") or attrs.permissions is None:
                    continue
                path = posixpath.join(folder, name)
                if stat_mod.S_ISDIR(attrs.permissions):
                    folders.append(path)
                elif (stat_mod.S_ISREG(attrs.permissions) and name.startswith(".")
                      and name.endswith(PART_SUFFIX) and (attrs.mtime or 0) < cutoff):
                    with contextlib.suppress(asyncssh.SFTPError):
                        await self._t(sftp.remove(path))
                        removed.append(path)
            return folders

        level = sorted({spec.path for spec in self._roots.values() if spec.path is not None})
        while level:
            found = await asyncio.gather(*(visit(folder) for folder in level))
            level = [folder for folders in found for folder in folders]
        return removed

    # -- health -----------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Login (credentials and host key), every root (exists, is a folder, writable) and,
        with ``sftp_verify: hash``, the server-side hash command."""
        if not self._roots:
            return [f"site '{self.site}' has no roots; set sites.{self.site}.root"]
        try:
            return self._run(self._check())
        except SiteSyncError as exc:
            return [str(exc)]

    async def _check(self) -> list[str]:
        problems: list[str] = []

        async def roots(channel: Channel) -> None:
            sftp = channel.sftp
            for name, spec in sorted(self._roots.items()):
                if spec.path is None:
                    problems.append(spec.error or f"root '{name}' of site '{self.site}' is unusable")
                    continue
                try:
                    attrs = await self._t(sftp.stat(spec.path))
                except _MISSING:
                    problems.append(f"root '{name}' of site '{self.site}' does not exist on the SFTP "
                                    f"server {self.options.host}: {spec.path}; create it there or fix "
                                    f"sites.{self.site}.root")
                    continue
                if attrs.permissions is not None and not stat_mod.S_ISDIR(attrs.permissions):
                    problems.append(f"root '{name}' of site '{self.site}' is not a folder on the "
                                    f"server: {spec.path}")
                    continue
                probe = posixpath.join(spec.path, f".sitesync-probe-{id(self)}{PART_SUFFIX}")
                try:
                    file = await self._t(sftp.open(probe, "wb", encoding=None))
                    await self._t(file.close())
                    await self._t(sftp.remove(probe))
                except asyncssh.SFTPError as exc:
                    problems.append(f"root '{name}' of site '{self.site}' is not writable for SFTP "
                                    f"user '{self.options.user}': {spec.path} ({exc.reason}); give "
                                    "the user write access there")

        await self._on_channel(roots, "checking", self.options.host)
        if self.options.verify != "reread" and self.verifier.server_hash_works is None:
            try:
                problem = await self.verifier.probe()
            except asyncssh.ChannelOpenError as exc:
                problems.append(f"the SFTP server {self.options.host} refused a channel for a "
                                f"command (site '{self.site}': {exc.reason}); check its MaxSessions "
                                f"and sites.{self.site}.sftp_max_sessions")
                return problems
            self.verifier.server_hash_works = problem is None
            if problem is not None and self.options.verify == "hash":
                problems.append(str(self.verifier._refused(problem)))
        return problems

    def describe(self) -> str:
        options = self.options
        trust = (f"host key checked against {options.known_hosts}" if options.known_hosts
                 else "host key NOT checked (insecure_skip_host_key_check)")
        command = self.verifier.command.split(" {path}")[0]
        method = {
            "server_hash": f"by hashing on the server ({command or 'SHA-256'})",
            "reread": "by reading them back",
        }.get(self.verifier.method, "by hashing on the server if it allows, else by reading back")
        return f"logged in as {options.address}, {trust}, uploads verified {method}"

    def close(self) -> None:
        """Idempotent. The site's connections close with the last provider using them
        (until then, transfers this provider started finish or abort normally)."""
        if self._closed:
            return
        self._closed = True
        shared.detach(self.site, self.options, self._connections)
