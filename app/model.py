"""Plain data shared by every layer: representations, files, site states, work items.

No I/O here. The store back-ends translate their rows or OpenPype documents into these
frozen objects, so the engine, CLI and UI never see a storage format. Ids are strings
(an ObjectId's 24-hex text for OpenPype documents) so the model has no pymongo
dependency; the Mongo store converts at its boundary.

Datetimes in the model are timezone-aware UTC. OpenPype writes naive local time; the
codec reads naive values as UTC, which is what pymongo does with BSON dates anyway.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

__all__ = [
    "DEFAULT_PRIORITY",
    "Claim",
    "Direction",
    "EventLogInfo",
    "EventRecord",
    "EventType",
    "FileDetail",
    "FileRecord",
    "ProjectInfo",
    "Representation",
    "RepresentationHead",
    "SideSummary",
    "SiteState",
    "Status",
    "SummaryPage",
    "SummaryQuery",
    "SummaryRow",
    "WorkItem",
]

#: OpenPype's implicit priority when no site entry carries one.
DEFAULT_PRIORITY = 50


class Status(enum.Enum):
    """What a user is told about a file (or a representation) on a site.

    The values are OpenPype's `lib.STATUS` codes, so numbers seen in old tools still mean
    the same thing. ``rank`` orders them by urgency: when several files are summed up
    into one representation, the most urgent status wins (see ``status.combine``).
    """

    IN_PROGRESS = 0
    QUEUED = 1
    FAILED = 2
    PAUSED = 3
    SYNCED = 4
    NOT_AVAILABLE = -1

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def rank(self) -> int:
        return _RANKS[self]

    @classmethod
    def from_label(cls, text: str) -> Status:
        """Parse a user-typed status name (`failed`, `in-progress`, `Synced`)."""
        key = text.strip().lower().replace("-", " ").replace("_", " ")
        for status, label in _LABELS.items():
            if label.lower() == key or status.name.lower().replace("_", " ") == key:
                return status
        names = ", ".join(s.label for s in cls)
        raise ValueError(f"unknown status {text!r}; use one of: {names}")


_LABELS = {
    Status.IN_PROGRESS: "In progress",
    Status.QUEUED: "Queued",
    Status.FAILED: "Failed",
    Status.PAUSED: "Paused",
    Status.SYNCED: "Synced",
    Status.NOT_AVAILABLE: "Not available",
}
# Lower rank = more urgent; combining takes the minimum.
_RANKS = {
    Status.PAUSED: 0,
    Status.FAILED: 1,
    Status.IN_PROGRESS: 2,
    Status.QUEUED: 3,
    Status.NOT_AVAILABLE: 4,
    Status.SYNCED: 5,
}


class Direction(enum.Enum):
    """Seen from the active site: upload = active -> remote, download = remote -> active."""

    UPLOAD = "upload"
    DOWNLOAD = "download"

    # Members are singletons compared by identity, so the identity hash is a correct one;
    # Enum's own __hash__ is a Python-level call, and the engine hashes directions in
    # its slot keys about 45 times per file.
    __hash__ = object.__hash__


@dataclass(frozen=True)
class SiteState:
    """One `files[].sites[]` entry: OpenPype's fields, then SiteSync's own.

    OpenPype fields keep OpenPype's meaning (`created_dt` present = available there).
    SiteSync's additions are stored beside them under `sitesync_*` keys and never
    replace an OpenPype field, so OpenPype still reads the document.
    """

    name: str
    created_dt: datetime | None = None
    id: str | None = None
    tries: int = 0
    error: str | None = None
    last_failed_dt: datetime | None = None
    progress: float | None = None
    paused: bool = False
    priority: int | None = None
    # SiteSync additions
    lease_owner: str | None = None
    lease_until: datetime | None = None
    checksum: str | None = None
    next_attempt_dt: datetime | None = None
    permanent: bool = False
    #: "When complete" entry (a subscription's mode): files are staged under a temporary
    #: name and moved into place together once every file is staged (app.policy.staging).
    atomic: bool = False
    #: When the file was verified under its staged name; None = not staged.
    staged_dt: datetime | None = None

    @property
    def available(self) -> bool:
        return self.created_dt is not None


@dataclass(frozen=True)
class FileRecord:
    """One `files[]` element: a rootless path such as `{root[work]}/proj/x.ma`."""

    id: str
    path: str
    size: int
    hash: str = ""
    sites: tuple[SiteState, ...] = ()

    def site(self, name: str) -> SiteState | None:
        for state in self.sites:
            if state.name == name:
                return state
        return None


@dataclass(frozen=True)
class Representation:
    """A published representation and its files, as OpenPype's document describes it.

    ``context`` is kept whole (OpenPype's `context` dict) so nothing a pipeline put
    there is lost; the properties read the keys the UI shows.
    """

    id: str
    project: str
    context: dict = field(default_factory=dict)
    files: tuple[FileRecord, ...] = ()
    parent: str | None = None
    name: str = ""
    created_dt: datetime | None = None

    @property
    def asset(self) -> str:
        return str(self.context.get("asset", ""))

    @property
    def subset(self) -> str:
        return str(self.context.get("subset", ""))

    @property
    def version(self) -> int | None:
        """The version number; None when the context holds none, or no usable one (text,
        a flag, a number beyond 64 bits that no database column holds)."""
        value = self.context.get("version")
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**63:
            return None
        return value

    @property
    def representation(self) -> str:
        return str(self.context.get("representation", self.name))

    def file(self, file_id: str) -> FileRecord | None:
        for f in self.files:
            if f.id == file_id:
                return f
        return None


@dataclass(frozen=True)
class RepresentationHead:
    """A representation without its files: what subscriptions match and what paging
    through a project starts from, cheap even for representations of 100,000 files.

    ``key`` is the store's own insertion order as sortable text (SQLite: the row number;
    MongoDB: the ObjectId); pass it back as ``after`` to read on.
    """

    id: str
    project: str
    key: str
    context: dict = field(default_factory=dict)
    name: str = ""
    created_dt: datetime | None = None
    files_count: int = 0

    @property
    def asset(self) -> str:
        return str(self.context.get("asset", ""))

    @property
    def subset(self) -> str:
        return str(self.context.get("subset", ""))

    @property
    def representation(self) -> str:
        return str(self.context.get("representation", self.name))

    @property
    def families(self) -> tuple[str, ...]:
        """``context.family`` plus any ``context.families`` (OpenPype writes either)."""
        found = [self.context.get("family")]
        extra = self.context.get("families")
        if isinstance(extra, list | tuple):
            found.extend(extra)
        return tuple(dict.fromkeys(str(f) for f in found if isinstance(f, str) and f))


@dataclass(frozen=True)
class ProjectInfo:
    name: str
    code: str = ""
    paused: bool = False
    representations: int = 0


@dataclass(frozen=True)
class WorkItem:
    """One file that needs moving from ``source_site`` to ``target_site``."""

    project: str
    repre_id: str
    file_id: str
    path: str
    size: int
    hash: str
    source_site: str
    target_site: str
    direction: Direction
    priority: int = DEFAULT_PRIORITY
    tries: int = 0
    source_checksum: str | None = None
    #: The target entry is "when complete": write under the staged name (app.policy.staging).
    atomic: bool = False


@dataclass(frozen=True)
class Claim:
    """A leased right to move ``item``; valid until ``lease_until`` unless extended."""

    item: WorkItem
    owner: str
    lease_until: datetime

    def renewed(self, lease_until: datetime) -> Claim:
        return replace(self, lease_until=lease_until)


@dataclass(frozen=True)
class SummaryQuery:
    """What the Sync Queue table asks for: one page of one project for one site pair."""

    active_site: str
    remote_site: str
    text: str = ""
    statuses: frozenset[Status] = frozenset()
    sort_key: str = "asset"
    descending: bool = False
    offset: int = 0
    limit: int = 50
    #: False: the caller does not need ``SummaryPage.status_counts`` (a later page of the
    #: same query, or counts fetched separately), so a back-end may leave them empty and
    #: skip aggregating every representation; ``total`` is exact either way.
    with_counts: bool = True

    SORT_KEYS = (
        "asset", "subset", "version", "representation", "files_count", "size",
        "priority", "status", "active_dt", "remote_dt", "created",
    )


@dataclass(frozen=True)
class SideSummary:
    """A representation seen from one site: combined status, mean progress, latest date."""

    status: Status
    progress: float
    updated_dt: datetime | None = None
    tries: int = 0
    error: str | None = None


@dataclass(frozen=True)
class SummaryRow:
    repre_id: str
    asset: str
    subset: str
    version: int | None
    representation: str
    active: SideSummary
    remote: SideSummary
    files_count: int
    size: int
    priority: int
    status: Status
    first_path: str = ""


@dataclass(frozen=True)
class SummaryPage:
    rows: tuple[SummaryRow, ...]
    total: int
    status_counts: dict[Status, int]


@dataclass(frozen=True)
class FileDetail:
    """One file of a representation for the detail view, both sides of the pair."""

    file_id: str
    path: str
    size: int
    active: SiteState | None
    remote: SiteState | None
    active_status: Status
    remote_status: Status
    status: Status


class EventType(enum.StrEnum):
    """What the append-only event log records (see :meth:`app.store.base.Store.read_events`).

    The values are what plugins filter on and what is stored, so they never change.
    ``GAP`` is not an event: it marks an id that was declared lost (sealed), so no late
    write can ever land on it; readers skip it.
    """

    FILE_SYNCED = "file_synced"
    FILE_FAILED = "file_failed"
    REPRESENTATION_READY = "representation_ready"
    SITE_PAUSED = "site_paused"
    SITE_RESUMED = "site_resumed"
    RETRY_REQUESTED = "retry_requested"
    INTEGRITY_ALERT = "integrity_alert"
    GAP = "gap"

    @classmethod
    def public(cls) -> tuple[EventType, ...]:
        """The types a plugin can subscribe to (everything but GAP)."""
        return tuple(t for t in cls if t is not cls.GAP)


@dataclass(frozen=True)
class EventRecord:
    """One entry of the event log: immutable once written, ids increase with time.

    ``site`` is the site the event is about (the target of a transfer, the site paused,
    retried or now complete). ``data`` holds JSON values only (text, numbers, booleans,
    lists, mappings; times as ISO text), so a plugin can log or forward it as it is.
    """

    id: int
    type: str
    at: datetime
    project: str
    site: str = ""
    repre_id: str = ""
    file_id: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_gap(self) -> bool:
        return self.type == EventType.GAP.value


@dataclass(frozen=True)
class EventLogInfo:
    """Where the log stands. ``log_id`` changes only when the log itself is new (another
    database, a deleted file), which tells a reader its saved positions mean nothing here.
    ``pruned_through``: ids up to it may have been removed by retention pruning (0: none
    ever were), so a reader missing one of them need not wait for it; ``last_id`` is the
    newest committed id (0 when the log is empty)."""

    log_id: str
    pruned_through: int
    last_id: int
