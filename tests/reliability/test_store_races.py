"""User actions racing the engine's writes on the same document, on both stores.

The engine (one connection) records leases, progress, successes and failures on a
file's target entry while a user (another connection: the tray or the CLI in another
process) pauses, re-prioritises, resets, adds and removes sites on the same
representation. Each side writes only its own fields, so neither may lose the other's
update: in MongoDB that rests on targeted `array_filters` updates being atomic per
document, in SQLite on one transaction per write.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest

from app.model import WorkItem
from app.store.base import Store
from tests.helpers.seed import T0, make_repre
from tests.reliability.helpers import SCALE, report

ROUNDS = 60 * SCALE
RETRY = 3


def _setup(store_factory, files: int = 4) -> tuple[Store, Store, str]:
    engine_side, user_side = store_factory(), store_factory()
    engine_side.ensure_project("demo")
    repre = make_repre(files=files, sites={"studio": {"created_dt": T0}, "gdrive": {}})
    return engine_side, user_side, engine_side.insert_representation(repre)


def _work(store: Store, repre_id: str) -> list[WorkItem]:
    items = store.find_work("demo", "studio", "gdrive", RETRY, T0, limit=100)
    return [i for i in items if i.repre_id == repre_id]


def _together(*actions: Callable[[], None]) -> None:
    """Run the actions on their own threads, released at the same moment."""
    start = threading.Barrier(len(actions))
    errors: list[BaseException] = []

    def run(action: Callable[[], None]) -> None:
        start.wait()
        try:
            action()
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]


def test_priority_and_pause_changes_survive_progress_lease_and_result_writes(store_factory):
    engine, user, repre_id = _setup(store_factory)
    rng = random.Random(1)
    set_priorities: list[int] = []
    set_pauses: list[bool] = []

    def engine_side() -> None:
        for n in range(ROUNDS):
            for item in _work(engine, repre_id):
                lease = T0 + timedelta(seconds=60 + n)
                claim = engine.claim(item, "engine", lease, T0)
                if claim is None:
                    continue
                engine.record_progress(claim, 0.5)
                claim = engine.extend_lease(claim, lease + timedelta(seconds=30)) or claim
                engine.record_progress(claim, 0.9)
                if n % 2:
                    engine.record_failure(claim, "flaky", T0, None)
                else:
                    engine.release(claim)
            # Keep the entries coming back: failures are reset by the engine side too.
            engine.reset_failed("demo", "gdrive")

    def user_side() -> None:
        for _ in range(ROUNDS):
            priority = rng.randint(0, 100)
            user.set_priority("demo", repre_id, "gdrive", priority)
            set_priorities.append(priority)
            paused = rng.random() < 0.5
            user.set_paused("demo", repre_id, "studio", paused)
            set_pauses.append(paused)

    _together(engine_side, user_side)
    repre = user.get_representation("demo", repre_id)
    for f in repre.files:
        assert f.site("gdrive").priority == set_priorities[-1], "a priority change was lost"
        assert f.site("studio").paused is set_pauses[-1], "a pause was lost"
        assert f.site("studio").available, "the source entry lost its created_dt"
    report("store_race", case="priority/pause vs lease, progress, results", store=user.kind,
           rounds=ROUNDS)


def test_a_success_racing_a_pause_keeps_both(store_factory):
    for round_no in range(ROUNDS // 3):
        engine, user, repre_id = _setup(store_factory, files=2)
        claims = [engine.claim(i, "engine", T0 + timedelta(seconds=60), T0)
                  for i in _work(engine, repre_id)]
        assert all(claims)
        _together(
            lambda engine=engine, claims=claims, n=round_no: [
                engine.record_success(c, f"id{n}", "sha256:ab", T0) for c in claims],
            lambda user=user, repre_id=repre_id: user.set_paused("demo", repre_id, "gdrive", True),
        )
        for f in user.get_representation("demo", repre_id).files:
            target = f.site("gdrive")
            assert target.available and target.checksum == "sha256:ab", target
            assert target.paused, "the pause set during the success was lost"
    report("store_race", case="success vs pause", store=user.kind, rounds=ROUNDS // 3)


@pytest.mark.parametrize("action", ["reset_site", "remove_site", "add_site_force"])
def test_a_reset_or_removal_after_a_claim_wins_over_the_late_result(store_factory, action):
    """Whatever the engine records after the user reset, removed or re-added the entry
    is refused: the user's intent (copy it again / do not keep it there) stands."""
    engine, user, repre_id = _setup(store_factory, files=3)
    items = _work(engine, repre_id)
    claims = [engine.claim(i, "engine", T0 + timedelta(seconds=60), T0) for i in items]
    engine.record_progress(claims[0], 0.4)
    if action == "reset_site":
        assert user.reset_site("demo", repre_id, "gdrive") == 3
    elif action == "remove_site":
        assert user.remove_site("demo", repre_id, "gdrive") == 3
    else:
        assert user.add_site("demo", repre_id, "gdrive", force=True, priority=80) == 3
    assert engine.record_success(claims[0], "x", "sha256:00", T0) is False
    assert engine.record_failure(claims[1], "late", T0, None) is False
    assert engine.extend_lease(claims[2], T0 + timedelta(seconds=90)) is None
    engine.record_progress(claims[2], 0.7)  # writes nothing, raises nothing
    engine.release(claims[2])
    for f in user.get_representation("demo", repre_id).files:
        target = f.site("gdrive")
        if action == "remove_site":
            assert target is None
            continue
        assert target.created_dt is None and target.tries == 0 and target.error is None
        assert target.lease_owner is None and target.progress is None
        assert target.priority == (80 if action == "add_site_force" else None)
    report("store_race", case=f"{action} after a claim vs the late result", store=user.kind, rounds=1)


def test_concurrent_site_changes_and_engine_writes_on_one_document(store_factory):
    """The user adds and removes a third site over and over while the engine records
    progress and results on the gdrive entries of the same files: none of the engine's
    results is lost, and the site the user added last is there exactly once per file."""
    engine, user, repre_id = _setup(store_factory, files=4)
    done: list[str] = []

    def engine_side() -> None:
        for item in _work(engine, repre_id):
            claim = engine.claim(item, "engine", T0 + timedelta(seconds=60), T0)
            assert claim is not None
            for step in range(10):
                engine.record_progress(claim, step / 10)
            assert engine.record_success(claim, item.file_id, "sha256:cd", T0)
            done.append(item.file_id)

    def user_side() -> None:
        for n in range(ROUNDS // 2):
            user.add_site("demo", repre_id, "backup", priority=n)
            user.remove_site("demo", repre_id, "backup")
        user.add_site("demo", repre_id, "backup", priority=99)

    _together(engine_side, user_side)
    repre = user.get_representation("demo", repre_id)
    assert sorted(done) == sorted(f.id for f in repre.files)
    for f in repre.files:
        assert f.site("gdrive").available and f.site("gdrive").checksum == "sha256:cd"
        names = [s.name for s in f.sites]
        assert names.count("backup") == 1 and f.site("backup").priority == 99, names
    report("store_race", case="add/remove site vs progress and success", store=user.kind,
           rounds=ROUNDS // 2)


def test_two_users_and_two_engines_on_one_document(store_factory):
    """Four connections hammer one representation; afterwards every file is either
    synced or cleanly queued (never leased by nobody, never half-written state)."""
    stores = [store_factory() for _ in range(4)]
    stores[0].ensure_project("demo")
    repre_id = stores[0].insert_representation(
        make_repre(files=6, sites={"studio": {"created_dt": T0}, "gdrive": {}}))
    rng = random.Random(4)

    def engine_side(store: Store, owner: str) -> Callable[[], None]:
        def run() -> None:
            for n in range(ROUNDS // 3):
                now = T0 + timedelta(seconds=n)
                for item in _work(store, repre_id)[:2]:
                    claim = store.claim(item, owner, now + timedelta(seconds=60), now)
                    if claim is None:
                        continue
                    store.record_progress(claim, 0.5)
                    store.record_success(claim, owner, "sha256:ef", now)
        return run

    def user_side(store: Store, seed: int) -> Callable[[], None]:
        local = random.Random(seed)

        def run() -> None:
            for _ in range(ROUNDS // 3):
                choice = local.random()
                if choice < 0.4:
                    store.reset_site("demo", repre_id, "gdrive")
                elif choice < 0.7:
                    store.set_priority("demo", repre_id, "gdrive", local.randint(0, 99))
                else:
                    store.set_paused("demo", repre_id, "gdrive", local.random() < 0.3)
        return run

    _together(engine_side(stores[0], "e1"), engine_side(stores[1], "e2"),
              user_side(stores[2], rng.randint(0, 99)), user_side(stores[3], rng.randint(0, 99)))
    for f in stores[0].get_representation("demo", repre_id).files:
        target = f.site("gdrive")
        assert target is not None and [s.name for s in f.sites].count("gdrive") == 1
        assert target.progress is None or target.lease_owner is not None, target
        if target.available:
            assert target.id in ("e1", "e2") and target.checksum == "sha256:ef", target
        else:
            assert target.id is None and target.checksum is None, target
        assert f.site("studio").available
    report("store_race", case="2 users + 2 engines on one document", store=stores[0].kind,
           rounds=ROUNDS // 3)


def test_a_reset_racing_a_priority_change_keeps_the_new_priority(store_factory):
    """reset_site keeps `priority` (OpenPype's re-sync), so whichever runs first, the
    priority the user just set must be the one left."""
    engine, user, repre_id = _setup(store_factory, files=3)
    for n in range(ROUNDS):
        _together(lambda n=n: user.set_priority("demo", repre_id, "gdrive", n),
                  lambda: engine.reset_site("demo", repre_id, "gdrive"))
        priorities = {f.site("gdrive").priority for f in engine.get_representation("demo", repre_id).files}
        assert priorities == {n}, f"round {n}: priority {priorities} after a concurrent reset"
    report("store_race", case="reset vs priority change", store=user.kind, rounds=ROUNDS)
