"""Settings as the rest of SiteSync sees them: frozen, typed, merged and resolved.

Everything a consumer would otherwise redo is done once at load: text numbers are
ints, ``"local"`` is this machine's ``local_id``, per-platform paths are the current
platform's, project overrides are merged over the global values. The engine, CLI and UI
never read the JSON document, so its quirks (OpenPype's names and text fields) stay in
the settings package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app import paths
from app.errors import ConfigError
from app.policy.bandwidth import BandwidthSchedule
from app.policy.concurrency import TransferLimits
from app.policy.conflict import ConflictPolicy
from app.policy.subscriptions import SubscriptionRule
from app.settings.schema import LOCAL_SITE

__all__ = ["EngineSettings", "HooksSettings", "ProjectSettings", "Settings", "SiteConfig"]


@dataclass(frozen=True)
class SiteConfig:
    """One site: its provider, its roots on this platform and its provider options.

    ``options`` holds every other key of the site (known ones type-checked and resolved,
    unknown ones as written) for the provider to read. It is left out of ``repr`` because
    it may hold passwords.
    """

    name: str
    provider: str
    roots: Mapping[str, str]
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.options.get("enabled", True))

    @property
    def alternative_sites(self) -> tuple[str, ...]:
        return tuple(self.options.get("alternative_sites", ()))

    @property
    def bwlimit(self) -> BandwidthSchedule | None:
        """The site's bandwidth limit for this machine (None: not limited)."""
        return self.options.get("bwlimit")

    @property
    def transfers(self) -> TransferLimits | None:
        """Transfers at once into/out of the site (None: engine.workers_per_site)."""
        return self.options.get("transfers")


@dataclass(frozen=True)
class EngineSettings:
    """Tuning of the sync engine (the ``engine`` block); seconds unless named otherwise."""

    workers_per_site: int = 8
    lease_s: float = 60.0
    backoff_base_s: float = 10.0
    backoff_max_s: float = 3600.0
    progress_interval_s: float = 1.0
    #: Site this engine acts as; "" = this machine's local_id (see Settings.serve_site).
    serve_site: str = ""
    #: Age (hours) at which an abandoned part file is swept; 0 disables the sweep.
    partial_max_age_h: float = 48.0


@dataclass(frozen=True)
class HooksSettings:
    """Event hook plugins (the ``hooks`` block); see docs/hooks.md.

    ``plugin_paths`` are absolute (relative ones were resolved against the settings
    file's folder). ``plugins`` holds each plugin's own block by plugin name (its file
    name without ``.py``): ``enabled`` (false = switched off) and the plugin's options.
    """

    enabled: bool = True
    plugin_paths: tuple[Path, ...] = ()
    gap_timeout_s: float = 60.0
    poll_interval_s: float = 2.0
    reload_interval_s: float = 2.0
    batch_size: int = 500
    stuck_after_s: float = 60.0
    retention_days: float = 30.0
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def plugin_enabled(self, name: str) -> bool:
        return self.plugins.get(name, {}).get("enabled", True) is not False

    def plugin_options(self, name: str) -> Mapping[str, Any]:
        """The plugin's block without ``enabled``: what its ``register`` reads."""
        return {k: v for k, v in self.plugins.get(name, {}).items() if k != "enabled"}


@dataclass(frozen=True)
class ProjectSettings:
    """What one project syncs, global values merged with ``projects.<name>`` overrides.

    ``active_site`` is OpenPype's name for the publish site (where artists work from);
    both it and ``remote_site`` are resolved, so ``"local"`` never appears here. ``sites``
    is keyed by real site names: this machine's site is under ``local_id``, the implicit
    ``studio`` site is always present.
    """

    project: str
    enabled: bool
    retry_cnt: int
    loop_delay: int
    active_site: str
    remote_site: str
    always_accessible_on: tuple[str, ...]
    sites: Mapping[str, SiteConfig] = field(repr=False)
    local_id: str = ""
    #: What to do when a target already holds a different file (app.policy.conflict).
    conflict_policy: ConflictPolicy = field(default_factory=ConflictPolicy)

    def conflict_policy_for(self, source: str, target: str) -> str:
        """``this``, ``other``, ``newer`` or ``fail`` for a transfer source -> target."""
        return self.conflict_policy.for_pair(source, target, self.local_id)

    def site(self, name: str) -> SiteConfig:
        """The configuration of site ``name`` (``"local"`` = this machine).

        Raises ConfigError naming the site and the fix, so a caller can show it as is.
        """
        key = self.local_id if name == LOCAL_SITE and self.local_id else name
        try:
            return self.sites[key]
        except KeyError:
            where = f" for project {self.project!r}" if self.project else ""
            known = ", ".join(sorted(self.sites)) or "none"
            raise ConfigError(
                f"site {name!r} is not configured{where} (configured: {known})",
                fix=f"add a site {name!r} under 'sites' in the settings, "
                "or change publish_site/remote_site",
                key=f"sites.{name}",
            ) from None

    @property
    def syncing(self) -> bool:
        """Whether there is anything to sync: enabled, and two different sites."""
        return self.enabled and bool(self.remote_site) and self.active_site != self.remote_site

    @property
    def working_sites(self) -> tuple[str, ...]:
        """Active, remote and always-accessible sites, each once (OpenPype's
        ``_working_sites``)."""
        names = (self.active_site, self.remote_site, *self.always_accessible_on)
        return tuple(dict.fromkeys(n for n in names if n))


@dataclass(frozen=True)
class Settings:
    """The whole settings file, validated and resolved.

    ``raw`` is the document as loaded, read-only (change settings with ``update_settings``).
    ``defaults`` are the global values as a ProjectSettings; ``projects`` the projects
    listed under ``projects``. Ask :meth:`project` rather than reading ``projects``:
    a project not listed is enabled with the global values.
    """

    path: Path
    raw: Mapping[str, Any] = field(repr=False)
    database_url: str = field(repr=False)
    database_name: str
    local_id: str
    engine: EngineSettings
    defaults: ProjectSettings
    projects: Mapping[str, ProjectSettings] = field(repr=False)
    #: Rules adding sites to new publishes (app.policy.subscriptions); ``site`` resolved
    #: (``local`` is this machine's local_id).
    subscriptions: tuple[SubscriptionRule, ...] = ()
    hooks: HooksSettings = field(default_factory=HooksSettings)
    #: ProjectSettings made for projects not listed (see :meth:`project`); not a setting.
    _unlisted: dict[str, ProjectSettings] = field(default_factory=dict, init=False, repr=False,
                                                  compare=False)

    def project(self, name: str) -> ProjectSettings:
        """Settings for project ``name``, global defaults merged with its overrides.

        The defaults for an unlisted project are made once per name: the engine asks for
        a file's project several times per file."""
        found = self.projects.get(name)
        if found is not None:
            return found
        made = self._unlisted.get(name)
        if made is None:
            made = self._unlisted[name] = replace(self.defaults, project=name)
        return made

    @property
    def project_names(self) -> tuple[str, ...]:
        """Projects with their own block under ``projects`` (others use the defaults)."""
        return tuple(self.projects)

    @property
    def sites(self) -> Mapping[str, SiteConfig]:
        """Global sites by real name (this machine's under ``local_id``, ``studio`` always)."""
        return self.defaults.sites

    def site(self, name: str) -> SiteConfig:
        """A global site by name; ``"local"`` = this machine. Raises ConfigError."""
        return self.defaults.site(name)

    @property
    def retry_cnt(self) -> int:
        """The global retry_cnt (a project may override it: ``project(name).retry_cnt``)."""
        return self.defaults.retry_cnt

    @property
    def loop_delay(self) -> int:
        """The global loop_delay in seconds (per project: ``project(name).loop_delay``)."""
        return self.defaults.loop_delay

    @property
    def serve_site(self) -> str:
        """The site this engine acts as: ``engine.serve_site`` or this machine's local_id."""
        return self.engine.serve_site or self.local_id

    @property
    def sqlite_path(self) -> Path | None:
        """The embedded database file when ``database_url`` is empty, else None."""
        if self.database_url:
            return None
        return paths.data_dir() / "sitesync.db"
