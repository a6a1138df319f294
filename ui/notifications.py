"""Desktop notifications, rate-limited and aggregated.

An artist wants to hear that the shot they asked for has arrived, or that files failed;
they do not want a balloon per frame of a 2000-frame sequence. So:

* only two things notify: a file that **failed for good** (tries used up, or a permanent
  error: retrying will not help without the user), and a file **downloaded to this
  machine** (synced to its local site, which the artist subscribed to);
* events are gathered for ``gather_s`` (a second) before the first message, so a burst
  (a sequence finishing) is one message, not a lone frame followed by the rest;
* at most one notification per ``interval_s``: what happens during the quiet interval is
  collected and shown as one message when it ends ("3 files failed", "Downloaded 120
  files").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QTimer

from app.events.types import FileFailed, FileSynced

__all__ = ["Notice", "Notifier"]


@dataclass(frozen=True)
class Notice:
    title: str
    text: str
    error: bool


@dataclass
class _Pending:
    failed: list[FileFailed] = field(default_factory=list)
    downloaded: list[FileSynced] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.failed or self.downloaded)


def _name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class Notifier(QObject):
    """Collects events and calls ``show(Notice)`` at most once per ``interval_s``.

    ``local_sites`` are the site names that mean "this machine" (local_id); a file synced
    to one of them is a download the artist asked for.
    """

    def __init__(self, show: Callable[[Notice], None], local_sites: set[str],
                 interval_s: float = 10.0, parent: QObject | None = None, *,
                 gather_s: float = 1.0) -> None:
        super().__init__(parent)
        self._show = show
        self.local_sites = set(local_sites)
        self._interval = interval_s
        self._gather = gather_s
        self._last = -float("inf")
        self._pending = _Pending()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.flush)

    def file_failed(self, event: FileFailed) -> None:
        if event.permanent:
            self._pending.failed.append(event)
            self._schedule()

    def file_synced(self, event: FileSynced) -> None:
        if event.target_site in self.local_sites:
            self._pending.downloaded.append(event)
            self._schedule()

    def _schedule(self) -> None:
        if self._timer.isActive():
            return
        wait = max(self._gather, self._last + self._interval - time.monotonic())
        self._timer.start(max(1, int(wait * 1000)))

    def flush(self) -> None:
        """Show what is pending now (also called by the timer at the end of a quiet
        interval)."""
        pending, self._pending = self._pending, _Pending()
        if not pending:
            return
        self._last = time.monotonic()
        for notice in self.compose(pending.failed, pending.downloaded):
            self._show(notice)

    @staticmethod
    def compose(failed: list[FileFailed], downloaded: list[FileSynced]) -> list[Notice]:
        """At most one notice about failures (more urgent, first) and one about downloads;
        failures and downloads at once give two messages in the same flush, which the
        tray shows as one balloon (see TrayController.notify)."""
        notices = []
        if failed:
            first = failed[0]
            if len(failed) == 1:
                title = f"Could not sync {_name(first.path)}"
                text = f"{first.error}\nTo {first.target_site}. Open the Sync Queue to retry."
            else:
                title = f"{_plural(len(failed), 'file')} failed"
                text = (f"For example {_name(first.path)}: {first.error}\n"
                        "Open the Sync Queue to see every error and retry.")
            notices.append(Notice(title, text, error=True))
        if downloaded:
            repres = {(e.project, e.repre_id) for e in downloaded}
            if len(downloaded) == 1:
                title = "Downloaded"
                text = f"{_name(downloaded[0].path)} is on this machine."
            else:
                title = f"Downloaded {_plural(len(downloaded), 'file')}"
                text = (f"{_plural(len(repres), 'representation')} "
                        f"({_name(downloaded[0].path)}, …) are on this machine.")
            notices.append(Notice(title, text, error=False))
        return notices
