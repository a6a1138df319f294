"""Ready-made emulator setups for tests and the benchmark.

The service-account key is generated once per process (RSA generation is the slow
part); each :class:`DriveEnv` gets its own emulator on a free port, with that key's
public half registered, a key file whose ``token_uri`` points at it, and the folders
the sites use as roots.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.gdrive_emulator.auth import ServiceAccountKey
from tests.gdrive_emulator.server import UNIT, FakeDrive

__all__ = ["FAST", "DriveEnv", "drive_env", "service_key"]

#: Options that keep tests quick: no pacing to speak of, millisecond back-offs, small
#: chunks so a few MiB already make a multi-chunk resumable upload.
FAST: dict[str, Any] = {
    "max_calls_per_s": 1000,
    "max_backoff_s": 0.05,
    "max_retries": 6,
    "chunk_size": UNIT,
    "download_chunk_size": UNIT,
    "upload_limit_wait_s": 1,
    "timeout_s": 20,
}

MY_ROOT = "/My Drive/sitesync"
SHARED_DRIVE = "Studio Team"
SHARED_ROOT = f"/{SHARED_DRIVE}/projects"


@functools.cache
def service_key() -> ServiceAccountKey:
    return ServiceAccountKey.generate()


@dataclass
class DriveEnv:
    drive: FakeDrive
    key: ServiceAccountKey
    key_file: Path

    def site(self, root: str | dict[str, str] = MY_ROOT, **options: Any) -> dict[str, Any]:
        """A gdrive site's settings for this emulator (FAST unless overridden)."""
        roots = {"work": root} if isinstance(root, str) else dict(root)
        return {"root": roots, "credentials_url": str(self.key_file), "api_url": self.drive.url,
                **FAST, **options}


def _prepare(drive: FakeDrive, folder: Path) -> DriveEnv:
    key = service_key()
    drive.add_account(key)
    key_file = key.write(folder / "service-account.json", drive.token_uri)
    drive.mkdir(MY_ROOT)
    drive.add_shared_drive(SHARED_DRIVE)
    drive.mkdir(SHARED_ROOT)
    return DriveEnv(drive, key, key_file)


@contextmanager
def drive_env(folder: Path, **kwargs: Any) -> Iterator[DriveEnv]:
    """A fresh emulator for one test: roots /My Drive/sitesync and /Studio Team/projects."""
    with FakeDrive(**kwargs) as drive:
        yield _prepare(drive, folder)
