"""Upload sessions that survive a crash or a restart: one small JSON file per upload.

A resumable upload's session URI stays valid for about a week, so after a crash the
upload can go on from the last byte Drive confirmed instead of from zero (OpenPype kept
nothing and always started over). The file is rewritten after every confirmed chunk,
atomically (temporary file + rename), under the state directory of app/paths.py, which
is owner-only: a session URI lets its holder add bytes to that upload.

Losing or corrupting a state file costs only a re-upload: the confirmed offset is asked
from Drive again before resuming, never taken on trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from app.paths import state_dir

__all__ = ["UploadState", "UploadStates"]

_log = logging.getLogger(__name__)


@dataclass
class UploadState:
    rootless: str
    size: int
    parent_id: str
    name: str
    #: The name the upload was started under: ``name``, or the temporary name when a
    #: file of that name already exists (it is replaced only after verification).
    upload_name: str
    session_uri: str | None = None
    offset: int = 0
    #: Set once Drive has the whole file (not yet verified and renamed).
    file_id: str | None = None


class UploadStates:
    """The state files of one site and account."""

    def __init__(self, site: str, email: str, directory: Path | None = None) -> None:
        self._site = site
        self._email = email
        self._directory = directory

    def _dir(self) -> Path:
        if self._directory is None:
            self._directory = state_dir() / "gdrive-uploads"
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self._directory

    def path(self, rootless: str) -> Path:
        digest = hashlib.sha256(f"{self._site}\0{self._email}\0{rootless}".encode()).hexdigest()[:40]
        return self._dir() / f"{digest}.json"

    def load(self, rootless: str) -> UploadState | None:
        path = self.path(rootless)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            state = UploadState(**raw)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            _log.warning("ignoring unreadable upload state %s (%s); the upload starts over", path, exc)
            self.delete(rootless)
            return None
        return state if state.rootless == rootless else None

    def save(self, state: UploadState) -> None:
        path = self.path(state.rootless)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(asdict(state), stream)
        os.replace(tmp, path)

    def delete(self, rootless: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(rootless))

    def sweep(self, max_age_s: float) -> list[str]:
        """Remove this site's state files not written for ``max_age_s``; their paths."""
        cutoff = time.time() - max_age_s
        removed = []
        for path in self._dir().glob("*.json"):
            try:
                if path.stat().st_mtime >= cutoff:
                    continue
                state = json.loads(path.read_text(encoding="utf-8"))
                if path != self.path(str(state.get("rootless", ""))):
                    continue  # another site's or account's upload
                path.unlink()
            except (OSError, ValueError, AttributeError):
                continue
            removed.append(str(path))
        return removed
