"""SqliteStore specifics the contract cannot see: schema, pragmas, plans, processes, errors."""

from __future__ import annotations

import gc
import multiprocessing
import random
import sqlite3
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId

import app.store.sqlite as sqlite_store
from app.errors import DocumentError, StoreUnavailableError
from app.model import DEFAULT_PRIORITY, FileRecord, SiteState, Status, SummaryQuery
from app.status import combine, site_progress, site_status
from app.store.sqlite import SCHEMA_VERSION, SqliteStore
from tests.helpers.seed import T0, later, make_repre

RETRY = 3


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sitesync.db"


@pytest.fixture
def store(db_path: Path):
    with SqliteStore(db_path) as opened:
        yield opened


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# -- schema and pragmas -------------------------------------------------------------------------


def test_schema_version_is_set_and_reopening_keeps_the_data(db_path: Path) -> None:
    first = SqliteStore(db_path)
    first.ensure_project("demo", "dm")
    repre_id = first.insert_representation(make_repre())
    first.close()
    first.close()  # twice is fine
    assert _raw(db_path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5

    with SqliteStore(db_path) as second:
        assert [(p.name, p.code, p.representations) for p in second.list_projects()] == [
            ("demo", "dm", 1)]
        assert second.get_representation("demo", repre_id).files[0].site("studio").created_dt == T0


def test_a_version_1_database_gains_the_event_log_and_keeps_its_data(db_path: Path) -> None:
    from app.store.sqlite import _MIGRATIONS

    conn = _raw(db_path)
    for statement in _MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO projects (name, code, created_at) VALUES ('demo', 'dm', 0)")
    conn.close()
    with SqliteStore(db_path) as store:
        assert [p.name for p in store.list_projects()] == ["demo"]
        info = store.event_log_info()
        assert (info.pruned_through, info.last_id) == (0, 0) and len(info.log_id) == 32
        store.append_event("integrity_alert", "demo", T0, site="studio")
        assert [e.type for e in store.read_events(0)] == ["integrity_alert"]


def test_wal_mode_and_connection_pragmas(store: SqliteStore, db_path: Path) -> None:
    conn = store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    # WAL is a property of the file: a plain connection sees it too.
    assert _raw(db_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_each_thread_gets_its_own_connection_and_closes_it_after_close(
    store: SqliteStore,
) -> None:
    seen: list[sqlite3.Connection] = []
    closed = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        seen.append(store._conn())
        closed.wait(10)
        try:
            store.list_projects()
        except StoreUnavailableError as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    while not seen:
        time.sleep(0.01)
    mine = store._conn()
    assert seen[0] is not mine
    store.close()
    closed.set()
    thread.join()
    assert len(errors) == 1 and "closed" in str(errors[0])
    for conn in (mine, seen[0]):  # the worker's own call closed its connection
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    with pytest.raises(StoreUnavailableError, match="closed"):
        store.list_projects()


def test_closing_while_another_thread_is_mid_query_does_not_crash(store: SqliteStore) -> None:
    """The tray closes the store (settings changed, quit) while its background thread may
    be running a summary query; closing that connection under it used to crash Python."""
    started = threading.Event()
    outcome: list[object] = []

    def long_query() -> None:
        conn = store._conn()
        started.set()
        try:
            outcome.append(conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000)"
                " SELECT COUNT(*) FROM n").fetchone()[0])
        except sqlite3.Error as exc:
            outcome.append(exc)

    thread = threading.Thread(target=long_query)
    thread.start()
    started.wait(5)
    store.close()
    thread.join(60)
    assert outcome == [3000000]


def test_a_finished_threads_connection_is_let_go(store: SqliteStore) -> None:
    def connections() -> int:
        # SQLite keeps a closed connection's descriptor for reuse while the process holds
        # locks on the file, so count the Python objects, which close the file when freed.
        # type(), not isinstance(): isinstance on a dead weakref.proxy some earlier test
        # left in the heap raises ReferenceError.
        return sum(1 for obj in gc.get_objects() if issubclass(type(obj), sqlite3.Connection))

    store.list_projects()
    gc.collect()
    before = connections()
    thread = threading.Thread(target=store.list_projects)
    thread.start()
    thread.join()
    del thread
    gc.collect()
    assert connections() == before  # freed, so closed, with its thread's locals


def test_memory_database_is_refused() -> None:
    with pytest.raises(ValueError, match="file path"):
        SqliteStore(":memory:")


# -- query plans --------------------------------------------------------------------------------


def _plan(store: SqliteStore, sql: str, params: dict) -> list[str]:
    return [row[3] for row in store._conn().execute("EXPLAIN QUERY PLAN " + sql, params)]


def _seed_many(store: SqliteStore, count: int, files: int = 2) -> None:
    """Bulk seed in one transaction (the public insert commits per representation)."""
    kinds = [
        {"studio": {"created_dt": T0}, "gdrive": {"created_dt": T0}},
        {"studio": {"created_dt": T0}, "gdrive": {}},
        {"studio": {"created_dt": T0}, "gdrive": {"tries": 3, "error": "quota"}},
        {"studio": {}, "gdrive": {"created_dt": T0, "priority": 80}},
        {"studio": {"created_dt": T0}, "gdrive": {"paused": True}},
    ]
    store.ensure_project("demo")
    with store._write() as conn:
        for i in range(count):
            repre = make_repre(asset=f"a{i:05d}", files=files, sites=kinds[i % len(kinds)])
            store._insert(conn, repre, sqlite_store._Extras())


def test_find_work_uses_the_queued_index_not_a_scan(store: SqliteStore) -> None:
    _seed_many(store, 50)
    sql, params = sqlite_store._find_work_query("demo", "studio", "gdrive", RETRY, T0, 10)
    plan = _plan(store, sql, params)
    assert any("tgt USING INDEX file_sites_queued" in step for step in plan), plan
    assert any(step.startswith("SEARCH src USING") for step in plan), plan
    assert not [step for step in plan if step.startswith("SCAN")], plan


def test_claim_and_summary_search_by_index(store: SqliteStore) -> None:
    _seed_many(store, 50)
    claim_params = {"owner": "e", "lease_until": 1.0, "target": "gdrive", "source": "studio",
                    "project": "demo", "repre_id": "x", "file_id": "y", "tries": 0, "now": 0.0}
    claim_plan = _plan(store, sqlite_store._CLAIM_SQL, claim_params)
    assert not [step for step in claim_plan if step.startswith("SCAN")], claim_plan

    sql = sqlite_store._summary_sql(True, 1, "asset", False)
    params = {"project": "demo", "active": "studio", "remote": "gdrive", "retry_cnt": RETRY,
              "now": 0.0, "default_priority": 50, "needle": "a", "raw_text": "a",
              "limit": 10, "offset": 0, "rank0": 1}
    plan = _plan(store, sql, params)
    base_scans = [s for s in plan if s.split(" ")[:2] in (
        ["SCAN", "r"], ["SCAN", "f"], ["SCAN", "a"], ["SCAN", "b"], ["SCAN", "files"],
        ["SCAN", "file_sites"], ["SCAN", "representations"])]
    assert not base_scans, plan
    assert any("representations_by_project" in step for step in plan), plan


def _base_scans(plan: list[str]) -> list[str]:
    """Steps reading a whole table (or its index) of the store."""
    tables = {"r", "f", "a", "b", "x", "y", "t", "fs", "ur", "files", "file_sites",
              "representations", "repre_sites"}
    return [s for s in plan if s.startswith("SCAN ") and s.split(" ")[1] in tables]


def test_summary_pages_walk_indexes_not_the_project(store: SqliteStore) -> None:
    """At a million representations a scan or a sort of every representation is seconds:
    the first page walks the sort column's index, the unsettled representations come from
    their partial index, the counts from repre_sites."""
    _seed_many(store, 50)
    params = {"project": "demo", "active": "studio", "remote": "gdrive", "retry_cnt": RETRY,
              "now": 0.0, "default_priority": 50, "limit": 10, "offset": 0, "small": "gdrive",
              "large": "studio", "unsettled": "[]", "seqs": "[1, 2]"}
    for key, index in (("asset", "representations_by_asset"), ("subset", "representations_by_subset"),
                       ("version", "representations_by_version"),
                       ("representation", "representations_by_name"),
                       ("created", "representations_by_project")):
        for descending in (False, True):
            for sql in (sqlite_store._page_first_sql(False, key, descending),
                        sqlite_store._settled_walk_sql(False, key, descending)):
                plan = _plan(store, sql, params)
                assert any(f"USING COVERING INDEX {index}" in step for step in plan), plan
                assert not _base_scans(plan), plan
    unsettled = _plan(store, sqlite_store._UNSETTLED_RANKS_SQL, params)
    assert any("USING INDEX file_sites_unsettled" in step for step in unsettled), unsettled
    counts = _plan(store, sqlite_store._PAIR_COUNTS_SQL, params)
    assert not _base_scans(counts) and not _base_scans(unsettled), counts


# -- several processes --------------------------------------------------------------------------


def _claim_in_process(path: str, owner: str, start, results) -> None:
    """Runs in a spawned process: claim whatever is left until nothing is."""
    won = []
    with SqliteStore(path) as store:
        start.wait(60)
        while True:
            work = store.find_work("demo", "studio", "gdrive", RETRY, T0, limit=4)
            if not work:
                break
            for item in work:
                if store.claim(item, owner, later(600), T0) is not None:
                    won.append((item.repre_id, item.file_id))
    results.put((owner, won))


def test_processes_claim_each_file_exactly_once(db_path: Path) -> None:
    with SqliteStore(db_path) as setup:
        setup.ensure_project("demo")
        for i in range(12):
            setup.insert_representation(make_repre(asset=f"p{i}", files=5))
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(target=_claim_in_process, args=(str(db_path), f"proc{i}", start, results))
        for i in range(3)
    ]
    for worker in workers:
        worker.start()
    start.set()
    outcome = dict(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    claimed = [key for won in outcome.values() for key in won]
    assert len(claimed) == 60 and len(set(claimed)) == 60
    with SqliteStore(db_path) as check:
        assert check.find_work("demo", "studio", "gdrive", RETRY, T0) == []
        owners = {
            f.site("gdrive").lease_owner
            for repre_id in {r for r, _ in claimed}
            for f in check.get_representation("demo", repre_id).files
        }
        assert owners <= set(outcome) and None not in owners


def test_a_commit_by_another_connection_wakes_a_waiter(store: SqliteStore, db_path: Path) -> None:
    """data_version path: a write the in-process notifier never hears about."""
    store.ensure_project("demo")
    marker = store.change_marker()
    assert store.wait_for_change(marker, 0.1) is False

    def foreign_write() -> None:
        _raw(db_path).execute("UPDATE projects SET code = 'x'")

    timer = threading.Timer(0.2, foreign_write)
    timer.start()
    started = time.monotonic()
    assert store.wait_for_change(marker, 10) is True
    assert time.monotonic() - started < 3
    timer.join()


def test_a_write_that_changes_nothing_wakes_nobody(store: SqliteStore) -> None:
    store.ensure_project("demo", "dm")
    marker = store.change_marker()
    store.ensure_project("demo", "dm")
    assert store.wait_for_change(marker, 0.15) is False


# -- errors -------------------------------------------------------------------------------------


def test_a_folder_path_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError) as excinfo:
        SqliteStore(tmp_path)
    text = str(excinfo.value)
    assert f"cannot open the SiteSync database {tmp_path}" in text and "Fix:" in text


def test_a_path_under_a_file_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(StoreUnavailableError, match="cannot open the SiteSync database"):
        SqliteStore(blocker / "sitesync.db")


def test_a_file_that_is_not_a_database_gives_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_text("these are not the pages you are looking for\n" * 200)
    with pytest.raises(StoreUnavailableError) as excinfo:
        SqliteStore(junk)
    assert "is not a SiteSync database" in str(excinfo.value)
    assert "move this one away" in str(excinfo.value)


def test_a_newer_schema_is_refused(db_path: Path) -> None:
    SqliteStore(db_path).close()
    _raw(db_path).execute("PRAGMA user_version = 99")
    with pytest.raises(StoreUnavailableError, match="newer than this SiteSync"):
        SqliteStore(db_path)


def test_a_held_write_lock_becomes_store_unavailable(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_S", 0.2)
    with SqliteStore(db_path) as store:
        other = _raw(db_path)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreUnavailableError, match="stayed locked"):
                store.ensure_project("demo")
        finally:
            other.execute("ROLLBACK")
        store.ensure_project("demo")  # and it recovers


def test_duplicates_are_refused_as_document_errors(store: SqliteStore) -> None:
    repre = make_repre()
    store.insert_representation(repre)
    with pytest.raises(DocumentError, match="already exists"):
        store.insert_representation(repre)
    twice = make_repre()
    twice = twice.__class__(**{**twice.__dict__, "files": (twice.files[0], twice.files[0])})
    with pytest.raises(DocumentError, match="file _id"):
        store.insert_representation(twice)
    assert store.count_representations("demo") == 1


def test_unknown_project_is_a_key_error(store: SqliteStore) -> None:
    with pytest.raises(KeyError):
        store.count_representations("nope")
    with pytest.raises(KeyError):
        store.set_project_paused("nope", True)


# -- documents ----------------------------------------------------------------------------------


def _openpype_doc() -> dict:
    naive = datetime(2024, 3, 1, 10, 0, 0)
    return {
        "_id": ObjectId(),
        "type": "representation",
        "schema": "openpype:representation-2.0",
        "parent": ObjectId(),
        "name": "exr",
        "context": {"asset": "sh010", "subset": "renderMain", "version": 4,
                    "representation": "exr", "root": {"work": "/mnt/work"}},
        "data": {"path": "/mnt/work/x.exr", "template": "{root[work]}/{asset}",
                 "published": naive, "source_id": ObjectId()},
        "dependencies": [],
        "files": [{
            "_id": ObjectId(), "path": "{root[work]}/demo/x.1001.exr", "size": 10,
            "hash": "x,1001,exr|1,0|10", "vendor": {"checksum": "md5:00"},
            "sites": [
                {"name": "studio", "created_dt": naive, "id": "x.1001.exr", "note": "kept"},
                {"name": "gdrive", "progress": "", "tries": "2", "error": "quota",
                 "custom": {"when": naive}},
            ],
        }],
    }


def test_imported_document_keeps_fields_without_columns(db_path: Path) -> None:
    doc = _openpype_doc()
    original = repr(doc)
    with SqliteStore(db_path) as store:
        repre_id = store.insert_document("demo", doc)
    assert repr(doc) == original  # the caller's document is not touched

    with SqliteStore(db_path) as store:  # and it all survives reopening
        out = store.get_document("demo", repre_id)
    aware = datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC)
    assert out["_id"] == str(doc["_id"]) and out["parent"] == str(doc["parent"])
    assert out["schema"] == doc["schema"] and out["type"] == "representation"
    assert out["dependencies"] == []
    assert out["data"] == {**doc["data"], "published": aware}
    assert out["context"] == doc["context"]
    file_doc = out["files"][0]
    assert file_doc["vendor"] == {"checksum": "md5:00"}
    studio, gdrive = file_doc["sites"]
    assert studio == {"name": "studio", "created_dt": aware, "id": "x.1001.exr", "note": "kept"}
    # OpenPype's text `tries` is read as a number and `progress: ""` as no progress.
    assert gdrive == {"name": "gdrive", "tries": 2, "error": "quota",
                      "custom": {"when": aware}}


def test_reset_drops_the_entry_extras_like_openpype_replacing_the_entry(
    store: SqliteStore,
) -> None:
    repre_id = store.insert_document("demo", _openpype_doc())
    store.reset_site("demo", repre_id, "gdrive")
    gdrive = store.get_document("demo", repre_id)["files"][0]["sites"][1]
    assert gdrive == {"name": "gdrive"}


def test_document_without_id_gets_one(store: SqliteStore) -> None:
    doc = _openpype_doc()
    del doc["_id"]
    repre_id = store.insert_document("demo", doc)
    assert ObjectId.is_valid(repre_id)
    assert store.get_representation("demo", repre_id).created_dt is not None


# -- claims -------------------------------------------------------------------------------------


def test_a_stale_item_cannot_spend_a_try_someone_already_counted(store: SqliteStore) -> None:
    store.insert_representation(make_repre(files=1))
    stale = store.find_work("demo", "studio", "gdrive", RETRY, T0)[0]
    claim = store.claim(stale, "e1", later(60), T0)
    assert store.record_failure(claim, "boom", T0, None)
    assert store.claim(stale, "e2", later(60), T0) is None  # tries moved 0 -> 1
    fresh = store.find_work("demo", "studio", "gdrive", RETRY, T0)[0]
    assert fresh.tries == 1 and store.claim(fresh, "e2", later(60), T0) is not None


def test_release_clears_progress_so_the_file_is_queued_not_in_progress(
    store: SqliteStore,
) -> None:
    repre_id = store.insert_representation(make_repre(files=1))
    item = store.find_work("demo", "studio", "gdrive", RETRY, T0)[0]
    claim = store.claim(item, "e1", later(60), T0)
    store.record_progress(claim, 0.4)
    store.release(claim)
    state = store.get_representation("demo", repre_id).files[0].site("gdrive")
    assert state.progress is None and state.lease_owner is None
    assert site_status(state, RETRY, T0) is Status.QUEUED


# -- summary ------------------------------------------------------------------------------------


@pytest.mark.parametrize("created", [None, T0])
@pytest.mark.parametrize("progress", [None, -0.5, 0.0, 0.25, 1.0, 1.5])
def test_progress_sql_is_status_site_progress(created, progress) -> None:
    conn = sqlite3.connect(":memory:")
    expression = sqlite_store._side_progress_sql("a")
    sql = f"SELECT {expression} FROM (SELECT ? AS created_dt, ? AS progress) AS a"
    got = conn.execute(sql, (sqlite_store._ts(created), progress)).fetchone()[0]
    assert got == site_progress(SiteState("x", created_dt=created, progress=progress))


def _random_state(rng: random.Random, name: str) -> SiteState | None:
    if rng.random() < 0.15:
        return None
    lease = rng.choice([None, None, later(-30), later(30)])
    return SiteState(
        name=name,
        created_dt=rng.choice([None, None, later(rng.randint(0, 99))]),
        tries=rng.choice([0, 0, 1, 2, 3, 5]),
        error=rng.choice([None, "boom", "quota"]),
        last_failed_dt=rng.choice([None, later(rng.randint(0, 99))]),
        progress=rng.choice([None, None, 0.5, 0.9]),
        paused=rng.random() < 0.1,
        priority=rng.choice([None, None, 10, 70, 90]),
        lease_owner="e1" if lease else None,
        lease_until=lease,
        permanent=rng.random() < 0.1,
    )


def _expected_row(files: list[FileRecord]) -> dict:
    sides = {}
    for side in ("studio", "gdrive"):
        states = [f.site(side) for f in files]
        stamps = [s.created_dt or s.last_failed_dt for s in states if s]
        sides[side] = (
            combine(site_status(s, RETRY, T0) for s in states),
            pytest.approx(sum(site_progress(s) for s in states) / len(states)),
            max((d for d in stamps if d), default=None),
            sum(s.tries for s in states if s),
        )
    priority = max(
        next((s.priority for s in (f.site("studio"), f.site("gdrive"))
              if s and s.priority is not None), DEFAULT_PRIORITY)
        for f in files
    )
    status = combine((sides["studio"][0], sides["gdrive"][0]))
    return {"active": sides["studio"], "remote": sides["gdrive"], "priority": priority,
            "status": status}


def test_summary_agrees_with_app_status_on_random_states(store: SqliteStore) -> None:
    rng = random.Random(20240301)
    expected = {}
    for i in range(150):
        base = make_repre(asset=f"r{i:03d}", files=rng.randint(1, 4))
        files = tuple(
            FileRecord(f.id, f.path, f.size, f.hash, tuple(
                s for s in (_random_state(rng, "studio"), _random_state(rng, "gdrive")) if s))
            for f in base.files
        )
        repre = base.__class__(**{**base.__dict__, "files": files})
        store.insert_representation(repre)
        if any(f.sites for f in files):
            expected[repre.id] = _expected_row(list(files))

    page = store.summary_page("demo", SummaryQuery("studio", "gdrive", limit=1000), RETRY, T0)
    assert page.total == len(expected) == len(page.rows)
    for row in page.rows:
        want = expected[row.repre_id]
        for got, side in ((row.active, want["active"]), (row.remote, want["remote"])):
            assert (got.status, got.progress, got.updated_dt, got.tries) == side, row
        assert row.priority == want["priority"] and row.status is want["status"], row
    counts: dict[Status, int] = {}
    for want in expected.values():
        counts[want["status"]] = counts.get(want["status"], 0) + 1
    assert page.status_counts == counts


@pytest.mark.parametrize("key", SummaryQuery.SORT_KEYS)
@pytest.mark.parametrize("descending", [False, True])
def test_paging_visits_every_row_once_for_every_sort_key(
    store: SqliteStore, key: str, descending: bool
) -> None:
    """Many equal sort values (status, priority, size): the seq tie-break keeps pages apart."""
    _seed_many(store, 400)
    seen: list[str] = []
    offset = 0
    while True:
        query = SummaryQuery("studio", "gdrive", sort_key=key, descending=descending,
                             offset=offset, limit=70)
        page = store.summary_page("demo", query, RETRY, T0)
        seen += [row.repre_id for row in page.rows]
        if not page.rows:
            break
        offset += 70
    assert len(seen) == len(set(seen)) == page.total == 400
    assert sum(page.status_counts.values()) == 400


def test_larger_project_sanity(store: SqliteStore) -> None:
    """A few thousand representations page correctly (no timing asserted; the statement
    aggregates every row, so its cost grows linearly with the project)."""
    _seed_many(store, 3000)
    query = SummaryQuery("studio", "gdrive", statuses=frozenset({Status.FAILED}),
                         sort_key="priority", descending=True, limit=25)
    page = store.summary_page("demo", query, RETRY, T0)
    assert page.total == 600 and len(page.rows) == 25
    assert all(row.status is Status.FAILED for row in page.rows)
    assert page.status_counts == {Status.PAUSED: 600, Status.FAILED: 600, Status.QUEUED: 1200,
                                  Status.SYNCED: 600}
    text = store.summary_page("demo", SummaryQuery("studio", "gdrive", text="A0299"), RETRY, T0)
    assert [row.asset for row in text.rows] == ["a02990", "a02991", "a02992", "a02993",
                                                "a02994", "a02995", "a02996", "a02997",
                                                "a02998", "a02999"]


def test_text_filter_folds_unicode_case(store: SqliteStore) -> None:
    store.insert_representation(make_repre(asset="Élan"))
    page = store.summary_page("demo", SummaryQuery("studio", "gdrive", text="éLAN"), RETRY, T0)
    assert [row.asset for row in page.rows] == ["Élan"]


def test_naive_datetimes_are_taken_as_utc(store: SqliteStore) -> None:
    repre_id = store.insert_representation(make_repre(files=1))
    item = store.find_work("demo", "studio", "gdrive", RETRY, T0.replace(tzinfo=None))[0]
    claim = store.claim(item, "e1", (T0 + timedelta(seconds=60)).replace(tzinfo=None), T0)
    assert claim is not None and claim.lease_until == later(60)
    assert store.record_success(claim, "id", None, later(1).replace(tzinfo=None))
    got = store.get_representation("demo", repre_id).files[0].site("gdrive").created_dt
    assert got == later(1)


# -- the summary's fast paths against the full aggregation ----------------------------------------


def _reference_page(store: SqliteStore, query: SummaryQuery, now: datetime) -> tuple:
    """The page as the one-statement aggregation of every representation (_summary_sql)
    gives it: the reference the index-first and settled paths must equal."""
    ranks = sorted(status.rank for status in query.statuses)
    sql = sqlite_store._summary_sql(bool(query.text.strip()), len(ranks), query.sort_key,
                                    query.descending)
    params = sqlite_store._summary_params("demo", query, RETRY, now)
    rows = store._conn().execute(sql, params).fetchall()
    counts = {rank: rows[0][f"n{rank}"] for rank in sqlite_store._BY_RANK}
    return (
        tuple(sqlite_store._summary_row(r) for r in rows if r["seq"] is not None),
        sum(n for rank, n in counts.items() if not ranks or rank in ranks),
        {sqlite_store._BY_RANK[rank]: n for rank, n in sorted(counts.items()) if n},
    )


def _random_entry(rng: random.Random) -> dict | None:
    """Any entry a site can hold (or none): available, queued, failed, leased, moving
    under OpenPype, paused (available or not), permanent, staged."""
    return rng.choice([
        None, {"created_dt": T0}, {"created_dt": T0, "paused": True}, {}, {"paused": True},
        {"tries": 3, "error": "quota", "last_failed_dt": later(2)}, {"tries": 1},
        {"lease_owner": "e", "lease_until": later(60)}, {"lease_owner": "e", "lease_until": T0},
        {"progress": 0.4}, {"permanent": True, "error": "gone"}, {"created_dt": T0, "tries": 5},
        {"staged_dt": T0, "checksum": "x"}, {"priority": 90}, {"created_dt": later(3), "priority": 10},
    ])


def test_fast_summary_paths_equal_the_full_aggregation(store: SqliteStore) -> None:
    """Randomised: every sort, status filter, offset and both pairs, with and without
    counts, at two times (a lease running and expired): the same rows, total and counts
    as aggregating every representation through app.status."""
    rng = random.Random(7)
    store.ensure_project("demo")
    store.ensure_project("other")
    with store._write() as conn:
        for i in range(120):
            files = []
            for position in range(rng.choice([1, 1, 2, 3])):
                sites = tuple(
                    SiteState(name=name, **entry) for name in ("studio", "gdrive", "dropbox")
                    if (entry := _random_entry(rng)) is not None)
                files.append(FileRecord(id=str(ObjectId()), path=f"{{root[work]}}/f{i}_{position}",
                                        size=rng.randint(0, 9), sites=sites))
            project = "other" if i % 9 == 0 else "demo"
            repre = make_repre(project=project, asset=rng.choice(["a", "B", "c", "a"]),
                               subset=f"s{i % 4}", version=rng.choice([1, 2, 3]))
            store._insert(conn, replace(repre, files=tuple(files)), sqlite_store._Extras())
    filters = [frozenset(), frozenset({Status.FAILED}), frozenset({Status.SYNCED}),
               frozenset({Status.NOT_AVAILABLE, Status.QUEUED}),
               frozenset({Status.PAUSED, Status.IN_PROGRESS, Status.SYNCED})]
    checked = 0
    for now in (later(1), later(120)):
        for pair in (("studio", "gdrive"), ("gdrive", "dropbox"), ("dropbox", "dropbox")):
            for key in ("asset", "subset", "version", "representation", "created", "status"):
                for statuses in filters:
                    for descending, offset, limit in ((False, 0, 7), (True, 5, 11), (False, 60, 500),
                                                      (True, 0, 0), (False, 900, 5)):
                        query = SummaryQuery(*pair, statuses=statuses, sort_key=key,
                                             descending=descending, offset=offset, limit=limit)
                        rows, total, counts = _reference_page(store, query, now)
                        page = store.summary_page("demo", query, RETRY, now)
                        assert (page.rows, page.total, page.status_counts) == (rows, total, counts), (
                            now, pair, key, statuses, descending, offset)
                        lean = store.summary_page("demo", replace(query, with_counts=False), RETRY, now)
                        assert (lean.rows, lean.total) == (rows, total)
                        checked += 1
    assert checked == 2 * 3 * 6 * 5 * 5



def test_recording_a_success_costs_the_same_in_a_large_representation(store: SqliteStore) -> None:
    """The representation_ready check runs on every success: it must probe indexes, not
    walk the representation, or syncing a 100,000-file sequence is quadratic (the walk
    passes every file already synced before it finds one still queued)."""
    store.ensure_project("demo")

    def steps_to_record_the_next_to_last(files: int) -> int:
        repre_id = store.insert_representation(make_repre(
            asset=f"a{files}", files=files, sites={"studio": {"created_dt": T0}, "gdrive": {}}))
        items = [i for i in store.find_work("demo", "studio", "gdrive", 3, T0, limit=files + 10)
                 if i.repre_id == repre_id]
        claims = store.claim_many(items, "e1", T0 + timedelta(seconds=60), T0)
        for claim in claims[:-2]:
            assert store.record_success(claim, "id", "sha256:ab", T0)
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        conn = store._conn()
        conn.set_progress_handler(count, 100)
        try:
            assert store.record_success(claims[-2], "id", "sha256:ab", T0)
        finally:
            conn.set_progress_handler(None, 100)
        return steps[0]

    small, large = steps_to_record_the_next_to_last(20), steps_to_record_the_next_to_last(3000)
    assert large < 3 * small + 50, (small, large)
