"""Events: plain, frozen Python objects describing what the engine did.

The engine publishes them on :class:`app.events.bus.EventBus`; the tray bridges them to
Qt signals, the CLI prints them, hooks persist them. They carry ids and numbers, never
live objects, so they can cross threads safely.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.model import Direction

__all__ = [
    "ConflictResolved",
    "EngineStateChanged",
    "Event",
    "FileFailed",
    "FileProgress",
    "FileStaged",
    "FileSynced",
    "IntegrityAlert",
    "RepresentationCompleted",
    "SubscriptionMatched",
    "TransferStarted",
    "TransferStopped",
]


@dataclass(frozen=True)
class Event:
    """Base class: every event knows when it happened."""

    at: datetime


@dataclass(frozen=True)
class _FileEvent(Event):
    project: str
    repre_id: str
    file_id: str
    path: str
    source_site: str
    target_site: str
    direction: Direction


@dataclass(frozen=True)
class TransferStarted(_FileEvent):
    size: int
    resumed_from: int = 0


@dataclass(frozen=True)
class FileProgress(_FileEvent):
    """Snapshot of one transfer; published at most every ~0.1 s per file."""

    bytes_done: int
    size: int
    bytes_per_s: float


@dataclass(frozen=True)
class FileSynced(_FileEvent):
    size: int
    checksum: str
    seconds: float


@dataclass(frozen=True)
class FileFailed(_FileEvent):
    error: str
    tries: int
    permanent: bool
    next_attempt_dt: datetime | None


@dataclass(frozen=True)
class TransferStopped(_FileEvent):
    """A transfer ended without a result: paused, shut down, or its claim was lost.

    No try is counted and the file stays queued; listeners (the tray's in-flight totals,
    the queue's rows) need it because otherwise the transfer would look running forever.
    """

    reason: str


@dataclass(frozen=True)
class EngineStateChanged(Event):
    """``state``: "starting", "running", "idle", "paused", "offline", "stopping", "stopped".

    ``message`` explains offline/error states in words a user can act on.
    """

    state: str
    in_flight: int = 0
    message: str = ""


@dataclass(frozen=True)
class ConflictResolved(_FileEvent):
    """The target already held a different file under the published path, and the
    conflict policy (docs/transfer-policy.md) decided.

    ``policy`` is the rule that applied (``this``, ``other``, ``newer`` or ``fail``);
    ``outcome`` is ``took_incoming`` (the published file was written; the file that was
    there is kept as ``kept_as``), ``kept_target`` (the file there stays; the published
    file is not written and the entry is marked failed) or ``failed`` (nothing changed,
    someone has to decide). Nothing is ever deleted.
    """

    policy: str
    outcome: str
    detail: str
    kept_as: str = ""


@dataclass(frozen=True)
class IntegrityAlert(Event):
    """A published file is not what was published: on ``site`` its size or content
    differs from what was recorded (it was edited, replaced or has rotted).

    Published files must never change, so this is never resolved automatically; it is
    raised by the engine (a source that changed) and by ``sitesync validate`` (a copy
    that changed), with ``action`` saying what to do.
    """

    project: str
    repre_id: str
    file_id: str
    path: str
    site: str
    detail: str
    expected: str = ""
    found: str = ""
    action: str = ""


@dataclass(frozen=True)
class FileStaged(FileSynced):
    """A "when complete" file moved and verified under its staged name; it becomes
    available with the rest of its representation (RepresentationCompleted). A
    FileSynced, so listeners that count finished transfers count it."""


@dataclass(frozen=True)
class RepresentationCompleted(Event):
    """Every file of a "when complete" representation was moved into place on ``site``
    and made available at once. ``kept`` lists conflict copies of files that were in
    the way (nothing is deleted)."""

    project: str
    repre_id: str
    site: str
    files: int
    kept: tuple[str, ...] = ()


@dataclass(frozen=True)
class SubscriptionMatched(Event):
    """A subscription rule added ``site`` to a new publish (``entries`` file entries)."""

    project: str
    repre_id: str
    site: str
    rule: str
    mode: str
    entries: int
