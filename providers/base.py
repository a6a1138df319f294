"""The provider contract: how the engine moves bytes to and from one site.

Modelled on rclone's backends: a provider knows one storage technology and nothing
about the database, the engine or other providers. It is stream-oriented: the engine
reads from the source provider and writes to the target provider, hashing the bytes as
they pass, so any pair of providers can be combined.

Every write goes to a temporary name beside the target and only :meth:`Writer.commit`
moves it into place, after the provider has checked what it stored (local re-read,
server checksum). A file is therefore never visible half-written under its final name.

Errors leave a provider only as :class:`app.errors.TransientError` or
:class:`app.errors.PermanentError` (or :class:`app.errors.PathEscapeError`), with text
that tells the user what to do.

Paths given to providers are OpenPype's rootless paths, e.g.
``{root[work]}/demo/shots/sh010/v001/x.exr``; the provider maps `{root[name]}` onto the
site's configured roots and refuses anything that would leave them.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CHECKSUM_ALGORITHM",
    "Features",
    "Provider",
    "Reader",
    "RemoteFile",
    "Writer",
]

#: The content hash SiteSync records (`sitesync_checksum` = "sha256:<hex>"). SHA-256 runs
#: at ~1.7 GB/s on CPUs with SHA extensions, faster than md5 here, and releases the GIL.
CHECKSUM_ALGORITHM = "sha256"
_MOVE_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Features:
    """What a provider can do; the engine picks its strategy from these facts."""

    #: A write interrupted by a crash can continue from ``Writer.offset``.
    resumable_upload: bool = False
    #: ``open_reader(offset=...)`` starts mid-file.
    ranged_read: bool = False
    #: The final rename is atomic (a reader sees the old file or the whole new one).
    atomic_rename: bool = True
    #: Hash algorithms the storage computes itself ("md5" for Drive), used to verify: the
    #: engine hashes the source with each of them too and passes them to ``commit``, and
    #: a reader reports them in ``Reader.hashes``.
    server_hashes: frozenset[str] = frozenset()
    #: The provider is a local filesystem path (open in file manager, remove local copy).
    local: bool = False
    #: How ``Writer.commit`` checks the stored content before the rename:
    #: "running_hash" (a hash of the bytes written, plus the size after a durable flush),
    #: "reread" (the stored bytes are read back and hashed), "server_hash" (the storage
    #: hashes them itself, e.g. ``sha256sum`` run over SSH), or "server_hash_or_reread"
    #: (decided on first use, by whether the server can).
    verification: str = "running_hash"
    #: ``Writer.commit_deferred`` leaves making the rename durable to a later
    #: ``Provider.sync_committed``, so one folder fsync can cover many files.
    deferred_sync: bool = False


@dataclass(frozen=True)
class RemoteFile:
    """What a provider knows about a stored file."""

    path: str
    size: int
    #: Provider's id for OpenPype's `id` field (Drive file id; basename for local/sftp).
    id: str
    mtime: float | None = None
    #: Known content hashes by algorithm ("sha256", "md5"), hex.
    hashes: Mapping[str, str] = field(default_factory=dict)


class Reader(abc.ABC):
    """A source stream. Close it (or use ``with``) whatever happens."""

    #: Hashes the storage itself reports for the whole file (algorithm -> hex, e.g. Drive's
    #: md5Checksum), read when the stream was opened. The engine hashes the bytes as they
    #: pass and refuses the copy if they differ, so a download is checked against the
    #: server's own record before the target renames anything into place.
    hashes: Mapping[str, str] = {}

    @abc.abstractmethod
    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; b"" at the end."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def changed(self) -> str | None:
        """Why the bytes read may not be one version of the file (it was modified or
        replaced while being read), or None. Asked after the last byte, before the
        target is committed: a file rewritten in place during the copy yields a mix of
        old and new bytes whose hash is consistent with nothing on the source.
        Providers that cannot tell keep this default; the recorded checksum, when there
        is one, still catches a mix."""
        return None

    def interrupt(self) -> None:  # noqa: B027 - optional hook
        """Called from another thread when the transfer is cancelled (a pause): a blocked
        ``read`` should return soon by raising CancelledTransfer. Providers whose reads
        always return within a chunk need not do anything."""

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Writer(abc.ABC):
    """A target stream into a temporary name beside the final path.

    ``offset`` is how many bytes are already safely stored from an earlier, interrupted
    attempt (0 when starting fresh); the engine re-reads the source from there.
    """

    offset: int = 0

    @abc.abstractmethod
    def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def commit(self, expected_size: int, expected_hashes: Mapping[str, str]) -> RemoteFile:
        """Make the data durable, verify size and every hash the provider can check
        against ``expected_hashes`` (algorithm -> hex, whole file: CHECKSUM_ALGORITHM
        and, from the engine, every algorithm in ``features.server_hashes``), then rename
        into place.

        Raises TransientError on a mismatch (the temporary data is discarded, the next
        attempt starts clean) and never leaves a wrong file under the final name.
        """

    def commit_deferred(self, expected_size: int, expected_hashes: Mapping[str, str]) -> RemoteFile:
        """:meth:`commit`, except that a provider with ``Features.deferred_sync`` may return
        once the stored bytes are verified; the caller then calls :meth:`finish_deferred`
        (the data made durable and renamed into place) and
        :meth:`Provider.sync_committed` (the folder entry made durable) before it relies
        on the file (records it). Batching those across files is what makes small files
        fast. Nothing is renamed into place before its data is durable, so a power cut can
        lose the new name, never leave it pointing at partial data.
        """
        return self.commit(expected_size, expected_hashes)

    def finish_deferred(self) -> None:  # noqa: B027 - optional hook
        """Complete a :meth:`commit_deferred`: when this returns, the file is under its
        final name with its data durable. Raises like ``commit`` (the temporary data is
        discarded). A no-op where ``commit_deferred`` committed at once."""

    @abc.abstractmethod
    def abort(self, keep_partial: bool) -> None:
        """Stop writing. ``keep_partial`` keeps the temporary data for a resume (a pause,
        a shutdown or a dropped connection); otherwise it is removed (a failure or a
        mismatch)."""

    def interrupt(self) -> None:  # noqa: B027 - optional hook
        """Called from another thread when the transfer is cancelled: a blocked ``write``
        should return soon by raising CancelledTransfer (see :meth:`Reader.interrupt`)."""

    def stream_hashed_by_caller(self) -> None:  # noqa: B027 - optional hook
        """The caller hashes every byte it hands to ``write`` from byte 0 and passes that
        digest to ``commit``: a writer that would otherwise keep a running hash of the
        same buffers may skip it (it would compute the same digest of the same memory;
        a 1 GiB file costs 0.7 s of CPU for nothing). Only called for a fresh write
        (``offset`` 0). Checks that read back what was stored stay as they are."""

    def stored_prefix_hash(self, algorithm: str) -> Any | None:
        """A hashlib object already fed with the ``offset`` bytes kept from an earlier
        attempt, if the writer can produce it cheaply (a local file); None otherwise.

        With it the engine resumes a download without fetching the prefix again: it
        reads the source from ``offset`` and checks the whole file's hash against the
        checksum recorded for the source, or the one the source storage reports (see
        ``Reader.hashes``; the engine then asks for that algorithm too, e.g. "md5").
        """
        return None

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.abort(keep_partial=False)


class Provider(abc.ABC):
    """One configured site of one storage technology.

    Instances are created once per site and shared by the engine's worker threads, so
    methods must be thread-safe; connection pools and API clients live here, not per file.
    """

    #: Registry key and settings `provider` value (OpenPype's ids: local_drive, gdrive, sftp).
    kind: str = ""
    features: Features = Features()

    def __init__(self, site: str, config: Mapping[str, Any]) -> None:
        self.site = site
        self.config = config

    @abc.abstractmethod
    def resolve(self, rootless_path: str) -> str:
        """The provider's own path for a rootless path, or PathEscapeError /
        PermanentError (unknown root name) with a message naming the site and root."""

    @abc.abstractmethod
    def stat(self, rootless_path: str) -> RemoteFile | None:
        """The stored file, or None if it does not exist."""

    @abc.abstractmethod
    def open_reader(self, rootless_path: str, offset: int = 0) -> Reader:
        """Stream the file from ``offset``; PermanentError if it does not exist."""

    @abc.abstractmethod
    def open_writer(self, rootless_path: str, size: int, resume: bool = True) -> Writer:
        """Start (or with ``resume``, continue) writing the file under a temporary name."""

    @abc.abstractmethod
    def delete(self, rootless_path: str) -> None:
        """Remove the file if present (used by "remove local copy" and conflicts)."""

    def move(self, source_path: str, target_path: str) -> RemoteFile:
        """Rename a stored file within this site; ``target_path`` must not exist.

        Used for conflict copies (the file that loses a conflict is kept under a suffixed
        name) and for "when complete" downloads (staged files moved into place together).
        This default copies through :meth:`open_writer` (so the copy is verified like any
        transfer) and deletes the source only after the commit; providers with a native
        rename override it. Raises PermanentError if the source is missing or the target
        exists, so a move never overwrites anything.
        """
        from app.errors import PermanentError

        if self.stat(target_path) is not None:
            raise PermanentError(f"cannot move {source_path} to {target_path} on site "
                                 f"'{self.site}': the target already exists")
        info = self.stat(source_path)
        if info is None:
            raise PermanentError(f"cannot move {source_path} on site '{self.site}': "
                                 "it does not exist")
        hasher = hashlib.new(CHECKSUM_ALGORITHM)
        writer = self.open_writer(target_path, info.size, resume=False)
        try:
            with self.open_reader(source_path) as reader:
                while chunk := reader.read(_MOVE_CHUNK):
                    hasher.update(chunk)
                    writer.write(chunk)
            stored = writer.commit(info.size, {CHECKSUM_ALGORITHM: hasher.hexdigest()})
        except BaseException:
            writer.abort(keep_partial=False)
            raise
        self.delete(source_path)
        return stored

    def check(self) -> list[str]:
        """Problems that stop this site from working (for `sitesync doctor`); [] if fine."""
        return []

    def sweep_partials(self, max_age_s: float) -> list[str]:
        """Remove temporary files that interrupted transfers left behind and nobody came
        back for: older than ``max_age_s`` (by modification time) and not being written
        now. Returns the provider paths removed.

        A resumed transfer reuses its temporary file, so most are claimed again; the rest
        (the site was removed from the file, the representation deleted, a crash right
        before a permanent failure) would otherwise fill the site for ever. Providers that
        leave nothing behind (uploads that expire on the server) keep this default.
        """
        return []

    def describe(self) -> str:
        """How this site is reached and checked, in a few words, for `sitesync doctor`
        after a clean :meth:`check` (e.g. the SFTP login and how uploads are verified)."""
        return ""

    def sync_committed(self, paths: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Make the renames of files committed with ``Writer.commit_deferred`` durable
        (rootless ``paths``). Raises like the other operations. Providers without
        ``Features.deferred_sync`` committed durably already and keep this default."""

    def close(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections and clients."""
