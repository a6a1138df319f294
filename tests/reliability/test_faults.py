"""Faults while moving files, on both stores: provider errors, timeouts, stalls, dropped
connections and lost commit answers at a steady rate on both sides; a source rewritten,
replaced or deleted while it is being read.

What must hold: every file ends up synced with the source's bytes and checksum, nothing
is ever marked available with other bytes, every injected fault is counted as exactly one
try (and success clears it), and no temporary file is left behind.
"""

from __future__ import annotations

import json
import os
import random
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from app.events.types import FileFailed, FileSynced
from app.model import Status
from app.settings import load_settings
from app.status import site_status
from providers.base import Provider, Reader
from providers.registry import create_provider
from tests.integration.conftest import LOCAL_ID
from tests.reliability.faulty import FaultPlan, faulty_factory
from tests.reliability.helpers import STUDIO, all_synced, configure, local, publish, report


def _check_available_files_are_right(env, repre_ids: list[str]) -> int:
    """Every entry marked available holds the publisher's bytes; returns how many."""
    available = 0
    for repre_id in repre_ids:
        repre = env.store.get_representation("demo", repre_id)
        for f in repre.files:
            for state in (s for s in f.sites if s.available):
                available += 1
                data = local(env, state.name, f.path).read_bytes()
                other = next(s.name for s in f.sites if s.name != state.name)
                source = local(env, other, f.path)
                assert source.exists() and data == source.read_bytes(), (f.path, state.name)
    return available




# -- steady faults -----------------------------------------------------------------------------


def test_steady_faults_on_both_sides_never_corrupt_and_every_fault_is_one_try(sync_env):
    env = sync_env
    # retry_cnt high enough that steady faults never exhaust a file; back-off short. The
    # lease is long enough that a loaded machine never lets one expire: a lost claim is
    # (rightly) not recorded as a try, which would break the one-fault-one-try count.
    configure(env, retry_cnt=60, workers_per_site=4, lease_s=15, backoff_base_s=0.01,
               backoff_max_s=0.05, progress_interval_s=0.05)
    rng = random.Random(20240601)
    repre_ids = []
    for r in range(12):  # uploads: small files of every size class
        sizes = [rng.choice([0, 1, 4096, rng.randint(1, 256 * 1024)]) for _ in range(8)]
        repre_ids.append(publish(env, LOCAL_ID, f"up{r:02d}", sizes, rng))
    for r in range(5):  # downloads, with some 1-6 MiB files (several chunks each)
        sizes = [rng.randint(1, 64 * 1024) for _ in range(6)] + [rng.randint(1 << 20, 6 << 20)]
        repre_ids.append(publish(env, STUDIO, f"down{r:02d}", sizes, rng))
    # One file large enough for the pipelined (two-thread) read path.
    repre_ids.append(publish(env, LOCAL_ID, "plate", [17 << 20], rng))
    total = sum(len(env.store.get_representation("demo", r).files) for r in repre_ids)

    plans = {site: FaultPlan(open_error=0.04, stall=0.02, timeout=0.02, drop=0.03,
                             commit_lost=0.04, stall_s=0.2, timeout_s=0.05, seed=seed)
             for seed, site in enumerate((LOCAL_ID, STUDIO))}
    engine = env.engine(provider_factory=faulty_factory(plans))
    engine.start()
    env.wait_for(lambda: all_synced(env, repre_ids), timeout=240)
    engine.stop()

    injected = sum((p.counts for p in plans.values()), start=type(plans[STUDIO].counts)())
    for kind in ("open_error", "stall", "timeout", "drop", "commit_lost"):
        assert injected[kind] > 0, f"no {kind} injected: {dict(injected)}"
    failures = env.of_type(FileFailed)
    assert all(f.error.startswith("injected: ") for f in failures), \
        [f.error for f in failures if not f.error.startswith("injected: ")][:5]
    raised = sum(p.raised for p in plans.values())
    assert len(failures) == raised, f"{len(failures)} FileFailed for {raised} injected: {injected}"
    assert not any(f.permanent for f in failures)
    assert len({(e.repre_id, e.file_id) for e in env.of_type(FileSynced)}) == total
    assert _check_available_files_are_right(env, repre_ids) == 2 * total
    for repre_id in repre_ids:
        for f in env.store.get_representation("demo", repre_id).files:
            for state in f.sites:
                assert state.tries == 0 and state.error is None and state.lease_owner is None
            a, b = f.sites
            assert a.checksum == b.checksum and a.checksum.startswith("sha256:")
    assert env.part_files() == []
    report("steady_faults", store=env.store.kind, files=total, injected=dict(injected),
           file_failed_events=len(failures))


# -- the source changes under a running transfer ----------------------------------------------


class _HookedSource(Provider):
    """The real source provider; the first read of ``path`` after ``arm()`` runs a hook
    (which edits the source file) once, after the first chunk was handed out."""

    def __init__(self, inner: Provider) -> None:
        super().__init__(inner.site, inner.config)
        self.kind, self.features, self.inner = inner.kind, inner.features, inner
        self.hook = None
        self.fired = threading.Event()

    def resolve(self, p):
        return self.inner.resolve(p)

    def stat(self, p):
        return self.inner.stat(p)

    def delete(self, p):
        self.inner.delete(p)

    def open_writer(self, p, size, resume=True):
        return self.inner.open_writer(p, size, resume)

    def open_reader(self, p, offset=0) -> Reader:
        inner, owner = self.inner.open_reader(p, offset), self

        class _Reader(Reader):
            def read(self, size):
                chunk = inner.read(size)
                if owner.hook is not None and not owner.fired.is_set():
                    owner.fired.set()
                    owner.hook()
                return chunk

            def changed(self):
                return inner.changed()

            def close(self):
                inner.close()

        return _Reader()


def _hooked_env(env):
    made: dict[str, Provider] = {}

    def factory(kind, site, config):
        if site not in made:
            provider = create_provider(kind, site, config)
            made[site] = _HookedSource(provider) if site == LOCAL_ID else provider
        return made[site]

    return factory, made


def _rewrite_in_place(path: Path) -> None:
    """Same size, other bytes, same inode: what a tool re-saving the file does."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.write(os.urandom(size))


def _replace_by_rename(path: Path) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(os.urandom(path.stat().st_size))
    os.replace(tmp, path)


EDITS = {"rewritten in place": _rewrite_in_place, "replaced by rename": _replace_by_rename}


@pytest.mark.parametrize("edit", sorted(EDITS))
@pytest.mark.parametrize("checksum", [True, False], ids=["sitesync-publish", "openpype-publish"])
def test_a_source_edited_during_the_copy_is_never_marked_available_with_other_bytes(
        sync_env, edit, checksum):
    env = sync_env
    configure(env, retry_cnt=3, workers_per_site=1, backoff_base_s=0.05, backoff_max_s=0.1)
    rng = random.Random(7)
    repre_id = publish(env, LOCAL_ID, "edited", [9 << 20], rng, checksum=checksum)
    rootless = env.store.get_representation("demo", repre_id).files[0].path
    source = local(env, LOCAL_ID, rootless)
    factory, made = _hooked_env(env)
    engine = env.engine(provider_factory=factory)
    engine._provider("demo", LOCAL_ID)  # build it now to arm the hook
    made[LOCAL_ID].hook = lambda: EDITS[edit](source)
    engine.start()
    env.wait_for(lambda: env.of_type(FileFailed))
    first = env.of_type(FileFailed)[0]
    assert "changed while it was being copied" in first.error and not first.permanent, first.error
    if checksum:
        # The next attempt reads one whole version, but not the published one: refused.
        env.wait_for(lambda: site_status(
            env.store.get_representation("demo", repre_id).files[0].site(STUDIO), 3,
            datetime.now(timezone.utc)) is Status.FAILED)
        state = env.store.get_representation("demo", repre_id).files[0].site(STUDIO)
        assert state.permanent and "no longer matches the checksum" in state.error
        assert not local(env, STUDIO, rootless).exists()
    else:
        # Without a recorded checksum the next attempt syncs the file as it now is.
        env.wait_for(lambda: all_synced(env, [repre_id]))
        assert local(env, STUDIO, rootless).read_bytes() == source.read_bytes()
    assert env.part_files() == []
    report("source_edited", store=env.store.kind, edit=edit, checksum_recorded=checksum)


@pytest.mark.parametrize("checksum", [True, False], ids=["sitesync-publish", "openpype-publish"])
def test_a_source_deleted_during_the_copy_still_gives_the_whole_published_file(sync_env, checksum):
    """The open file keeps its bytes (POSIX): the copy is the published version, whole."""
    env = sync_env
    configure(env, retry_cnt=3, workers_per_site=1)
    repre_id = publish(env, LOCAL_ID, "deleted", [9 << 20], random.Random(8), checksum=checksum)
    rootless = env.store.get_representation("demo", repre_id).files[0].path
    source = local(env, LOCAL_ID, rootless)
    original = source.read_bytes()
    factory, made = _hooked_env(env)
    engine = env.engine(provider_factory=factory)
    engine._provider("demo", LOCAL_ID)
    made[LOCAL_ID].hook = source.unlink
    engine.start()
    env.wait_for(lambda: all_synced(env, [repre_id]))
    assert made[LOCAL_ID].fired.is_set() and not source.exists()
    assert local(env, STUDIO, rootless).read_bytes() == original
    assert not env.of_type(FileFailed)
    report("source_deleted", store=env.store.kind, checksum_recorded=checksum)


def test_a_failed_file_is_retried_after_its_back_off_not_after_the_loop_delay(sync_env):
    """With OpenPype's loop_delay of 60 s, an idle engine must still wake for a retry
    due in a fraction of a second."""
    env = sync_env
    configure(env, retry_cnt=5, backoff_base_s=0.2, backoff_max_s=0.4)
    raw = json.loads(env.settings_path.read_text())
    raw["loop_delay"] = 60
    env.settings_path.write_text(json.dumps(raw))
    env.settings = load_settings(env.settings_path)
    repre_id = publish(env, LOCAL_ID, "flaky", [1000], random.Random(3))
    plan = FaultPlan(open_error=1.0)
    engine = env.engine(provider_factory=faulty_factory({STUDIO: plan}))
    engine.start()
    env.wait_for(lambda: len(env.of_type(FileFailed)) >= 2, timeout=10)
    plan.open_error = 0.0
    # The store is written before the event is published: wait for both.
    env.wait_for(lambda: all_synced(env, [repre_id]) and env.of_type(FileSynced), timeout=10)
    failures = env.of_type(FileFailed)
    synced = env.of_type(FileSynced)[0]
    # Each retry came soon after its due time (a loaded machine may add a little), never
    # after the 60 s loop delay.
    for failed, following in zip(failures, [*failures[1:], synced], strict=True):
        assert (following.at - failed.next_attempt_dt).total_seconds() < 2.0, (failed, following)
