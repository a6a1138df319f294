"""Store.record_successes as a back-end without its own version gets it: the single
calls, in order, and when the database fails part-way None for the rest, so the engine
records only those again and never mistakes its own recorded files for claims another
engine took."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from app.errors import StoreUnavailableError
from app.store.base import Store
from app.store.sqlite import SqliteStore
from tests.helpers.seed import T0, later, make_repre

RETRY = 3


class _OneByOne(SqliteStore):
    """A real store that records a batch the default way and loses the database after
    ``healthy`` single writes."""

    def __init__(self, path: Path, healthy: int) -> None:
        super().__init__(path)
        self.healthy = healthy

    def record_successes(self, successes, now):
        return Store.record_successes(self, successes, now)

    def record_success(self, claim, provider_id, checksum, now):
        if self.healthy <= 0:
            raise StoreUnavailableError("database unreachable (test)")
        self.healthy -= 1
        return super().record_success(claim, provider_id, checksum, now)


def _claims(store: SqliteStore, files: int):
    store.ensure_project("demo")
    store.insert_representation(make_repre(files=files))
    items = store.find_work("demo", "studio", "gdrive", RETRY, T0)
    return [store.claim(i, "e1", T0 + timedelta(seconds=60), T0) for i in items]


@pytest.mark.parametrize("healthy", [3, 5])
def test_answers_stop_where_the_database_went_away(tmp_path: Path, healthy: int) -> None:
    store = _OneByOne(tmp_path / "s.db", healthy)
    claims = _claims(store, 5)
    answers = store.record_successes([(c, f"id-{n}", None) for n, c in enumerate(claims)],
                                     later(1))
    assert answers == [True] * healthy + [None] * (5 - healthy)
    recorded = [f.site("gdrive").created_dt is not None
                for f in store.get_representation("demo", claims[0].item.repre_id).files]
    assert recorded == [True] * healthy + [False] * (5 - healthy)
    store.close()


def test_an_error_before_anything_was_recorded_is_raised(tmp_path: Path) -> None:
    store = _OneByOne(tmp_path / "s.db", 0)
    claims = _claims(store, 2)
    with pytest.raises(StoreUnavailableError):
        store.record_successes([(c, "x", None) for c in claims], later(1))
    store.close()
