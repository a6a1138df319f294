"""`sitesync serve` runs the hooks; `sitesync hooks list|replay|skip` as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.cli import main

EXAMPLES = Path(__file__).resolve().parents[3] / "app" / "hooks" / "examples"
FAILING = '''
def register(reg):
    reg.callback(on_ready, events=["representation_ready"])

def on_ready(event, ctx):
    raise ValueError("tracker rejected " + event.data["asset"])
'''


@pytest.fixture
def home(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SITESYNC_CONFIG", str(tmp_path / "cfg" / "settings.json"))
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SITESYNC_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.delenv("SITESYNC_LOCAL_ID", raising=False)
    assert main(["demo"]) == 0
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(EXAMPLES / "audit_log.py", plugins)
    (plugins / "tracker.py").write_text(FAILING)
    config = tmp_path / "cfg" / "settings.json"
    raw = json.loads(config.read_text())
    raw["hooks"] = {"plugin_paths": [str(plugins)], "reload_interval_s": 0.1,
                    "poll_interval_s": 0.05,
                    "plugins": {"audit_log": {"path": str(tmp_path / "audit.jsonl")}}}
    config.write_text(json.dumps(raw))
    capsys.readouterr()
    return tmp_path


def _list(capsys) -> dict:
    capsys.readouterr()
    assert main(["hooks", "list", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_serve_runs_the_hooks_on_what_it_synced(home, capsys):
    assert main(["serve", "--once"]) == 0
    out = capsys.readouterr().out
    assert f"hooks: plugins from {home / 'plugins'}" in out
    assert "stopped: 39 file(s) synced, 0 failure(s)" in out
    audit = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
    types = [r["type"] for r in audit]
    assert types.count("file_synced") == 39 and types.count("representation_ready") == 5
    assert len({r["key"] for r in audit}) == len(audit)

    listing = _list(capsys)
    head = listing["newest_event"]
    plugins = {p["name"]: p for p in listing["plugins"]}
    assert list(plugins) == ["audit_log", "tracker"]  # run order: file name
    assert plugins["audit_log"] | {"path": None} == {
        "name": "audit_log", "path": None, "state": "ok", "last_id": head, "behind": 0,
        "backlog": 0, "error": None, "error_event": None}
    tracker = plugins["tracker"]
    assert tracker["state"] == "failed" and tracker["error"].startswith(
        "ValueError: tracker rejected") and "tracker.py:6" in tracker["error"]

    assert main(["hooks", "list"]) == 0
    text = capsys.readouterr().out
    assert "audit_log" in text and f"! tracker on event {tracker['error_event']}" in text


def test_replay_and_skip_move_one_plugin_after_a_confirmation(home, capsys, monkeypatch):
    assert main(["serve", "--once"]) == 0
    head = _list(capsys)["newest_event"]
    failed_on = next(p for p in _list(capsys)["plugins"] if p["name"] == "tracker")["error_event"]

    # No terminal to ask on: nothing happens without --yes.
    assert main(["hooks", "replay", "audit_log", "--from", "1"]) == 2
    assert "add --yes" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["hooks", "replay", "audit_log", "--from", "1"]) == 1
    assert _list(capsys)["plugins"][0]["last_id"] == head

    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert main(["hooks", "replay", "audit_log", "--from", "1"]) == 0
    assert f"handle events 1..{head} again" in capsys.readouterr().out
    assert _list(capsys)["plugins"][0]["last_id"] == 0

    assert main(["hooks", "skip", "tracker", "--yes"]) == 0
    assert f"never handle event {failed_on}" in capsys.readouterr().out
    tracker = _list(capsys)["plugins"][1]
    assert tracker["state"] == "ok" and tracker["last_id"] == failed_on

    assert main(["hooks", "skip", "audit_log", "--yes"]) == 2
    assert "not stopped on an event" in capsys.readouterr().err
    assert main(["hooks", "skip", "audit_log", "--to", "latest", "--yes"]) == 0
    assert _list(capsys)["plugins"][0]["last_id"] == head
    assert main(["hooks", "replay", "nope", "--from", "1", "--yes"]) == 1
    assert "has no saved position" in capsys.readouterr().err
    assert main(["hooks", "replay", "audit_log", "--from", str(head + 5), "--yes"]) == 2


def test_doctor_checks_the_plugin_folders(home, capsys):
    assert main(["doctor"]) == 0
    assert "hooks: 2 plugin file(s) in 1 folder(s)" in capsys.readouterr().out
    config = home / "cfg" / "settings.json"
    raw = json.loads(config.read_text())
    raw["hooks"]["plugin_paths"].append(str(home / "missing"))
    config.write_text(json.dumps(raw))
    assert main(["doctor"]) == 1
    assert f"FAIL  hooks: plugin folder {home / 'missing'} does not exist" in capsys.readouterr().out


def test_list_without_plugins_points_at_the_examples(home, capsys):
    config = home / "cfg" / "settings.json"
    raw = json.loads(config.read_text())
    del raw["hooks"]
    config.write_text(json.dumps(raw))
    assert main(["hooks", "list"]) == 0
    assert f"examples: {EXAMPLES}" in capsys.readouterr().out
