"""A user clicking around while files move, on both stores: pause and resume (engine,
project, representation), priority changes, resets and adding/removing a site, issued
at random from another thread through the same calls the tray makes.

Afterwards, with everything resumed: every file is synced with the right bytes, none of
the user's actions counted as a failed try, the last priority each representation got
is the one it has, and no temporary file is left.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from app.events.types import FileFailed, FileSynced
from tests.integration.conftest import LOCAL_ID
from tests.reliability.faulty import FaultPlan, faulty_factory
from tests.reliability.helpers import SCALE, STUDIO, configure, local, publish, report

pytestmark = pytest.mark.slow

ACTIONS_S = 4.0 * SCALE


def test_random_user_actions_during_transfers_lose_nothing_and_count_no_try(sync_env):
    env = sync_env
    configure(env, retry_cnt=3, workers_per_site=3, lease_s=3, progress_interval_s=0.05)
    rng = random.Random(77)
    repre_ids = [publish(env, LOCAL_ID, f"sh{r:03d}", [rng.randint(50_000, 900_000) for _ in range(4)], rng)
                 for r in range(24)]
    # Slow reads keep transfers in flight while the user acts.
    plan = FaultPlan(stall=0.5, stall_s=0.03)
    engine = env.engine(provider_factory=faulty_factory({LOCAL_ID: plan}))
    engine.start()

    last_priority: dict[str, int] = {}
    backup: dict[str, bool] = {}
    done = threading.Event()
    counts: dict[str, int] = {}
    errors: list[BaseException] = []

    def user() -> None:
        actions = [
            lambda r: engine.pause_representation("demo", r, STUDIO, True),
            lambda r: engine.pause_representation("demo", r, STUDIO, False),
            lambda r: engine.pause_representation("demo", r, LOCAL_ID, rng.random() < 0.5),
            lambda r: last_priority.__setitem__(r, _set_priority(env, r, rng.randint(0, 100))),
            lambda r: env.store.reset_site("demo", r, STUDIO),
            lambda r: _add_backup(env, backup, r),
            lambda r: _remove_backup(env, backup, r),
            lambda r: (engine.pause(), time.sleep(0.05), engine.resume()),
            lambda r: (engine.pause_project("demo"), time.sleep(0.05),
                       engine.pause_project("demo", paused=False)),
        ]
        try:
            # At least ACTIONS_S seconds and at least 60 actions: on a loaded machine the
            # store answers slower, and the test must still act often enough to prove much.
            deadline = time.monotonic() + ACTIONS_S
            hard_stop = deadline + 40
            while (time.monotonic() < deadline or sum(counts.values()) <= 60) \
                    and time.monotonic() < hard_stop:
                index = rng.randrange(len(actions))
                actions[index](rng.choice(repre_ids))
                counts[str(index)] = counts.get(str(index), 0) + 1
                time.sleep(rng.uniform(0, 0.02))
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=user)
    thread.start()
    thread.join(60)
    assert done.is_set() and not errors, errors
    synced_during = len(env.of_type(FileSynced))

    engine.resume()
    engine.pause_project("demo", paused=False)
    for repre_id in repre_ids:
        engine.pause_representation("demo", repre_id, STUDIO, False)
        engine.pause_representation("demo", repre_id, LOCAL_ID, False)
    env.wait_for(lambda: _on_studio(env, repre_ids) and engine.in_flight == 0, timeout=120)
    engine.stop()

    assert synced_during > 0, "nothing moved while the user acted: the test proved nothing"
    assert sum(counts.values()) > 50, counts
    assert not env.of_type(FileFailed), [f.error for f in env.of_type(FileFailed)][:5]
    for repre_id in repre_ids:
        repre = env.store.get_representation("demo", repre_id)
        for f in repre.files:
            target, source = f.site(STUDIO), f.site(LOCAL_ID)
            assert target.tries == 0 and target.error is None and target.lease_owner is None, target
            assert target.checksum == source.checksum
            assert local(env, STUDIO, f.path).read_bytes() == local(env, LOCAL_ID, f.path).read_bytes()
            if repre_id in last_priority:
                assert target.priority == last_priority[repre_id], (repre_id, target)
            assert (f.site("backup") is not None) == backup.get(repre_id, False), (repre_id, f.sites)
    assert env.part_files() == []
    report("user_actions", store=env.store.kind, actions=sum(counts.values()),
           synced_while_acting=synced_during, files=4 * len(repre_ids))


def _set_priority(env, repre_id: str, priority: int) -> int:
    env.store.set_priority("demo", repre_id, STUDIO, priority)
    return priority


def _on_studio(env, repre_ids: list[str]) -> bool:
    """Synced to the studio (the "backup" entries the user adds are for no engine)."""
    return all(f.site(STUDIO).available
               for r in repre_ids for f in env.store.get_representation("demo", r).files)


def _add_backup(env, backup: dict[str, bool], repre_id: str) -> None:
    env.store.add_site("demo", repre_id, "backup")
    backup[repre_id] = True


def _remove_backup(env, backup: dict[str, bool], repre_id: str) -> None:
    env.store.remove_site("demo", repre_id, "backup")
    backup[repre_id] = False
