"""Make the README's screenshots in a real X session (run by scripts/screenshots).

Starts Xvfb + trayer, runs the tray app on a fresh home folder (so the demo project is
created and synced), and captures: the tray with its menu opened by a real right click,
the icon in each state, the Settings dialog and the Sync Queue window.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers.xsession import (  # noqa: E402
    AppProcess,
    Geometry,
    XSession,
    wait_until,
    x_session,
)


def demo_synced(env: dict[str, str]) -> bool:
    done = subprocess.run([sys.executable, "-m", "app", "status", "--json"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        return False
    rows = [r for p in json.loads(done.stdout) for r in p["representations"]]
    return bool(rows) and all(r["status"] in ("Synced", "Not available") for r in rows)


def menu_item(session: XSession, icon: Geometry, *keys: str) -> None:
    wait_until(lambda: not session.visible_windows("POPUP_MENU"), 5, "no menu open")
    session.raise_panel()
    session.click(*icon.centre, button=3)
    wait_until(lambda: session.visible_windows("POPUP_MENU"), 10, "the tray menu")
    session.key(*keys, "Return")


def window_shot(session: XSession, out: Path, title: str, kinds: tuple[str, ...] = ("NORMAL", "DIALOG")
                ) -> Path:
    """Capture the first visible window whose title starts with ``title``."""
    def found():
        return [w for kind in kinds for w in session.visible_windows(kind, name=title)
                if w.geometry.w > 200]

    windows = wait_until(found, 15, f"the {title!r} window")
    time.sleep(1.0)  # let it paint (and a table fill from the database)
    return session.screenshot(out, window=windows[0].id)


def icon_strip(out: Path) -> Path:
    """Every tray state's icon with its name, rendered by Qt from the same SVGs."""
    import os

    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QRect, Qt
    from PySide6.QtGui import QColor, QGuiApplication, QPainter, QPixmap

    from ui.icons import STATE_NAMES, state_icon

    app = QGuiApplication.instance() or QGuiApplication([])
    cell = 120
    strip = QPixmap(cell * len(STATE_NAMES), 110)
    strip.fill(QColor("white"))
    painter = QPainter(strip)
    for i, state in enumerate(STATE_NAMES):
        painter.drawPixmap(i * cell + (cell - 64) // 2, 8, state_icon(state).pixmap(64, 64))
        painter.drawText(QRect(i * cell, 80, cell, 24), Qt.AlignmentFlag.AlignCenter, state)
    painter.end()
    strip.save(str(out))
    del app
    return out


def main(out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sitesync-shots-") as tmp_name:
        tmp = Path(tmp_name)
        with x_session(tmp / "x", screen=(1600, 900)) as session:
            env = session.env
            env.update(SITESYNC_CONFIG=str(tmp / "home" / "settings.json"),
                       SITESYNC_DATA_DIR=str(tmp / "home" / "data"),
                       SITESYNC_LOG_DIR=str(tmp / "home" / "log"), SITESYNC_TRAY_WAIT_S="15",
                       PYTHONPATH=str(REPO))
            app = AppProcess(["tray"], env, tmp / "app.log")
            try:
                icon = wait_until(session.tray_icon, 30, "the tray icon")
                wait_until(lambda: demo_synced(env), 60, "the demo to sync", interval_s=1)
                time.sleep(12)  # the "Downloaded" balloon comes and goes
                panel = session.panel()
                assert panel is not None
                session.click(*icon.centre, button=3)
                menu = wait_until(lambda: session.visible_windows("POPUP_MENU"), 10, "menu")[0]
                shot = session.screenshot(tmp / "menu.png")
                area = Geometry(menu.geometry.x - 120, 0, 1600 - (menu.geometry.x - 120),
                                menu.geometry.y + menu.geometry.h + 16)
                session.crop(shot, out_dir / "tray-menu.png", area)
                session.key("Escape")
                menu_item(session, icon, "Down", "Down", "Down", "Down")  # Settings…
                window_shot(session, out_dir / "settings.png", "SiteSync Settings")
                session.key("Escape")
                menu_item(session, icon, "Down")  # Open Sync Queue
                window_shot(session, out_dir / "sync-queue.png", "SiteSync: Sync Queue",
                            ("NORMAL",))
                menu_item(session, icon, "Up")  # Quit
                rc = app.wait(30)
            finally:
                app.kill()
            print(app.output())
    icon_strip(out_dir / "tray-icons.png")
    for path in sorted(out_dir.glob("*.png")):
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: "
              f"{path.stat().st_size // 1024} KiB")
    return rc


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "img"))
