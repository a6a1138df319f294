"""The finisher's batching thread: order, batching under load, draining on close."""

from __future__ import annotations

import threading

from app.engine.batcher import Batcher


def test_items_arrive_in_order_and_close_handles_everything_queued():
    seen: list[list[int]] = []
    batcher: Batcher[int] = Batcher(seen.append, name="test-batcher")
    batcher.start()
    for i in range(1000):
        batcher.put(i)
    assert batcher.close(timeout_s=5)
    assert [i for batch in seen for i in batch] == list(range(1000))
    assert all(1 <= len(batch) <= 256 for batch in seen)


def test_items_queued_while_a_batch_is_handled_come_as_one_batch():
    release = threading.Event()
    seen: list[list[int]] = []

    def handle(batch: list[int]) -> None:
        seen.append(batch)
        release.wait(5)

    batcher: Batcher[int] = Batcher(handle, name="test-batcher")
    batcher.start()
    batcher.put(0)
    while not seen:
        threading.Event().wait(0.01)
    for i in range(1, 11):  # queued while the handler is busy with [0]
        batcher.put(i)
    release.set()
    assert batcher.close(timeout_s=5)
    assert seen == [[0], list(range(1, 11))]


def test_a_failing_handler_does_not_stop_the_batcher():
    seen: list[int] = []

    def handle(batch: list[int]) -> None:
        if batch == [1]:
            raise RuntimeError("boom")
        seen.extend(batch)

    batcher: Batcher[int] = Batcher(handle, name="test-batcher", max_batch=1)
    batcher.start()
    for i in range(3):
        batcher.put(i)
    assert batcher.close(timeout_s=5)
    assert seen == [0, 2]


def test_close_before_start_returns_at_once():
    assert Batcher(lambda batch: None, name="never-started").close(timeout_s=0)
