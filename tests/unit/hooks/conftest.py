"""A hook runner on a real store (both back-ends), real plugin files and real settings."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.hooks import HookRunner
from app.settings import Settings, load_settings
from app.store.base import Store

LOCAL_ID = "artist-one"

#: A plugin that records what it saw in its durable state and in a JSON-lines file.
RECORDER = '''
import json

def register(reg):
    reg.callback(on_event, events=reg.options.get("events"), projects=reg.options.get("projects"),
                 sites=reg.options.get("sites"), args={"out": reg.options["out"], "name": reg.name})

def on_event(event, ctx, args):
    ctx.state.setdefault("seen", []).append(event.id)
    with open(args["out"], "a") as stream:
        stream.write(json.dumps({"plugin": args["name"], "id": event.id, "type": event.type,
                                 "redelivery": ctx.redelivery, "late": ctx.late,
                                 "key": ctx.idempotency_key}) + "\\n")
'''


@dataclass
class HookEnv:
    tmp: Path
    store: Store
    plugins: Path
    out: Path
    settings_path: Path
    runners: list[HookRunner] = field(default_factory=list)
    hooks: dict[str, Any] = field(default_factory=dict)

    def settings(self, **hooks: Any) -> Settings:
        self.hooks.update(hooks)
        raw = {"local_id": LOCAL_ID, "hooks": {
            "plugin_paths": [str(self.plugins)], "poll_interval_s": 0.05,
            "reload_interval_s": 0.1, "gap_timeout_s": 30, **self.hooks}}
        self.settings_path.write_text(json.dumps(raw))
        return load_settings(self.settings_path, platform="linux")

    def plugin(self, name: str, source: str = RECORDER, **options: Any) -> Path:
        path = self.plugins / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        plugins = self.hooks.setdefault("plugins", {})
        plugins[name] = {"out": str(self.out), **options}
        return path

    def runner(self, **hooks: Any) -> HookRunner:
        runner = HookRunner(self.store, self.settings(**hooks), state_dir=self.tmp / "state",
                            log_dir=self.tmp / "logs")
        self.runners.append(runner)
        runner.start()
        return runner

    def event(self, n: int = 1, **kw: Any) -> list[int]:
        kw.setdefault("site", "studio")
        return [self.store.append_event("integrity_alert", kw.pop("project", "demo"),
                                        datetime.now(UTC), **kw) for _ in range(n)]

    def seen(self, plugin: str | None = None) -> list[dict]:
        if not self.out.exists():
            return []
        lines = [json.loads(line) for line in self.out.read_text().splitlines() if line]
        return [r for r in lines if plugin is None or r["plugin"] == plugin]

    def ids(self, plugin: str) -> list[int]:
        return [r["id"] for r in self.seen(plugin)]


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what}")


def _env(tmp_path: Path, store: Store) -> Iterator[HookEnv]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    env = HookEnv(tmp=tmp_path, store=store, plugins=plugins, out=tmp_path / "seen.jsonl",
                  settings_path=tmp_path / "settings.json")
    yield env
    for runner in env.runners:
        runner.stop(timeout_s=5)


@pytest.fixture
def hook_env(tmp_path: Path) -> Iterator[HookEnv]:
    """On the embedded store: for behaviour that does not depend on the back-end."""
    from app.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "sitesync.db")
    try:
        yield from _env(tmp_path, store)
    finally:
        store.close()


@pytest.fixture
def any_hook_env(tmp_path: Path, store: Store) -> Iterator[HookEnv]:
    """On both stores (``store`` is parametrized): for what the back-end decides, like gaps."""
    yield from _env(tmp_path, store)


def make_gap(store: Store, at: datetime | None = None) -> tuple[int, list[int]]:
    """An id that is taken but not committed, as a slow or killed writer leaves it.

    MongoDB: take the id from the counter and never insert. SQLite commits ids in order,
    so the only way to see a gap is an event written with an explicit higher id (dated
    ``at``): that event is returned too. Returns (missing id, ids of events made visible)."""
    now = at or datetime.now(UTC)
    if store.kind == "mongo":
        return store._log._allocate(), []
    missing = store.event_log_info().last_id + 1
    with store._write() as conn:
        conn.execute("INSERT INTO events (id, type, at, project, site) VALUES (?, ?, ?, ?, ?)",
                     (missing + 1, "integrity_alert", now.timestamp(), "demo", "studio"))
    return missing, [missing + 1]


def fill_gap(store: Store, event_id: int) -> None:
    """The slow writer of ``make_gap`` commits after all."""
    now = datetime.now(UTC)
    if store.kind == "mongo":
        from bson import ObjectId

        store._db["sitesync_events"].insert_one({
            "_id": event_id, "uid": ObjectId(), "type": "integrity_alert", "at": now,
            "project": "demo", "site": "studio", "repre_id": "", "file_id": "", "data": {}})
        return
    with store._write() as conn:
        conn.execute("INSERT INTO events (id, type, at, project, site) VALUES (?, ?, ?, ?, ?)",
                     (event_id, "integrity_alert", now.timestamp(), "demo", "studio"))
