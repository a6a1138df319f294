"""The one place that decides a file's status on a site, and a representation's.

Engine, CLI, UI and both store back-ends call these functions (the SQLite store
registers :func:`site_status_code` as an SQL function), so a file can never be "Failed"
in the table and "Queued" in the CLI. OpenPype hard-coded Failed at 3 tries in its UI;
here the limit is always the configured ``retry_cnt``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from app.model import FileRecord, SiteState, Status

__all__ = [
    "combine",
    "file_pair_status",
    "site_progress",
    "site_status",
    "site_status_code",
]


def site_status(state: SiteState | None, retry_cnt: int, now: datetime) -> Status:
    """Status of one file on one site.

    Order matters: a paused entry is Paused even if it failed (the user's intent is what
    they need to see), an available file is Synced, a file that used up its tries or hit
    a permanent error is Failed until reset, a live lease is In progress. A lease that
    expired (its engine crashed) is honestly Queued again, not "In progress forever".
    """
    if state is None:
        return Status.NOT_AVAILABLE
    return Status(
        site_status_code(
            present=True,
            created=state.created_dt is not None,
            paused=state.paused,
            tries=state.tries,
            permanent=state.permanent,
            lease_until=state.lease_until.timestamp() if state.lease_until else None,
            foreign_progress=state.progress is not None and state.lease_owner is None,
            retry_cnt=retry_cnt,
            now=now.timestamp(),
        )
    )


def site_status_code(
    present: bool,
    created: bool,
    paused: bool,
    tries: int,
    permanent: bool,
    lease_until: float | None,
    foreign_progress: bool,
    retry_cnt: int,
    now: float,
) -> int:
    """Scalar form of :func:`site_status` returning the Status value.

    Kept scalar so SQLite can call it per row as a user-defined function; times are
    epoch seconds. ``foreign_progress`` is a `progress` value written by a process that
    holds no SiteSync lease (OpenPype itself), which OpenPype's UI shows as in progress.
    """
    if not present:
        return Status.NOT_AVAILABLE.value
    if paused:
        return Status.PAUSED.value
    if created:
        return Status.SYNCED.value
    if permanent or (tries or 0) >= retry_cnt:
        return Status.FAILED.value
    if lease_until is not None and lease_until > now:
        return Status.IN_PROGRESS.value
    if foreign_progress:
        return Status.IN_PROGRESS.value
    return Status.QUEUED.value


def combine(statuses: Iterable[Status]) -> Status:
    """Sum up several statuses: the most urgent wins (Paused > Failed > In progress >
    Queued > Not available > Synced). All Synced is Synced; nothing at all is Not available.
    """
    best: Status | None = None
    for status in statuses:
        if best is None or status.rank < best.rank:
            best = status
    return best if best is not None else Status.NOT_AVAILABLE


def file_pair_status(
    file: FileRecord, active: str, remote: str, retry_cnt: int, now: datetime
) -> Status:
    """A file between the active and the remote site: the more urgent of its two sides."""
    return combine(
        (
            site_status(file.site(active), retry_cnt, now),
            site_status(file.site(remote), retry_cnt, now),
        )
    )


def site_progress(state: SiteState | None) -> float:
    """0..1 for progress bars: 1 when available, the recorded fraction while moving."""
    if state is None:
        return 0.0
    if state.created_dt is not None:
        return 1.0
    if isinstance(state.progress, (int, float)):
        return max(0.0, min(1.0, float(state.progress)))
    return 0.0
