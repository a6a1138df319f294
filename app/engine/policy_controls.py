"""The engine's transfer policy: limits, live controls, and how one file is moved.

A mixin of :class:`app.engine.engine.Engine`, kept apart so the scheduler reads as a
scheduler. It moves each file through :meth:`_move_file` (the conflict look at the target
first, app.policy.conflict) and adds to the Engine API (all thread-safe, all quick,
callable from the tray's Qt thread):

* :meth:`set_bandwidth_limit` / :meth:`clear_bandwidth_limit` / :meth:`bandwidth_status`;
* :meth:`set_transfers` / :meth:`transfer_status`;
* settings changes on disk are applied within a second (``sitesync limit`` in another
  process edits the settings file; this is how a running engine hears about it).

Runtime overrides are not saved: they last until cleared or until the engine stops, like
rclone's ``rc core/bwlimit``. To keep a limit, change the settings (``sitesync limit``).
"""

from __future__ import annotations

import abc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from app.engine.transfer import CancelToken, ProgressCallback, TransferResult, transfer_file
from app.errors import ConfigError, IntegrityError, SiteSyncError, StoreUnavailableError
from app.events.bus import EventBus
from app.events.types import (
    ConflictResolved,
    IntegrityAlert,
    RepresentationCompleted,
    SubscriptionMatched,
)
from app.model import Claim, Direction, RepresentationHead, WorkItem
from app.policy.bandwidth import BandwidthLimiter, LimitStatus, Rate, parse_rate
from app.policy.concurrency import SlotTable
from app.policy.conflict import adopted_result, decide
from app.policy.staging import CompletionQueue, complete, staged_path
from app.policy.subscriptions import SubscriptionRule, SubscriptionScanner
from app.settings import MACHINE_SITE_KEYS, Settings, SiteConfig, load_settings
from app.store.base import Store
from providers.base import Provider

if TYPE_CHECKING:
    from app.engine.engine import SitePair

__all__ = ["PolicyControls", "TransferStatus"]

_log = logging.getLogger(__name__)
_KEEP = object()


@dataclass(frozen=True)
class TransferStatus:
    """Concurrency of one site and direction, for the tray."""

    site: str
    direction: Direction
    limit: int
    running: int
    #: "override" (set at runtime), "setting" (sites.<name>.transfers) or "default".
    origin: str


#: Seconds between looks for new publishes matching a subscription.
SUBSCRIPTION_SCAN_S = 2.0
#: Seconds between looks for staged representations whose completion was interrupted.
RECOVERY_SCAN_S = 30.0


class PolicyControls(abc.ABC):
    """Mixin: needs ``store``, ``settings``, ``bus``, ``_wake``, ``_stopping``, ``_clock``,
    ``paused``, ``pairs()`` and ``_provider()`` from the Engine (abstract here, so a class
    that mixes it in without them cannot be instantiated)."""

    store: Store
    settings: Settings
    bus: EventBus
    _wake: threading.Event
    _stopping: threading.Event
    _clock: Callable[[], datetime]

    @abc.abstractmethod
    def pairs(self) -> list[SitePair]:
        """The site pairs the engine serves (Engine.pairs)."""

    @abc.abstractmethod
    def _provider(self, project: str, site: str) -> Provider:
        """The engine's cached provider of ``site`` in ``project`` (Engine._provider)."""

    def _init_policy(self, settings: Settings, state_path: Path | None = None) -> None:
        self.bandwidth = BandwidthLimiter()
        self.slots = SlotTable(settings.engine.workers_per_site)
        self._settings_mtime = _mtime(settings)
        self._settings_problem: int | None = None
        self._completions = CompletionQueue()
        self._completing = 0
        self._recovered = False  # the first look for interrupted completions is done
        self._scanner = SubscriptionScanner(
            self.store, state_path.with_name("subscriptions.json") if state_path else None)
        self._policy_thread: threading.Thread | None = None
        self._apply_policy(settings)

    def _apply_policy(self, settings: Settings) -> None:
        """Load limits from settings (global ``sites`` block; see MACHINE_SITE_KEYS)."""
        sites = settings.sites
        self.bandwidth.configure({n: c.bwlimit for n, c in sites.items() if c.bwlimit})
        self.slots.configure({n: c.transfers for n, c in sites.items() if c.transfers},
                             settings.engine.workers_per_site)

    # -- moving one file ------------------------------------------------------------------------

    def _move_file(
        self, item: WorkItem, source: Provider, target: Provider, token: CancelToken,
        on_progress: ProgressCallback | None = None,
        on_start: Callable[[int], None] | None = None,
        defer_sync: bool = False,
    ) -> TransferResult:
        """Move one file under the transfer policy: look at the target first (adopt the
        same bytes, apply the conflict policy to different ones), then transfer."""
        started = time.monotonic()
        policy = self.settings.project(item.project).conflict_policy_for(
            item.source_site, item.target_site)

        def on_conflict(name: str, outcome: str, detail: str, kept_as: str) -> None:
            _log.warning("%s", detail)
            self.bus.publish(ConflictResolved(
                self._clock(), item.project, item.repre_id, item.file_id, item.path,
                item.source_site, item.target_site, item.direction, policy=name,
                outcome=outcome, detail=detail, kept_as=kept_as))

        decision = decide(item, source, target, token, policy, self._clock(), on_conflict)
        if decision.adopt:
            _log.info("%s was already on %s with the published content; adopted",
                      item.path, item.target_site)
            return replace(adopted_result(decision, time.monotonic() - started),
                           staged=item.atomic)
        if not item.atomic:
            return transfer_file(item, source, target, token, on_progress=on_progress,
                                 on_start=on_start, defer_sync=defer_sync)
        result = transfer_file(item, source, target, token, on_progress=on_progress,
                               on_start=on_start, target_path=staged_path(item.path),
                               defer_sync=defer_sync)
        return replace(result, staged=True)

    def _record_moved(self, claim: Claim, result: TransferResult) -> bool:
        """Record a moved file: available, or for a "when complete" file staged, and its
        representation queued for completion."""
        item = claim.item
        if not result.staged:
            return self.store.record_success(claim, result.provider_id, result.checksum,
                                             self._clock())
        recorded = self.store.record_staged(claim, result.checksum, self._clock())
        if recorded:
            self._completions.note(item.project, item.repre_id, item.target_site)
        return recorded

    # -- the policy thread: subscriptions and completions ---------------------------------------

    def _start_policy(self) -> None:
        self._policy_thread = threading.Thread(target=self._policy_loop, name="sitesync-policy",
                                               daemon=True)
        self._policy_thread.start()

    def _stop_policy(self) -> None:
        if self._policy_thread is not None:
            self._policy_thread.join(10.0)  # a completion in progress finishes its file

    def _policy_pending(self) -> bool:
        """A representation is waiting to be (or being) completed, or the first look for
        completions a restart interrupted has not happened yet."""
        return bool(not self._recovered or len(self._completions) or self._completing)

    def _policy_loop(self) -> None:
        next_scan = next_recovery = 0.0
        while not self._stopping.wait(0.05):
            if self.paused:  # type: ignore[attr-defined]
                continue
            try:
                for key in self._completions.take_due():
                    self._complete(*key)
                now = time.monotonic()
                if now >= next_scan:
                    next_scan = now + SUBSCRIPTION_SCAN_S
                    self._scan_subscriptions()
                if now >= next_recovery:
                    next_recovery = now + RECOVERY_SCAN_S
                    self._recover_staged()
                    self._recovered = True
            except StoreUnavailableError as exc:
                _log.warning("transfer policy waits for the database: %s", exc)
                self._stopping.wait(2.0)
            except Exception:
                _log.exception("transfer policy error")
                self._stopping.wait(2.0)

    def _complete(self, project: str, repre_id: str, site: str) -> None:
        self._completing += 1
        try:
            try:
                provider = self._provider(project, site)
            except SiteSyncError as exc:
                _log.error("cannot complete %s on %s: %s", repre_id, site, exc)
                return
            done = complete(self.store, project, repre_id, site, provider, self._clock())
        finally:
            self._completing -= 1
        if done.files:
            _log.info("%s: %d file(s) of %s moved into place on %s together", project,
                      done.files, repre_id, site)
            self.bus.publish(RepresentationCompleted(self._clock(), project, repre_id, site,
                                                     done.files, done.kept))
        if done.files or done.requeued:
            self._wake.set()

    def _recover_staged(self) -> None:
        """Finish completions a crash or a stop interrupted."""
        for pair in self.pairs():
            for site in (pair.active, pair.remote):
                for repre_id in self.store.staged_representations(pair.project, site):
                    self._completions.note(pair.project, repre_id, site)

    def _scan_subscriptions(self) -> None:
        rules = tuple(r for r in self.settings.subscriptions if r.enabled)
        if not rules:
            return
        projects = []
        for info in self.store.list_projects():
            if info.paused or not self.settings.project(info.name).enabled:
                continue
            if any(rule.covers_project(info.name) for rule in rules):
                projects.append(info.name)
        self._scanner.scan(projects, rules, self._subscribe)

    def _subscribe(self, project: str, head: RepresentationHead, rule: SubscriptionRule,
                   index: int) -> None:
        added = self.store.add_site(project, head.id, rule.site, priority=rule.priority,
                                    atomic=rule.when_complete)
        if added:
            _log.info("subscription %s: %s %s/%s %s -> %s (%s)", rule.label(index), project,
                      head.asset, head.subset, head.representation, rule.site, rule.mode)
            self.bus.publish(SubscriptionMatched(self._clock(), project, head.id, rule.site,
                                                 rule.label(index), rule.mode, added))
            self._wake.set()

    def _report_integrity(self, item: WorkItem, exc: Exception) -> None:
        """A published file that changed after publishing: say so on the bus."""
        if not isinstance(exc, IntegrityError):
            return
        self.bus.publish(IntegrityAlert(
            self._clock(), item.project, item.repre_id, item.file_id, item.path,
            exc.site or item.source_site, detail=str(exc), expected=exc.expected,
            found=exc.found,
            action=f"re-publish the file, or reset site '{exc.site or item.source_site}' for "
                   "it to fetch a good copy from another site"))

    # -- bandwidth ---------------------------------------------------------------------------

    def set_bandwidth_limit(self, site: str, upload: Rate | str | object = _KEEP,
                            download: Rate | str | object = _KEEP) -> None:
        """Limit ``site`` now, until cleared: ``upload`` is traffic into the site,
        ``download`` out of it; each a rate in bytes/s, rclone text ("10M", "512k"), or
        None / "off" for unlimited. A direction left out keeps its current limit."""
        for direction, value in ((Direction.UPLOAD, upload), (Direction.DOWNLOAD, download)):
            if value is _KEEP:
                continue
            rate = parse_rate(value) if isinstance(value, str) else value
            if rate is not None and (not isinstance(rate, int | float) or rate <= 0):
                raise ValueError(f"bandwidth limit must be above zero, not {value!r}")
            self.bandwidth.set_override(site, direction, None if rate is None else float(rate))
        self._wake.set()

    def clear_bandwidth_limit(self, site: str, direction: Direction | None = None) -> None:
        """Drop runtime limits of ``site`` (one direction or both): settings apply again."""
        self.bandwidth.clear_override(site, direction)
        self._wake.set()

    def bandwidth_status(self, sites: Iterable[str] | None = None) -> list[LimitStatus]:
        """Limit in force and measured rate per site and direction (by default every
        configured site and both sites of every pair)."""
        return self.bandwidth.status(self._policy_sites() if sites is None else sites)

    # -- concurrency -------------------------------------------------------------------------

    def set_transfers(self, site: str, upload: int | object | None = _KEEP,
                      download: int | object | None = _KEEP) -> None:
        """Transfers running at once into (``upload``) and out of (``download``) ``site``,
        until changed; None goes back to the settings. Running transfers are never
        stopped: a lower limit holds new ones until enough have finished."""
        for direction, value in ((Direction.UPLOAD, upload), (Direction.DOWNLOAD, download)):
            if value is _KEEP:
                continue
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"transfers must be a whole number of at least 1, not {value!r}")
            self.slots.set_override(site, direction, value)  # type: ignore[arg-type]
        self._wake.set()

    def transfer_status(self, sites: Iterable[str] | None = None) -> list[TransferStatus]:
        names = self._policy_sites() if sites is None else list(sites)
        return [
            TransferStatus(site, d, self.slots.limit(site, d), self.slots.running(site, d),
                           self.slots.origin(site, d))
            for site in names for d in (Direction.UPLOAD, Direction.DOWNLOAD)
        ]

    def _policy_sites(self) -> list[str]:
        try:
            pairs = self.pairs()
        except SiteSyncError:
            pairs = []
        paired = [s for p in pairs for s in (p.active, p.remote)]
        return list(dict.fromkeys([*paired, *self.settings.sites]))

    # -- settings on disk ----------------------------------------------------------------------

    def _reload_settings_if_changed(self) -> bool:
        """Apply the settings file when it changed on disk (another process saved it);
        an invalid file is reported once and the running settings are kept."""
        mtime = _mtime(self.settings)
        if mtime is None or mtime == self._settings_mtime:
            return False
        self._settings_mtime = mtime
        try:
            settings = load_settings(self.settings.path)
        except (ConfigError, OSError) as exc:
            if self._settings_problem != mtime:
                self._settings_problem = mtime
                _log.error("settings file changed but cannot be used; keeping the running "
                           "settings: %s", exc)
            return False
        self.update_settings(settings)  # type: ignore[attr-defined]
        _log.info("settings reloaded from %s", settings.path)
        return True


def _mtime(settings: Settings) -> int | None:
    try:
        return os.stat(settings.path).st_mtime_ns
    except (OSError, TypeError, ValueError):
        return None


def provider_config_changed(old: SiteConfig | None, new: SiteConfig | None) -> bool:
    """Whether a site's provider must be rebuilt: anything but the machine limits
    (bandwidth, transfers) changed."""
    if old is None or new is None:
        return old is not new
    if (old.provider, dict(old.roots)) != (new.provider, dict(new.roots)):
        return True

    def storage(config: SiteConfig) -> dict:
        return {k: v for k, v in config.options.items() if k not in MACHINE_SITE_KEYS}

    return storage(old) != storage(new)
