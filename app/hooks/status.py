"""What the hook runner reports: plain frozen data, safe to hand to the UI thread."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HooksStatus", "PluginStatus"]


@dataclass(frozen=True)
class PluginStatus:
    """One plugin as a user sees it.

    ``state``: "running" (handling an event), "idle" (caught up), "catching up" (behind
    the others, e.g. after a fix), "waiting" (for a plugin before it, to keep the order),
    "retrying" (its callback asked to try the event again later: ``error`` says why),
    "stuck" (a callback has run longer than ``hooks.stuck_after_s``), "failed" (a callback
    raised: fix the file and it resumes), "load error", "disabled" (switched off in the
    settings), "offline" (database unreachable), "starting", "stopped".
    """

    name: str
    path: str
    order: int
    state: str
    last_id: int
    behind: int
    backlog: int
    delivered: int
    callbacks: tuple[str, ...] = ()
    error: str | None = None
    error_event: int | None = None
    busy_s: float | None = None

    @property
    def healthy(self) -> bool:
        return self.state not in ("failed", "load error", "stuck", "offline")


@dataclass(frozen=True)
class HooksStatus:
    """The runner: ``state`` is "running", "standby" (another SiteSync process on this
    machine runs the hooks), "disabled", "stopped" or "error"; ``message`` says why in
    words a user can act on. ``head`` is the newest event id seen."""

    state: str
    message: str
    head: int
    plugins: tuple[PluginStatus, ...] = ()
    problems: tuple[str, ...] = ()
