"""Writing one file to Drive: resumable chunks, verified against Drive's own checksums.

The engine pushes bytes (``write``); googleapiclient pulls them (``MediaUpload.getbytes``).
:class:`_BufferMedia` joins the two: the writer keeps the bytes from the last offset Drive
confirmed, and the client's ``next_chunk()`` takes its chunk from there. Because
``has_stream()`` is False, every send and re-send carries real bytes — with a stream,
googleapiclient re-sends an *empty* body after an error (providers-on-loopback.md §1.5).

How a file goes up:

* small files (up to ``min(chunk_size, 5 MiB)``) in one multipart request at commit;
* larger ones through a resumable session: a chunk (a multiple of 256 KiB) goes out
  whenever more than a chunk is buffered, so at least one byte always waits for
  ``commit``. The file only appears on Drive when its last byte arrives, so nothing
  half-written is ever visible. The session URI and confirmed offset are saved after
  each chunk (:mod:`.state`); after a crash, ``open_writer`` asks Drive how far it got and
  the engine re-sends only the rest;
* a file that already exists is uploaded under a temporary name beside it and renamed
  over it (the old one goes to the trash) only after verification, so the old version
  stays readable until the new one is whole and checked;
* ``commit`` compares size and every checksum Drive reports (md5Checksum, and
  sha256Checksum when present) with what the engine hashed from the source. A mismatch
  deletes the upload. At least one checksum must match, or the upload is refused: an
  unverified file is never reported as stored.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from googleapiclient.http import MediaIoBaseUpload, MediaUpload

from app.errors import SiteSyncError, TransientError
from providers.base import RemoteFile, Writer
from providers.gdrive.calls import DriveNotFound, SessionGone
from providers.gdrive.folders import FILE_FIELDS, DriveRoot
from providers.gdrive.options import MULTIPART_MAX
from providers.gdrive.state import UploadState

if TYPE_CHECKING:
    from providers.gdrive.provider import GDriveProvider

__all__ = ["PART_SUFFIX", "DriveWriter", "part_name", "remote_file"]

_log = logging.getLogger(__name__)

#: The temporary name of a replacement upload: ``.<name>.sitesync-part`` (as local_drive).
PART_SUFFIX = ".sitesync-part"
_MIME = "application/octet-stream"
#: Drive's checksum fields and the hashlib names they correspond to.
_CHECKSUM_FIELDS = {"md5": "md5Checksum", "sha256": "sha256Checksum"}


def part_name(name: str) -> str:
    return f".{name}{PART_SUFFIX}"


def remote_file(rootless: str, meta: Mapping[str, Any]) -> RemoteFile:
    """A Drive file resource as the provider contract's RemoteFile."""
    hashes = {alg: str(meta[key]).lower() for alg, key in _CHECKSUM_FIELDS.items() if meta.get(key)}
    return RemoteFile(path=rootless, size=int(meta.get("size", 0)), id=str(meta["id"]),
                      mtime=_rfc3339(meta.get("modifiedTime")), hashes=hashes)


def _rfc3339(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class _BufferMedia(MediaUpload):
    """The writer's buffer as googleapiclient media of a known total size."""

    def __init__(self, writer: DriveWriter, size: int, chunk: int) -> None:
        self._writer = writer
        self._size = size
        self._chunk = chunk

    def chunksize(self) -> int:
        return self._chunk

    def mimetype(self) -> str:
        return _MIME

    def size(self) -> int:
        return self._size

    def resumable(self) -> bool:
        return True

    def has_stream(self) -> bool:
        return False  # see the module docstring: streams are re-sent empty after errors

    def getbytes(self, begin: int, length: int) -> bytes:
        return self._writer._slice(begin, length)


class DriveWriter(Writer):
    """One upload; used by one thread (the engine's worker) from open to commit/abort."""

    def __init__(self, provider: GDriveProvider, rootless: str, root: DriveRoot, parts: tuple[str, ...],
                 parent_id: str, size: int) -> None:
        self._p = provider
        self._rootless = rootless
        self._root = root
        self._parts = parts
        self._parent_id = parent_id
        self._name = parts[-1]
        self._size = size
        self._display = provider.resolve(rootless)
        self._chunk = provider.options.chunk_size
        self._small = size <= min(self._chunk, MULTIPART_MAX)
        self._buffer = bytearray()
        self._buf_start = 0  # absolute offset of _buffer[0]
        self._request: Any = None
        self._upload_name = self._name
        self._saved_uri: str | None = None
        self._done: dict[str, Any] | None = None
        self._closed = False
        self._committed = False
        self.offset = 0

    # -- resume ------------------------------------------------------------------------------

    def resume_from(self, state: UploadState) -> None:
        """Continue an upload an earlier attempt started; sets ``offset``. SessionGone
        or DriveNotFound if there is nothing to continue (the caller starts over)."""
        self._upload_name = state.upload_name
        if state.file_id:
            meta = self._p.caller.run(f"checking the interrupted upload of {self._display}", lambda: (
                self._p.files().get(fileId=state.file_id, fields=FILE_FIELDS + ",trashed",
                                             supportsAllDrives=True).execute(num_retries=0)))
            if meta.get("trashed"):
                raise DriveNotFound("the interrupted upload was trashed")
            self._finished(meta)
            return
        if not state.session_uri or self._small:
            raise SessionGone("nothing to resume")
        request = self._new_request()
        request.resumable_uri = state.session_uri
        self._saved_uri = state.session_uri
        result = self._p.caller.run(f"checking the interrupted upload of {self._display}",
                                    lambda: self._status(request), session=True)
        self._request = request
        if isinstance(result, dict):
            self._finished(result)
            return
        request.resumable_progress = result
        self._buf_start = self.offset = result

    def _status(self, request: Any) -> int | dict[str, Any]:
        """Ask Drive how much of the session it has: the confirmed offset, or the file."""
        import json

        from googleapiclient.errors import HttpError

        resp, content = request.http.request(
            request.resumable_uri, "PUT",
            headers={"Content-Range": f"bytes */{self._size}", "content-length": "0"})
        if resp.status in (200, 201):
            return json.loads(content)
        if resp.status == 308:
            committed = resp.get("range")
            return int(committed.split("-")[1]) + 1 if committed else 0
        raise HttpError(resp, content, uri="(upload session)")

    # -- writing -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"writer for {self._rootless} is already committed or aborted")

    @property
    def _end(self) -> int:
        return self._buf_start + len(self._buffer)

    def _slice(self, begin: int, length: int) -> bytes:
        start = begin - self._buf_start
        if start < 0:  # Drive confirmed less than we dropped: cannot happen, see _drop
            raise TransientError(f"upload of {self._display} lost its place at byte {begin}; will retry")
        return bytes(self._buffer[start:start + length])

    def write(self, data: bytes) -> None:
        self._check_open()
        if self._end + len(data) > self._size:
            raise TransientError(f"more bytes than the announced {self._size} for {self._display}; "
                                 "the source changed while it was read")
        self._buffer += data
        if self._small or self._done is not None:
            return
        while self._end - self._progress() > self._chunk:
            self._send_chunk()

    def _progress(self) -> int:
        return self._request.resumable_progress if self._request is not None else self._buf_start

    def _new_request(self) -> Any:
        return self._p.files().create(
            body={"name": self._upload_name, "parents": [self._parent_id]},
            media_body=_BufferMedia(self, self._size, self._chunk),
            fields=FILE_FIELDS, supportsAllDrives=True)

    def _send_chunk(self) -> None:
        if self._request is None:
            self._upload_name, _ = self._choose_name()
            self._request = self._new_request()
        request = self._request

        def call() -> Any:
            try:
                return request.next_chunk(num_retries=0)[1]
            finally:
                self._remember_session()

        try:
            body = self._p.caller.run(f"uploading {self._display}", call, upload=True,
                                      session=lambda: request.resumable_uri is not None)
        except SessionGone:
            self._p.states.delete(self._rootless)
            raise
        except DriveNotFound:
            self._p.forget_paths()  # the parent folder went away: resolve it again next time
            raise
        self._drop(request.resumable_progress)
        if body is not None:
            self._finished(body)
        else:
            self._save(offset=request.resumable_progress)

    def _drop(self, confirmed: int) -> None:
        """Forget bytes Drive has confirmed; keep everything after them for re-sends."""
        if confirmed > self._buf_start:
            del self._buffer[: confirmed - self._buf_start]
            self._buf_start = confirmed

    def _remember_session(self) -> None:
        uri = self._request.resumable_uri if self._request is not None else None
        if uri and uri != self._saved_uri:
            self._saved_uri = uri
            self._save(offset=self._request.resumable_progress)

    def _save(self, offset: int, file_id: str | None = None) -> None:
        state = UploadState(rootless=self._rootless, size=self._size, parent_id=self._parent_id,
                            name=self._name, upload_name=self._upload_name, session_uri=self._saved_uri,
                            offset=offset, file_id=file_id)
        try:
            self._p.states.save(state)
        except OSError as exc:  # resuming after a crash becomes impossible, nothing worse
            _log.warning("cannot save upload state for %s (%s)", self._display, exc)

    def _finished(self, meta: dict[str, Any], save: bool = True) -> None:
        """Drive has the whole file (unverified yet); remember it in case we crash now."""
        self._done = meta
        self._buffer = bytearray()
        self._buf_start = self.offset = self._size
        if save:
            self._save(offset=self._size, file_id=str(meta["id"]))

    def _choose_name(self) -> tuple[str, set[str]]:
        """Upload under the final name unless a file of that name exists (then under the
        temporary name, renamed over it after verification). Leftover temporary uploads
        of an earlier crash are removed on the way. Returns the name and the ids already
        carrying it."""
        part = part_name(self._name)
        existing = self._p.folders.find_files(self._root, self._parent_id, [self._name, part])
        for leftover in (f for f in existing if f.get("name") == part):
            self._p.delete_id(leftover["id"], f"removing a leftover upload of {self._display}")
        if any(f.get("name") == self._name for f in existing):
            return part, set()
        return self._name, {str(f["id"]) for f in existing if f.get("name") == self._name}

    # -- commit --------------------------------------------------------------------------------

    def commit(self, expected_size: int, expected_hashes: Mapping[str, str]) -> RemoteFile:
        self._check_open()
        if self._end != self._size or expected_size != self._size:
            got = self._end
            self._discard()
            raise TransientError(
                f"verification failed on site '{self._p.site}' for {self._display}: {got} bytes written, "
                f"{self._size} announced, {expected_size} expected; the upload was discarded and the next "
                "attempt starts over")
        if self._done is None:
            if self._small:
                self._finished(self._multipart(), save=False)
            else:
                self._send_rest()
        meta = self._done
        assert meta is not None
        self._verify(meta, expected_size, expected_hashes)
        if self._upload_name != self._name:
            self._replace(meta)
        self._committed = True
        self._closed = True
        self._p.states.delete(self._rootless)
        self._p.folders.note_name(self._parent_id, self._name)
        return remote_file(self._rootless, meta)

    def _send_rest(self) -> None:
        """The last chunk(s), sent by commit. An interruption here (the daily cap, a
        network error, a rate-limit hold) is not a failed upload: Drive keeps the session
        and the state file its confirmed offset, so the writer closes *keeping* them and
        the engine's ``abort`` after a failed commit finds nothing to discard. Otherwise
        the cap landing on a file's last chunk would send the whole file again."""
        try:
            while self._done is None:
                self._send_chunk()
        except (SessionGone, DriveNotFound):
            raise  # nothing left to resume: abort discards as usual
        except TransientError:
            if self._saved_uri:
                self._closed = True
                self._buffer = bytearray()
            raise

    def _multipart(self) -> dict[str, Any]:
        """One request for a small file. A retry first looks for the file a lost answer
        may already have created, so a dropped connection never leaves a duplicate."""
        self._upload_name, before = self._choose_name()
        data = bytes(self._buffer)
        media = MediaIoBaseUpload(io.BytesIO(data), mimetype=_MIME, resumable=False)
        request = self._p.files().create(
            body={"name": self._upload_name, "parents": [self._parent_id]}, media_body=media,
            fields=FILE_FIELDS, supportsAllDrives=True)
        tries = 0

        def call() -> dict[str, Any]:
            nonlocal tries
            if tries:
                found = self._p.folders.find_files(self._root, self._parent_id, [self._upload_name])
                landed = [f for f in found if f["id"] not in before]
                if landed:
                    return landed[-1]
            tries += 1
            return request.execute(num_retries=0)

        try:
            return self._p.caller.run(f"uploading {self._display}", call, upload=True)
        except DriveNotFound:
            self._p.forget_paths()
            raise

    def _verify(self, meta: Mapping[str, Any], expected_size: int,
                expected_hashes: Mapping[str, str]) -> None:
        expected = {k.lower(): v.lower() for k, v in expected_hashes.items()}
        problems = []
        size = int(meta.get("size", -1))
        if size != expected_size:
            problems.append(f"Drive stored {size} bytes, expected {expected_size}")
        matched = 0
        for alg, key in _CHECKSUM_FIELDS.items():
            server = str(meta.get(key) or "").lower()
            if server and alg in expected:
                if server != expected[alg]:
                    problems.append(f"Drive's {key} is {server}, expected {expected[alg]}")
                else:
                    matched += 1
        if not matched and not problems:
            reported = sorted(k for k in _CHECKSUM_FIELDS.values() if meta.get(k)) or ["none"]
            problems.append(f"no checksum to compare (Drive reported {', '.join(reported)}; "
                            f"given {', '.join(sorted(expected)) or 'none'})")
        if problems:
            self._discard()
            raise TransientError(
                f"verification failed on site '{self._p.site}' for {self._display}: {'; '.join(problems)}; "
                "the upload was deleted and the next attempt starts over")

    def _replace(self, meta: dict[str, Any]) -> None:
        """Rename the verified upload over the old file, then move the old one to the trash."""
        new_id = str(meta["id"])
        self._p.caller.run(f"renaming the new {self._display} into place", lambda: (
            self._p.files().update(fileId=new_id, body={"name": self._name}, fields="id",
                                            supportsAllDrives=True).execute(num_retries=0)))
        self._upload_name = self._name
        for old in self._p.folders.find_files(self._root, self._parent_id, [self._name]):
            if old["id"] != new_id:
                self._p.trash_id(old["id"], f"moving the previous {self._display} to the trash")

    # -- abort -----------------------------------------------------------------------------------

    def _discard(self) -> None:
        """Drop everything of this upload: the state, and the uploaded file if Drive
        already has it (unverified, so never to be kept)."""
        self._closed = True
        self._buffer = bytearray()
        self._p.states.delete(self._rootless)
        if self._done is not None and not self._committed:
            done, self._done = self._done, None
            try:
                self._p.delete_id(str(done["id"]), f"deleting the unverified upload of {self._display}")
            except SiteSyncError as exc:
                _log.warning("could not delete the unverified upload of %s: %s", self._display, exc)

    def abort(self, keep_partial: bool) -> None:
        if self._closed:
            return
        if keep_partial and (self._saved_uri or self._done is not None):
            # The state file already holds the session and the confirmed offset (or the
            # finished file): the next attempt continues from there.
            self._closed = True
            self._buffer = bytearray()
            return
        self._discard()
