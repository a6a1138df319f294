"""What the tray icon says: one pure function from the engine's totals to icon + tooltip.

Kept free of widgets so every state is tested directly. Precedence, most urgent first:

1. **offline**: the database cannot be reached; nothing can sync, the engine retries.
2. **error** because of a *settings* problem (a site that cannot be used): the engine
   cannot sync that pair at all until the user fixes it.
3. **paused**: the user paused syncing (shown even with failures: it is what they did).
4. **syncing**: transfers are running; the tooltip gives counts and overall progress.
5. **error** because files failed: representations marked Failed in the database.
6. **idle**: everything this machine tracks is synced.
"""

from __future__ import annotations

from dataclasses import dataclass

from ui.bridge import Totals

__all__ = ["TrayView", "human_size", "tray_view"]

_STARTING = frozenset({"starting", "stopping", "stopped"})


@dataclass(frozen=True)
class TrayView:
    state: str  # one of ui.icons.STATE_NAMES, or "starting"
    title: str  # first tooltip line; also the menu's status line
    detail: str = ""  # further tooltip lines

    @property
    def tooltip(self) -> str:
        return f"SiteSync: {self.title}" + (f"\n{self.detail}" if self.detail else "")


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def tray_view(totals: Totals, *, paused: bool, failed_representations: int = 0,
              store_error: str = "") -> TrayView:
    """The tray's icon state and tooltip.

    ``paused`` is the engine's persisted pause (known before the engine reports it);
    ``failed_representations`` the Failed rows in the database (all projects);
    ``store_error`` a problem opening the database (the engine cannot even start).
    """
    failed_line = (f"{_plural(failed_representations, 'representation')} failed: "
                   "open the Sync Queue to see why and retry"
                   if failed_representations else "")
    if store_error or totals.state == "offline":
        message = store_error or totals.message or "the database does not answer"
        return TrayView("offline", "database offline",
                        f"{message}\nSyncing continues when it answers again "
                        "(Settings… to change the database).")
    problem = totals.message if totals.state in ("running", "idle") else ""
    if problem:
        return TrayView("error", "cannot sync", f"{problem}\nOpen Settings… to fix it.")
    if paused or totals.state == "paused":
        lines = ["Syncing is paused on this machine; choose Resume syncing to continue."]
        if failed_line:
            lines.append(failed_line)
        return TrayView("paused", "paused", "\n".join(lines))
    if totals.in_flight:
        title = f"syncing {_plural(totals.in_flight, 'file')}"
        fraction = totals.fraction
        lines = []
        if fraction is not None:
            title += f", {fraction:.0%}"
            lines.append(f"{human_size(totals.bytes_done)} of {human_size(totals.bytes_total)}")
        lines.append(f"{totals.synced} synced, {totals.failed} failed since start")
        if failed_line:
            lines.append(failed_line)
        return TrayView("syncing", title, "\n".join(lines))
    if failed_representations:
        return TrayView("error", f"{_plural(failed_representations, 'representation')} failed",
                        "Open the Sync Queue to see the errors and retry.")
    if totals.state in _STARTING:
        return TrayView("starting", "starting…" if totals.state == "starting" else totals.state)
    return TrayView("idle", "all files synced",
                    f"{totals.synced} synced since start" if totals.synced else "")
