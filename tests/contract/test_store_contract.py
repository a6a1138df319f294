"""The store contract, run against every back-end (`store` is parametrized in conftest).

Tests assert only through the Store interface and app.status, so a back-end that passes
here can carry the engine, the CLI and the UI.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from app.errors import DocumentError
from app.model import Direction, Status, SummaryQuery
from app.status import site_status
from tests.helpers.seed import T0, later, legacy_doc, make_repre

RETRY = 3


def _status(store, repre_id, site, file_index=0, now=T0, project="demo"):
    repre = store.get_representation(project, repre_id)
    return site_status(repre.files[file_index].site(site), RETRY, now)


def _claim_all(store, items, owner="e1", now=T0):
    return [store.claim(i, owner, now + timedelta(seconds=60), now) for i in items]


# -- projects and documents ---------------------------------------------------------------


def test_projects_are_created_once_and_listed(store):
    store.ensure_project("demo", "dm")
    store.ensure_project("demo", "dm")
    store.ensure_project("alpha")
    names = [p.name for p in store.list_projects()]
    assert names == ["alpha", "demo"]


def test_project_pause_survives_reopening(store_factory):
    first = store_factory()
    first.ensure_project("demo")
    first.set_project_paused("demo", True)
    first.close()
    second = store_factory()
    assert [p.paused for p in second.list_projects()] == [True]
    second.set_project_paused("demo", False)
    assert [p.paused for p in second.list_projects()] == [False]


def test_representation_round_trips(store):
    store.ensure_project("demo")
    repre = make_repre(sites={"studio": {"created_dt": T0, "priority": 70}, "gdrive": {}})
    repre_id = store.insert_representation(repre)
    assert repre_id == repre.id
    got = store.get_representation("demo", repre_id)
    assert got.context["asset"] == "sh010" and got.version == 1
    assert [f.id for f in got.files] == [f.id for f in repre.files]
    assert [f.path for f in got.files] == [f.path for f in repre.files]
    assert got.files[0].size == 1000 and got.files[0].hash == repre.files[0].hash
    studio = got.files[0].site("studio")
    assert studio.created_dt == T0 and studio.priority == 70
    assert got.files[0].site("gdrive").created_dt is None
    assert store.count_representations("demo") == 1


def test_unknown_representation_is_a_key_error(store):
    store.ensure_project("demo")
    with pytest.raises(KeyError):
        store.get_representation("demo", make_repre().id)


def test_legacy_dict_sites_are_read_and_synced(store):
    """A Pype-2 document edited by the README HOWTO (`$set files.$[].sites.gdrive: {}`)."""
    store.ensure_project("demo")
    doc = legacy_doc(sites={"studio": {"created_dt": T0.replace(tzinfo=None)}, "gdrive": {}})
    repre_id = store.insert_document("demo", doc)
    repre = store.get_representation("demo", repre_id)
    assert {s.name for s in repre.files[0].sites} == {"studio", "gdrive"}
    assert _status(store, repre_id, "studio") is Status.SYNCED
    assert _status(store, repre_id, "gdrive") is Status.QUEUED

    work = store.find_work("demo", "studio", "gdrive", RETRY, T0)
    assert [(w.repre_id, w.direction) for w in work] == [(repre_id, Direction.UPLOAD)] * 2
    claim = store.claim(work[0], "e1", later(60), T0)
    assert claim is not None
    assert store.record_success(claim, "legacy_0.ma", "sha256:00", later(1))
    repre = store.get_representation("demo", repre_id)
    assert repre.files[0].site("gdrive").created_dt == later(1)
    assert repre.files[1].site("gdrive").created_dt is None


def test_malformed_document_is_refused_and_nothing_else_changes(store):
    """Documents written straight into MongoDB by other tools are covered by the
    Mongo-only tests; through the store, a malformed document is refused with its name."""
    store.ensure_project("demo")
    good = store.insert_representation(make_repre())
    bad = legacy_doc(asset="broken")
    bad["files"] = "not a list"
    with pytest.raises(DocumentError) as excinfo:
        store.insert_document("demo", bad)
    assert "files must be a list" in str(excinfo.value) and str(bad["_id"]) in str(excinfo.value)
    assert store.count_representations("demo") == 1
    work = store.find_work("demo", "studio", "gdrive", RETRY, T0)
    assert {w.repre_id for w in work} == {good}


def test_bulk_insert_stores_every_representation_in_batches(store):
    """insert_representations (imports, the scale benchmark) writes what insert_representation
    would, across several batches, and the engine finds the work in it."""
    store.ensure_project("demo")
    store.insert_batch = 3
    repres = [make_repre(asset=f"a{n}") for n in range(7)]
    assert store.insert_representations(iter(repres)) == 7
    assert store.count_representations("demo") == 7
    got = store.get_representation("demo", repres[5].id)
    assert got.context["asset"] == "a5" and [f.id for f in got.files] == [f.id for f in repres[5].files]
    work = store.find_work("demo", "studio", "gdrive", RETRY, T0, limit=100)
    assert {w.repre_id for w in work} == {r.id for r in repres}


def test_bulk_insert_stops_at_a_refused_representation(store):
    """A duplicate id in the middle of a batch: the ones before it are stored, it and the
    rest are not, and the error names it."""
    store.ensure_project("demo")
    store.insert_batch = 4
    existing = make_repre(asset="existing")
    store.insert_representation(existing)
    first, second, after = (make_repre(asset=a) for a in ("first", "second", "after"))
    with pytest.raises(DocumentError) as excinfo:
        store.insert_representations([first, second, replace(existing, context={"asset": "dup"}), after])
    assert existing.id in str(excinfo.value)
    assert store.count_representations("demo") == 3
    assert store.get_representation("demo", second.id).context["asset"] == "second"
    assert store.get_representation("demo", existing.id).context["asset"] == "existing"
    with pytest.raises(KeyError):
        store.get_representation("demo", after.id)


# -- finding work ---------------------------------------------------------------------------


def test_find_work_uploads_and_downloads(store):
    store.ensure_project("demo")
    up = store.insert_representation(make_repre(asset="up"))
    down = store.insert_representation(
        make_repre(asset="down", sites={"studio": {}, "gdrive": {"created_dt": T0}})
    )
    store.insert_representation(  # nothing to do: both available
        make_repre(asset="done", sites={"studio": {"created_dt": T0}, "gdrive": {"created_dt": T0}})
    )
    store.insert_representation(  # not tracked on gdrive at all
        make_repre(asset="untracked", sites={"studio": {"created_dt": T0}})
    )
    store.insert_representation(  # on neither: nothing can move
        make_repre(asset="nowhere", sites={"studio": {}, "gdrive": {}})
    )
    work = store.find_work("demo", "studio", "gdrive", RETRY, T0)
    by_repre = {}
    for w in work:
        by_repre.setdefault(w.repre_id, set()).add((w.direction, w.source_site, w.target_site))
    assert by_repre == {
        up: {(Direction.UPLOAD, "studio", "gdrive")},
        down: {(Direction.DOWNLOAD, "gdrive", "studio")},
    }
    item = next(w for w in work if w.repre_id == up)
    repre = store.get_representation("demo", up)
    assert item.path == repre.file(item.file_id).path and item.size == repre.file(item.file_id).size
    assert item.project == "demo"


def test_find_work_orders_by_priority_then_age(store):
    store.ensure_project("demo")
    old = store.insert_representation(make_repre(asset="old", files=1))
    new_high = store.insert_representation(
        make_repre(asset="high", files=1, sites={"studio": {"created_dt": T0, "priority": 90},
                                                 "gdrive": {}})
    )
    remote_prio = store.insert_representation(
        make_repre(asset="remote", files=1, sites={"studio": {"created_dt": T0},
                                                   "gdrive": {"priority": 70}})
    )
    newer = store.insert_representation(make_repre(asset="newer", files=1))
    work = store.find_work("demo", "studio", "gdrive", RETRY, T0)
    assert [w.repre_id for w in work] == [new_high, remote_prio, old, newer]
    assert [w.priority for w in work] == [90, 70, 50, 50]
    assert len(store.find_work("demo", "studio", "gdrive", RETRY, T0, limit=2)) == 2


def test_find_work_skips_paused_failed_backed_off_and_leased(store):
    store.ensure_project("demo")
    fresh = store.insert_representation(make_repre(asset="fresh", files=1))
    store.insert_representation(make_repre(asset="paused", files=1, sites={
        "studio": {"created_dt": T0}, "gdrive": {"paused": True}}))
    store.insert_representation(make_repre(asset="dead", files=1, sites={
        "studio": {"created_dt": T0}, "gdrive": {"tries": 3, "error": "boom"}}))
    retrying = store.insert_representation(make_repre(asset="retrying", files=1, sites={
        "studio": {"created_dt": T0}, "gdrive": {"tries": 2, "error": "boom"}}))
    store.insert_representation(make_repre(asset="permanent", files=1, sites={
        "studio": {"created_dt": T0}, "gdrive": {"tries": 1, "permanent": True}}))
    backoff = store.insert_representation(make_repre(asset="backoff", files=1, sites={
        "studio": {"created_dt": T0}, "gdrive": {"tries": 1, "next_attempt_dt": later(30)}}))
    found = {w.repre_id for w in store.find_work("demo", "studio", "gdrive", RETRY, T0)}
    assert found == {fresh, retrying}
    found = {w.repre_id for w in store.find_work("demo", "studio", "gdrive", RETRY, later(31))}
    assert found == {fresh, retrying, backoff}
    # A higher retry_cnt brings the dead file back, as OpenPype's retries_arr does.
    assert len(store.find_work("demo", "studio", "gdrive", 10, later(31))) == 4

    items = store.find_work("demo", "studio", "gdrive", RETRY, T0)
    claims = _claim_all(store, items)
    assert all(claims)
    assert store.find_work("demo", "studio", "gdrive", RETRY, T0) == []
    # Leases expire; the work comes back (and the backed-off file is due by then).
    found = {w.repre_id for w in store.find_work("demo", "studio", "gdrive", RETRY, later(61))}
    assert found == {fresh, retrying, backoff}


def test_paused_project_has_no_work(store):
    store.ensure_project("demo")
    store.insert_representation(make_repre())
    store.set_project_paused("demo", True)
    assert store.find_work("demo", "studio", "gdrive", RETRY, T0) == []
    store.set_project_paused("demo", False)
    assert len(store.find_work("demo", "studio", "gdrive", RETRY, T0)) == 2


def test_find_work_exclude(store):
    store.ensure_project("demo")
    store.insert_representation(make_repre(files=3))
    work = store.find_work("demo", "studio", "gdrive", RETRY, T0)
    skip = frozenset({(work[0].repre_id, work[0].file_id)})
    rest = store.find_work("demo", "studio", "gdrive", RETRY, T0, exclude=skip)
    assert [w.file_id for w in rest] == [w.file_id for w in work[1:]]


# -- claims and results ---------------------------------------------------------------------


def test_claim_is_exclusive_until_the_lease_expires(store_factory):
    a, b = store_factory(), store_factory()
    a.ensure_project("demo")
    a.insert_representation(make_repre(files=1))
    item = a.find_work("demo", "studio", "gdrive", RETRY, T0)[0]
    claim = a.claim(item, "engine-a", later(60), T0)
    assert claim is not None and claim.owner == "engine-a"
    assert b.claim(item, "engine-b", later(60), T0) is None
    assert _status(a, item.repre_id, "gdrive") is Status.IN_PROGRESS
    # The lease runs out (engine-a crashed): status is honest and b takes over.
    assert _status(a, item.repre_id, "gdrive", now=later(61)) is Status.QUEUED
    taken = b.claim(item, "engine-b", later(120), later(61))
    assert taken is not None
    # engine-a's late result must not win.
    assert a.extend_lease(claim, later(200)) is None
    assert a.record_success(claim, "x", None, later(62)) is False
    assert a.record_failure(claim, "late", later(62), None) is False
    assert _status(a, item.repre_id, "gdrive", now=later(62)) is Status.IN_PROGRESS


def test_extend_and_release(store):
    store.ensure_project("demo")
    store.insert_representation(make_repre(files=1))
    item = store.find_work("demo", "studio", "gdrive", RETRY, T0)[0]
    claim = store.claim(item, "e1", later(60), T0)
    renewed = store.extend_lease(claim, later(120))
    assert renewed is not None and renewed.lease_until == later(120)
    assert store.find_work("demo", "studio", "gdrive", RETRY, later(90)) == []
    store.release(renewed)
    again = store.find_work("demo", "studio", "gdrive", RETRY, later(90))
    assert [w.file_id for w in again] == [item.file_id]
    assert again[0].tries == 0  # releasing is not a failed try


def test_claim_fails_when_target_became_available_or_paused(store):
    store.ensure_project("demo")
    repre_id = store.insert_representation(make_repre(files=2))
    first, second = store.find_work("demo", "studio", "gdrive", RETRY, T0)
    claim = store.claim(first, "e1", later(60), T0)
    store.record_success(claim, "id1", None, T0)
    assert store.claim(first, "e2", later(60), T0) is None
    store.set_paused("demo", repre_id, "gdrive", True)
    assert store.claim(second, "e2", later(60), T0) is None


def test_progress_and_success(store):
    store.ensure_project("demo")
    repre_id = store.insert_representation(make_repre(files=1))
    item = store.find_work("demo", "studio", "gdrive", RETRY, T0)[0]
    claim = store.claim(item, "e1", later(60), T0)
    store.record_progress(claim, 0.5)
    state = store.get_representation("demo", repre_id).files[0].site("gdrive")
    assert state.progress == 0.5 and state.lease_owner == "e1"
    assert store.record_success(claim, "provider-id", "sha256:abc", later(5))
    state = store.get_representation("demo", repre_id).files[0].site("gdrive")
    assert state.created_dt == later(5) and state.id == "provider-id"
    assert state.checksum == "sha256:abc"
    assert state.progress is None and state.tries == 0 and state.error is None
    assert state.lease_owner is None and state.lease_until is None
    assert _status(store, repre_id, "gdrive", now=later(5)) is Status.SYNCED


def test_failure_counts_tries_until_failed(store):
    store.ensure_project("demo")
    repre_id = store.insert_representation(make_repre(files=1))
    now = T0
    for attempt in range(1, RETRY + 1):
        work = store.find_work("demo", "studio", "gdrive", RETRY, now)
        assert len(work) == 1, attempt
        claim = store.claim(work[0], "e1", now + timedelta(seconds=60), now)
        assert store.record_failure(claim, f"boom {attempt}", now, now + timedelta(seconds=10))
        state = store.get_representation("demo", repre_id).files[0].site("gdrive")
        assert state.tries == attempt and state.error == f"boom {attempt}"
        assert state.last_failed_dt == now and state.lease_owner is None
        assert state.next_attempt_dt == now + timedelta(seconds=10)
        assert store.find_work("demo", "studio", "gdrive", RETRY, now) == []  # backing off
        now += timedelta(seconds=11)
    assert _status(store, repre_id, "gdrive", now=now) is Status.FAILED
    assert store.find_work("demo", "studio", "gdrive", RETRY, now) == []


def test_permanent_failure_is_failed_at_once(store):
    store.ensure_project("demo")
    repre_id = store.insert_representation(make_repre(files=1))
    claim = _claim_all(store, store.find_work("demo", "studio", "gdrive", RETRY, T0))[0]
    assert store.record_failure(claim, "source missing", T0, None, permanent=True)
    state = store.get_representation("demo", repre_id).files[0].site("gdrive")
    assert state.permanent and state.tries == 1
    assert _status(store, repre_id, "gdrive") is Status.FAILED


# -- user actions ---------------------------------------------------------------------------


def test_reset_site_retries_failed_and_keeps_priority(store):
    store.ensure_project("demo")
    repre_id = store.insert_representation(make_repre(files=2, sites={
        "studio": {"created_dt": T0},
        "gdrive": {"tries": 3, "error": "boom", "last_failed_dt": T0, "priority": 80,
                   "permanent": True}}))
    assert _status(store, repre_id, "gdrive") is Status.FAILED
    first_file = store.get_representation("demo", repre_id).files[0].id
    assert store.reset_site("demo", repre_id, "gdrive", file_id=first_file) == 1
    repre = store.get_representation("demo", repre_id)
    state = repre.files[0].site("gdrive")
    assert state.tries == 0 and state.error is None and state.last_failed_dt is None
    assert not state.permanent and state.priority == 80
    assert repre.files[1].site("gdrive").tries == 3
    assert store.reset_site("demo", repre_id, "gdrive") == 2
    assert _status(store, repre_id, "gdrive", file_index=1) is Status.QUEUED


def test_reset_failed_in_project(store):
    store.ensure_project("demo")
    failed = {"studio": {"created_dt": T0}, "gdrive": {"tries": 3, "error": "x"}}
    a = store.insert_representation(make_repre(asset="a", files=2, sites=failed))
    b = store.insert_representation(make_repre(asset="b", files=1, sites=failed))
    store.insert_representation(make_repre(asset="c", files=1))  # queued: untouched
    held = store.insert_representation(make_repre(asset="d", files=1, sites={
        "studio": {"created_dt": T0}, "gdrive": {"tries": 3, "error": "x", "paused": True}}))
    assert store.reset_failed("demo", "studio") == 0
    assert store.reset_failed("demo") == 3
    assert _status(store, held, "gdrive") is Status.PAUSED  # the user's pause is kept
    assert _status(store, a, "gdrive") is Status.QUEUED
    assert _status(store, b, "gdrive") is Status.QUEUED


def test_add_and_remove_site(store):
    store.ensure_project("demo")
    repre_id = store.insert_representation(make_repre(files=2, sites={"studio": {"created_dt": T0}}))
    assert store.add_site("demo", repre_id, "gdrive", priority=60) == 2
    assert store.add_site("demo", repre_id, "gdrive") == 0  # already there
    repre = store.get_representation("demo", repre_id)
    assert [f.site("gdrive").priority for f in repre.files] == [60, 60]
    assert len(store.find_work("demo", "studio", "gdrive", RETRY, T0)) == 2
    # force resets an available entry back to queued
    assert store.add_site("demo", repre_id, "studio", force=True) == 2
    assert _status(store, repre_id, "studio") is Status.QUEUED
    assert store.remove_site("demo", repre_id, "gdrive") == 2
    assert store.get_representation("demo", repre_id).files[0].site("gdrive") is None
    assert store.remove_site("demo", repre_id, "gdrive") == 0


def test_pause_touches_only_the_flag(store):
    store.ensure_project("demo")
    repre_id = store.insert_representation(make_repre(files=2, sites={
        "studio": {"created_dt": T0},
        "gdrive": {"tries": 1, "error": "x", "priority": 55}}))
    store.set_paused("demo", repre_id, "gdrive", True)
    repre = store.get_representation("demo", repre_id)
    for f in repre.files:
        state = f.site("gdrive")
        assert state.paused and state.tries == 1 and state.priority == 55
        assert state.created_dt is None  # OpenPype's bug copied created_dt across files
    assert _status(store, repre_id, "gdrive") is Status.PAUSED
    assert store.find_work("demo", "studio", "gdrive", RETRY, T0) == []
    store.set_paused("demo", repre_id, "gdrive", False)
    assert not store.get_representation("demo", repre_id).files[0].site("gdrive").paused
    assert len(store.find_work("demo", "studio", "gdrive", RETRY, T0)) == 2


def test_set_priority(store):
    store.ensure_project("demo")
    low = store.insert_representation(make_repre(asset="low", files=1))
    high = store.insert_representation(make_repre(asset="high", files=1))
    store.set_priority("demo", high, "studio", 99)
    work = store.find_work("demo", "studio", "gdrive", RETRY, T0)
    assert [w.repre_id for w in work] == [high, low]
    assert store.get_representation("demo", high).files[0].site("studio").priority == 99


# -- summary and detail ---------------------------------------------------------------------


def _seed_summary(store):
    store.ensure_project("demo")
    ids = {}
    ids["synced"] = store.insert_representation(make_repre(asset="sh010", subset="anim", sites={
        "studio": {"created_dt": T0}, "gdrive": {"created_dt": later(5)}}))
    ids["queued"] = store.insert_representation(make_repre(asset="sh020", subset="anim"))
    ids["failed"] = store.insert_representation(make_repre(asset="sh030", subset="lookdev", sites={
        "studio": {"created_dt": T0}, "gdrive": {"tries": 3, "error": "quota", "priority": 70}}))
    ids["paused"] = store.insert_representation(make_repre(asset="chair", subset="model", sites={
        "studio": {"created_dt": T0}, "gdrive": {"paused": True}}))
    ids["partial"] = store.insert_representation(make_repre(asset="sh040", subset="anim", files=4))
    repre = store.get_representation("demo", ids["partial"])
    work = [w for w in store.find_work("demo", "studio", "gdrive", RETRY, T0)
            if w.repre_id == ids["partial"]]
    done = store.claim(work[0], "e1", later(60), T0)
    store.record_success(done, "f0", None, later(10))
    moving = store.claim(work[1], "e1", later(60), T0)
    store.record_progress(moving, 0.5)
    store.insert_representation(make_repre(asset="elsewhere", sites={"studio": {"created_dt": T0}}))
    store.insert_representation(make_repre(asset="other", sites={"dropbox": {"created_dt": T0}}))
    assert repre.files
    return ids


def test_summary_rows_statuses_and_counts(store):
    ids = _seed_summary(store)
    page = store.summary_page("demo", SummaryQuery("studio", "gdrive", limit=50), RETRY, later(20))
    rows = {r.repre_id: r for r in page.rows}
    assert page.total == 6  # "other" has neither site
    assert rows[ids["synced"]].status is Status.SYNCED
    assert rows[ids["queued"]].status is Status.QUEUED
    assert rows[ids["failed"]].status is Status.FAILED
    assert rows[ids["failed"]].remote.error == "quota" and rows[ids["failed"]].remote.tries == 6
    assert rows[ids["failed"]].priority == 70
    assert rows[ids["paused"]].status is Status.PAUSED
    partial = rows[ids["partial"]]
    assert partial.status is Status.IN_PROGRESS
    assert partial.remote.progress == pytest.approx((1 + 0.5) / 4)
    assert partial.active.progress == 1.0 and partial.active.status is Status.SYNCED
    assert partial.files_count == 4 and partial.size == 1000 + 1001 + 1002 + 1003
    assert rows[ids["synced"]].remote.updated_dt == later(5)
    assert partial.asset == "sh040" and partial.subset == "anim" and partial.version == 1
    assert partial.representation == "exr" and partial.first_path.startswith("{root[work]}")
    elsewhere = next(r for r in page.rows if r.asset == "elsewhere")
    assert elsewhere.remote.status is Status.NOT_AVAILABLE
    assert page.status_counts == {
        Status.SYNCED: 1, Status.QUEUED: 1, Status.FAILED: 1, Status.PAUSED: 1,
        Status.IN_PROGRESS: 1, Status.NOT_AVAILABLE: 1,
    }


def test_summary_filter_sort_and_page(store):
    ids = _seed_summary(store)
    q = SummaryQuery("studio", "gdrive", text="SH0", sort_key="asset", limit=2)
    page = store.summary_page("demo", q, RETRY, later(20))
    assert page.total == 4
    assert [r.asset for r in page.rows] == ["sh010", "sh020"]
    q2 = SummaryQuery("studio", "gdrive", text="sh0", sort_key="asset", offset=2, limit=2)
    assert [r.asset for r in store.summary_page("demo", q2, RETRY, later(20)).rows] == [
        "sh030", "sh040"]
    q3 = SummaryQuery("studio", "gdrive", text="sh0", sort_key="asset", descending=True, limit=1)
    assert [r.asset for r in store.summary_page("demo", q3, RETRY, later(20)).rows] == ["sh040"]
    # Status filter: total is filtered, counts are for the text filter only.
    q4 = SummaryQuery("studio", "gdrive", text="anim",
                      statuses=frozenset({Status.QUEUED, Status.IN_PROGRESS}))
    page = store.summary_page("demo", q4, RETRY, later(20))
    assert {r.repre_id for r in page.rows} == {ids["queued"], ids["partial"]}
    assert page.total == 2
    assert page.status_counts == {Status.SYNCED: 1, Status.QUEUED: 1, Status.IN_PROGRESS: 1}
    # By id, as OpenPype's quick filter allows.
    q5 = SummaryQuery("studio", "gdrive", text=ids["paused"])
    assert [r.repre_id for r in store.summary_page("demo", q5, RETRY, later(20)).rows] == [
        ids["paused"]]
    # Other sort keys work and are stable.
    for key in SummaryQuery.SORT_KEYS:
        q6 = SummaryQuery("studio", "gdrive", sort_key=key, limit=50)
        assert store.summary_page("demo", q6, RETRY, later(20)).total == 6, key
    q7 = SummaryQuery("studio", "gdrive", sort_key="priority", descending=True, limit=1)
    assert [r.repre_id for r in store.summary_page("demo", q7, RETRY, later(20)).rows] == [
        ids["failed"]]


def test_summary_page_without_counts_has_the_same_rows_and_total(store):
    _seed_summary(store)
    for i in range(12):  # more rows than a page, some sharing an asset name
        store.insert_representation(make_repre(asset=f"sh{i % 5:03d}", subset=f"s{i}", version=i % 3))
    for key in SummaryQuery.SORT_KEYS:
        for descending in (False, True):
            for text, statuses in (("", frozenset()), ("sh0", frozenset()),
                                   ("", frozenset({Status.QUEUED}))):
                for offset in (0, 5):
                    q = SummaryQuery("studio", "gdrive", text=text, statuses=statuses,
                                     sort_key=key, descending=descending, offset=offset, limit=6)
                    full = store.summary_page("demo", q, RETRY, later(20))
                    fast = store.summary_page("demo", replace(q, with_counts=False), RETRY, later(20))
                    assert fast.rows == full.rows, (key, descending, text, offset)
                    assert fast.total == full.total, (key, descending, text, offset)
    assert store.summary_page("demo", SummaryQuery("studio", "gdrive", offset=500, with_counts=False),
                              RETRY, later(20)).rows == ()


def _all_pages(store, query, size):
    """Every row of ``query``, read page by page as the Sync Queue scrolls."""
    rows, offset = [], 0
    while True:
        page = store.summary_page("demo", replace(query, offset=offset, limit=size), RETRY, later(20))
        rows.extend(page.rows)
        if len(page.rows) < size:
            return rows, page.total
        offset += size


def test_summary_paging_ties_offsets_and_pair_membership(store):
    """The paging semantics the window relies on: pages never overlap or skip (in both
    directions, with and without counts), ties sort oldest first ascending,
    an offset past the end is an empty page with the exact total, and a representation
    leaves and rejoins the pair as its entries are removed and added."""
    _seed_summary(store)
    tied = [store.insert_representation(make_repre(asset="tie", subset=f"s{i % 2}", version=i % 2))
            for i in range(7)]
    for key in SummaryQuery.SORT_KEYS:
        for counts in (False, True):
            query = SummaryQuery("studio", "gdrive", sort_key=key, with_counts=counts)
            forward, total = _all_pages(store, query, 3)
            backward, _ = _all_pages(store, replace(query, descending=True), 4)
            assert total == 13 and len(forward) == 13, (key, counts)
            assert sorted(r.repre_id for r in backward) == sorted(r.repre_id for r in forward), key
            whole = store.summary_page("demo", replace(query, descending=True, limit=100), RETRY,
                                       later(20))
            assert whole.rows == tuple(backward), (key, counts)
            whole = store.summary_page("demo", replace(query, limit=100), RETRY, later(20))
            assert whole.rows == tuple(forward), (key, counts)
    by_asset = [r.repre_id for r in _all_pages(store, SummaryQuery("studio", "gdrive"), 5)[0]]
    assert [i for i in by_asset if i in tied] == tied  # same asset: oldest first
    for counts in (False, True):
        past = SummaryQuery("studio", "gdrive", offset=13, limit=5, with_counts=counts)
        page = store.summary_page("demo", past, RETRY, later(20))
        assert page.rows == () and page.total == 13
        text = SummaryQuery("studio", "gdrive", text="tie", sort_key="subset",
                            offset=5, limit=5, with_counts=counts)
        page = store.summary_page("demo", text, RETRY, later(20))
        assert [r.repre_id for r in page.rows] == [tied[3], tied[5]] and page.total == 7
    # Leaving the pair: no entry on either site any more; back with a new entry.
    assert store.remove_site("demo", tied[0], "studio")
    assert store.remove_site("demo", tied[0], "gdrive")
    for counts in (False, True):
        query = SummaryQuery("studio", "gdrive", sort_key="asset", limit=100, with_counts=counts)
        page = store.summary_page("demo", query, RETRY, later(20))
        assert page.total == 12 and tied[0] not in {r.repre_id for r in page.rows}
    store.add_site("demo", tied[0], "gdrive")
    for counts in (False, True):
        query = SummaryQuery("studio", "gdrive", sort_key="created", limit=100, with_counts=counts)
        page = store.summary_page("demo", query, RETRY, later(20))
        assert page.total == 13 and page.rows[6].repre_id == tied[0]
        assert page.rows[6].status is Status.QUEUED  # queued on gdrive, gone from studio
        assert page.rows[6].active.status is Status.NOT_AVAILABLE
    # Removing one of two sites keeps the row.
    store.remove_site("demo", tied[1], "gdrive")
    page = store.summary_page("demo", SummaryQuery("studio", "gdrive", limit=100, with_counts=False),
                              RETRY, later(20))
    assert page.total == 13 and tied[1] in {r.repre_id for r in page.rows}


def test_summary_rows_for_ids_match_the_page(store):
    """Row refresh by id gives exactly the page's rows, under the same filters."""
    ids = _seed_summary(store)
    query = SummaryQuery("studio", "gdrive", limit=50)
    page = {r.repre_id: r for r in store.summary_page("demo", query, RETRY, later(20)).rows}
    wanted = [ids["partial"], ids["failed"], ids["synced"]]
    rows = store.summary_rows("demo", query, wanted, RETRY, later(20))
    assert sorted(rows, key=lambda r: r.repre_id) == sorted(
        (page[i] for i in wanted), key=lambda r: r.repre_id)
    # Unknown ids, representations tracking neither site and filtered-out rows are absent.
    other = next(r.repre_id for r in store.summary_page(
        "demo", SummaryQuery("studio", "dropbox"), RETRY, later(20)).rows if r.asset == "other")
    rows = store.summary_rows("demo", query, [make_repre().id, other, ids["queued"]],
                              RETRY, later(20))
    assert [r.repre_id for r in rows] == [ids["queued"]]
    failed_only = SummaryQuery("studio", "gdrive", statuses=frozenset({Status.FAILED}))
    rows = store.summary_rows("demo", failed_only, ids.values(), RETRY, later(20))
    assert [r.repre_id for r in rows] == [ids["failed"]]
    text = SummaryQuery("studio", "gdrive", text="CHAIR")
    assert [r.repre_id for r in store.summary_rows("demo", text, ids.values(), RETRY, later(20))] == [
        ids["paused"]]
    assert store.summary_rows("demo", query, [], RETRY, later(20)) == []
    # A write shows in the next read of that row, with the configured retry_cnt.
    store.reset_site("demo", ids["failed"], "gdrive")
    (row,) = store.summary_rows("demo", query, [ids["failed"]], RETRY, later(20))
    assert row.status is Status.QUEUED
    with pytest.raises(KeyError):
        store.summary_rows("nope", query, [ids["failed"]], RETRY, later(20))


def test_file_details(store):
    ids = _seed_summary(store)
    details = store.file_details("demo", ids["partial"], "studio", "gdrive", RETRY, later(20))
    assert len(details) == 4
    assert [d.remote_status for d in details].count(Status.SYNCED) == 1
    assert [d.remote_status for d in details].count(Status.IN_PROGRESS) == 1
    assert all(d.active_status is Status.SYNCED for d in details)
    failed = store.file_details("demo", ids["failed"], "studio", "gdrive", RETRY, later(20))
    assert failed[0].remote.error == "quota" and failed[0].status is Status.FAILED


# -- concurrency and change notification ------------------------------------------------------


def test_concurrent_claims_hand_out_each_file_once(store_factory):
    setup = store_factory()
    setup.ensure_project("demo")
    for i in range(5):
        setup.insert_representation(make_repre(asset=f"a{i}", files=4))
    stores = [store_factory() for _ in range(4)]
    won: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def engine(store, owner):
        while True:
            work = store.find_work("demo", "studio", "gdrive", RETRY, T0, limit=5)
            if not work:
                return
            for item in work:
                claim = store.claim(item, owner, later(600), T0)
                if claim is not None:
                    with lock:
                        won.append((item.repre_id, item.file_id, owner))

    threads = [threading.Thread(target=engine, args=(s, f"e{i}")) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    keys = [(r, f) for r, f, _ in won]
    assert len(keys) == 20 and len(set(keys)) == 20


def test_wait_for_change_wakes_on_a_write(store_factory):
    watcher, writer = store_factory(), store_factory()
    watcher.ensure_project("demo")
    marker = watcher.change_marker()
    assert watcher.wait_for_change(marker, 0.2) is False
    timer = threading.Timer(0.3, lambda: writer.insert_representation(make_repre()))
    timer.start()
    started = time.monotonic()
    assert watcher.wait_for_change(marker, 10) is True
    assert time.monotonic() - started < 5
    timer.join()


def test_claim_many_is_claim_in_one_go(store_factory):
    a, b = store_factory(), store_factory()
    a.ensure_project("demo")
    a.insert_representation(make_repre(files=4))
    items = a.find_work("demo", "studio", "gdrive", RETRY, T0)
    first = a.claim_many(items[:3], "engine-a", later(60), T0)
    assert [c.item.file_id for c in first] == [i.file_id for i in items[:3]]
    assert all(c.owner == "engine-a" and c.lease_until == later(60) for c in first)
    second = b.claim_many(items, "engine-b", later(60), T0)
    assert [c.item.file_id for c in second] == [items[3].file_id]
    assert b.claim_many([], "engine-b", later(60), T0) == []


# -- the event log ------------------------------------------------------------------------------


def _events(store, after=0):
    assert store.flush_events(10)
    return [e for e in store.read_events(after, 10_000) if not e.is_gap]


def _mark(store):
    """The newest id once this store's earlier writes are in the log."""
    assert store.flush_events(10)
    return store.event_log_info().last_id


def test_state_changes_are_logged_with_their_facts(store):
    store.ensure_project("demo")
    repre = make_repre(files=2)
    store.insert_representation(repre)
    start = _mark(store)
    first, second = _claim_all(store, store.find_work("demo", "studio", "gdrive", RETRY, T0))
    assert store.record_failure(second, "HttpError 503", T0, later(30))
    assert store.record_success(first, "gd-1", "sha256:aa", later(1))
    store.set_paused("demo", repre.id, "gdrive", True)
    store.set_paused("demo", repre.id, "gdrive", False)
    assert store.reset_site("demo", repre.id, "gdrive", file_id=repre.files[1].id) == 1

    events = _events(store, start)
    assert [e.type for e in events] == [
        "file_failed", "file_synced", "site_paused", "site_resumed", "retry_requested"]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert all(e.project == "demo" and e.repre_id == repre.id and e.site == "gdrive"
               for e in events)
    failed, synced, paused, _, retry = events
    assert failed.file_id == repre.files[1].id and failed.at == T0
    assert failed.data["error"] == "HttpError 503" and failed.data["tries"] == 1
    assert failed.data["permanent"] is False and failed.data["path"] == repre.files[1].path
    assert synced.file_id == repre.files[0].id and synced.at == later(1)
    assert synced.data["checksum"] == "sha256:aa" and synced.data["size"] == 1000
    assert synced.data["source_site"] == "studio" and synced.data["direction"] == "upload"
    assert paused.data == {"entries": 2}
    assert retry.file_id == repre.files[1].id and retry.data == {"entries": 1}


def test_nothing_is_logged_when_nothing_changed(store):
    store.ensure_project("demo")
    repre = make_repre(files=1)
    store.insert_representation(repre)
    [claim] = _claim_all(store, store.find_work("demo", "studio", "gdrive", RETRY, T0))
    store.reset_site("demo", repre.id, "gdrive")  # the claim is lost
    start = _mark(store)
    assert store.record_success(claim, "gd-1", "sha256:aa", later(1)) is False
    assert store.record_failure(claim, "late", later(1), None) is False
    assert store.reset_site("demo", repre.id, "nowhere") == 0
    store.set_paused("demo", repre.id, "nowhere", True)
    assert _events(store, start) == []


def test_representation_ready_follows_its_last_file(store):
    store.ensure_project("demo")
    repre = make_repre(files=3)
    store.insert_representation(repre)
    start = _mark(store)
    claims = _claim_all(store, store.find_work("demo", "studio", "gdrive", RETRY, T0))
    for n, claim in enumerate(claims):
        assert store.record_success(claim, f"gd-{n}", None, later(n))
        ready = [e for e in _events(store, start) if e.type == "representation_ready"]
        assert len(ready) == (1 if n == 2 else 0)
    events = _events(store, start)
    assert [e.type for e in events] == ["file_synced"] * 3 + ["representation_ready"]
    ready = events[-1]
    assert (ready.repre_id, ready.site, ready.file_id) == (repre.id, "gdrive", "")
    assert ready.data["asset"] == "sh010" and ready.data["version"] == 1
    assert ready.data["files"] == 3 and ready.data["size"] == 1000 + 1001 + 1002
    # A re-sync that completes again is a new completion.
    store.reset_site("demo", repre.id, "gdrive")
    for n, claim in enumerate(_claim_all(store, store.find_work("demo", "studio", "gdrive",
                                                                RETRY, T0))):
        assert store.record_success(claim, f"gd-{n}", None, later(10 + n))
    assert [e.type for e in _events(store, start)].count("representation_ready") == 2


def test_recording_a_batch_is_recording_each_file(store):
    """record_successes answers and writes what the single calls would: lost claims are
    refused and untouched, every file is logged, and a representation the batch completes
    is ready exactly once, after its last file."""
    store.ensure_project("demo")
    a, b = make_repre(asset="a", files=3), make_repre(asset="b", files=2)
    store.insert_representation(a)
    store.insert_representation(b)
    start = _mark(store)
    claims = {(c.item.repre_id, c.item.file_id): c
              for c in _claim_all(store, store.find_work("demo", "studio", "gdrive", RETRY, T0))}
    a_claims = [claims[(a.id, f.id)] for f in a.files]
    b_claims = [claims[(b.id, f.id)] for f in b.files]
    store.reset_site("demo", b.id, "gdrive", file_id=b.files[1].id)  # that claim is lost
    start = _mark(store)
    batch = [(a_claims[0], "gd-a0", "sha256:a0"), (b_claims[1], "gd-b1", "sha256:b1"),
             (a_claims[1], "gd-a1", None), (b_claims[0], "gd-b0", "sha256:b0"),
             (a_claims[2], "gd-a2", "sha256:a2")]
    assert store.record_successes(batch, later(3)) == [True, False, True, True, True]

    a_files = store.get_representation("demo", a.id).files
    assert [f.site("gdrive").id for f in a_files] == ["gd-a0", "gd-a1", "gd-a2"]
    assert [f.site("gdrive").checksum for f in a_files] == ["sha256:a0", None, "sha256:a2"]
    assert all(f.site("gdrive").created_dt == later(3) for f in a_files)
    assert _status(store, a.id, "gdrive", 2, now=later(3)) is Status.SYNCED
    assert _status(store, b.id, "gdrive", 0, now=later(3)) is Status.SYNCED
    lost = store.get_representation("demo", b.id).files[1].site("gdrive")
    assert lost.created_dt is None and lost.id is None and lost.lease_owner is None
    assert _status(store, b.id, "gdrive", 1, now=later(3)) is Status.QUEUED

    events = _events(store, start)
    # Every file's event, then the representation's (the order of one batch's files is
    # the back-end's: MongoDB records them side by side).
    a_events = [(e.type, e.file_id) for e in events if e.repre_id == a.id]
    assert sorted(a_events[:3]) == sorted(("file_synced", f.id) for f in a.files)
    assert a_events[3:] == [("representation_ready", "")]
    assert [(e.type, e.file_id) for e in events if e.repre_id == b.id] == [
        ("file_synced", b.files[0].id)]
    first = next(e for e in events if e.file_id == a.files[0].id)
    assert first.data["checksum"] == "sha256:a0" and first.data["provider_id"] == "gd-a0"
    assert store.record_successes([], later(4)) == []


def test_a_large_batch_completes_its_representations_once(store):
    store.ensure_project("demo")
    repres = [make_repre(asset=f"sh{n}", files=12) for n in range(3)]
    for repre in repres:
        store.insert_representation(repre)
    claims = _claim_all(store, store.find_work("demo", "studio", "gdrive", RETRY, T0, limit=100))
    start = _mark(store)
    answers = store.record_successes([(c, f"id-{c.item.file_id}", None) for c in claims],
                                     later(2))
    assert answers == [True] * 36
    events = _events(store, start)
    assert sorted(e.file_id for e in events if e.type == "file_synced") == sorted(
        f.id for r in repres for f in r.files)
    for repre in repres:
        mine = [e.type for e in events if e.repre_id == repre.id]
        assert mine == ["file_synced"] * 12 + ["representation_ready"]
        assert all(f.site("gdrive").id == f"id-{f.id}"
                   for f in store.get_representation("demo", repre.id).files)


def test_two_engines_finishing_the_last_files_together_log_one_ready(store_factory):
    stores = [store_factory(), store_factory()]
    stores[0].ensure_project("demo")
    for round_no in range(5):
        repre = make_repre(asset=f"sh{round_no}", files=2)
        stores[0].insert_representation(repre)
        items = [i for i in stores[0].find_work("demo", "studio", "gdrive", RETRY, T0)
                 if i.repre_id == repre.id]
        claims = [s.claim(i, f"e{n}", later(60), T0) for n, (s, i) in enumerate(zip(stores, items,
                                                                                    strict=True))]
        barrier = threading.Barrier(2)

        def finish(store, claim, barrier=barrier):
            barrier.wait()
            assert store.record_success(claim, "x", None, later(1))

        threads = [threading.Thread(target=finish, args=pair) for pair in zip(stores, claims,
                                                                               strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert all(s.flush_events(10) for s in stores)
    ready = [e for e in _events(stores[1]) if e.type == "representation_ready"]
    assert len(ready) == 5 and len({e.repre_id for e in ready}) == 5


def test_reset_failed_logs_one_retry_per_representation_and_site(store):
    store.ensure_project("demo")
    a, b = make_repre(asset="a", files=2), make_repre(asset="b", files=1)
    store.insert_representation(a)
    store.insert_representation(b)
    for claim in _claim_all(store, store.find_work("demo", "studio", "gdrive", RETRY, T0)):
        assert store.record_failure(claim, "boom", T0, None, permanent=True)
    start = _mark(store)
    assert store.reset_failed("demo") == 3
    retries = _events(store, start)
    assert sorted((e.type, e.repre_id, e.site, e.data["entries"]) for e in retries) == sorted(
        [("retry_requested", a.id, "gdrive", 2), ("retry_requested", b.id, "gdrive", 1)])


def test_read_events_pages_in_id_order_and_get_events_picks(store):
    ids = [store.append_event("integrity_alert", "demo", later(n), site="studio",
                              repre_id=f"r{n}", file_id=f"f{n}", data={"n": n, "why": "rot"})
           for n in range(25)]
    assert ids == sorted(ids) and len(set(ids)) == 25
    page1 = store.read_events(ids[0] - 1, limit=10)
    page2 = store.read_events(page1[-1].id, limit=100)
    assert [e.id for e in page1 + page2] == ids
    assert page1[3].data == {"n": 3, "why": "rot"} and page1[3].at == later(3)
    assert (page1[3].site, page1[3].repre_id, page1[3].file_id) == ("studio", "r3", "f3")
    picked = store.get_events([ids[20], ids[2], 10**9, ids[2]])
    assert [e.id for e in picked] == [ids[2], ids[20]]
    assert store.read_events(ids[-1]) == [] and store.get_events([]) == []


def test_a_sealed_id_is_never_written_to(store):
    """A reader gives up on a missing id by sealing it; a writer never lands there."""
    existing = store.append_event("integrity_alert", "demo", T0)
    assert store.seal_event_id(existing, later(1)).id == existing  # it exists: deliver it
    missing = store.event_log_info().last_id + 1
    assert store.seal_event_id(missing, later(1)) is None
    assert store.seal_event_id(missing, later(2)) is None  # sealing twice is fine
    after = store.append_event("integrity_alert", "demo", later(3))
    assert after > missing
    records = store.read_events(existing)
    assert [(e.id, e.is_gap) for e in records] == [(missing, True), (after, False)]


def test_event_log_keeps_its_identity_and_ids_across_reopening(store_factory):
    first = store_factory()
    one = first.append_event("integrity_alert", "demo", T0)
    info = first.event_log_info()
    assert info.last_id == one and info.pruned_through == 0
    first.close()
    second = store_factory()
    assert second.event_log_info().log_id == info.log_id
    assert second.append_event("integrity_alert", "demo", T0) > one


def test_pruning_drops_old_events_and_ids_are_never_reused(store):
    old = [store.append_event("integrity_alert", "demo", T0 - timedelta(days=40))
           for _ in range(3)]
    kept = store.append_event("integrity_alert", "demo", T0)
    assert store.prune_events(T0 - timedelta(days=30)) == 3
    info = store.event_log_info()
    assert info.pruned_through == old[-1] and info.last_id == kept
    assert [e.id for e in store.read_events(0)] == [kept]
    # The newest event always stays: ids count on from it, and a reader sees where the
    # log stands.
    assert store.prune_events(T0 + timedelta(days=1)) == 0
    assert store.append_event("integrity_alert", "demo", T0) > max([*old, kept])


def test_completing_staged_files_logs_each_file_then_the_representation(store):
    """"When complete" entries become available together; so do their events."""
    store.ensure_project("demo")
    repre = make_repre(files=3, sites={"studio": {"created_dt": T0, "checksum": "sha256:aa"}})
    store.insert_representation(repre)
    store.add_site("demo", repre.id, "local", atomic=True)
    work = store.find_work("demo", "local", "studio", RETRY, T0)
    claims = store.claim_many(work, "engine", later(60), T0)
    start = _mark(store)
    for claim in claims[:2]:
        assert store.record_staged(claim, "sha256:aa", later(1))
    assert store.complete_staged("demo", repre.id, "local", later(2)) == 0
    assert _events(store, start) == []  # staged is not available: nothing to tell yet
    assert store.record_staged(claims[2], "sha256:aa", later(3))
    assert store.complete_staged("demo", repre.id, "local", later(4)) == 3
    events = _events(store, start)
    assert [e.type for e in events] == ["file_synced"] * 3 + ["representation_ready"]
    assert sorted(e.file_id for e in events[:3]) == sorted(f.id for f in repre.files)
    assert all(e.site == "local" and e.data["staged"] and e.data["checksum"] == "sha256:aa"
               for e in events[:3])
    assert events[3].data["files"] == 3
