"""One plugin's delivery loop: its own thread, its own place in the log.

Every plugin reads the log on its own thread, so a plugin that fails (or is fixed and
catches up) never holds the others back. The order promise is kept with a hand-off
rather than one shared loop: a plugin delivers event N only after every healthy plugin
before it in the run order that is level with it or ahead has passed N. A plugin that is
behind (catching up), failed, disabled or stuck does not hold anyone back.

Delivery of one event to one plugin, and why it is exactly once:

1. ``inflight_id = N`` is saved (usually together with the previous event's result);
2. the plugin's matching callbacks run, in registration order;
3. ``last_id = N`` is saved with the plugin's ``state`` dict, in one transaction.

A crash between 1 and 3 delivers N again on restart with ``ctx.redelivery`` set; a crash
never skips N, and a change to ``ctx.state`` is kept exactly when N counts as processed.
A callback that raises stops its plugin at N (nothing saved but the error); when the file
changes the plugin is reloaded and N comes again.

Gaps: when event N+2 is read but N+1 is not there, N+1 goes into the backlog and later
events are delivered meanwhile. It is delivered when it shows up ("late"); after
``hooks.gap_timeout_s`` the id is sealed in the store, so a late write can no longer use
it, and declared lost. A gap whose successor is already older than the timeout is sealed
at once (its write would have committed long ago). Either way there is a log line.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import logging
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from app.errors import StoreUnavailableError
from app.hooks.plugin import (
    HookContext,
    LoadedPlugin,
    PluginError,
    PluginFile,
    Registrar,
    RetryLater,
    describe_exception,
    load_plugin,
    unload,
)
from app.hooks.state import Cursor, HookState, StateConflict
from app.hooks.status import PluginStatus
from app.model import EventRecord
from app.settings import HooksSettings
from app.store.base import Store

__all__ = ["Consumer", "Lane"]

_log = logging.getLogger("sitesync.hooks")

#: More missing ids than this in one jump are not waited for one by one.
MAX_GAP = 10_000
#: How often the backlog is looked up in the store while it is not empty.
BACKLOG_CHECK_S = 0.5
#: Longest wait between tries of an event whose callback raised RetryLater.
MAX_RETRY_S = 300.0


class Lane(Protocol):
    """What a consumer needs from its runner."""

    store: Store
    state: HookState
    settings: HooksSettings
    log_id: str
    local_id: str
    cond: threading.Condition
    stopping: threading.Event
    head: int

    def consumers_before(self, consumer: Consumer) -> list[Consumer]: ...
    def plugin_log(self, name: str) -> logging.Logger: ...
    def plugin_dir(self, name: str) -> Path: ...
    def note_gap(self, event_id: int, kind: str, message: str, level: int) -> None: ...
    def now(self) -> datetime: ...


class _Restart(Exception):
    """The persisted row changed under us (CLI): drop this batch and reload."""


class _Stopped(Exception):
    """The plugin stopped (its callback raised); the batch ends here."""


class Consumer:
    """Delivers the log to one plugin; see the module docstring."""

    def __init__(self, lane: Lane, file: PluginFile, cursor: Cursor, enabled: bool) -> None:
        self.lane = lane
        self.file = file
        self.name = file.name
        self.enabled = enabled
        self.plugin: LoadedPlugin | None = None
        self.active = False
        self.phase = "starting" if enabled else "disabled"
        self.problem: str | None = cursor.error
        self.problem_event: int | None = cursor.error_event
        self.delivered = 0
        self.busy_since: float | None = None
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self._load_requested = enabled
        self._state_reload_requested = False
        self.retired = False
        self.retry_at: float | None = None
        self._retries = 0
        #: (mtime, size) of the file at the last load attempt: a change means "reload".
        self.seen_signature: tuple[int, int] | None = None
        self._next_backlog_check = 0.0
        self._use(cursor)

    # -- control (any thread) ----------------------------------------------------------------

    def start(self) -> None:
        if self.thread is None and self.enabled:
            self.thread = threading.Thread(target=self._run, name=f"sitesync-hook-{self.name}",
                                           daemon=True)
            self.thread.start()

    def request_load(self, file: PluginFile | None = None) -> None:
        """The file is new, changed or fixed: load it again at the next safe point."""
        if file is not None:
            self.file = file
        self._load_requested = True
        self._poke()

    def set_enabled(self, enabled: bool) -> None:
        """The settings switch (``hooks.plugins.<name>.enabled``). Switched off, the
        plugin keeps its position; switched on again, it catches up from there."""
        if enabled == self.enabled:
            return
        self.enabled = enabled
        if enabled:
            self.phase = "starting"
            self.request_load()
            self.start()
        else:
            self.active = False
            self.phase = "disabled"
            self._poke()

    def retire(self) -> None:
        """The file is gone: stop the thread (the position stays saved)."""
        self.retired = True
        self.enabled = self.active = False
        self.phase = "removed"
        self._poke()

    def request_state_reload(self) -> None:
        """The persisted row changed elsewhere (CLI replay/skip): adopt it."""
        self._state_reload_requested = True
        self._poke()

    def _poke(self) -> None:
        self.wake.set()
        with self.lane.cond:
            self.lane.cond.notify_all()

    def join(self, timeout_s: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout_s)

    @property
    def pending_work(self) -> bool:
        """A load or a position change is waiting to be picked up."""
        return self._load_requested or self._state_reload_requested

    @property
    def stuck(self) -> bool:
        since = self.busy_since
        return since is not None and time.monotonic() - since > self.lane.settings.stuck_after_s

    def holds_back(self, pos: int, event_id: int) -> bool:
        """Whether a plugin after this one at ``pos`` must wait before delivering
        ``event_id`` (called with the lane condition held)."""
        return (self.active and self.thread is not None and self.thread.is_alive()
                and not self.stuck and self.retry_at is None and pos <= self.pos < event_id)

    def status(self, head: int) -> PluginStatus:
        busy = self.busy_since
        phase = self.phase
        if self.stuck and phase == "running":
            phase = "stuck"
        return PluginStatus(
            name=self.name, path=str(self.file.path), order=self.file.order, state=phase,
            last_id=self.pos, behind=max(0, head - self.pos), backlog=len(self.backlog),
            delivered=self.delivered,
            callbacks=tuple(cb.describe() for cb in self.plugin.callbacks) if self.plugin else (),
            error=self.problem, error_event=self.problem_event,
            busy_s=None if busy is None else round(time.monotonic() - busy, 1),
        )

    # -- the thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        lane = self.lane
        failures = 0
        while not lane.stopping.is_set() and not self.retired:
            self.wake.clear()
            try:
                if self._load_requested and self.enabled:
                    self._load()
                if self._state_reload_requested:
                    self._state_reload_requested = False
                    self._reload_state()
                if not self.active:
                    self.wake.wait(1.0)
                    continue
                if self.retry_at is not None:
                    if time.monotonic() < self.retry_at:
                        self.wake.wait(min(1.0, self.retry_at - time.monotonic()))
                        continue
                    self.retry_at = None
                progressed = self._step()
                failures = 0
            except (_Restart, _Stopped):
                continue
            except StoreUnavailableError as exc:
                failures += 1
                self.phase = "offline"
                self.problem = f"database unreachable: {exc}"
                self.wake.wait(min(30.0, 1.0 * failures))
                continue
            except Exception:
                if lane.stopping.is_set():
                    return
                failures += 1
                _log.exception("hooks: internal error while running plugin %s", self.name)
                self.wake.wait(min(30.0, 2.0 * failures))
                continue
            if self.phase == "offline":
                self.phase, self.problem = "idle", None
            if not progressed:
                self._wait_for_events()
        if self.plugin is not None:
            unload(self.plugin)
        if not self.retired:
            self.phase = "stopped"

    def _wait_for_events(self) -> None:
        lane = self.lane
        timeout = lane.settings.poll_interval_s
        if self.backlog:
            timeout = min(timeout, BACKLOG_CHECK_S)
        seen = self._seen_head
        with lane.cond:
            lane.cond.wait_for(
                lambda: lane.head != seen or lane.stopping.is_set() or self.wake.is_set()
                or self._load_requested or self._state_reload_requested, timeout)

    # -- loading and state -----------------------------------------------------------------------

    def _load(self) -> None:
        self._load_requested = False
        self.seen_signature = self.file.signature()
        registrar = Registrar(self.name, self.lane.settings.plugin_options(self.name),
                              self.lane.local_id, self.lane.plugin_log(self.name),
                              self.lane.plugin_dir(self.name))
        old = self.plugin
        try:
            loaded = load_plugin(self.file, registrar)
        except PluginError as exc:
            self.plugin, self.active = None, False
            if old is not None:
                unload(old)
            self.phase, self.problem, self.problem_event = "load error", str(exc), None
            self.lane.plugin_log(self.name).error("plugin %s cannot be loaded: %s", self.name, exc)
            self._save_error(str(exc), None)
            return
        if old is not None:
            unload(old)
        self.plugin = loaded
        self.retry_at, self._retries = None, 0
        self._reload_state()
        if self.problem is not None:
            self.problem = self.problem_event = None
            self._commit(self.pos, inflight=self.cursor.inflight_id, clear_error=True)
        self.active = True
        self.phase = "idle"
        self.lane.plugin_log(self.name).info(
            "plugin %s loaded from %s (%d callback(s)); continuing after event %d",
            self.name, self.file.path, len(loaded.callbacks), self.pos)

    def _use(self, cursor: Cursor) -> None:
        """Adopt a persisted row as the in-memory position."""
        self.cursor = cursor
        self.pos = cursor.last_id
        # A backlog id above the saved position (a row saved by an older version, or
        # rewound by the CLI) is met again by the in-order read: delivered there if it
        # committed, waited for again if not. Handling it from the backlog as well would
        # deliver it twice.
        self.backlog: dict[int, float] = {
            event_id: expires for event_id, expires in cursor.backlog.items()
            if event_id <= cursor.last_id}
        self.state: dict[str, Any] = copy.deepcopy(dict(cursor.state))
        self.maybe_seen = cursor.inflight_id
        self.redeliver_until = cursor.redeliver_until
        self._seen_head = self.lane.head

    def _reload_state(self) -> None:
        cursor = self.lane.state.get(self.name)
        if cursor is None:
            cursor = self.lane.state.create(self.name, self.lane.head)
        with self.lane.cond:
            self._use(cursor)
            self.lane.cond.notify_all()
        if cursor.error is None and self.problem is not None and self.plugin is not None:
            # Cleared elsewhere (`sitesync hooks skip`): run again from the new position.
            self.problem = self.problem_event = None
            self.active, self.phase = True, "idle"

    def _commit(self, last_id: int, *, inflight: int | None, clear_error: bool = False,
                error: str | None = None, error_event: int | None = None) -> None:
        """Save position, backlog, state and error in one transaction."""
        cursor = replace(
            self.cursor, last_id=last_id, inflight_id=inflight,
            redeliver_until=self.redeliver_until, state=copy.deepcopy(self.state),
            backlog=dict(self.backlog),
            error=None if clear_error else (error if error is not None else self.cursor.error),
            error_event=None if clear_error else (error_event if error is not None
                                                  else self.cursor.error_event),
        )
        try:
            self.cursor = self.lane.state.save(cursor)
        except StateConflict:
            _log.info("hooks: plugin %s was moved in the log by another process; "
                      "continuing from its new position", self.name)
            self._reload_state()
            raise _Restart from None

    def _save_error(self, error: str, event_id: int | None) -> None:
        cursor = self.lane.state.get(self.name) or self.lane.state.create(self.name,
                                                                          self.lane.head)
        with contextlib.suppress(StateConflict):  # moved meanwhile: shown from memory
            self.cursor = self.lane.state.save(replace(cursor, error=error, error_event=event_id))

    # -- one pass over new events ----------------------------------------------------------------

    def _step(self) -> bool:
        """Handle backlog arrivals and the next batch; True if anything moved."""
        lane = self.lane
        progressed = self._check_backlog()
        self._seen_head = lane.head
        events = lane.store.read_events(self.pos, lane.settings.batch_size)
        if not events:
            return progressed
        if self.phase != "running":
            self.phase = "catching up" if lane.head - self.pos > len(events) else "running"
        wanted = [e for e in events if not e.is_gap and self.plugin and self.plugin.wants(e)]
        next_wanted = {a.id: b.id for a, b in itertools.pairwise(wanted)}
        for event in events:
            if lane.stopping.is_set() or not self.active:
                break
            if event.id > self.pos + 1:
                self._gap(self.pos + 1, event.id - 1, event)
            if not event.is_gap and self.plugin is not None and self.plugin.wants(event):
                self._wait_turn(event.id)
                if lane.stopping.is_set() or not self.active:
                    break
                self._deliver(event, late=False, then=next_wanted.get(event.id))
            else:
                self._advance(event.id)
        if self.pos > self.cursor.last_id or self.backlog != self.cursor.backlog:
            self._commit(self.pos, inflight=None)
        self.phase = "idle" if self.active else self.phase
        return True

    def _advance(self, event_id: int) -> None:
        with self.lane.cond:
            self.pos = max(self.pos, event_id)
            self.lane.cond.notify_all()

    def _wait_turn(self, event_id: int) -> None:
        """Keep the run order: wait while a healthy plugin before this one, level with it
        or ahead, has not passed ``event_id``."""
        lane = self.lane
        with lane.cond:
            while not lane.stopping.is_set() and self.active:
                before = [c for c in lane.consumers_before(self) if c.holds_back(self.pos, event_id)]
                if not before:
                    break
                self.phase = "waiting"
                lane.cond.wait(0.25)
        self.phase = "running"

    def _deliver(self, event: EventRecord, *, late: bool, then: int | None = None) -> None:
        """Run the plugin's matching callbacks for ``event`` and save the result."""
        lane = self.lane
        plugin = self.plugin
        assert plugin is not None
        before = self.pos if not late else self.cursor.last_id
        if self.cursor.inflight_id != event.id:
            self._commit(before, inflight=event.id)
        ctx = HookContext(
            plugin=self.name, log=lane.plugin_log(self.name),
            idempotency_key=f"sitesync-{lane.log_id}-{event.id}",
            redelivery=event.id == self.maybe_seen or event.id <= self.redeliver_until,
            late=late, state=self.state, options=lane.settings.plugin_options(self.name),
            local_id=lane.local_id,
        )
        saved_state = json.dumps(self.state, sort_keys=True, default=str)
        self.busy_since = time.monotonic()
        try:
            for callback in plugin.callbacks:
                if callback.matches(event):
                    callback.call(event, ctx)
            _check_json(self.state)
        except RetryLater as exc:
            self.busy_since = None
            self._retry_later(event, exc, json.loads(saved_state))
            raise _Stopped from None
        except Exception as exc:
            self.busy_since = None
            self._stop_on(event, exc, json.loads(saved_state))
            raise _Stopped from None
        self.busy_since = None
        if self._retries:
            self._retries, self.problem = 0, None
        self.delivered += 1
        if event.id == self.maybe_seen:
            self.maybe_seen = None
        if late:
            # Saved with the position it lies under (every late id is at or below it):
            # out of the backlog and above the saved position, it would be read again.
            self.backlog.pop(event.id, None)
            self._commit(self.pos, inflight=None)
        else:
            self._advance(event.id)
            self._commit(event.id, inflight=then)

    def _retry_later(self, event: EventRecord, exc: RetryLater, state: dict[str, Any]) -> None:
        """Not now: keep the event (it is in flight, so it comes again marked as a
        redelivery) and try again after a while; the plugins after this one go on."""
        self.state = state
        self.maybe_seen = event.id  # its callbacks may have done part of their work
        self._retries += 1
        delay = exc.after_s if exc.after_s is not None else 2.0 ** min(self._retries, 9)
        delay = max(0.05, min(MAX_RETRY_S, delay))
        self.retry_at = time.monotonic() + delay
        self.phase = "retrying"
        self.problem = f"{exc} (event {event.id}; trying again in {delay:.0f} s)"
        self.lane.plugin_log(self.name).warning("plugin %s will retry event %d in %.1f s: %s",
                                                self.name, event.id, delay, exc)
        with self.lane.cond:
            self.lane.cond.notify_all()

    def _stop_on(self, event: EventRecord, exc: Exception, state: dict[str, Any]) -> None:
        """A callback raised: the plugin stops at this event, the others go on."""
        self.state = state  # its changes count only with the event
        self.active = False
        self.phase = "failed"
        self.problem = describe_exception(exc, self.file.path)
        self.problem_event = event.id
        self.lane.plugin_log(self.name).error(
            "plugin %s failed on event %d (%s): %s. It is stopped; fix %s and it resumes "
            "from this event (the other plugins go on)", self.name, event.id, event.type,
            self.problem, self.file.path, exc_info=exc)
        with self.lane.cond:
            self.lane.cond.notify_all()
        try:
            position = self.cursor.last_id if event.id in self.backlog else min(self.pos,
                                                                                 event.id - 1)
            self._commit(position, inflight=event.id, error=self.problem,
                         error_event=event.id)
        except _Restart:
            pass

    # -- gaps and the backlog ----------------------------------------------------------------------

    def _gap(self, first: int, last: int, successor: EventRecord) -> None:
        """Ids ``first..last`` are missing before ``successor``."""
        lane = self.lane
        pruned_through = lane.store.event_log_info().pruned_through
        if first <= pruned_through:
            pruned_to = min(last, pruned_through)
            lane.note_gap(first, "pruned", f"events {first}..{pruned_to} were removed from the "
                          f"log (older than hooks.retention_days) before plugin(s) processed "
                          f"them; skipping them", logging.WARNING)
            first = pruned_to + 1
        now = lane.now()
        age = (now - successor.at).total_seconds()
        timeout = lane.settings.gap_timeout_s
        ids = range(first, last + 1)
        if len(ids) > MAX_GAP:
            lane.note_gap(first, "huge", f"{len(ids)} event ids {first}..{last} are missing at "
                          "once (the id counter jumped); not waiting for them", logging.WARNING)
            ids = range(0)
        for event_id in ids:
            # Settled from here on (waiting in the backlog, delivered late or lost), so
            # the position passes it before a late delivery saves that position.
            self._advance(event_id)
            if age > timeout:
                self._give_up(event_id, f"event {event_id} never appeared (event {successor.id} "
                              f"after it is {age:.0f} s old); ignoring it")
            else:
                self.backlog[event_id] = time.time() + timeout
                lane.note_gap(event_id, "waiting", f"event {event_id} is missing (a write not "
                              f"committed yet); waiting up to {timeout:g} s for it", logging.INFO)

    def _give_up(self, event_id: int, message: str) -> None:
        """Seal ``event_id``; if it committed meanwhile, deliver it after all."""
        arrived = self.lane.store.seal_event_id(event_id, self.lane.now())
        self.backlog.pop(event_id, None)
        if arrived is None:
            self.lane.note_gap(event_id, "lost", message + ": declared lost", logging.WARNING)
        else:
            self._arrived(arrived)

    def _arrived(self, event: EventRecord) -> None:
        waited = self.backlog.get(event.id)
        self.lane.note_gap(event.id, "arrived", f"event {event.id} arrived late (it was "
                           "missing while later ones were delivered)", logging.INFO)
        if self.plugin is not None and self.plugin.wants(event):
            if waited is None:
                self.backlog[event.id] = time.time()
            self._deliver(event, late=True)
        else:
            self.backlog.pop(event.id, None)

    def _check_backlog(self) -> bool:
        if not self.backlog or time.monotonic() < self._next_backlog_check:
            return False
        self._next_backlog_check = time.monotonic() + BACKLOG_CHECK_S
        lane = self.lane
        progressed = False
        for event in lane.store.get_events(sorted(self.backlog)):
            progressed = True
            if event.is_gap:
                self.backlog.pop(event.id, None)  # another plugin gave up on it
                continue
            self._arrived(event)
        now = time.time()
        for event_id, expires in sorted(self.backlog.items()):
            if expires <= now:
                progressed = True
                self._give_up(event_id, f"gave up waiting for event {event_id} after "
                              f"{lane.settings.gap_timeout_s:g} s")
        if progressed and self.backlog != self.cursor.backlog:
            self._commit(self.pos, inflight=None)
        return progressed


def _check_json(state: dict[str, Any]) -> None:
    """ctx.state must stay JSON: say so at the callback that broke it, not later."""
    try:
        json.dumps(state)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"ctx.state must hold JSON values only ({exc})") from None

