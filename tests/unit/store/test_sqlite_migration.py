"""A database made by the first SiteSync release (schema 1) opens in this one (schema 2:
"when complete" entries; 3: the event log; 4: sort indexes and the per-representation
site table) with every row intact and the new columns at their defaults."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from app.model import SummaryQuery
from app.store import sqlite as sqlite_store
from app.store.sqlite import SCHEMA_VERSION, SqliteStore
from tests.helpers.seed import T0, later, make_repre


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_an_older_database_is_upgraded_in_place(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statements in sqlite_store._MIGRATIONS[:version]:
        for statement in statements:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("INSERT INTO projects (name, created_at) VALUES ('demo', 0)")
    conn.execute("INSERT INTO representations (id, project, context_json) VALUES ('r1', 'demo', '{}')")
    conn.execute("INSERT INTO files (repre_seq, position, id, path, size) VALUES "
                 "(1, 0, 'f1', '{root[work]}/a.exr', 10)")
    conn.execute("INSERT INTO file_sites (file_seq, site, created_dt) VALUES (1, 'studio', ?)",
                 (T0.timestamp(),))
    conn.execute("INSERT INTO file_sites (file_seq, site) VALUES (1, 'local')")
    conn.close()
    with SqliteStore(path) as store:
        assert SCHEMA_VERSION == 5
        assert store.event_log_info().last_id == 0
        file = store.get_file("demo", "r1", "f1")
        assert file.site("studio").created_dt == T0
        local = file.site("local")
        assert not local.atomic and local.staged_dt is None
        assert [w.file_id for w in store.find_work("demo", "local", "studio", 3, T0)] == ["f1"]
        query = SummaryQuery("local", "studio", limit=5)
        fast = store.summary_page("demo", replace(query, with_counts=False), 3, T0)
        assert fast.total == 1 and fast.rows == store.summary_page("demo", query, 3, T0).rows
        store.insert_representation(make_repre(project="demo"))
        assert store.summary_page("demo", replace(query, with_counts=False), 3, T0).total == 2
    check = sqlite3.connect(path)
    assert check.execute("SELECT * FROM repre_sites ORDER BY 1, 2, 3").fetchall() == [
        ("demo", "gdrive", 2, 2), ("demo", "local", 1, 1), ("demo", "studio", 1, 1),
        ("demo", "studio", 2, 2)]
    assert check.execute("PRAGMA user_version").fetchone()[0] == 5
    index_sql = check.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'file_sites_queued'").fetchone()[0]
    assert "staged_dt IS NULL" in index_sql
    check.close()


def test_repre_sites_is_filled_from_version_3_and_kept_by_every_write(tmp_path: Path) -> None:
    """Version 4 fills ``repre_sites`` from the entries already there; from then on the
    triggers keep it, so the fast page (without counts) and the full aggregation (with
    counts) agree on rows and total after inserts, add_site, remove_site and adopt."""
    path = tmp_path / "old.db"
    with SqliteStore(path) as store:
        store.ensure_project("demo")
        ids = [store.insert_representation(make_repre(asset=f"a{i % 3}", sites=sites))
               for i, sites in enumerate([None, {"studio": {"created_dt": T0}}, {"dropbox": {}}] * 3)]
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in ("DROP TRIGGER repre_sites_insert", "DROP TRIGGER repre_sites_delete",
                      "DROP TRIGGER repre_sites_move", "DROP TABLE repre_sites",
                      "DROP INDEX representations_by_asset", "DROP INDEX representations_by_subset",
                      "DROP INDEX representations_by_version", "DROP INDEX representations_by_name",
                      "DROP INDEX file_sites_unsettled"):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    conn.close()

    def agree(store: SqliteStore, pair: tuple[str, str], total: int) -> None:
        for key in ("asset", "subset", "version", "representation", "created"):
            query = SummaryQuery(*pair, sort_key=key, limit=4, offset=1)
            full = store.summary_page("demo", query, 3, later(1))
            fast = store.summary_page("demo", replace(query, with_counts=False), 3, later(1))
            assert (fast.rows, fast.total) == (full.rows, full.total) and full.total == total, key

    with SqliteStore(path) as store:
        agree(store, ("studio", "gdrive"), 6)
        agree(store, ("gdrive", "dropbox"), 6)
        agree(store, ("dropbox", "dropbox"), 3)
        assert store.remove_site("demo", ids[1], "studio") == 2
        agree(store, ("studio", "gdrive"), 5)
        assert store.add_site("demo", ids[1], "gdrive") == 2
        agree(store, ("studio", "gdrive"), 6)
        assert store.remove_site("demo", ids[0], "studio") == 2
        agree(store, ("studio", "gdrive"), 6)  # still on gdrive
        file_id = store.get_representation("demo", ids[2]).files[0].id
        assert store.adopt_file("demo", ids[2], file_id, "studio", "x", "sha256:" + "0" * 64, T0)
        agree(store, ("studio", "gdrive"), 7)
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    rebuilt = check.execute(
        """SELECT r.project, fs.site, r.seq, COUNT(*) FROM file_sites AS fs
           JOIN files AS f ON f.seq = fs.file_seq JOIN representations AS r ON r.seq = f.repre_seq
           GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""").fetchall()
    assert check.execute("SELECT * FROM repre_sites ORDER BY 1, 2, 3").fetchall() == rebuilt
    check.close()
