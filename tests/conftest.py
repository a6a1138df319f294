"""Shared fixtures: a `store` parametrized over every back-end, on real servers.

The `mongo` parameter talks to a real MongoDB-wire server (SecantusDB) over TCP on
127.0.0.1, started once per session in this process; each test gets its own database.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator

import pytest

from app.store.base import Store

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from secantus import SecantusDBServer

    server = SecantusDBServer(
        storage_path=str(tmp_path_factory.mktemp("mongodb")),
        port=0,
        sync_on_commit=True,
        cache_size="256M",
    )
    server.__enter__()
    try:
        yield server.uri
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(params=["sqlite", "mongo"])
def store_factory(
    request: pytest.FixtureRequest, tmp_path
) -> Iterator[Callable[[], Store]]:
    """Opens stores on one fresh backing database; call it again to get a second
    connection (another engine) or to reopen after close."""
    opened: list[Store] = []
    if request.param == "sqlite":
        from app.store.sqlite import SqliteStore

        path = tmp_path / "sitesync.db"

        def factory() -> Store:
            store = SqliteStore(path)
            opened.append(store)
            return store
    else:
        from app.store.mongo import MongoStore

        uri = request.getfixturevalue("mongo_uri")
        database = f"t{next(_db_counter)}_" + re.sub(r"\W", "_", request.node.name)[:40]

        def factory() -> Store:
            store = MongoStore(uri, database=database)
            opened.append(store)
            return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: Callable[[], Store]) -> Store:
    return store_factory()


@pytest.fixture(scope="session")
def sshd() -> Iterator[object]:
    """A real OpenSSH sshd on 127.0.0.1 (tests/sftp_server.py), shared by the session."""
    from tests.sftp_server import SshServer

    server = SshServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
