"""Reading one file from Drive: ranged GETs of ``download_chunk_size`` bytes.

Each range is one request (``alt=media`` with ``Range: bytes=a-b``), retried on its own
through the pacer, so a dropped connection costs one range, not the file, and a resumed
transfer starts at any offset. The reader reports Drive's checksums (:attr:`hashes`);
the engine hashes the bytes as they pass and refuses the copy if they differ, before
the target renames anything into place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from googleapiclient.errors import HttpError

from app.errors import TransientError
from providers.base import Reader
from providers.gdrive.upload import remote_file

if TYPE_CHECKING:
    from providers.gdrive.provider import GDriveProvider

__all__ = ["DriveReader"]

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DriveReader(Reader):
    """Streams a Drive file from ``offset``.

    It keeps the API client of the thread that opened it: the engine may hand a reader
    to its read-ahead thread, and the opening thread does not use the client meanwhile.
    """

    def __init__(self, provider: GDriveProvider, rootless: str, meta: Mapping[str, Any], offset: int) -> None:
        self._p = provider
        self._display = provider.resolve(rootless)
        self._id = str(meta["id"])
        self._size = int(meta.get("size", 0))
        self._pos = min(offset, self._size)
        self._buffer = memoryview(b"")
        self._files = provider.files()
        self._chunk = provider.options.download_chunk_size
        self.hashes = dict(remote_file(rootless, meta).hashes)

    def read(self, size: int) -> bytes:
        if not self._buffer:
            if self._pos >= self._size:
                return b""
            self._buffer = memoryview(self._fetch(self._pos))
        out = bytes(self._buffer[:size])
        self._buffer = self._buffer[len(out):]
        self._pos += len(out)
        return out

    def _fetch(self, start: int) -> bytes:
        last = min(self._size, start + self._chunk) - 1
        request = self._files.get_media(fileId=self._id, supportsAllDrives=True)

        def call() -> bytes:
            headers = {**request.headers, "range": f"bytes={start}-{last}"}
            resp, content = request.http.request(request.uri, "GET", headers=headers)
            if resp.status == 206:
                match = _CONTENT_RANGE.fullmatch(resp.get("content-range", ""))
                if match is None or int(match.group(1)) != start:
                    raise TransientError(f"Drive answered the wrong range for {self._display} "
                                         f"({resp.get('content-range')!r}); will retry")
                if match.group(3) != "*" and int(match.group(3)) != self._size:
                    raise TransientError(f"{self._display} changed on Drive while it was read "
                                         f"(now {match.group(3)} bytes, was {self._size}); will retry")
                return content
            if resp.status == 200:  # the whole file, range ignored (a proxy may do that)
                if len(content) != self._size:
                    raise TransientError(f"{self._display} changed on Drive while it was read; will retry")
                return content[start:last + 1]
            raise HttpError(resp, content, uri=request.uri)

        data = self._p.caller.run(f"downloading {self._display}", call)
        if not data:
            raise TransientError(f"Drive sent no data for {self._display} at byte {start}; will retry")
        return data

    def close(self) -> None:
        self._buffer = memoryview(b"")
