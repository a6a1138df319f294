"""The tray in a real X session: Xvfb + trayer (an XEmbed tray host), the app started as
a user starts it, real mouse and keyboard input, screenshots checked pixel by pixel.

Screenshots are kept in ``artifacts/tray-x11/`` (or ``$SITESYNC_TEST_ARTIFACTS``) so a
failing CI run shows what the screen looked like.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QColor, QImage

from app.model import Status
from tests.helpers.xsession import AppProcess, Geometry, XSession, wait_until, x_session
from ui.icons import STATE_COLOURS

pytestmark = pytest.mark.slow

ARTIFACTS = Path(os.environ.get("SITESYNC_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[2] / "artifacts") / "tray-x11"
TOOLS = ("Xvfb", "trayer", "xdotool", "import", "convert", "xwininfo", "xdpyinfo", "xprop")


def colour_share(image_path: Path, area: Geometry, colour: str, tolerance: int = 12) -> float:
    """Fraction of the pixels in ``area`` within ``tolerance`` of ``colour``."""
    image = QImage(str(image_path))
    assert not image.isNull(), image_path
    want = QColor(colour)
    hits = total = 0
    for y in range(area.y, area.y + area.h):
        for x in range(area.x, area.x + area.w):
            got = QColor(image.pixel(x, y))
            total += 1
            if (abs(got.red() - want.red()) <= tolerance and abs(got.green() - want.green()) <= tolerance
                    and abs(got.blue() - want.blue()) <= tolerance):
                hits += 1
    return hits / total


def distinct_colours(image_path: Path, area: Geometry) -> int:
    image = QImage(str(image_path)).copy(area.x, area.y, area.w, area.h)
    return len({image.pixel(x, y) for y in range(image.height()) for x in range(image.width())})


def icon_state(session: XSession, icon: Geometry, shot: Path) -> str | None:
    """The state whose colour fills most of the tray icon on screen now."""
    session.screenshot(shot)
    shares = {state: colour_share(shot, icon, colour) for state, colour in STATE_COLOURS.items()}
    best = max(shares, key=shares.get)
    return best if shares[best] > 0.25 else None


def demo_synced(env: dict[str, str]) -> bool:
    """`sitesync status` (a second process on the same database) says all is done."""
    done = subprocess.run([sys.executable, "-m", "app", "status", "--json"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        return False
    rows = [r for project in json.loads(done.stdout) for r in project["representations"]]
    done_labels = (Status.SYNCED.label, Status.NOT_AVAILABLE.label)
    return bool(rows) and all(r["status"] in done_labels for r in rows)


def open_menu(session: XSession, icon: Geometry) -> Geometry:
    """A real right click on the icon; returns the popup menu's geometry once it shows."""
    wait_until(lambda: not session.visible_windows("POPUP_MENU"), 5, "no menu open")
    session.raise_panel()
    for attempt in range(3):
        # A click landing while the previous popup is still closing can be swallowed by
        # it (a person would click again, and so do we).
        session.click(*icon.centre, button=3)
        try:
            menu = wait_until(lambda: session.visible_windows("POPUP_MENU"), 4,
                              "the tray menu to open")
        except AssertionError:
            if attempt == 2:
                raise
            continue
        return menu[0].geometry
    raise AssertionError("unreachable")


def choose(session: XSession, icon: Geometry, *keys: str) -> Geometry:
    """Open the tray menu with a real right click and pick an item with the keyboard
    (Down from the top: Open Sync Queue, Pause/Resume syncing, Sync now, Settings…;
    Up: Quit)."""
    menu = open_menu(session, icon)
    session.key(*keys, "Return")
    return menu


def test_tray_icon_menu_pause_resume_and_quit_in_a_real_x_session(tmp_path, qapp):
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    assert not missing, f"scripts/test installs these X tools: {missing}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    state_file = home / "data" / "state" / "engine.json"
    with x_session(tmp_path / "x") as session:
        env = session.env
        env.update(SITESYNC_CONFIG=str(home / "settings.json"), SITESYNC_DATA_DIR=str(home / "data"),
                   SITESYNC_LOG_DIR=str(home / "log"), SITESYNC_TRAY_WAIT_S="15")
        env.pop("SITESYNC_LOCAL_ID", None)
        app = AppProcess(["tray"], env, tmp_path / "app.log")
        try:
            # 1. The icon is embedded in the tray host (XEmbed), inside trayer's panel.
            icon = wait_until(session.tray_icon, 30, "the SiteSync icon in the tray")
            assert icon.w >= 16 and icon.h >= 16
            # 2. First run: the demo project syncs; the icon ends green (all synced).
            wait_until(lambda: demo_synced(env), 60, "the demo project to sync", interval_s=1)
            wait_until(lambda: icon_state(session, icon, tmp_path / "s.png") == "idle", 20,
                       "the idle (synced) icon")
            shot = session.screenshot(ARTIFACTS / "tray-idle.png")
            assert colour_share(shot, icon, STATE_COLOURS["idle"]) > 0.25
            # 3. A real right click opens the menu; it shows text (many colours), not a blank box.
            menu = open_menu(session, icon)
            shot = session.screenshot(ARTIFACTS / "tray-menu.png")
            assert menu.w > 100 and menu.h > 100
            assert distinct_colours(shot, menu) > 20
            session.key("Escape")
            # 4. Pause from the menu: the engine's state file says so and the icon turns grey.
            choose(session, icon, "Down", "Down")
            wait_until(lambda: state_file.exists()
                       and json.loads(state_file.read_text()) == {"paused": True}, 10,
                       "the engine to be paused")
            wait_until(lambda: icon_state(session, icon, tmp_path / "s.png") == "paused", 10,
                       "the paused icon")
            session.screenshot(ARTIFACTS / "tray-paused.png")
            # 5. Resume.
            choose(session, icon, "Down", "Down")
            wait_until(lambda: json.loads(state_file.read_text()) == {"paused": False}, 10,
                       "the engine to resume")
            wait_until(lambda: icon_state(session, icon, tmp_path / "s.png") == "idle", 20,
                       "the idle icon again")
            # 6. A second launch hands over to the running tray and exits 0.
            title = "SiteSync: Sync Queue"
            assert not session.visible_windows("NORMAL", name=title)
            second = AppProcess(["tray"], env, tmp_path / "second.log")
            assert second.wait(30) == 0
            assert "already running" in second.output()
            # ... which brings its Sync Queue window up.
            window = wait_until(lambda: session.visible_windows("NORMAL", name=title), 10,
                                "the running tray to show its Sync Queue window")[0]
            assert window.geometry.w > 600
            session.screenshot(ARTIFACTS / "second-launch.png")
            # 7. Quit from the menu: the process ends by itself, cleanly.
            choose(session, icon, "Up")
            assert app.wait(30) == 0, app.output()
            assert session.tray_icon() is None
        finally:
            app.kill()
        log = app.output()
        assert "Traceback" not in log, log
