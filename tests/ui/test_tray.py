"""The tray controller on a real engine, a real SQLite store and real local_drive sites."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QSystemTrayIcon, QWidget

from app.events.types import FileFailed
from app.model import Direction
from tests.ui.conftest import LOCAL_ID, started
from ui.bridge import Totals
from ui.icons import STATE_COLOURS
from ui.tray_state import tray_view


def icon_colour(tray: QSystemTrayIcon) -> str:
    """The colour of the icon's disc (top middle, clear of every glyph)."""
    image = tray.icon().pixmap(32, 32).toImage()
    return QColor(image.pixel(16, 4)).name().upper()


# -- the state function -------------------------------------------------------------------------

@pytest.mark.parametrize(("totals", "kwargs", "state", "words"), [
    (Totals(state="idle"), {}, "idle", "all files synced"),
    (Totals(state="running", in_flight=3, bytes_done=512, bytes_total=2048, synced=7),
     {}, "syncing", "syncing 3 files, 25%"),
    (Totals(state="running", in_flight=1), {"paused": True}, "paused", "paused"),
    (Totals(state="idle"), {"failed_representations": 2}, "error", "2 representations failed"),
    (Totals(state="idle", message="site 'gdrive': credentials file missing"), {}, "error",
     "credentials file missing"),
    (Totals(state="offline", message="MongoDB at db:27017 does not answer"), {}, "offline",
     "does not answer"),
    (Totals(state="idle"), {"store_error": "cannot open the database"}, "offline",
     "cannot open the database"),
])
def test_tray_view_per_state(totals, kwargs, state, words):
    kwargs.setdefault("paused", False)
    view = tray_view(totals, **kwargs)
    assert view.state == state
    assert words in view.tooltip


def test_syncing_tooltip_counts_and_progress():
    view = tray_view(Totals(state="running", in_flight=2, bytes_done=3 * 2**20,
                            bytes_total=4 * 2**20, synced=5, failed=1), paused=False,
                     failed_representations=1)
    assert view.tooltip.splitlines() == [
        "SiteSync: syncing 2 files, 75%",
        "3.0 MiB of 4.0 MiB",
        "5 synced, 1 failed since start",
        "1 representation failed: open the Sync Queue to see why and retry",
    ]


# -- the controller on a real engine --------------------------------------------------------------

def test_downloads_sync_and_the_icon_follows_the_engine(live, make_controller, qtbot):
    store = live.open_store()
    repre = live.publish(store, "studio", "sh010", files=3)
    controller = started(make_controller, qtbot)
    texts = [a.text() for a in controller.menu.actions() if not a.isSeparator()]
    assert texts[1:] == ["Open Sync Queue", "Pause syncing", "Sync now", "Settings…", "Event hooks…",
                         "Quit"]
    assert not controller.status_action.isEnabled()  # the first line only tells the state
    qtbot.waitUntil(lambda: live.synced(store, repre, LOCAL_ID), timeout=20000)
    qtbot.waitUntil(lambda: controller.view.state == "idle"
                    and controller.bridge.current_totals.synced == 3, timeout=10000)
    assert controller.view.title == "all files synced"
    assert "3 synced since start" in controller.tray.toolTip()
    assert icon_colour(controller.tray) == STATE_COLOURS["idle"]
    # Files arriving on this machine are announced, aggregated into one notification.
    def downloads():
        return [n for n in controller.notices if n.title.startswith("Downloaded")]

    def files_announced():
        return sum(int(n.title.split()[1]) if n.title != "Downloaded" else 1 for n in downloads())

    qtbot.waitUntil(lambda: files_announced() == 3, timeout=5000)
    assert len(downloads()) <= 2  # the first at once, the rest in one message
    assert all(not n.error for n in downloads())


def test_pause_resume_sync_now_from_the_menu(live, make_controller, qtbot):
    controller = started(make_controller, qtbot)
    engine = controller.engine
    controller.pause_action.trigger()
    assert engine.paused
    assert json.loads((live.tmp / "data" / "engine.json").read_text()) == {"paused": True}
    qtbot.waitUntil(lambda: controller.view.state == "paused")
    assert controller.pause_action.text() == "Resume syncing"
    assert icon_colour(controller.tray) == STATE_COLOURS["paused"]
    # Work published while paused waits.
    store = live.open_store()
    repre = live.publish(store, LOCAL_ID, "sh020", files=2)
    qtbot.wait(700)
    assert not live.synced(store, repre, "studio")
    controller.pause_action.trigger()
    assert not engine.paused
    assert json.loads((live.tmp / "data" / "engine.json").read_text()) == {"paused": False}
    assert controller.pause_action.text() == "Pause syncing"
    qtbot.waitUntil(lambda: live.synced(store, repre, "studio"), timeout=20000)
    qtbot.waitUntil(lambda: controller.view.state == "idle", timeout=10000)

    woken = []
    original = engine.sync_now
    engine.sync_now = lambda: (woken.append(True), original())
    controller.sync_action.trigger()
    assert woken == [True]


def test_failed_files_turn_the_icon_red_and_notify_once(live, make_controller, qtbot):
    store = live.open_store()
    repre = live.publish(store, LOCAL_ID, "broken", files=3)
    for path in (live.roots[LOCAL_ID] / "demo" / "broken" / "v001").iterdir():
        path.unlink()  # missing sources fail permanently
    controller = started(make_controller, qtbot)
    qtbot.waitUntil(lambda: controller.failed_representations == 1, timeout=20000)
    qtbot.waitUntil(lambda: controller.view.state == "error")
    assert "1 representation failed" in controller.tray.toolTip()
    assert icon_colour(controller.tray) == STATE_COLOURS["error"]
    qtbot.waitUntil(lambda: sum(n.error for n in controller.notices) >= 1)
    qtbot.wait(800)  # past the notification interval: the rest arrive aggregated
    failures = [n for n in controller.notices if n.error]
    assert 1 <= len(failures) <= 2
    assert "file" in failures[-1].title or "Could not sync" in failures[-1].title
    assert repre


def test_open_sync_queue_shows_one_window_and_quit_stops_the_engine(live, make_controller, qtbot):
    made = []

    def window(store, settings, bridge, engine):
        widget = QWidget()
        made.append((widget, store, engine))
        return widget

    controller = started(make_controller, qtbot, window_factory=window)
    controller.open_action.trigger()
    controller.tray.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
    assert len(made) == 1 and made[0][0].isVisible()
    assert made[0][1] is controller.store and made[0][2] is controller.engine
    engine, store = controller.engine, controller.store
    with qtbot.waitSignal(controller.finished, timeout=15000):
        controller.quit_action.trigger()
    assert engine.state == "stopped"
    assert not controller.tray.isVisible()
    with pytest.raises(Exception):  # noqa: B017 - the store is closed
        store.list_projects()


def test_the_real_sync_queue_window_opens_from_the_tray(live, make_controller, qtbot):
    from ui.queue import SyncQueueWindow

    store = live.open_store()
    live.publish(store, "studio", "sh010", files=2)
    controller = started(make_controller, qtbot)
    controller.open_action.trigger()
    window = controller.window
    assert isinstance(window, SyncQueueWindow) and window.isVisible()
    assert window.windowTitle() == "SiteSync: Sync Queue"
    assert window.store is controller.store and window.engine is controller.engine
    assert window.bridge is controller.bridge
    qtbot.waitUntil(lambda: window.model.rowCount() == 1, timeout=10000)
    # A second activation raises the same window.
    controller.tray.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
    assert controller.window is window


def test_quit_while_a_transfer_runs_is_bounded_and_counts_no_failure(live, make_controller, qtbot):
    store = live.open_store()
    repre = live.publish(store, LOCAL_ID, "big", files=1, size=64 * 1024 * 1024)
    controller = started(make_controller, qtbot)
    qtbot.waitUntil(lambda: controller.bridge.current_totals.in_flight == 1, timeout=20000)
    started_at = datetime.now(timezone.utc)
    with qtbot.waitSignal(controller.finished, timeout=15000):
        controller.quit()
    assert (datetime.now(timezone.utc) - started_at).total_seconds() < 7
    state = store.get_representation("demo", repre).files[0].site("studio")
    assert state.tries == 0 and state.lease_owner is None


def test_notifications_are_gathered_rate_limited_and_aggregated(qtbot):
    from ui.notifications import Notifier

    shown = []
    notifier = Notifier(shown.append, {LOCAL_ID}, interval_s=0.8, gather_s=0.15)

    def failed(i, permanent=True):
        return FileFailed(datetime.now(timezone.utc), "demo", "r1", f"f{i}",
                          f"{{root[work]}}/demo/sh010/f{i}.exr", LOCAL_ID, "studio",
                          Direction.UPLOAD, error="permission denied", tries=3,
                          permanent=permanent, next_attempt_dt=None)

    # A burst becomes one message; a failure that will be retried is not announced.
    for i in range(3):
        notifier.file_failed(failed(i))
    notifier.file_failed(failed(9, permanent=False))
    assert shown == []
    qtbot.waitUntil(lambda: len(shown) == 1, timeout=2000)
    assert shown[0].title == "3 files failed" and shown[0].error
    assert "f0.exr: permission denied" in shown[0].text
    # Inside the quiet interval nothing more is shown; the next one comes after it.
    notifier.file_failed(failed(5))
    qtbot.wait(400)
    assert len(shown) == 1
    qtbot.waitUntil(lambda: len(shown) == 2, timeout=2000)
    assert shown[1].title == "Could not sync f5.exr"
    assert "To studio" in shown[1].text
    qtbot.wait(1000)
    assert len(shown) == 2


def test_single_instance_second_launch_asks_the_first_to_show(live, qtbot):
    from ui.single_instance import SingleInstance

    first = SingleInstance(live.tmp)
    assert first.acquire()
    second = SingleInstance(live.tmp)
    with qtbot.waitSignal(first.show_requested, timeout=5000):
        assert not second.acquire(wait_ms=1000)
    first.release()
    third = SingleInstance(live.tmp)
    assert third.acquire()
    third.release()


@pytest.mark.slow  # two 5-second server-selection timeouts before the server comes up
def test_database_down_at_start_shows_offline_then_recovers(live, make_controller, qtbot, tmp_path):
    import socket

    from secantus import SecantusDBServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    doc = json.loads(live.settings_path.read_text())
    doc.update(database_url=f"mongodb://127.0.0.1:{port}/", database_name="tray_offline")
    live.settings_path.write_text(json.dumps(doc))
    controller = make_controller(reopen_delays_s=(0.5,))
    controller.show()
    controller.start(create_demo=True)
    qtbot.waitUntil(lambda: controller.view is not None and controller.view.state == "offline",
                    timeout=20000)
    assert f"127.0.0.1:{port}" in controller.tray.toolTip()
    assert "Trying again" in controller.tray.toolTip()
    assert icon_colour(controller.tray) == STATE_COLOURS["offline"]
    assert not controller.pause_action.isEnabled()
    # The database comes up on that address: the tray opens it by itself and syncs.
    server = SecantusDBServer(storage_path=str(tmp_path / "mongo"), port=port, sync_on_commit=True)
    server.__enter__()
    try:
        qtbot.waitUntil(lambda: controller.session is not None, timeout=30000)
        assert controller.store.list_projects()[0].name == "demo"  # the first run's demo
        assert controller.pause_action.isEnabled()
        qtbot.waitUntil(lambda: controller.view.state in ("syncing", "idle"), timeout=10000)
        with qtbot.waitSignal(controller.finished, timeout=15000):
            controller.quit()
    finally:
        server.__exit__(None, None, None)
