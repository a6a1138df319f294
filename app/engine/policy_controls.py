"""The engine's transfer-policy controls: bandwidth and concurrency, live.

A mixin of :class:`app.engine.engine.Engine`, kept apart so the scheduler reads as a
scheduler. What it adds to the Engine API (all thread-safe, all quick, callable from the
tray's Qt thread):

* :meth:`set_bandwidth_limit` / :meth:`clear_bandwidth_limit` / :meth:`bandwidth_status`;
* :meth:`set_transfers` / :meth:`transfer_status`;
* settings changes on disk are applied within a second (``sitesync limit`` in another
  process edits the settings file; this is how a running engine hears about it).

Runtime overrides are not saved: they last until cleared or until the engine stops, like
rclone's ``rc core/bwlimit``. To keep a limit, change the settings (``sitesync limit``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.errors import ConfigError, SiteSyncError
from app.model import Direction
from app.policy.bandwidth import BandwidthLimiter, LimitStatus, Rate, parse_rate
from app.policy.concurrency import SlotTable
from app.settings import MACHINE_SITE_KEYS, Settings, SiteConfig, load_settings

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


class PolicyControls:
    """Mixin: needs ``settings``, ``_wake`` and ``pairs()`` from the Engine."""

    settings: Settings
    _wake: threading.Event

    def pairs(self) -> list[SitePair]:  # provided by Engine
        raise NotImplementedError

    def _init_policy(self, settings: Settings) -> None:
        self.bandwidth = BandwidthLimiter()
        self.slots = SlotTable(settings.engine.workers_per_site)
        self._settings_mtime = _mtime(settings)
        self._settings_problem: int | None = None
        self._apply_policy(settings)

    def _apply_policy(self, settings: Settings) -> None:
        """Load limits from settings (global ``sites`` block; see MACHINE_SITE_KEYS)."""
        sites = settings.sites
        self.bandwidth.configure({n: c.bwlimit for n, c in sites.items() if c.bwlimit})
        self.slots.configure({n: c.transfers for n, c in sites.items() if c.transfers},
                             settings.engine.workers_per_site)

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
