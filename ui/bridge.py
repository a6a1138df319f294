"""Engine events -> Qt signals in the GUI thread, coalesced so the GUI never floods.

The engine publishes on its own threads (the loop and one per transfer). Widgets may only
be touched from the GUI thread, and a slot per progress tick would drown it when thousands
of files are in flight. So the bus subscriber here only drops the event into a buffer and,
at most once per pending batch, emits one queued wake-up signal; the GUI thread then

* re-emits every discrete event (started, synced, failed, stopped, engine state), none
  dropped (a failure notification or a row update must never go missing): all of one
  wake-up together as ``events`` (a tuple, in order), then one by one on their own
  signals. Busy consumers take ``events``: one Python slot call per event is one more
  time the GUI thread must win the GIL back from the engine's threads,
* emits ``progress`` with the latest :class:`FileProgress` per file, at most every
  ``progress_interval_ms`` (default 100 ms, ~10x/s),
* emits ``representations_changed`` with the set of rows touched since the last emission,
  at most every ``rows_interval_ms`` (default 200 ms, ~5x/s),
* emits ``totals`` (:class:`Totals`) on the progress cadence when anything in it changed.

The engine threads never hold a lock per event: a discrete event is appended to a deque
and a progress event stored in a dict, both single atomic operations under the GIL; all
bookkeeping (in-flight files, byte sums, touched rows) happens on the GUI thread. A lock
guards only the rare wake-up emission against :meth:`close`. The earlier design did the
bookkeeping under a lock on the engine threads; with 128 transfers at once a lock holder
preempted by the interpreter held up every other thread, the GUI thread included, for
up to 0.2 s (measured with bench/ui_queue.py --transfers 128).

Cross-thread delivery goes to bound methods of this GUI-thread QObject with an explicit
``QueuedConnection``: PySide6 runs lambdas connected to a foreign thread's signal in that
foreign thread (qt-tray.md, pitfall 1).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot

from app.events.bus import EventBus
from app.events.types import (
    EngineStateChanged,
    Event,
    FileFailed,
    FileProgress,
    FileSynced,
    TransferStarted,
    TransferStopped,
)

__all__ = ["EngineBridge", "ProgressKey", "Totals"]

ProgressKey = tuple[str, str, str, str]  # (project, repre_id, file_id, target_site)

_DONE_STATES = frozenset({"idle", "paused", "stopped"})


@dataclass(frozen=True)
class Totals:
    """What the tray shows: in-flight transfers, their bytes, results since start, state."""

    state: str = "starting"
    message: str = ""
    in_flight: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    synced: int = 0
    failed: int = 0

    @property
    def fraction(self) -> float | None:
        """Overall progress of the in-flight transfers (None when nothing has a size)."""
        if self.bytes_total <= 0:
            return None
        return min(1.0, self.bytes_done / self.bytes_total)


def _key(event: Any) -> ProgressKey:
    return (event.project, event.repre_id, event.file_id, event.target_site)


class _Throttle:
    """Calls ``fire`` at most once per ``interval_ms``; a request inside the interval is
    deferred to its end (never dropped). Lives and fires in the GUI thread."""

    def __init__(self, interval_ms: int, fire: Any, parent: QObject) -> None:
        self._interval = interval_ms / 1000.0
        self._fire = fire
        self._last = -math.inf
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._fire_now)

    def request(self) -> None:
        if self._timer.isActive():
            return
        wait = self._last + self._interval - time.monotonic()
        if wait <= 0:
            self._fire_now()
        else:
            self._timer.start(max(1, math.ceil(wait * 1000)))

    def stop(self) -> None:
        self._timer.stop()

    def _fire_now(self) -> None:
        self._last = time.monotonic()
        self._fire()


class EngineBridge(QObject):
    """Subscribes to ``bus`` on construction; :meth:`close` unsubscribes.

    Construct it in the GUI thread (it lives there; its signals are emitted there).
    """

    transfer_started = Signal(object)  # TransferStarted
    transfer_stopped = Signal(object)  # TransferStopped
    file_synced = Signal(object)  # FileSynced
    file_failed = Signal(object)  # FileFailed
    engine_state = Signal(object)  # EngineStateChanged
    events = Signal(object)  # tuple[Event, ...]: the discrete events above, in order
    progress = Signal(object)  # dict[ProgressKey, FileProgress]
    representations_changed = Signal(object)  # frozenset[(project, repre_id)]
    totals = Signal(object)  # Totals

    _wake = Signal()

    def __init__(
        self,
        bus: EventBus,
        parent: QObject | None = None,
        *,
        progress_interval_ms: int = 100,
        rows_interval_ms: int = 200,
    ) -> None:
        super().__init__(parent)
        self._closed = False
        # Written by engine threads with single atomic operations, read on the GUI thread.
        self._inbox: deque[Event] = deque()  # discrete events, in order
        self._progress_pending: dict[ProgressKey, FileProgress] = {}  # latest per file
        self._discrete_wake = False  # a wake-up for the inbox is queued
        self._progress_wake = False  # a wake-up for progress is queued (reset on flush)
        self._emit_lock = threading.Lock()  # a wake-up emission vs close()
        # GUI thread only. Totals are kept as running sums, so a totals snapshot never
        # walks every in-flight file.
        self._in_flight: dict[ProgressKey, tuple[int, int]] = {}
        self._bytes_done = 0
        self._bytes_total = 0
        self._counts = {"synced": 0, "failed": 0}
        self._state = ("starting", "")
        self._rows_pending: set[tuple[str, str]] = set()
        self._totals_dirty = False
        self._last_totals = Totals()

        self._wake.connect(self._drain, Qt.ConnectionType.QueuedConnection)
        self._fast = _Throttle(progress_interval_ms, self._flush_fast, self)
        self._rows = _Throttle(rows_interval_ms, self._flush_rows, self)
        self._unsubscribe = bus.subscribe(self._on_event)

    # -- public -------------------------------------------------------------------------------

    @property
    def current_totals(self) -> Totals:
        """The totals as of the last wake-up handled (GUI thread; may be ahead of the last
        ``totals`` emission)."""
        return self._snapshot()

    def close(self) -> None:
        """Unsubscribe and stop emitting; events already queued are dropped."""
        with self._emit_lock:
            if self._closed:
                return
            self._closed = True
        self._unsubscribe()
        self._fast.stop()
        self._rows.stop()
        self._inbox.clear()
        self._progress_pending.clear()

    # -- engine threads -----------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        """Bus subscriber: runs on the publishing (engine) thread, so it only buffers."""
        if self._closed:
            return
        if isinstance(event, FileProgress):
            self._progress_pending[_key(event)] = event
            if not self._progress_wake:
                self._request_wake("_progress_wake")
        else:
            self._inbox.append(event)
            if not self._discrete_wake:
                self._request_wake("_discrete_wake")

    def _request_wake(self, flag: str) -> None:
        with self._emit_lock:
            if self._closed or getattr(self, flag):
                return
            setattr(self, flag, True)
            # Under the lock, so close() cannot return (and the bridge be deleted) while
            # an engine thread is emitting; a queued emit only posts an event.
            self._wake.emit()

    # -- GUI thread: bookkeeping ----------------------------------------------------------------

    def _ingest(self) -> list[Event]:
        """Move the inbox into the totals and touched rows; returns its events in order.
        The flag is cleared first, so an event appended meanwhile queues a new wake-up."""
        self._discrete_wake = False
        inbox = self._inbox
        events = []
        while inbox:
            event = inbox.popleft()
            events.append(event)
            self._apply_totals(event)
        return events

    def _take_progress(self) -> tuple[list[Event], dict[ProgressKey, FileProgress]]:
        """The discrete events and the latest progress per file since the last call, such
        that every transfer start comes before its progress and no progress of a file
        whose final event is among the events is left. Progress is popped key by key: an
        engine thread writing meanwhile leaves its entry for the next call."""
        events = self._ingest()  # finals drop their file's stale progress
        self._progress_wake = False
        pending = self._progress_pending
        batch = {}
        for key in list(pending):
            event = pending.pop(key, None)
            if event is not None:
                batch[key] = event
        # A transfer's start is published before its progress: whatever arrived while
        # popping holds the starts of the progress just taken (and maybe their ends).
        for event in self._ingest():
            events.append(event)
            if isinstance(event, FileSynced | FileFailed | TransferStopped):
                batch.pop(_key(event), None)
        for key, event in batch.items():
            if key in self._in_flight:
                self._track(key, (event.bytes_done, event.size))
        return events, batch

    def _apply_totals(self, event: Event) -> None:
        """Update the in-flight table and counters for a discrete event."""
        if isinstance(event, TransferStarted):
            self._track(_key(event), (event.resumed_from, event.size))
            self._rows_pending.add((event.project, event.repre_id))
        elif isinstance(event, FileSynced | FileFailed | TransferStopped):
            key = _key(event)
            self._track(key, None)
            # A final result makes any buffered progress for that file stale.
            self._progress_pending.pop(key, None)
            self._rows_pending.add((event.project, event.repre_id))
            if isinstance(event, FileSynced):
                self._counts["synced"] += 1
            elif isinstance(event, FileFailed):
                self._counts["failed"] += 1
        elif isinstance(event, EngineStateChanged):
            if event.state in _DONE_STATES and event.in_flight == 0:
                # The engine says nothing runs: forget transfers whose end we never saw.
                self._in_flight.clear()
                self._bytes_done = self._bytes_total = 0
            self._state = (event.state, event.message)
        self._totals_dirty = True

    def _track(self, key: ProgressKey, value: tuple[int, int] | None) -> None:
        """Set (or with None, drop) one in-flight file, keeping the sums."""
        old_done, old_size = self._in_flight.pop(key, (0, 0))
        self._bytes_done -= old_done
        self._bytes_total -= old_size
        if value is not None:
            self._in_flight[key] = value
            self._bytes_done += value[0]
            self._bytes_total += value[1]
        self._totals_dirty = True

    def _snapshot(self) -> Totals:
        return Totals(state=self._state[0], message=self._state[1],
                      in_flight=len(self._in_flight), bytes_done=self._bytes_done,
                      bytes_total=self._bytes_total, synced=self._counts["synced"],
                      failed=self._counts["failed"])

    # -- GUI thread: emitting -----------------------------------------------------------------

    @Slot()
    def _drain(self) -> None:
        if self._closed:
            return
        self._emit_all(self._ingest())
        if self._progress_pending or self._totals_dirty:
            self._fast.request()
        if self._rows_pending:
            self._rows.request()

    def _emit_all(self, events: list[Event]) -> None:
        if not events:
            return
        self.events.emit(tuple(events))
        for event in events:
            self._emit_discrete(event)

    def _emit_discrete(self, event: Event) -> None:
        if isinstance(event, TransferStarted):
            self.transfer_started.emit(event)
        elif isinstance(event, FileSynced):
            self.file_synced.emit(event)
        elif isinstance(event, FileFailed):
            self.file_failed.emit(event)
        elif isinstance(event, TransferStopped):
            self.transfer_stopped.emit(event)
        elif isinstance(event, EngineStateChanged):
            self.engine_state.emit(event)

    def _flush_fast(self) -> None:
        if self._closed:
            return
        # Discrete events first: a row never shows progress for a transfer whose start
        # the GUI has not seen, and progress of a finished file is dropped.
        events, batch = self._take_progress()
        totals = self._snapshot()
        self._totals_dirty = False
        self._emit_all(events)
        if batch:
            self.progress.emit(batch)
        if totals != self._last_totals:
            self._last_totals = totals
            self.totals.emit(totals)

    def _flush_rows(self) -> None:
        if self._closed:
            return
        self._emit_all(self._ingest())
        changed = frozenset(self._rows_pending)
        self._rows_pending.clear()
        if changed:
            self.representations_changed.emit(changed)
