"""A large representation on a running engine: it is taken a chunk at a time, so a
small publish of the same priority is not held up until the sequence is done, and work
found ahead serves many claim rounds. Real local_drive sites on the embedded store (the
chunk order itself is a store contract, tested on both stores)."""

from __future__ import annotations

import pytest

from app.events.types import FileSynced, TransferStarted
from app.store.base import CHUNK_FILES
from tests.integration.conftest import LOCAL_ID
from tests.integration.test_engine import _all_synced

sqlite_only = pytest.mark.parametrize("store_factory", ["sqlite"], indirect=True)


@sqlite_only
def test_a_long_sequence_does_not_hold_up_a_newer_publish(sync_env):
    env = sync_env
    frames = 3 * CHUNK_FILES
    sequence = env.publish(LOCAL_ID, "sequence", files=frames, size=64)
    shot = env.publish(LOCAL_ID, "shot", files=3, size=64)
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: _all_synced(env, shot, "studio"), timeout=60)
    # The shot's turn is when its files start. Counting the frames synced before its last
    # file was synced also counted those the other workers finished while that file was
    # still being copied: on a loaded machine, several (204 of the 208 allowed, seen).
    started = [e.repre_id for e in env.of_type(TransferStarted)]
    last_shot_start = len(started) - 1 - started[::-1].index(shot)
    before = started[:last_shot_start].count(sequence)
    # One chunk of the sequence, plus what was already claimed when the shot's turn came.
    assert before <= CHUNK_FILES + 2 * env.settings.engine.workers_per_site, before
    # The store is written before each event is published: wait for both.
    env.wait_for(lambda: _all_synced(env, sequence, "studio") and engine.in_flight == 0,
                 timeout=120)
    assert len(env.of_type(FileSynced)) == frames + 3
