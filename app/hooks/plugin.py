"""Plugins: Python files that register callbacks for event log entries.

A plugin is a ``.py`` file in one of the ``hooks.plugin_paths`` folders that defines
``register(reg)`` (``registerCallbacks(reg)``, the ShotGrid event daemon's name, works
too). ``reg.callback(fn, events=..., projects=..., sites=..., args=...)`` registers a
callback; callbacks run in registration order. Loading runs the file's top level and
``register``; anything it raises marks the plugin "load error" and keeps its position in
the log, so fixing the file resumes it where it stopped.

This module only loads and describes plugins; :mod:`app.hooks.consumer` delivers events.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from app.model import EventRecord, EventType
from app.settings.schema import LOCAL_SITE, did_you_mean

__all__ = [
    "Callback",
    "HookContext",
    "LoadedPlugin",
    "PluginError",
    "PluginFile",
    "Registrar",
    "RetryLater",
    "describe_exception",
    "discover",
    "load_plugin",
    "unload",
]

_NO_ARGS = object()
_module_ids = itertools.count(1)
#: Event types a callback may ask for ("*" or None = all of them).
EVENT_NAMES = tuple(t.value for t in EventType.public())


class PluginError(Exception):
    """A plugin that cannot be loaded or registered; the text says what to change."""


class RetryLater(Exception):
    """Raised by a callback when the outside world is not ready (a server down): the
    plugin keeps the event and tries it again after ``after_s`` seconds (doubling while it
    keeps failing, up to five minutes), without being marked failed. Any other exception
    stops the plugin until its file is fixed."""

    def __init__(self, message: str, after_s: float | None = None) -> None:
        super().__init__(message)
        self.after_s = after_s


@dataclass(frozen=True)
class PluginFile:
    """A plugin found on disk. ``order`` is its place in the run order: plugin path
    order, then file name; ``duplicate_of`` names the file that already uses its name."""

    name: str
    path: Path
    order: int
    duplicate_of: Path | None = None

    def signature(self) -> tuple[int, int] | None:
        """(mtime, size) to notice edits; None when the file is gone."""
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size


def discover(folders: Iterable[Path]) -> tuple[list[PluginFile], list[str]]:
    """Plugin files in run order, and problems with the folders (missing, unreadable).

    Files whose name starts with ``_`` or ``.`` are helpers, not plugins. A name already
    used by an earlier file is reported as a duplicate (the state is kept by name).
    """
    found: list[PluginFile] = []
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for folder in folders:
        try:
            names = sorted(p.name for p in folder.iterdir() if p.suffix == ".py" and p.is_file())
        except FileNotFoundError:
            problems.append(f"plugin folder {folder} does not exist: create it or fix "
                            "hooks.plugin_paths in the settings")
            continue
        except OSError as exc:
            problems.append(f"plugin folder {folder} cannot be read ({exc.strerror or exc}): "
                            "check its permissions or fix hooks.plugin_paths")
            continue
        for file_name in names:
            if file_name.startswith(("_", ".")):
                continue
            path = folder / file_name
            stem = path.stem
            found.append(PluginFile(stem, path, len(found), seen.get(stem)))
            seen.setdefault(stem, path)
    return found, problems


@dataclass(frozen=True)
class Callback:
    """One registered callback and its filter (None = any)."""

    fn: Callable[..., Any]
    name: str
    events: frozenset[str] | None = None
    projects: frozenset[str] | None = None
    sites: frozenset[str] | None = None
    args: Any = _NO_ARGS

    def matches(self, event: EventRecord) -> bool:
        return (
            (self.events is None or event.type in self.events)
            and (self.projects is None or event.project in self.projects)
            and (self.sites is None or event.site in self.sites)
        )

    def call(self, event: EventRecord, ctx: HookContext) -> None:
        if self.args is _NO_ARGS:
            self.fn(event, ctx)
        else:
            self.fn(event, ctx, self.args)

    def describe(self) -> str:
        parts = [self.name]
        for label, values in (("events", self.events), ("projects", self.projects),
                              ("sites", self.sites)):
            if values is not None:
                parts.append(f"{label}={','.join(sorted(values))}")
        return " ".join(parts)


@dataclass
class HookContext:
    """What a callback gets besides the event.

    ``idempotency_key`` is the same every time this event is delivered, and differs for
    every other event (it is the event id qualified by the log's id): pass it to any
    system outside SiteSync that can drop duplicates. ``redelivery`` is True when this
    plugin may have seen the event before (SiteSync stopped while it was being handled,
    or a replay): check the outside system before acting twice. ``late`` is True for an
    event whose id was missing for a while and arrived after later ones. ``state`` is a
    JSON-able dict kept for the plugin and saved together with its position in the log:
    a change made by a callback is kept exactly when the event counts as processed.
    """

    plugin: str
    log: logging.Logger
    idempotency_key: str
    redelivery: bool
    late: bool
    state: dict[str, Any]
    options: Mapping[str, Any]
    local_id: str


class Registrar:
    """Handed to a plugin's ``register``: how it says what it wants.

    ``options`` is the plugin's block in ``hooks.plugins.<name>`` (without ``enabled``);
    ``data_dir`` a folder of its own for files it keeps; ``log`` its logger.
    """

    def __init__(self, name: str, options: Mapping[str, Any], local_id: str,
                 log: logging.Logger, data_dir: Path) -> None:
        self.name = name
        self.options = options
        self.local_id = local_id
        self.log = log
        self.data_dir = data_dir
        self.callbacks: list[Callback] = []

    def callback(
        self,
        fn: Callable[..., Any],
        *,
        events: str | Iterable[str] | None = None,
        projects: str | Iterable[str] | None = None,
        sites: str | Iterable[str] | None = None,
        args: Any = _NO_ARGS,
        name: str | None = None,
    ) -> None:
        """Call ``fn(event, ctx)`` (``fn(event, ctx, args)`` when ``args`` is given) for
        every event matching all filters. ``events``: event type names or "*";
        ``projects``/``sites``: names, ``"local"`` meaning this machine's site. ``args``
        is shared, mutable state for callbacks that work together (the same object is
        passed every time)."""
        if not callable(fn):
            raise PluginError(f"callback {fn!r} is not a function")
        event_names = _names(events, "events")
        if event_names is not None and "*" in event_names:
            event_names = None
        for event in event_names or ():
            if event not in EVENT_NAMES:
                hint = did_you_mean(event, EVENT_NAMES)
                raise PluginError(f"unknown event type {event!r}" +
                                  (f"; did you mean {hint!r}?" if hint else "") +
                                  f" (known: {', '.join(EVENT_NAMES)})")
        sites_names = _names(sites, "sites")
        if sites_names is not None and self.local_id:
            sites_names = frozenset(self.local_id if s == LOCAL_SITE else s for s in sites_names)
        self.callbacks.append(Callback(
            fn=fn, name=name or getattr(fn, "__name__", type(fn).__name__),
            events=event_names, projects=_names(projects, "projects"), sites=sites_names,
            args=args,
        ))


def _names(value: str | Iterable[str] | None, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(v, str) and v for v in items):
        raise PluginError(f"{what} must be a name or a list of names, not {value!r}")
    return frozenset(items)


@dataclass
class LoadedPlugin:
    """A plugin whose file ran and registered without error."""

    file: PluginFile
    signature: tuple[int, int] | None
    callbacks: list[Callback]
    module: ModuleType = field(repr=False)

    def wants(self, event: EventRecord) -> bool:
        return any(cb.matches(event) for cb in self.callbacks)


def load_plugin(file: PluginFile, registrar: Registrar) -> LoadedPlugin:
    """Run the plugin file and its ``register``; raise PluginError saying what is wrong."""
    if file.duplicate_of is not None:
        raise PluginError(f"another plugin named {file.name!r} is already loaded from "
                          f"{file.duplicate_of}; rename one of the two files")
    signature = file.signature()
    module_name = f"sitesync_plugin_{next(_module_ids)}_{file.name}"
    spec = importlib.util.spec_from_file_location(module_name, file.path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{file.path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
        register = getattr(module, "register", None) or getattr(module, "registerCallbacks", None)
        if not callable(register):
            raise PluginError("defines no register(reg) function: add one that calls "
                              "reg.callback(...) for the events it wants")
        register(registrar)
    except PluginError:
        sys.modules.pop(module_name, None)
        raise
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise PluginError(f"stopped while loading ({type(exc).__name__})") from None
        raise PluginError(describe_exception(exc, file.path)) from exc
    if not registrar.callbacks:
        sys.modules.pop(module_name, None)
        raise PluginError("register(reg) registered no callback: call reg.callback(fn, "
                          "events=[...]) for what the plugin reacts to")
    return LoadedPlugin(file=file, signature=signature, callbacks=list(registrar.callbacks),
                        module=module)


def unload(plugin: LoadedPlugin) -> None:
    sys.modules.pop(plugin.module.__name__, None)


def describe_exception(exc: BaseException, path: Path) -> str:
    """``Type: message (file:line)``, at the deepest frame inside the plugin file: how a
    load or callback error is shown in status."""
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == path:
            where = f" ({path.name}:{frame.lineno})"
    if isinstance(exc, SyntaxError) and exc.lineno:
        where = f" ({path.name}:{exc.lineno})"
        return f"SyntaxError: {exc.msg}{where}"
    return f"{type(exc).__name__}: {exc}{where}"

