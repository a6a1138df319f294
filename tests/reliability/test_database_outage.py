"""The studio database goes away mid-run: the MongoDB-wire server (SecantusDB, its own
process here) is killed while files are moving, stays down longer than a lease, and
comes back on the same port with the same data.

The engine must say so (EngineStateChanged "offline" with a message that names the
server and says it retries), keep its hands off the files it cannot record, and carry on
by itself once the server is back: every file synced with the right bytes, no try
counted for the outage, no temporary file left.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pymongo import MongoClient

from app.engine.engine import Engine
from app.events.types import EngineStateChanged, Event, FileSynced
from app.publish import build_representation
from app.settings import load_settings
from app.store.mongo import MongoStore
from tests.integration.conftest import LOCAL_ID, write_settings
from tests.reliability.faulty import FaultPlan, faulty_factory
from tests.reliability.helpers import all_synced, publish, report

pytestmark = pytest.mark.slow

STUDIO = "studio"
LEASE_S = 3
OUTAGE_S = 2 * LEASE_S  # longer than a lease: results of running transfers cannot be recorded


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WireServer:
    """A SecantusDB server process that can be killed and started again on its port."""

    def __init__(self, storage: Path, port: int, log: Path) -> None:
        self.storage, self.port, self.log = storage, port, log
        self.proc: subprocess.Popen | None = None
        self.uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(self.port),
                 "--storage-path", str(self.storage), "--sync-on-commit", "--cache-size", "128M"],
                cwd=self.storage.parent, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with MongoClient(self.uri, serverSelectionTimeoutMS=500) as client:
                    client.admin.command("ping")
                return
            except Exception:
                time.sleep(0.1)
        raise AssertionError(f"SecantusDB did not start\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WireServer]:
    storage = tmp_path / "wire-db"
    storage.mkdir()
    wire = WireServer(storage, _free_port(), tmp_path / "wire.log")
    wire.start()
    try:
        yield wire
    finally:
        wire.stop()


def _publish(store: MongoStore, roots: dict[str, Path], rng: random.Random) -> list[str]:
    ids = []
    for r in range(8):
        folder = roots[LOCAL_ID] / "demo" / f"sh{r:03d}" / "v001"
        folder.mkdir(parents=True)
        paths = []
        for i in range(8):
            path = folder / f"sh{r:03d}.{1001 + i}.exr"
            path.write_bytes(rng.randbytes(rng.choice([100, 50_000, 700_000])))
            paths.append(path)
        repre = build_representation(
            "demo", paths, {"work": str(roots[LOCAL_ID])}, asset=f"sh{r:03d}", subset="render",
            version=1, name="exr", family="render", publish_site=LOCAL_ID, queued_sites=(STUDIO,),
            now=datetime.now(timezone.utc))
        store.ensure_project("demo")
        ids.append(store.insert_representation(repre))
    return ids


def test_engine_goes_offline_and_resumes_by_itself_when_the_database_returns(server, tmp_path):
    roots = {LOCAL_ID: tmp_path / "local", STUDIO: tmp_path / "studio"}
    for root in roots.values():
        root.mkdir()
    settings_path = tmp_path / "settings.json"
    write_settings(settings_path, roots, database_url=server.uri, database_name="outage",
                   lease_s=LEASE_S, workers_per_site=2)
    settings = load_settings(settings_path)
    store = MongoStore(server.uri, database="outage", server_timeout_ms=1500)
    events: list[Event] = []
    try:
        repre_ids = _publish(store, roots, random.Random(99))
        total = 64
        # Stalls keep transfers in flight, so the kill lands while files are moving.
        plan = FaultPlan(stall=0.5, stall_s=0.1)
        engine = Engine(store, settings, state_path=tmp_path / "engine.json",
                        provider_factory=faulty_factory({STUDIO: plan}))
        engine.bus.subscribe(events.append)
        engine.start()
        deadline = time.monotonic() + 60
        while sum(isinstance(e, FileSynced) for e in events) < 10:
            assert time.monotonic() < deadline, "nothing synced before the outage"
            time.sleep(0.05)

        while engine.in_flight == 0:
            assert time.monotonic() < deadline, "no transfer in flight to interrupt"
            time.sleep(0.01)
        server.kill()
        killed_at = time.monotonic()
        while not any(isinstance(e, EngineStateChanged) and e.state == "offline" for e in events):
            assert time.monotonic() - killed_at < 30, "the engine never said it is offline"
            time.sleep(0.05)
        offline = next(e for e in events if isinstance(e, EngineStateChanged) and e.state == "offline")
        assert "cannot be reached" in offline.message and "Retrying automatically" in offline.message
        assert f"127.0.0.1:{server.port}" in offline.message
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - killed_at)))
        assert engine.state == "offline"

        server.start()
        back_at = time.monotonic()
        deadline = back_at + 120
        while not _all_synced(store, repre_ids):
            assert time.monotonic() < deadline, f"not all synced after the database returned; " \
                f"state {engine.state!r} {engine.message!r}"
            time.sleep(0.2)
        after = [e for e in events if isinstance(e, EngineStateChanged)][-1]
        engine.stop()
        assert after.state in ("running", "idle"), after

        for repre_id in repre_ids:
            for f in store.get_representation("demo", repre_id).files:
                target, source = f.site(STUDIO), f.site(LOCAL_ID)
                assert target.tries == 0 and target.error is None, (f.path, target)
                assert target.lease_owner is None and target.checksum == source.checksum
                rel = f.path.replace("{root[work]}/", "")
                assert (roots[STUDIO] / rel).read_bytes() == (roots[LOCAL_ID] / rel).read_bytes()
        assert sum(len(store.get_representation("demo", r).files) for r in repre_ids) == total
        assert not list(roots[STUDIO].rglob("*.sitesync-part"))
        report("db_outage", files=total, outage_s=OUTAGE_S, lease_s=LEASE_S,
               recovered_after_s=round(time.monotonic() - back_at, 1))
    finally:
        store.close()


def _all_synced(store: MongoStore, repre_ids: list[str]) -> bool:
    try:
        return all(f.site(STUDIO).available for r in repre_ids
                   for f in store.get_representation("demo", r).files)
    except Exception:
        return False


REPO_ROOT = Path(__file__).resolve().parents[2]


def test_serve_started_while_the_database_is_down_waits_for_it(server, tmp_path):
    """A studio server that boots before its database (after a power cut) must not exit:
    `serve` says it waits, reports offline, and syncs once the database answers."""
    roots = {LOCAL_ID: tmp_path / "local", STUDIO: tmp_path / "studio"}
    for root in roots.values():
        root.mkdir()
    settings_path = tmp_path / "settings.json"
    write_settings(settings_path, roots, database_url=server.uri, database_name="late")
    store = MongoStore(server.uri, database="late")
    repre_ids = _publish(store, roots, random.Random(5))
    store.close()
    server.stop()

    env = {k: v for k, v in os.environ.items() if not k.startswith("SITESYNC_") and k != "PYTHONPATH"}
    env |= {"SITESYNC_DATA_DIR": str(tmp_path / "data"), "SITESYNC_LOG_DIR": str(tmp_path / "logs"),
            "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "serve.out"
    with open(out, "wb") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "--config", str(settings_path), "serve", "--once"],
            cwd=REPO_ROOT, env=env, stdout=stdout, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "engine offline" not in out.read_text():
            assert proc.poll() is None, f"serve exited while the database was down:\n{out.read_text()}"
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        text = out.read_text()
        assert "database unreachable, waiting for it" in text and "Traceback" not in text, text
        server.start()
        assert proc.wait(120) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = out.read_text()
    assert "stopped: 64 file(s) synced, 0 failure(s)" in text, text
    store = MongoStore(server.uri, database="late")
    try:
        assert _all_synced(store, repre_ids)
    finally:
        store.close()
    report("db_down_at_start", files=64)


@pytest.mark.parametrize("store_factory", ["sqlite"], indirect=True)
def test_embedded_database_locked_by_another_process_is_offline_then_resumes(sync_env, monkeypatch):
    """The embedded store's outage: another process holds the write lock longer than the
    busy timeout (a backup tool, a hung process). The engine says so and carries on."""
    import sqlite3

    import app.store.sqlite as sqlite_store
    from app.store.sqlite import SqliteStore

    env = sync_env
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_S", 0.5)
    store = SqliteStore(env.store.path)  # connections made now wait 0.5 s, not 10
    repre_ids = [publish(env, LOCAL_ID, f"sh{r}", [20_000] * 4, random.Random(r)) for r in range(6)]
    events: list[Event] = []
    engine = Engine(store, env.settings, state_path=env.tmp / "engine.json",
                    provider_factory=faulty_factory({STUDIO: FaultPlan(stall=1.0, stall_s=0.05)}))
    engine.bus.subscribe(events.append)
    try:
        engine.start()
        deadline = time.monotonic() + 30
        while not any(isinstance(e, FileSynced) for e in events):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        locker = sqlite3.connect(env.store.path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            while not any(isinstance(e, EngineStateChanged) and e.state == "offline" for e in events):
                assert time.monotonic() < deadline + 30, "the engine never said it is offline"
                time.sleep(0.05)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        offline = next(e for e in events if isinstance(e, EngineStateChanged) and e.state == "offline")
        assert "locked" in offline.message and "Retrying automatically" in offline.message, offline
        deadline = time.monotonic() + 60
        while not all_synced(env, repre_ids):
            assert time.monotonic() < deadline, f"not resumed: {engine.state} {engine.message}"
            time.sleep(0.1)
        for repre_id in repre_ids:
            for f in env.store.get_representation("demo", repre_id).files:
                assert f.site(STUDIO).tries == 0 and env.same_bytes(f.path, LOCAL_ID, STUDIO)
        report("sqlite_locked", files=24)
    finally:
        engine.stop()
        store.close()
