"""The hook runner on both stores: order, exactly once, failure isolation, reloads."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta

from app.hooks.state import HookState
from app.model import EventType
from tests.unit.hooks.conftest import LOCAL_ID, RECORDER, fill_gap, make_gap, wait_until


def test_each_plugin_sees_each_event_once_in_order(any_hook_env):
    env = any_hook_env
    env.plugin("a_first")
    env.plugin("b_second")
    runner = env.runner()
    wait_until(lambda: runner.status().state == "running" and len(runner.status().plugins) == 2)
    ids = env.event(20)
    assert runner.wait_idle(15)
    assert env.ids("a_first") == ids and env.ids("b_second") == ids
    # For every event the earlier plugin went first.
    order = [(r["plugin"], r["id"]) for r in env.seen()]
    for event_id in ids:
        assert order.index(("a_first", event_id)) < order.index(("b_second", event_id))
    assert all(not r["redelivery"] and not r["late"] for r in env.seen())
    status = runner.status()
    assert [p.name for p in status.plugins] == ["a_first", "b_second"]
    assert all(p.state == "idle" and p.last_id == ids[-1] and p.delivered == 20
               for p in status.plugins)


FLAKY = RECORDER + '''
_record = on_event

def on_event(event, ctx, args):
    if event.data.get("poison"):
        raise RuntimeError("cannot handle poison")
    _record(event, ctx, args)
'''


def _plugin(runner, name):
    return next(p for p in runner.status().plugins if p.name == name)


def _running(runner, count):
    wait_until(lambda: runner.status().state == "running" and len(runner.status().plugins) == count
               and all(p.state in ("idle", "failed", "load error", "disabled")
                       for p in runner.status().plugins), what="runner up")


def test_filters_pick_types_projects_and_sites(hook_env):
    env = hook_env
    env.plugin("ready_here", events=["representation_ready"], sites=["local"], projects=["demo"])
    runner = env.runner()
    _running(runner, 1)
    now = datetime.now(UTC)
    store = env.store
    wanted = store.append_event("representation_ready", "demo", now, site=LOCAL_ID)
    store.append_event("representation_ready", "demo", now, site="studio")
    store.append_event("representation_ready", "other", now, site=LOCAL_ID)
    store.append_event("file_synced", "demo", now, site=LOCAL_ID)
    assert runner.wait_idle(15)
    assert env.ids("ready_here") == [wanted]
    [status] = runner.status().plugins
    assert status.callbacks == (f"on_event events=representation_ready projects=demo sites={LOCAL_ID}",)


def test_a_failing_plugin_stops_alone_and_catches_up_once_fixed(any_hook_env):
    env = any_hook_env
    flaky = env.plugin("a_flaky", FLAKY)  # first in order: it must not hold the other back
    env.plugin("b_steady")
    runner = env.runner()
    _running(runner, 2)
    first = env.event(1)
    poison = env.event(1, data={"poison": True})
    after = env.event(3)
    wait_until(lambda: env.ids("b_steady") == first + poison + after, what="b goes on")
    wait_until(lambda: _plugin(runner, "a_flaky").state == "failed")
    failed = _plugin(runner, "a_flaky")
    assert failed.error.startswith("RuntimeError: cannot handle poison (a_flaky.py:")
    assert failed.error_event == poison[0] and failed.last_id == first[0]
    assert env.ids("a_flaky") == first
    more = env.event(2)
    wait_until(lambda: env.ids("b_steady")[-2:] == more, what="b still goes on")

    flaky.write_text(flaky.read_text().replace('raise RuntimeError("cannot handle poison")',
                                               "pass  # fixed"))
    wait_until(lambda: _plugin(runner, "a_flaky").state != "failed", what="reloaded")
    assert runner.wait_idle(15)
    records = env.seen("a_flaky")
    assert [r["id"] for r in records] == first + poison + after + more
    assert [r["redelivery"] for r in records] == [False, True, False, False, False, False, False]
    assert _plugin(runner, "a_flaky").error is None and _plugin(runner, "a_flaky").state == "idle"
    assert env.ids("b_steady") == first + poison + after + more


def test_positions_and_plugin_state_survive_a_restart(hook_env):
    env = hook_env
    env.plugin("recorder")
    runner = env.runner()
    _running(runner, 1)
    before = env.event(3)
    assert runner.wait_idle(15)
    runner.stop()
    while_down = env.event(2)
    again = env.runner()
    _running(again, 1)
    assert again.wait_idle(15)
    assert env.ids("recorder") == before + while_down
    cursor = HookState(env.tmp / "state").get("recorder")
    assert cursor.state == {"seen": before + while_down} and cursor.last_id == while_down[-1]


def test_a_new_plugin_starts_at_the_newest_event(hook_env):
    env = hook_env
    env.plugin("old")
    runner = env.runner()
    _running(runner, 1)
    history = env.event(3)
    assert runner.wait_idle(15)
    env.plugin("newcomer")
    runner.update_settings(env.settings())
    _running(runner, 2)
    fresh = env.event(2)
    assert runner.wait_idle(15)
    assert env.ids("newcomer") == fresh and env.ids("old") == history + fresh


def test_a_slow_plugin_keeps_the_order_and_a_stuck_one_stops_holding_back(hook_env):
    env = hook_env
    env.plugin("a_slow", RECORDER + '''
import time
_record = on_event

def on_event(event, ctx, args):
    time.sleep(2.0 if event.data.get("stuck") else 0.05)
    _record(event, ctx, args)
''')
    env.plugin("b_after")
    runner = env.runner(stuck_after_s=0.5)
    _running(runner, 2)
    ids = env.event(5)
    assert runner.wait_idle(15)
    order = [(r["plugin"], r["id"]) for r in env.seen()]
    assert all(order.index(("a_slow", i)) < order.index(("b_after", i)) for i in ids)
    stuck = env.event(1, data={"stuck": True})
    started = time.monotonic()
    wait_until(lambda: env.ids("b_after")[-1:] == stuck, timeout=1.5, what="b passes a stuck a")
    assert time.monotonic() - started < 1.5
    wait_until(lambda: _plugin(runner, "a_slow").state == "stuck", timeout=2)
    assert runner.wait_idle(15)
    assert env.ids("a_slow") == ids + stuck


def test_a_gap_waits_in_the_backlog_and_a_late_event_is_delivered(any_hook_env, caplog):
    env = any_hook_env
    env.plugin("recorder")
    runner = env.runner()
    _running(runner, 1)
    caplog.set_level(logging.INFO, logger="sitesync.hooks")
    missing, extra = make_gap(env.store)
    later = env.event(2)
    wait_until(lambda: env.ids("recorder") == extra + later, what="later events delivered")
    assert _plugin(runner, "recorder").backlog == 1
    fill_gap(env.store, missing)
    assert runner.wait_idle(15)
    records = env.seen("recorder")
    assert [r["id"] for r in records] == extra + later + [missing]
    assert records[-1]["late"] is True and not any(r["late"] for r in records[:-1])
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"event {missing} is missing" in m for m in messages)
    assert any(f"event {missing} arrived late" in m for m in messages)


def test_a_gap_that_never_fills_is_sealed_and_declared_lost(any_hook_env, caplog):
    env = any_hook_env
    env.plugin("recorder")
    runner = env.runner(gap_timeout_s=0.5)
    _running(runner, 1)
    caplog.set_level(logging.INFO, logger="sitesync.hooks")
    missing, extra = make_gap(env.store)
    later = env.event(1)
    wait_until(lambda: any(f"gave up waiting for event {missing}" in r.getMessage()
                           for r in caplog.records), what="declared lost")
    assert runner.wait_idle(15)
    assert env.ids("recorder") == extra + later
    [sealed] = env.store.get_events([missing])
    assert sealed.is_gap  # no late write can land on it any more


def test_a_gap_before_an_old_event_is_not_waited_for(any_hook_env, caplog):
    env = any_hook_env
    env.plugin("recorder")
    runner = env.runner()
    _running(runner, 1)
    caplog.set_level(logging.INFO, logger="sitesync.hooks")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    missing, extra = make_gap(env.store, at=an_hour_ago)
    old = env.store.append_event("integrity_alert", "demo", an_hour_ago, site="studio")
    assert runner.wait_idle(5)
    assert env.ids("recorder") == [*extra, old]
    assert any(f"event {missing} never appeared" in r.getMessage() for r in caplog.records)
    assert env.store.get_events([missing])[0].is_gap


def test_a_position_moved_by_the_cli_is_adopted(hook_env):
    env = hook_env
    env.plugin("recorder")
    runner = env.runner()
    _running(runner, 1)
    ids = env.event(4)
    assert runner.wait_idle(15)
    HookState(env.tmp / "state").rewind("recorder", ids[1])  # replay the last two
    wait_until(lambda: len(env.ids("recorder")) == 6, what="replayed")
    records = env.seen("recorder")
    assert [r["id"] for r in records] == ids + ids[2:]
    assert [r["redelivery"] for r in records[4:]] == [True, True]
    assert records[4]["key"] == records[2]["key"]  # same idempotency key each time


def test_load_errors_are_reported_and_a_fix_loads_the_plugin(hook_env):
    env = hook_env
    broken = env.plugin("broken", "def register(reg):\n    reg.callback(print, events=['file_sync'])\n")
    env.plugin("syntax", "def register(reg)\n    pass\n")
    env.plugin("empty", "x = 1\n")
    runner = env.runner()
    _running(runner, 3)
    errors = {p.name: p.error for p in runner.status().plugins}
    assert "unknown event type 'file_sync'; did you mean 'file_synced'?" in errors["broken"]
    assert errors["syntax"].startswith("SyntaxError") and "syntax.py:1" in errors["syntax"]
    assert "defines no register(reg) function" in errors["empty"]
    assert {p.state for p in runner.status().plugins} == {"load error"}
    env.plugin("broken")
    broken.touch()
    wait_until(lambda: _plugin(runner, "broken").state == "idle")
    ids = env.event(1)
    assert runner.wait_idle(15) and env.ids("broken") == ids


def test_a_plugin_switched_off_keeps_its_place_and_catches_up_when_on(hook_env):
    env = hook_env
    env.plugin("switchable", enabled=False)
    runner = env.runner()
    _running(runner, 1)
    assert _plugin(runner, "switchable").state == "disabled"
    ids = env.event(2)
    time.sleep(0.3)
    assert env.ids("switchable") == []
    env.hooks["plugins"]["switchable"]["enabled"] = True
    runner.update_settings(env.settings())
    assert runner.wait_idle(15)
    assert env.ids("switchable") == ids


def test_plugin_state_must_stay_json(hook_env):
    env = hook_env
    env.plugin("bad_state", "def register(reg):\n    reg.callback(f)\n\n"
                            "def f(event, ctx):\n    ctx.state['when'] = object()\n")
    runner = env.runner()
    _running(runner, 1)
    env.event(1)
    wait_until(lambda: _plugin(runner, "bad_state").state == "failed")
    assert "ctx.state must hold JSON values only" in _plugin(runner, "bad_state").error


def test_only_one_runner_per_machine_runs_the_hooks(hook_env):
    env = hook_env
    env.plugin("recorder")
    first = env.runner()
    _running(first, 1)
    second = env.runner()
    wait_until(lambda: second.status().state == "standby")
    assert "another SiteSync process" in second.status().message
    ids = env.event(2)
    assert first.wait_idle(15)
    first.stop()
    wait_until(lambda: second.status().state == "running", what="takeover")
    more = env.event(1)
    assert second.wait_idle(15)
    assert env.ids("recorder") == ids + more


def test_a_corrupted_or_truncated_state_never_blocks_start_up(hook_env, caplog):
    env = hook_env
    env.plugin("recorder")
    runner = env.runner()
    _running(runner, 1)
    ids = env.event(3)
    assert runner.wait_idle(15)
    runner.stop()  # writes the snapshot
    state_db = env.tmp / "state" / "state.db"
    for damage in (b"garbage" * 100, b"", state_db.read_bytes()[:1500]):
        caplog.clear()
        for extra in ("-wal", "-shm"):
            (env.tmp / "state" / f"state.db{extra}").unlink(missing_ok=True)
        state_db.write_bytes(damage)
        again = env.runner()
        _running(again, 1)
        assert "restored from the snapshot" in again.status().message
        more = env.event(1)
        assert again.wait_idle(15)
        again.stop()
        ids += more
        assert env.ids("recorder") == ids, damage[:10]
    assert list((env.tmp / "state").glob("state.db.corrupt-*"))
    # No snapshot either: start at the newest event, and say so.
    for path in (env.tmp / "state").glob("state.json*"):
        path.unlink()
    state_db.write_bytes(b"\0" * 4096)
    last = env.runner()
    _running(last, 1)
    assert "starts at the newest event" in last.status().message
    newest = env.event(1)
    assert last.wait_idle(15)
    assert env.ids("recorder") == ids + newest


def test_the_snapshot_is_checksummed(hook_env):
    env = hook_env
    env.plugin("recorder")
    runner = env.runner()
    _running(runner, 1)
    env.event(2)
    assert runner.wait_idle(15)
    runner.stop()
    snapshot = env.tmp / "state" / "state.json"
    document = json.loads(snapshot.read_text())
    document["body"]["cursors"][0]["last_id"] = 1  # tampered or bit-rotted
    snapshot.write_text(json.dumps(document))
    (env.tmp / "state" / "state.json.bak").unlink()
    assert HookState(env.tmp / "state")._load_snapshot() is None


def test_events_are_pruned_after_the_retention(any_hook_env):
    env = any_hook_env
    store = env.store
    old = [store.append_event(EventType.INTEGRITY_ALERT.value, "demo",
                              datetime.now(UTC) - timedelta(days=40)) for _ in range(2)]
    kept = env.event(1)
    runner = env.runner(retention_days=30)
    wait_until(lambda: runner.status().state == "running")
    assert [e.id for e in store.read_events(0)] == kept
    assert old[-1] < kept[0]


def test_a_settings_file_saved_elsewhere_is_applied(hook_env):
    """`sitesync serve` has no settings dialog: the runner follows the file itself."""
    env = hook_env
    env.plugin("switchable", enabled=False)
    runner = env.runner()
    _running(runner, 1)
    assert _plugin(runner, "switchable").state == "disabled"
    ids = env.event(2)
    env.hooks["plugins"]["switchable"]["enabled"] = True
    time.sleep(0.05)  # a new mtime even on coarse file systems
    env.settings()  # writes the file only; nobody calls update_settings
    wait_until(lambda: _plugin(runner, "switchable").state == "idle", what="switched on")
    assert runner.wait_idle(15) and env.ids("switchable") == ids
