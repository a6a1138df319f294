"""Runs store calls off the GUI thread and hands the results back to it, with asyncio.

The Sync Queue must never wait on the database: a summary page of a big project takes a
second or more, and a remote MongoDB can stall for its whole timeout. Every store call
(pymongo, sqlite3, paramiko and googleapiclient all block) therefore goes through
:class:`TaskRunner`: ``loop.run_in_executor`` starts it on a small bounded thread pool,
and an asyncio task on the GUI thread's loop awaits it and calls the result callback.
That loop is qasync's, which is Qt's own (:mod:`ui.event_loop`), so the task resumes in
the GUI thread in the order the answers come in, with no hand-written signal hop (the
hop PySide6 gets wrong for lambdas: it runs them in the emitting pool thread, qt-tray.md
pitfall 1); and an asyncio future can be cancelled, which is what superseding needs.

*Channels* make stale answers harmless: submitting on a channel supersedes the earlier
task on it, whose asyncio task is cancelled: its answer is dropped, and the cancel
reaches the executor's future, so a call that has not started yet never runs (a flag the
pool thread checks closes the gap until the cancel gets there). Typing in the filter box
therefore costs one query for the final text, and an old page can never overwrite a
newer one.

:meth:`TaskRunner.shutdown` (before the store closes) starts no further call and waits,
bounded, for the running ones to end, so none runs on a closed store.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Signal

from ui.event_loop import gui_loop

__all__ = ["TaskRunner"]

_log = logging.getLogger(__name__)


@dataclass
class _Call:
    """One submitted call, as the GUI thread tracks it."""

    channel: str | None
    #: Set (under the runner's lock) when superseded or shut down: the pool thread
    #: then does not start it.
    dropped: bool = False
    future: asyncio.Future[Any] | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class TaskRunner(QObject):
    """Runs callables on its own bounded thread pool; see the module docstring.

    ``error`` carries the text of failures that have no ``on_error`` callback, so the
    window can show them in its status bar instead of losing them.
    """

    error = Signal(str)

    def __init__(self, parent: QObject | None = None, max_threads: int = 3) -> None:
        super().__init__(parent)
        self._loop = gui_loop()
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="sitesync-ui")
        self._ids = itertools.count(1)
        self._calls: dict[int, _Call] = {}  # GUI thread only
        self._latest: dict[str, int] = {}  # GUI thread only
        self._lock = threading.Condition()  # guards the fields below and _Call.dropped
        self._running = 0
        self._closed = False

    @property
    def pending(self) -> int:
        """Calls whose callback has not run yet, plus superseded ones still running
        (tests wait for 0: then nothing of this runner touches the store)."""
        with self._lock:
            return len(self._calls) + self._running

    def submit(
        self,
        fn: Callable[[], Any],
        on_result: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None = None,
        channel: str | None = None,
    ) -> int:
        """Run ``fn()`` on the pool; call ``on_result(value)`` or ``on_error(exc)`` in the
        GUI thread unless a later task on the same ``channel`` superseded it."""
        task_id = next(self._ids)
        with self._lock:
            if self._closed:
                return task_id
        if channel is not None:
            self.supersede(channel)
            self._latest[channel] = task_id
        call = _Call(channel)
        # Started here, not in the task, so the call is under way before the GUI thread
        # next processes events.
        call.future = self._loop.run_in_executor(self._pool, self._call, call, fn)
        call.task = self._loop.create_task(self._answer(task_id, call, on_result, on_error))
        self._calls[task_id] = call
        return task_id

    def supersede(self, channel: str) -> None:
        """Drop whatever is pending on ``channel`` (e.g. a page of a project left)."""
        task_id = self._latest.pop(channel, None)
        call = self._calls.pop(task_id, None) if task_id is not None else None
        if call is not None:
            self._drop([call])

    def wait_idle(self, timeout_ms: int = 30_000) -> bool:
        """Block until no call of this runner is running (for shutdown and benchmarks)."""
        with self._lock:
            return self._lock.wait_for(lambda: self._running == 0, timeout_ms / 1000)

    def shutdown(self, timeout_ms: int = 30_000) -> None:
        """Stop delivering, drop queued calls and wait for running ones to end."""
        with self._lock:
            self._closed = True
        calls = list(self._calls.values())
        self._calls.clear()
        self._latest.clear()
        self._drop(calls)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.wait_idle(timeout_ms)

    def _drop(self, calls: list[_Call]) -> None:
        with self._lock:
            for call in calls:
                call.dropped = True
        for call in calls:
            assert call.future is not None and call.task is not None
            call.future.cancel()  # reaches the executor's future: not started, never runs
            call.task.cancel()

    def _call(self, call: _Call, fn: Callable[[], Any]) -> Any:
        """Runs on a pool thread."""
        with self._lock:
            if call.dropped or self._closed:
                return None  # superseded before it started; its task is cancelled
            self._running += 1
        try:
            return fn()
        finally:
            with self._lock:
                self._running -= 1
                self._lock.notify_all()

    async def _answer(self, task_id: int, call: _Call, on_result: Callable[[Any], None],
                      on_error: Callable[[BaseException], None] | None) -> None:
        """Runs on the GUI thread: awaits the call and hands its answer on (a superseded
        call's task is cancelled at the ``await``)."""
        assert call.future is not None
        try:
            value, failure = await call.future, None
        except Exception as exc:  # handed to the callback or the error signal, never lost
            value, failure = None, exc
        self._calls.pop(task_id, None)
        if call.channel is not None and self._latest.get(call.channel) == task_id:
            del self._latest[call.channel]  # a submit from the callback must not cancel us
        try:
            if failure is None:
                on_result(value)
            elif on_error is not None:
                on_error(failure)
            else:
                _log.warning("background task failed: %s", failure)
                self.error.emit(str(failure) or type(failure).__name__)
        except Exception as exc:
            # A callback bug must not take the window down; say so where the user looks.
            _log.exception("handling the result of a background task")
            self.error.emit(f"internal error: {type(exc).__name__}: {exc}")
