"""Subscriptions and "when complete" downloads on a running engine: real local_drive
sites, both stores. A render publishes frame by frame on the studio; this machine
subscribed to it."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime, timezone

from app.engine.transfer import CancelToken, transfer_file
from app.events.types import FileStaged, RepresentationCompleted, SubscriptionMatched
from app.model import SiteState, Status
from app.policy.staging import staged_path
from app.publish import build_representation
from app.settings import load_settings
from app.status import site_status
from providers.registry import create_provider
from tests.integration.conftest import LOCAL_ID
from tests.integration.test_engine import _all_synced


def _subscribe(env, rules) -> None:
    raw = json.loads(env.settings_path.read_text())
    raw["subscriptions"] = rules
    env.settings_path.write_text(json.dumps(raw))
    env.settings = load_settings(env.settings_path)


def _rendering(env, asset, frames=4, rendered=2, name="exr"):
    """A render publish on the studio: ``rendered`` frames are there, the rest are still
    being rendered (queued on the studio). Returns (repre id, checksums by file id)."""
    folder = env.roots["studio"] / "demo" / asset / "v001"
    folder.mkdir(parents=True)
    paths = []
    for frame in range(frames):
        path = folder / f"{asset}.{1001 + frame}.{name}"
        path.write_bytes(os.urandom(30_000 + frame))
        paths.append(path)
    repre = build_representation(
        "demo", paths, {"work": str(env.roots["studio"])}, asset=asset, subset="renderMain",
        version=1, name=name, family="render", publish_site="studio", queued_sites=(),
        now=datetime.now(timezone.utc))
    checksums = {f.id: f.sites[0].checksum for f in repre.files}
    files = tuple(f if i < rendered else dataclasses.replace(f, sites=(SiteState(name="studio"),))
                  for i, f in enumerate(repre.files))
    env.store.ensure_project("demo")
    return env.store.insert_representation(dataclasses.replace(repre, files=files)), checksums


def _render_rest(env, repre_id, checksums):
    """The remaining frames finish rendering: available on the studio."""
    for f in env.store.get_representation("demo", repre_id).files:
        state = f.site("studio")
        if not state.available:
            env.store.adopt_file("demo", repre_id, f.id, "studio", f.path.rsplit("/", 1)[1],
                                 checksums[f.id], datetime.now(timezone.utc))


def _local(env, rootless):
    return env.roots[LOCAL_ID] / rootless.replace("{root[work]}/", "")


def _started(env, engine):
    engine.start()
    env.wait_for(lambda: (env.tmp / "subscriptions.json").exists())  # the scanner looked


def _states(env, repre_id, site=LOCAL_ID):
    return [f.site(site) for f in env.store.get_representation("demo", repre_id).files]


def test_as_available_fetches_each_frame_as_soon_as_it_is_rendered(sync_env):
    env = sync_env
    _subscribe(env, [{"project": "demo", "asset": "sh01*", "representation": "exr",
                      "priority": 80, "name": "my shots"}])
    engine = env.engine()
    _started(env, engine)
    repre_id, checksums = _rendering(env, "sh010")
    other, _ = _rendering(env, "sh020", rendered=4)
    env.wait_for(lambda: sum(1 for s in _states(env, repre_id) if s and s.available) == 2)
    states = _states(env, repre_id)
    assert all(s is not None and s.priority == 80 for s in states)  # the rule's priority
    assert not states[2].available and not states[2].atomic
    assert all(s is None for s in _states(env, other))  # sh020 does not match
    [matched] = env.of_type(SubscriptionMatched)
    assert (matched.repre_id, matched.rule, matched.mode, matched.entries) == \
        (repre_id, "my shots", "as_available", 4)
    _render_rest(env, repre_id, checksums)
    engine.sync_now()
    env.wait_for(lambda: _all_synced(env, repre_id, LOCAL_ID))
    files = env.store.get_representation("demo", repre_id).files
    assert all(env.same_bytes(f.path, "studio", LOCAL_ID) for f in files)


def test_when_complete_shows_the_representation_only_once_it_is_whole(sync_env):
    env = sync_env
    _subscribe(env, [{"asset": "sh010", "mode": "when_complete"}])
    engine = env.engine()
    _started(env, engine)
    repre_id, checksums = _rendering(env, "sh010")
    env.wait_for(lambda: len(env.of_type(FileStaged)) == 2)
    files = env.store.get_representation("demo", repre_id).files
    states = _states(env, repre_id)
    now = datetime.now(timezone.utc)
    assert [site_status(s, 3, now) for s in states[:2]] == [Status.IN_PROGRESS] * 2
    assert all(s.atomic and s.staged_dt and not s.available for s in states[:2])
    assert not any(_local(env, f.path).exists() for f in files)  # nothing visible yet
    assert all(_local(env, staged_path(f.path)).exists() for f in files[:2])
    _render_rest(env, repre_id, checksums)
    engine.sync_now()
    env.wait_for(lambda: env.of_type(RepresentationCompleted))
    [done] = env.of_type(RepresentationCompleted)
    assert (done.repre_id, done.site, done.files, done.kept) == (repre_id, LOCAL_ID, 4, ())
    states = _states(env, repre_id)
    assert all(s.available and s.staged_dt is None for s in states)
    assert len({s.created_dt for s in states}) == 1  # made available in one write
    assert all(env.same_bytes(f.path, "studio", LOCAL_ID) for f in files)
    assert not list(env.roots[LOCAL_ID].rglob("*.sitesync-staged"))


def test_an_interrupted_completion_is_finished_after_a_restart(sync_env):
    """Both frames were staged when the machine went down, and one staged file was lost:
    `serve --once` fetches that one again, then completes, before it exits."""
    env = sync_env
    repre_id, _ = _rendering(env, "sh030", frames=2, rendered=2)
    env.store.add_site("demo", repre_id, LOCAL_ID, atomic=True)
    now = datetime.now(timezone.utc)
    items = env.store.find_work("demo", LOCAL_ID, "studio", 3, now)
    claims = env.store.claim_many(items, "crashed", now.replace(year=now.year + 1), now)
    sites = {name: create_provider("local_drive", name, {"root": {"work": str(root)}})
             for name, root in env.roots.items()}
    for claim in claims:
        result = transfer_file(claim.item, sites["studio"], sites[LOCAL_ID], CancelToken(),
                               target_path=staged_path(claim.item.path))
        assert env.store.record_staged(claim, result.checksum, now)
    _local(env, staged_path(items[1].path)).unlink()  # lost with the machine
    engine = env.engine()
    engine.start(once=True)
    assert engine.wait_stopped(60)
    assert all(s.available for s in _states(env, repre_id))
    assert [e.file_id for e in env.of_type(FileStaged)] == [items[1].file_id]
    assert [e.files for e in env.of_type(RepresentationCompleted)] == [2]
    files = env.store.get_representation("demo", repre_id).files
    assert all(env.same_bytes(f.path, "studio", LOCAL_ID) for f in files)


def test_a_file_in_the_way_at_completion_is_kept_aside(sync_env):
    env = sync_env
    _subscribe(env, [{"asset": "sh040", "mode": "when_complete"}])
    engine = env.engine()
    _started(env, engine)
    repre_id, checksums = _rendering(env, "sh040", frames=2, rendered=1)
    env.wait_for(lambda: len(env.of_type(FileStaged)) == 1)
    first = env.store.get_representation("demo", repre_id).files[0]
    _local(env, first.path).parent.mkdir(parents=True, exist_ok=True)
    _local(env, first.path).write_bytes(b"a file someone put here meanwhile")
    _render_rest(env, repre_id, checksums)
    engine.sync_now()
    env.wait_for(lambda: env.of_type(RepresentationCompleted))
    [done] = env.of_type(RepresentationCompleted)
    assert len(done.kept) == 1 and "sitesync-conflict-" in done.kept[0]
    assert _local(env, done.kept[0]).read_bytes() == b"a file someone put here meanwhile"
    assert env.same_bytes(first.path, "studio", LOCAL_ID)
