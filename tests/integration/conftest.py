"""An end-to-end sync environment: two real local_drive sites, real settings, a real store.

``sync_env`` is parametrized over both store back-ends through ``store_factory``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from app.engine.engine import Engine
from app.events.types import Event
from app.publish import build_representation
from app.settings import Settings, load_settings
from app.store.base import Store

LOCAL_ID = "artist-one"


def write_settings(path: Path, roots: dict[str, Path], *, database_url: str = "",
                   database_name: str = "avalon", **engine: object) -> None:
    engine_settings = {"workers_per_site": 4, "lease_s": 6, "backoff_base_s": 0.2,
                       "backoff_max_s": 1, "progress_interval_s": 0.1}
    engine_settings.update(engine)
    raw = {
        "database_url": database_url,
        "database_name": database_name,
        "local_id": LOCAL_ID,
        "retry_cnt": 3,
        "loop_delay": 2,
        "publish_site": "local",
        "remote_site": "studio",
        "sites": {name: {"provider": "local_drive", "root": {"work": str(root)}}
                  for name, root in roots.items()},
        "engine": engine_settings,
    }
    path.write_text(json.dumps(raw, indent=2))


@dataclass
class SyncEnv:
    tmp: Path
    store: Store
    settings: Settings
    roots: dict[str, Path]
    settings_path: Path
    events: list[Event] = field(default_factory=list)
    engines: list[Engine] = field(default_factory=list)

    def publish(self, site: str, asset: str, files: int = 2, size: int = 10_000,
                queued: tuple[str, ...] | None = None, priority: int | None = None) -> str:
        """Write real files on ``site`` and register them queued for the other site."""
        other = "studio" if site == LOCAL_ID else LOCAL_ID
        folder = self.roots[site] / "demo" / asset / "v001"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(files):
            path = folder / f"{asset}.{1001 + i}.exr"
            path.write_bytes(os.urandom(size + i))
            paths.append(path)
        repre = build_representation(
            "demo", paths, {"work": str(self.roots[site])}, asset=asset, subset="renderMain",
            version=1, name="exr", family="render", publish_site=site,
            queued_sites=queued if queued is not None else (other,),
            now=datetime.now(timezone.utc), priority=priority,
        )
        self.store.ensure_project("demo")
        return self.store.insert_representation(repre)

    def engine(self, **kwargs: object) -> Engine:
        engine = Engine(self.store, self.settings, state_path=self.tmp / "engine.json", **kwargs)
        engine.bus.subscribe(self._record)
        self.engines.append(engine)
        return engine

    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of_type(self, kind: type) -> list:
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout} s; events: {self.events[-10:]}")

    def same_bytes(self, rootless: str, a: str, b: str) -> bool:
        rel = rootless.replace("{root[work]}/", "")
        return (self.roots[a] / rel).read_bytes() == (self.roots[b] / rel).read_bytes()

    def part_files(self) -> list[Path]:
        return [p for root in self.roots.values() for p in root.rglob("*.sitesync-part")]


@pytest.fixture
def sync_env(tmp_path: Path, store_factory, request) -> SyncEnv:
    roots = {LOCAL_ID: tmp_path / "local", "studio": tmp_path / "studio"}
    for root in roots.values():
        root.mkdir()
    settings_path = tmp_path / "settings.json"
    write_settings(settings_path, roots)
    env = SyncEnv(tmp=tmp_path, store=store_factory(), settings=load_settings(settings_path),
                  roots=roots, settings_path=settings_path)
    yield env
    for engine in env.engines:
        engine.stop(drain=False, timeout_s=10)
