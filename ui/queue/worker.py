"""Runs store calls off the GUI thread and hands the results back to it.

The Sync Queue must never wait on the database: a summary page of a big project takes a
second or more, and a remote MongoDB can stall for its whole timeout. So every store call
goes through :class:`TaskRunner`, which runs it on a small :class:`QThreadPool` and calls
the result callback later in the GUI thread.

*Channels* make stale answers harmless: submitting on a channel supersedes the earlier
task on it, whose result is then dropped (and which is skipped if it has not started
yet). Typing in the filter box therefore costs one query for the final text, and an old
page can never overwrite a newer one.

Delivery goes through a signal of this GUI-thread object connected to its own bound
method, because PySide6 runs lambdas connected to a foreign thread's signal in that
foreign thread (qt-tray.md, pitfall 1).

Why threads and not qasync coroutines: every store and provider call is blocking
(pymongo, sqlite3, paramiko, googleapiclient), so a coroutine would only wrap
``run_in_executor`` around the same thread pool; what the window needs on top of that
(superseded answers dropped per channel, a bounded pool shut down before the store
closes) is what this class adds.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot

__all__ = ["TaskRunner"]

_log = logging.getLogger(__name__)


@dataclass
class _Task:
    channel: str | None
    on_result: Callable[[Any], None]
    on_error: Callable[[BaseException], None] | None


class _Skipped:
    """Result of a task superseded before it started."""


class _Runnable(QRunnable):
    def __init__(self, runner: TaskRunner, task_id: int, fn: Callable[[], Any]) -> None:
        super().__init__()
        self._runner = runner
        self._task_id = task_id
        self._fn = fn

    def run(self) -> None:
        runner = self._runner
        if runner.superseded(self._task_id):
            runner.deliver(self._task_id, True, _Skipped())
            return
        try:
            result = self._fn()
        except Exception as exc:  # handed to the GUI thread, never lost
            runner.deliver(self._task_id, False, exc)
            return
        runner.deliver(self._task_id, True, result)


class TaskRunner(QObject):
    """Runs callables on its own thread pool; see the module docstring.

    ``error`` carries the text of failures that have no ``on_error`` callback, so the
    window can show them in its status bar instead of losing them.
    """

    error = Signal(str)
    _done = Signal(int, bool, object)

    def __init__(self, parent: QObject | None = None, max_threads: int = 3) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max_threads)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._tasks: dict[int, _Task] = {}
        self._latest: dict[str, int] = {}
        self._closed = False
        self._done.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    @property
    def pending(self) -> int:
        """Tasks submitted whose callback has not run yet (tests wait for 0)."""
        return len(self._tasks)

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
                self._latest[channel] = task_id
            self._tasks[task_id] = _Task(channel, on_result, on_error)
        self._pool.start(_Runnable(self, task_id, fn))
        return task_id

    def supersede(self, channel: str) -> None:
        """Drop whatever is pending on ``channel`` (e.g. a page of a project left)."""
        with self._lock:
            self._latest[channel] = next(self._ids)

    def superseded(self, task_id: int) -> bool:
        """True if a later task took this task's channel (callable from any thread)."""
        with self._lock:
            if self._closed:
                return True
            task = self._tasks.get(task_id)
            if task is None or task.channel is None:
                return False
            return self._latest.get(task.channel) != task_id

    def deliver(self, task_id: int, ok: bool, value: object) -> None:
        """Called on a pool thread; queues the result for the GUI thread."""
        with self._lock:
            if self._closed:
                return
        self._done.emit(task_id, ok, value)

    def wait_idle(self, timeout_ms: int = 30_000) -> bool:
        """Block until the pool has no running task (for shutdown and benchmarks)."""
        return self._pool.waitForDone(timeout_ms)

    def shutdown(self, timeout_ms: int = 30_000) -> None:
        """Stop delivering, drop queued tasks and wait for running ones to end."""
        with self._lock:
            self._closed = True
        self._pool.clear()
        self._pool.waitForDone(timeout_ms)
        self._tasks.clear()

    @Slot(int, bool, object)
    def _deliver(self, task_id: int, ok: bool, value: object) -> None:
        with self._lock:
            task = self._tasks.pop(task_id, None)
            stale = task is not None and task.channel is not None and (
                self._latest.get(task.channel) != task_id)
        if task is None or stale or isinstance(value, _Skipped):
            return  # superseded: a newer answer is on its way
        try:
            if ok:
                task.on_result(value)
            elif task.on_error is not None:
                task.on_error(value)  # type: ignore[arg-type]
            else:
                _log.warning("background task failed: %s", value)
                self.error.emit(str(value) or type(value).__name__)
        except Exception as exc:
            # A callback bug must not take the window down; say so where the user looks.
            _log.exception("handling the result of a background task")
            self.error.emit(f"internal error: {type(exc).__name__}: {exc}")
