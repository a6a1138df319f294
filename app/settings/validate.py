"""Check a settings document and list every problem, each with its key path and a fix.

All problems are collected rather than stopping at the first, so a user editing the
file by hand fixes everything in one pass (qutebrowser's ``ConfigFileErrors``). Known
keys are checked strictly and unknown ones get "did you mean"; inside a site block,
keys we do not know are passed on to the provider unless they look like a typo of a
key we do know. Messages never contain a password: secret values are not echoed, and
everything is passed through :func:`app.redact.redact` with this document's secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from app.errors import ConfigError
from app.redact import redact
from app.settings.build import canonical_keys, local_entry, merge_site, site_provider
from app.settings.coerce import Invalid, check_site_name, coerce, is_absolute_for
from app.settings.schema import (
    DEFAULT_SITE,
    ENGINE_OPTIONS,
    GLOBAL_OPTIONS,
    HOOKS_OPTIONS,
    HOOKS_PLUGINS_KEY,
    LOCAL_SITE,
    MACHINE_SITE_KEYS,
    PROJECT_OPTION_KEYS,
    ROOT_KEY,
    Option,
    current_platform,
    did_you_mean,
    is_secret_key,
    known_site_keys,
    site_option,
)

__all__ = ["collect_secrets", "validate"]

_BLOCKS = ("sites", "projects", "engine", "hooks")
_TOP_KEYS = (*(o.key for o in GLOBAL_OPTIONS), *(a for o in GLOBAL_OPTIONS for a in o.aliases),
             *_BLOCKS)
_SITE_REFERENCES = ("publish_site", "remote_site")
_URI_PASSWORD = re.compile(r"://[^:/@\s]*:(?P<password>\S*)@")


def validate(
    raw: object, *, platform: str | None = None, local_id: str | None = None
) -> list[ConfigError]:
    """Every problem in ``raw``; empty when it can be loaded.

    ``platform`` (windows/linux/darwin) defaults to this machine's; ``local_id``
    overrides the document's (``SITESYNC_LOCAL_ID``) when deciding which sites exist.
    """
    checker = _Checker(platform or current_platform())
    checker.document(raw, local_id)
    secrets = collect_secrets(raw)
    return [
        ConfigError(redact(e.message, secrets), fix=redact(e.fix, secrets), key=e.key)
        for e in checker.errors
    ]


def collect_secrets(raw: object) -> list[str]:
    """Secret values in a document: site passwords and the database URL's password."""
    found: list[str] = []
    if not isinstance(raw, Mapping):
        return found
    url = raw.get("database_url")
    if isinstance(url, str):
        found.extend(m.group("password") for m in _URI_PASSWORD.finditer(url))
    site_blocks: list[object] = [raw.get("sites")]
    projects = raw.get("projects")
    if isinstance(projects, Mapping):
        site_blocks.extend(p.get("sites") for p in projects.values() if isinstance(p, Mapping))
    for sites in site_blocks:
        for site in sites.values() if isinstance(sites, Mapping) else ():
            for key, value in site.items() if isinstance(site, Mapping) else ():
                if isinstance(value, str) and value and is_secret_key(key):
                    found.append(value)
    return found


class _Checker:
    """Walks one document; ``errors`` collects what is wrong."""

    def __init__(self, platform: str) -> None:
        self.platform = platform
        self.errors: list[ConfigError] = []
        self.check_references = True

    def add(self, path: str, message: str, fix: str) -> None:
        self.errors.append(ConfigError(f"{path}: {message}" if path else message, fix, path))

    def document(self, raw: object, local_id_override: str | None) -> None:
        if not isinstance(raw, Mapping):
            self.add("", f"the settings must be a JSON object, not {_kind(raw)}",
                     "start the file with { and end it with }")
            return
        self.unknown_keys("", raw, _TOP_KEYS)
        self.options("", raw, GLOBAL_OPTIONS)
        local_id = self.local_id(raw, local_id_override)
        before = len(self.errors)
        sites = self.mapping("sites", raw.get("sites"))
        # Without a readable "sites" block, "site X is not configured" would be noise.
        self.check_references = len(self.errors) == before
        self.engine(raw.get("engine"), sites, local_id)
        self.hooks(raw.get("hooks"))
        for name, data in sites.items():
            self.site(f"sites.{name}", name, data, local_id, complete=True)
        self.references("", raw, sites, local_id)
        self.subscription_sites(raw, sites, local_id)
        projects = self.mapping("projects", raw.get("projects"))
        for name, block in projects.items():
            self.project(name, block, sites, local_id)

    def local_id(self, raw: Mapping[str, Any], override: str | None) -> str:
        """The effective local id ("" when unusable, so site checks still run)."""
        value = raw.get("local_id")
        if value is None or value == "":
            self.add("local_id", "is missing",
                     "leave it out of the file and SiteSync generates one on the next "
                     "start, or set it to this machine's site name")
        elif isinstance(value, str) and value in (DEFAULT_SITE, LOCAL_SITE):
            self.add("local_id", f"{value!r} is reserved for the shared site of that name",
                     "choose another name for this machine, e.g. 'brave-swift-otter'")
        if override is not None:
            try:
                check_site_name(override)
            except Invalid as exc:
                self.add("SITESYNC_LOCAL_ID", exc.message, exc.fix)
                return ""
            return override
        return value if isinstance(value, str) else ""

    def engine(self, value: object, sites: Mapping[str, Any], local_id: str) -> None:
        engine = self.mapping("engine", value)
        self.unknown_keys("engine", engine, [o.key for o in ENGINE_OPTIONS])
        values = self.options("engine", engine, ENGINE_OPTIONS)
        base, top = values.get("backoff_base_s"), values.get("backoff_max_s")
        if base is not None and top is not None and top < base:
            self.add("engine.backoff_max_s", f"{top:g} is less than backoff_base_s ({base:g})",
                     f"set it to at least {base:g}")
        serve = values.get("serve_site")
        if serve:
            try:
                check_site_name(serve)
            except Invalid as exc:
                self.add("engine.serve_site", exc.message, exc.fix)
            else:
                self.site_exists("engine.serve_site", serve, sites, local_id,
                                 setting="engine.serve_site")

    def hooks(self, value: object) -> None:
        hooks = self.mapping("hooks", value)
        self.unknown_keys("hooks", hooks, [*(o.key for o in HOOKS_OPTIONS), HOOKS_PLUGINS_KEY])
        self.options("hooks", hooks, HOOKS_OPTIONS)
        plugins = self.mapping(f"hooks.{HOOKS_PLUGINS_KEY}", hooks.get(HOOKS_PLUGINS_KEY))
        for name, block in plugins.items():
            path = f"hooks.{HOOKS_PLUGINS_KEY}.{name}"
            if not isinstance(block, Mapping):
                self.add(path, f"must be a mapping of the plugin's options, not {_kind(block)}",
                         'write it as {"enabled": true, ...the plugin\'s own options}')
            elif "enabled" in block and not isinstance(block["enabled"], bool):
                self.add(f"{path}.enabled", f"must be true or false, not {_kind(block['enabled'])}",
                         "write true or false (no quotes)")

    def project(
        self, name: str, block: object, sites: Mapping[str, Any], local_id: str
    ) -> None:
        path = f"projects.{name}"
        if not isinstance(name, str) or not name.strip():
            self.add(path, "has an empty project name", "use the project's name as the key")
        if not isinstance(block, Mapping):
            self.add(path, f"must be a mapping of overrides, not {_kind(block)}",
                     'write it as {"enabled": true, "remote_site": "..."}')
            return
        self.unknown_keys(path, block, PROJECT_OPTION_KEYS)
        if "enabled" in block and not isinstance(block["enabled"], bool):
            self.add(f"{path}.enabled", f"must be true or false, not {_kind(block['enabled'])}",
                     "write true or false (no quotes)")
        self.options(path, block, [o for o in GLOBAL_OPTIONS if o.project])
        project_sites = self.mapping(f"{path}.sites", block.get("sites"))
        for site_name, data in project_sites.items():
            site_path = f"{path}.sites.{site_name}"
            for key in MACHINE_SITE_KEYS:
                if isinstance(data, Mapping) and key in data:
                    self.add(f"{site_path}.{key}", "is a limit of this machine for the site, "
                             "shared by every project", f"move it to sites.{site_name}.{key}")
            base = _global_site(sites, site_name, local_id)
            inherited = site_provider(site_name, base or {}, local_id)
            if not self.site(site_path, site_name, data, local_id, complete=False,
                             inherited_provider=inherited):
                continue
            if base is not None and not self.site_is_complete(base, site_name, local_id):
                continue  # already reported under sites.<name>
            merged = merge_site(base or {}, data)
            self.complete(site_path, site_name, merged, local_id)
        self.references(path, block, {**sites, **project_sites}, local_id)

    def site(
        self, path: str, name: str, data: object, local_id: str, *, complete: bool,
        inherited_provider: object = None,
    ) -> bool:
        """Check one site block's keys; ``complete`` also checks it can be used alone.
        A project's partial block is checked against the provider it inherits.
        Returns whether the block's own keys are valid."""
        try:
            check_site_name(name)
        except Invalid as exc:
            self.add(path, exc.message, exc.fix)
        if not isinstance(data, Mapping):
            self.add(path, f"must be a mapping of site settings, not {_kind(data)}",
                     'write it as {"provider": "local_drive", "root": {"work": "/path"}}')
            return False
        before = len(self.errors)
        provider = site_provider(name, data, local_id)
        if "provider" not in data and inherited_provider is not None:
            provider = inherited_provider
        known = known_site_keys()
        for key, value in data.items():
            key_path = f"{path}.{key}"
            option = site_option(key, provider if isinstance(provider, str) else None)
            if option is None:
                hint = did_you_mean(str(key), known) if key not in known else None
                if hint:
                    self.add(key_path, f"unknown key {key!r}", f"did you mean {hint!r}?")
                continue
            try:
                result = coerce(option, value, platform=self.platform)
            except Invalid as exc:
                self.add(_join(key_path, exc.subpath), exc.message, exc.fix)
                continue
            if key == ROOT_KEY and provider == "local_drive":
                self.local_roots(key_path, result)
        if len(self.errors) == before and complete:
            self.complete(path, name, data, local_id)
        return len(self.errors) == before

    def local_roots(self, path: str, roots: Mapping[str, str]) -> None:
        for root, folder in roots.items():
            if folder.startswith("~"):
                continue  # expanded to the home folder when loaded
            if not is_absolute_for(folder, self.platform):
                self.add(f"{path}.{root}", f"{folder!r} is not an absolute path",
                         "use a full path, e.g. " +
                         ("'D:/projects'" if self.platform == "windows" else "'/mnt/projects'"))

    def complete(self, path: str, name: str, data: Mapping[str, Any], local_id: str) -> None:
        """A site that can be used: a provider, and roots for a local_drive site.

        The implicit sites (studio, local, this machine) may leave ``root`` out: like
        OpenPype, they then use the project's own (anatomy) roots.
        """
        provider = site_provider(name, data, local_id)
        implicit = name in (DEFAULT_SITE, LOCAL_SITE) or (local_id and name == local_id)
        if provider is None:
            self.add(f"{path}.provider", "is missing",
                     'add "provider": one of local_drive, gdrive, sftp')
        elif provider == "local_drive" and (
            (ROOT_KEY in data and not data[ROOT_KEY]) or (ROOT_KEY not in data and not implicit)
        ):
            self.add(f"{path}.root", "a local_drive site needs at least one root",
                     'add "root": {"work": "/path/to/folder"}')

    def site_is_complete(self, data: object, name: str, local_id: str) -> bool:
        probe = _Checker(self.platform)
        probe.site("", name, data, local_id, complete=True)
        return not probe.errors

    def references(
        self, path: str, block: Mapping[str, Any], sites: Mapping[str, Any], local_id: str
    ) -> None:
        """Sites named by publish_site/remote_site/always_accessible_on must exist."""
        block = canonical_keys(block)
        prefix = f"{path}." if path else ""
        for key in _SITE_REFERENCES:
            value = block.get(key)
            if _usable_name(value):
                self.site_exists(f"{prefix}{key}", value, sites, local_id, setting=key)
        always = block.get("always_accessible_on")
        if isinstance(always, list):
            for index, value in enumerate(always):
                if _usable_name(value):
                    self.site_exists(f"{prefix}always_accessible_on.{index}", value, sites,
                                     local_id, setting="always_accessible_on")

    def subscription_sites(self, raw: Mapping[str, Any], sites: Mapping[str, Any],
                           local_id: str) -> None:
        """The site a subscription adds must exist (its rules were checked by options())."""
        rules = raw.get("subscriptions")
        if not isinstance(rules, list):
            return
        for index, rule in enumerate(rules):
            site = rule.get("site") if isinstance(rule, Mapping) else None
            if _usable_name(site):
                self.site_exists(f"subscriptions.{index}.site", site, sites, local_id,
                                 setting=f"subscriptions.{index}.site")

    def site_exists(
        self, path: str, name: str, sites: Mapping[str, Any], local_id: str, *, setting: str
    ) -> None:
        if not self.check_references:
            return
        if name in sites or name in (DEFAULT_SITE, LOCAL_SITE) or (local_id and name == local_id):
            return
        fix = f"add a site {name!r} under 'sites' or change {setting}"
        hint = did_you_mean(name, [*sites, DEFAULT_SITE, LOCAL_SITE])
        if hint:
            fix = f"did you mean {hint!r}? Otherwise {fix}"
        self.add(path, f"site {name!r} is not configured", fix)

    def options(self, path: str, block: Mapping[str, Any],
                options: Iterable[Option]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        prefix = f"{path}." if path else ""
        for option in options:
            present = [k for k in (option.key, *option.aliases) if k in block]
            if len(present) > 1:
                self.add(f"{prefix}{present[1]}", f"is another name for {option.key!r} and "
                         "both are set", f"keep only {option.key!r}")
            if not present:
                continue
            if option.key == "local_id" and block[present[0]] in (None, ""):
                continue  # reported by local_id()
            try:
                values[option.key] = coerce(option, block[present[0]], platform=self.platform)
            except Invalid as exc:
                self.add(_join(f"{prefix}{present[0]}", exc.subpath), exc.message, exc.fix)
        return values

    def unknown_keys(self, path: str, block: Mapping[str, Any], known: Iterable[str]) -> None:
        known = list(known)
        prefix = f"{path}." if path else ""
        for key in block:
            if key in known:
                continue
            hint = did_you_mean(str(key), known)
            if hint:
                self.add(f"{prefix}{key}", f"unknown key {key!r}", f"did you mean {hint!r}?")
            else:
                self.add(f"{prefix}{key}", f"unknown key {key!r}",
                         f"remove it; known keys here: {', '.join(sorted(set(known)))}")

    def mapping(self, path: str, value: object) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(path, f"must be a mapping, not {_kind(value)}",
                     'write it as {"name": {...}} or remove it')
            return {}
        return value


def _global_site(sites: Mapping[str, Any], name: str, local_id: str) -> Mapping[str, Any] | None:
    if name in (LOCAL_SITE, local_id):
        entry = local_entry(sites, local_id)
        return entry or None
    value = sites.get(name)
    return value if isinstance(value, Mapping) else None


def _usable_name(value: object) -> bool:
    """A name worth looking up (malformed names are reported by their own check)."""
    try:
        check_site_name(value)
    except Invalid:
        return False
    return True


def _join(path: str, subpath: str) -> str:
    return f"{path}.{subpath}" if subpath else path


def _kind(value: object) -> str:
    return {
        type(None): "null", bool: "true/false", int: "a number", float: "a number",
        str: "text", list: "a list", dict: "a mapping",
    }.get(type(value), type(value).__name__)

