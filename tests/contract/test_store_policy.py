"""Store contract of the transfer policy, on every back-end: one direction of work,
representation heads in insertion order, files in pages, one file, adopting a copy."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.model import Direction, Status
from app.status import site_status
from tests.helpers.seed import T0, later, make_repre

RETRY = 3


def test_find_work_one_direction(store):
    store.ensure_project("demo")
    up = store.insert_representation(make_repre(asset="up", sites={"studio": {"created_dt": T0},
                                                                   "gdrive": {}}))
    down = store.insert_representation(make_repre(asset="down", sites={"studio": {},
                                                                       "gdrive": {"created_dt": T0}}))
    both = store.find_work("demo", "studio", "gdrive", RETRY, T0)
    assert {w.repre_id for w in both} == {up, down}
    uploads = store.find_work("demo", "studio", "gdrive", RETRY, T0, direction=Direction.UPLOAD)
    downloads = store.find_work("demo", "studio", "gdrive", RETRY, T0,
                                direction=Direction.DOWNLOAD, limit=1)
    assert {w.repre_id for w in uploads} == {up} and len(uploads) == 2
    assert [w.repre_id for w in downloads] == [down]
    assert all(w.direction is Direction.DOWNLOAD for w in downloads)


def test_heads_page_in_insertion_order_without_files(store):
    store.ensure_project("demo")
    ids = [store.insert_representation(make_repre(asset=f"a{i}", files=i + 1)) for i in range(5)]
    first = store.representation_heads("demo", limit=2)
    assert [h.id for h in first] == ids[:2]
    rest = store.representation_heads("demo", after=first[-1].key, limit=10)
    assert [h.id for h in rest] == ids[2:]
    assert [h.files_count for h in first + rest] == [1, 2, 3, 4, 5]
    head = rest[0]
    assert head.asset == "a2" and head.subset == "renderMain" and head.representation == "exr"
    assert head.families == ("render",) and head.project == "demo"
    assert store.representation_heads("demo", after=rest[-1].key) == []
    assert store.newest_key("demo") == rest[-1].key
    assert store.rewind_key(rest[-1].key, 0) <= rest[-1].key
    newer = store.insert_representation(make_repre(asset="late"))
    assert [h.id for h in store.representation_heads("demo", after=rest[-1].key)] == [newer]


def test_heads_of_an_empty_or_unknown_project(store):
    store.ensure_project("demo")
    assert store.representation_heads("demo") == [] and store.newest_key("demo") is None
    with pytest.raises(KeyError):
        store.representation_heads("nope")


def test_files_in_pages_and_one_file(store):
    store.ensure_project("demo")
    repre = make_repre(files=25, sites={"studio": {"created_dt": T0}, "gdrive": {"priority": 70}})
    store.insert_representation(repre)
    pages = [store.file_page("demo", repre.id, offset, 10) for offset in (0, 10, 20, 30)]
    assert [len(p) for p in pages] == [10, 10, 5, 0]
    assert [f.id for page in pages for f in page] == [f.id for f in repre.files]
    assert pages[1][0].site("gdrive").priority == 70 and pages[1][0].site("studio").available
    one = store.get_file("demo", repre.id, repre.files[17].id)
    assert one.path == repre.files[17].path and one.site("studio").created_dt == T0
    with pytest.raises(KeyError):
        store.get_file("demo", repre.id, make_repre().files[0].id)
    details = store.file_details("demo", repre.id, "studio", "gdrive", RETRY, T0, offset=20, limit=3)
    assert [d.file_id for d in details] == [f.id for f in repre.files[20:23]]
    assert len(store.file_details("demo", repre.id, "studio", "gdrive", RETRY, T0)) == 25


def test_adopting_a_copy(store):
    store.ensure_project("demo")
    repre = make_repre(files=4, sites={"studio": {"created_dt": T0, "checksum": "sha256:ab"},
                                       "gdrive": {"priority": 80, "tries": 2, "error": "boom"}})
    store.insert_representation(repre)
    f0, f1, f2, f3 = (f.id for f in repre.files)
    # a waiting entry becomes available, keeping its priority, losing its failures
    assert store.adopt_file("demo", repre.id, f0, "gdrive", "x.exr", "sha256:ab", later(1))
    state = store.get_file("demo", repre.id, f0).site("gdrive")
    assert state.available and state.created_dt == later(1) and state.checksum == "sha256:ab"
    assert state.priority == 80 and state.tries == 0 and state.error is None and state.id == "x.exr"
    # a site the file had no entry for gets an available one
    assert store.adopt_file("demo", repre.id, f1, "local", "x.exr", "sha256:ab", later(1))
    assert store.get_file("demo", repre.id, f1).site("local").available
    # already available: nothing to do
    assert not store.adopt_file("demo", repre.id, f0, "gdrive", "y", "sha256:cd", later(2))
    assert store.get_file("demo", repre.id, f0).site("gdrive").checksum == "sha256:ab"
    # leased by a running transfer: left to it
    work = [w for w in store.find_work("demo", "studio", "gdrive", 10, later(3)) if w.file_id == f2]
    assert store.claim(work[0], "engine", later(3) + timedelta(seconds=60), later(3))
    assert not store.adopt_file("demo", repre.id, f2, "gdrive", "x", "sha256:ab", later(4))
    assert store.adopt_file("demo", repre.id, f3, "gdrive", "x", "sha256:ab", later(4))
    state = store.get_file("demo", repre.id, f3).site("gdrive")
    assert site_status(state, RETRY, later(5)) is Status.SYNCED
    with pytest.raises(KeyError):
        store.adopt_file("demo", repre.id, make_repre().files[0].id, "gdrive", "x", "s", T0)


def _lease(store, items, now):
    return store.claim_many(items, "engine", now + timedelta(seconds=60), now)


def test_when_complete_entries_are_staged_then_completed_together(store):
    store.ensure_project("demo")
    repre = make_repre(files=3, sites={"studio": {"created_dt": T0, "checksum": "sha256:aa"}})
    store.insert_representation(repre)
    assert store.add_site("demo", repre.id, "local", atomic=True, priority=70) == 3
    work = store.find_work("demo", "local", "studio", RETRY, T0)
    assert len(work) == 3 and all(w.atomic and w.direction is Direction.DOWNLOAD for w in work)
    claims = _lease(store, work, T0)
    assert store.has_unstaged("demo", repre.id, "local")
    assert store.complete_staged("demo", repre.id, "local", T0) == 0  # nothing staged yet
    assert store.record_staged(claims[0], "sha256:aa", later(1))
    assert store.record_staged(claims[1], "sha256:aa", later(1))
    state = store.get_file("demo", repre.id, repre.files[0].id).site("local")
    assert state.staged_dt == later(1) and not state.available and state.atomic
    assert state.lease_owner is None and state.checksum == "sha256:aa"
    assert site_status(state, RETRY, later(2)) is Status.IN_PROGRESS  # moved, waiting
    # staged files are done moving: no longer work, no longer claimable
    assert [w.file_id for w in store.find_work("demo", "local", "studio", RETRY, later(100))] \
        == [repre.files[2].id]
    assert store.claim(work[0], "other", later(200), later(100)) is None
    assert store.has_unstaged("demo", repre.id, "local")
    assert store.staged_representations("demo", "local") == [repre.id]
    assert store.staged_representations("demo", "studio") == []
    assert store.complete_staged("demo", repre.id, "local", later(2)) == 0  # one to go
    assert not store.get_file("demo", repre.id, repre.files[0].id).site("local").available
    assert store.record_staged(claims[2], "sha256:aa", later(3))
    assert not store.has_unstaged("demo", repre.id, "local")
    assert store.complete_staged("demo", repre.id, "local", later(4)) == 3
    for f in store.get_representation("demo", repre.id).files:
        state = f.site("local")
        assert state.created_dt == later(4) and state.staged_dt is None and state.progress is None
        assert state.priority == 70 and state.checksum == "sha256:aa"
        assert site_status(state, RETRY, later(5)) is Status.SYNCED
    assert store.complete_staged("demo", repre.id, "local", later(5)) == 0  # done already
    assert store.staged_representations("demo", "local") == []


def test_reset_keeps_the_when_complete_mode_and_drops_the_staging(store):
    store.ensure_project("demo")
    repre = make_repre(files=2, sites={"studio": {"created_dt": T0}})
    store.insert_representation(repre)
    store.add_site("demo", repre.id, "local", atomic=True)
    claims = _lease(store, store.find_work("demo", "local", "studio", RETRY, T0), T0)
    store.record_staged(claims[0], "sha256:aa", later(1))
    assert store.reset_site("demo", repre.id, "local") == 2
    for f in store.get_representation("demo", repre.id).files:
        assert f.site("local").atomic and f.site("local").staged_dt is None
    assert len(store.find_work("demo", "local", "studio", RETRY, later(2))) == 2
    plain = make_repre(files=1, sites={"studio": {"created_dt": T0}})
    store.insert_representation(plain)
    store.add_site("demo", plain.id, "local")
    [item] = [w for w in store.find_work("demo", "local", "studio", RETRY, later(2))
              if w.repre_id == plain.id]
    assert not item.atomic
