"""Each test gets its own Drive emulator and a factory for providers pointed at it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.gdrive import GDriveProvider
from providers.registry import create_provider
from tests.gdrive_emulator.fixtures import DriveEnv, drive_env

SITE = "gdrive"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DriveEnv]:
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "data"))
    with drive_env(tmp_path) as made:
        yield made


@pytest.fixture
def make(env: DriveEnv) -> Iterator[Callable[..., GDriveProvider]]:
    made: list[GDriveProvider] = []

    def factory(root: Any = "/My Drive/sitesync", site: str = SITE, **options: Any) -> GDriveProvider:
        provider = create_provider("gdrive", site, env.site(root, **options))
        assert isinstance(provider, GDriveProvider)
        made.append(provider)
        return provider

    yield factory
    for provider in made:
        provider.close()


def hashes(data: bytes) -> dict[str, str]:
    """What the engine passes to commit for a Drive target: SHA-256 and md5."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}


def put(provider: GDriveProvider, path: str, data: bytes, chunk: int = 1 << 20) -> Any:
    with provider.open_writer(path, len(data), resume=False) as writer:
        for start in range(0, len(data), chunk):
            writer.write(data[start:start + chunk])
        return writer.commit(len(data), hashes(data))


def read(provider: GDriveProvider, path: str, offset: int = 0) -> bytes:
    out = bytearray()
    with provider.open_reader(path, offset) as reader:
        while block := reader.read(1 << 20):
            out += block
    return bytes(out)
