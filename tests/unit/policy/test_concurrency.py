"""Transfer slots per site and direction, changed while transfers wait for them."""

from __future__ import annotations

import threading
import time

import pytest

from app.engine.transfer import CancelToken
from app.model import Direction
from app.policy.concurrency import (
    SlotTable,
    TransferLimits,
    TransfersError,
    claim_windows,
    parse_transfers,
    slot_keys,
)

UP, DOWN = Direction.UPLOAD, Direction.DOWNLOAD


def test_transfers_values():
    assert parse_transfers(4) == TransferLimits(4, 4)
    assert parse_transfers("2:8") == TransferLimits(2, 8)
    assert parse_transfers({"download": 3}) == TransferLimits(None, 3)
    assert parse_transfers("6") == TransferLimits(6, 6)
    for bad, words in ((0, "out of range"), (999, "out of range"), (True, "not a whole"),
                       ("x:2", "not a whole"), ({"up": 2}, "unknown key"), (2.5, "not a whole")):
        with pytest.raises(TransfersError) as err:
            parse_transfers(bad)
        assert words in err.value.message and err.value.fix


def _run(table: SlotTable, keys, hold: float, stats: dict, lock: threading.Lock) -> None:
    assert table.acquire(keys, CancelToken())
    with lock:
        stats["now"] += 1
        stats["max"] = max(stats["max"], stats["now"])
    time.sleep(hold)
    with lock:
        stats["now"] -= 1
    table.release(keys)


def test_limit_holds_and_can_be_raised_while_waiting():
    table = SlotTable(default_limit=2)
    keys = slot_keys("local", "studio")
    stats, lock = {"now": 0, "max": 0}, threading.Lock()
    threads = [threading.Thread(target=_run, args=(table, keys, 0.3, stats, lock)) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    assert stats["max"] == 2 and table.running("studio", UP) == 2
    table.set_override("studio", UP, 6)  # local's download slots still allow 2
    time.sleep(0.1)
    assert stats["max"] == 2
    table.set_override("local", DOWN, 6)
    for t in threads:
        t.join()
    assert stats["max"] == 6 and table.running("studio", UP) == 0
    assert table.origin("studio", UP) == "override" and table.origin("studio", DOWN) == "default"


def test_a_full_site_does_not_block_another():
    table = SlotTable(default_limit=1)
    busy = slot_keys("local", "studio")
    assert table.acquire(busy, CancelToken())
    waiting = threading.Thread(target=table.acquire, args=(busy, CancelToken()))
    waiting.start()
    time.sleep(0.05)
    assert table.acquire(slot_keys("backup", "gdrive"), CancelToken())  # not behind it
    table.release(busy)
    waiting.join(2)
    assert not waiting.is_alive()


def test_cancel_while_waiting_holds_nothing():
    table = SlotTable(default_limit=1)
    keys = slot_keys("a", "b")
    assert table.acquire(keys, CancelToken())
    token = CancelToken()
    threading.Timer(0.1, token.cancel, ("stop",)).start()
    assert table.acquire(keys, token) is False
    table.release(keys)
    assert table.running("b", UP) == 0


def _wait_for_waiters(table: SlotTable, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(table._waiting) < count:  # private: when a thread is queued is not public
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_each_freed_slot_goes_to_the_longest_waiting_transfer():
    table = SlotTable(default_limit=1)
    keys = slot_keys("a", "b")
    assert table.acquire(keys, CancelToken())
    order: list[int] = []
    threads = []
    for n in range(4):
        thread = threading.Thread(target=lambda n=n: (table.acquire(keys, CancelToken()),
                                                      order.append(n)))
        thread.start()
        threads.append(thread)
        _wait_for_waiters(table, n + 1)
    for n in range(4):
        table.release(keys)
        threads[n].join(5)
        assert order == list(range(n + 1))  # that one, and no other, was let through
        assert [t.is_alive() for t in threads[n + 1:]] == [True] * (3 - n)
    table.release(keys)
    assert table.running("b", UP) == 0


def test_settings_limits_and_claim_windows():
    table = SlotTable()
    table.configure({"studio": TransferLimits(2, 4)}, default_limit=8)
    assert table.limit("studio", UP) == 2 and table.limit("studio", DOWN) == 4
    assert table.limit("local", UP) == 8 and table.origin("studio", UP) == "setting"
    # nothing claimed: both directions get twice their limit (running + waiting)
    assert claim_windows("local", "studio", {}, table) == {UP: 4, DOWN: 8}
    busy = {("studio", UP): 3, ("local", DOWN): 3}
    assert claim_windows("local", "studio", busy, table) == {DOWN: 8}  # uploads still queued
    busy = {("studio", UP): 2, ("local", DOWN): 2}
    assert claim_windows("local", "studio", busy, table) == {UP: 2, DOWN: 8}
