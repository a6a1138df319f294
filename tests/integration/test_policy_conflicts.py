"""A target that already holds a file under the published path: adopt, or apply the
conflict policy; nothing is ever deleted. Real local_drive sites, both stores."""

from __future__ import annotations

import json
import os

from app.events.types import ConflictResolved, FileFailed, FileSynced, IntegrityAlert, TransferStarted
from app.model import Status
from app.settings import load_settings
from tests.integration.conftest import LOCAL_ID
from tests.integration.test_engine import _all_synced, _status


def _policy(env, policy) -> None:
    raw = json.loads(env.settings_path.read_text())
    raw["conflict_policy"] = policy
    env.settings_path.write_text(json.dumps(raw))
    env.settings = load_settings(env.settings_path)


def _local(env, site, rootless):
    return env.roots[site] / rootless.replace("{root[work]}/", "")


def _plant(env, repre_id, site, index, data: bytes | None = None, mtime: float | None = None):
    """Put a file on ``site`` under the published path of file ``index`` (a copy of the
    published file when ``data`` is None). Returns its rootless path."""
    repre = env.store.get_representation("demo", repre_id)
    path = repre.files[index].path
    source = next(s.name for s in repre.files[index].sites if s.available)
    target = _local(env, site, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(_local(env, source, path).read_bytes() if data is None else data)
    if mtime is not None:
        os.utime(target, (mtime, mtime))
    return path


def _conflict_copies(env, site):
    return sorted(p.name for p in env.roots[site].rglob("*.sitesync-conflict-*"))


def test_a_copy_already_in_place_is_adopted_without_moving_bytes(sync_env):
    env = sync_env
    repre_id = env.publish("studio", "seeded", files=3, size=50_000)
    planted = _plant(env, repre_id, LOCAL_ID, 1)
    before = _local(env, LOCAL_ID, planted).stat().st_ino
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: _all_synced(env, repre_id, LOCAL_ID))
    started = {e.file_id for e in env.of_type(TransferStarted)}
    repre = env.store.get_representation("demo", repre_id)
    assert repre.files[1].id not in started and repre.files[0].id in started
    assert _local(env, LOCAL_ID, planted).stat().st_ino == before  # untouched
    assert repre.files[1].site(LOCAL_ID).checksum == repre.files[1].site("studio").checksum
    assert len(env.of_type(FileSynced)) == 3 and not env.of_type(ConflictResolved)


def test_fail_policy_changes_nothing(sync_env):
    env = sync_env
    _policy(env, "fail")
    repre_id = env.publish("studio", "clash", files=2, size=20_000)
    other_size = _plant(env, repre_id, LOCAL_ID, 0, b"artist's own version")
    same_size = _plant(env, repre_id, LOCAL_ID, 1, os.urandom(20_001))
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: len(env.of_type(FileFailed)) == 2)
    for index in (0, 1):
        assert _status(env, repre_id, LOCAL_ID, index) is Status.FAILED
        state = env.store.get_representation("demo", repre_id).files[index].site(LOCAL_ID)
        assert state.permanent and state.error.startswith("conflict:")
        assert "conflict_policy" in state.error
    assert _local(env, LOCAL_ID, other_size).read_bytes() == b"artist's own version"
    assert len(_local(env, LOCAL_ID, same_size).read_bytes()) == 20_001
    details = " | ".join(e.detail for e in env.of_type(ConflictResolved))
    assert "same size, different content" in details
    assert "it has 20 bytes, the published file 20000" in details
    assert {e.outcome for e in env.of_type(ConflictResolved)} == {"failed"}
    assert _conflict_copies(env, LOCAL_ID) == [] and env.part_files() == []


def test_other_by_default_takes_the_published_file_and_keeps_the_old_one(sync_env):
    env = sync_env
    repre_id = env.publish(LOCAL_ID, "overwrite", files=1, size=30_000)
    path = _plant(env, repre_id, "studio", 0, b"stale file on the studio disk")
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: _all_synced(env, repre_id, "studio"))
    assert env.same_bytes(path, LOCAL_ID, "studio")
    [event] = env.of_type(ConflictResolved)
    assert event.outcome == "took_incoming" and event.policy == "other"
    kept = _local(env, "studio", event.kept_as)
    assert kept.read_bytes() == b"stale file on the studio disk"
    assert "sitesync-conflict-" in kept.name and kept.name.endswith("-studio.exr")


def test_this_keeps_the_target_file(sync_env):
    env = sync_env
    _policy(env, {"studio>local": "this"})
    repre_id = env.publish("studio", "mine", files=1)
    path = _plant(env, repre_id, LOCAL_ID, 0, b"my local edit")
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: _status(env, repre_id, LOCAL_ID) is Status.FAILED)
    assert _local(env, LOCAL_ID, path).read_bytes() == b"my local edit"
    state = env.store.get_representation("demo", repre_id).files[0].site(LOCAL_ID)
    assert "keeps it" in state.error and "'other'" in state.error
    assert [e.outcome for e in env.of_type(ConflictResolved)] == ["kept_target"]


def test_newer_compares_modification_times_per_pair(sync_env):
    env = sync_env
    _policy(env, {"studio>local": "newer", "default": "fail"})
    repre_id = env.publish("studio", "times", files=2)
    old = _plant(env, repre_id, LOCAL_ID, 0, b"older local file", mtime=1_000_000)
    new = _plant(env, repre_id, LOCAL_ID, 1, b"newer local file", mtime=4_000_000_000)
    upload = env.publish(LOCAL_ID, "upload", files=1)
    _plant(env, upload, "studio", 0, b"something else")  # local>studio: default fail
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: len(env.of_type(ConflictResolved)) == 3)
    env.wait_for(lambda: _status(env, repre_id, LOCAL_ID, 0) is Status.SYNCED)
    assert env.same_bytes(old, LOCAL_ID, "studio")
    assert _local(env, LOCAL_ID, new).read_bytes() == b"newer local file"
    outcomes = {(e.target_site, e.outcome) for e in env.of_type(ConflictResolved)}
    assert outcomes == {(LOCAL_ID, "took_incoming"), (LOCAL_ID, "kept_target"),
                        ("studio", "failed")}
    assert len(_conflict_copies(env, LOCAL_ID)) == 1


def test_a_published_file_changed_after_publishing_raises_an_integrity_alert(sync_env):
    env = sync_env
    repre_id = env.publish(LOCAL_ID, "edited", files=2, size=5000)
    repre = env.store.get_representation("demo", repre_id)
    _local(env, LOCAL_ID, repre.files[0].path).write_bytes(b"x" * 7000)  # size changed
    _local(env, LOCAL_ID, repre.files[1].path).write_bytes(os.urandom(5001))  # content
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: len(env.of_type(IntegrityAlert)) == 2)
    alerts = {e.file_id: e for e in env.of_type(IntegrityAlert)}
    size_alert, hash_alert = alerts[repre.files[0].id], alerts[repre.files[1].id]
    assert size_alert.site == LOCAL_ID and "changed after it was published" in size_alert.detail
    assert hash_alert.expected == repre.files[1].site(LOCAL_ID).checksum
    assert hash_alert.found.startswith("sha256:") and hash_alert.found != hash_alert.expected
    assert "re-publish" in hash_alert.action
    assert all(f.permanent for f in env.of_type(FileFailed))
