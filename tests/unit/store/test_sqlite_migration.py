"""A database made by the first SiteSync release (schema 1) opens in this one (schema 2:
"when complete" entries; 3: the event log) with every row intact and the new columns at
their defaults."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.store import sqlite as sqlite_store
from app.store.sqlite import SCHEMA_VERSION, SqliteStore
from tests.helpers.seed import T0, make_repre


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in sqlite_store._SCHEMA_V1:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO projects (name, created_at) VALUES ('demo', 0)")
    conn.execute("INSERT INTO representations (id, project, context_json) VALUES ('r1', 'demo', '{}')")
    conn.execute("INSERT INTO files (repre_seq, position, id, path, size) VALUES "
                 "(1, 0, 'f1', '{root[work]}/a.exr', 10)")
    conn.execute("INSERT INTO file_sites (file_seq, site, created_dt) VALUES (1, 'studio', ?)",
                 (T0.timestamp(),))
    conn.execute("INSERT INTO file_sites (file_seq, site) VALUES (1, 'local')")
    conn.close()
    with SqliteStore(path) as store:
        assert SCHEMA_VERSION == 3
        assert store.event_log_info().last_id == 0
        file = store.get_file("demo", "r1", "f1")
        assert file.site("studio").created_dt == T0
        local = file.site("local")
        assert not local.atomic and local.staged_dt is None
        assert [w.file_id for w in store.find_work("demo", "local", "studio", 3, T0)] == ["f1"]
        store.insert_representation(make_repre(project="demo"))
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 3
    index_sql = check.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'file_sites_queued'").fetchone()[0]
    assert "staged_dt IS NULL" in index_sql
    check.close()
