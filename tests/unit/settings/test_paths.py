"""app.paths: platformdirs locations, env overrides read at call time, private dirs.

(Kept beside the settings tests: paths exist for the settings file and the data dir.)
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import platformdirs
import pytest

from app import paths

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def test_env_overrides_are_read_at_call_time(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SITESYNC_CONFIG", str(tmp_path / "a.json"))
    assert paths.config_path() == tmp_path / "a.json"
    monkeypatch.setenv("SITESYNC_CONFIG", str(tmp_path / "b.json"))
    assert paths.config_path() == tmp_path / "b.json"

    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "d1"))
    assert paths.data_dir() == tmp_path / "d1"
    assert paths.state_dir() == tmp_path / "d1" / "state"
    monkeypatch.setenv("SITESYNC_LOG_DIR", str(tmp_path / "logs2"))
    assert paths.log_dir() == tmp_path / "logs2"


def test_defaults_come_from_platformdirs(monkeypatch) -> None:
    for var in ("SITESYNC_CONFIG", "SITESYNC_DATA_DIR", "SITESYNC_LOG_DIR"):
        monkeypatch.setenv(var, "")  # empty = not overridden

    config_dir = platformdirs.user_config_dir("sitesync", appauthor=False)
    assert paths.config_path() == Path(config_dir) / "settings.json"
    assert paths.data_dir() == Path(platformdirs.user_data_dir("sitesync", appauthor=False))
    assert paths.log_dir() == Path(platformdirs.user_log_dir("sitesync", appauthor=False))


def test_relative_and_home_overrides_become_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SITESYNC_DATA_DIR", "rel")
    assert paths.data_dir() == tmp_path / "rel"
    monkeypatch.setenv("SITESYNC_CONFIG", "~/x.json")
    assert paths.config_path() == Path.home() / "x.json"


def test_config_path_does_not_create_anything(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SITESYNC_CONFIG", str(tmp_path / "nope" / "settings.json"))
    paths.config_path()
    assert not (tmp_path / "nope").exists()


@posix_only
def test_directories_are_created_owner_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "new" / "data"))

    state = paths.state_dir()

    for directory in (tmp_path / "new", tmp_path / "new" / "data", state):
        assert directory.is_dir()
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


@posix_only
def test_existing_directory_keeps_its_permissions(tmp_path: Path, monkeypatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(shared))

    paths.data_dir()

    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
