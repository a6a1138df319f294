"""Move one file from a source provider to a target provider, verified.

The steps, in the order that keeps the promise "a half-written or unverified file is
never marked available":

1. open the target writer: it writes under a temporary name beside the final path and
   tells how many bytes an interrupted earlier attempt already stored (``offset``);
2. stream the source from byte 0, hashing everything, and write from ``offset`` on (the
   prefix is only hashed, so the resumed file's hash is still the whole file's; see the
   end of this docstring for remote sources);
3. refuse a source whose size differs from the published size, whose bytes differ from
   the checksum its storage reports (Drive's md5Checksum: corrupted in transit), or whose
   hash differs from a checksum recorded when it last arrived somewhere (it changed or
   rotted), and retry one the source provider saw modified while it was being read (a
   mix of versions);
4. ``commit``: the provider makes the data durable, verifies size and hashes of what it
   stored (SHA-256, plus what its storage computes itself, e.g. Drive's md5), and only
   then renames into place.

Only after this function returns does the engine record `created_dt`. Cancellation (pause,
shutdown, a lost lease) keeps the partial data for a resume and counts no try; so does a
transient error while streaming (a dropped connection): the next attempt resumes, and
``commit`` verifies the whole file whatever happened to the kept part.

Resuming a download from a remote source (SFTP, Drive) does not fetch the kept prefix
again when the target can hash it locally (:meth:`Writer.stored_prefix_hash`) and the
whole file can be checked afterwards: against the source's recorded checksum, or
against the checksum the source storage reports (Drive's md5). The source is read from
``offset``; if the whole file's hash does not match, the part is discarded and the next
attempt starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from app.errors import CancelledTransfer, IntegrityError, TransientError
from app.model import WorkItem
from providers.base import CHECKSUM_ALGORITHM, Provider, Reader, Writer

__all__ = ["CHUNK_BYTES", "CancelToken", "TransferResult", "transfer_file"]

_log = logging.getLogger(__name__)

#: Read size. Large enough that per-call overhead vanishes on fast disks, small enough that
#: pause reacts within a fraction of a second on slow links. Not 4 MiB: every chunk is a
#: new bytes object, and at 4 MiB glibc kept handing them out as fresh mappings (page
#: faults on every chunk): copying 1 GiB in 4 MiB reads took 1.2-2.2 s of system time in
#: a fresh process, in 2 MiB reads 0.3 s (2-core VM, ext4).
CHUNK_BYTES = 2 * 1024 * 1024
#: Files at least this large are read and hashed on a second thread (see _pipelined).
PIPELINE_MIN_BYTES = 16 * 1024 * 1024
PIPELINE_DEPTH = 4


class CancelToken:
    """Set by the engine to stop a transfer at the next chunk; carries the reason."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self.reason = ""

    def cancel(self, reason: str) -> None:
        self.reason = reason
        self._event.set()
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a provider's interrupt must not stop the others
                _log.exception("cancel callback failed")

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on the cancelling thread) when cancelled, at once if it already
        is; returns a function that unregisters it. Providers use it to cut a blocked
        network call short (``Reader.interrupt``/``Writer.interrupt``)."""
        with self._lock:
            self._callbacks.append(callback)
        if self._event.is_set():
            callback()

        def unregister() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unregister

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s``, waking at once on cancel; True if cancelled (used by
        bandwidth limits, so a pause never waits for a throttled read)."""
        return self._event.wait(timeout_s)

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledTransfer(self.reason or "cancelled")


@dataclass(frozen=True)
class TransferResult:
    provider_id: str
    checksum: str
    size: int
    resumed_from: int
    seconds: float
    #: The rootless path written on the target (the item's, or ``target_path``).
    path: str = ""
    #: Written under the staged name of a "when complete" file (app.policy.staging).
    staged: bool = False
    #: The writer of a ``defer_sync`` transfer: the caller calls its ``finish_deferred``
    #: (or ``abort``) before anything else relies on the file.
    pending: Writer | None = None


ProgressCallback = Callable[[int, int], None]
"""Called with (bytes_done, size) after every chunk; the caller throttles."""


def transfer_file(
    item: WorkItem,
    source: Provider,
    target: Provider,
    token: CancelToken,
    on_progress: ProgressCallback | None = None,
    on_start: Callable[[int], None] | None = None,
    target_path: str | None = None,
    defer_sync: bool = False,
) -> TransferResult:
    """Copy ``item`` from ``source`` to ``target``; raise TransientError, PermanentError
    (IntegrityError when the source is not what was published) or CancelledTransfer. See
    the module docstring for the guarantees.

    ``target_path`` writes under another rootless path on the target (a staged name for
    "when complete" downloads); the default is the item's own path. With ``defer_sync``
    the caller calls ``target.sync_committed`` on that path before relying on the file.
    """
    started = time.monotonic()
    token.raise_if_cancelled()
    # SHA-256 (recorded), plus what either storage checks itself (Drive: md5).
    algorithms = (CHECKSUM_ALGORITHM, *target.features.server_hashes, *source.features.server_hashes)
    hasher = _Hashes.new(algorithms)
    write_path = target_path or item.path
    writer = target.open_writer(write_path, item.size, resume=True)
    keep_partial = False
    # A transient error before commit is an interruption: keep what the target stored.
    keep_on_transient = True
    unregister = _on_cancel(token, writer)
    try:
        offset = writer.offset
        if offset > item.size:  # a stale part from a different file: start over
            writer.abort(keep_partial=False)
            unregister()
            writer = target.open_writer(write_path, item.size, resume=False)
            unregister = _on_cancel(token, writer)
            offset = 0
        start = 0
        if offset and _can_skip_prefix(item, source):
            prefix = _stored_prefix(writer, hasher.names)
            if prefix is not None:
                hasher, start = prefix, offset
        # getattr: a duck-typed writer (a test double, a plug-in) may not have the hook.
        hashed_by_caller = getattr(writer, "stream_hashed_by_caller", None)
        if offset == 0 and hashed_by_caller is not None:
            # Every byte written is also fed to ``hasher`` below, whose digest commit gets.
            hashed_by_caller()
        if on_start is not None:
            on_start(offset)
        reader = source.open_reader(item.path, start)
        # getattr: a duck-typed reader (a test double, a plug-in) reports no checksums.
        reported = getattr(reader, "hashes", None) or {}
        if start and not item.source_checksum and not set(reported) & set(hasher.names):
            # Nothing left to check the kept prefix against: read the source whole.
            reader.close()
            hasher, start = _Hashes.new(algorithms), 0
            reader = source.open_reader(item.path, 0)
            reported = getattr(reader, "hashes", None) or {}
        done = start
        produce = _pipelined if item.size - start >= PIPELINE_MIN_BYTES else _sequential
        with reader, _interruptible(token, reader), \
                contextlib.closing(produce(reader, hasher, token)) as chunks:
            # closing(): the read thread is joined before the reader is closed.
            for chunk in chunks:
                if token.cancelled:
                    keep_partial = True
                    token.raise_if_cancelled()
                end = done + len(chunk)
                if end > item.size:
                    raise _changed(item, f"it is now larger than the published {item.size} bytes",
                                   "more bytes")
                if end > offset:
                    writer.write(chunk if done >= offset else chunk[offset - done:])
                done = end
                if on_progress is not None:
                    on_progress(done, item.size)
            # getattr: a duck-typed reader (a test double, a plug-in) cannot tell.
            changed = getattr(reader, "changed", None)
            if not token.cancelled and changed is not None and (change := changed()) is not None:
                keep_on_transient = False
                raise TransientError(
                    f"source file {item.path} on site {item.source_site} changed while it was "
                    f"being copied ({change}); the copy was discarded and will be retried"
                )
        if token.cancelled:  # the chunk source stops early when cancelled
            keep_partial = True
            token.raise_if_cancelled()
        if done != item.size:
            raise _changed(item, f"it has {done} bytes, the publish recorded {item.size}",
                           f"{done} bytes")
        if not _matches_source(reported, hasher):
            keep_on_transient = False
            raise TransientError(
                f"the bytes received from site {item.source_site} for {item.path} do not match "
                f"the checksum that storage reports ({_mismatch(reported, hasher)}); the partial "
                "copy was discarded and the next attempt starts over"
            )
        digest = hasher.hexdigest(CHECKSUM_ALGORITHM)
        checksum = f"{CHECKSUM_ALGORITHM}:{digest}"
        if start and item.source_checksum and item.source_checksum != checksum:
            keep_on_transient = False
            raise TransientError(
                f"resumed copy of {item.path} from site {item.source_site} does not match the "
                "source's recorded checksum; the kept part was discarded and the next attempt "
                "starts over"
            )
        if item.source_checksum and item.source_checksum != checksum:
            raise IntegrityError(
                f"source file {item.path} on site {item.source_site} no longer matches the "
                f"checksum recorded when it arrived there ({item.source_checksum}); it was "
                "modified or corrupted. Re-publish it, or reset the source site to fetch a good copy",
                site=item.source_site, path=item.path, expected=item.source_checksum,
                found=checksum,
            )
        token.raise_if_cancelled()
        keep_on_transient = False
        expected = {name: hasher.hexdigest(name) for name in hasher.names
                    if name == CHECKSUM_ALGORITHM or name in target.features.server_hashes}
        pending = None
        if defer_sync:
            stored = writer.commit_deferred(item.size, expected)
            pending = writer
        else:
            stored = writer.commit(item.size, expected)
    except CancelledTransfer:
        # A provider interrupted by the token raises from inside write()/read().
        writer.abort(keep_partial=keep_partial or token.cancelled)
        raise
    except TransientError:
        writer.abort(keep_partial=keep_on_transient)
        raise
    except BaseException:
        writer.abort(keep_partial=False)
        raise
    finally:
        unregister()
    return TransferResult(
        provider_id=stored.id,
        checksum=checksum,
        size=done,
        resumed_from=offset,
        seconds=time.monotonic() - started,
        path=stored.path,
        pending=pending,
    )


def _can_skip_prefix(item: WorkItem, source: Provider) -> bool:
    """Whether a resume may start reading the source at the target's offset: only for a
    remote source (re-reading a local prefix is cheap and gives the precise "source
    changed" error) that can seek, with something to check the whole result against: a
    recorded checksum, or the checksum the source storage computes itself (Drive)."""
    features = source.features
    recorded = bool(item.source_checksum) and str(item.source_checksum).startswith(
        f"{CHECKSUM_ALGORITHM}:")
    reported = bool(features.server_hashes & hashlib.algorithms_guaranteed)
    return features.ranged_read and not features.local and (recorded or reported)


class _Hashes:
    """Several hashlib digests fed by one ``update``: SHA-256 plus what the storages
    check themselves. Algorithms hashlib does not guarantee are left out (nothing could
    be compared)."""

    def __init__(self, hashers: dict[str, Any]) -> None:
        self._hashers = hashers
        self.names = tuple(hashers)

    @classmethod
    def new(cls, names: tuple[str, ...]) -> _Hashes:
        wanted = dict.fromkeys(n.lower() for n in names if n.lower() in hashlib.algorithms_guaranteed)
        return cls({name: hashlib.new(name) for name in wanted})

    def update(self, data: bytes) -> None:
        for hasher in self._hashers.values():
            hasher.update(data)

    def hexdigest(self, name: str) -> str:
        return self._hashers[name].hexdigest()


def _stored_prefix(writer: Writer, names: tuple[str, ...]) -> _Hashes | None:
    """The kept prefix hashed with every algorithm, from the target; None if any cannot be."""
    # getattr: a duck-typed writer (a test double, a plug-in) has no prefix hashes.
    stored_prefix_hash = getattr(writer, "stored_prefix_hash", None)
    if stored_prefix_hash is None:
        return None
    hashers = {}
    for name in names:
        hashers[name] = stored_prefix_hash(name)
        if hashers[name] is None:
            return None
    return _Hashes(hashers)


def _matches_source(reported: Any, hasher: _Hashes) -> bool:
    """The bytes received match every checksum the source storage reported that we hashed."""
    return all(hasher.hexdigest(name.lower()) == str(value).lower()
               for name, value in reported.items() if name.lower() in hasher.names)


def _mismatch(reported: Any, hasher: _Hashes) -> str:
    return "; ".join(f"{name} {hasher.hexdigest(name.lower())}, the server says {value}"
                     for name, value in reported.items()
                     if name.lower() in hasher.names and hasher.hexdigest(name.lower()) != str(value).lower())


def _on_cancel(token: CancelToken, stream: Reader | Writer) -> Callable[[], None]:
    # getattr: a duck-typed stream (a test double, a plug-in) may have no interrupt hook.
    interrupt = getattr(stream, "interrupt", None)
    return token.on_cancel(interrupt) if interrupt is not None else lambda: None


@contextlib.contextmanager
def _interruptible(token: CancelToken, stream: Reader | Writer) -> Iterator[None]:
    unregister = _on_cancel(token, stream)
    try:
        yield
    finally:
        unregister()


def _sequential(reader: Reader, hasher: Any, token: CancelToken) -> Iterator[bytes]:
    """Read and hash on the caller's thread: for small files a second thread costs more
    than it saves."""
    while not token.cancelled:
        chunk = reader.read(CHUNK_BYTES)
        if not chunk:
            return
        hasher.update(chunk)
        yield chunk


def _pipelined(reader: Reader, hasher: Any, token: CancelToken) -> Iterator[bytes]:
    """Read and hash on a helper thread while the caller writes the previous chunks.

    Reading, hashing and writing a large file one after the other leaves a core idle;
    both hashlib and file I/O release the GIL, so two threads overlap them. The queue is
    short, so memory stays at a few chunks whatever the file size.
    """
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=PIPELINE_DEPTH)
    stop = threading.Event()

    def put(value: bytes | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                chunks.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            while not stop.is_set() and not token.cancelled:
                chunk = reader.read(CHUNK_BYTES)
                if not chunk:
                    break
                hasher.update(chunk)
                if not put(chunk):
                    return
            put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name="sitesync-read", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = chunks.get(timeout=0.1)
            except queue.Empty:
                if token.cancelled:
                    return  # the caller sees the token and raises CancelledTransfer
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _changed(item: WorkItem, detail: str, found: str = "") -> IntegrityError:
    return IntegrityError(
        f"source file {item.path} on site {item.source_site} changed after it was published "
        f"({detail}). Published files must not be edited: re-publish a new version",
        site=item.source_site, path=item.path, expected=f"{item.size} bytes", found=found,
    )
