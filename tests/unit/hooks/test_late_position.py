"""A late event is processed once, also when the plugin stops or restarts right after it.

The crash test once saw a plugin process an event twice: the event filled its gap while
the plugin was sealing the id, so sealing returned it and it was delivered late; its
``ctx.state`` was saved but the saved position stayed below its id and it was no longer in
the backlog, so the plugin's next start read it again in order. These tests stop the
plugin at exactly that point (a callback that raises stands in for the kill), and start
it on a saved row whose backlog holds an id above the position.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.hooks.state import HookState
from tests.unit.hooks.conftest import RECORDER, fill_gap, make_gap, wait_until

#: RECORDER that pauses on an event marked ``hold`` until the test says go, and raises on
#: the event whose id is in the ``fail_on`` file (a stand-in for a kill at that event).
GATED = RECORDER + '''
import time
from pathlib import Path

_record = on_event


def on_event(event, ctx, args):
    gate = Path(ctx.options["gate"])
    if event.data.get("hold"):
        (gate / "held").write_text(str(event.id))
        deadline = time.monotonic() + 15
        while not (gate / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    fail_on = gate / "fail_on"
    if fail_on.exists() and fail_on.read_text() == str(event.id):
        raise RuntimeError("stopped here")
    _record(event, ctx, args)
'''


def _plugin(runner, name):
    return next(p for p in runner.status().plugins if p.name == name)


def _running(runner):
    wait_until(lambda: runner.status().state == "running" and len(runner.status().plugins) == 1
               and runner.status().plugins[0].state in ("idle", "failed"), what="runner up")


def _seen_in_state(env) -> list[int]:
    cursor = HookState(env.tmp / "state").get("gated")
    return list(cursor.state.get("seen", []))


def test_an_event_found_by_sealing_is_not_delivered_again_after_a_stop(any_hook_env):
    env = any_hook_env
    gate = env.tmp / "gate"
    gate.mkdir()
    path: Path = env.plugin("gated", GATED, gate=str(gate))
    first = env.runner()
    _running(first)
    first.stop()
    # While it is down: an event, an id taken but not committed, and an old successor
    # (older than the gap timeout, so the id is sealed at once rather than waited for).
    held = env.event(1, data={"hold": True})
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    missing, extra = make_gap(env.store, at=an_hour_ago)
    successor = extra or [env.store.append_event("integrity_alert", "demo", an_hour_ago,
                                                 site="studio")]
    (gate / "fail_on").write_text(str(successor[0]))
    runner = env.runner()
    # The plugin has read [held, successor] in one batch; the missing id commits while it
    # works on `held`, so sealing it finds the event and it is delivered late.
    wait_until(lambda: (gate / "held").exists(), what="held event reached")
    fill_gap(env.store, missing)
    (gate / "go").write_text("")
    wait_until(lambda: _plugin(runner, "gated").state == "failed", what="stopped at successor")
    assert env.ids("gated") == [*held, missing]
    assert env.seen("gated")[-1]["late"] is True

    (gate / "fail_on").unlink()
    path.write_text(path.read_text() + "\n# fixed\n")
    wait_until(lambda: _plugin(runner, "gated").state != "failed", what="reloaded")
    assert runner.wait_idle(15)
    assert env.ids("gated") == [*held, missing, *successor]
    runner.stop()
    assert _seen_in_state(env) == [*held, missing, *successor]


def test_a_saved_backlog_id_above_the_position_is_delivered_once(any_hook_env):
    env = any_hook_env
    env.plugin("recorder")
    first = env.runner()
    _running(first)
    before = env.event(1)
    assert first.wait_idle(15)
    first.stop()
    # As a kill leaves it: the successor of a gap was in flight, the gap saved in the
    # backlog, the position still below the gap.
    missing, extra = make_gap(env.store)
    successor = extra or env.event(1)
    state = HookState(env.tmp / "state")
    try:
        cursor = state.get("recorder")
        assert cursor.last_id == before[-1]
        state.save(replace(cursor, inflight_id=successor[0],
                           backlog={missing: datetime.now(UTC).timestamp() + 30}))
    finally:
        state.close()
    fill_gap(env.store, missing)  # it committed while SiteSync was down
    runner = env.runner()
    _running(runner)
    assert runner.wait_idle(15)
    ids = env.ids("recorder")
    assert sorted(ids) == sorted([*before, missing, *successor]), ids
    assert len(ids) == len(set(ids)), f"delivered twice: {ids}"
    runner.stop()
    seen = HookState(env.tmp / "state").get("recorder").state["seen"]
    assert len(seen) == len(set(seen)) and sorted(seen) == sorted([*before, missing, *successor])
