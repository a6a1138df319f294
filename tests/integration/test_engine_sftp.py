"""End-to-end: the engine syncing studio storage (local_drive) with an SFTP site on a real
OpenSSH sshd, both ways, on both store back-ends; then what goes wrong on the way: a cut
connection, a server restart, a pause while the server hangs, a changed host key, a full
disk on the server."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timezone

import pytest

from app.engine import transfer
from app.events.types import FileFailed, FileProgress, FileSynced, TransferStarted
from app.model import Status
from app.settings import load_settings
from app.status import site_status
from providers.sftp import streams
from tests.integration.conftest import SyncEnv
from tests.sftp_server import BROKEN_SFTP_SETUPS, can_mount

STUDIO, REMOTE = "studio", "remote"
MiB = 1 << 20


def _env(tmp_path, store, sshd, remote_root=None, **remote_options) -> SyncEnv:
    studio_root = tmp_path / "studio"
    studio_root.mkdir()
    remote_root = remote_root or sshd.folder(f"e2e-{uuid.uuid4().hex[:8]}")
    remote = {"provider": "sftp", **sshd.site_config(remote_root, sftp_stall_timeout_s=5,
                                                      sftp_connect_timeout_s=3),
              **remote_options}
    raw = {
        "local_id": "artist-one",
        "retry_cnt": 3,
        "loop_delay": 2,
        "publish_site": STUDIO,
        "remote_site": REMOTE,
        "sites": {STUDIO: {"provider": "local_drive", "root": {"work": str(studio_root)}},
                  REMOTE: remote},
        "engine": {"workers_per_site": 4, "lease_s": 6, "backoff_base_s": 0.2,
                   "backoff_max_s": 1, "progress_interval_s": 0.1},
    }
    settings_path = tmp_path / "settings.json"
    settings_path.write_text(json.dumps(raw, indent=2))
    return SyncEnv(tmp=tmp_path, store=store, settings=load_settings(settings_path),
                   roots={STUDIO: studio_root, REMOTE: remote_root}, settings_path=settings_path)


@pytest.fixture
def make_env(tmp_path, store_factory, sshd):
    made: list[SyncEnv] = []

    def factory(**kwargs) -> SyncEnv:
        env = _env(tmp_path, store_factory(), sshd, **kwargs)
        made.append(env)
        return env

    yield factory
    for env in made:
        for engine in env.engines:
            engine.stop(drain=False, timeout_s=10)


def _publish(env: SyncEnv, sshd, on: str, asset: str, files: int, size: int) -> str:
    other = REMOTE if on == STUDIO else STUDIO
    repre_id = env.publish(on, asset, files=files, size=size, queued=(other,))
    if on == REMOTE:
        sshd.chown(env.roots[REMOTE])  # as if the studio had put them there over SFTP
    return repre_id


def _synced(env: SyncEnv, repre_id: str, site: str) -> bool:
    repre = env.store.get_representation("demo", repre_id)
    return all(f.site(site) is not None and f.site(site).available for f in repre.files)


def _state(env: SyncEnv, repre_id: str, site: str):
    return env.store.get_representation("demo", repre_id).files[0].site(site)


def _check_copies(env: SyncEnv, repre_id: str) -> None:
    repre = env.store.get_representation("demo", repre_id)
    for file in repre.files:
        assert env.same_bytes(file.path, STUDIO, REMOTE)
        studio, remote = file.site(STUDIO), file.site(REMOTE)
        assert studio.checksum == remote.checksum and studio.checksum.startswith("sha256:")
    assert env.part_files() == []


#: The SFTP site's bandwidth limit in the tests that cut a transfer part-way: a 24 MiB
#: file then takes seconds, so the cut (on a progress event, at most every 0.1 s) comes
#: while bytes are still to move, however fast the machine copies.
PACE = "8M"


def _cut_once(env: SyncEnv, action, after_bytes: int = 2 * MiB) -> threading.Event:
    """Run ``action`` once, from the worker thread, when a transfer is under way."""
    done = threading.Event()

    def on_progress(event: FileProgress) -> None:
        if not done.is_set() and after_bytes <= event.bytes_done < event.size:
            done.set()
            action()

    env.engines[0].bus.subscribe(on_progress, FileProgress)
    return done


def test_studio_and_sftp_sync_both_ways(make_env, sshd):
    env = make_env()
    up = _publish(env, sshd, STUDIO, "up", files=3, size=10_000)
    down = _publish(env, sshd, REMOTE, "down", files=2, size=3 * MiB)
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: _synced(env, up, REMOTE) and _synced(env, down, STUDIO))
    _check_copies(env, up)
    _check_copies(env, down)
    assert len(env.of_type(FileSynced)) == 5 and not env.of_type(FileFailed)
    remote = engine._providers[("demo", REMOTE)]
    assert remote.pool.connects <= remote.options.max_connections


def test_a_server_with_one_session_per_connection_syncs_both_ways(make_env, sshd):
    # MaxSessions 1 (hardened servers): 4 workers, 2 connections, one channel each, and
    # every large upload also needs a channel for the server's hash command.
    env = make_env(sftp_port=sshd.one_session_port, sftp_max_connections=2)
    up = _publish(env, sshd, STUDIO, "up", files=4, size=2 * MiB)
    down = _publish(env, sshd, REMOTE, "down", files=4, size=300_000)
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: _synced(env, up, REMOTE) and _synced(env, down, STUDIO))
    _check_copies(env, up)
    _check_copies(env, down)
    assert not env.of_type(FileFailed)
    remote = engine._providers[("demo", REMOTE)]
    assert remote.pool.connects <= 2 and remote.verifier.last_method == "server_hash"


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["upload", "download"])
def test_a_cut_connection_mid_transfer_resumes_without_a_failed_try(make_env, sshd, direction):
    env = make_env(bwlimit=PACE)
    on = STUDIO if direction == "upload" else REMOTE
    repre_id = _publish(env, sshd, on, "cut", files=1, size=24 * MiB)
    engine = env.engine()
    cut = _cut_once(env, sshd.drop_connections)
    engine.start()
    target = REMOTE if direction == "upload" else STUDIO
    env.wait_for(lambda: _synced(env, repre_id, target), timeout=60)
    assert cut.is_set()
    assert not env.of_type(FileFailed) and _state(env, repre_id, target).tries == 0
    _check_copies(env, repre_id)


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["upload", "download"])
def test_server_restart_mid_transfer_resumes_from_the_partial_file(make_env, sshd, monkeypatch,
                                                                   direction):
    # One quick reconnect attempt inside the transfer, so the outage reaches the engine.
    monkeypatch.setattr(streams, "_RECOVERY_DELAYS", (0.05,))
    monkeypatch.setattr(streams, "RECOVERIES", 1)
    # Downloads read ahead of what is written (the pipelined read thread's queue plus the
    # SFTP request window); with the default depth a loaded machine could have fetched the
    # whole file before the cut. One chunk ahead keeps the cut in the middle of the bytes.
    monkeypatch.setattr(transfer, "PIPELINE_DEPTH", 1)
    env = make_env(bwlimit=PACE)
    on = STUDIO if direction == "upload" else REMOTE
    repre_id = _publish(env, sshd, on, "restart", files=1, size=24 * MiB)
    engine = env.engine()
    restarted = threading.Event()

    def crash_and_restart() -> None:
        sshd.stop()

        def later() -> None:
            env.wait_for(lambda: env.of_type(FileFailed), timeout=30)
            sshd.start()
            restarted.set()

        threading.Thread(target=later, daemon=True).start()

    _cut_once(env, crash_and_restart, after_bytes=4 * MiB)
    engine.start()
    target = REMOTE if direction == "upload" else STUDIO
    try:
        env.wait_for(lambda: _synced(env, repre_id, target), timeout=90)
    finally:
        restarted.wait(30)
        sshd.start()
    failures = env.of_type(FileFailed)
    assert failures, "the server outage never reached the engine"
    failure = failures[0]
    assert not failure.permanent and "will retry" in failure.error
    resumed = [event.resumed_from for event in env.of_type(TransferStarted)]
    assert resumed[0] == 0 and resumed[-1] > 0, resumed
    assert _state(env, repre_id, target).tries == 0  # success clears the failed try
    _check_copies(env, repre_id)


@pytest.mark.slow
def test_pausing_mid_upload_keeps_the_part_on_the_server_and_resumes(make_env, sshd):
    env = make_env(sftp_stall_timeout_s=30, bwlimit=PACE)
    repre_id = _publish(env, sshd, STUDIO, "paused", files=1, size=24 * MiB)
    engine = env.engine()
    frozen: list[int] = []

    def pause_on_a_stuck_server() -> None:
        # The server stops answering, so the upload blocks inside a write: the pause
        # must still stop it at once (the provider's interrupt), not after the stall timeout.
        frozen.extend(sshd.freeze_connections())
        threading.Thread(target=engine.pause_representation,
                         args=("demo", repre_id, REMOTE), daemon=True).start()

    # Well past the write window (about 4 MiB of requests in flight), so the server has
    # confirmed part of the file when it freezes.
    _cut_once(env, pause_on_a_stuck_server, after_bytes=8 * MiB)
    engine.start()
    try:
        env.wait_for(lambda: frozen and engine.in_flight == 0, timeout=10)
    finally:
        sshd.kill(frozen)
    state = _state(env, repre_id, REMOTE)
    assert state.tries == 0 and state.created_dt is None and not env.of_type(FileFailed)
    (part,) = env.part_files()
    assert part.parent.is_relative_to(env.roots[REMOTE]) and part.stat().st_size > 0
    engine.pause_representation("demo", repre_id, REMOTE, paused=False)
    env.wait_for(lambda: _synced(env, repre_id, REMOTE), timeout=60)
    resumed = [event.resumed_from for event in env.of_type(TransferStarted)]
    assert resumed[0] == 0 and resumed[-1] > 0, resumed
    _check_copies(env, repre_id)


def test_a_changed_host_key_fails_the_files_with_the_fix(make_env, sshd):
    env = make_env(known_hosts=sshd.known_hosts_with("e2e", "wrong"))
    repre_id = _publish(env, sshd, STUDIO, "mitm", files=1, size=1000)
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: site_status(_state(env, repre_id, REMOTE), 3,
                                     datetime.now(timezone.utc)) is Status.FAILED)
    state = _state(env, repre_id, REMOTE)
    assert state.tries == 1 and "has CHANGED" in state.error and "ssh-keygen -R" in state.error
    assert list(env.roots[REMOTE].rglob("*")) == []


@pytest.mark.parametrize("setup", BROKEN_SFTP_SETUPS, ids=lambda setup: setup.name)
def test_a_server_that_cannot_start_sftp_fails_the_file_with_the_fix(make_env, sshd, caplog, setup):
    env = make_env(sftp_port=setup.started(sshd))
    repre_id = _publish(env, sshd, STUDIO, setup.name, files=1, size=1000)
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: site_status(_state(env, repre_id, REMOTE), 3,
                                     datetime.now(timezone.utc)) is Status.FAILED)
    state = _state(env, repre_id, REMOTE)
    assert state.tries == 1 and not state.available  # permanent: not retried
    assert all(words in state.error for words in setup.says), state.error
    assert not any(words in state.error for words in setup.never_says), state.error
    assert list(env.roots[REMOTE].rglob("*")) == []
    assert not env.of_type(FileSynced)
    assert not [record for record in caplog.records if record.exc_info]  # no traceback logged


@pytest.mark.slow
@pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs CAP_SYS_ADMIN (CI runs as root)")
def test_a_full_disk_on_the_server_fails_that_file_and_frees_the_space(make_env, sshd):
    small = sshd.small_disk(f"e2e-full-{uuid.uuid4().hex[:8]}", "2m")
    env = make_env(remote_root=small)
    big = _publish(env, sshd, STUDIO, "big", files=1, size=3 * MiB)
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: site_status(_state(env, big, REMOTE), 3,
                                     datetime.now(timezone.utc)) is Status.FAILED)
    state = _state(env, big, REMOTE)
    assert state.permanent and "disk full on the SFTP server" in state.error
    assert env.part_files() == []
    fits = _publish(env, sshd, STUDIO, "fits", files=2, size=200_000)
    engine.sync_now()
    env.wait_for(lambda: _synced(env, fits, REMOTE))
    _check_copies(env, fits)
