"""Qt tests run on the offscreen platform unless a display was chosen on purpose.

``live`` is a real environment for the tray: a settings file with two local_drive sites
(this machine and ``studio``) in a temp folder, SiteSync's data/config/log folders pointed
there, an embedded SQLite store, and real files published on either site.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import QCoreApplication, QEvent

from app.publish import build_representation
from app.settings import Settings, load_settings
from app.store.sqlite import SqliteStore

LOCAL_ID = "artist-one"


@pytest.fixture(scope="package", autouse=True)
def _gui_loop(qapp):
    """asyncio on Qt's loop, as in the app (ui/event_loop.py): TaskRunner's tasks resume
    whenever Qt processes events, qtbot's waits included. Closed after the UI tests, so no
    loop stays registered as running in the main thread for the other tests."""
    from ui.event_loop import close_gui_loop, gui_loop

    yield gui_loop()
    close_gui_loop()


@pytest.fixture(autouse=True)
def _always_qapp(qapp):
    """Every UI test gets the QApplication first: touching Qt before it exists crashes."""
    yield


def settings_document(roots: dict[str, Path], **engine: object) -> dict:
    engine_settings = {"workers_per_site": 4, "lease_s": 6, "backoff_base_s": 0.2,
                       "backoff_max_s": 1, "progress_interval_s": 0.1}
    engine_settings.update(engine)
    return {
        "database_url": "",
        "database_name": "avalon",
        "local_id": LOCAL_ID,
        "retry_cnt": 3,
        "loop_delay": 2,
        "publish_site": "local",
        "remote_site": "studio",
        "sites": {name: {"provider": "local_drive", "root": {"work": str(root)}}
                  for name, root in roots.items()},
        "projects": {"keepme": {"retry_cnt": 5}},
        "engine": engine_settings,
    }


@dataclass
class Live:
    tmp: Path
    settings_path: Path
    roots: dict[str, Path]
    stores: list[SqliteStore] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return load_settings(self.settings_path)

    def open_store(self) -> SqliteStore:
        """Another connection to the database the tray uses (``paths.data_dir()``)."""
        (self.tmp / "data").mkdir(exist_ok=True)
        store = SqliteStore(self.tmp / "data" / "sitesync.db")
        self.stores.append(store)
        return store

    def publish(self, store, site: str, asset: str, files: int = 2, size: int = 10_000,
                queued: tuple[str, ...] | None = None) -> str:
        """Real files on ``site``, registered queued for the other site."""
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
            now=datetime.now(timezone.utc))
        store.ensure_project("demo")
        return store.insert_representation(repre)

    def synced(self, store, repre_id: str, site: str) -> bool:
        repre = store.get_representation("demo", repre_id)
        return all(f.site(site) is not None and f.site(site).available for f in repre.files)


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    roots = {LOCAL_ID: tmp_path / "local", "studio": tmp_path / "studio"}
    for root in roots.values():
        root.mkdir()
    settings_path = tmp_path / "settings.json"
    settings_path.write_text(json.dumps(settings_document(roots), indent=2))
    monkeypatch.setenv("SITESYNC_CONFIG", str(settings_path))
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SITESYNC_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.delenv("SITESYNC_LOCAL_ID", raising=False)
    env = Live(tmp_path, settings_path, roots)
    yield env
    for store in env.stores:
        store.close()


@pytest.fixture
def make_controller(live, qtbot):
    """TrayControllers on the live environment; each one quits cleanly at the end."""
    from ui.tray import TrayController

    made: list[TrayController] = []

    def make(**kwargs) -> TrayController:
        kwargs.setdefault("state_path", live.tmp / "data" / "engine.json")
        kwargs.setdefault("notify_interval_s", 0.5)
        kwargs.setdefault("quit_timeout_s", 5)
        controller = TrayController(live.settings, **kwargs)
        made.append(controller)
        return controller

    yield make
    for controller in made:
        if not controller._done:
            with qtbot.waitSignal(controller.finished, timeout=15000):
                controller.quit()
    # Delete them here, on the GUI thread. Left to Python's garbage collector, a
    # controller can be destroyed on whichever thread runs the collection (an engine
    # worker), racing the GUI thread's timers: a segfault in a later test.
    for controller in made:
        controller.deleteLater()
    made.clear()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def started(make_controller, qtbot, **kwargs):
    """A controller whose session (store + running engine) is open."""
    controller = make_controller(**kwargs)
    controller.show()
    with qtbot.waitSignal(controller.session_ready, timeout=15000):
        controller.start()
    return controller
