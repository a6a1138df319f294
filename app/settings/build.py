"""Turn a validated settings document into frozen :class:`Settings`.

Runs only on documents :func:`validate` accepted, so it converts without re-checking.
The site rules live here and the validator reuses them, so "which configuration does
site X get" has one answer: OpenPype's (``studio``, ``local`` and the local id are
local_drive sites that exist even when not configured; this machine's configuration is
``sites[local_id]`` if present, else ``sites["local"]``; a project's ``sites`` entries
are merged key by key over the global ones, root by root for ``root``).
"""

from __future__ import annotations

import os.path
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from app.settings.coerce import coerce
from app.settings.resolved import (
    EngineSettings,
    HooksSettings,
    ProjectSettings,
    Settings,
    SiteConfig,
)
from app.settings.schema import (
    DEFAULT_SITE,
    ENGINE_OPTIONS,
    GLOBAL_OPTIONS,
    HOOKS_OPTIONS,
    HOOKS_PLUGINS_KEY,
    LOCAL_SITE,
    PLATFORMS,
    ROOT_KEY,
    Kind,
    Option,
    global_option,
    site_option,
)

__all__ = [
    "build_settings",
    "canonical_keys",
    "local_entry",
    "merge_site",
    "site_provider",
    "site_value",
]

_IMPLICIT_PROVIDER = "local_drive"


def build_settings(
    raw: Mapping[str, Any], path: Path, *, platform: str, local_id: str
) -> Settings:
    """Settings from a valid document; ``local_id`` is the effective one (env applied)."""
    engine_raw = _mapping(raw.get("engine"))
    engine_values = {o.key: _value(o, engine_raw, platform) for o in ENGINE_OPTIONS}
    if engine_values["serve_site"] == LOCAL_SITE:
        engine_values["serve_site"] = local_id
    global_sites = _mapping(raw.get("sites"))
    top = canonical_keys(raw)
    defaults = _project("", top, global_sites, {}, platform=platform, local_id=local_id)
    projects = {
        name: _project(
            name, {**top, **canonical_keys(_mapping(block))}, global_sites,
            _mapping(_mapping(block).get("sites")), platform=platform, local_id=local_id,
        )
        for name, block in _mapping(raw.get("projects")).items()
    }
    return Settings(
        path=path,
        raw=MappingProxyType(dict(raw)),
        database_url=_value(global_option("database_url"), raw, platform),
        database_name=_value(global_option("database_name"), raw, platform),
        local_id=local_id,
        engine=EngineSettings(**engine_values),
        defaults=defaults,
        projects=MappingProxyType(projects),
        subscriptions=tuple(
            replace(rule, site=local_id if rule.site == LOCAL_SITE else rule.site)
            for rule in coerce(global_option("subscriptions"), raw.get("subscriptions") or [],
                               platform=platform)),
        hooks=_hooks(_mapping(raw.get("hooks")), path, platform),
    )


def _hooks(raw: Mapping[str, Any], settings_path: Path, platform: str) -> HooksSettings:
    values = {o.key: _value(o, raw, platform) for o in HOOKS_OPTIONS}
    base = Path(settings_path).parent
    values["plugin_paths"] = tuple(
        (base / os.path.expanduser(folder)).absolute() for folder in values["plugin_paths"])
    plugins = {str(name): MappingProxyType(dict(block))
               for name, block in _mapping(raw.get(HOOKS_PLUGINS_KEY)).items()
               if isinstance(block, Mapping)}
    return HooksSettings(**values, plugins=MappingProxyType(plugins))


def merge_site(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A project's partial site over the global one: key by key, ``root`` root by root."""
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if key == ROOT_KEY and isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = {**old, **value}
        else:
            merged[key] = value
    return merged


def local_entry(sites: Mapping[str, Any], local_id: str) -> Mapping[str, Any]:
    """This machine's block at one level: ``sites[local_id]`` if present, else ``sites.local``."""
    entry = sites.get(local_id) if local_id in sites else sites.get(LOCAL_SITE)
    return entry if isinstance(entry, Mapping) else {}


def site_provider(name: str, data: Mapping[str, Any], local_id: str) -> Any:
    """The provider a site block means: as written, or local_drive for the implicit sites."""
    if "provider" in data:
        return data["provider"]
    if name in (DEFAULT_SITE, LOCAL_SITE, local_id):
        return _IMPLICIT_PROVIDER
    return None


def site_value(option: Option | None, value: Any, platform: str) -> Any:
    """A site key's value for the provider: declared keys converted, per-platform
    mappings resolved, anything else passed through as written."""
    if option is not None:
        return coerce(option, value, platform=platform)
    if (
        isinstance(value, Mapping)
        and value
        and all(k in PLATFORMS and isinstance(v, str) for k, v in value.items())
    ):
        return value.get(platform, "")
    return value


def _project(
    name: str,
    block: Mapping[str, Any],
    global_sites: Mapping[str, Any],
    project_sites: Mapping[str, Any],
    *,
    platform: str,
    local_id: str,
) -> ProjectSettings:
    def site_name(value: str) -> str:
        return local_id if value == LOCAL_SITE else value

    always = _value(global_option("always_accessible_on"), block, platform)
    return ProjectSettings(
        project=name,
        enabled=bool(block.get("enabled", True)),
        retry_cnt=_value(global_option("retry_cnt"), block, platform),
        loop_delay=_value(global_option("loop_delay"), block, platform),
        active_site=site_name(_value(global_option("publish_site"), block, platform)),
        remote_site=site_name(_value(global_option("remote_site"), block, platform)),
        always_accessible_on=tuple(dict.fromkeys(site_name(s) for s in always)),
        sites=MappingProxyType(_site_table(global_sites, project_sites, platform, local_id)),
        local_id=local_id,
        conflict_policy=coerce(global_option("conflict_policy"),
                               block.get("conflict_policy", "other"), platform=platform),
    )


def _site_table(
    global_sites: Mapping[str, Any],
    project_sites: Mapping[str, Any],
    platform: str,
    local_id: str,
) -> dict[str, SiteConfig]:
    table: dict[str, SiteConfig] = {}
    for name in dict.fromkeys([*global_sites, *project_sites]):
        if name in (LOCAL_SITE, local_id):
            continue
        data = merge_site(_mapping(global_sites.get(name)), _mapping(project_sites.get(name)))
        table[name] = _site(name, data, platform, local_id)
    if DEFAULT_SITE not in table:
        table[DEFAULT_SITE] = _site(DEFAULT_SITE, {}, platform, local_id)
    local = merge_site(local_entry(global_sites, local_id), local_entry(project_sites, local_id))
    table[local_id] = _site(local_id, local, platform, local_id)
    return table


def _site(name: str, data: Mapping[str, Any], platform: str, local_id: str) -> SiteConfig:
    provider = site_provider(name, data, local_id)
    roots: dict[str, str] = {}
    if data.get(ROOT_KEY):
        roots = coerce(site_option(ROOT_KEY, provider), data[ROOT_KEY], platform=platform)
        if provider == "local_drive":
            roots = {root: os.path.expanduser(path) for root, path in roots.items()}
    options = {
        key: site_value(site_option(key, provider), value, platform)
        for key, value in data.items()
        if key not in ("provider", ROOT_KEY)
    }
    return SiteConfig(
        name=name,
        provider=provider,
        roots=MappingProxyType(roots),
        options=MappingProxyType(options),
    )


def canonical_keys(block: Mapping[str, Any]) -> dict[str, Any]:
    """``block`` with alias keys (OpenPype's ``active_site``) renamed to SiteSync's, and
    without the nested blocks, ready to be merged project-over-global."""
    result = {k: v for k, v in block.items() if k not in ("sites", "projects", "engine", "hooks")}
    for option in GLOBAL_OPTIONS:
        for alias in option.aliases:
            if alias in result:
                value = result.pop(alias)
                result.setdefault(option.key, value)
    return result


def _value(option: Option, block: Mapping[str, Any], platform: str) -> Any:
    if option.key in block:
        return coerce(option, block[option.key], platform=platform)
    return float(option.default) if option.kind is Kind.NUMBER else option.default


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
