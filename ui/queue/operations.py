"""What the Sync Queue's actions do, as plain functions for a worker thread.

No Qt here: each function takes the store (and the engine, settings, a provider factory)
and returns an :class:`Outcome` the window shows. Decisions are made on fresh data read
inside the function (``Store.file_details``, ``Store.get_representation``), never on the
table's possibly seconds-old row, and every status comes from :mod:`app.status` through
the store. The guard rails OpenPype's menu only had as visibility conditions are checks
here: a re-sync never resets a site while the other side lacks a file, and removing a
local copy never touches a file no other site holds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from app.errors import SiteSyncError
from app.model import FileDetail, Status
from app.settings import ProjectSettings
from app.store.base import Store
from providers.base import Provider
from providers.registry import create_provider

__all__ = [
    "Outcome",
    "collect_errors",
    "local_folder",
    "remove_local_copy",
    "resync_site",
    "retry_failed",
    "set_paused",
    "set_priority",
]

ProviderFactory = Callable[[str, str, Mapping[str, Any]], Provider]


class PausingEngine(Protocol):
    """The part of :class:`app.engine.engine.Engine` a pause needs (it also stops the
    representation's running transfers)."""

    def pause_representation(self, project: str, repre_id: str, site: str,
                             paused: bool = True) -> None: ...


@dataclass
class Outcome:
    """What an action did: a one-line summary, the rows to refresh, what went wrong."""

    summary: str
    changed: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        if not self.problems:
            return self.summary
        more = f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        return f"{self.summary}; " + "; ".join(self.problems[:3]) + more


def _details(store: Store, ps: ProjectSettings, repre_id: str, now: datetime) -> list[FileDetail]:
    return store.file_details(ps.project, repre_id, ps.active_site, ps.remote_site,
                              ps.retry_cnt, now)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def retry_failed(store: Store, ps: ProjectSettings, repre_ids: Iterable[str],
                 now: datetime) -> Outcome:
    """Reset the tries of every Failed file entry of these representations (either site),
    so the engine takes them again. Paused entries show as Paused and are left alone."""
    reset = 0
    changed = set()
    for repre_id in repre_ids:
        for detail in _details(store, ps, repre_id, now):
            for site, status in ((ps.active_site, detail.active_status),
                                 (ps.remote_site, detail.remote_status)):
                if status is Status.FAILED:
                    reset += store.reset_site(ps.project, repre_id, site, detail.file_id)
                    changed.add(repre_id)
    if not reset:
        return Outcome("nothing to retry: no selected file has failed")
    return Outcome(f"retrying {_plural(reset, 'file')} in {_plural(len(changed), 'representation')}",
                   changed)


def resync_site(store: Store, ps: ProjectSettings, repre_ids: Iterable[str], site: str,
                now: datetime) -> Outcome:
    """OpenPype's "Re-sync": queue every file of ``site`` again (it is transferred anew
    from the other side). Only where the other site holds every file, so the only copy is
    never declared missing."""
    if site not in (ps.active_site, ps.remote_site):
        raise ValueError(f"{site!r} is neither the active nor the remote site")
    other = ps.remote_site if site == ps.active_site else ps.active_site
    changed = set()
    problems = []
    for repre_id in repre_ids:
        details = _details(store, ps, repre_id, now)
        missing = [d for d in details if not _available(d, other == ps.active_site)]
        if missing:
            problems.append(f"{_name(details, repre_id)}: {other} does not have "
                            f"{_plural(len(missing), 'file')} yet, so {site} was not reset")
            continue
        if store.reset_site(ps.project, repre_id, site):
            changed.add(repre_id)
    return Outcome(f"{site}: re-syncing {_plural(len(changed), 'representation')}", changed, problems)


def set_paused(store: Store, engine: PausingEngine | None, ps: ProjectSettings,
               repre_ids: Iterable[str], paused: bool, now: datetime) -> Outcome:
    """Pause the sides that still have something to move (a synced side stays Synced, as
    in OpenPype), or resume every paused side. The engine stops running transfers of a
    paused representation at once."""
    changed = set()
    for repre_id in repre_ids:
        details = _details(store, ps, repre_id, now)
        for site, states in ((ps.active_site, [d.active for d in details]),
                             (ps.remote_site, [d.remote for d in details])):
            present = [s for s in states if s is not None]
            if paused:
                wanted = any(not s.available and not s.paused for s in present)
            else:
                wanted = any(s.paused for s in present)
            if not wanted:
                continue
            if engine is not None:
                engine.pause_representation(ps.project, repre_id, site, paused)
            else:
                store.set_paused(ps.project, repre_id, site, paused)
            changed.add(repre_id)
    verb = "paused" if paused else "resumed"
    if not changed:
        what = "nothing left to move" if paused else "nothing was paused"
        return Outcome(f"nothing {verb}: {what}")
    return Outcome(f"{verb} {_plural(len(changed), 'representation')}", changed)


def set_priority(store: Store, ps: ProjectSettings, repre_ids: Iterable[str],
                 priority: int) -> Outcome:
    """Priority on the active site's entries, where OpenPype writes it; the engine takes
    higher numbers first."""
    changed = set()
    for repre_id in repre_ids:
        store.set_priority(ps.project, repre_id, ps.active_site, priority)
        changed.add(repre_id)
    return Outcome(f"priority {priority} on {_plural(len(changed), 'representation')}", changed)


def provider_for(ps: ProjectSettings, site: str,
                 factory: ProviderFactory = create_provider) -> Provider:
    """The site's provider, configured as the engine configures it."""
    config = ps.site(site)
    return factory(config.provider, site, {"root": dict(config.roots), **dict(config.options)})


def local_folder(ps: ProjectSettings, site: str, rootless_path: str,
                 factory: ProviderFactory = create_provider) -> str:
    """The folder holding ``rootless_path`` on a local_drive site, for a file manager.

    Raises SiteSyncError with the reason when the site is not a local drive or the folder
    does not exist there (yet).
    """
    config = ps.site(site)
    if config.provider != "local_drive":
        raise SiteSyncError(f"site {site!r} is a {config.provider} site, not a folder on "
                            "this machine")
    provider = provider_for(ps, site, factory)
    try:
        folder = os.path.dirname(provider.resolve(rootless_path))
    finally:
        provider.close()
    if not os.path.isdir(folder):
        raise SiteSyncError(f"{folder} does not exist on site {site!r}: the files have not "
                            "arrived there yet")
    return folder


def local_folders(ps: ProjectSettings, site: str, rootless_paths: Iterable[str],
                  factory: ProviderFactory = create_provider) -> tuple[list[str], list[str]]:
    """:func:`local_folder` for several files (the selected representations): the
    distinct folders that exist, in order, and why the others cannot be opened. Raises
    SiteSyncError when the site is not a local drive (no folder can be opened at all)."""
    folders: list[str] = []
    problems: list[str] = []
    for path in rootless_paths:
        try:
            folder = local_folder(ps, site, path, factory)
        except SiteSyncError as exc:
            if ps.site(site).provider != "local_drive":
                raise
            problems.append(str(exc))
            continue
        if folder not in folders:
            folders.append(folder)
    return folders, problems


def remove_local_copy(store: Store, ps: ProjectSettings, repre_ids: Iterable[str],
                      factory: ProviderFactory = create_provider,
                      engine: PausingEngine | None = None) -> Outcome:
    """Remove this machine's copy (site ``ps.local_id``): the site entry from the store,
    then the files from the disk.

    A representation is skipped, whole, if any of its files is available on no other
    site: this machine holds the only copy. With an ``engine``, transfers of the
    representation to or from this site are stopped first (a download finishing after the
    delete would leave an untracked file). The store entry goes next so a file is never
    listed as here when it is not; a file that cannot be deleted stays on disk (harmless)
    and is reported.
    """
    site = ps.local_id
    if not site:
        raise SiteSyncError("this machine has no local_id, so it has no local copy to remove")
    changed = set()
    problems = []
    deleted = 0
    provider: Provider | None = None
    try:
        for repre_id in repre_ids:
            repre = store.get_representation(ps.project, repre_id)
            mine = [f for f in repre.files if f.site(site) is not None]
            if not mine:
                continue
            only_here = [f for f in mine
                         if not any(s.available for s in f.sites if s.name != site)]
            if only_here:
                problems.append(
                    f"{repre.asset}/{repre.subset}/{repre.representation}: "
                    f"{_plural(len(only_here), 'file')} exist only on {site}, kept")
                continue
            if engine is not None:
                engine.pause_representation(ps.project, repre_id, site, True)
            store.remove_site(ps.project, repre_id, site)
            changed.add(repre_id)
            if provider is None:
                provider = provider_for(ps, site, factory)
            for file in mine:  # queued entries too: a partial download leaves a part file
                try:
                    provider.delete(file.path)
                    deleted += bool(file.site(site).available)
                except SiteSyncError as exc:
                    problems.append(f"could not delete {file.path}: {exc}")
    finally:
        if provider is not None:
            provider.close()
    summary = (f"removed the local copy of {_plural(len(changed), 'representation')} "
               f"({_plural(deleted, 'file')})")
    return Outcome(summary, changed, problems)


def collect_errors(store: Store, ps: ProjectSettings, repre_ids: Iterable[str],
                   now: datetime) -> str:
    """Every file error of these representations, full text, one block per file."""
    blocks = []
    for repre_id in repre_ids:
        details = _details(store, ps, repre_id, now)
        for detail in details:
            for site, state in ((ps.active_site, detail.active), (ps.remote_site, detail.remote)):
                if state is not None and state.error:
                    blocks.append(f"{detail.path} on {site} (tries: {state.tries}):\n{state.error}")
    return "\n\n".join(blocks)


def _available(detail: FileDetail, on_active: bool) -> bool:
    state = detail.active if on_active else detail.remote
    return state is not None and state.available


def _name(details: list[FileDetail], repre_id: str) -> str:
    return details[0].path.rsplit("/", 1)[-1] if details else repre_id
