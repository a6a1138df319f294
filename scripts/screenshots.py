"""Make the README's screenshots in a real X session (run by scripts/screenshots).

Starts Xvfb + trayer, runs the tray app on a fresh home folder holding the demo project
and, published with the CLI before the tray starts, a large representation that is still
moving when the pictures are taken (the studio site is limited to 6 MiB/s), one whose
source file is missing (Failed), one paused and one waiting. It captures: the Sync Queue
window mid-sync, the tray with its menu opened by a real right click, the Settings
dialog, and the icon in each state.
"""

from __future__ import annotations

import json
import os
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


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "app", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"sitesync {' '.join(args)}: {done.stderr or done.stdout}")
    return done.stdout


def rows_by_asset(env: dict[str, str]) -> dict[str, dict]:
    return {r["asset"]: r for p in json.loads(cli(env, "status", "--json"))
            for r in p["representations"]}


def publish(env: dict[str, str], root: Path, asset: str, subset: str, name: str, files: int,
            size: int, priority: int) -> str:
    """Real files on this machine's site, published as the pipeline would; returns the id."""
    folder = root / "demo" / asset / "v001"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        path = folder / f"{asset}_{subset}.{1001 + i}.{name}"
        path.write_bytes(os.urandom(size))
        paths.append(str(path))
    out = cli(env, "publish", "--project", "demo", "--asset", asset, "--subset", subset,
              "--version", "1", "--name", name, "--priority", str(priority), *paths)
    return out.split(" as representation ", 1)[1].split()[0]


def stage(env: dict[str, str], settings_path: Path) -> None:
    """The demo project plus work in every state (see the module docstring)."""
    cli(env, "demo")
    doc = json.loads(settings_path.read_text())
    doc["sites"]["studio"].update(bwlimit="6M", transfers=2)
    settings_path.write_text(json.dumps(doc, indent=2))
    root = Path(doc["sites"]["local"]["root"]["work"])
    publish(env, root, "sh040", "renderMain", "exr", 24, 4 << 20, 40)  # moving when captured
    publish(env, root, "sh050", "renderMain", "exr", 8, 4 << 20, 30)  # waits its turn
    broken = publish(env, root, "sh060", "fxMain", "vdb", 2, 1 << 20, 90)
    next((root / "demo" / "sh060" / "v001").glob("*.1002.vdb")).unlink()  # -> Failed
    paused = publish(env, root, "sh070", "layoutMain", "abc", 1, 1 << 20, 50)
    cli(env, "pause", "--project", "demo", "--repre", paused)
    assert broken


def mid_sync(env: dict[str, str]) -> bool:
    """The demo is done, sh040 is part way and sh060 has failed: the moment to capture."""
    rows = rows_by_asset(env)
    demo = [r for a, r in rows.items() if a in ("chair", "sh010", "sh020", "sh030", "table")]
    moving = rows["sh040"]["remote"]["progress"]
    return (all(r["status"] == "Synced" for r in demo) and rows["sh060"]["status"] == "Failed"
            and 0.15 <= moving <= 0.6)


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
            stage(env, tmp / "home" / "settings.json")
            app = AppProcess(["tray"], env, tmp / "app.log")
            try:
                icon = wait_until(session.tray_icon, 30, "the tray icon")
                wait_until(lambda: mid_sync(env), 90, "sh040 to be part way", interval_s=0.3)
                menu_item(session, icon, "Down")  # Open Sync Queue
                window_shot(session, out_dir / "sync-queue.png", "SiteSync: Sync Queue",
                            ("NORMAL",))
                panel = session.panel()
                assert panel is not None
                session.raise_panel()
                session.click(*icon.centre, button=3)
                menu = wait_until(lambda: session.visible_windows("POPUP_MENU"), 10, "menu")[0]
                time.sleep(0.5)
                shot = session.screenshot(tmp / "menu.png")
                area = Geometry(menu.geometry.x - 120, 0, 1600 - (menu.geometry.x - 120),
                                menu.geometry.y + menu.geometry.h + 16)
                session.crop(shot, out_dir / "tray-menu.png", area)
                session.key("Escape")
                menu_item(session, icon, "Down", "Down", "Down", "Down")  # Settings…
                window_shot(session, out_dir / "settings.png", "SiteSync Settings")
                session.key("Escape")
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
