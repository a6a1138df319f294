"""Work found ahead (app.policy.backlog): windows per direction, order, expiry."""

from __future__ import annotations

import time

import pytest

from app.model import Direction, WorkItem
from app.policy import backlog
from app.policy.backlog import WorkBacklog

UP, DOWN = Direction.UPLOAD, Direction.DOWNLOAD
PAIR = ("demo", "studio", "remote")


def _item(n: int, direction: Direction = UP, priority: int = 50) -> WorkItem:
    source, target = ("studio", "remote") if direction is UP else ("remote", "studio")
    return WorkItem(project="demo", repre_id=f"r{n // 10}", file_id=f"f{n}", path=f"/f{n}",
                    size=1, hash="h", source_site=source, target_site=target,
                    direction=direction, priority=priority)


def _ids(items: list[WorkItem]) -> list[str]:
    return [i.file_id for i in items]


def test_take_gives_each_direction_its_window_in_the_order_found():
    kept = WorkBacklog()
    items = [_item(n, UP if n % 3 else DOWN) for n in range(30)]
    kept.keep(PAIR, items, query_s=0.01)
    first = kept.take(PAIR, {UP: 4, DOWN: 2}, exclude=())
    assert _ids(first) == ["f1", "f2", "f4", "f5", "f0", "f3"]
    assert _ids(kept.take(PAIR, {DOWN: 3}, exclude=())) == ["f6", "f9", "f12"]
    assert _ids(kept.take(PAIR, {UP: 2}, exclude=())) == ["f7", "f8"]
    assert len(kept) == 30 - 11


def test_more_urgent_items_come_first_across_directions():
    kept = WorkBacklog()
    kept.keep(PAIR, [_item(1, UP, priority=50), _item(2, DOWN, priority=90),
                     _item(3, UP, priority=50)], query_s=0.01)
    assert _ids(kept.take(PAIR, {UP: 5, DOWN: 5}, exclude=())) == ["f2", "f1", "f3"]
    assert len(kept) == 0 and kept.take(PAIR, {UP: 1}, exclude=()) == []


def test_items_already_in_hand_are_dropped_not_taken():
    kept = WorkBacklog()
    kept.keep(PAIR, [_item(n) for n in range(5)], query_s=0.01)
    taken = kept.take(PAIR, {UP: 2}, exclude={("r0", "f0"), ("r0", "f2")})
    assert _ids(taken) == ["f1", "f3"]
    assert _ids(kept.take(PAIR, {UP: 5}, exclude=())) == ["f4"]


def test_a_one_direction_query_adds_without_duplicates_and_a_full_one_replaces():
    kept = WorkBacklog()
    kept.keep(PAIR, [_item(1), _item(2)], query_s=0.01)
    kept.keep(PAIR, [_item(2), _item(3, DOWN)], query_s=0.01, replace=False)
    assert len(kept) == 3
    kept.keep(PAIR, [_item(7)], query_s=0.01)
    assert _ids(kept.take(PAIR, {UP: 5, DOWN: 5}, exclude=())) == ["f7"]


def test_what_is_kept_expires(monkeypatch):
    kept = WorkBacklog()
    kept.keep(PAIR, [_item(1)], query_s=0.0)  # kept MIN_KEEP_S
    now = time.monotonic()
    monkeypatch.setattr(backlog.time, "monotonic", lambda: now + backlog.MIN_KEEP_S + 0.01)
    assert kept.take(PAIR, {UP: 1}, exclude=()) == [] and len(kept) == 0


def test_a_dry_direction_is_remembered_for_a_while(monkeypatch):
    kept = WorkBacklog()
    kept.mark_dry(PAIR, DOWN, query_s=0.0)
    assert kept.is_dry(PAIR, DOWN) and not kept.is_dry(PAIR, UP)
    now = time.monotonic()
    monkeypatch.setattr(backlog.time, "monotonic", lambda: now + backlog.MIN_KEEP_S + 0.01)
    assert not kept.is_dry(PAIR, DOWN)


@pytest.mark.parametrize("query_s, expected", [(0.0, 1.0), (0.2, 4.0), (10.0, 30.0)])
def test_keep_time_follows_what_the_query_cost(query_s, expected):
    assert backlog.keep_for(query_s) == pytest.approx(expected)
