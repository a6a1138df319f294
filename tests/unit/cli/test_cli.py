"""The `sitesync` command line as a user runs it: real settings file, embedded store."""

from __future__ import annotations

import json

import pytest

from app.cli import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SITESYNC_CONFIG", str(tmp_path / "cfg" / "settings.json"))
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SITESYNC_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.delenv("SITESYNC_LOCAL_ID", raising=False)
    return tmp_path


def _status_json(capsys) -> dict:
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    return json.loads(capsys.readouterr().out)[0]


def test_demo_then_serve_once_syncs_everything(home, capsys):
    assert main(["demo"]) == 0
    assert "created demo project" in capsys.readouterr().out
    before = _status_json(capsys)
    assert before["total"] == 6 and before["status_counts"].get("Queued", 0) == 5
    assert main(["serve", "--once"]) == 0
    out = capsys.readouterr().out
    assert "stopped: 39 file(s) synced, 0 failure(s)" in out
    after = _status_json(capsys)
    assert after["status_counts"] == {"Synced": 5, "Not available": 1}
    assert main(["demo"]) == 0 and "already exists" in capsys.readouterr().out


def test_serve_on_a_fresh_machine_says_what_to_do(home, capsys):
    """A newcomer without a desktop runs `sitesync serve` first: no projects yet is said as
    such, with the commands that make one; a project with nothing to pair is told apart."""
    assert main(["serve", "--once"]) == 0
    out = capsys.readouterr().out
    assert "nothing to serve yet: the database has no projects (`sitesync demo` creates" in out
    main(["demo"])
    settings = json.loads((home / "cfg" / "settings.json").read_text())
    settings["remote_site"] = ""
    (home / "cfg" / "settings.json").write_text(json.dumps(settings))
    capsys.readouterr()
    assert main(["serve", "--once"]) == 0
    out = capsys.readouterr().out
    assert "nothing to serve: no enabled project has two different sites to sync" in out


def test_a_data_folder_that_cannot_be_made_is_a_settings_problem(home, capsys, monkeypatch):
    """A wrong SITESYNC_DATA_DIR (here below a file, which stops root too) is named with
    its fix, for every command: no PermissionError/NotADirectoryError traceback."""
    assert main(["status"]) == 0  # the settings file exists; the data folder is asked later
    (home / "a-file").write_text("not a folder")
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(home / "a-file" / "data"))
    capsys.readouterr()
    for argv in (["status"], ["pause"], ["demo"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"cannot create SiteSync's data folder {home / 'a-file'}" in err, err
        assert "set SITESYNC_DATA_DIR to a folder that user can write" in err
        assert "Traceback" not in err


def test_site_actions_and_reset(home, capsys):
    main(["demo"])
    page = _status_json(capsys)
    lamp = next(r for r in page["representations"] if r["asset"] == "lamp")
    local = page["active_site"]
    assert lamp["status"] == "Not available"
    assert main(["add-site", "--project", "demo", "--repre", lamp["id"], "--site", local,
                 "--priority", "90"]) == 0
    lamp = next(r for r in _status_json(capsys)["representations"] if r["asset"] == "lamp")
    assert lamp["status"] == "Queued" and lamp["priority"] == 90
    assert main(["pause", "--project", "demo", "--repre", lamp["id"], "--site", local]) == 0
    lamp = next(r for r in _status_json(capsys)["representations"] if r["asset"] == "lamp")
    assert lamp["status"] == "Paused"
    assert main(["resume", "--project", "demo", "--repre", lamp["id"], "--site", local]) == 0
    assert main(["priority", "--project", "demo", "--repre", lamp["id"], "20"]) == 0
    assert main(["remove-site", "--project", "demo", "--repre", lamp["id"], "--site", local]) == 0
    lamp = next(r for r in _status_json(capsys)["representations"] if r["asset"] == "lamp")
    assert lamp["status"] == "Not available"
    assert main(["reset"]) == 0 and "reset 0 site entries" in capsys.readouterr().out


def test_site_local_means_this_machine(home, capsys):
    """`--site local` is this machine's local_id, as in publish_site/remote_site: a site
    entry literally named "local" would be a request nobody ever serves."""
    main(["demo"])
    page = _status_json(capsys)
    lamp = next(r for r in page["representations"] if r["asset"] == "lamp")
    local_id = page["active_site"]
    assert main(["add-site", "--project", "demo", "--repre", lamp["id"], "--site", "local"]) == 0
    assert capsys.readouterr().out.strip() == f"site {local_id} added to 1 file(s)"
    lamp = next(r for r in _status_json(capsys)["representations"] if r["asset"] == "lamp")
    assert lamp["active"]["status"] == "Queued"
    assert main(["pause", "--project", "demo", "--repre", lamp["id"], "--site", "local"]) == 0
    lamp = next(r for r in _status_json(capsys)["representations"] if r["asset"] == "lamp")
    assert lamp["active"]["status"] == "Paused" and lamp["remote"]["status"] == "Synced"
    assert main(["resume", "--project", "demo", "--repre", lamp["id"], "--site", "local"]) == 0
    assert main(["priority", "--project", "demo", "--repre", lamp["id"], "--site", "local",
                 "70"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"priority 70 set on {local_id}")
    lamp = next(r for r in _status_json(capsys)["representations"] if r["asset"] == "lamp")
    assert (lamp["active"]["status"], lamp["priority"]) == ("Queued", 70)
    assert main(["remove-site", "--project", "demo", "--repre", lamp["id"], "--site", "local"]) == 0
    assert capsys.readouterr().out.strip() == f"site {local_id} removed from 1 file(s)"
    lamp = next(r for r in _status_json(capsys)["representations"] if r["asset"] == "lamp")
    assert lamp["active"]["status"] == "Not available"


def test_reset_never_declares_the_only_copy_missing(home, capsys):
    """`reset --repre R --site S` re-fetches S's files from another site; where S holds the
    only copy that would leave a file wanted everywhere and present nowhere (as the Sync
    Queue's Re-sync, it is refused; --force when the copies on S are really gone)."""
    main(["demo"])
    page = _status_json(capsys)
    lamp = next(r for r in page["representations"] if r["asset"] == "lamp")  # on studio only
    assert main(["reset", "--project", "demo", "--repre", lamp["id"], "--site", "studio"]) == 2
    err = capsys.readouterr().err
    assert "site studio holds the only copy of 1 file(s)" in err and "--force" in err
    lamp = next(r for r in _status_json(capsys)["representations"] if r["asset"] == "lamp")
    assert lamp["remote"]["status"] == "Synced"
    assert main(["serve", "--once"]) == 0
    chair = next(r for r in _status_json(capsys)["representations"] if r["asset"] == "chair")
    assert chair["status"] == "Synced"  # on both sites now: studio's copy can be re-fetched
    assert main(["reset", "--project", "demo", "--repre", chair["id"], "--site", "studio"]) == 0
    assert "reset 1 site entry" in capsys.readouterr().out
    chair = next(r for r in _status_json(capsys)["representations"] if r["asset"] == "chair")
    assert chair["remote"]["status"] == "Queued"
    assert main(["reset", "--project", "demo", "--repre", lamp["id"], "--site", "studio",
                 "--force"]) == 0
    assert "reset 1 site entry" in capsys.readouterr().out


def test_a_closed_pipe_ends_the_output_quietly(home):
    """`sitesync status | head -1`: the reader leaves early. Here it has left before the
    first line, so every write meets a closed pipe: exit 141 (as a process killed by
    SIGPIPE reports), and no traceback on stderr."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    main(["demo"])
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "app", "status"], stdout=write_end,
                              stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[3],
                              text=True, timeout=120, check=False)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_engine_pause_is_written_for_a_running_engine(home, capsys):
    assert main(["pause"]) == 0
    state = json.loads((home / "data" / "state" / "engine.json").read_text())
    assert state == {"paused": True}
    assert main(["resume"]) == 0
    assert json.loads((home / "data" / "state" / "engine.json").read_text()) == {"paused": False}


def test_publish_registers_existing_files(home, capsys):
    """Files published on this machine's site are queued for the remote site (studio)."""
    main(["status"])  # first run writes the default settings
    folder = home / "data" / "sites" / "local" / "work" / "proj" / "sh100"
    folder.mkdir(parents=True)
    (folder / "a.1001.exr").write_bytes(b"x" * 100)
    (folder / "a.1002.exr").write_bytes(b"y" * 200)
    capsys.readouterr()
    code = main(["publish", "--project", "proj", "--asset", "sh100", "--subset", "render",
                 "--version", "2", "--name", "exr",
                 str(folder / "a.1001.exr"), str(folder / "a.1002.exr")])
    assert code == 0, capsys.readouterr()
    assert "published 2 file(s)" in capsys.readouterr().out
    assert main(["serve", "--once"]) == 0
    studio = home / "data" / "sites" / "studio" / "work" / "proj" / "sh100"
    assert (studio / "a.1002.exr").read_bytes() == b"y" * 200
    assert (studio / "a.1001.exr").read_bytes() == b"x" * 100
    # A file outside every root is refused with the fix.
    outside = home / "elsewhere.exr"
    outside.write_bytes(b"z")
    capsys.readouterr()
    assert main(["publish", "--project", "proj", "--asset", "x", "--subset", "s",
                 "--version", "1", "--name", "exr", str(outside)]) == 2
    err = capsys.readouterr().err
    assert "not under any root" in err and "Traceback" not in err


def test_bad_settings_are_named_not_a_traceback(home, capsys):
    cfg = home / "cfg"
    cfg.mkdir()
    (cfg / "settings.json").write_text(json.dumps({"retry_cnt": "three", "remote_sitee": "x"}))
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "retry_cnt" in err and "did you mean 'remote_site'" in err and "Traceback" not in err


def test_unreachable_database_is_a_clear_error(home, capsys):
    cfg = home / "cfg"
    cfg.mkdir()
    (cfg / "settings.json").write_text(json.dumps({
        "database_url": "mongodb://bob:s3cret@127.0.0.1:1/?serverSelectionTimeoutMS=300"}))
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert "127.0.0.1:1" in err and "s3cret" not in err and "Traceback" not in err
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "s3cret" not in out


def test_doctor_on_a_fresh_machine(home, capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "database (embedded SQLite)" in out and "all checks passed" in out


def test_unknown_representation(home, capsys):
    main(["demo"])
    capsys.readouterr()
    assert main(["reset", "--project", "demo", "--repre", "0" * 24]) == 1
    assert "not found" in capsys.readouterr().err
