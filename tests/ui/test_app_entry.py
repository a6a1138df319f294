"""`sitesync` / `sitesync tray` as a user starts them, and the headless paths' imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(args: list[str], tmp_path: Path, **env_changes: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(SITESYNC_CONFIG=str(tmp_path / "settings.json"),
               SITESYNC_DATA_DIR=str(tmp_path / "data"), SITESYNC_LOG_DIR=str(tmp_path / "log"))
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run([sys.executable, *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize("command", [[], ["tray"], ["run"]])
def test_without_a_display_the_tray_says_so_and_points_to_serve(command, tmp_path):
    done = run(["-m", "app", *command], tmp_path, DISPLAY=None, WAYLAND_DISPLAY=None,
               QT_QPA_PLATFORM=None)
    assert done.returncode == 2, done.stderr
    assert "no graphical display" in done.stderr
    assert "Run `sitesync serve` for the headless sync engine instead." in done.stderr
    assert "Traceback" not in done.stderr


def test_without_a_system_tray_the_tray_says_so(tmp_path):
    done = run(["-m", "app", "tray"], tmp_path, QT_QPA_PLATFORM="offscreen")
    assert done.returncode == 2, done.stderr
    assert "no system tray is available" in done.stderr
    assert "sitesync serve" in done.stderr


def test_headless_commands_never_load_qt(tmp_path):
    code = ("import sys\n"
            "from app.cli import main\n"
            "import app.engine.engine, app.doctor\n"
            "assert main(['status']) == 0\n"
            "assert main(['demo']) == 0\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ui', 'PySide6', 'qasync')))\n")
    done = run(["-c", code], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
