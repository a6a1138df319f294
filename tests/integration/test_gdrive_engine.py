"""The engine between an artist's local_drive site and a gdrive site on the Drive emulator:
both directions on both stores, the daily upload cap, and a killed `serve` process that
resumes a large upload without re-sending what Drive confirmed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from app.engine.engine import Engine
from app.events.types import Event, FileFailed, FileSynced
from app.model import Status
from app.publish import build_representation
from app.settings import Settings, load_settings
from app.status import site_status
from app.store.base import Store
from tests.gdrive_emulator import UNIT
from tests.gdrive_emulator.fixtures import DriveEnv, drive_env

LOCAL_ID = "artist-one"
PROJECT = "demo"
DRIVE_ROOT = "/My Drive/sitesync"
REPO_ROOT = Path(__file__).resolve().parents[2]


def write_settings(path: Path, local_root: Path, env: DriveEnv, *, database_url: str = "",
                   database_name: str = "avalon", **gdrive: Any) -> None:
    raw = {
        "database_url": database_url, "database_name": database_name, "local_id": LOCAL_ID,
        "retry_cnt": 3, "loop_delay": 2, "publish_site": "local", "remote_site": "gdrive",
        "sites": {
            "local": {"provider": "local_drive", "root": {"work": str(local_root)}},
            "gdrive": {"provider": "gdrive", **env.site(DRIVE_ROOT, **gdrive)},
        },
        "engine": {"workers_per_site": 4, "lease_s": 6, "backoff_base_s": 0.2, "backoff_max_s": 1,
                   "progress_interval_s": 0.2},
    }
    path.write_text(json.dumps(raw, indent=2))


@dataclass
class DriveSync:
    tmp: Path
    drive: DriveEnv
    store: Store
    settings: Settings
    local_root: Path
    events: list[Event] = field(default_factory=list)
    engines: list[Engine] = field(default_factory=list)

    def publish(self, asset: str, sizes: list[int]) -> str:
        folder = self.local_root / PROJECT / asset / "v001"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, size in enumerate(sizes):
            path = folder / f"{asset}.{1001 + i}.exr"
            path.write_bytes(os.urandom(size))
            paths.append(path)
        repre = build_representation(
            PROJECT, paths, {"work": str(self.local_root)}, asset=asset, subset="renderMain", version=1,
            name="exr", family="render", publish_site=LOCAL_ID, queued_sites=("gdrive",),
            now=datetime.now(timezone.utc))
        self.store.ensure_project(PROJECT)
        return self.store.insert_representation(repre)

    def engine(self) -> Engine:
        engine = Engine(self.store, self.settings, state_path=self.tmp / "engine.json")
        engine.bus.subscribe(self.events.append)
        self.engines.append(engine)
        return engine

    def states(self, repre_id: str, site: str) -> list:
        return [f.site(site) for f in self.store.get_representation(PROJECT, repre_id).files]

    def synced(self, repre_id: str, site: str) -> bool:
        return all(s is not None and s.available for s in self.states(repre_id, site))

    def drive_path(self, rootless: str) -> str:
        return rootless.replace("{root[work]}", DRIVE_ROOT)

    def local_path(self, rootless: str) -> Path:
        return self.local_root / rootless.replace("{root[work]}/", "")


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture
def drive_sync(tmp_path: Path, store_factory, monkeypatch: pytest.MonkeyPatch) -> Iterator[DriveSync]:
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "data"))
    local_root = tmp_path / "local"
    local_root.mkdir()
    with drive_env(tmp_path) as env:
        settings_path = tmp_path / "settings.json"
        write_settings(settings_path, local_root, env)
        sync = DriveSync(tmp_path, env, store_factory(), load_settings(settings_path), local_root)
        try:
            yield sync
        finally:
            for engine in sync.engines:
                engine.stop(drain=False, timeout_s=10)


def test_studio_to_drive_and_back(drive_sync: DriveSync) -> None:
    sync = drive_sync
    drive = sync.drive.drive
    repre_id = sync.publish("sh010", [5 * UNIT + 11, 1000, 0])
    engine = sync.engine()
    engine.start()
    wait_for(lambda: sync.synced(repre_id, "gdrive"), what="upload to Drive")
    repre = sync.store.get_representation(PROJECT, repre_id)
    for f in repre.files:
        on_drive = drive.find(sync.drive_path(f.path))
        assert len(on_drive) == 1 and on_drive[0].content == sync.local_path(f.path).read_bytes()
        state = f.site("gdrive")
        assert state.id == on_drive[0].id, "OpenPype's `id` is the Drive file id"
        assert state.checksum == f.site(LOCAL_ID).checksum
        assert state.tries == 0 and state.lease_owner is None

    # The artist's copies go away; the local site is reset: everything comes back from Drive.
    for f in repre.files:
        sync.local_path(f.path).unlink()
        sync.store.reset_site(PROJECT, repre_id, LOCAL_ID, f.id)
    engine.sync_now()
    wait_for(lambda: sync.synced(repre_id, LOCAL_ID), what="download from Drive")
    for f in repre.files:
        assert sync.local_path(f.path).read_bytes() == drive.read(sync.drive_path(f.path))
        state = sync.store.get_representation(PROJECT, repre_id).file(f.id).site(LOCAL_ID)
        assert state.checksum == "sha256:" + hashlib.sha256(sync.local_path(f.path).read_bytes()).hexdigest()
    assert not list(sync.local_root.rglob("*.sitesync-part"))
    assert drive.token_grants == 1, "one token for the whole run"
    assert not [e for e in sync.events if isinstance(e, FileFailed)]
    assert drive.short_bodies == 0


@pytest.mark.parametrize("store_factory", ["sqlite"], indirect=True)
def test_the_daily_cap_holds_the_site_without_counting_tries(drive_sync: DriveSync) -> None:
    sync = drive_sync
    drive = sync.drive.drive
    drive.upload_cap_bytes = 0
    repre_id = sync.publish("capped", [2000, 3000, 4000])
    engine = sync.engine()
    engine.start()
    wait_for(lambda: "daily upload limit" in engine.message, what="the hold message")
    assert "site gdrive paused until" in engine.message
    time.sleep(0.5)
    for state in sync.states(repre_id, "gdrive"):
        assert state.tries == 0 and state.error is None and state.lease_owner is None
        assert site_status(state, 3, datetime.now(timezone.utc)) is Status.QUEUED
    assert not [e for e in sync.events if isinstance(e, FileFailed)]
    attempts = drive.count("multipart")
    assert attempts <= 4, "the site is held, not hammered file after file"

    drive.upload_cap_bytes = None  # Google lifts the limit; the hold (1 s here) ends
    wait_for(lambda: sync.synced(repre_id, "gdrive"), what="upload after the hold")
    wait_for(lambda: "daily upload limit" not in engine.message, what="message cleared")
    assert len([e for e in sync.events if isinstance(e, FileSynced)]) == 3


# -- a killed process resumes its upload -----------------------------------------------------


@pytest.mark.slow
def test_a_killed_serve_resumes_a_large_upload_without_resending(tmp_path: Path) -> None:
    from app.store.sqlite import SqliteStore

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    local_root = tmp_path / "local"
    local_root.mkdir()
    size = 96 * UNIT + 12345  # 24 MiB in 256 KiB chunks
    with drive_env(tmp_path) as env:
        drive = env.drive
        drive.chunk_delay_s = 0.02  # about 2 s of upload: room to kill it mid-way
        settings_path = tmp_path / "settings.json"
        write_settings(settings_path, local_root, env)
        store = SqliteStore(data_dir / "sitesync.db")
        sync = DriveSync(tmp_path, env, store, load_settings(settings_path), local_root)
        repre_id = sync.publish("plate", [size])
        rootless = store.get_representation(PROJECT, repre_id).files[0].path
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("SITESYNC_")}
        child_env |= {"SITESYNC_DATA_DIR": str(data_dir), "SITESYNC_LOG_DIR": str(tmp_path / "logs"),
                      "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}

        def serve() -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-m", "app", "--config", str(settings_path), "serve", "--once"],
                cwd=REPO_ROOT, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        first = serve()
        try:
            wait_for(lambda: drive.upload_bytes >= size // 3, timeout=60, what="a third uploaded")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        confirmed_before = max((len(s.data) for s in drive.sessions.values()), default=0)
        assert 0 < confirmed_before < size
        assert drive.find(sync.drive_path(rootless)) == [], "nothing visible half-uploaded"
        state = sync.states(repre_id, "gdrive")[0]
        assert state.tries == 0 and not state.available, "a kill is not a try"
        if state.lease_until is not None:  # the dead process's claim lapses first
            time.sleep(max(0.0, (state.lease_until - datetime.now(timezone.utc)).total_seconds()) + 0.2)

        drive.chunk_delay_s = 0.0
        second = serve()
        output, _ = second.communicate(timeout=120)
        assert second.returncode == 0, output.decode(errors="replace")
        assert sync.synced(repre_id, "gdrive")
        assert drive.read(sync.drive_path(rootless)) == sync.local_path(rootless).read_bytes()
        resent = drive.upload_bytes - size
        assert 0 <= resent <= UNIT, f"{resent} bytes sent twice; at most the chunk in flight may be"
        assert drive.count("upload-status") == 1, "the second run asked Drive where to go on"
        assert drive.count("upload-init") == 1, "and did not start a new session"
        assert not list((data_dir / "state" / "gdrive-uploads").glob("*.json"))
        store.close()
