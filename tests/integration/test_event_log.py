"""What a real engine run leaves in the event log, on both stores."""

from __future__ import annotations

from app.model import Status
from tests.integration.conftest import LOCAL_ID
from tests.integration.test_engine import _all_synced, _status


def _log(env):
    assert env.store.flush_events(10)
    return [e for e in env.store.read_events(0, 10_000) if not e.is_gap]


def test_a_sync_run_logs_each_file_then_each_completed_representation(sync_env):
    env = sync_env
    repres = [env.publish(LOCAL_ID, f"shot{n}", files=3) for n in range(3)]
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: all(_all_synced(env, r, "studio") for r in repres))
    env.wait_for(lambda: len(_log(env)) == 12)
    events = _log(env)
    for repre_id in repres:
        mine = [e for e in events if e.repre_id == repre_id]
        assert [e.type for e in mine] == ["file_synced"] * 3 + ["representation_ready"]
        assert all(e.site == "studio" and e.project == "demo" for e in mine)
        files = env.store.get_representation("demo", repre_id).files
        assert sorted(e.file_id for e in mine[:3]) == sorted(f.id for f in files)
        assert all(e.data["checksum"] == files[0].site("studio").checksum
                   for e in mine[:1] if e.file_id == files[0].id)
        assert mine[3].data["files"] == 3


def test_an_edited_published_file_raises_an_integrity_alert(sync_env):
    env = sync_env
    repre_id = env.publish(LOCAL_ID, "edited", files=1, size=5000)
    repre = env.store.get_representation("demo", repre_id)
    source = env.roots[LOCAL_ID] / repre.files[0].path.replace("{root[work]}/", "")
    source.write_bytes(b"x" * 7000)  # edited after publishing
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: _status(env, repre_id, "studio") is Status.FAILED)
    env.wait_for(lambda: any(e.type == "integrity_alert" for e in _log(env)))
    # Both are about the same moment; MongoDB may log them in either order (the failure
    # goes through the representation's outbox, the alert is appended directly).
    by_type = {e.type: e for e in _log(env) if e.repre_id == repre_id}
    assert sorted(by_type) == ["file_failed", "integrity_alert"]
    failed, alert = by_type["file_failed"], by_type["integrity_alert"]
    assert (failed.type, failed.site, failed.data["permanent"]) == ("file_failed", "studio", True)
    assert (alert.type, alert.site, alert.file_id) == ("integrity_alert", LOCAL_ID, repre.files[0].id)
    assert "changed after it was published" in alert.data["detail"]
    assert alert.data["path"] == repre.files[0].path and "re-publish" in alert.data["action"]
