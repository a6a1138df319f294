"""`sitesync doctor` on a project synced with Google Drive (the Drive emulator)."""

from __future__ import annotations

import json

import pytest

from app.cli import main
from app.store.sqlite import SqliteStore
from tests.gdrive_emulator.fixtures import drive_env


@pytest.fixture
def drive_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SITESYNC_CONFIG", str(tmp_path / "settings.json"))
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SITESYNC_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.delenv("SITESYNC_LOCAL_ID", raising=False)
    (tmp_path / "local").mkdir()
    with drive_env(tmp_path) as env:
        (tmp_path / "data").mkdir()
        store = SqliteStore(tmp_path / "data" / "sitesync.db")
        store.ensure_project("demo")
        store.close()

        def configure(**gdrive) -> None:
            settings = {"local_id": "artist-one", "publish_site": "local", "remote_site": "gdrive",
                        "sites": {"local": {"provider": "local_drive",
                                            "root": {"work": str(tmp_path / "local")}},
                                  "gdrive": {"provider": "gdrive", **env.site(**gdrive)}}}
            (tmp_path / "settings.json").write_text(json.dumps(settings))

        yield env, configure


def test_doctor_names_the_account_of_a_working_drive_site(drive_home, capsys):
    env, configure = drive_home
    configure()
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ok    site gdrive (gdrive): reachable" in out
    assert f"service account {env.key.client_email}" in out and "work=/My Drive/sitesync" in out


def test_doctor_lists_credential_and_root_problems(drive_home, capsys, tmp_path):
    _, configure = drive_home
    configure(credentials_url=str(tmp_path / "missing.json"))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  site gdrive:" in out and "missing.json does not exist" in out

    configure(root={"work": "/My Drive/unshared", "renders": "/Nobody's Drive/x"})
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "/My Drive/unshared does not exist or is not shared with the service account" in out
    assert "no shared drive named 'Nobody's Drive' is visible" in out
    assert "2 problem(s) found" in out
