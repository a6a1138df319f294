"""A single thread that hands queued items to a callback in batches.

The engine uses it to finish transfers: a worker that has written and verified a file
queues it and moves on to the next file, and this thread makes the finished files
durable (one folder fsync for everything that landed in a folder meanwhile) and records
them. While one batch is being handled the next one accumulates, so the batches grow
exactly when the work is cheap per item and latency stays at one batch when it is not.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")
_log = logging.getLogger(__name__)
_STOP = object()


class Batcher(Generic[T]):
    """``put`` from any thread; ``handle`` runs on this batcher's thread with every item
    queued since the last call (at most ``max_batch``), in arrival order.

    ``handle`` must not raise: an exception is logged and the items are lost to it, so
    callers deal with their own errors per item. ``close`` handles what is still queued.
    """

    def __init__(self, handle: Callable[[list[T]], None], name: str, max_batch: int = 256) -> None:
        self._handle = handle
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def put(self, item: T) -> None:
        self._queue.put(item)

    def close(self, timeout_s: float | None = None) -> bool:
        """Handle everything queued so far, then stop; True if the thread ended in time."""
        if not self._started:
            return True
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[T] = []
            if first is _STOP:
                stopping = True
            else:
                batch.append(first)  # type: ignore[arg-type]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    continue  # still drain what was queued before the stop
                batch.append(item)  # type: ignore[arg-type]
            if not batch:
                continue
            try:
                self._handle(batch)
            except Exception:
                _log.exception("batch handler %r failed on %d items", self._handle, len(batch))
