"""Subscriptions: rules that add this machine's site to matching new publishes.

An artist who always needs the lighting renders of their sequence, or a render node that
needs every new ``abc`` cache, writes a rule once instead of adding the site by hand to
each publish (OpenPype's only option). A rule (``subscriptions`` in the settings):

.. code-block:: json

    {"project": "demo", "asset": "sh01*", "subset": ["render*", "comp*"],
     "representation": ["exr"], "family": ["render"], "mode": "when_complete",
     "priority": 70}

Patterns are case-insensitive globs; a key left out matches everything. ``mode`` is
``as_available`` (each file as soon as the remote has it: comp starts on frame 1 while
the rest renders) or ``when_complete`` (the representation appears here only when every
file has arrived and been verified; see app.policy.staging). ``site`` defaults to this
machine (``local``).

New publishes are found incrementally, Sahana Eden's ``msince`` without its clock
problem: the scanner keeps the store's own insertion key as a cursor (SQLite row numbers:
exact; MongoDB ObjectIds: made by the publishing client, so it re-reads a ten-minute
overlap and remembers what it already handled there). The cursor is saved, so a restart
does not re-add sites a user removed. Rules apply to publishes made after the scanner
first ran (and to every publish of a project created since); ``sitesync subscribe
--existing`` applies a rule to what exists already.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.model import RepresentationHead
from app.store.base import Store

__all__ = [
    "MODES",
    "SubscriptionError",
    "SubscriptionRule",
    "SubscriptionScanner",
    "parse_subscriptions",
]

_log = logging.getLogger(__name__)

MODES = ("as_available", "when_complete")
#: Seconds of MongoDB keys re-read on every scan (client clocks and slow inserts).
MONGO_OVERLAP_S = 600.0
HEADS_PAGE = 500
_PATTERN_KEYS = ("asset", "subset", "representation", "family")
_KEYS = ("name", "project", *_PATTERN_KEYS, "mode", "site", "priority", "enabled")
_EXAMPLE = ('{"project": "demo", "asset": "sh01*", "representation": ["exr"], '
            '"mode": "when_complete"}')


class SubscriptionError(ValueError):
    def __init__(self, message: str, fix: str, subpath: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.subpath = subpath


@dataclass(frozen=True)
class SubscriptionRule:
    """One rule; every pattern tuple empty means "any"."""

    project: str = "*"
    assets: tuple[str, ...] = ()
    subsets: tuple[str, ...] = ()
    representations: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    mode: str = "as_available"
    site: str = "local"
    priority: int | None = None
    enabled: bool = True
    name: str = ""

    @property
    def when_complete(self) -> bool:
        return self.mode == "when_complete"

    def label(self, index: int) -> str:
        return self.name or f"subscriptions.{index}"

    def covers_project(self, project: str) -> bool:
        return self.enabled and _glob(project, (self.project,))

    def matches(self, project: str, head: RepresentationHead) -> bool:
        return (
            self.covers_project(project)
            and _any(head.asset, self.assets)
            and _any(head.subset, self.subsets)
            and _any(head.representation, self.representations)
            and (not self.families or any(_glob(f, self.families) for f in head.families))
        )

    def describe(self) -> str:
        parts = [f"project {self.project}"]
        for word, values in (("asset", self.assets), ("subset", self.subsets),
                             ("representation", self.representations),
                             ("family", self.families)):
            if values:
                parts.append(f"{word} {'|'.join(values)}")
        parts.append(self.mode.replace("_", " "))
        if self.priority is not None:
            parts.append(f"priority {self.priority}")
        return ", ".join(parts) + f" -> {self.site}"


def _glob(value: str, patterns: Iterable[str]) -> bool:
    folded = value.casefold()
    return any(fnmatch.fnmatchcase(folded, p.casefold()) for p in patterns)


def _any(value: str, patterns: tuple[str, ...]) -> bool:
    return not patterns or _glob(value, patterns)


def parse_subscriptions(value: object) -> tuple[SubscriptionRule, ...]:
    """The ``subscriptions`` setting: a list of rule mappings."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SubscriptionError(f"must be a list of rules, not {type(value).__name__}",
                                f"write it as [{_EXAMPLE}]")
    return tuple(_rule(raw, str(index)) for index, raw in enumerate(value))


def _rule(raw: object, at: str) -> SubscriptionRule:
    if not isinstance(raw, Mapping):
        raise SubscriptionError(f"must be a mapping, not {type(raw).__name__}",
                                f"write a rule as {_EXAMPLE}", at)
    unknown = [k for k in raw if k not in _KEYS]
    if unknown:
        raise SubscriptionError(f"unknown key {unknown[0]!r}",
                                f"use {', '.join(_KEYS)}", f"{at}.{unknown[0]}")
    mode = raw.get("mode", "as_available")
    if mode not in MODES:
        raise SubscriptionError(f"{mode!r} is not a mode", "use as_available or when_complete",
                                f"{at}.mode")
    priority = raw.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)
                                 or not 0 <= priority <= 100):
        raise SubscriptionError(f"{priority!r} is not a priority",
                                "use a whole number from 0 to 100 (50 is normal)", f"{at}.priority")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SubscriptionError("must be true or false", "write true or false (no quotes)",
                                f"{at}.enabled")
    texts: dict[str, Any] = {}
    for key in ("name", "project", "site"):
        text = raw.get(key)
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise SubscriptionError("must be non-empty text", "write it in quotes", f"{at}.{key}")
        texts[key] = text
    patterns = {key: _patterns(raw.get(key), f"{at}.{key}") for key in _PATTERN_KEYS}
    return SubscriptionRule(
        project=texts["project"] or "*", assets=patterns["asset"], subsets=patterns["subset"],
        representations=patterns["representation"], families=patterns["family"], mode=mode,
        site=texts["site"] or "local", priority=priority, enabled=enabled,
        name=texts["name"] or "",
    )


def _patterns(value: object, at: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
        raise SubscriptionError("must be a pattern or a list of patterns",
                                'write "sh01*" or ["exr", "png"]', at)
    return tuple(items)


# -- finding new publishes --------------------------------------------------------------------


@dataclass
class _Cursor:
    key: str | None = None
    #: Ids handled within the overlap window (MongoDB only).
    seen: dict[str, str] = field(default_factory=dict)


Apply = Callable[[str, RepresentationHead, SubscriptionRule, int], None]


class SubscriptionScanner:
    """Finds representations published since the last scan and hands each matching
    (head, rule) to ``apply``; the cursor per project is saved in ``state_path``."""

    def __init__(self, store: Store, state_path: Path | None, overlap_s: float | None = None) -> None:
        self.store = store
        self.state_path = state_path
        self.overlap_s = (MONGO_OVERLAP_S if store.kind == "mongo" else 0.0) \
            if overlap_s is None else overlap_s
        self._initialized = False
        self._cursors = self._load()

    def scan(self, projects: Iterable[str], rules: tuple[SubscriptionRule, ...], apply: Apply) -> int:
        """Look at new publishes of ``projects``; returns how many rules applied."""
        applied = 0
        changed = not self._initialized
        for project in projects:
            cursor = self._cursors.get(project)
            if cursor is None and not self._initialized:
                # The very first look: start from now, apply to what comes next.
                self._cursors[project] = self._start(project)
                changed = True
                continue
            if cursor is None:  # a project that appeared since: all of it is new
                cursor = self._cursors[project] = _Cursor()
            applied_here, moved = self._scan_project(project, cursor, rules, apply)
            applied += applied_here
            changed = changed or moved
        self._initialized = True
        if changed:
            self._save()
        return applied

    def _start(self, project: str) -> _Cursor:
        """A cursor at the newest publish; with an overlap, what is inside it already
        existed too and is marked handled, so only later publishes count as new."""
        cursor = _Cursor(self.store.newest_key(project))
        if cursor.key is not None and self.overlap_s:
            after: str | None = self.store.rewind_key(cursor.key, self.overlap_s)
            while heads := self.store.representation_heads(project, after, HEADS_PAGE):
                cursor.seen.update((h.id, h.key) for h in heads)
                after = heads[-1].key
        return cursor

    def _scan_project(self, project: str, cursor: _Cursor, rules: tuple[SubscriptionRule, ...],
                      apply: Apply) -> tuple[int, bool]:
        after = cursor.key
        if after is not None and self.overlap_s:
            after = self.store.rewind_key(after, self.overlap_s)
        applied, moved = 0, False
        while heads := self.store.representation_heads(project, after, HEADS_PAGE):
            for head in heads:
                if head.id in cursor.seen or (cursor.key is not None and not self.overlap_s
                                               and head.key <= cursor.key):
                    continue
                for index, rule in enumerate(rules):
                    if rule.matches(project, head):
                        apply(project, head, rule, index)
                        applied += 1
                if self.overlap_s:
                    cursor.seen[head.id] = head.key
                if cursor.key is None or head.key > cursor.key:
                    cursor.key = head.key
                moved = True
            after = heads[-1].key
        if self.overlap_s and cursor.key is not None:
            horizon = self.store.rewind_key(cursor.key, self.overlap_s)
            cursor.seen = {i: k for i, k in cursor.seen.items() if k > horizon}
        return applied, moved

    def apply_existing(self, project: str, rules: tuple[SubscriptionRule, ...], apply: Apply) -> int:
        """Apply ``rules`` to every representation of ``project`` already published."""
        applied = 0
        after = None
        while heads := self.store.representation_heads(project, after, HEADS_PAGE):
            for head in heads:
                for index, rule in enumerate(rules):
                    if rule.matches(project, head):
                        apply(project, head, rule, index)
                        applied += 1
            after = heads[-1].key
        return applied

    # -- the saved cursors -----------------------------------------------------------------

    def _load(self) -> dict[str, _Cursor]:
        if self.state_path is None:
            return {}
        try:
            raw = json.loads(self.state_path.read_text())
            if self._scope() not in raw:
                return {}
            scope = raw[self._scope()]
            self._initialized = True
            return {p: _Cursor(c.get("key"), dict(c.get("seen") or {})) for p, c in scope.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            _log.warning("subscription cursors in %s unreadable (%s); starting from now",
                         self.state_path, exc)
            return {}

    def _save(self) -> None:
        if self.state_path is None:
            return
        try:
            raw = json.loads(self.state_path.read_text())
            if not isinstance(raw, dict):
                raw = {}
        except (OSError, ValueError):
            raw = {}
        raw[self._scope()] = {p: {"key": c.key, "seen": c.seen} for p, c in self._cursors.items()}
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(json.dumps(raw))
        os.replace(tmp, self.state_path)

    def _scope(self) -> str:
        """Cursors belong to one database (a machine may switch between two)."""
        return f"{self.store.kind}:{self.store.scope}"
