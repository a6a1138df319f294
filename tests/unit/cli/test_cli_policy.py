"""`sitesync limit` as a user runs it: real settings file, values checked before saving."""

from __future__ import annotations

import json
import os

import pytest

from app.cli import main
from app.settings import load_settings


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SITESYNC_CONFIG", str(tmp_path / "cfg" / "settings.json"))
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SITESYNC_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.delenv("SITESYNC_LOCAL_ID", raising=False)
    return tmp_path


def _raw(home) -> dict:
    return json.loads((home / "cfg" / "settings.json").read_text())


def test_limit_saves_validated_values_and_shows_them(home, capsys):
    assert main(["limit"]) == 0
    assert "default (8)" in capsys.readouterr().out
    assert main(["limit", "studio", "--bwlimit", "Mon-08:00,2M:8M Fri-19:00,off",
                 "--transfers", "2:8"]) == 0
    assert "applies it within a second" in capsys.readouterr().out
    studio = _raw(home)["sites"]["studio"]
    assert studio["bwlimit"] == "Mon-08:00,2M:8M Fri-19:00,off"
    assert studio["transfers"] == {"upload": 2, "download": 8}
    assert main(["limit", "local", "--bwlimit", "10M", "--transfers", "3"]) == 0
    raw = _raw(home)
    local_block = raw["sites"]["local"]  # this machine's block keeps its "local" name
    assert local_block["bwlimit"] == "10M" and local_block["transfers"] == 3
    settings = load_settings(os.environ["SITESYNC_CONFIG"])
    assert settings.site("local").bwlimit.at(_monday()).upload == 10 * 1024 * 1024
    capsys.readouterr()
    assert main(["limit", "studio"]) == 0
    out = capsys.readouterr().out
    assert "Mon-08:00,2M:8M Fri-19:00,off" in out and "2 up, 8 down" in out
    assert main(["limit", "studio", "--clear"]) == 0
    assert "bwlimit" not in _raw(home)["sites"]["studio"]


def _monday():
    from datetime import datetime

    return datetime(2024, 3, 4, 12, 0)


@pytest.mark.parametrize(("argv", "words"), [
    (["limit", "studio", "--bwlimit", "10Q"], "--bwlimit '10Q': '10Q' is not a rate. Fix:"),
    (["limit", "studio", "--transfers", "0"], "--transfers '0': transfers 0 is out of range"),
    (["limit", "nowhere", "--bwlimit", "1M"], "site 'nowhere' is not configured"),
    (["limit", "--bwlimit", "1M"], "which site?"),
])
def test_limit_refuses_bad_values_and_saves_nothing(home, capsys, argv, words):
    main(["limit"])
    before = (home / "cfg" / "settings.json").read_text()
    capsys.readouterr()
    assert main(argv) == 2
    assert words in capsys.readouterr().err
    assert (home / "cfg" / "settings.json").read_text() == before
