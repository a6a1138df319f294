"""`sitesync hooks list|replay|skip`: look at and move plugin positions from the CLI.

These work on the state file directly, whether or not a SiteSync process is running the
hooks: a running one notices the change (each row has a version) and continues from the
new position. Nothing here runs plugin code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.hooks.plugin import discover
from app.hooks.state import Cursor, HookState
from app.settings import Settings
from app.store.base import Store

__all__ = ["Move", "PluginRow", "list_plugins", "plan_replay", "plan_skip", "state_dir_for"]


def state_dir_for(data_dir: Path) -> Path:
    return data_dir / "hooks"


@dataclass(frozen=True)
class PluginRow:
    """One plugin as `sitesync hooks list` shows it."""

    name: str
    path: str
    enabled: bool
    last_id: int | None
    behind: int | None
    backlog: int
    error: str | None
    error_event: int | None

    @property
    def state(self) -> str:
        if not self.path:
            return "file missing"
        if not self.enabled:
            return "disabled"
        if self.error:
            return "failed" if self.error_event is not None else "load error"
        if self.last_id is None:
            return "new"
        return "ok"


def list_plugins(settings: Settings, state: HookState, store: Store) -> tuple[list[PluginRow],
                                                                                list[str], int]:
    """Plugins in run order (then state rows whose file is gone), folder problems, and
    the newest event id."""
    head = store.event_log_info().last_id
    files, problems = discover(settings.hooks.plugin_paths)
    cursors = {c.plugin: c for c in state.all()}
    rows = []
    for file in files:
        if file.duplicate_of is not None:
            problems.append(f"{file.path} is ignored: the name {file.name!r} is already used "
                            f"by {file.duplicate_of}")
            continue
        rows.append(_row(file.name, str(file.path), settings, cursors.pop(file.name, None),
                         head))
    for name, cursor in sorted(cursors.items()):
        rows.append(_row(name, "", settings, cursor, head))
    return rows, problems, head


def _row(name: str, path: str, settings: Settings, cursor: Cursor | None, head: int) -> PluginRow:
    return PluginRow(
        name=name, path=path, enabled=settings.hooks.plugin_enabled(name),
        last_id=None if cursor is None else cursor.last_id,
        behind=None if cursor is None else max(0, head - cursor.last_id),
        backlog=0 if cursor is None else len(cursor.backlog),
        error=None if cursor is None else cursor.error,
        error_event=None if cursor is None else cursor.error_event,
    )


@dataclass(frozen=True)
class Move:
    """A planned change of one plugin's position, described before it is made."""

    plugin: str
    description: str
    last_id: int | None = None
    drop_backlog_id: int | None = None

    def apply(self, state: HookState) -> Cursor:
        if self.drop_backlog_id is not None:
            return state.drop_from_backlog(self.plugin, self.drop_backlog_id)
        assert self.last_id is not None
        return state.rewind(self.plugin, self.last_id)


def _cursor(state: HookState, plugin: str) -> Cursor:
    cursor = state.get(plugin)
    if cursor is None:
        known = ", ".join(c.plugin for c in state.all()) or "none yet"
        raise KeyError(f"plugin {plugin!r} has no saved position (known: {known}); it gets "
                       "one when SiteSync first runs it")
    return cursor


def plan_replay(state: HookState, plugin: str, from_id: int, head: int) -> Move:
    """Deliver events ``from_id``.. again."""
    cursor = _cursor(state, plugin)
    if from_id < 1 or from_id > head:
        raise ValueError(f"--from must be an event id from 1 to {head} (the newest)")
    count = head - from_id + 1
    return Move(plugin, f"plugin {plugin} will handle events {from_id}..{head} again ({count} "
                f"event(s), those it saw before marked as redeliveries); it is now at "
                f"{cursor.last_id}", last_id=from_id - 1)


def plan_skip(state: HookState, plugin: str, to: str | None, head: int) -> Move:
    """Skip the event the plugin failed on, or every event up to ``to`` ("latest" = all)."""
    cursor = _cursor(state, plugin)
    if to is None:
        if cursor.error_event is None:
            raise ValueError(f"plugin {plugin} is not stopped on an event; to skip ahead use "
                             "--to ID or --to latest")
        event_id = cursor.error_event
        if event_id in cursor.backlog:
            return Move(plugin, f"plugin {plugin} will never handle event {event_id} (it "
                        "failed on it); it goes on with the next", drop_backlog_id=event_id)
        return Move(plugin, f"plugin {plugin} will never handle event {event_id} (it failed "
                    "on it); it goes on with the next", last_id=max(cursor.last_id, event_id))
    target = head if to == "latest" else _event_id(to)
    if target <= cursor.last_id:
        raise ValueError(f"plugin {plugin} is already at event {cursor.last_id}; to go back use "
                         "`sitesync hooks replay`")
    if target > head:
        raise ValueError(f"--to {target} is beyond the newest event ({head})")
    return Move(plugin, f"plugin {plugin} will never handle events {cursor.last_id + 1}..{target} "
                f"({target - cursor.last_id} event(s))", last_id=target)


def _event_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--to must be an event id or 'latest', not {text!r}") from None
