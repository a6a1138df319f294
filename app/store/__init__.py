"""Stores: where sync state lives. ``open_store`` picks the back-end from settings."""

from __future__ import annotations

from pathlib import Path

from app.store.base import Store

__all__ = ["Store", "open_store"]


def open_store(database_url: str, database_name: str, data_dir: Path) -> Store:
    """The configured store: MongoDB for a `mongodb://` URL, else the embedded SQLite
    file in the data folder (so a fresh machine runs with no database server)."""
    if database_url:
        from app.store.mongo import MongoStore

        return MongoStore(database_url, database=database_name)
    from app.store.sqlite import SqliteStore

    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteStore(data_dir / "sitesync.db")
