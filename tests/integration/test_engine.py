"""End-to-end engine behaviour: two real local_drive sites, both store back-ends."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from app.errors import TransientError
from app.events.types import FileFailed, FileSynced, TransferStarted, TransferStopped
from app.model import Status
from app.status import site_status
from providers.registry import create_provider
from tests.integration.conftest import LOCAL_ID

NOW = datetime.now


def _status(env, repre_id, site, index=0):
    repre = env.store.get_representation("demo", repre_id)
    return site_status(repre.files[index].site(site), 3, datetime.now(timezone.utc))


def _all_synced(env, repre_id, site):
    repre = env.store.get_representation("demo", repre_id)
    return all(f.site(site) is not None and f.site(site).available for f in repre.files)


def test_uploads_and_downloads_are_verified_and_recorded(sync_env):
    env = sync_env
    up = env.publish(LOCAL_ID, "up", files=3)
    down = env.publish("studio", "down", files=2, size=3 * 1024 * 1024)
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: _all_synced(env, up, "studio") and _all_synced(env, down, LOCAL_ID))
    for repre_id, target in ((up, "studio"), (down, LOCAL_ID)):
        repre = env.store.get_representation("demo", repre_id)
        for f in repre.files:
            state = f.site(target)
            assert state.id == f.path.rsplit("/", 1)[1]  # OpenPype's local id: basename
            assert state.checksum and state.checksum.startswith("sha256:")
            assert state.checksum == f.site(
                "studio" if target == LOCAL_ID else LOCAL_ID).checksum
            assert state.tries == 0 and state.progress is None and state.lease_owner is None
            assert env.same_bytes(f.path, LOCAL_ID, "studio")
    assert env.part_files() == []
    assert len(env.of_type(FileSynced)) == 5
    env.wait_for(lambda: engine.state == "idle")


def test_priority_orders_the_work(sync_env, tmp_path):
    env = sync_env
    low = env.publish(LOCAL_ID, "low", files=3)
    high = env.publish(LOCAL_ID, "high", files=3, priority=90)
    from tests.integration.conftest import write_settings

    write_settings(env.settings_path, env.roots, workers_per_site=1)
    from app.settings import load_settings

    env.settings = load_settings(env.settings_path)
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: len(env.of_type(FileSynced)) == 6)
    order = [e.repre_id for e in env.of_type(FileSynced)]
    assert order == [high] * 3 + [low] * 3


def test_engine_pause_is_persisted_and_resume_continues(sync_env):
    env = sync_env
    repre_id = env.publish(LOCAL_ID, "a", files=2)
    first = env.engine()
    first.pause()
    first.start()
    time.sleep(1.0)
    assert first.state == "paused" and not env.of_type(TransferStarted)
    first.stop()
    second = env.engine()  # a restart keeps the pause
    assert second.paused
    second.start()
    time.sleep(0.5)
    assert not env.of_type(TransferStarted)
    second.resume()
    env.wait_for(lambda: _all_synced(env, repre_id, "studio"))


def test_project_and_representation_pause(sync_env):
    env = sync_env
    held = env.publish(LOCAL_ID, "held", files=2)
    env.store.set_paused("demo", held, "studio", True)
    engine = env.engine()
    engine.start()
    free = env.publish(LOCAL_ID, "free", files=2)
    env.wait_for(lambda: _all_synced(env, free, "studio"))
    assert _status(env, held, "studio") is Status.PAUSED
    engine.pause_project("demo")
    later_one = env.publish(LOCAL_ID, "later", files=1)
    time.sleep(1.0)
    assert not _all_synced(env, later_one, "studio")
    engine.pause_project("demo", paused=False)
    engine.pause_representation("demo", held, "studio", paused=False)
    env.wait_for(lambda: _all_synced(env, later_one, "studio") and _all_synced(env, held, "studio"))


class _Wrapped:
    """Stands in for a provider or writer, passing everything through but what a
    subclass overrides."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _factory_wrapping(site_name, wrapper):
    """A provider factory that makes real providers and wraps ``site_name``'s."""
    made = {}

    def factory(kind, site, config):
        if site not in made:
            provider = create_provider(kind, site, config)
            made[site] = wrapper(provider) if site == site_name else provider
        return made[site]

    return factory


class _Slow(_Wrapped):
    """Wraps a real provider so reads take time: makes 'in flight' observable."""

    def __init__(self, provider, delay_s: float, fail_first: int = 0):
        super().__init__(provider)
        self._delay = delay_s
        self._fail = fail_first
        self._lock = threading.Lock()

    def open_reader(self, path, offset=0):
        with self._lock:
            if self._fail > 0:
                self._fail -= 1
                raise TransientError("simulated network drop")
        reader = self._inner.open_reader(path, offset)
        delay = self._delay

        class Reader:
            def read(self, size):
                time.sleep(delay)
                return reader.read(min(size, 256 * 1024))

            def close(self):
                reader.close()

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                reader.close()

        return Reader()


def _slow_factory(delay_s: float, fail_first: int = 0):
    return _factory_wrapping(LOCAL_ID, lambda provider: _Slow(provider, delay_s, fail_first))


def test_pausing_mid_transfer_keeps_partial_data_and_counts_no_try(sync_env):
    env = sync_env
    repre_id = env.publish(LOCAL_ID, "big", files=1, size=8 * 1024 * 1024)
    engine = env.engine(provider_factory=_slow_factory(0.05))
    engine.start()
    env.wait_for(lambda: env.of_type(TransferStarted))
    time.sleep(0.6)  # some chunks written
    engine.pause_representation("demo", repre_id, "studio")
    env.wait_for(lambda: engine.in_flight == 0)
    repre = env.store.get_representation("demo", repre_id)
    state = repre.files[0].site("studio")
    assert state.tries == 0 and state.created_dt is None and state.lease_owner is None
    assert len(env.part_files()) == 1 and env.part_files()[0].stat().st_size > 0
    assert not env.of_type(FileFailed)
    # Listeners learn the transfer ended (the tray's in-flight count, the queue's row).
    env.wait_for(lambda: env.of_type(TransferStopped))
    assert env.of_type(TransferStopped)[0].reason == "representation paused"
    engine.pause_representation("demo", repre_id, "studio", paused=False)
    env.wait_for(lambda: _all_synced(env, repre_id, "studio"), timeout=60)
    resumed = [e.resumed_from for e in env.of_type(TransferStarted)]
    assert resumed[0] == 0 and resumed[-1] > 0
    assert env.same_bytes(repre.files[0].path, LOCAL_ID, "studio")
    assert env.part_files() == []


def test_transient_errors_back_off_then_succeed(sync_env):
    env = sync_env
    repre_id = env.publish(LOCAL_ID, "flaky", files=1)
    engine = env.engine(provider_factory=_slow_factory(0, fail_first=2))
    engine.start()
    env.wait_for(lambda: _all_synced(env, repre_id, "studio"))
    failures = env.of_type(FileFailed)
    assert [f.tries for f in failures] == [1, 2]
    assert all(not f.permanent and f.next_attempt_dt > f.at for f in failures)
    assert "network drop" in failures[0].error
    state = env.store.get_representation("demo", repre_id).files[0].site("studio")
    assert state.tries == 0 and state.error is None  # success clears the failure record


def test_retry_cnt_stops_retrying(sync_env):
    env = sync_env
    repre_id = env.publish(LOCAL_ID, "doomed", files=1)
    engine = env.engine(provider_factory=_slow_factory(0, fail_first=100))
    engine.start()
    env.wait_for(lambda: _status(env, repre_id, "studio") is Status.FAILED, timeout=30)
    time.sleep(1.5)
    state = env.store.get_representation("demo", repre_id).files[0].site("studio")
    assert state.tries == 3 and "network drop" in state.error
    assert len(env.of_type(FileFailed)) == 3 and env.of_type(FileFailed)[-1].permanent


def test_missing_source_fails_permanently_and_reset_retries(sync_env):
    env = sync_env
    repre_id = env.publish(LOCAL_ID, "gone", files=1)
    repre = env.store.get_representation("demo", repre_id)
    source = env.roots[LOCAL_ID] / repre.files[0].path.replace("{root[work]}/", "")
    data = source.read_bytes()
    source.unlink()
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: _status(env, repre_id, "studio") is Status.FAILED)
    state = env.store.get_representation("demo", repre_id).files[0].site("studio")
    assert state.tries == 1 and state.permanent and "missing" in state.error.lower()
    source.write_bytes(data)
    env.store.reset_site("demo", repre_id, "studio")
    engine.sync_now()
    env.wait_for(lambda: _all_synced(env, repre_id, "studio"))


def test_changed_source_is_refused(sync_env):
    env = sync_env
    repre_id = env.publish(LOCAL_ID, "edited", files=1, size=5000)
    repre = env.store.get_representation("demo", repre_id)
    source = env.roots[LOCAL_ID] / repre.files[0].path.replace("{root[work]}/", "")
    source.write_bytes(b"x" * 7000)  # edited after publishing
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: _status(env, repre_id, "studio") is Status.FAILED)
    state = env.store.get_representation("demo", repre_id).files[0].site("studio")
    assert "changed after it was published" in state.error
    target = env.roots["studio"] / repre.files[0].path.replace("{root[work]}/", "")
    assert not target.exists() and env.part_files() == []


def test_stop_with_drain_lets_running_transfers_finish(sync_env):
    env = sync_env
    repre_id = env.publish(LOCAL_ID, "drain", files=1, size=4 * 1024 * 1024)
    engine = env.engine(provider_factory=_slow_factory(0.02))
    engine.start()
    env.wait_for(lambda: env.of_type(TransferStarted))
    engine.stop(drain=True, timeout_s=30)
    assert _all_synced(env, repre_id, "studio")
    assert engine.state == "stopped" and env.part_files() == []


def test_a_server_serves_as_its_own_site(sync_env, tmp_path):
    """`serve --site studio`: the studio server backs studio up to another site without
    pretending to be an artist machine."""
    import json

    from app.settings import load_settings

    env = sync_env
    backup = tmp_path / "backup"
    backup.mkdir()
    raw = json.loads(env.settings_path.read_text())
    raw["sites"]["backup"] = {"provider": "local_drive", "root": {"work": str(backup)}}
    raw["publish_site"], raw["remote_site"] = "studio", "backup"
    env.settings_path.write_text(json.dumps(raw))
    env.settings = load_settings(env.settings_path)
    env.roots["backup"] = backup
    repre_id = env.publish("studio", "plate", files=2, queued=("backup",))
    artist_only = env.publish(LOCAL_ID, "wip", files=1, queued=("studio",))
    engine = env.engine(serve_site="studio")
    assert [(p.active, p.remote) for p in engine.pairs()] == [("studio", "backup")]
    engine.start()
    env.wait_for(lambda: _all_synced(env, repre_id, "backup"))
    assert env.same_bytes(env.store.get_representation("demo", repre_id).files[0].path,
                          "studio", "backup")
    # The artist's upload is not this server's pair.
    assert not _all_synced(env, artist_only, "studio")


def test_a_file_whose_deferred_commit_fails_is_a_failed_try_and_its_batch_is_recorded(sync_env):
    """Workers leave the fsync and rename of a verified file to the finisher: when that
    fails for one file (an I/O error at fsync), that file is a failed try, retried and
    synced later, and the files finished with it are recorded as usual."""
    env = sync_env
    repre_id = env.publish(LOCAL_ID, "deferred", files=4)
    failures = {"left": 1}

    class FinishFailsOnce(_Wrapped):
        def finish_deferred(self):
            if failures["left"]:
                failures["left"] -= 1
                self._inner.abort(keep_partial=False)
                raise TransientError("simulated: I/O error at fsync")
            self._inner.finish_deferred()

    class Target(_Wrapped):
        def open_writer(self, *args, **kwargs):
            return FinishFailsOnce(self._inner.open_writer(*args, **kwargs))

    engine = env.engine(provider_factory=_factory_wrapping("studio", Target))
    engine.start()
    env.wait_for(lambda: _all_synced(env, repre_id, "studio") and engine.in_flight == 0)
    failed = env.of_type(FileFailed)
    assert len(failed) == 1 and "I/O error at fsync" in failed[0].error
    files = env.store.get_representation("demo", repre_id).files
    synced = [e.file_id for e in env.of_type(FileSynced)]
    assert sorted(synced) == sorted(f.id for f in files)  # each once, the failed one later
    assert synced[-1] == failed[0].file_id
    for f in files:
        assert env.same_bytes(f.path, LOCAL_ID, "studio")


def test_a_file_whose_folder_cannot_be_made_durable_is_not_recorded(sync_env):
    """The finisher syncs folders before recording: if that fails, the file is a failed
    try (retried), never marked available on the strength of an undurable rename."""
    env = sync_env
    repre_id = env.publish(LOCAL_ID, "undurable", files=3)
    failures = {"left": 1}

    class FolderSyncFails(_Wrapped):
        def sync_committed(self, paths):
            if failures["left"]:
                failures["left"] -= 1
                raise TransientError("simulated: the folder could not be synced")
            self._inner.sync_committed(paths)

    engine = env.engine(provider_factory=_factory_wrapping("studio", FolderSyncFails))
    engine.start()
    # The store is written before the event is published: wait for both.
    env.wait_for(lambda: _all_synced(env, repre_id, "studio") and engine.in_flight == 0)
    failed = env.of_type(FileFailed)
    assert failed and all("could not be synced" in f.error for f in failed)
    synced = {e.file_id for e in env.of_type(FileSynced)}
    assert synced == {f.id for f in env.store.get_representation("demo", repre_id).files}
    for f in env.store.get_representation("demo", repre_id).files:
        state = f.site("studio")
        assert state.tries == 0 and state.error is None
        assert env.same_bytes(f.path, LOCAL_ID, "studio")
