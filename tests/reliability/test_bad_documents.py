"""Property: whatever a representation document holds, the stores neither crash nor
lose the rest of the project.

Documents are OpenPype-shaped with random damage: missing or mistyped keys, dates that
are text, huge numbers, NaN or infinite, sites as a dict, a list, text or junk, ids of
every type. Through ``insert_document`` (both stores) a document is either stored or
refused with a DocumentError naming it. Written straight into MongoDB (as OpenPype or a
script could), it is skipped by the work and summary queries, and reading it alone gives
a DocumentError naming it. Either way find_work, summary_page, file_details and the CLI
`status` keep working for the whole project.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import main
from app.errors import DocumentError
from app.model import Status, SummaryQuery
from app.store.base import Store
from tests.helpers.seed import make_repre
from tests.integration.conftest import write_settings
from tests.reliability.helpers import SCALE, report

PROJECT = "demo"
SITES = ("studio", "gdrive")
NOW = datetime(2024, 6, 1, tzinfo=UTC)
INT64 = 2**63 - 1

# -- strategies ---------------------------------------------------------------------------------

_text = st.text(max_size=12)
_junk = st.one_of(st.none(), st.booleans(), st.integers(-INT64, INT64), st.floats(), _text,
                  st.lists(st.integers(), max_size=2), st.dictionaries(_text, st.integers(), max_size=2))
#: Values that are the right kind but out of every range, or texts that look like numbers.
_extreme = st.one_of(
    st.sampled_from([2**62, -(2**62), INT64, 2**70, -(2**70), 10**30, 1e20, -1e20, 1e308,
                     float("inf"), float("-inf"), float("nan"), 0, -1, 0.5, True]),
    st.sampled_from(["", "3", " 7 ", "-1", "x", "٣", "²", "1e3", "2024-03-01T10:00:00Z",
                     "2024-13-45", "yesterday", "9" * 40, "\x00", "{root[work]}/../x"]),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
)
_nasty = st.one_of(_extreme, _extreme, _junk)
_good_entry = st.fixed_dictionaries(
    {"name": st.sampled_from([*SITES, "local"])},
    optional={"created_dt": st.just(NOW), "tries": st.integers(0, 5), "priority": st.integers(0, 100)},
)
_good_file = st.fixed_dictionaries({
    "_id": st.builds(ObjectId),
    "path": st.sampled_from(["{root[work]}/demo/a.exr", "{root[work]}/demo/sh010/b.exr"]),
    "size": st.integers(0, 10**9),
    "hash": st.just("a,exr|1699033513,68|100"),
    "sites": st.lists(_good_entry, min_size=1, max_size=3),
})
_DOC_KEYS = ["files", "context", "name", "parent", "sitesync_created_dt", "_id_of_file"]
_FILE_KEYS = ["_id", "path", "size", "hash", "sites"]
_ENTRY_KEYS = ["name", "created_dt", "id", "tries", "error", "last_failed_dt", "progress", "paused",
               "priority", "sitesync_lease_owner", "sitesync_lease_until", "sitesync_checksum",
               "sitesync_next_attempt_dt", "sitesync_permanent"]
_CONTEXT_KEYS = ["asset", "subset", "version", "representation"]


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed OpenPype document with one to three values damaged; a fresh
    ObjectId each, so every example is a new representation."""
    doc: dict[str, Any] = {
        "_id": ObjectId(), "type": "representation", "name": "exr",
        "context": {"asset": "sh010", "subset": "renderMain", "version": 1, "representation": "exr"},
        "files": draw(st.lists(_good_file, min_size=1, max_size=3)),
    }
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["doc", "context", "file", "file", "entry", "entry", "entry"]))
        value = draw(_nasty)
        files = doc["files"] if isinstance(doc["files"], list) else []
        dict_files = [f for f in files if isinstance(f, dict)]
        if where == "doc":
            doc[draw(st.sampled_from(_DOC_KEYS[:-1]))] = value
        elif where == "context" and isinstance(doc.get("context"), dict):
            doc["context"][draw(st.sampled_from(_CONTEXT_KEYS))] = value
        elif where == "file" and dict_files:
            draw(st.sampled_from(dict_files))[draw(st.sampled_from(_FILE_KEYS))] = value
        elif where == "entry" and dict_files:
            sites = draw(st.sampled_from(dict_files)).get("sites")
            entries = [e for e in sites if isinstance(e, dict)] if isinstance(sites, list) else []
            if entries:
                draw(st.sampled_from(entries))[draw(st.sampled_from(_ENTRY_KEYS))] = value
    if draw(st.integers(0, 9)) == 0:  # now and then the legacy dict form of `sites`
        for f in doc["files"] if isinstance(doc["files"], list) else []:
            if isinstance(f, dict) and isinstance(f.get("sites"), list):
                f["sites"] = {str(e.get("name")): {k: v for k, v in e.items() if k != "name"}
                              for e in f["sites"] if isinstance(e, dict)}
    return doc


def _bson_safe(value: Any) -> bool:
    """What MongoDB can hold at all (OpenPype could not have written anything else)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and "\x00" not in k and not k.startswith("$") and "." not in k
                   and _bson_safe(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_bson_safe(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value <= INT64
    return True


# -- harness -------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "mongo"])
def project(request, tmp_path, monkeypatch) -> Iterator[tuple[Store, str]]:
    """A store with one healthy representation, and a settings file the CLI can use."""
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SITESYNC_LOG_DIR", str(tmp_path / "logs"))
    roots = {"studio": tmp_path / "studio", "gdrive": tmp_path / "gdrive"}
    if request.param == "sqlite":
        from app.store.sqlite import SqliteStore

        (tmp_path / "data").mkdir()
        store: Store = SqliteStore(tmp_path / "data" / "sitesync.db")
        url, name = "", "avalon"
    else:
        from app.store.mongo import MongoStore

        url, name = request.getfixturevalue("mongo_uri"), f"bad_{ObjectId()}"
        store = MongoStore(url, database=name)
    settings_path = tmp_path / "settings.json"
    write_settings(settings_path, roots, database_url=url, database_name=name)
    store.ensure_project(PROJECT)
    store.insert_representation(make_repre(sites={"studio": {"created_dt": NOW}, "gdrive": {}}))
    try:
        yield store, str(settings_path)
    finally:
        store.close()


def _reads_work(store: Store, ids: list[str], sort_keys: tuple[str, ...] = SummaryQuery.SORT_KEYS) -> None:
    """Everything the engine, the tray and the CLI read, for the whole project."""
    for active, remote in (("studio", "gdrive"), ("gdrive", "studio")):
        items = store.find_work(PROJECT, active, remote, 3, NOW + timedelta(days=1), limit=500)
        assert all(isinstance(i.path, str) for i in items)
        for sort_key in sort_keys:
            page = store.summary_page(PROJECT, SummaryQuery(active, remote, sort_key=sort_key, limit=50),
                                      3, NOW)
            assert page.total >= 1  # the healthy representation is never lost
        store.summary_page(PROJECT, SummaryQuery(active, remote, text="sh", limit=5,
                                                 statuses=frozenset({Status.QUEUED})), 3, NOW)
    for repre_id in ids:
        try:
            details = store.file_details(PROJECT, repre_id, "studio", "gdrive", 3, NOW)
        except DocumentError as exc:
            assert repre_id in str(exc), exc
        else:
            assert all(isinstance(d.status, Status) for d in details)


def _cli_status_works(settings_path: str, capsys) -> None:
    capsys.readouterr()
    for args in (["status"], ["status", "--json"], ["status", "--sort", "version", "--status", "failed"]):
        code = main(["--config", settings_path, *args, "--project", PROJECT])
        out, err = capsys.readouterr()
        assert code == 0, (args, out, err)
        assert "Traceback" not in out + err and "sitesync: error" not in err, (args, err)


def _named(exc: DocumentError, doc: dict[str, Any]) -> bool:
    return str(doc["_id"]) in str(exc) and PROJECT in str(exc)


_SETTINGS = settings(max_examples=100 * SCALE, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# -- properties -----------------------------------------------------------------------------------


def _damaged(where: str, key: str, value: Any) -> dict[str, Any]:
    doc = {"_id": ObjectId(), "type": "representation", "name": "exr",
           "context": {"asset": "sh010", "subset": "main", "version": 1, "representation": "exr"},
           "files": [{"_id": ObjectId(), "path": "{root[work]}/demo/a.exr", "size": 10, "hash": "h",
                      "sites": [{"name": "studio", "created_dt": NOW}, {"name": "gdrive"}]}]}
    target = {"doc": doc, "context": doc["context"], "file": doc["files"][0],
              "entry": doc["files"][0]["sites"][1]}[where]
    target[key] = value
    return doc


#: Documents that crashed a store before they were fixed (found by the property below).
KNOWN_BAD = {
    "date beyond year 9999 (OverflowError)": _damaged("entry", "created_dt", 1e20),
    "date beyond time_t (OSError)": _damaged("entry", "sitesync_lease_until", 2**62),
    "infinite date": _damaged("entry", "last_failed_dt", float("inf")),
    "NaN date": _damaged("entry", "sitesync_next_attempt_dt", float("nan")),
    "size beyond 64 bits": _damaged("file", "size", 2**70),
    "size as 40 digits of text": _damaged("file", "size", "9" * 40),
    "tries beyond 64 bits": _damaged("entry", "tries", 10**30),
    "priority as a huge float": _damaged("entry", "priority", 1e300),
    "version beyond 64 bits": _damaged("context", "version", 2**70),
    "lease owner as a list": _damaged("entry", "sitesync_lease_owner", [1, 2]),
    "checksum as an object": _damaged("entry", "sitesync_checksum", {"a": 1}),
}


@pytest.mark.parametrize("name", sorted(KNOWN_BAD))
def test_known_bad_documents_are_stored_or_refused_by_name(project, name):
    store, _ = project
    doc = KNOWN_BAD[name]
    try:
        stored = [store.insert_document(PROJECT, doc)]
    except DocumentError as exc:
        assert _named(exc, doc), exc
        stored = []
    _reads_work(store, stored)


def test_insert_document_stores_or_refuses_by_name_and_reads_keep_working(project, capsys):
    store, settings_path = project
    stored: list[str] = []
    refused = 0

    @_SETTINGS
    @given(doc=documents(), sort_key=st.sampled_from(SummaryQuery.SORT_KEYS))
    def check(doc: dict[str, Any], sort_key: str) -> None:
        nonlocal refused
        try:
            stored.append(store.insert_document(PROJECT, doc))
        except DocumentError as exc:
            refused += 1
            assert _named(exc, doc), exc
        _reads_work(store, stored[-3:], (sort_key,))

    check()
    assert stored and refused, (len(stored), refused)  # both paths were exercised
    _reads_work(store, stored)
    _cli_status_works(settings_path, capsys)
    report("bad_documents", store=store.kind, stored=len(stored), refused=refused)


def test_documents_written_straight_into_mongodb_are_skipped_not_fatal(request, tmp_path, monkeypatch,
                                                                       capsys):
    """OpenPype, a script or a hand edit writes into the collection directly."""
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "data"))
    from app.store.mongo import MongoStore

    uri, name = request.getfixturevalue("mongo_uri"), f"raw_{ObjectId()}"
    store = MongoStore(uri, database=name)
    settings_path = tmp_path / "settings.json"
    write_settings(settings_path, {"studio": tmp_path / "s", "gdrive": tmp_path / "g"},
                   database_url=uri, database_name=name)
    collection = store._db[PROJECT]  # the raw collection, as OpenPype sees it
    try:
        store.ensure_project(PROJECT)
        store.insert_representation(make_repre(sites={"studio": {"created_dt": NOW}, "gdrive": {}}))
        written: list[str] = []

        @_SETTINGS
        @given(doc=documents(), sort_key=st.sampled_from(SummaryQuery.SORT_KEYS))
        def check(doc: dict[str, Any], sort_key: str) -> None:
            if not _bson_safe(doc):
                return
            collection.insert_one(doc)
            written.append(str(doc["_id"]))
            try:
                store.get_representation(PROJECT, str(doc["_id"]))
            except DocumentError as exc:
                assert _named(exc, doc), exc
            _reads_work(store, written[-3:], (sort_key,))

        check()
        assert written
        _reads_work(store, written)
        _cli_status_works(str(settings_path), capsys)
        report("raw_documents", store="mongo", written=len(written))
    finally:
        store.close()


def test_known_bad_documents_written_straight_into_mongodb_are_skipped(mongo_uri):
    from app.store.mongo import MongoStore

    store = MongoStore(mongo_uri, database=f"rawknown_{ObjectId()}")
    try:
        store.ensure_project(PROJECT)
        store.insert_representation(make_repre(sites={"studio": {"created_dt": NOW}, "gdrive": {}}))
        written = []
        for doc in KNOWN_BAD.values():
            if _bson_safe(doc):
                copy = dict(doc, _id=ObjectId())
                store._db[PROJECT].insert_one(copy)
                written.append(str(copy["_id"]))
        assert len(written) >= 8
        _reads_work(store, written)
    finally:
        store.close()
