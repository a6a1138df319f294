"""MongoStore-only checks: the documents OpenPype itself writes and reads, legacy `sites`,
malformed documents, indexes, errors and change streams, on a real wire server."""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import OperationFailure

from app.errors import ConfigError, DocumentError, StoreUnavailableError
from app.model import Direction, Status, SummaryQuery
from app.store.mongo import MongoStore
from tests.helpers.seed import T0, legacy_doc, make_repre

RETRY = 3
NAIVE = datetime(2024, 3, 1, 10, 0, 1)  # OpenPype writes naive local time
_counter = itertools.count()


@pytest.fixture
def db_name(request: pytest.FixtureRequest) -> str:
    safe = re.sub(r"\W", "_", request.node.name)[:40]
    return f"u{next(_counter)}_{safe}"


@pytest.fixture
def raw(mongo_uri: str, db_name: str) -> Iterator[Database]:
    """The database as OpenPype sees it: a plain client, naive datetimes."""
    client: MongoClient = MongoClient(mongo_uri)
    yield client[db_name]
    client.close()


@pytest.fixture
def mstore(mongo_uri: str, db_name: str) -> Iterator[MongoStore]:
    store = MongoStore(mongo_uri, database=db_name)
    yield store
    store.close()


def openpype_project() -> dict:
    return {"_id": ObjectId(), "type": "project", "name": "demo",
            "schema": "openpype:project-3.0",
            "data": {"code": "dm", "fps": 25, "resolutionWidth": 1920},
            "config": {"roots": {"work": {"linux": "/mnt/work"}}, "tasks": {"comp": {}}}}


def openpype_repre(files: int = 2, gdrive: dict | None = None) -> dict:
    """A representation exactly as OpenPype's integrator and sync server leave it."""
    base = "{root[work]}/demo/shots/sh010/publish/render/renderMain/v012/dm_sh010_v012"
    return {
        "_id": ObjectId(), "schema": "openpype:representation-2.0", "type": "representation",
        "parent": ObjectId(), "name": "exr", "dependencies": [],
        "data": {"path": f"{base}.1001.exr", "template": "{root[work]}/{project[name]}/..."},
        "context": {"root": {"work": "/mnt/work"}, "project": {"name": "demo", "code": "dm"},
                    "hierarchy": "shots", "asset": "sh010", "family": "render",
                    "subset": "renderMain", "version": 12, "representation": "exr",
                    "ext": "exr", "task": {"name": "comp", "type": "Compositing"}},
        "files": [
            {"_id": ObjectId(), "path": f"{base}.{1001 + i}.exr", "size": 453380 + i,
             "hash": f"dm_sh010_v012,{1001 + i},exr|1699033513,68|{453380 + i}",
             "sites": [{"name": "studio", "created_dt": NAIVE},
                       {"name": "gdrive", **(gdrive or {})}]}
            for i in range(files)
        ],
    }


def assert_openpype_readable(doc: dict) -> None:
    """What OpenPype's sync server and Loader rely on when they read a document."""
    assert isinstance(doc["_id"], ObjectId)
    for file in doc["files"]:
        assert isinstance(file["_id"], ObjectId) and isinstance(file["path"], str)
        assert isinstance(file["sites"], list)
        for entry in file["sites"]:
            assert isinstance(entry, dict) and isinstance(entry.get("name"), str)
            assert None not in entry.values(), entry  # `$exists` would misread a null
            if "created_dt" in entry:
                assert isinstance(entry["created_dt"], datetime)
            if "tries" in entry:
                assert isinstance(entry["tries"], int)
            if "progress" in entry:
                assert entry["progress"] == "" or isinstance(entry["progress"], float)


def entry(doc: dict, file_index: int, site: str) -> dict:
    return next(e for e in doc["files"][file_index]["sites"] if e["name"] == site)


# -- OpenPype's own documents ---------------------------------------------------------------


def test_openpype_document_is_read_claimed_and_updated_in_place(mstore, raw):
    raw.demo.insert_one(openpype_project())
    original = openpype_repre()
    raw.demo.insert_one(original)
    repre_id = str(original["_id"])

    repre = mstore.get_representation("demo", repre_id)
    assert [f.id for f in repre.files] == [str(f["_id"]) for f in original["files"]]
    assert repre.files[0].site("studio").created_dt == NAIVE.replace(tzinfo=UTC)
    assert repre.files[1].hash == original["files"][1]["hash"]
    assert repre.parent == str(original["parent"]) and repre.context["task"]["name"] == "comp"

    work = mstore.find_work("demo", "studio", "gdrive", RETRY, T0)
    assert [(w.file_id, w.direction) for w in work] == [
        (str(f["_id"]), Direction.UPLOAD) for f in original["files"]]
    first = mstore.claim(work[0], "e1", T0 + timedelta(seconds=60), T0)
    mstore.record_progress(first, 0.25)
    moving = entry(raw.demo.find_one({"_id": original["_id"]}), 0, "gdrive")
    assert moving["progress"] == 0.25 and moving["sitesync_lease_owner"] == "e1"
    assert mstore.record_success(first, "provider-file-id", "sha256:ab", T0)
    second = mstore.claim(work[1], "e1", T0 + timedelta(seconds=60), T0)
    assert mstore.record_failure(second, "HttpError 500", T0, T0 + timedelta(seconds=30))

    # The events rode in the same updates (sitesync_outbox) and are moved to the event log
    # in the background; once that is done the document is OpenPype's shape again.
    assert mstore.flush_events(10)
    doc = raw.demo.find_one({"_id": original["_id"]})
    assert {k: v for k, v in doc.items() if k != "files"} == {
        k: v for k, v in original.items() if k != "files"}
    for got, was in zip(doc["files"], original["files"], strict=True):
        assert {k: v for k, v in got.items() if k != "sites"} == {
            k: v for k, v in was.items() if k != "sites"}
        assert entry(doc, 0, "studio") == {"name": "studio", "created_dt": NAIVE}
    assert entry(doc, 0, "gdrive") == {"name": "gdrive", "created_dt": T0.replace(tzinfo=None),
                                       "id": "provider-file-id", "sitesync_checksum": "sha256:ab"}
    assert entry(doc, 1, "gdrive") == {
        "name": "gdrive", "tries": 1, "error": "HttpError 500",
        "last_failed_dt": T0.replace(tzinfo=None), "progress": "",
        "sitesync_next_attempt_dt": (T0 + timedelta(seconds=30)).replace(tzinfo=None)}
    assert_openpype_readable(doc)


def test_inserted_representation_uses_object_ids_and_bson_dates(mstore, raw):
    mstore.ensure_project("demo")
    repre = make_repre(sites={"studio": {"created_dt": T0, "priority": 70}, "gdrive": {}})
    mstore.insert_representation(repre)
    doc = raw.demo.find_one({"_id": ObjectId(repre.id)})
    assert isinstance(doc["parent"], ObjectId) and doc["context"]["asset"] == "sh010"
    assert entry(doc, 0, "studio") == {"name": "studio", "created_dt": T0.replace(tzinfo=None),
                                       "priority": 70}
    assert entry(doc, 0, "gdrive") == {"name": "gdrive"}
    assert_openpype_readable(doc)

    other = make_repre(asset="texty")
    texty = type(other)(**{**other.__dict__, "id": "my-repre-1"})
    assert mstore.insert_representation(texty) == "my-repre-1"
    assert raw.demo.find_one({"_id": "my-repre-1"}) is not None
    assert mstore.get_representation("demo", "my-repre-1").asset == "texty"


def test_project_pause_keeps_openpype_fields(mstore, raw):
    project = openpype_project()
    raw.demo.insert_one(project)
    mstore.ensure_project("demo", "other")  # exists: left alone
    mstore.set_project_paused("demo", True)
    doc = raw.demo.find_one({"type": "project"})
    assert doc["data"] == {**project["data"], "sitesync_paused": True}
    assert doc["config"] == project["config"] and doc["name"] == "demo"
    [info] = mstore.list_projects()
    assert (info.name, info.code, info.paused) == ("demo", "dm", True)
    mstore.set_project_paused("demo", False)
    assert raw.demo.find_one({"type": "project"}) == project
    with pytest.raises(KeyError):
        mstore.set_project_paused("nope", True)


def test_pause_sets_only_the_flag_on_each_files_own_entry(mstore, raw):
    raw.demo.insert_one(openpype_project())
    doc = openpype_repre()
    doc["files"][0]["sites"][1] = {"name": "gdrive", "progress": 0.4, "priority": 60}
    doc["files"][1]["sites"][1] = {"name": "gdrive", "tries": 2, "error": "quota",
                                   "last_failed_dt": NAIVE}
    raw.demo.insert_one(doc)
    mstore.set_paused("demo", str(doc["_id"]), "gdrive", True)
    assert mstore.flush_events(10)
    paused = raw.demo.find_one({"_id": doc["_id"]})
    for i in range(2):
        assert entry(paused, i, "gdrive") == {**entry(doc, i, "gdrive"), "paused": True}
        assert entry(paused, i, "studio") == entry(doc, i, "studio")
    mstore.set_paused("demo", str(doc["_id"]), "gdrive", False)
    assert mstore.flush_events(10)
    assert raw.demo.find_one({"_id": doc["_id"]}) == doc


def test_reset_replaces_the_entry_keeping_name_and_priority(mstore, raw):
    raw.demo.insert_one(openpype_project())
    doc = openpype_repre(files=1, gdrive={
        "tries": 3, "error": "x", "last_failed_dt": NAIVE, "progress": "", "paused": True,
        "priority": 80, "id": "old", "sitesync_lease_owner": "e9", "sitesync_permanent": True})
    raw.demo.insert_one(doc)
    assert mstore.reset_site("demo", str(doc["_id"]), "gdrive") == 1
    after = raw.demo.find_one({"_id": doc["_id"]})
    assert entry(after, 0, "gdrive") == {"name": "gdrive", "priority": 80}
    assert entry(after, 0, "studio") == entry(doc, 0, "studio")


def test_textual_tries_are_counted_on(mstore, raw):
    """`tries` as text (another tool's write): `$inc` cannot add to it, the store can."""
    raw.demo.insert_one(openpype_project())
    doc = openpype_repre(files=1, gdrive={"tries": "1"})
    raw.demo.insert_one(doc)
    [item] = mstore.find_work("demo", "studio", "gdrive", RETRY, T0)
    assert item.tries == 1
    claim = mstore.claim(item, "e1", T0 + timedelta(seconds=60), T0)
    assert mstore.record_failure(claim, "boom", T0, None)
    after = entry(raw.demo.find_one({"_id": doc["_id"]}), 0, "gdrive")
    assert after["tries"] == 2 and "sitesync_lease_owner" not in after


# -- legacy dict-form sites ---------------------------------------------------------------------


def test_readme_howto_on_dict_form_document_becomes_upload_work(mstore, raw):
    raw.demo.insert_one(openpype_project())
    legacy = legacy_doc(sites={"studio": {"created_dt": NAIVE}})
    legacy["data"] = {"path": "x"}
    raw.demo.insert_one(legacy)
    # The old README's HOWTO, verbatim.
    raw.demo.update_many({"type": "representation"}, {"$set": {"files.$[].sites.gdrive": {}}})

    work = mstore.find_work("demo", "studio", "gdrive", RETRY, T0)
    assert [(w.repre_id, w.direction) for w in work] == [
        (str(legacy["_id"]), Direction.UPLOAD)] * 2
    doc = raw.demo.find_one({"_id": legacy["_id"]})
    assert doc["files"][0]["sites"] == [{"name": "studio", "created_dt": NAIVE},
                                        {"name": "gdrive"}]
    assert {k: v for k, v in doc.items() if k != "files"} == {
        k: v for k, v in legacy.items() if k != "files"}
    assert_openpype_readable(doc)


def test_the_guides_list_form_update_queues_files_of_a_converted_document(mstore, raw):
    """docs/openpype-mongodb.md: once SiteSync has converted a document to the list form,
    the old HOWTO's `$set` adds nothing; the guide's `$push` with an array filter adds
    one entry to each file that lacks the site, and the store sees it as work."""
    guide = (Path(__file__).resolve().parents[3] / "docs" / "openpype-mongodb.md").read_text()
    assert '{$push: {"files.$[f].sites": {name: "gdrive"}}}' in guide
    assert '{arrayFilters: [{"f.sites.name": {$ne: "gdrive"}}]}' in guide
    raw.demo.insert_one(openpype_project())
    legacy = legacy_doc(sites={"studio": {"created_dt": NAIVE}})
    raw.demo.insert_one(legacy)
    assert mstore.find_work("demo", "studio", "gdrive", RETRY, T0) == []  # converts it
    assert isinstance(raw.demo.find_one({"_id": legacy["_id"]})["files"][0]["sites"], list)
    with contextlib.suppress(OperationFailure):  # MongoDB refuses it; some servers ignore it
        raw.demo.update_many({"type": "representation"},
                             {"$set": {"files.$[].sites.gdrive": {}}})
    assert mstore.find_work("demo", "studio", "gdrive", RETRY, T0) == []
    raw.demo.update_one({"_id": legacy["_id"]}, {"$push": {"files.0.sites": {"name": "gdrive"}}})
    raw.demo.update_many({"type": "representation"},
                         {"$push": {"files.$[f].sites": {"name": "gdrive"}}},
                         array_filters=[{"f.sites.name": {"$ne": "gdrive"}}])
    doc = raw.demo.find_one({"_id": legacy["_id"]})
    assert [[e["name"] for e in f["sites"]] for f in doc["files"]] == [["studio", "gdrive"]] * 2
    work = mstore.find_work("demo", "studio", "gdrive", RETRY, T0)
    assert [(w.repre_id, w.direction) for w in work] == [(str(legacy["_id"]), Direction.UPLOAD)] * 2
    assert_openpype_readable(doc)


def test_dict_form_document_arriving_later_is_converted_promptly(mstore, raw):
    mstore.ensure_project("demo")
    mstore.legacy_scan_interval_s = 3600  # only the change stream can bring it in early
    assert mstore.find_work("demo", "studio", "gdrive", RETRY, T0) == []
    marker = mstore.change_marker()
    legacy = legacy_doc(sites={"studio": {"created_dt": NAIVE}, "gdrive": {}}, files=1)
    raw.demo.insert_one(legacy)
    assert mstore.wait_for_change(marker, 5)
    assert [w.repre_id for w in mstore.find_work("demo", "studio", "gdrive", RETRY, T0)] == [
        str(legacy["_id"])]


def test_mutation_converts_a_dict_form_document_first(mstore, raw):
    raw.demo.insert_one(openpype_project())
    legacy = legacy_doc(sites={"studio": {"created_dt": NAIVE}, "gdrive": {"tries": 1}})
    raw.demo.insert_one(legacy)
    mstore.set_paused("demo", str(legacy["_id"]), "gdrive", True)
    doc = raw.demo.find_one({"_id": legacy["_id"]})
    for file in doc["files"]:
        assert file["sites"] == [{"name": "studio", "created_dt": NAIVE},
                                 {"name": "gdrive", "tries": 1, "paused": True}]


# -- malformed documents ------------------------------------------------------------------------


def test_malformed_raw_documents_are_skipped_once_and_named(mstore, raw, caplog):
    raw.demo.insert_one(openpype_project())
    good = openpype_repre(files=1)
    not_a_list = {**openpype_repre(), "_id": ObjectId(), "files": "not a list"}
    no_path = openpype_repre(files=1)
    no_path["_id"] = ObjectId()
    del no_path["files"][0]["path"]
    raw.demo.insert_many([good, not_a_list, no_path])

    with caplog.at_level(logging.WARNING, logger="app.store.mongo"):
        for _ in range(3):
            work = mstore.find_work("demo", "studio", "gdrive", RETRY, T0)
            assert [w.repre_id for w in work] == [str(good["_id"])]
        page = mstore.summary_page("demo", SummaryQuery("studio", "gdrive"), RETRY, T0)
    assert [r.repre_id for r in page.rows] == [str(good["_id"])] and page.total == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(no_path["_id"]) in warnings[0] and "'demo'" in warnings[0]

    for bad, why in ((not_a_list, "files must be a list"), (no_path, "has no path")):
        with pytest.raises(DocumentError) as excinfo:
            mstore.get_representation("demo", str(bad["_id"]))
        assert why in str(excinfo.value) and str(bad["_id"]) in str(excinfo.value)
        assert "demo" in str(excinfo.value)


# -- indexes ------------------------------------------------------------------------------------


def _index_keys(db: Database, coll: str) -> list[list[tuple[str, int]]]:
    return [list(spec["key"]) for spec in db[coll].index_information().values()]


def test_polling_indexes_exist(mstore, raw):
    mstore.ensure_project("demo")
    keys = _index_keys(raw, "demo")
    assert [("type", 1)] in keys and [("files._id", 1)] in keys
    assert [("files.sites.name", 1), ("files.sites.created_dt", 1)] in keys


def test_indexes_are_created_on_an_existing_openpype_project(mstore, raw, mongo_uri):
    raw.demo.insert_one(openpype_project())
    raw.demo.insert_one(openpype_repre())
    assert len(mstore.find_work("demo", "studio", "gdrive", RETRY, T0)) == 2
    assert [("files.sites.name", 1), ("files.sites.created_dt", 1)] in _index_keys(raw, "demo")
    # A second store on the same collection does not trip over them.
    again = MongoStore(mongo_uri, database=raw.name)
    try:
        again.ensure_project("demo")
        assert again.count_representations("demo") == 1
    finally:
        again.close()


# -- errors -------------------------------------------------------------------------------------


def test_unreachable_server_is_unavailable_quickly_without_the_password(caplog):
    caplog.set_level(logging.DEBUG)
    store = MongoStore("mongodb://bob:s3cret@127.0.0.1:1/", server_timeout_ms=300)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as excinfo:
            store.ping()
        assert time.monotonic() - started < 5
        with pytest.raises(StoreUnavailableError):
            store.find_work("demo", "studio", "gdrive", RETRY, T0)
    finally:
        store.close()
    text = "".join(traceback.format_exception(excinfo.value))
    assert "127.0.0.1:1" in str(excinfo.value) and "running" in str(excinfo.value)
    assert "s3cret" not in text and "s3cret" not in caplog.text


def test_percent_encoded_password_is_redacted_too():
    store = MongoStore("mongodb://bob:s3cr%40t@127.0.0.1:1/", server_timeout_ms=200)
    try:
        with pytest.raises(StoreUnavailableError) as excinfo:
            store.ping()
    finally:
        store.close()
    assert "s3cr" not in str(excinfo.value)


@pytest.mark.parametrize("uri", [
    "http://bob:s3cret@db.example:27017/",
    "mongodb://bob:s3cret@db.example:notaport/",
])
def test_bad_uri_is_a_config_error_without_the_password(uri):
    with pytest.raises(ConfigError) as excinfo:
        MongoStore(uri)
    assert excinfo.value.key == "database_url" and excinfo.value.fix
    assert "s3cret" not in str(excinfo.value)


def test_unknown_representation_and_project_are_key_errors(mstore):
    mstore.ensure_project("demo")
    with pytest.raises(KeyError):
        mstore.get_representation("demo", str(ObjectId()))
    with pytest.raises(KeyError):
        mstore.set_paused("demo", "not-there", "gdrive", True)
    with pytest.raises(KeyError):
        mstore.find_work("nope", "studio", "gdrive", RETRY, T0)


# -- change notification ------------------------------------------------------------------------


def test_change_stream_wakes_on_a_raw_write(mstore, raw):
    mstore.ensure_project("demo")
    marker = mstore.change_marker()
    assert mstore._watcher is not None and mstore._watcher.mode == "change_stream"
    assert mstore.wait_for_change(marker, 0.3) is False
    raw.demo.insert_one(openpype_repre())  # between marker and wait: must not be missed
    started = time.monotonic()
    assert mstore.wait_for_change(marker, 10) is True
    assert time.monotonic() - started < 5
    assert mstore.wait_for_change(mstore.change_marker(), 0.2) is False


def test_polling_fallback_without_change_streams(mstore, raw):
    mstore.ensure_project("demo")
    mstore.use_change_streams = False
    marker = mstore.change_marker()
    assert mstore._watcher is not None and mstore._watcher.mode == "poll"
    raw.demo.update_one({"type": "project"}, {"$set": {"data.x": 1}})
    assert mstore.wait_for_change(marker, 10) is True


def test_close_stops_the_watcher(mongo_uri, db_name):
    store = MongoStore(mongo_uri, database=db_name)
    store.change_marker()
    thread = store._watcher._thread
    store.close()
    store.close()
    assert not thread.is_alive()
    assert store.wait_for_change(0, 1) is False


def test_summary_counts_come_from_app_status(mstore, raw):
    raw.demo.insert_one(openpype_project())
    raw.demo.insert_one(openpype_repre(gdrive={"tries": 3, "error": "quota"}))
    raw.demo.insert_one(openpype_repre(gdrive={"progress": 0.5}))  # OpenPype moving it
    page = mstore.summary_page("demo", SummaryQuery("studio", "gdrive"), RETRY, T0)
    assert page.status_counts == {Status.FAILED: 1, Status.IN_PROGRESS: 1}
    assert sorted(r.remote.tries for r in page.rows) == [0, 6]


# -- the event log: outbox, counter ids, sealing ------------------------------------------------


def _crashed_before_draining(raw, doc_id, uid=None) -> dict:
    """What a process killed right after its update leaves: the event in the outbox only."""
    entry = {"uid": uid or ObjectId(), "type": "file_synced", "at": NAIVE, "site": "gdrive",
             "file_id": "f1", "data": {"path": "x.exr"}}
    raw.demo.update_one({"_id": doc_id}, {"$push": {"sitesync_outbox": entry}})
    return entry


def test_events_left_in_an_outbox_by_a_crash_are_logged_by_the_next_reader(mongo_uri, db_name, raw):
    raw.demo.insert_one(openpype_project())
    doc = openpype_repre(files=1)
    raw.demo.insert_one(doc)
    entry = _crashed_before_draining(raw, doc["_id"])
    with MongoStore(mongo_uri, database=db_name) as store:
        store.read_events(0)  # a reader starts the drain, which scans for leftovers
        assert store.flush_events(10)
        [event] = store.read_events(0)
    assert (event.type, event.repre_id, event.file_id) == ("file_synced", str(doc["_id"]), "f1")
    assert event.at == NAIVE.replace(tzinfo=UTC) and event.data == {"path": "x.exr"}
    assert raw.sitesync_events.find_one({"_id": event.id})["uid"] == entry["uid"]
    assert raw.demo.find_one({"_id": doc["_id"]}) == doc  # the outbox is gone


def test_two_processes_draining_one_outbox_log_each_event_once(mongo_uri, db_name, raw):
    raw.demo.insert_one(openpype_project())
    doc = openpype_repre(files=1)
    raw.demo.insert_one(doc)
    _crashed_before_draining(raw, doc["_id"])
    a, b = MongoStore(mongo_uri, database=db_name), MongoStore(mongo_uri, database=db_name)
    try:
        # Both read the outbox before either pulls it (crash between insert and pull).
        a._log._drain("demo", [str(doc["_id"])])
        _crashed_before_draining(raw, doc["_id"], uid=raw.sitesync_events.find_one()["uid"])
        b._log._drain("demo", [str(doc["_id"])])
        records = b.read_events(0)
    finally:
        a.close()
        b.close()
    # b's insert was refused by the unique uid: logged once, and the ids b took for the
    # refused copies are sealed at once, so no reader waits for them.
    assert records[0].is_gap is False
    assert len([e for e in records if not e.is_gap]) == 1 and all(e.is_gap for e in records[1:])


def test_a_writer_whose_id_was_sealed_is_renumbered_not_lost(mstore, monkeypatch):
    mstore.append_event("integrity_alert", "demo", T0)
    slow_id = mstore._log._allocate()  # a writer takes an id ... and stalls
    mstore.append_event("integrity_alert", "demo", T0)  # others go on
    assert mstore.seal_event_id(slow_id, T0) is None  # a reader gives up on it
    real_allocate = mstore._log._allocate
    handed = iter([slow_id])
    monkeypatch.setattr(mstore._log, "_allocate", lambda: next(handed, None) or real_allocate())
    late = mstore.append_event("integrity_alert", "demo", T0, data={"late": True})
    assert late > slow_id
    [gap] = mstore.get_events([slow_id])
    assert gap.is_gap
    assert mstore.get_events([late])[0].data == {"late": True}


def test_event_collections_are_not_projects_and_not_usable_as_one(mstore):
    mstore.ensure_project("demo")
    mstore.append_event("integrity_alert", "demo", T0)
    assert [p.name for p in mstore.list_projects()] == ["demo"]
    with pytest.raises(KeyError, match="SiteSync's own"):
        mstore.ensure_project("sitesync_events")


def test_a_block_of_ids_holding_a_sealed_one_still_logs_every_event(mstore, raw):
    raw.demo.insert_one(openpype_project())
    doc = openpype_repre(files=1)
    raw.demo.insert_one(doc)
    for _ in range(3):
        _crashed_before_draining(raw, doc["_id"])
    sealed = mstore._log.counter()["seq"] + 2  # inside the block the drain will take
    assert mstore.seal_event_id(sealed, T0) is None
    mstore._log._drain("demo", [str(doc["_id"])])
    records = mstore.read_events(0)
    real = [e for e in records if not e.is_gap]
    assert len(real) == 3 and sealed not in {e.id for e in real}
    assert len({raw.sitesync_events.find_one({"_id": e.id})["uid"] for e in real}) == 3
    # Taking the entries out of the document is a separate, later write.
    assert len(raw.demo.find_one({"_id": doc["_id"]})["sitesync_outbox"]) == 3
    mstore._log._tidy()
    assert "sitesync_outbox" not in raw.demo.find_one({"_id": doc["_id"]})


def test_an_idle_event_log_thread_sleeps_instead_of_spinning(mstore, raw):
    """Once everything is drained and tidied the drain thread waits for a hint or the
    next scan. It used to wake at once, forever, when the cleanup time had passed with
    nothing left to tidy: one spinning thread per store starved everything else."""
    raw.demo.insert_one(openpype_project())
    doc = openpype_repre(files=1)
    raw.demo.insert_one(doc)
    work = mstore.find_work("demo", "studio", "gdrive", RETRY, T0)
    claim = mstore.claim(work[0], "e1", T0 + timedelta(seconds=60), T0)
    assert mstore.record_success(claim, "id", "sha256:ab", T0)
    assert mstore.flush_events(10)
    log = mstore._log
    passes = itertools.count()
    real_due = log._cleanup_due
    log._cleanup_due = lambda: (next(passes), real_due())[1]
    with log._cond:
        log._cond.notify_all()  # one wake-up, as a hint would give
    time.sleep(1.0)
    assert next(passes) < 20, "the drain thread keeps waking with nothing to do"
