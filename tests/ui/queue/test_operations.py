"""The actions' guard rails, on both stores, without a window."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from app.errors import SiteSyncError
from app.model import Status
from app.settings import SiteConfig
from tests.helpers.seed import T0, make_repre
from ui.queue import operations

NOW = datetime.now(UTC)


@pytest.fixture
def ps(tmp_path):
    """Project settings for studio (active) <-> gdrive (remote) with local_drive roots;
    this machine is "gdrive" so the local-copy action has a site to work on."""
    from app.settings.resolved import ProjectSettings

    sites = {name: SiteConfig(name, "local_drive", {"work": str(tmp_path / name)})
             for name in ("studio", "gdrive")}
    for name in sites:
        (tmp_path / name).mkdir()
    return ProjectSettings(project="demo", enabled=True, retry_cnt=3, loop_delay=2,
                           active_site="studio", remote_site="gdrive", always_accessible_on=(),
                           sites=sites, local_id="gdrive")


def _status(store, repre_id, site):
    details = store.file_details("demo", repre_id, "studio", "gdrive", 3, NOW)
    return {d.active_status if site == "studio" else d.remote_status for d in details}


def test_retry_resets_only_failed_entries(store, ps):
    store.ensure_project("demo")
    failed = store.insert_representation(make_repre(sites={
        "studio": {"created_dt": T0}, "gdrive": {"tries": 3, "error": "quota"}}))
    paused = store.insert_representation(make_repre(sites={
        "studio": {"created_dt": T0}, "gdrive": {"tries": 3, "paused": True}}))
    synced = store.insert_representation(make_repre(sites={
        "studio": {"created_dt": T0}, "gdrive": {"created_dt": T0}}))
    outcome = operations.retry_failed(store, ps, [failed, paused, synced], NOW)
    assert outcome.changed == {failed} and outcome.summary == "retrying 2 files in 1 representation"
    assert _status(store, failed, "gdrive") == {Status.QUEUED}
    assert _status(store, paused, "gdrive") == {Status.PAUSED}
    assert _status(store, synced, "gdrive") == {Status.SYNCED}
    assert operations.retry_failed(store, ps, [synced], NOW).changed == set()


def test_pause_leaves_synced_sides_and_resume_only_paused_ones(store, ps):
    store.ensure_project("demo")
    queued = store.insert_representation(make_repre())
    synced = store.insert_representation(make_repre(sites={
        "studio": {"created_dt": T0}, "gdrive": {"created_dt": T0}}))
    outcome = operations.set_paused(store, None, ps, [queued, synced], True, NOW)
    assert outcome.changed == {queued}
    assert _status(store, queued, "gdrive") == {Status.PAUSED}
    assert _status(store, queued, "studio") == {Status.SYNCED}  # nothing to move there
    assert _status(store, synced, "gdrive") == {Status.SYNCED}
    assert operations.set_paused(store, None, ps, [synced], False, NOW).summary.startswith("nothing")
    assert operations.set_paused(store, None, ps, [queued], False, NOW).changed == {queued}
    assert _status(store, queued, "gdrive") == {Status.QUEUED}


def test_resync_refuses_the_only_copy(store, ps):
    store.ensure_project("demo")
    queued = store.insert_representation(make_repre())
    outcome = operations.resync_site(store, ps, [queued], "studio", NOW)
    assert outcome.changed == set() and "gdrive does not have 2 files yet" in outcome.text
    assert _status(store, queued, "studio") == {Status.SYNCED}
    with pytest.raises(ValueError):
        operations.resync_site(store, ps, [queued], "dropbox", NOW)


def test_local_folder_needs_a_local_drive_site_and_an_existing_folder(ps, tmp_path):
    folder = tmp_path / "studio" / "demo" / "a"
    with pytest.raises(SiteSyncError, match="not arrived there yet"):
        operations.local_folder(ps, "studio", "{root[work]}/demo/a/x.exr")
    folder.mkdir(parents=True)
    assert operations.local_folder(ps, "studio", "{root[work]}/demo/a/x.exr") == str(folder)
    cloud = replace(ps, sites={**ps.sites, "gdrive": SiteConfig("gdrive", "gdrive", {}, {})})
    with pytest.raises(SiteSyncError, match="gdrive site, not a folder on this machine"):
        operations.local_folder(cloud, "gdrive", "{root[work]}/demo/a/x.exr")


def test_local_folders_opens_each_folder_once_and_says_why_others_cannot_be(ps, tmp_path):
    (tmp_path / "studio" / "demo" / "a").mkdir(parents=True)
    (tmp_path / "studio" / "demo" / "b").mkdir(parents=True)
    paths = ["{root[work]}/demo/a/x.1001.exr", "{root[work]}/demo/c/y.abc",
             "{root[work]}/demo/b/z.ma", "{root[work]}/demo/a/x.1002.exr"]
    folders, problems = operations.local_folders(ps, "studio", paths)
    assert folders == [str(tmp_path / "studio" / "demo" / "a"), str(tmp_path / "studio" / "demo" / "b")]
    assert len(problems) == 1 and "demo/c does not exist" in problems[0]
    cloud = replace(ps, sites={**ps.sites, "gdrive": SiteConfig("gdrive", "gdrive", {}, {})})
    with pytest.raises(SiteSyncError, match="gdrive site, not a folder on this machine"):
        operations.local_folders(cloud, "gdrive", paths)


def test_remove_local_copy_needs_a_local_id(store, ps):
    store.ensure_project("demo")
    repre = store.insert_representation(make_repre())
    with pytest.raises(SiteSyncError, match="no local_id"):
        operations.remove_local_copy(store, replace(ps, local_id=""), [repre])
    # This machine ("gdrive") only waits for it: the subscription goes, the studio keeps all.
    outcome = operations.remove_local_copy(store, ps, [repre])
    assert outcome.changed == {repre} and outcome.problems == []
    assert outcome.summary == "removed the local copy of 1 representation (0 files)"
    assert _status(store, repre, "gdrive") == {Status.NOT_AVAILABLE}
    assert _status(store, repre, "studio") == {Status.SYNCED}
