"""The example plugins, run by a real hook runner against real files, programs and servers."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.hooks.state import HookState
from tests.unit.hooks.conftest import LOCAL_ID, wait_until
from tests.unit.hooks.http_server import scripted_server

EXAMPLES = Path(__file__).resolve().parents[3] / "app" / "hooks" / "examples"


def _use_example(env, name: str, **options) -> None:
    shutil.copy(EXAMPLES / f"{name}.py", env.plugins / f"{name}.py")
    env.hooks.setdefault("plugins", {})[name] = options


def _ready(env, site=LOCAL_ID, **data):
    data = {"asset": "sh010", "subset": "renderMain", "version": 3, "representation": "exr",
            "files": 2, "size": 10, **data}
    return env.store.append_event("representation_ready", "demo", datetime.now(UTC), site=site,
                                  repre_id="r1", data=data)


def _status(runner, name):
    return next(p for p in runner.status().plugins if p.name == name)


def test_audit_log_writes_each_event_once_even_when_replayed(hook_env):
    env = hook_env
    audit = env.tmp / "audit" / "events.jsonl"
    _use_example(env, "audit_log", path=str(audit))
    runner = env.runner()
    wait_until(lambda: runner.status().plugins and _status(runner, "audit_log").state == "idle")
    ids = env.event(3, data={"error": "rot"})
    assert runner.wait_idle(15)
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [r["id"] for r in lines] == ids
    assert lines[0]["type"] == "integrity_alert" and lines[0]["data"] == {"error": "rot"}
    assert lines[0]["key"].endswith(f"-{ids[0]}")
    # A crash cut a line short, then the plugin was replayed over events it had written.
    with open(audit, "a") as stream:
        stream.write('{"key": "half a li')
    HookState(env.tmp / "state").rewind("audit_log", ids[0] - 1)
    more = env.event(1)
    wait_until(lambda: str(more[0]) in audit.read_text(), what="new line")
    assert runner.wait_idle(15)
    good = [json.loads(line) for line in audit.read_text().splitlines() if line.endswith("}")]
    assert [r["id"] for r in good] == ids + more


def test_desktop_notification_uses_notify_send_when_installed(hook_env, monkeypatch):
    env = hook_env
    bin_dir = env.tmp / "bin"
    bin_dir.mkdir()
    calls = env.tmp / "notify-calls.txt"
    script = bin_dir / "notify-send"
    script.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {calls}\necho >> {calls}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    _use_example(env, "notify_desktop")
    runner = env.runner()
    wait_until(lambda: runner.status().plugins and _status(runner, "notify_desktop").state == "idle")
    _ready(env)
    _ready(env, site="studio")  # not this machine: no notification
    env.store.append_event("file_failed", "demo", datetime.now(UTC), site=LOCAL_ID,
                           data={"path": "a.exr", "error": "x", "permanent": False})
    assert runner.wait_idle(15)
    assert calls.read_text().splitlines() == [
        f"--app-name=SiteSync|SiteSync: ready|sh010 renderMain v003 exr is ready on {LOCAL_ID}|"]


def test_desktop_notification_without_notify_send_logs(hook_env, monkeypatch, caplog):
    env = hook_env
    monkeypatch.setenv("PATH", str(env.tmp / "empty-bin"))
    _use_example(env, "notify_desktop")
    runner = env.runner()
    wait_until(lambda: runner.status().plugins and _status(runner, "notify_desktop").state == "idle")
    caplog.set_level(logging.INFO, logger="sitesync.hooks.notify_desktop")
    env.store.append_event("integrity_alert", "demo", datetime.now(UTC), site=LOCAL_ID,
                           data={"path": "a.exr", "error": "changed after it was published"})
    assert runner.wait_idle(15)
    assert any("SiteSync: check this file: a.exr: changed after it was published" in r.getMessage()
               for r in caplog.records)


def test_webhook_posts_ready_representations_and_retries_later(hook_env):
    env = hook_env
    later = {"Retry-After": "0.2"}
    with scripted_server(script=[(503, later), (503, later), (200, {})]) as server:
        _use_example(env, "webhook_ready", url=server.url + "/ready", retries=0, sites=[LOCAL_ID])
        env.plugin("z_after")  # after the webhook in the run order
        runner = env.runner()
        wait_until(lambda: len(runner.status().plugins) == 2
                   and _status(runner, "webhook_ready").state == "idle")
        ready = _ready(env)
        wait_until(lambda: _status(runner, "webhook_ready").state == "retrying")
        assert "answered HTTP 503" in _status(runner, "webhook_ready").error
        wait_until(lambda: env.ids("z_after") == [ready], what="the next plugin is not held")
        assert runner.wait_idle(20)
    bodies = [r.json() for r in server.received]
    assert len(bodies) == 3
    assert {r.headers["Idempotency-Key"] for r in server.received} == {bodies[0]["idempotency_key"]}
    assert bodies[0]["representation"]["asset"] == "sh010" and bodies[0]["site"] == LOCAL_ID
    assert [b["redelivery"] for b in bodies] == [False, True, True]
    assert _status(runner, "webhook_ready").error is None


def test_webhook_redirected_to_another_host_stops_with_the_reason(hook_env):
    env = hook_env
    with scripted_server(host="127.0.0.2") as elsewhere, \
            scripted_server(script=[(307, {"Location": elsewhere.url + "/x"})]) as server:
        _use_example(env, "webhook_ready", url=server.url + "/ready")
        runner = env.runner()
        wait_until(lambda: runner.status().plugins
                   and _status(runner, "webhook_ready").state == "idle")
        ready = _ready(env)
        wait_until(lambda: _status(runner, "webhook_ready").state == "failed")
    status = _status(runner, "webhook_ready")
    assert "redirecting to another server" in status.error and status.error_event == ready
    assert elsewhere.received == []


@pytest.mark.parametrize("options", [{}, {"url": "ftp://x/y"}])
def test_webhook_without_a_usable_url_says_which_setting(hook_env, options):
    env = hook_env
    _use_example(env, "webhook_ready", **options)
    runner = env.runner()
    wait_until(lambda: runner.status().plugins
               and _status(runner, "webhook_ready").state == "load error")
    assert "hooks.plugins.webhook_ready.url" in _status(runner, "webhook_ready").error
