"""The plugins table, fed by a real HookRunner, never waiting on it in the GUI thread."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from app.hooks import HookRunner
from app.hooks.status import HooksStatus, PluginStatus
from app.settings import load_settings
from app.store.sqlite import SqliteStore
from ui.plugins_view import PluginsView

GOOD = "def register(reg):\n    reg.callback(lambda event, ctx: None)\n"
BAD = ("def register(reg):\n    reg.callback(on_event)\n\n"
       "def on_event(event, ctx):\n    raise KeyError('asset')\n")


@pytest.fixture
def runner(tmp_path: Path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "a_tracker.py").write_text(BAD)
    (plugins / "b_notify.py").write_text(GOOD)
    settings_path = tmp_path / "settings.json"
    settings_path.write_text(json.dumps({"local_id": "artist-one", "hooks": {
        "plugin_paths": [str(plugins)], "poll_interval_s": 0.05, "reload_interval_s": 0.1}}))
    store = SqliteStore(tmp_path / "sitesync.db")
    runner = HookRunner(store, load_settings(settings_path, platform="linux"),
                        state_dir=tmp_path / "state")
    runner.start()
    yield runner
    runner.stop()
    store.close()


def _cell(view, row, column):
    model = view.model
    return model.data(model.index(row, column), Qt.ItemDataRole.DisplayRole)


def test_the_table_shows_plugins_positions_and_errors(qtbot, runner):
    view = PluginsView(runner.status, interval_ms=50)
    qtbot.addWidget(view)
    qtbot.waitUntil(lambda: view.model.rowCount() == 2 and _cell(view, 1, 1) == "idle",
                    timeout=10_000)
    assert [_cell(view, r, 0) for r in range(2)] == ["a_tracker", "b_notify"]
    event_id = runner.store.append_event("integrity_alert", "demo", datetime.now(UTC))
    qtbot.waitUntil(lambda: _cell(view, 0, 1) == "failed", timeout=10_000)
    qtbot.waitUntil(lambda: _cell(view, 1, 2) == str(event_id), timeout=10_000)
    problem = _cell(view, 0, 6)
    assert problem.startswith(f"event {event_id}: KeyError: 'asset' (a_tracker.py:5)")
    qtbot.waitUntil(lambda: _cell(view, 0, 3) == "1", timeout=5000)  # behind by that event
    red = view.model.data(view.model.index(0, 1), Qt.ItemDataRole.ForegroundRole)
    assert red is not None and red.color().name() == "#c62828"
    tooltip = view.model.data(view.model.index(1, 0), Qt.ItemDataRole.ToolTipRole)
    assert "b_notify.py" in tooltip and "callback: <lambda>" in tooltip
    qtbot.waitUntil(lambda: "1 needs attention" in view.header.text(), timeout=5000)
    assert view.header.text().startswith("Hooks: running, 2 plugins, newest event")


def test_a_slow_source_never_blocks_the_gui_thread(qtbot):
    release = threading.Event()
    calls = []

    def slow_status() -> HooksStatus:
        calls.append(time.monotonic())
        release.wait(5)
        return HooksStatus("running", "", 7, (PluginStatus("p", "/p.py", 0, "idle", 7, 0, 0, 3),))

    view = PluginsView(slow_status, interval_ms=20)
    qtbot.addWidget(view)
    qtbot.waitUntil(lambda: bool(calls), timeout=5000)
    ticks = []
    started = time.monotonic()
    for _ in range(10):  # the GUI thread keeps running its event loop meanwhile
        qtbot.wait(20)
        ticks.append(time.monotonic())
    assert ticks[-1] - started < 1.5 and view.model.rowCount() == 0
    release.set()
    qtbot.waitUntil(lambda: view.model.rowCount() == 1, timeout=5000)
    assert _cell(view, 0, 5) == "3"
    view.close()


def test_a_failing_source_is_shown_not_raised(qtbot):
    def broken() -> HooksStatus:
        raise RuntimeError("runner gone")

    view = PluginsView(broken, interval_ms=50)
    qtbot.addWidget(view)
    qtbot.waitUntil(lambda: "status unavailable (runner gone)" in view.header.text(),
                    timeout=5000)
    view.set_source(None)
    assert view.header.text() == "Hooks: not started"
