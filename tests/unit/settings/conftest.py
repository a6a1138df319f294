"""Fixtures that point every SiteSync location at tmp_path: no test touches a real profile."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.redact import clear_secrets


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Config, data and log dirs under tmp_path; HOME/XDG too, in case a default leaks."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(home / var.lower()))
    monkeypatch.setenv("SITESYNC_CONFIG", str(tmp_path / "config" / "settings.json"))
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SITESYNC_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("SITESYNC_LOCAL_ID", raising=False)
    clear_secrets()
    yield tmp_path
    clear_secrets()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "config" / "settings.json"


@pytest.fixture
def write_settings(config_file: Path) -> Callable[[Any], Path]:
    """Write a document (or raw text) to the config file and return its path."""

    def write(raw: Any) -> Path:
        config_file.parent.mkdir(parents=True, exist_ok=True)
        text = raw if isinstance(raw, str) else json.dumps(raw, indent=2)
        config_file.write_text(text, encoding="utf-8")
        return config_file

    return write
