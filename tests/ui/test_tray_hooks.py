"""The tray runs the event hook plugins beside its engine and shows them from its menu."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt

from tests.ui.conftest import LOCAL_ID, started

AUDIT = '''
import json

def register(reg):
    reg.callback(on_event, events=["file_synced", "representation_ready"],
                 args={"out": reg.options["out"]})

def on_event(event, ctx, args):
    with open(args["out"], "a") as stream:
        stream.write(json.dumps({"id": event.id, "type": event.type, "site": event.site}) + "\\n")
'''
BROKEN = '''
def register(reg):
    reg.callback(on_event, events=["representation_ready"])

def on_event(event, ctx):
    raise KeyError("shot")
'''


def _cell(view, row, column):
    return view.model.data(view.model.index(row, column), Qt.ItemDataRole.DisplayRole)


def _plugins_settings(live, out):
    plugins = live.tmp / "plugins"
    plugins.mkdir()
    (plugins / "a_audit.py").write_text(AUDIT)
    (plugins / "b_tracker.py").write_text(BROKEN)
    raw = json.loads(live.settings_path.read_text())
    raw["hooks"] = {"plugin_paths": [str(plugins)], "poll_interval_s": 0.05,
                    "reload_interval_s": 0.1, "plugins": {"a_audit": {"out": str(out)}}}
    live.settings_path.write_text(json.dumps(raw))


def test_event_hooks_open_from_the_tray_menu_and_show_positions_and_errors(live, make_controller,
                                                                            qtbot):
    out = live.tmp / "audit.jsonl"
    _plugins_settings(live, out)
    controller = started(make_controller, qtbot)
    assert "Event hooks…" in [a.text() for a in controller.menu.actions()]
    controller.plugins_action.trigger()  # what a click on the menu item does
    view = controller.plugins_window
    assert view is not None and view.isVisible()
    assert view.windowTitle() == "SiteSync: Event hooks"
    qtbot.waitUntil(lambda: view.model.rowCount() == 2 and _cell(view, 1, 1) == "idle",
                    timeout=15_000)
    assert [_cell(view, r, 0) for r in range(2)] == ["a_audit", "b_tracker"]

    # A publish on the studio syncs down; the plugins see it through the event log.
    store = live.open_store()
    repre_id = live.publish(store, "studio", "sh010", files=2)
    qtbot.waitUntil(lambda: live.synced(store, repre_id, LOCAL_ID), timeout=20_000)
    qtbot.waitUntil(lambda: _cell(view, 1, 1) == "failed", timeout=15_000)
    qtbot.waitUntil(lambda: out.exists() and len(out.read_text().splitlines()) == 3, timeout=15_000)
    seen = [json.loads(line) for line in out.read_text().splitlines()]
    assert [s["type"] for s in seen] == ["file_synced", "file_synced", "representation_ready"]
    assert all(s["site"] == LOCAL_ID for s in seen)
    ready = seen[-1]["id"]
    # The failing plugin stops alone, at the event before the one it failed on, and says why.
    qtbot.waitUntil(lambda: _cell(view, 0, 2) == str(ready) and _cell(view, 0, 1) == "idle",
                    timeout=15_000)
    problem = _cell(view, 1, 6)
    assert problem.startswith(f"event {ready}: KeyError: 'shot'"), problem
    assert int(_cell(view, 1, 2)) < ready
    assert "1 needs attention" in view.header.text()

    # The menu item raises the same window; quitting closes it and stops the hooks.
    controller.plugins_action.trigger()
    assert controller.plugins_window is view
    hooks = controller.session.hooks
    with qtbot.waitSignal(controller.finished, timeout=15_000):
        controller.quit_action.trigger()
    assert controller.plugins_window is None and hooks.status().state == "stopped"


def test_the_hooks_window_waits_for_the_session_and_follows_a_restart(live, make_controller, qtbot):
    controller = make_controller()
    controller.plugins_action.trigger()  # before the database is open
    view = controller.plugins_window
    assert view.header.text() == "Hooks: not started"
    with qtbot.waitSignal(controller.session_ready, timeout=15_000):
        controller.start()
    first = controller.session.hooks
    qtbot.waitUntil(lambda: view.header.text().startswith("Hooks: running"), timeout=15_000)
    # A local_id change restarts the engine (and its hooks): the window follows the new runner.
    changed = live.settings_path.read_text().replace(f'"{LOCAL_ID}"', '"artist-two"')
    live.settings_path.write_text(changed)
    from app.settings import load_settings

    with qtbot.waitSignal(controller.session_ready, timeout=15_000):
        controller.apply_settings(load_settings(live.settings_path))
    assert controller.session.hooks is not first and first.status().state == "stopped"
    qtbot.waitUntil(lambda: view.header.text().startswith("Hooks: running"), timeout=15_000)
