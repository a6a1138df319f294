"""The Sync Queue window end to end: a real store, real local_drive sites with real files,
a real Engine behind the real EngineBridge, and the user's actions.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, QPoint, QTimer, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox

from app.events.bus import EventBus
from app.events.types import EngineStateChanged, FileSynced, TransferStarted
from app.model import Direction, Status
from app.settings import SiteConfig, load_settings
from tests.integration.conftest import LOCAL_ID, SyncEnv, write_settings
from ui.bridge import EngineBridge
from ui.queue import SyncQueueWindow
from ui.queue.cells import SITE_ROLE
from ui.queue.columns import column_index

WAIT = 15_000  # ms; CI machines are shared and slow


@pytest.fixture
def env(tmp_path: Path, store_factory) -> SyncEnv:
    roots = {LOCAL_ID: tmp_path / "local", "studio": tmp_path / "studio"}
    for root in roots.values():
        root.mkdir()
    settings_path = tmp_path / "settings.json"
    write_settings(settings_path, roots)
    sync_env = SyncEnv(tmp=tmp_path, store=store_factory(), settings=load_settings(settings_path),
                       roots=roots, settings_path=settings_path)
    yield sync_env
    for engine in sync_env.engines:
        engine.stop(drain=False, timeout_s=10)


#: For tests whose subject is the UI rather than the store (both stores run the first test
#: and the model tests).
sqlite_only = pytest.mark.parametrize("store_factory", ["sqlite"], indirect=True)


class WindowFactory:
    def __init__(self, qtbot, request) -> None:
        self.qtbot = qtbot
        self.windows: list[tuple[SyncQueueWindow, EngineBridge]] = []
        request.addfinalizer(self.close)

    def __call__(self, env: SyncEnv, engine=None, settings=None, bus=None,
                 project: str = "demo") -> SyncQueueWindow:
        bridge = EngineBridge(engine.bus if engine is not None else bus or EventBus())
        window = SyncQueueWindow(env.store, settings or env.settings, bridge, engine)
        window.model.min_merge_interval_s = 0.05
        self.qtbot.addWidget(window)
        self.windows.append((window, bridge))
        window.show()
        window.select_project(project)
        self.qtbot.waitUntil(lambda: window.context is not None, timeout=WAIT)
        settle(self.qtbot, window)
        return window

    def close(self) -> None:
        for window, bridge in self.windows:
            window.shutdown()
            bridge.close()


@pytest.fixture
def open_window(qtbot, request) -> WindowFactory:
    return WindowFactory(qtbot, request)


def settle(qtbot, window: SyncQueueWindow, timeout: int = 20_000) -> None:
    qtbot.waitUntil(lambda: window.model.idle and window.runner.pending == 0, timeout=timeout)


def statuses(window: SyncQueueWindow) -> dict[str, Status]:
    model = window.model
    return {model.row(i).asset: model.row(i).status for i in range(model.rowCount())}


def select(window: SyncQueueWindow, *assets: str) -> None:
    model = window.model
    window.select_ids(model.row(i).repre_id for i in range(model.rowCount())
                      if model.row(i).asset in assets)


def run_action(qtbot, window: SyncQueueWindow, action) -> str:
    assert action.isEnabled(), action.text()
    with qtbot.waitSignal(window.action_done, timeout=WAIT) as blocker:
        action.trigger()
    return blocker.args[0]


def answer_next_dialog(callback) -> None:
    """Drive the next modal dialog (QMessageBox, QInputDialog) from the event loop."""
    def act() -> None:
        dialog = QApplication.activeModalWidget()
        if dialog is None:
            QTimer.singleShot(20, act)
            return
        callback(dialog)
    QTimer.singleShot(20, act)


# -- live updates --------------------------------------------------------------------------


def test_rows_follow_the_engine_live_without_model_resets(qtbot, env, open_window):
    ids = [env.publish(LOCAL_ID, f"sh{i:02d}", files=3) for i in range(6)]
    engine = env.engine()
    window = open_window(env, engine)
    assert statuses(window) == {f"sh{i:02d}": Status.QUEUED for i in range(6)}
    assert "6 representations" in window.counts_label.text()
    select(window, "sh02", "sh04")
    resets = []
    window.model.about_to_reset.connect(lambda: resets.append(1))

    engine.start()
    qtbot.waitUntil(lambda: set(statuses(window).values()) == {Status.SYNCED}, timeout=30_000)
    settle(qtbot, window)
    assert resets == []  # every change came in row by row
    qtbot.waitUntil(lambda: window.engine_label.text() == "Engine: idle", timeout=WAIT)
    assert {r.asset for r in window.selected_rows()} == {"sh02", "sh04"}
    assert window.model.status_counts == {Status.SYNCED: 6}
    remote = window.model.index(0, column_index("remote")).data(SITE_ROLE)
    assert remote.progress == 1.0 and remote.date and remote.provider == "local_drive"
    assert window.model.row(window.model.row_of(ids[0])).remote.status is Status.SYNCED


@sqlite_only
def test_the_status_bar_counts_running_transfers_as_the_tray_does(qtbot, env, open_window):
    env.publish(LOCAL_ID, "sh01", files=1)
    bus = EventBus()
    window = open_window(env, bus=bus)
    now = datetime.now(UTC)

    def transfer(event_type, file_id: str, **extra):
        return event_type(now, "demo", "r1", file_id, f"{{root[work]}}/demo/{file_id}.exr", LOCAL_ID,
                          "studio", Direction.UPLOAD, **extra)

    bus.publish(EngineStateChanged(now, state="running", in_flight=3))
    bus.publish(transfer(TransferStarted, "f1", size=10, resumed_from=0))
    bus.publish(transfer(TransferStarted, "f2", size=10, resumed_from=0))
    qtbot.waitUntil(lambda: window.engine_label.text() == "Engine: running, 2 files transferring",
                    timeout=WAIT)
    bus.publish(transfer(FileSynced, "f1", size=10, checksum="x", seconds=0.1))
    qtbot.waitUntil(lambda: window.engine_label.text() == "Engine: running, 1 file transferring",
                    timeout=WAIT)
    bus.publish(transfer(FileSynced, "f2", size=10, checksum="x", seconds=0.1))
    bus.publish(EngineStateChanged(now, state="idle", message="site nas: folder missing"))
    qtbot.waitUntil(lambda: window.engine_label.text() == "Engine: idle", timeout=WAIT)
    assert window.engine_label.toolTip() == "site nas: folder missing"


# -- actions ---------------------------------------------------------------------------------


@sqlite_only
def test_failed_file_detail_copy_error_and_retry(qtbot, env, open_window):
    env.publish(LOCAL_ID, "good", files=1)
    broken = env.publish(LOCAL_ID, "broken", files=2)
    missing = env.roots[LOCAL_ID] / "demo" / "broken" / "v001" / "broken.1002.exr"
    hidden = env.tmp / "kept-aside.exr"
    shutil.move(missing, hidden)
    engine = env.engine()
    window = open_window(env, engine)
    engine.start()
    qtbot.waitUntil(lambda: statuses(window) == {"good": Status.SYNCED, "broken": Status.FAILED},
                    timeout=30_000)
    select(window, "broken")
    assert window.retry_action.isEnabled() and window.copy_error_action.isEnabled()

    assert run_action(qtbot, window, window.copy_error_action) == "copied"
    copied = QGuiApplication.clipboard().text()
    assert "broken.1002.exr on studio" in copied and str(missing.name) in copied

    window.table.setCurrentIndex(window.model.index(window.model.row_of(broken), 0))
    dialog = window.show_details()
    qtbot.waitUntil(lambda: dialog.model.rowCount() == 2, timeout=WAIT)
    files = {d.path.rsplit("/", 1)[-1]: d for d in dialog.model.files()}
    assert files["broken.1001.exr"].status is Status.SYNCED
    failed = files["broken.1002.exr"]
    assert failed.status is Status.FAILED and failed.remote_status is Status.FAILED
    assert failed.remote.error and failed.remote.tries >= 1
    row = [d.file_id for d in dialog.model.files()].index(failed.file_id)
    assert dialog.model.index(row, 3).data().startswith("Failed")
    dialog.table.selectRow(row)
    assert failed.remote.error in dialog.error_view.toPlainText()
    assert dialog.status_label.text() == "2 files: 1 synced, 1 failed"

    shutil.move(hidden, missing)  # the user fixed the cause
    outcome = run_action(qtbot, window, window.retry_action)
    assert outcome == "retrying 1 file in 1 representation"
    qtbot.waitUntil(lambda: statuses(window)["broken"] is Status.SYNCED, timeout=30_000)
    qtbot.waitUntil(lambda: dialog.model.files()[1].status is Status.SYNCED, timeout=WAIT)
    assert env.same_bytes(failed.path, LOCAL_ID, "studio")


@sqlite_only
def test_pause_resume_and_priority(qtbot, env, open_window):
    env.publish(LOCAL_ID, "hold", files=2)
    env.publish(LOCAL_ID, "go", files=2)
    engine = env.engine()
    window = open_window(env, engine)
    select(window, "hold")
    assert run_action(qtbot, window, window.pause_action) == "paused 1 representation"
    qtbot.waitUntil(lambda: statuses(window)["hold"] is Status.PAUSED, timeout=WAIT)
    assert window.resume_action.isEnabled() and not window.pause_action.isEnabled()

    answer_next_dialog(lambda d: (d.setIntValue(80), d.accept()))
    with qtbot.waitSignal(window.action_done, timeout=WAIT) as blocker:
        window.priority_action.trigger()
    assert blocker.args[0] == "priority 80 on 1 representation"
    qtbot.waitUntil(lambda: window.model.row(window.model.row_of(
        window.selected_rows()[0].repre_id)).priority == 80, timeout=WAIT)

    engine.start()
    qtbot.waitUntil(lambda: statuses(window)["go"] is Status.SYNCED, timeout=30_000)
    assert statuses(window)["hold"] is Status.PAUSED
    select(window, "hold")
    assert run_action(qtbot, window, window.resume_action) == "resumed 1 representation"
    qtbot.waitUntil(lambda: statuses(window)["hold"] is Status.SYNCED, timeout=30_000)
    # A cancelled priority dialog changes nothing.
    answer_next_dialog(lambda d: d.reject())
    window.priority_action.trigger()
    settle(qtbot, window)
    assert window.selected_rows()[0].priority == 80


@sqlite_only
def test_resync_moves_the_files_again_and_never_resets_the_only_copy(qtbot, env, open_window):
    done = env.publish(LOCAL_ID, "done", files=2)
    env.publish(LOCAL_ID, "waiting", files=1)
    engine = env.engine()
    window = open_window(env, engine)
    # Before any sync the studio has nothing: re-syncing the local side would declare
    # the only copy missing, so it is refused.
    select(window, "done", "waiting")
    assert not window.resync_active_action.isEnabled()
    window.resync("active")
    qtbot.waitUntil(lambda: "was not reset" in window.message_label.text(), timeout=WAIT)
    assert statuses(window)["done"] is Status.QUEUED

    engine.start()
    qtbot.waitUntil(lambda: set(statuses(window).values()) == {Status.SYNCED}, timeout=30_000)
    target = env.roots["studio"] / "demo" / "done" / "v001" / "done.1001.exr"
    target.write_bytes(b"damaged by someone")
    select(window, "done")
    assert run_action(qtbot, window, window.resync_remote_action) == "studio: re-syncing 1 representation"

    def resynced() -> bool:
        repre = env.store.get_representation("demo", done)
        return all(f.site("studio").available for f in repre.files) and env.same_bytes(
            "{root[work]}/demo/done/v001/done.1001.exr", LOCAL_ID, "studio")

    qtbot.waitUntil(resynced, timeout=30_000)
    qtbot.waitUntil(lambda: statuses(window)["done"] is Status.SYNCED, timeout=WAIT)


@sqlite_only
def test_resync_refuses_when_the_other_side_lacks_files(qtbot, env, open_window):
    env.publish("studio", "incoming", files=2)  # on the studio, queued for this machine
    window = open_window(env)
    select(window, "incoming")
    assert window.resync_active_action.isEnabled()  # the studio has every file
    outcome = run_action(qtbot, window, window.resync_active_action)
    assert outcome == f"{LOCAL_ID}: re-syncing 1 representation"
    window.resync("remote")  # the local side has nothing: refused, with the reason
    qtbot.waitUntil(lambda: "was not reset" in window.message_label.text(), timeout=WAIT)
    assert f"{LOCAL_ID} does not have 2 files yet" in window.message_label.text()


class _UrlCatcher(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url)


@sqlite_only
def test_open_folder_for_local_drive_sites_only(qtbot, env, open_window):
    env.publish(LOCAL_ID, "shot", files=1)
    catcher = _UrlCatcher()
    QDesktopServices.setUrlHandler("file", catcher, "open")
    try:
        window = open_window(env)
        select(window, "shot")
        assert run_action(qtbot, window, window.open_active_action).startswith("opened ")
        folder = env.roots[LOCAL_ID] / "demo" / "shot" / "v001"
        assert [Path(u.toLocalFile()) for u in catcher.urls] == [folder]
        # The studio has no copy yet: nothing to open, and the user is told why.
        assert not window.open_remote_action.isEnabled()
        window.open_folder("remote")
        qtbot.waitUntil(lambda: "not arrived there yet" in window.message_label.text(), timeout=WAIT)
        assert len(catcher.urls) == 1
    finally:
        QDesktopServices.unsetUrlHandler("file")

    # A site that is not a folder on this machine has no "open" at all.
    cloud = SiteConfig("studio", "gdrive", {}, {})
    defaults = replace(env.settings.defaults, sites={**env.settings.defaults.sites, "studio": cloud})
    other = open_window(env, settings=replace(env.settings, defaults=defaults))
    select(other, "shot")
    assert other.open_active_action.isEnabled() and not other.open_remote_action.isEnabled()
    assert "gdrive" in other.open_remote_action.toolTip()


@sqlite_only
def test_open_folder_opens_each_selected_folder_up_to_a_limit(qtbot, env, open_window, monkeypatch):
    """A selection opens one file-manager window per folder, but a selection of hundreds
    must not open hundreds of windows: past the limit the rest are left out, and the
    message says so."""
    for asset in ("a", "b", "c"):
        env.publish(LOCAL_ID, asset, files=1)
    catcher = _UrlCatcher()
    QDesktopServices.setUrlHandler("file", catcher, "open")
    try:
        window = open_window(env)
        select(window, "a", "b")
        assert run_action(qtbot, window, window.open_active_action) == "opened 2 folders"
        assert window.message_label.text() == "Opened 2 folders"
        root = env.roots[LOCAL_ID] / "demo"
        assert sorted(Path(u.toLocalFile()) for u in catcher.urls) == [root / "a" / "v001",
                                                                      root / "b" / "v001"]
        monkeypatch.setattr("ui.queue.window._OPEN_FOLDERS_MAX", 2)
        catcher.urls.clear()
        select(window, "a", "b", "c")
        assert run_action(qtbot, window, window.open_active_action) == "opened 2 folders"
        assert len(catcher.urls) == 2
        assert "1 more left out" in window.message_label.text()
    finally:
        QDesktopServices.unsetUrlHandler("file")


@sqlite_only
def test_remove_local_copy_keeps_the_only_copy(qtbot, env, open_window):
    uploaded = env.publish(LOCAL_ID, "uploaded", files=2)
    engine = env.engine()
    window = open_window(env, engine)
    engine.start()
    qtbot.waitUntil(lambda: statuses(window) == {"uploaded": Status.SYNCED}, timeout=30_000)
    only_here = env.publish(LOCAL_ID, "only_here", files=1, queued=())  # not subscribed anywhere
    window.refresh()
    settle(qtbot, window)
    local_files = sorted((env.roots[LOCAL_ID] / "demo").rglob("*.exr"))
    assert len(local_files) == 3

    select(window, "uploaded", "only_here")
    answer_next_dialog(lambda box: box.button(QMessageBox.StandardButton.Cancel).click())
    window.remove_local_action.trigger()
    settle(qtbot, window)
    assert sorted((env.roots[LOCAL_ID] / "demo").rglob("*.exr")) == local_files

    answer_next_dialog(lambda box: box.button(QMessageBox.StandardButton.Yes).click())
    with qtbot.waitSignal(window.action_done, timeout=WAIT) as blocker:
        window.remove_local_action.trigger()
    assert blocker.args[0].startswith("removed the local copy of 1 representation (2 files)")
    assert "only_here/renderMain/exr: 1 file exist only on artist-one, kept" in blocker.args[0]
    assert [p.name for p in (env.roots[LOCAL_ID] / "demo").rglob("*.exr")] == ["only_here.1001.exr"]
    assert len(list((env.roots["studio"] / "demo").rglob("*.exr"))) == 2
    repre = env.store.get_representation("demo", uploaded)
    assert all(f.site(LOCAL_ID) is None and f.site("studio").available for f in repre.files)
    assert env.store.get_representation("demo", only_here).files[0].site(LOCAL_ID).available
    qtbot.waitUntil(lambda: window.model.row(window.model.row_of(uploaded)).active.status
                    is Status.NOT_AVAILABLE, timeout=WAIT)


# -- menus, projects, hidden window -----------------------------------------------------------


@sqlite_only
def test_context_menu_offers_what_applies(qtbot, env, open_window):
    env.publish(LOCAL_ID, "one", files=1)
    window = open_window(env)
    pos: QPoint = window.table.visualRect(window.model.index(0, 0)).center()
    window.table.customContextMenuRequested.emit(pos)
    qtbot.waitUntil(window.context_menu.isVisible, timeout=WAIT)
    enabled = {a.text() for a in window.context_menu.actions() if a.isEnabled() and a.text()}
    assert enabled == {"Details…", "Re-sync remote site", "Pause", "Change priority…",
                       "Open active site folder", "Remove local copy…"}
    pause = next(a for a in window.context_menu.actions() if a.text() == "Pause")
    with qtbot.waitSignal(window.action_done, timeout=WAIT):
        pause.trigger()
    window.context_menu.close()
    qtbot.waitUntil(lambda: statuses(window)["one"] is Status.PAUSED, timeout=WAIT)


@sqlite_only
def test_projects_switch_and_pause_persistently(qtbot, env, open_window):
    env.publish(LOCAL_ID, "demo_shot", files=1)
    env.store.ensure_project("alpha")
    engine = env.engine()
    window = open_window(env, engine)
    assert window.projects.list.count() == 2
    window.select_project("demo")
    qtbot.waitUntil(lambda: window.context.project == "demo" and window.model.rowCount() == 1, timeout=WAIT)
    assert window.projects.pause_button.text() == "Pause project"
    with qtbot.waitSignal(window.action_done, timeout=WAIT):
        window.projects.pause_button.click()
    qtbot.waitUntil(lambda: window.projects.pause_button.text() == "Resume project", timeout=WAIT)
    assert [p.paused for p in env.store.list_projects() if p.name == "demo"] == [True]
    assert "(paused)" in window.projects.list.currentItem().text()
    assert window.notice.isVisible() and "paused" in window.notice.text()
    with qtbot.waitSignal(window.action_done, timeout=WAIT):
        window.projects.pause_button.click()
    qtbot.waitUntil(lambda: not window.notice.isVisible(), timeout=WAIT)
    assert [p.paused for p in env.store.list_projects() if p.name == "demo"] == [False]
    window.select_project("alpha")
    qtbot.waitUntil(lambda: window.context.project == "alpha", timeout=WAIT)
    settle(qtbot, window)
    assert window.model.rowCount() == 0 and "0 representations" in window.counts_label.text()


@sqlite_only
def test_projects_that_cannot_sync_say_why_and_offer_no_pause(qtbot, env, open_window):
    env.publish(LOCAL_ID, "demo_shot", files=1)
    for project in ("alpha", "broken"):
        env.store.ensure_project(project)
    defaults = env.settings.defaults
    settings = replace(env.settings, projects={
        **env.settings.projects,
        "alpha": replace(defaults, project="alpha", enabled=False),
        "broken": replace(defaults, project="broken", remote_site="nowhere"),
    })
    window = open_window(env, settings=settings)
    qtbot.waitUntil(lambda: window.projects.list.count() == 3, timeout=WAIT)
    texts = {window.projects.list.item(i).text() for i in range(3)}
    assert texts == {"alpha  (sync disabled)", "broken  (settings error)", "demo"}

    window.select_project("alpha")
    qtbot.waitUntil(lambda: window.projects.current.name == "alpha", timeout=WAIT)
    assert window.context is None and window.model.rowCount() == 0
    assert window.notice.isVisible() and "Sync is disabled for project alpha" in window.notice.text()
    assert not window.projects.pause_button.isEnabled()

    window.select_project("broken")
    qtbot.waitUntil(lambda: window.projects.current.name == "broken", timeout=WAIT)
    assert window.context is None
    assert "Project broken cannot sync: " in window.notice.text() and "nowhere" in window.notice.text()
    assert "nowhere" in window.projects.list.currentItem().toolTip()
    assert not window.projects.pause_button.isEnabled()

    window.select_project("demo")
    qtbot.waitUntil(lambda: window.context is not None and window.model.rowCount() == 1, timeout=WAIT)
    assert not window.notice.isVisible() and window.projects.pause_button.isEnabled()


@sqlite_only
def test_a_hidden_window_catches_up_when_shown(qtbot, env, open_window):
    repre = env.publish(LOCAL_ID, "later", files=1)
    engine = env.engine()
    window = open_window(env, engine)
    window.hide()
    engine.start()
    env.wait_for(lambda: env.store.get_representation("demo", repre).files[0].site("studio").available)
    qtbot.wait(400)  # the bridge's coalesced signals arrive while hidden
    assert statuses(window)["later"] is Status.QUEUED
    env.store.set_project_paused("demo", True)  # from the CLI, say, while hidden
    window.show()
    qtbot.waitUntil(lambda: statuses(window)["later"] is Status.SYNCED, timeout=WAIT)
    qtbot.waitUntil(lambda: "(paused)" in window.projects.list.currentItem().text(), timeout=WAIT)


@sqlite_only
def test_filters_from_the_toolbar(qtbot, env, open_window):
    for name in ("alpha", "beta", "gamma"):
        env.publish(LOCAL_ID, name, files=1)
    window = open_window(env)
    qtbot.keyClicks(window.filter_edit, "ET")
    qtbot.waitUntil(lambda: window.model.text_filter == "ET", timeout=WAIT)
    settle(qtbot, window)
    assert list(statuses(window)) == ["beta"]
    window.status_actions[Status.FAILED].trigger()
    settle(qtbot, window)
    assert window.model.rowCount() == 0 and window.status_button.text() == "Status: Failed"
    assert window.status_actions[Status.QUEUED].text() == "Queued (1)"
    window.status_all.trigger()
    settle(qtbot, window)
    assert list(statuses(window)) == ["beta"] and window.status_button.text() == "Status: all"
