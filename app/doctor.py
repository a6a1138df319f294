"""`sitesync doctor`: check settings, database and every site, and say how to fix each.

Each check yields ``(ok, text)``; a failing check never stops the others, so one run
lists everything that is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from app.errors import SiteSyncError
from app.redact import redact

__all__ = ["run_checks"]


def run_checks(ctx: Any) -> Iterator[tuple[bool, str]]:
    """``ctx`` offers ``settings`` and ``store`` (opened lazily, errors surface here)."""
    try:
        settings = ctx.settings
    except SiteSyncError as exc:
        yield False, f"settings: {exc}"
        return
    yield True, f"settings: {settings.path} (local_id {settings.local_id})"
    yield from _hook_checks(settings)
    where = redact(settings.database_url) if settings.database_url else "embedded SQLite"
    try:
        store = ctx.store
        store.ping()
        projects = store.list_projects()
    except SiteSyncError as exc:
        yield False, f"database ({where}): {exc}"
        return
    yield True, f"database ({where}): {len(projects)} project(s)"
    from providers.registry import create_provider

    checked: set[tuple[str, ...]] = set()
    if not projects:
        yield True, "no projects yet: `sitesync demo` creates one, `sitesync publish` registers files"
        if settings.path.exists():
            # Sites set up by hand (an SFTP login, a Drive key) are checked before the
            # first publish: that is when a wrong key or host key should show.
            yield from _site_checks(settings.defaults, checked, create_provider)
    for info in projects:
        try:
            ps = settings.project(info.name)
        except SiteSyncError as exc:
            yield False, f"project {info.name}: {exc}"
            continue
        state = "paused" if info.paused else ("enabled" if ps.enabled else "disabled")
        yield True, (f"project {info.name}: {state}, {ps.active_site} <-> {ps.remote_site}, "
                     f"retry_cnt {ps.retry_cnt}")
        if ps.active_site == ps.remote_site:
            yield False, (f"project {info.name}: publish_site and remote_site are both "
                          f"{ps.active_site!r}, so nothing syncs; set remote_site to another site")
        yield from _site_checks(ps, checked, create_provider)


def _site_checks(ps: Any, checked: set[tuple[str, ...]],
                 create_provider: Any) -> Iterator[tuple[bool, str]]:
    """Each site a project uses, once per distinct configuration (``checked``)."""
    for site in dict.fromkeys([ps.active_site, ps.remote_site, *ps.always_accessible_on]):
        try:
            config = ps.site(site)
            key = (site, config.provider, repr(sorted(config.roots.items())))
            if key in checked:
                continue
            checked.add(key)
            provider = create_provider(
                config.provider, site, {"root": dict(config.roots), **dict(config.options)})
            try:
                problems = provider.check()
                details = "" if problems else provider.describe()
            finally:
                provider.close()
        except SiteSyncError as exc:
            problems, details = [str(exc)], ""
        if problems:
            for problem in problems:
                yield False, f"site {site}: {redact(problem)}"
        else:
            yield True, redact(f"site {site} ({config.provider}): reachable"
                               + (f"; {details}" if details else ""))


def _hook_checks(settings: Any) -> Iterator[tuple[bool, str]]:
    """Plugin folders exist and can be read (the plugins themselves load in the runner)."""
    hooks = settings.hooks
    if not hooks.enabled or not hooks.plugin_paths:
        return
    from app.hooks.plugin import discover

    files, problems = discover(hooks.plugin_paths)
    for problem in problems:
        yield False, f"hooks: {problem}"
    if not problems:
        yield True, (f"hooks: {len(files)} plugin file(s) in {len(hooks.plugin_paths)} "
                     "folder(s); `sitesync hooks list` shows them")
