"""The engine: a background thread that keeps every configured site pair in sync.

Unlike OpenPype's loop (poll every 60 s, a batch of at most 50 files on 3 threads, wait
for the slowest before the next batch), this scheduler is continuous:

* a worker slot that frees is refilled at once from the store's priority-ordered work;
* the loop only sleeps when there is nothing to do, and wakes early on a database change,
  a user action or a finished transfer (``loop_delay`` is just the safety poll);
* every transfer runs under a lease in the database, renewed while it runs, so several
  engines on one database never move the same file and a crashed engine's work is taken
  over when its lease expires;
* failures are classified: transient ones come back after an exponential back-off,
  permanent ones stop at once; a pause, a shutdown or a crash never counts as a try;
* a site that cannot take transfers for a while (Drive's daily upload cap, a full drive:
  ``SiteUnavailableError``) is held: its files go back to the queue without counting a
  try, and nothing moves to or from it until the hold ends; the state message says why.

All public methods are thread-safe; the tray calls them from the Qt thread, which never
blocks on them (they only persist intent and wake the loop).
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from app.engine.batcher import Batcher
from app.engine.policy_controls import PolicyControls, provider_config_changed
from app.engine.retry import next_attempt_at
from app.engine.transfer import CancelToken, TransferResult
from app.errors import (
    CancelledTransfer,
    PermanentError,
    SiteSyncError,
    SiteUnavailableError,
    StoreUnavailableError,
    TransientError,
)
from app.events.bus import EventBus
from app.events.types import (
    EngineStateChanged,
    FileFailed,
    FileProgress,
    FileStaged,
    FileSynced,
    IntegrityAlert,
    TransferStarted,
    TransferStopped,
)
from app.model import Claim, Direction, EventType, WorkItem
from app.policy.backlog import FETCH as BACKLOG_FETCH
from app.policy.backlog import WorkBacklog
from app.policy.bandwidth import ThrottledProvider
from app.policy.concurrency import claim_windows, slot_keys
from app.settings import ProjectSettings, Settings, SiteConfig
from app.store.base import Store
from providers.base import Provider
from providers.registry import create_provider

__all__ = ["Engine", "SitePair", "utc_now", "write_engine_paused"]

#: Committed files waiting for the finisher (durable + recorded) before no more is claimed.
_MAX_FINISHING = 512

_log = logging.getLogger(__name__)

#: Thread cap per executor: threads are only created for submitted work, which the
#: claim windows bound to twice the transfer limits; this is only a backstop.
_MAX_THREADS = 512

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class SitePair:
    """One (project, active site, remote site) the engine keeps in sync."""

    project: str
    active: str
    remote: str


@dataclass
class _Job:
    item: WorkItem
    claim: Claim
    token: CancelToken = field(default_factory=CancelToken)
    lock: threading.Lock = field(default_factory=threading.Lock)
    pair: SitePair | None = None
    started: float = field(default_factory=time.monotonic)
    # Progress goes to the database only for transfers that last: a small file's one
    # progress write would cost as much as its transfer.
    last_db_progress: float = field(default_factory=time.monotonic)
    last_event: float = 0.0
    # Set when the bytes are committed and the job waits for the finisher to record it.
    target: Provider | None = None
    result: TransferResult | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.item.repre_id, self.item.file_id, self.item.target_site)


class _EngineState:
    """The engine-level pause, persisted in a small JSON file so it survives a restart
    (OpenPype kept it in memory, and "Unpause" did not even restart its loop).

    `sitesync pause` in another process writes the same file; :meth:`reload` notices.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.paused = False
        self._mtime: float | None = None
        self.reload()

    def reload(self) -> bool:
        """Re-read the file if it changed; True if the pause flag changed."""
        if self.path is None:
            return False
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return False
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        before = self.paused
        try:
            self.paused = bool(json.loads(self.path.read_text()).get("paused", False))
        except (OSError, ValueError):
            _log.warning("engine state %s unreadable; keeping paused=%s", self.path, before)
        return self.paused != before

    def save(self) -> None:
        if self.path is not None:
            write_engine_paused(self.path, self.paused)
            self._mtime = self.path.stat().st_mtime_ns


def write_engine_paused(path: Path, paused: bool) -> None:
    """Persist the engine pause atomically (used by the engine and `sitesync pause`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # state: owner-only
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps({"paused": paused}))
    os.chmod(tmp, 0o600)  # an older .tmp left by a crash may have another mode
    os.replace(tmp, path)


class Engine(PolicyControls):
    """Runs sync for every enabled project in a background thread.

    ``store`` must be usable from several threads (both back-ends are). ``owner`` names
    this engine in leases; it defaults to ``<local_id>-<random>`` so two engines on one
    machine are still told apart.
    """

    #: The sweep of abandoned part files runs this long after start (so a `--once` run
    #: that finishes sooner does not walk the sites), then every SWEEP_INTERVAL_S.
    SWEEP_DELAY_S = 60.0
    SWEEP_INTERVAL_S = 6 * 3600.0

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        bus: EventBus | None = None,
        owner: str | None = None,
        clock: Clock = utc_now,
        state_path: Path | None = None,
        provider_factory: Callable[[str, str, dict], Provider] = create_provider,
        serve_site: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.bus = bus or EventBus()
        # Integrity alerts change no claim state, so no store write carries them into the
        # event log; they are appended when published (app.hooks plugins react to them).
        self.bus.subscribe(self._log_integrity_alert, IntegrityAlert)
        self.owner = owner or f"{settings.local_id}-{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._provider_factory = provider_factory
        self._serve_site = serve_site if serve_site is not None else settings.engine.serve_site
        self._state = _EngineState(state_path)
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._jobs: dict[tuple[str, str, str], _Job] = {}
        self._providers: dict[tuple[str, str], Provider] = {}
        self._pair_problems: dict[SitePair, str] = {}
        # Held sites: name -> (monotonic time the hold ends, message).
        self._holds: dict[str, tuple[float, str]] = {}
        self._thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._finisher: Batcher[_Job] = Batcher(self._finish, name="sitesync-finish")
        self._sweeper: threading.Thread | None = None
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._pairs_cache: tuple[float, list[SitePair]] = (0.0, [])
        self._state_name = "stopped"
        self._message = ""
        self._last_published: tuple[str, int, str] | None = None
        self._once = False
        self._last_check = 0.0
        self._counts = {"synced": 0, "failed": 0}
        #: Monotonic times at which files this engine failed are due again (a heap).
        self._retry_due: list[float] = []
        self._init_policy(settings, state_path)
        #: Work found ahead of the claim windows (app.policy.backlog).
        self._backlog = WorkBacklog()

    # -- public API ---------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state_name

    @property
    def message(self) -> str:
        return self._message

    @property
    def paused(self) -> bool:
        return self._state.paused

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._jobs)

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def start(self, once: bool = False) -> None:
        """Start the background thread. With ``once`` it stops by itself when nothing is
        left that can be done now (``sitesync serve --once``)."""
        if self._thread is not None:
            raise RuntimeError("engine already started")
        self._once = once
        self._thread = threading.Thread(target=self._run, name="sitesync-engine", daemon=True)
        self._watcher = threading.Thread(target=self._watch_store, name="sitesync-watch", daemon=True)
        self._sweeper = threading.Thread(target=self._sweep_loop, name="sitesync-sweep", daemon=True)
        self._set_state("starting")
        self._finisher.start()
        self._thread.start()
        self._watcher.start()
        self._sweeper.start()
        self._start_policy()

    def stop(self, drain: bool = False, timeout_s: float = 30.0) -> None:
        """Stop. ``drain`` lets running transfers finish (up to ``timeout_s``); otherwise
        they are cancelled at once, keeping partial data for a resume and counting no try."""
        self._stopping.set()
        if not drain:
            self._cancel(lambda job: True, "SiteSync is shutting down")
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if drain and not self._wait_jobs(deadline):
            self._cancel(lambda job: True, "SiteSync is shutting down")
        with self._lock:
            executors = list(self._executors.values())
        for executor in executors:
            # Queued jobs still run, see their cancelled token at once and release.
            executor.shutdown(wait=True)
        # Workers are done: record what they committed (their bytes are verified).
        self._finisher.close()
        if self._watcher is not None:
            self._watcher.join(2.0)
        if self._sweeper is not None:
            self._sweeper.join(2.0)  # a walk of a slow NAS is not waited for
        self._stop_policy()
        for provider in self._providers.values():
            try:
                provider.close()
            except Exception:
                _log.exception("closing provider %s", provider.site)
        self._providers.clear()
        self._set_state("stopped")

    def wait_stopped(self, timeout_s: float | None = None) -> bool:
        """Block until the loop ends (``once`` mode or stop); True if it ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def pause(self) -> None:
        """Pause the whole engine (persisted): no new work, running transfers stop now."""
        self._state.paused = True
        self._state.save()
        self._cancel(lambda job: True, "syncing paused")
        self._wake.set()

    def resume(self) -> None:
        self._state.paused = False
        self._state.save()
        with self._lock:
            self._holds.clear()  # the user asked to go on: try held sites again now
        self._wake.set()

    def pause_project(self, project: str, paused: bool = True) -> None:
        self.store.set_project_paused(project, paused)
        self._pairs_cache = (0.0, [])
        self._backlog.clear()
        if paused:
            self._cancel(lambda job: job.item.project == project, f"project {project} paused")
        self._wake.set()

    def pause_representation(self, project: str, repre_id: str, site: str, paused: bool = True) -> None:
        self.store.set_paused(project, repre_id, site, paused)
        self._backlog.clear()
        if paused:
            self._cancel(
                lambda job: job.item.project == project and job.item.repre_id == repre_id
                and site in (job.item.source_site, job.item.target_site),
                "representation paused",
            )
        self._wake.set()

    def sync_now(self) -> None:
        """Look for work immediately (after a user action in another process, say)."""
        self._backlog.clear()
        self._wake.set()

    def update_settings(self, settings: Settings) -> None:
        """Apply new settings; providers whose site configuration changed are rebuilt on
        next use (a new bandwidth or transfer limit keeps the connections)."""
        with self._lock:
            previous, self.settings = self.settings, settings
            old = [key for key in self._providers
                   if provider_config_changed(_site_or_none(previous, *key),
                                              _site_or_none(settings, *key))]
            stale = [self._providers.pop(key) for key in old]
            self._pairs_cache = (0.0, [])
            self._pair_problems.clear()
            self._apply_policy(settings)
            self._holds.clear()
        self._backlog.clear()
        for provider in stale:
            provider.close()
        self._wake.set()

    def pairs(self) -> list[SitePair]:
        """The site pairs this engine serves, from settings and the store's projects."""
        result = []
        for info in self.store.list_projects():
            try:
                ps = self.settings.project(info.name)
            except SiteSyncError as exc:
                self._note_problem(SitePair(info.name, "?", "?"), str(exc))
                continue
            if not ps.enabled or info.paused:
                continue
            result.extend(self._pairs_for(ps))
        return result

    # -- the loop -------------------------------------------------------------------------------

    def _pairs_for(self, ps: ProjectSettings) -> Iterator[SitePair]:
        if self._serve_site:
            # A headless server is a site itself (e.g. "studio"): it serves its pairs with
            # the project's remote site and the always-accessible sites, as itself.
            partners = [ps.remote_site, ps.active_site, *ps.always_accessible_on]
            seen = set()
            for partner in partners:
                if partner and partner != self._serve_site and partner not in seen:
                    seen.add(partner)
                    yield SitePair(ps.project, self._serve_site, partner)
        elif ps.active_site and ps.remote_site and ps.active_site != ps.remote_site:
            yield SitePair(ps.project, ps.active_site, ps.remote_site)

    def _run(self) -> None:
        offline_since: float | None = None
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                if self._state.paused:
                    self._set_state("paused", in_flight=self.in_flight)
                    if self._once:
                        break  # nothing can be done now: `serve --once` must not hang
                    self._wake.wait(self.settings.loop_delay)
                    continue
                # Idle means: nothing was running before we looked for work, and the look
                # found nothing. (Checking only afterwards would race with transfers that
                # finish meanwhile and end `--once` early.)
                busy_before = self.in_flight
                dispatched, more = self._fill_slots()
                self._check_in_flight()
                if offline_since is not None:
                    offline_since = None
                    _log.info("database reachable again")
                busy = self.in_flight
                if busy or dispatched or busy_before:
                    self._set_state("running", in_flight=busy, message=self._problems_text())
                    # Wake when a slot frees (the worker sets _wake), on a change, or to
                    # renew leases.
                    self._wake.wait(self._renew_interval() if not more else 0.05)
                    continue
                if self._once:
                    if not self._policy_pending():
                        break
                    self._wake.wait(0.1)  # a representation is being completed
                    continue
                self._set_state("idle", message=self._problems_text())
                self._wake.wait(self._idle_wait())
            except StoreUnavailableError as exc:
                offline_since = offline_since or time.monotonic()
                self._set_state("offline", message=f"{exc}. Retrying automatically.")
                self._wake.wait(min(30.0, 1.0 + (time.monotonic() - offline_since) / 2))
            except Exception as exc:  # never let a bug kill the engine thread
                _log.exception("engine loop error")
                self._set_state("running", message=f"internal error: {exc}")
                self._wake.wait(5.0)
        if self._once:
            self._wait_jobs(None)
            self._set_state("stopped")

    def _idle_wait(self) -> float:
        """``loop_delay``, or less when a file this engine failed is due for its retry
        sooner, or a held site's hold ends: a back-off of seconds must not turn into the
        loop's minute."""
        wait = float(self.settings.loop_delay)
        now = time.monotonic()
        with self._lock:
            while self._retry_due and self._retry_due[0] <= now:
                heapq.heappop(self._retry_due)
            if self._retry_due:
                # A little late rather than early: find_work compares with the DB's time.
                wait = min(wait, self._retry_due[0] - now + 0.05)
            for until, _ in self._holds.values():
                wait = min(wait, until - now + 0.05)
        return max(0.05, wait)

    def _renew_interval(self) -> float:
        return max(0.2, min(5.0, self.settings.engine.lease_s / 3))

    def _watch_store(self) -> None:
        """Turn database changes (by anyone) into wake-ups of the loop."""
        while not self._stopping.is_set():
            try:
                marker = self.store.change_marker()
                while not self._stopping.is_set():
                    if self._state.reload():
                        if self._state.paused:
                            self._cancel(lambda job: True, "syncing paused")
                        self._wake.set()
                    self._reload_settings_if_changed()
                    if self.store.wait_for_change(marker, 1.0):
                        self._wake.set()
                        # Our own workers commit a result per file; waking the loop for
                        # each of them (and re-reading the marker) cost more than the
                        # files. Changes made meanwhile are seen 50 ms later at most.
                        self._stopping.wait(0.05)
                        break
            except StoreUnavailableError:
                self._stopping.wait(2.0)
            except Exception:
                _log.exception("store watcher error")
                self._stopping.wait(2.0)

    def _sweep_loop(self) -> None:
        delay = self.SWEEP_DELAY_S
        while not self._stopping.wait(delay):
            try:
                self.sweep_partials()
            except StoreUnavailableError:
                pass  # the loop reports the outage; try again next time
            except Exception:
                _log.exception("sweeping abandoned part files")
            delay = self.SWEEP_INTERVAL_S

    def sweep_partials(self) -> int:
        """Delete temporary files of interrupted transfers nobody resumed within
        ``engine.partial_max_age_h`` on every site this engine serves; returns how many.

        Without this, a part file whose file was later removed from the site, deleted or
        failed for good would stay on the site for ever. Resumable work is safe: a
        transfer resumes (and so touches) its part long before that age, and a part being
        written is locked, which the provider respects.
        """
        max_age_h = self.settings.engine.partial_max_age_h
        if max_age_h <= 0:
            return 0
        removed = 0
        done: set[tuple[str, str]] = set()
        for pair in self._cached_pairs():
            for site in (pair.active, pair.remote):
                if self._stopping.is_set():
                    return removed
                try:
                    config = self.settings.project(pair.project).site(site)
                    key = (site, repr(sorted(config.roots.items())))
                    if key in done:
                        continue  # the same storage under another project
                    done.add(key)
                    paths = self._provider(pair.project, site).sweep_partials(max_age_h * 3600)
                except SiteSyncError as exc:
                    _log.warning("cannot sweep part files on site %s: %s", site, exc)
                    continue
                for path in paths:
                    _log.info("removed abandoned part file %s on site %s", path, site)
                if paths:
                    _log.warning("removed %d abandoned part file(s) older than %g h on site %s",
                                 len(paths), max_age_h, site)
                removed += len(paths)
        return removed

    def _cached_pairs(self) -> list[SitePair]:
        """Pairs, re-read at most twice a second: the loop wakes after every finished
        file, and asking the database for projects each time would cost more than the
        transfer of a small file. User actions through this engine clear the cache."""
        stamp, pairs = self._pairs_cache
        if time.monotonic() - stamp > 0.5:
            pairs = self.pairs()
            self._pairs_cache = (time.monotonic(), pairs)
        return pairs

    def _fill_slots(self) -> tuple[int, bool]:
        """Claim work for every pair whose queue runs low; returns (dispatched, maybe_more).

        Each site and direction gets its transfer limit running (``sites.<name>.transfers``,
        else ``workers_per_site``; see app.policy.concurrency) plus as many claimed and
        waiting, so a worker that finishes starts the next file at once, and the database
        is asked in batches (one query, one claim transaction per window) instead of once
        per file.
        """
        dispatched = 0
        more = False
        engine_settings = self.settings.engine
        with self._lock:
            finishing = sum(1 for job in self._jobs.values() if job.result is not None)
        if finishing >= _MAX_FINISHING:
            return 0, True  # let the finisher catch up; new claims would only hold leases
        for pair in self._cached_pairs():
            if self._stopping.is_set():
                break
            if self._held(pair.active) or self._held(pair.remote):
                continue
            windows = claim_windows(pair.active, pair.remote, self._busy_by_slot(), self.slots)
            if not windows:
                continue  # its queues still hold claimed work
            ps = self.settings.project(pair.project)
            if not self._providers_ready(pair, ps):
                continue
            now = self._clock()
            items, maybe_more = self._find_for_windows(pair, ps.retry_cnt, now, windows)
            if not items:
                continue
            lease_until = now + timedelta(seconds=engine_settings.lease_s)
            claims = self.store.claim_many(items, self.owner, lease_until, now)
            more = more or maybe_more or len(claims) < len(items)
            for claim in claims:
                self._submit(_Job(item=claim.item, claim=claim, pair=pair))
            dispatched += len(claims)
        return dispatched, more

    def _find_for_windows(
        self, pair: SitePair, retry_cnt: int, now: datetime, windows: dict[Direction, int]
    ) -> tuple[list[WorkItem], bool]:
        """Up to ``windows[d]`` items per direction, most urgent first; and whether more
        may be waiting. Found ahead first (app.policy.backlog); else one query for both
        directions, fetching ahead, and a second, for one direction only, when the first
        was filled by the other direction's files."""
        with self._lock:
            exclude = frozenset((k[0], k[1]) for k in self._jobs)
        ahead = self._backlog.take(pair, windows, exclude)
        if ahead:
            return ahead, True
        only = next(iter(windows)) if len(windows) == 1 else None
        if only is not None and self._backlog.is_dry(pair, only):
            return [], False  # a slot freeing wakes the loop
        limit = max(sum(windows.values()), BACKLOG_FETCH)
        started = time.monotonic()
        found = self.store.find_work(pair.project, pair.active, pair.remote, retry_cnt, now,
                                     limit=limit, exclude=exclude, direction=only)
        query_s = time.monotonic() - started
        taken: dict[Direction, list[WorkItem]] = {d: [] for d in windows}
        surplus: list[WorkItem] = []
        for item in found:
            bucket = taken.get(item.direction)
            if bucket is not None and len(bucket) < windows[item.direction]:
                bucket.append(item)
            else:
                surplus.append(item)
        overflow = bool(surplus)
        self._backlog.keep(pair, surplus, query_s, replace=only is None)
        if only is not None and not found:
            self._backlog.mark_dry(pair, only, query_s)
        if overflow and len(found) == limit:
            for direction, bucket in taken.items():
                want = windows[direction] - len(bucket)
                if want > 0 and not self._backlog.is_dry(pair, direction):
                    seen = exclude | {(i.repre_id, i.file_id) for i in found}
                    extra = self.store.find_work(
                        pair.project, pair.active, pair.remote, retry_cnt, now, limit=want,
                        exclude=seen, direction=direction)
                    if not extra:
                        self._backlog.mark_dry(pair, direction, query_s)
                    bucket.extend(extra)
        items = [item for bucket in taken.values() for item in bucket]
        items.sort(key=lambda i: -i.priority)  # stable: keeps each direction's order
        more = overflow or any(len(taken[d]) == windows[d] for d in windows)
        return items, more

    def _busy_by_slot(self) -> dict[tuple[str, Direction], int]:
        """This engine's claimed transfers (running or waiting) per slot key.

        Files already committed and queued for the finisher hold no slot: counting them
        would starve the workers whenever recording lags behind copying."""
        busy: dict[tuple[str, Direction], int] = {}
        with self._lock:
            for job in self._jobs.values():
                if job.result is not None:
                    continue
                for key in slot_keys(job.item.source_site, job.item.target_site):
                    busy[key] = busy.get(key, 0) + 1
        return busy

    def _providers_ready(self, pair: SitePair, ps: ProjectSettings) -> bool:
        try:
            self._provider(pair.project, pair.active, ps)
            self._provider(pair.project, pair.remote, ps)
        except SiteSyncError as exc:
            self._note_problem(pair, str(exc))
            return False
        self._pair_problems.pop(pair, None)
        return True

    def _problems_text(self) -> str:
        with self._lock:
            holds = [message for _, message in self._holds.values()]
        return "; ".join(sorted(set(self._pair_problems.values()) | set(holds)))

    def _held(self, site: str) -> bool:
        """Whether ``site`` is held (see :meth:`_hold`); an expired hold is dropped."""
        with self._lock:
            hold = self._holds.get(site)
            if hold is None:
                return False
            if time.monotonic() < hold[0]:
                return True
            del self._holds[site]
        _log.info("site %s: hold ended, transfers go on", site)
        return False

    def _hold(self, site: str, seconds: float, message: str) -> None:
        """Stop moving files to or from ``site`` for ``seconds``: it said it cannot take
        any (SiteUnavailableError), so trying file after file would only fail them all."""
        until = time.monotonic() + max(0.0, seconds)
        when = (self._clock() + timedelta(seconds=max(0.0, seconds))).astimezone()
        text = f"site {site} paused until {when:%H:%M}: {message}"
        with self._lock:
            previous = self._holds.get(site)
            if previous is not None and previous[0] >= until:
                return
            self._holds[site] = (until, text)
        _log.warning("%s", text)

    def _note_problem(self, pair: SitePair, text: str) -> None:
        if self._pair_problems.get(pair) != text:
            _log.error("cannot sync %s (%s <-> %s): %s", pair.project, pair.active, pair.remote, text)
            self._pair_problems[pair] = text

    def _provider(self, project: str, site: str, ps: ProjectSettings | None = None) -> Provider:
        key = (project, site)
        with self._lock:
            provider = self._providers.get(key)
            if provider is None:
                ps = ps or self.settings.project(project)
                config = ps.site(site)
                options = {"root": dict(config.roots), **dict(config.options)}
                provider = self._provider_factory(config.provider, site, options)
                self._providers[key] = provider
            return provider

    def _submit(self, job: _Job) -> None:
        site = job.pair.remote if job.pair else job.item.target_site
        with self._lock:
            self._jobs[job.key] = job
            executor = self._executors.get(site)
            if executor is None:
                executor = ThreadPoolExecutor(max_workers=_MAX_THREADS,
                                              thread_name_prefix=f"sitesync-{site}")
                self._executors[site] = executor
        executor.submit(self._work, job)

    # -- one transfer, on a worker thread -------------------------------------------------------

    def _work(self, job: _Job) -> None:
        """Wait for a transfer slot on both sites (app.policy.concurrency), then move."""
        keys = slot_keys(job.item.source_site, job.item.target_site)
        if self._state.paused:
            # Claimed by a loop pass that began just before the pause: pause() cancelled
            # only the jobs it could see, so this one must not start either.
            job.token.cancel("syncing paused")
        if not self.slots.acquire(keys, job.token):
            _log.info("transfer of %s stopped before it started: %s", job.item.path,
                      job.token.reason)
            with job.lock:
                self._quietly(lambda: self.store.release(job.claim))
            with self._lock:
                self._jobs.pop(job.key, None)
            self._wake.set()
            return
        try:
            self._transfer(job)
        finally:
            self.slots.release(keys)

    def _transfer(self, job: _Job) -> None:
        item = job.item
        job.started = job.last_db_progress = time.monotonic()
        try:
            if self._held(item.source_site) or self._held(item.target_site):
                # Claimed before its site was held: give it back untouched.
                with job.lock:
                    self._quietly(lambda: self.store.release(job.claim))
                self._forget(job)
                return
            source = ThrottledProvider(self._provider(item.project, item.source_site),
                                       self.bandwidth.buckets_for(item.source_site,
                                                                  item.target_site),
                                       job.token)
            target = self._provider(item.project, item.target_site)
            job.result = self._move_file(
                item, source, target, job.token,
                on_progress=lambda done, size: self._progress(job, done, size),
                on_start=lambda offset: self.bus.publish(
                    TransferStarted(self._clock(), *self._file_fields(item),
                                    size=item.size, resumed_from=offset)),
                defer_sync=True,
            )
            job.target = target
            self._finisher.put(job)  # this worker moves on to the next file now
            return
        except CancelledTransfer as exc:
            _log.info("transfer of %s stopped: %s", item.path, exc)
            with job.lock:
                self._quietly(lambda: self.store.release(job.claim))
            self.bus.publish(TransferStopped(self._clock(), *self._file_fields(item),
                                             reason=str(exc)))
        except SiteUnavailableError as exc:
            self._hold(exc.site or item.target_site, exc.retry_after_s or 0.0, str(exc))
            with job.lock:
                self._quietly(lambda: self.store.release(job.claim))
            self.bus.publish(TransferStopped(self._clock(), *self._file_fields(item),
                                             reason=str(exc)))
        except Exception as exc:
            self._fail_with(job, exc)
        self._forget(job)

    def _finish(self, jobs: list[_Job]) -> None:
        """On the finisher thread: make a batch of committed files durable (each file's
        deferred fsync and rename, then one ``sync_committed`` per target site: one folder
        fsync for a whole burst of frames instead of one per file, with no worker waiting
        for any of it), then record the files, all in one store call where the store can.
        Only a durable file is ever recorded as available."""
        groups: dict[int, list[_Job]] = {}
        for job in jobs:
            if self._finish_deferred(job):
                groups.setdefault(id(job.target), []).append(job)
        for group in groups.values():
            target = group[0].target
            assert target is not None
            try:
                target.sync_committed([job.result.path or job.item.path for job in group])
            except Exception as exc:
                for job in group:
                    self._fail_with(job, exc)
                    self._forget(job)
                continue
            rest = self._record_batch(group)
            for job in rest:
                self._record_success(job)
                self._forget(job)

    def _finish_deferred(self, job: _Job) -> bool:
        """Complete the job's deferred commit (fsync, rename); False, with the job failed,
        if that fails."""
        assert job.result is not None
        pending = job.result.pending
        if pending is None:
            return True
        try:
            pending.finish_deferred()
        except Exception as exc:
            self._fail_with(job, exc)
            self._forget(job)
            return False
        return True

    def _record_batch(self, jobs: list[_Job]) -> list[_Job]:
        """Record the plain (not staged) files of ``jobs`` in one store call; returns the
        jobs still to record one by one (staged files, and those the database failed on:
        the single path retries through an outage)."""
        plain = [(job, job.result) for job in jobs
                 if job.result is not None and not job.result.staged]
        if len(plain) < 2:
            return jobs
        answers: list[bool | None] = [None] * len(plain)
        with contextlib.ExitStack() as held:
            # Only this thread ever holds more than one job lock, so the order is free.
            for job, _ in plain:
                held.enter_context(job.lock)
            try:
                answers = self.store.record_successes(
                    [(job.claim, result.provider_id, result.checksum) for job, result in plain],
                    self._clock())
            except StoreUnavailableError as exc:
                _log.warning("recording %d files at once failed, recording them one by one: %s",
                             len(plain), exc)
            except Exception:  # the single path reports it per file
                _log.exception("recording %d files at once failed, recording them one by one",
                               len(plain))
        done = []
        for (job, _), recorded in zip(plain, answers, strict=True):
            if recorded is not None:
                self._publish_recorded(job, recorded)
                done.append(job)
        if done:
            with self._lock:
                for job in done:
                    self._jobs.pop(job.key, None)
            self._wake.set()  # once for the batch: the loop refills every freed slot at once
        done_ids = {id(job) for job in done}
        return [job for job in jobs if id(job) not in done_ids]

    def _record_success(self, job: _Job) -> None:
        result = job.result
        assert result is not None
        with job.lock:
            recorded = self._with_store_retry(lambda: self._record_moved(job.claim, result))
        self._publish_recorded(job, recorded)

    def _publish_recorded(self, job: _Job, recorded: bool) -> None:
        item, result = job.item, job.result
        assert result is not None
        if recorded:
            with self._lock:
                self._counts["synced"] += 1
            done_event = FileStaged if result.staged else FileSynced
            self.bus.publish(done_event(self._clock(), *self._file_fields(item),
                                        size=result.size, checksum=result.checksum,
                                        seconds=result.seconds))
        else:
            _log.warning("claim on %s was lost before it was recorded; another engine "
                         "owns it now", item.path)
            self.bus.publish(TransferStopped(self._clock(), *self._file_fields(item),
                                             reason="the claim was lost"))

    def _forget(self, job: _Job) -> None:
        with self._lock:
            self._jobs.pop(job.key, None)
        self._wake.set()

    def _fail_with(self, job: _Job, exc: BaseException) -> None:
        """Record ``exc`` as one failed try, classified by its type."""
        if isinstance(exc, PermanentError):
            self._report_integrity(job.item, exc)
            self._fail(job, str(exc), permanent=True)
        elif isinstance(exc, TransientError):
            self._fail(job, str(exc), permanent=False, retry_after_s=exc.retry_after_s)
        elif isinstance(exc, SiteSyncError):
            self._fail(job, str(exc), permanent=False)
        else:
            _log.error("unexpected error moving %s", job.item.path, exc_info=exc)
            self._fail(job, f"internal error: {type(exc).__name__}: {exc}", permanent=False)

    def _log_integrity_alert(self, alert: IntegrityAlert) -> None:
        self._quietly(lambda: self.store.append_event(
            EventType.INTEGRITY_ALERT.value, alert.project, alert.at, site=alert.site,
            repre_id=alert.repre_id, file_id=alert.file_id,
            data={"path": alert.path, "detail": alert.detail, "expected": alert.expected,
                  "found": alert.found, "action": alert.action}))

    def _fail(self, job: _Job, error: str, permanent: bool, retry_after_s: float | None = None) -> None:
        item = job.item
        tries = item.tries + 1
        now = self._clock()
        ps = self.settings.project(item.project)
        engine_settings = self.settings.engine
        next_dt = None
        if not permanent and tries < ps.retry_cnt:
            next_dt = next_attempt_at(now, tries, engine_settings.backoff_base_s,
                                      engine_settings.backoff_max_s, retry_after_s)
        with job.lock:
            recorded = self._with_store_retry(
                lambda: self.store.record_failure(job.claim, error, now, next_dt, permanent=permanent))
        if recorded:
            with self._lock:
                self._counts["failed"] += 1
                if next_dt is not None:
                    due = time.monotonic() + max(0.0, (next_dt - now).total_seconds())
                    heapq.heappush(self._retry_due, due)
            _log.warning("%s -> %s failed (try %d): %s", item.path, item.target_site, tries, error)
            self.bus.publish(FileFailed(now, *self._file_fields(item), error=error, tries=tries,
                                        permanent=permanent or tries >= ps.retry_cnt,
                                        next_attempt_dt=next_dt))

    def _progress(self, job: _Job, done: int, size: int) -> None:
        now = time.monotonic()
        if now - job.last_event >= 0.1 or done == size:
            job.last_event = now
            elapsed = max(1e-6, now - job.started)
            self.bus.publish(FileProgress(self._clock(), *self._file_fields(job.item),
                                          bytes_done=done, size=size, bytes_per_s=done / elapsed))
        if now - job.last_db_progress >= self.settings.engine.progress_interval_s and size:
            job.last_db_progress = now
            with job.lock:
                self._quietly(lambda: self.store.record_progress(job.claim, done / size))

    @staticmethod
    def _file_fields(item: WorkItem) -> tuple:
        return (item.project, item.repre_id, item.file_id, item.path, item.source_site,
                item.target_site, item.direction)

    # -- leases, pauses, cancellation -----------------------------------------------------------

    def _check_in_flight(self) -> None:
        """Renew leases that are a third spent; stop transfers that were paused elsewhere
        (another process, the CLI) or whose claim was lost."""
        if time.monotonic() - self._last_check < 0.5:
            return
        self._last_check = time.monotonic()
        with self._lock:
            jobs = list(self._jobs.values())
        if not jobs:
            return
        lease = timedelta(seconds=self.settings.engine.lease_s)
        now = self._clock()
        paused_projects = {p.name for p in self.store.list_projects() if p.paused}
        for job in jobs:
            if job.item.project in paused_projects:
                job.token.cancel(f"project {job.item.project} paused")
                continue
            # A pause written by another process stops long transfers; one that ends
            # within a second is not worth a database read per file.
            long_running = time.monotonic() - job.started > 1.0
            if long_running and self._paused_in_store(job):
                job.token.cancel("representation paused")
                continue
            with job.lock:
                if job.token.cancelled or job.claim.lease_until - now > lease * 2 / 3:
                    continue
                renewed = self.store.extend_lease(job.claim, now + lease)
                if renewed is None:
                    job.token.cancel("the claim was lost (reset, removed or taken over)")
                else:
                    job.claim = renewed

    def _paused_in_store(self, job: _Job) -> bool:
        """Only this file's entries are read: a representation may have 100,000 files."""
        try:
            file = self.store.get_file(job.item.project, job.item.repre_id, job.item.file_id)
        except KeyError:
            job.token.cancel("representation deleted")
            return False
        return any(
            (state := file.site(name)) is not None and state.paused
            for name in (job.item.source_site, job.item.target_site)
        )

    def _cancel(self, predicate: Callable[[_Job], bool], reason: str) -> None:
        with self._lock:
            jobs = [job for job in self._jobs.values() if predicate(job)]
        for job in jobs:
            job.token.cancel(reason)

    def _wait_jobs(self, deadline: float | None) -> bool:
        while self.in_flight:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    # -- helpers --------------------------------------------------------------------------------

    def _with_store_retry(self, action: Callable[[], bool]) -> bool:
        """Results must not be lost to a short database outage: retry the write until the
        lease would have expired anyway."""
        deadline = time.monotonic() + self.settings.engine.lease_s
        delay = 0.5
        while True:
            try:
                return action()
            except StoreUnavailableError:
                if time.monotonic() > deadline or self._stopping.is_set():
                    _log.error("could not record a result: database unreachable")
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    @staticmethod
    def _quietly(action: Callable[[], object]) -> None:
        try:
            action()
        except StoreUnavailableError as exc:
            _log.warning("database write skipped: %s", exc)

    def _set_state(self, name: str, in_flight: int = 0, message: str = "") -> None:
        """Publish the state when what a user would see (state, count, message) changed."""
        snapshot = (name, in_flight, message)
        if snapshot == self._last_published:
            return
        self._last_published = snapshot
        self._state_name = name
        self._message = message
        self.bus.publish(EngineStateChanged(self._clock(), state=name, in_flight=in_flight,
                                            message=message))


def _site_or_none(settings: Settings, project: str, site: str) -> SiteConfig | None:
    """A site's configuration for a project, or None when it is no longer configured."""
    try:
        return settings.project(project).site(site)
    except SiteSyncError:
        return None
