"""Engine events -> Qt signals in the GUI thread, coalesced so the GUI never floods.

The engine publishes on its own threads (the loop and one per transfer). Widgets may only
be touched from the GUI thread, and a slot per progress tick would drown it when thousands
of files are in flight. So the bus subscriber here only appends to buffers under a lock and,
at most once per pending batch, emits one queued wake-up signal; the GUI thread then

* re-emits every discrete event (started, synced, failed, stopped, engine state) one by one
  (none is dropped: a failure notification or a row update must never go missing),
* emits ``progress`` with the latest :class:`FileProgress` per file, at most every
  ``progress_interval_ms`` (default 100 ms, ~10x/s),
* emits ``representations_changed`` with the set of rows touched since the last emission,
  at most every ``rows_interval_ms`` (default 200 ms, ~5x/s),
* emits ``totals`` (:class:`Totals`) on the progress cadence when anything in it changed.

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
        self._lock = threading.Lock()
        self._closed = False
        # Filled on engine threads, drained on the GUI thread (all under _lock).
        self._discrete: deque[Event] = deque()
        self._discrete_wake = False
        self._progress_pending: dict[ProgressKey, FileProgress] = {}
        self._rows_pending: set[tuple[str, str]] = set()
        self._fast_wake = False
        self._rows_wake = False
        # Totals are kept as running sums: a sum over thousands of in-flight files per
        # progress tick would make the engine threads pay O(files) per event.
        self._in_flight: dict[ProgressKey, tuple[int, int]] = {}
        self._bytes_done = 0
        self._bytes_total = 0
        self._counts = {"synced": 0, "failed": 0}
        self._state = ("starting", "")
        self._totals_dirty = False
        self._last_totals = Totals()

        self._wake.connect(self._drain, Qt.ConnectionType.QueuedConnection)
        self._fast = _Throttle(progress_interval_ms, self._flush_fast, self)
        self._rows = _Throttle(rows_interval_ms, self._flush_rows, self)
        self._unsubscribe = bus.subscribe(self._on_event)

    # -- public -------------------------------------------------------------------------------

    @property
    def current_totals(self) -> Totals:
        """The latest totals (may be ahead of the last ``totals`` emission)."""
        with self._lock:
            return self._snapshot()

    def close(self) -> None:
        """Unsubscribe and stop emitting; events already queued are dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._unsubscribe()
        self._fast.stop()
        self._rows.stop()

    # -- engine threads -----------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        """Bus subscriber: runs on the publishing (engine) thread, so it only buffers."""
        wake = False
        with self._lock:
            if self._closed:
                return
            if isinstance(event, FileProgress):
                key = _key(event)
                self._progress_pending[key] = event
                if key in self._in_flight:
                    self._track(key, (event.bytes_done, event.size))
            else:
                self._discrete.append(event)
                if not self._discrete_wake:
                    self._discrete_wake = wake = True
                self._apply_totals(event)
            if (self._progress_pending or self._totals_dirty) and not self._fast_wake:
                self._fast_wake = wake = True
            if self._rows_pending and not self._rows_wake:
                self._rows_wake = wake = True
            if wake:
                # Under the lock, so close() cannot return (and the bridge be deleted)
                # while an engine thread is emitting; a queued emit only posts an event.
                self._wake.emit()

    def _apply_totals(self, event: Event) -> None:
        """Update the in-flight table and counters for a discrete event (under _lock)."""
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
        """Set (or with None, drop) one in-flight file, keeping the sums (under _lock)."""
        old_done, old_size = self._in_flight.pop(key, (0, 0))
        self._bytes_done -= old_done
        self._bytes_total -= old_size
        if value is not None:
            self._in_flight[key] = value
            self._bytes_done += value[0]
            self._bytes_total += value[1]
        self._totals_dirty = True

    def _snapshot(self) -> Totals:
        """The current totals (under _lock)."""
        return Totals(state=self._state[0], message=self._state[1],
                      in_flight=len(self._in_flight), bytes_done=self._bytes_done,
                      bytes_total=self._bytes_total, synced=self._counts["synced"],
                      failed=self._counts["failed"])

    # -- GUI thread ---------------------------------------------------------------------------

    @Slot()
    def _drain(self) -> None:
        with self._lock:
            if self._closed:
                return
            events = list(self._discrete)
            self._discrete.clear()
            self._discrete_wake = False
            fast = self._fast_wake
            rows = self._rows_wake
        for event in events:
            self._emit_discrete(event)
        if fast:
            self._fast.request()
        if rows:
            self._rows.request()

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
        with self._lock:
            if self._closed:
                return
            batch = self._progress_pending
            self._progress_pending = {}
            totals = self._snapshot()
            self._totals_dirty = False
            self._fast_wake = False
        # Progress may only be emitted after the discrete events that preceded it, so a
        # row never shows progress for a transfer whose start the GUI has not seen.
        self._drain_pending_discrete()
        if batch:
            self.progress.emit(batch)
        if totals != self._last_totals:
            self._last_totals = totals
            self.totals.emit(totals)

    def _flush_rows(self) -> None:
        with self._lock:
            if self._closed:
                return
            changed = frozenset(self._rows_pending)
            self._rows_pending.clear()
            self._rows_wake = False
        self._drain_pending_discrete()
        if changed:
            self.representations_changed.emit(changed)

    def _drain_pending_discrete(self) -> None:
        with self._lock:
            events = list(self._discrete)
            self._discrete.clear()
        for event in events:
            self._emit_discrete(event)
