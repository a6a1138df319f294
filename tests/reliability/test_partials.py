"""Abandoned part files: a resume reuses them; the engine's sweep removes the ones nobody
comes back for (here: the file's target site was removed after a crash), on its own."""

from __future__ import annotations

import os
import time
from pathlib import Path

from app.engine.engine import Engine
from app.events.types import FileSynced, TransferStarted
from app.settings import load_settings
from providers.local_drive import part_path
from tests.integration.conftest import LOCAL_ID, write_settings

HOUR_S = 3600.0


def _leave_part(env, repre_id: str, data_len: int, age_s: float) -> Path:
    """What a crashed transfer leaves: the first bytes of the file under its part name."""
    repre = env.store.get_representation("demo", repre_id)
    rel = repre.files[0].path.replace("{root[work]}/", "")
    source = env.roots[LOCAL_ID] / rel
    final = env.roots["studio"] / rel
    final.parent.mkdir(parents=True, exist_ok=True)
    part = Path(part_path(str(final)))
    part.write_bytes(source.read_bytes()[:data_len])
    stamp = time.time() - age_s
    os.utime(part, (stamp, stamp))
    return part


def test_a_young_part_is_resumed_and_an_orphan_is_swept(sync_env):
    env = sync_env
    wanted = env.publish(LOCAL_ID, "wanted", files=1, size=300_000)
    dropped = env.publish(LOCAL_ID, "dropped", files=1, size=300_000)
    resumable = _leave_part(env, wanted, 100_000, age_s=HOUR_S)
    orphan = _leave_part(env, dropped, 100_000, age_s=72 * HOUR_S)
    env.store.remove_site("demo", dropped, "studio")  # nobody will come back for it

    engine = env.engine()
    engine.start()
    env.wait_for(lambda: env.of_type(FileSynced))
    started = env.of_type(TransferStarted)
    assert [e.resumed_from for e in started] == [100_000]  # the young part was reused
    assert not resumable.exists()
    assert orphan.exists()  # no sweep yet: it runs a while after start

    assert engine.sweep_partials() == 1  # default age 48 h
    assert not orphan.exists()
    assert engine.sweep_partials() == 0


def test_the_sweep_runs_by_itself_and_honours_the_age_setting(sync_env, monkeypatch):
    env = sync_env
    dropped = env.publish(LOCAL_ID, "dropped", files=1, size=50_000)
    kept = _leave_part(env, dropped, 10_000, age_s=2 * HOUR_S)
    env.store.remove_site("demo", dropped, "studio")
    write_settings(env.settings_path, env.roots, partial_max_age_h=3)
    env.settings = load_settings(env.settings_path)
    monkeypatch.setattr(Engine, "SWEEP_DELAY_S", 0.2)
    monkeypatch.setattr(Engine, "SWEEP_INTERVAL_S", 0.2)
    engine = env.engine()
    engine.start()
    time.sleep(1.0)
    assert kept.exists()  # younger than 3 h

    stale = _leave_part(env, dropped, 10_000, age_s=4 * HOUR_S)
    env.wait_for(lambda: not stale.exists(), timeout=10)


def test_age_zero_disables_the_sweep(sync_env):
    env = sync_env
    dropped = env.publish(LOCAL_ID, "dropped", files=1, size=50_000)
    part = _leave_part(env, dropped, 10_000, age_s=1000 * HOUR_S)
    env.store.remove_site("demo", dropped, "studio")
    write_settings(env.settings_path, env.roots, partial_max_age_h=0)
    env.settings = load_settings(env.settings_path)
    assert env.engine().sweep_partials() == 0
    assert part.exists()
