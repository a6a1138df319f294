"""MongoStore: the store contract on a studio's OpenPype/Avalon MongoDB.

The documents stay exactly what OpenPype reads and writes, so OpenPype's own tray, Loader
and sync server can run beside SiteSync on the same database:

* one collection per project, holding a ``{type: "project"}`` document; SiteSync's
  project pause is ``data.sitesync_paused`` (top-level ``sitesync_paused`` if ``data`` is
  not an object), never a replacement of an OpenPype field;
* representation documents as :func:`app.store.docs.representation_to_doc` writes them,
  24-hex ids stored as ObjectIds, datetimes as BSON dates, no nulls for absent keys;
* every write is a targeted ``update_one`` with ``array_filters``
  (``files.$[f].sites.$[s]``), like OpenPype's ``update_db``/``_reset_site``/``_add_site``,
  so fields SiteSync does not own are never rewritten. Leases, checksums and back-off are
  ``sitesync_*`` keys beside OpenPype's on the same site entry.

**Legacy dict-form ``sites``.** Pype 2 and the old README HOWTO
(``$set {"files.$[].sites.gdrive": {}}``) leave ``sites`` as ``{"gdrive": {}}``. Reads
accept that form, but no ``$elemMatch`` query or array filter can see into it. Before
looking for work, building a summary or changing one document, such documents are turned
into the list form with a compare-and-swap update (``{_id, files: <old>}`` ->
``$set files``), so a concurrent writer is never overwritten. The project-wide scan is a
collection scan, so it runs on first use of a project, then at most every
:attr:`MongoStore.legacy_scan_interval_s`, and at once when the change stream shows an
insert or update that produced dict-form ``sites``; a mutation on a single document that
is still dict-form converts that document first.

**SecantusDB (the test server) quirks, and how the code stays portable:**

* ``$elemMatch: {$and: ...}`` / ``{$or: ...}`` fails ("unknown operator") when the ``$``
  operator is the first key: every ``$elemMatch`` here starts with a plain field.
* Nested ``$elemMatch`` never uses an index (collection scan); only top-level dotted
  equality does (``files.sites.name``, ``type``, ``_id``).
* Null equality on a multikey-indexed path returns wrong (empty) results: with the
  ``files.sites.name + files.sites.created_dt`` index present,
  ``{"files.sites.name": X, "files.sites.created_dt": null}`` matches nothing. Queries
  here therefore test ``created_dt`` only inside ``$elemMatch`` (which Secantus answers
  correctly by scanning and real MongoDB answers from that compound index).
* Aggregation field paths through arrays resolve to "missing", so summaries and work
  ordering are computed in Python from projected documents, with :mod:`app.status`.

**The event log** (``sitesync_events``, ids from a counter in ``sitesync_counters``).
MongoDB has no multi-document transaction without a replica set, so an event cannot be
inserted in the same write as the state change. Instead the state change's own
``update_one`` also ``$push``es the event onto the representation's
``sitesync_outbox`` array (atomic with the change: a crash can never leave one without
the other), and a background thread (:class:`_EventLog`) copies outbox entries into the
log in batches, then takes them out of their documents a moment later, one write per
document for everything logged meanwhile (the array is removed when empty). Each entry
has a ``uid`` (unique in the log), so an entry seen twice (a crash before it was taken
out, two processes draining one document) is logged once. ``representation_ready`` is derived while
draining, from the document as it is then, with a ``uid`` made of the representation,
the site and its newest ``created_dt``, so it is logged once per completion. Entries
left by a crashed process are drained on the next start and every few minutes. The
transfer path pays nothing extra: the event rides in the update it already makes.

Because the id is taken from the counter before the insert, ids can become visible out
of order (a gap that fills a moment later), and an id taken by a process killed before
its insert never fills. Readers seal such ids after waiting (:meth:`MongoStore.
seal_event_id` inserts a ``gap`` record under that ``_id``); a writer whose insert then
hits the sealed ``_id`` takes a new id, so a late event is renumbered, never lost.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Collection as AbcCollection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import unquote

import bson
import bson.errors
from bson import ObjectId
from bson.errors import InvalidDocument
from pymongo import ASCENDING, DESCENDING, MongoClient, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    InvalidName,
    InvalidURI,
    OperationFailure,
    PyMongoError,
    WriteError,
)

from app.errors import ConfigError, DocumentError, StoreUnavailableError
from app.model import (
    DEFAULT_PRIORITY,
    Claim,
    Direction,
    EventLogInfo,
    EventRecord,
    EventType,
    FileDetail,
    FileRecord,
    ProjectInfo,
    Representation,
    RepresentationHead,
    SideSummary,
    SiteState,
    Status,
    SummaryPage,
    SummaryQuery,
    SummaryRow,
    WorkItem,
)
from app.status import combine, file_pair_status, site_progress, site_status
from app.store.base import CHUNK_FILES, Store
from app.store.docs import (
    KEPT_ON_RESET,
    SITESYNC_KEYS,
    parse_datetime,
    parse_file,
    parse_representation,
    representation_to_doc,
)

__all__ = ["MongoStore"]

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")
Doc = dict[str, Any]

#: ``$slice`` count meaning "every file" (the server needs a number).
_ALL_FILES = 2**31 - 1
#: Results recorded side by side (record_successes): enough to hide a WAN round trip
#: behind the others, few enough to stay far below the client's connection pool.
_RECORD_THREADS = 8
#: Path of "the target site entry of one file", resolved by array filters f and s.
_ENTRY = "files.$[f].sites.$[s]."
_LEASE_KEYS = ("sitesync_lease_owner", "sitesync_lease_until")
#: Keys a reset always clears (besides any other key the entry has, except name/priority).
_RESET_KEYS = ("created_dt", "id", "tries", "error", "last_failed_dt", "progress", "paused",
               *(k for k in SITESYNC_KEYS if k not in KEPT_ON_RESET))
#: A "when complete" entry that is neither available nor staged yet.
def _unstaged(site: str) -> Doc:
    return {"name": site, "created_dt": {"$in": [None, ""]},
            "sitesync_staged_dt": {"$in": [None, ""]}}


_HEX24 = re.compile(r"^[0-9a-fA-F]{24}$")
#: `files` element whose `sites` is an object, not a list (legacy form).
_LEGACY_QUERY: Doc = {
    "type": "representation",
    "files": {"$elemMatch": {"sites": {"$type": "object"}, "sites.0": {"$exists": False}}},
}
#: Documents per summary batch. pymongo decodes a whole batch in C without releasing the
#: GIL; at the default (up to 16 MB) a 10,000-representation summary held it for 0.25 to
#: 0.45 s at a time and froze the Sync Queue's GUI thread while a worker read the page.
_SUMMARY_BATCH = 500
#: Files read per round trip from a representation document: a 16 MB document of 35,000
#: frames is never decoded whole (``$slice``; the rest of find_work's candidates come from
#: an aggregation that returns only matching files).
FILES_PAGE = 1000
_WORK_PROJECTION = {"sitesync_created_dt": 1}
_SUMMARY_PROJECTION = {
    "name": 1, "sitesync_created_dt": 1, "context.asset": 1, "context.subset": 1,
    "context.version": 1, "context.representation": 1,
}
#: MongoDB's document size limit, and the room a representation must leave for its site
#: entries to grow (one more site, synced: created_dt, id and checksum on every file).
BSON_LIMIT = 16 * 1024 * 1024
SITE_ENTRY_ROOM = 200
#: Indexes for what the engine and the UI poll; created once per collection.
_INDEXES: tuple[list[tuple[str, int]], ...] = (
    [("type", ASCENDING)],
    [("files._id", ASCENDING)],
    [("files.sites.name", ASCENDING), ("files.sites.created_dt", ASCENDING)],
)
#: The event log's collections, beside the project collections (no project document, so
#: list_projects never shows them).
_EVENTS = "sitesync_events"
_COUNTERS = "sitesync_counters"
_OUTBOX = "sitesync_outbox"
_RESERVED = frozenset({_EVENTS, _COUNTERS})
#: Server codes meaning "not allowed": a setting to fix, not an outage.
_AUTH_CODES = frozenset({13, 18, 8000})
#: Index already there under another name or options: nothing to do.
_INDEX_EXISTS_CODES = frozenset({85, 86})


# -- small pure helpers ------------------------------------------------------------------------


def _redactor(uri: str) -> Callable[[str], str]:
    """A function that removes the URI's password from any text (raw and %-decoded)."""
    secrets: list[str] = []
    match = re.match(r"^[A-Za-z0-9+.-]+://([^@/?#]*)@", uri)
    if match and ":" in match.group(1):
        password = match.group(1).split(":", 1)[1]
        secrets = sorted({password, unquote(password)} - {""}, key=len, reverse=True)
    userinfo = re.compile(r"(://[^:/@\s]*):[^@\s]*@")

    def redact(text: str) -> str:
        text = userinfo.sub(r"\1:***@", text)
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    return redact


def _hosts(uri: str) -> str:
    """`host:port[,host...]` of a URI, for messages (never the credentials)."""
    rest = uri.split("://", 1)[-1]
    rest = rest.rsplit("@", 1)[-1] if "@" in rest.split("/", 1)[0] else rest
    return re.split(r"[/?]", rest, maxsplit=1)[0] or "localhost"


def _as_id(value: str) -> Any:
    """How SiteSync writes an id: 24-hex text becomes an ObjectId, anything else stays."""
    return ObjectId(value) if _HEX24.match(value) else value


def _id_match(value: str) -> Any:
    """Query value matching an id written by OpenPype (ObjectId) or by another tool as text."""
    return {"$in": [ObjectId(value), value]} if _HEX24.match(value) else value


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _bson_time(value: datetime) -> datetime:
    """The instant as BSON stores it (milliseconds), so equality filters match what was
    written; pymongo truncates microseconds the same way."""
    value = _aware(value)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _has_dict_sites(doc: Mapping[str, Any]) -> bool:
    files = doc.get("files")
    return isinstance(files, list) and any(
        isinstance(f, Mapping) and isinstance(f.get("sites"), Mapping) for f in files
    )


def _sites_as_list(sites: Mapping[str, Any]) -> list[Doc] | None:
    """Legacy `{"gdrive": {...}}` as OpenPype 3 entries; None if an entry is not an object."""
    entries = []
    for name, entry in sites.items():
        if entry is None:
            entry = {}
        if not isinstance(entry, Mapping):
            return None
        converted: Doc = {"name": str(name)}
        converted.update((k, v) for k, v in entry.items() if k != "name" and v is not None)
        entries.append(converted)
    return entries


def _listified_files(files: Any) -> list[Any] | None:
    """`files` with every dict-form `sites` as a list; None if nothing (or nothing safe) to do."""
    if not isinstance(files, list):
        return None
    changed, out = False, []
    for raw in files:
        if isinstance(raw, Mapping) and isinstance(raw.get("sites"), Mapping):
            sites = _sites_as_list(raw["sites"])
            if sites is None:
                return None
            raw = {**raw, "sites": sites}
            changed = True
        out.append(raw)
    return out if changed else None


_SET_SITE_KEY = re.compile(r"^files\.\d+\.sites\.([^.]+)$")
_SET_FILES_KEY = re.compile(r"^files(\.\d+)?(\.sites)?$")


def _event_may_add_legacy(event: Mapping[str, Any]) -> bool:
    """Whether a change-stream event may have left dict-form `sites` behind (the HOWTO's
    `$set files.$[].sites.NAME`, or a Pype-2 style insert)."""
    op = event.get("operationType")
    if op in ("insert", "replace"):
        return _has_dict_sites(event.get("fullDocument") or {})
    if op != "update":
        return False
    fields = (event.get("updateDescription") or {}).get("updatedFields") or {}
    for key, value in fields.items():
        site_key = _SET_SITE_KEY.match(key)
        if site_key and not site_key.group(1).isdigit():
            return True
        files_key = _SET_FILES_KEY.match(key)
        if files_key and _value_has_dict_sites(files_key, value):
            return True
    return False


def _value_has_dict_sites(key: re.Match[str], value: Any) -> bool:
    index, sites = key.group(1), key.group(2)
    if sites:
        return isinstance(value, Mapping)
    if index:
        return isinstance(value, Mapping) and isinstance(value.get("sites"), Mapping)
    return _has_dict_sites({"files": value})


# -- queries -----------------------------------------------------------------------------------


def _source_cond(site: str) -> Doc:
    """A site entry that has the file: `created_dt` set, not paused."""
    return {"name": site, "created_dt": {"$nin": [None, ""]}, "paused": {"$ne": True}}


def _target_cond(site: str, now: datetime, retry_cnt: int | None) -> Doc:
    """A site entry waiting for the file that nobody may skip or hold right now.

    Written so the query is never narrower than the Python decision (`$not: {$gte}`
    lets a textual `tries` through for the codec to judge)."""
    cond: Doc = {
        "name": site,
        "created_dt": {"$in": [None, ""]},
        "sitesync_staged_dt": {"$in": [None, ""]},
        "paused": {"$ne": True},
        "sitesync_permanent": {"$ne": True},
        "sitesync_next_attempt_dt": {"$not": {"$gt": now}},
        "sitesync_lease_until": {"$not": {"$gt": now}},
    }
    if retry_cnt is not None:
        cond["tries"] = {"$not": {"$gte": retry_cnt}}
    return cond


def _file_moves(source: str, target: str, now: datetime, retry_cnt: int | None) -> Doc:
    """`files.$elemMatch` body: one file available on source and waiting on target.

    Starts with a plain field because SecantusDB rejects `$and` as an `$elemMatch`'s
    first key."""
    return {
        "sites": {"$type": "array"},
        "$and": [
            {"sites": {"$elemMatch": _source_cond(source)}},
            {"sites": {"$elemMatch": _target_cond(target, now, retry_cnt)}},
        ],
    }


def _work_query(
    active: str, remote: str, retry_cnt: int, now: datetime, direction: Direction | None = None
) -> Doc:
    """Representations with a file to move. Each branch first names its target's waiting
    entry on its own (implied by the file condition after it): that is what the
    (files.sites.name, files.sites.created_dt) index can answer, so the server reads the
    few documents with something queued instead of testing the nested condition on every
    document (2-3 times faster on SecantusDB at 2,000 representations; bench/store_scale.py)."""
    moves = []
    if direction in (None, Direction.UPLOAD):
        moves.append({"$and": [_waiting(remote), {
            "files": {"$elemMatch": _file_moves(active, remote, now, retry_cnt)}}]})
    if direction in (None, Direction.DOWNLOAD):
        moves.append({"$and": [_waiting(active), {
            "files": {"$elemMatch": _file_moves(remote, active, now, retry_cnt)}}]})
    return {"type": "representation", "$or": moves}


def _waiting(site: str) -> Doc:
    """Some file has an entry for ``site`` without the file: the indexable part of
    _target_cond (never narrower than it)."""
    return {"files.sites": {"$elemMatch": {"name": site, "created_dt": {"$in": [None, ""]}}}}


def _text_query(text: str) -> Doc:
    """Mongo-side narrowing for the summary's word filter (Python decides exactly)."""
    needle = text.strip()
    if not needle:
        return {}
    pattern = {"$regex": re.escape(needle), "$options": "i"}
    fields = ("context.asset", "context.subset", "context.representation", "name")
    clauses: list[Doc] = [{field: dict(pattern)} for field in fields]
    clauses.append({"_id": _id_match(needle)})
    return {"$or": clauses}


def _entry_filters(file_id: Any, site: str) -> list[Doc]:
    return [{"f._id": file_id}, {"s.name": site}]


def _lease_filter(claim: Claim) -> Doc:
    """The claimed entry, still leased by this very claim (owner and expiry), so a late
    engine whose lease expired and was taken over writes nothing."""
    item = claim.item
    return {
        "_id": _id_match(item.repre_id),
        "files": {"$elemMatch": {
            "_id": _id_match(item.file_id),
            "sites": {"$elemMatch": {
                "name": item.target_site,
                "sitesync_lease_owner": claim.owner,
                "sitesync_lease_until": _bson_time(claim.lease_until),
            }},
        }},
    }


# -- deciding in Python ------------------------------------------------------------------------


def _usable_source(state: SiteState | None) -> bool:
    return state is not None and state.available and not state.paused


def _waiting_target(state: SiteState | None, retry_cnt: int, now: datetime) -> bool:
    return (
        state is not None
        and not state.available
        and state.staged_dt is None
        and not state.paused
        and not state.permanent
        and state.tries < retry_cnt
        and (state.next_attempt_dt is None or state.next_attempt_dt <= now)
        and (state.lease_until is None or state.lease_until <= now)
    )


def _file_priority(file: FileRecord, active: str, remote: str) -> int:
    """OpenPype's rule: the active site's entry priority, else the remote's, else 50."""
    for name in (active, remote):
        state = file.site(name)
        if state is not None and state.priority is not None:
            return state.priority
    return DEFAULT_PRIORITY


def _age_key(repre: Representation, raw_id: Any) -> tuple[float, int, bytes]:
    """Older first: SiteSync's created time or the ObjectId's, then insertion order."""
    created = repre.created_dt.timestamp() if repre.created_dt else math.inf
    if isinstance(raw_id, ObjectId):
        return created, 0, raw_id.binary
    return created, 1, str(raw_id).encode()


def _work_item(
    project: str, repre: Representation, file: FileRecord, active: str, remote: str,
    retry_cnt: int, now: datetime,
) -> WorkItem | None:
    a, r = file.site(active), file.site(remote)
    if _usable_source(a) and _waiting_target(r, retry_cnt, now):
        source, target, direction = a, r, Direction.UPLOAD
    elif _usable_source(r) and _waiting_target(a, retry_cnt, now):
        source, target, direction = r, a, Direction.DOWNLOAD
    else:
        return None
    assert source is not None and target is not None
    return WorkItem(
        project=project, repre_id=repre.id, file_id=file.id, path=file.path, size=file.size,
        hash=file.hash, source_site=source.name, target_site=target.name,
        direction=direction, priority=_file_priority(file, active, remote),
        tries=target.tries, source_checksum=source.checksum, atomic=target.atomic,
    )


class _SideTotals:
    """A representation seen from one site, folded over pages of files (so a row needs
    one page in memory at a time): combined status, mean progress, latest date (available,
    else last failure), total tries, the first error."""

    def __init__(self, retry_cnt: int, now: datetime) -> None:
        self.retry_cnt, self.now = retry_cnt, now
        self.status: Status | None = None
        self.progress = 0.0
        self.count = 0
        self.updated: datetime | None = None
        self.tries = 0
        self.error: str | None = None

    def add(self, state: SiteState | None) -> None:
        status = site_status(state, self.retry_cnt, self.now)
        self.status = combine((self.status, status)) if self.status else status
        self.progress += site_progress(state)
        self.count += 1
        if state is not None:
            when = state.created_dt or state.last_failed_dt
            if when is not None and (self.updated is None or when > self.updated):
                self.updated = when
            self.tries += state.tries
            if self.error is None and state.error is not None:
                self.error = state.error

    def summary(self) -> SideSummary:
        return SideSummary(
            status=self.status or combine(()),
            progress=self.progress / self.count if self.count else 0.0,
            updated_dt=self.updated, tries=self.tries, error=self.error)


class _RowTotals:
    """One summary row built page by page (see _summary_row for the rules)."""

    def __init__(self, active: str, remote: str, retry_cnt: int, now: datetime) -> None:
        self.active, self.remote = active, remote
        self.a = _SideTotals(retry_cnt, now)
        self.b = _SideTotals(retry_cnt, now)
        self.tracked = False
        self.files = 0
        self.size = 0
        self.priority: int | None = None
        self.first_path = ""

    def add(self, files: Iterable[FileRecord]) -> None:
        for f in files:
            a, b = f.site(self.active), f.site(self.remote)
            self.tracked = self.tracked or a is not None or b is not None
            self.a.add(a)
            self.b.add(b)
            if not self.files:
                self.first_path = f.path
            self.files += 1
            self.size += f.size
            prio = _file_priority(f, self.active, self.remote)
            self.priority = prio if self.priority is None else max(self.priority, prio)

    def row(self, repre: Representation) -> SummaryRow | None:
        if not self.tracked:
            return None
        active_side, remote_side = self.a.summary(), self.b.summary()
        return SummaryRow(
            repre_id=repre.id, asset=repre.asset, subset=repre.subset, version=repre.version,
            representation=repre.representation, active=active_side, remote=remote_side,
            files_count=self.files, size=self.size,
            priority=DEFAULT_PRIORITY if self.priority is None else self.priority,
            status=combine((active_side.status, remote_side.status)),
            first_path=self.first_path,
        )


def _summary_row(
    repre: Representation, active: str, remote: str, retry_cnt: int, now: datetime
) -> SummaryRow | None:
    """One table row, or None when no file has an entry for either site."""
    totals = _RowTotals(active, remote, retry_cnt, now)
    totals.add(repre.files)
    return totals.row(repre)


def _check_size(project: str, doc: Doc) -> None:
    """Refuse a representation MongoDB could not store, or could not keep once its files
    are synced to one more site, with the numbers that explain it."""
    files = doc.get("files") if isinstance(doc.get("files"), list) else []
    try:
        size = len(bson.encode(doc))
    except (bson.errors.InvalidDocument, OverflowError) as exc:
        raise DocumentError(f"representation {doc.get('_id')} in project {project!r} cannot be "
                            f"stored in MongoDB: {exc}") from None
    room = SITE_ENTRY_ROOM * len(files)
    if size + room <= BSON_LIMIT:
        return
    per_file = size / max(1, len(files)) + SITE_ENTRY_ROOM
    most = int(BSON_LIMIT // per_file)
    raise DocumentError(
        f"representation {doc.get('_id')} in project {project!r} has {len(files):,} files: "
        f"{size / 1e6:.1f} MB as one MongoDB document, over MongoDB's 16 MB document limit "
        f"once its files are synced to one more site (about {most:,} files of this size fit). "
        "Split it into several representations (e.g. frame ranges), or use the embedded "
        "store, which has no such limit")


def _text_matches(repre: Representation, text: str) -> bool:
    needle = text.strip()
    if not needle or repre.id == needle:
        return True
    needle = needle.lower()
    return any(needle in v.lower() for v in (repre.asset, repre.subset, repre.representation))


_SORT_VALUES: dict[str, Callable[[SummaryRow, datetime | None], Any]] = {
    "asset": lambda row, _: row.asset.lower(),
    "subset": lambda row, _: row.subset.lower(),
    "version": lambda row, _: row.version,
    "representation": lambda row, _: row.representation.lower(),
    "files_count": lambda row, _: row.files_count,
    "size": lambda row, _: row.size,
    "priority": lambda row, _: row.priority,
    "status": lambda row, _: row.status.rank,  # most urgent first, like the tray icon
    "active_dt": lambda row, _: row.active.updated_dt,
    "remote_dt": lambda row, _: row.remote.updated_dt,
    "created": lambda _, created: created,
}


def _sorted_rows(
    rows: list[tuple[SummaryRow, datetime | None]], key: str, descending: bool
) -> list[SummaryRow]:
    """Sorted by ``key``; rows without a value last either way; ties by id so pages
    never overlap or skip."""
    getter = _SORT_VALUES.get(key)
    if getter is None:
        keys = ", ".join(SummaryQuery.SORT_KEYS)
        raise ValueError(f"unknown sort key {key!r}; use one of {keys}")
    rows = sorted(rows, key=lambda pair: pair[0].repre_id)
    present = [p for p in rows if getter(*p) is not None]
    missing = [p for p in rows if getter(*p) is None]
    present.sort(key=lambda pair: getter(*pair), reverse=descending)
    return [row for row, _ in present + missing]


# -- change notification -----------------------------------------------------------------------


class _ChangeWatcher:
    """A background thread turning "something was written" into a local counter.

    It follows a database-wide change stream when the server has them (replica sets,
    SecantusDB); otherwise it polls the server's write-operation counters, and if even
    those are not readable it reports "maybe changed" every few seconds. The stream is
    open (or the first counter read) before :meth:`start` returns, so a marker taken
    afterwards never misses a write; a reopened stream counts as a change because events
    may have been missed while it was closed.
    """

    AWAIT_MS = 500
    POLL_S = 0.5
    BLIND_POLL_S = 5.0

    def __init__(
        self, db: Database[Doc], on_event: Callable[[Mapping[str, Any]], None],
        redact: Callable[[str], str], change_streams: bool = True,
    ) -> None:
        self._db = db
        self._on_event = on_event
        self._redact = redact
        self._change_streams = change_streams
        self._cond = threading.Condition()
        self._count = 0
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.mode = "starting"
        self._thread = threading.Thread(target=self._run, name="sitesync-mongo-watch",
                                        daemon=True)

    def start(self, timeout_s: float) -> None:
        self._thread.start()
        self._ready.wait(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        self._ready.wait(timeout_s)

    @property
    def count(self) -> int:
        with self._cond:
            return self._count

    def bump(self) -> None:
        with self._cond:
            self._count += 1
            self._cond.notify_all()

    def wait_past(self, marker: int, timeout_s: float) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self._count != marker or self._stop.is_set(),
                                max(0.0, timeout_s))
            return self._count != marker

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(self.AWAIT_MS / 1000 * 4)

    def _run(self) -> None:
        try:
            if not self._change_streams or not self._follow_stream():
                self._poll_counters()
        except Exception:  # a watcher must never die loudly; waiters fall back to timeouts
            log.exception("MongoDB change watcher stopped")
        finally:
            self._ready.set()

    def _follow_stream(self) -> bool:
        """Follow `db.watch()` until stopped; False if the server has no change streams."""
        opened_once, delay = False, 0.5
        while not self._stop.is_set():
            try:
                stream = self._db.watch(max_await_time_ms=self.AWAIT_MS)
            except OperationFailure as exc:
                if opened_once:
                    self._stop.wait(delay)
                    continue
                log.info("MongoDB change streams unavailable (%s); polling for changes",
                         self._redact(str(exc)))
                return False
            except PyMongoError as exc:
                self._ready.set()
                log.debug("change stream not open: %s", self._redact(str(exc)))
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            if self._ready.is_set():  # markers were handed out while no stream was open
                self.bump()
            opened_once, delay, self.mode = True, 0.5, "change_stream"
            self._ready.set()
            self._drain(stream)
        return True

    def _drain(self, stream: Any) -> None:
        try:
            with stream:
                while not self._stop.is_set() and stream.alive:
                    event = stream.try_next()
                    if event is not None:
                        self._on_event(event)
                        self.bump()
        except PyMongoError as exc:
            log.debug("change stream interrupted: %s", self._redact(str(exc)))

    def _write_ops(self) -> int | None:
        try:
            counters = self._db.client.admin.command("serverStatus").get("opcounters", {})
        except PyMongoError:
            return None
        return sum(int(counters.get(k, 0)) for k in ("insert", "update", "delete"))

    def _poll_counters(self) -> None:
        last = self._write_ops()
        blind = last is None
        self.mode = "blind" if blind else "poll"
        self._ready.set()
        period = self.BLIND_POLL_S if blind else self.POLL_S
        while not self._stop.wait(period):
            current = None if blind else self._write_ops()
            if blind or (current is not None and current != last):
                self.bump()
            last = current if current is not None else last


# -- the store ---------------------------------------------------------------------------------


@dataclass
class _ProjectState:
    indexed: bool = False
    legacy_scanned_at: float | None = None
    legacy_hint: bool = False


def _guarded(
    method: Callable[Concatenate[MongoStore, _P], _R],
) -> Callable[Concatenate[MongoStore, _P], _R]:
    """Translate driver exceptions at the store boundary (the contract's rule)."""

    @functools.wraps(method)
    def wrapper(self: MongoStore, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except PyMongoError as exc:
            raise self._translate(exc) from None

    return wrapper


class MongoStore(Store):
    """The store contract on OpenPype's MongoDB; see the module docstring for the layout."""

    kind = "mongo"
    #: Seconds between project-wide scans for dict-form `sites` (see module docstring).
    legacy_scan_interval_s: float = 120.0
    #: Set False before the first change_marker() to force the polling fallback.
    use_change_streams: bool = True
    #: Files read per round trip from one document (see FILES_PAGE).
    files_page: int = FILES_PAGE

    def __init__(
        self, uri: str, database: str = "avalon", *, server_timeout_ms: int = 5000
    ) -> None:
        self._redact = _redactor(uri)
        self._where = _hosts(self._redact(uri))
        self._timeout_s = server_timeout_ms / 1000
        try:
            self._client: MongoClient[Doc] = MongoClient(
                uri, tz_aware=True, serverSelectionTimeoutMS=server_timeout_ms,
                connectTimeoutMS=server_timeout_ms, appname="sitesync",
            )
            self._db: Database[Doc] = self._client[database]
        except (InvalidURI, ConfigurationError, InvalidName, ValueError, TypeError) as exc:
            raise ConfigError(
                f"database_url {self._redact(uri)!r} / database {database!r} cannot be used: "
                f"{self._redact(str(exc))}",
                fix="use mongodb://[user:password@]host[:port]/ or mongodb+srv://host/ "
                "and a database name without spaces, dots or slashes",
                key="database_url",
            ) from None
        self._lock = threading.Lock()
        self._projects: dict[str, _ProjectState] = {}
        self._warned: set[tuple[str, str]] = set()
        self._watcher: _ChangeWatcher | None = None
        self._recorders: ThreadPoolExecutor | None = None
        self._closed = False
        self._log = _EventLog(self._db, self._redact)

    @property
    def scope(self) -> str:
        return f"{self._where}/{self._db.name}"

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watcher, self._watcher = self._watcher, None
            recorders, self._recorders = self._recorders, None
        if watcher is not None:
            watcher.stop()
        if recorders is not None:
            recorders.shutdown(wait=True)
        self._log.close(timeout_s=self._timeout_s)
        self._client.close()

    @_guarded
    def ping(self) -> None:
        self._client.admin.command("ping")

    def _translate(self, exc: PyMongoError) -> Exception:
        reason = self._redact(str(exc)).split(", Timeout:", 1)[0][:300]
        if isinstance(exc, ConnectionFailure):
            return StoreUnavailableError(
                f"MongoDB at {self._where} cannot be reached ({reason}). Check that the "
                "server is running and reachable from this machine (host, port, firewall, "
                "VPN) and that database_url is right"
            )
        if isinstance(exc, OperationFailure) and exc.code in _AUTH_CODES:
            return ConfigError(
                f"MongoDB at {self._where} refused access ({reason})",
                fix="check the user name, password and authSource in database_url and "
                "that the user may read and write the database",
                key="database_url",
            )
        if isinstance(exc, ConfigurationError):
            return ConfigError(f"MongoDB settings cannot be used: {reason}",
                               fix="correct database_url", key="database_url")
        if isinstance(exc, WriteError):
            return DocumentError(f"MongoDB at {self._where} refused to change a document: "
                                 f"{reason}")
        return StoreUnavailableError(f"MongoDB at {self._where} failed: {reason}")

    # -- collections, indexes, legacy conversion -----------------------------------------------

    def _coll(self, project: str) -> Collection[Doc]:
        if not project or "$" in project or "\0" in project or project.startswith("system.") \
                or project in _RESERVED:
            # No such collection can exist, or it holds SiteSync's event log, so no such
            # project: the contract's KeyError.
            raise KeyError(f"project {project!r} cannot exist in MongoDB (a collection name "
                           "must not be empty, contain '$' or NUL, or start with 'system.'; "
                           f"{', '.join(sorted(_RESERVED))} are SiteSync's own)")
        return self._db[project]

    def _state(self, project: str) -> _ProjectState:
        with self._lock:
            return self._projects.setdefault(project, _ProjectState())

    def _ensure_indexes(self, project: str, coll: Collection[Doc]) -> None:
        """Create the polling indexes once per collection and store; idempotent on the
        server, so several engines starting together are fine."""
        state = self._state(project)
        with self._lock:
            if state.indexed:
                return
            state.indexed = True
        try:
            for keys in _INDEXES:
                self._create_index(coll, keys)
        except (ConnectionFailure, ExecutionTimeout):
            state.indexed = False
            raise

    def _create_index(self, coll: Collection[Doc], keys: list[tuple[str, int]]) -> None:
        try:
            coll.create_index(keys)
        except OperationFailure as exc:
            if exc.code in _INDEX_EXISTS_CODES:
                return  # an equivalent index exists under another name
            log.warning("Cannot create index %s on %r (%s); queries will be slower",
                        keys, coll.name, self._redact(str(exc)))

    def _legacy_scan_due(self, project: str) -> bool:
        state = self._state(project)
        now = time.monotonic()
        with self._lock:
            last = state.legacy_scanned_at
            if not state.legacy_hint and last is not None and \
                    now - last < self.legacy_scan_interval_s:
                return False
            state.legacy_scanned_at, state.legacy_hint = now, False
            return True

    def _legacy_hint(self, project: str) -> None:
        state = self._state(project)
        with self._lock:
            state.legacy_hint = True

    def _convert_legacy_docs(self, project: str, coll: Collection[Doc]) -> None:
        """Project-wide pass turning dict-form `sites` into lists (rate-limited)."""
        if not self._legacy_scan_due(project):
            return
        converted = 0
        for doc in coll.find(_LEGACY_QUERY, {"files": 1}):
            new = self._convert_legacy_doc(coll, doc)
            converted += new is not None and not _has_dict_sites(new)
        if converted:
            log.info("Converted %d representation(s) in project %r from legacy dict-form "
                     "sites to the list form", converted, project)

    def _convert_legacy_doc(self, coll: Collection[Doc], doc: Doc) -> Doc | None:
        """Compare-and-swap one document's `files` into list form; returns the document as
        it now is (None if it disappeared). Unconvertible documents are left alone."""
        for _ in range(3):
            files = _listified_files(doc.get("files"))
            if files is None:
                return doc
            result = coll.update_one({"_id": doc["_id"], "files": doc["files"]},
                                     {"$set": {"files": files}})
            if result.matched_count:
                return {**doc, "files": files}
            fresh = coll.find_one({"_id": doc["_id"]})
            if fresh is None:
                return None
            doc = fresh
        return doc

    # -- documents -----------------------------------------------------------------------------

    def _parse_or_skip(self, project: str, doc: Doc) -> Representation | None:
        """Model of a polled document; a malformed one is skipped, warned about once."""
        try:
            return parse_representation(doc, project)
        except DocumentError as exc:
            key = (project, str(doc.get("_id")))
            with self._lock:
                first = key not in self._warned
                self._warned.add(key)
            if first:
                log.warning("Skipping representation %s in project %r: %s", key[1], project,
                            exc)
            return None

    def _find_raw(self, project: str, repre_id: str) -> Doc:
        doc = self._coll(project).find_one(
            {"_id": _id_match(repre_id), "type": "representation"}, {_OUTBOX: 0})
        if doc is None:
            raise KeyError(f"representation {repre_id} not found in project {project!r}")
        return doc

    def _load_for_change(self, project: str, repre_id: str) -> tuple[Doc, Representation]:
        """The raw document (converted to list form first) and its model."""
        doc = self._find_raw(project, repre_id)
        if _has_dict_sites(doc):
            doc = self._convert_legacy_doc(self._coll(project), doc) or doc
        return doc, parse_representation(doc, project)

    def _project_doc(self, coll: Collection[Doc], project: str) -> Doc:
        doc = coll.find_one({"type": "project"})
        if doc is None:
            raise KeyError(f"project {project!r} not found (no project document)")
        return doc

    # -- projects ----------------------------------------------------------------------------

    @_guarded
    def ensure_project(self, name: str, code: str = "") -> None:
        coll = self._coll(name)
        fields: Doc = {"name": name, "schema": "openpype:project-3.0",
                       "data": {"code": code} if code else {}}
        coll.update_one({"type": "project"}, {"$setOnInsert": fields}, upsert=True)
        self._ensure_indexes(name, coll)

    @_guarded
    def list_projects(self) -> list[ProjectInfo]:
        projects = []
        for name in sorted(self._db.list_collection_names()):
            if name.startswith("system.") or name in _RESERVED:
                continue
            coll = self._db[name]
            doc = coll.find_one({"type": "project"})
            if doc is None:
                continue
            projects.append(ProjectInfo(
                name=name, code=_project_code(doc), paused=_project_paused(doc),
                representations=coll.count_documents({"type": "representation"}),
            ))
        return projects

    @_guarded
    def set_project_paused(self, project: str, paused: bool) -> None:
        coll = self._coll(project)
        doc = self._project_doc(coll, project)
        key = "data.sitesync_paused" if isinstance(doc.get("data", {}), Mapping) \
            else "sitesync_paused"
        update = {"$set": {key: True}} if paused else {"$unset": {key: "", "sitesync_paused": ""}}
        coll.update_one({"_id": doc["_id"]}, update)

    # -- representations -----------------------------------------------------------------------

    @_guarded
    def insert_representation(self, repre: Representation) -> str:
        repre = _with_ids(repre)
        self._insert(repre.project or "", _new_doc(repre))
        return repre.id

    #: Documents sent per insert_many round trip by insert_representations.
    insert_batch: int = 1000

    @_guarded
    def insert_representations(self, repres: Iterable[Representation]) -> int:
        """One ordered ``insert_many`` per project run of ``insert_batch`` documents: the
        server stops at the first refused document, so those before it are stored and it
        and the rest are not (the contract's rule)."""
        count = 0
        source = iter(repres)
        while chunk := [_with_ids(r) for r in itertools.islice(source, self.insert_batch)]:
            for project, group in itertools.groupby(chunk, key=lambda r: r.project or ""):
                docs = [_new_doc(r) for r in group]
                coll = self._coll(project)
                self._ensure_indexes(project, coll)
                for doc in docs:
                    _check_size(project, doc)
                try:
                    count += len(coll.insert_many(docs, ordered=True).inserted_ids)
                except BulkWriteError as exc:
                    count += exc.details.get("nInserted", 0)
                    errors = exc.details.get("writeErrors") or [{}]
                    bad = docs[errors[0].get("index", 0)]["_id"]
                    if errors[0].get("code") == 11000:
                        raise DocumentError(
                            f"representation {bad} already exists in project {project!r}"
                        ) from None
                    raise DocumentError(
                        f"representation {bad} in project {project!r} cannot be stored in "
                        f"MongoDB: {errors[0].get('errmsg', exc)}"
                    ) from None
                except (InvalidDocument, OverflowError) as exc:  # the BSON encoder, before sending
                    raise DocumentError(
                        f"a representation in project {project!r} cannot be stored in MongoDB: "
                        f"{exc}. Fix the document (numbers must fit 64 bits, keys must not start "
                        "with '$')"
                    ) from None
        return count

    @_guarded
    def insert_document(self, project: str, doc: dict) -> str:
        parse_representation(doc, project)  # refuse what SiteSync could never read
        doc = dict(doc)
        doc.setdefault("type", "representation")
        self._insert(project, doc)
        if _has_dict_sites(doc):
            self._legacy_hint(project)
        return str(doc["_id"])

    def _insert(self, project: str, doc: Doc) -> None:
        coll = self._coll(project)
        self._ensure_indexes(project, coll)
        _check_size(project, doc)
        try:
            coll.insert_one(doc)
        except DuplicateKeyError:
            raise DocumentError(
                f"representation {doc.get('_id')} already exists in project {project!r}"
            ) from None
        except (InvalidDocument, OverflowError) as exc:  # raised by the BSON encoder
            raise DocumentError(
                f"representation {doc.get('_id')} in project {project!r} cannot be stored in "
                f"MongoDB: {exc}. Fix the document (numbers must fit 64 bits, keys must not "
                "start with '$')"
            ) from None

    @_guarded
    def get_representation(self, project: str, repre_id: str) -> Representation:
        return parse_representation(self._find_raw(project, repre_id), project)

    @_guarded
    def count_representations(self, project: str) -> int:
        coll = self._coll(project)
        self._project_doc(coll, project)
        return coll.count_documents({"type": "representation"})

    # -- work and claims -----------------------------------------------------------------------

    @_guarded
    def find_work(
        self,
        project: str,
        active_site: str,
        remote_site: str,
        retry_cnt: int,
        now: datetime,
        limit: int = 100,
        exclude: frozenset[tuple[str, str]] = frozenset(),
        direction: Direction | None = None,
    ) -> list[WorkItem]:
        now = _aware(now)
        coll = self._coll(project)
        if _project_paused(self._project_doc(coll, project)) or active_site == remote_site:
            return []
        self._ensure_indexes(project, coll)
        self._convert_legacy_docs(project, coll)
        query = _work_query(active_site, remote_site, retry_cnt, now, direction)
        ranked: list[tuple[tuple[Any, ...], WorkItem]] = []
        page = self.files_page
        for doc in coll.find(query, {**_WORK_PROJECTION, "files": {"$slice": [0, page]}}):
            repre = self._parse_or_skip(project, doc)
            if repre is None:
                continue
            age = _age_key(repre, doc["_id"])
            found = 0
            files: Iterable[tuple[int, FileRecord]] = enumerate(repre.files)
            if len(repre.files) == page:  # a large one: the rest, candidates only
                files = itertools.chain(files, self._more_work(
                    project, coll, doc["_id"], active_site, remote_site, retry_cnt, now,
                    direction, limit + len(exclude)))
            for position, file in files:
                item = _work_item(project, repre, file, active_site, remote_site,
                                  retry_cnt, now)
                if item is None or (direction is not None and item.direction is not direction):
                    continue
                if (item.repre_id, item.file_id) not in exclude:
                    ranked.append(((-item.priority, position // CHUNK_FILES, age, position), item))
                    found += 1
                    if found >= limit:  # in file order: later ones cannot make the cut
                        break
        ranked.sort(key=lambda pair: pair[0])
        return [item for _, item in ranked[:max(0, limit)]]

    def _more_work(
        self, project: str, coll: Collection[Doc], repre_key: Any, active: str, remote: str,
        retry_cnt: int, now: datetime, direction: Direction | None, limit: int,
    ) -> Iterator[tuple[int, FileRecord]]:
        """Files after the first page that need moving, in order, at most ``limit``: the
        server unwinds the document and sends only those (never the whole array)."""
        moves: list[Doc] = []
        if direction in (None, Direction.UPLOAD):
            moves.append({"$and": [{"files.sites": {"$elemMatch": _source_cond(active)}},
                                   {"files.sites": {"$elemMatch": _target_cond(remote, now,
                                                                               retry_cnt)}}]})
        if direction in (None, Direction.DOWNLOAD):
            moves.append({"$and": [{"files.sites": {"$elemMatch": _source_cond(remote)}},
                                   {"files.sites": {"$elemMatch": _target_cond(active, now,
                                                                               retry_cnt)}}]})
        pipeline: list[Doc] = [
            {"$match": {"_id": repre_key}},
            {"$unwind": {"path": "$files", "includeArrayIndex": "pos"}},
            {"$match": {"pos": {"$gte": self.files_page}}},
            {"$match": {"$or": moves}},
            {"$limit": max(1, limit)},
            {"$project": {"files": 1, "pos": 1}},
        ]
        for row in coll.aggregate(pipeline):
            try:
                yield int(row["pos"]), parse_file(row["files"], int(row["pos"]))
            except ValueError as exc:
                log.warning("Skipping file %s of representation %s in %r: %s", row.get("pos"),
                            repre_key, project, exc)

    def _file_pages(self, coll: Collection[Doc], project: str, doc: Doc,
                    first: list[FileRecord]) -> Iterator[list[FileRecord]]:
        """The document's files a page at a time, starting with the page already read."""
        page: list[FileRecord] | None = first
        offset = 0
        while page is not None:
            yield page
            if len(page) < self.files_page:
                return
            offset += len(page)
            page = None  # the next page replaces it, never joins it
            more = coll.find_one({"_id": doc["_id"]},
                                 {"files": {"$slice": [offset, self.files_page]}, _OUTBOX: 0})
            if more is not None:
                page = self._parse_files(project, more, offset)

    @_guarded
    def claim(
        self, item: WorkItem, owner: str, lease_until: datetime, now: datetime
    ) -> Claim | None:
        """One conditional update: the filter requires the target entry to still be
        queued, unpaused, not permanently failed, not backing off and unleased (or its
        lease expired), and the source to still have the file."""
        now = _aware(now)
        target = _target_cond(item.target_site, now, None)
        source = _source_cond(item.source_site)
        flt = {
            "_id": _id_match(item.repre_id),
            "files": {"$elemMatch": {
                "_id": _id_match(item.file_id),
                "$and": [{"sites": {"$elemMatch": target}}, {"sites": {"$elemMatch": source}}],
            }},
        }
        update = {"$set": {_ENTRY + "sitesync_lease_owner": owner,
                           _ENTRY + "sitesync_lease_until": _bson_time(lease_until)}}
        coll = self._coll(item.project)
        result = coll.update_one(flt, update, array_filters=_entry_filters(
            _id_match(item.file_id), item.target_site))
        if not result.matched_count:
            return None
        return Claim(item=item, owner=owner, lease_until=_aware(lease_until))

    def _update_claimed(self, claim: Claim, update: Doc) -> bool:
        item = claim.item
        result = self._coll(item.project).update_one(
            _lease_filter(claim), update,
            array_filters=_entry_filters(_id_match(item.file_id), item.target_site),
        )
        return bool(result.matched_count)

    @_guarded
    def extend_lease(self, claim: Claim, lease_until: datetime) -> Claim | None:
        update = {"$set": {_ENTRY + "sitesync_lease_until": _bson_time(lease_until)}}
        return claim.renewed(_aware(lease_until)) if self._update_claimed(claim, update) \
            else None

    @_guarded
    def release(self, claim: Claim) -> None:
        # progress goes too: without a lease it would read as OpenPype's "in progress"
        self._update_claimed(claim, {"$unset": _entry_keys((*_LEASE_KEYS, "progress"))})

    @_guarded
    def record_progress(self, claim: Claim, progress: float) -> None:
        value = max(0.0, min(1.0, float(progress)))
        self._update_claimed(claim, {"$set": {_ENTRY + "progress": value}})

    @_guarded
    def record_success(
        self, claim: Claim, provider_id: str, checksum: str | None, now: datetime
    ) -> bool:
        """file_synced rides in the same update (outbox); representation_ready is derived
        when the outbox is drained."""
        to_set: Doc = {_ENTRY + "created_dt": _aware(now), _ENTRY + "id": provider_id}
        cleared = ["tries", "error", "last_failed_dt", "progress", *_LEASE_KEYS,
                   "sitesync_next_attempt_dt", "sitesync_permanent", "sitesync_staged_dt"]
        if checksum is None:
            cleared.append("sitesync_checksum")
        else:
            to_set[_ENTRY + "sitesync_checksum"] = checksum
        item = claim.item
        event = _outbox_entry(EventType.FILE_SYNCED, now, item.target_site, item.file_id, {
            "path": item.path, "size": item.size, "checksum": checksum,
            "provider_id": provider_id, "source_site": item.source_site,
            "direction": item.direction.value})
        done = self._update_claimed(claim, {"$set": to_set, "$unset": _entry_keys(cleared),
                                            "$push": {_OUTBOX: event}})
        if done:
            self._log.hint(item.project, item.repre_id)
        return done

    def record_successes(
        self, successes: Sequence[tuple[Claim, str, str | None]], now: datetime
    ) -> list[bool | None]:
        """The updates side by side on a few threads: each is one document's own atomic
        update (file_synced in its outbox), so nothing is gained by ordering them, and a
        remote artist's tray, tens of milliseconds from the studio database, would
        otherwise wait one round trip per file."""
        if len(successes) < 2:
            return super().record_successes(successes, now)
        pool = self._record_pool()
        futures = [pool.submit(self.record_success, claim, provider_id, checksum, now)
                   for claim, provider_id, checksum in successes]
        answers: list[bool | None] = []
        errors: list[Exception] = []
        for future in futures:
            try:
                answers.append(future.result())
            except Exception as exc:  # asked again one by one, where it is reported
                errors.append(exc)
                answers.append(None)
        if len(errors) == len(answers) and isinstance(errors[0], StoreUnavailableError):
            raise errors[0]
        return answers

    def _record_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._recorders is None:
                self._recorders = ThreadPoolExecutor(_RECORD_THREADS,
                                                     thread_name_prefix="sitesync-mongo-record")
            return self._recorders

    @_guarded
    def record_staged(self, claim: Claim, checksum: str, now: datetime) -> bool:
        """See SqliteStore.record_staged: staged, `progress` 1.0, lease and failures gone."""
        to_set = {_ENTRY + "sitesync_staged_dt": _aware(now), _ENTRY + "sitesync_checksum": checksum,
                  _ENTRY + "progress": 1.0}
        cleared = ["tries", "error", "last_failed_dt", *_LEASE_KEYS, "sitesync_next_attempt_dt",
                   "sitesync_permanent"]
        return self._update_claimed(claim, {"$set": to_set, "$unset": _entry_keys(cleared)})

    @_guarded
    def has_unstaged(self, project: str, repre_id: str, site: str) -> bool:
        found = self._coll(project).find_one(
            {"_id": _id_match(repre_id),
             "files": {"$elemMatch": {"sites": {"$elemMatch": _unstaged(site)}}}},
            {"_id": 1})
        return found is not None

    @_guarded
    def staged_representations(self, project: str, site: str) -> list[str]:
        coll = self._coll(project)
        self._project_doc(coll, project)
        staged = {"name": site, "sitesync_staged_dt": {"$exists": True},
                  "created_dt": {"$exists": False}}
        query = {"type": "representation",
                 "files": {"$elemMatch": {"sites": {"$elemMatch": staged}}}}
        return [str(doc["_id"]) for doc in coll.find(query, {"_id": 1})]

    @_guarded
    def complete_staged(self, project: str, repre_id: str, site: str, now: datetime) -> int:
        """One update makes every staged entry available at once, on the condition (in
        its filter) that no entry of the site is still unstaged; a second one then drops
        the staged marks. Between the two the entries are already available (created_dt
        wins), so a crash there costs nothing. Two updates because array filters must not
        test a field the same update changes (SecantusDB re-evaluates them per path)."""
        coll = self._coll(project)
        repre_key = _id_match(repre_id)
        counted = list(coll.aggregate([
            {"$match": {"_id": repre_key}}, {"$unwind": "$files"}, {"$unwind": "$files.sites"},
            {"$match": {"files.sites.name": site,
                        "files.sites.sitesync_staged_dt": {"$exists": True},
                        "files.sites.created_dt": {"$exists": False}}},
            {"$count": "n"}]))
        staged = counted[0]["n"] if counted else 0
        if not staged:
            return 0
        # The file_synced events ride in the completing update (representation_ready is
        # derived when they are drained). Read after the count: if a file is still
        # unstaged here, whoever stages it completes the representation with all events.
        events = _staged_events(self._find_raw(project, repre_id), site, now)
        if events is None:
            return 0
        done = coll.update_one(
            {"_id": repre_key,
             "$nor": [{"files": {"$elemMatch": {"sites": {"$elemMatch": _unstaged(site)}}}}]},
            {"$set": {"files.$[].sites.$[s].created_dt": _aware(now),
                      "files.$[].sites.$[s].progress": ""},
             "$push": {_OUTBOX: {"$each": events}}},
            array_filters=[{"s.name": site, "s.sitesync_staged_dt": {"$exists": True},
                            "s.created_dt": {"$exists": False}}])
        if not done.matched_count:
            return 0
        self._log.hint(project, repre_id)
        coll.update_one(
            {"_id": repre_key},
            {"$unset": {"files.$[].sites.$[s].sitesync_staged_dt": "",
                        "files.$[].sites.$[s].progress": ""}},
            array_filters=[{"s.name": site, "s.created_dt": {"$exists": True}}])
        return staged

    @_guarded
    def record_failure(
        self,
        claim: Claim,
        error: str,
        now: datetime,
        next_attempt_dt: datetime | None,
        permanent: bool = False,
    ) -> bool:
        to_set: Doc = {_ENTRY + "error": error, _ENTRY + "last_failed_dt": _aware(now),
                       _ENTRY + "progress": ""}
        cleared = list(_LEASE_KEYS)
        if next_attempt_dt is not None:
            to_set[_ENTRY + "sitesync_next_attempt_dt"] = _aware(next_attempt_dt)
        else:
            cleared.append("sitesync_next_attempt_dt")
        if permanent:
            to_set[_ENTRY + "sitesync_permanent"] = True
        else:
            cleared.append("sitesync_permanent")
        item = claim.item
        event = _outbox_entry(EventType.FILE_FAILED, now, item.target_site, item.file_id, {
            "path": item.path, "error": error, "tries": item.tries + 1,
            "permanent": bool(permanent), "source_site": item.source_site,
            "direction": item.direction.value,
            "next_attempt_dt": next_attempt_dt.isoformat() if next_attempt_dt else None})
        update = {"$set": to_set, "$unset": _entry_keys(cleared), "$push": {_OUTBOX: event}}
        try:
            done = self._update_claimed(claim, {**update, "$inc": {_ENTRY + "tries": 1}})
        except WriteError as exc:
            if exc.code != 14:  # TypeMismatch: `tries` stored as text by some tool
                raise
            done = self._record_failure_textual_tries(claim, update)
        if done:
            self._log.hint(item.project, item.repre_id)
        return done

    def _record_failure_textual_tries(self, claim: Claim, update: Doc) -> bool:
        """`$inc` cannot add to text; write the parsed count + 1 (OpenPype's own way)."""
        item = claim.item
        try:
            repre = self.get_representation(item.project, item.repre_id)
        except KeyError:
            return False
        file = repre.file(item.file_id)
        state = file.site(item.target_site) if file else None
        tries = (state.tries if state else 0) + 1
        update["$set"][_ENTRY + "tries"] = tries
        return self._update_claimed(claim, update)

    # -- user actions --------------------------------------------------------------------------

    @_guarded
    def set_paused(self, project: str, repre_id: str, site: str, paused: bool) -> None:
        doc, _ = self._load_for_change(project, repre_id)
        key = "files.$[].sites.$[s].paused"
        update: Doc = {"$set": {key: True}} if paused else {"$unset": {key: ""}}
        entries = len(_raw_entries(doc, site))
        if entries:
            kind = EventType.SITE_PAUSED if paused else EventType.SITE_RESUMED
            update["$push"] = {_OUTBOX: _outbox_entry(kind, _wall_now(), site, "",
                                                      {"entries": entries})}
        self._coll(project).update_one({"_id": doc["_id"]}, update,
                                       array_filters=[{"s.name": site}])
        if entries:
            self._log.hint(project, str(doc["_id"]))

    @_guarded
    def reset_site(
        self, project: str, repre_id: str, site: str, file_id: str | None = None
    ) -> int:
        doc, repre = self._load_for_change(project, repre_id)
        if file_id is not None and repre.file(file_id) is None:
            raise KeyError(f"file {file_id} not found in representation {repre_id}")
        entries = [
            (raw_file["_id"], entry) for raw_file, entry in _raw_entries(doc, site)
            if file_id is None or str(raw_file["_id"]) == file_id
        ]
        event = _outbox_entry(EventType.RETRY_REQUESTED, _wall_now(), site, file_id or "",
                              {"entries": len(entries)})
        self._reset_entries(self._coll(project), doc["_id"], site, entries, event=event)
        if entries:
            self._log.hint(project, str(doc["_id"]))
        return len(entries)

    def _reset_entries(
        self, coll: Collection[Doc], repre_key: Any, site: str,
        entries: list[tuple[Any, Doc]], priority: int | None = None,
        only_unavailable: bool = False, event: Doc | None = None,
    ) -> None:
        """Make entries fresh queued ones keeping `name` and `priority` (OpenPype's
        `_reset_site_for_file`), with ``priority`` instead if given; ``event`` (an outbox
        entry) rides in the same update.

        Every other key is unset in place rather than the entry replaced by one built
        from the document as read: a replacement would put back the priority read here
        over one a user set in between (a lost update)."""
        if not entries:
            return
        keys = set(_RESET_KEYS)
        for _, entry in entries:
            keys.update(k for k in entry if isinstance(k, str) and "." not in k
                        and not k.startswith("$") and k not in ("name", "priority")
                        and k not in KEPT_ON_RESET)
            kept = entry.get("priority")
            if priority is None and (isinstance(kept, bool) or not isinstance(
                    kept, (int, float, str, type(None)))):
                keys.add("priority")  # not a priority at all: a reset drops it
        update: Doc = {"$unset": _entry_keys(sorted(keys))}
        if priority is not None:
            update["$set"] = {_ENTRY + "priority": priority}
        if event is not None:
            update["$push"] = {_OUTBOX: event}
        site_filter: Doc = {"s.name": site}
        if only_unavailable:  # a file that became available meanwhile stays so
            site_filter["s.created_dt"] = {"$exists": False}
        file_ids = [raw_file_id for raw_file_id, _ in entries]
        coll.update_one({"_id": repre_key}, update,
                        array_filters=[{"f._id": {"$in": file_ids}}, site_filter])

    @_guarded
    def reset_failed(self, project: str, site: str | None = None) -> int:
        coll = self._coll(project)
        self._project_doc(coll, project)
        self._convert_legacy_docs(project, coll)
        failed: Doc = {} if site is None else {"name": site}
        failed["created_dt"] = {"$in": [None, ""]}
        failed["$or"] = [{"tries": {"$nin": [None, 0, "", "0"]}}, {"sitesync_permanent": True}]
        query = {"type": "representation", "files": {"$elemMatch": {
            "sites": {"$elemMatch": failed}}}}
        total = 0
        for doc in coll.find(query):
            repre = self._parse_or_skip(project, doc)
            if repre is not None:
                total += self._reset_failed_in(coll, doc, repre, site)
        return total

    def _reset_failed_in(
        self, coll: Collection[Doc], doc: Doc, repre: Representation, site: str | None
    ) -> int:
        """Reset one document's failed entries (tries or permanent, not available)."""
        by_site: dict[str, list[tuple[Any, Doc]]] = {}
        for raw_file, file in zip(doc["files"], repre.files, strict=True):
            for state in file.sites:
                if (site is not None and state.name != site) or state.available or \
                        state.paused or not (state.tries > 0 or state.permanent):
                    continue
                found = _raw_entries({"files": [raw_file]}, state.name)
                if found:
                    by_site.setdefault(state.name, []).append((raw_file["_id"], found[0][1]))
        for name, entries in by_site.items():
            event = _outbox_entry(EventType.RETRY_REQUESTED, _wall_now(), name, "",
                                  {"entries": len(entries)})
            self._reset_entries(coll, doc["_id"], name, entries, only_unavailable=True,
                                event=event)
        if by_site:
            self._log.hint(coll.name, str(doc["_id"]))
        return sum(len(e) for e in by_site.values())

    @_guarded
    def add_site(
        self,
        project: str,
        repre_id: str,
        site: str,
        force: bool = False,
        priority: int | None = None,
        atomic: bool = False,
    ) -> int:
        coll = self._coll(project)
        # Only ids and site names: a subscription adds a site to 30,000-frame publishes.
        doc = coll.find_one({"_id": _id_match(repre_id), "type": "representation"},
                            {"files._id": 1, "files.sites.name": 1})
        if doc is None:
            raise KeyError(f"representation {repre_id} not found in project {project!r}")
        if force or _has_dict_sites(doc):
            doc, _ = self._load_for_change(project, repre_id)
        existing = _raw_entries(doc, site)
        present = {id(raw_file) for raw_file, _ in existing}
        lacking = [f["_id"] for f in doc.get("files", []) if id(f) not in present]
        if lacking:
            fresh: Doc = {"name": site} if priority is None else {"name": site,
                                                                   "priority": priority}
            if atomic:
                fresh["sitesync_atomic"] = True
            coll.update_one(
                {"_id": doc["_id"]}, {"$push": {"files.$[f].sites": fresh}},
                array_filters=[{"f._id": {"$in": lacking}, "f.sites.name": {"$ne": site}}],
            )
        reset = 0
        if force and existing:
            entries = [(raw_file["_id"], entry) for raw_file, entry in existing]
            self._reset_entries(coll, doc["_id"], site, entries, priority=priority)
            reset = len(entries)
        return len(lacking) + reset

    @_guarded
    def remove_site(self, project: str, repre_id: str, site: str) -> int:
        doc, _ = self._load_for_change(project, repre_id)
        count = len(_raw_entries(doc, site))
        if count:
            self._coll(project).update_one(
                {"_id": doc["_id"]}, {"$pull": {"files.$[].sites": {"name": site}}})
        return count

    @_guarded
    def set_priority(self, project: str, repre_id: str, site: str, priority: int) -> None:
        doc, _ = self._load_for_change(project, repre_id)
        self._coll(project).update_one(
            {"_id": doc["_id"]}, {"$set": {"files.$[].sites.$[s].priority": int(priority)}},
            array_filters=[{"s.name": site}],
        )

    # -- event log -----------------------------------------------------------------------------

    @_guarded
    def append_event(
        self, event_type: str, project: str, now: datetime, *, site: str = "",
        repre_id: str = "", file_id: str = "", data: Mapping[str, Any] | None = None,
    ) -> int:
        doc = {"uid": ObjectId(), "type": EventType(event_type).value, "at": _aware(now),
               "project": project, "site": site, "repre_id": repre_id, "file_id": file_id,
               "data": dict(data or {})}
        return self._log.insert(doc)

    @_guarded
    def read_events(self, after_id: int, limit: int = 500) -> list[EventRecord]:
        self._log.start()  # a reader is about: drain what a crashed process left
        if limit <= 0:
            return []
        cursor = self._db[_EVENTS].find({"_id": {"$gt": int(after_id)}}).sort(
            "_id", ASCENDING).limit(int(limit))
        return [_event_from_doc(doc) for doc in cursor]

    @_guarded
    def get_events(self, ids: Iterable[int]) -> list[EventRecord]:
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return []
        cursor = self._db[_EVENTS].find({"_id": {"$in": wanted}}).sort("_id", ASCENDING)
        return [_event_from_doc(doc) for doc in cursor]

    @_guarded
    def seal_event_id(self, event_id: int, now: datetime) -> EventRecord | None:
        return self._log.seal(int(event_id), now)

    @_guarded
    def event_log_info(self) -> EventLogInfo:
        last = self._db[_EVENTS].find_one({}, {"_id": 1}, sort=[("_id", DESCENDING)])
        counter = self._log.counter()
        return EventLogInfo(log_id=str(counter.get("log_id") or ""),
                            pruned_through=int(counter.get("pruned_through") or 0),
                            last_id=int(last["_id"]) if last else 0)

    @_guarded
    def prune_events(self, before: datetime) -> int:
        """Never the newest event (as in SQLite, where ids count on from it)."""
        events = self._db[_EVENTS]
        newest = events.find_one({}, {"_id": 1}, sort=[("_id", DESCENDING)])
        if newest is None:
            return 0
        condition = {"at": {"$lt": _aware(before)}, "_id": {"$lt": newest["_id"]}}
        highest = events.find_one(condition, {"_id": 1}, sort=[("_id", DESCENDING)])
        if highest is None:
            return 0
        self._log.counter()  # exists
        self._db[_COUNTERS].update_one({"_id": "events"},
                                       {"$max": {"pruned_through": int(highest["_id"])}})
        return events.delete_many(condition).deleted_count

    def flush_events(self, timeout_s: float = 10.0) -> bool:
        """Wait until the outbox entries of this store's writes are in the log."""
        return self._log.flush(timeout_s)

    # -- reading for the UI and CLI ------------------------------------------------------------

    @_guarded
    def summary_page(
        self, project: str, query: SummaryQuery, retry_cnt: int, now: datetime
    ) -> SummaryPage:
        now = _aware(now)
        coll = self._coll(project)
        self._project_doc(coll, project)
        self._ensure_indexes(project, coll)
        self._convert_legacy_docs(project, coll)
        rows = list(self._summary_rows(project, coll, query, retry_cnt, now))
        counts: dict[Status, int] = {}
        for row, _ in rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        if query.statuses:
            rows = [pair for pair in rows if pair[0].status in query.statuses]
        ordered = _sorted_rows(rows, query.sort_key, query.descending)
        start = max(0, query.offset)
        page = ordered[start:start + max(0, query.limit)]
        return SummaryPage(rows=tuple(page), total=len(ordered), status_counts=counts)

    @_guarded
    def summary_rows(
        self, project: str, query: SummaryQuery, repre_ids: AbcCollection[str], retry_cnt: int,
        now: datetime,
    ) -> list[SummaryRow]:
        """The summary's rows for ``repre_ids`` only: one `_id $in` query on the primary key."""
        ids = sorted(set(repre_ids))
        if not ids:
            return []
        now = _aware(now)
        coll = self._coll(project)
        self._project_doc(coll, project)
        values: list[Any] = []
        for repre_id in ids:  # OpenPype's ObjectId or another tool's text id
            values.extend((ObjectId(repre_id), repre_id) if _HEX24.match(repre_id) else (repre_id,))
        narrow = {"_id": {"$in": values}}
        rows = [row for row, _ in self._summary_rows(project, coll, query, retry_cnt, now, narrow)]
        if query.statuses:
            rows = [row for row in rows if row.status in query.statuses]
        return rows

    def _summary_rows(
        self, project: str, coll: Collection[Doc], query: SummaryQuery, retry_cnt: int,
        now: datetime, narrow: Doc | None = None,
    ) -> Iterator[tuple[SummaryRow, datetime | None]]:
        # The `_id` narrowing first: SecantusDB plans by key order and would otherwise
        # scan the collection through the `type` index (MongoDB picks `_id` either way).
        mongo_query: Doc = {
            **(narrow or {}),
            "type": "representation",
            "files.sites.name": {"$in": [query.active_site, query.remote_site]},
            **_text_query(query.text),
        }
        projection = {**_SUMMARY_PROJECTION, "files": {"$slice": [0, self.files_page]}}
        for doc in coll.find(mongo_query, projection).batch_size(_SUMMARY_BATCH):
            repre = self._parse_or_skip(project, doc)
            if repre is None or not _text_matches(repre, query.text):
                continue
            totals = _RowTotals(query.active_site, query.remote_site, retry_cnt, now)
            try:
                for page in self._file_pages(coll, project, doc, list(repre.files)):
                    totals.add(page)
            except DocumentError as exc:
                log.warning("Skipping representation %s in %r: %s", doc.get("_id"), project, exc)
                continue
            row = totals.row(repre)
            if row is not None:
                yield row, repre.created_dt

    @_guarded
    def file_details(
        self, project: str, repre_id: str, active_site: str, remote_site: str,
        retry_cnt: int, now: datetime, offset: int = 0, limit: int | None = None,
    ) -> list[FileDetail]:
        now = _aware(now)
        details = []
        for file in self.file_page(project, repre_id, offset,
                                   _ALL_FILES if limit is None else limit):
            a, r = file.site(active_site), file.site(remote_site)
            details.append(FileDetail(
                file_id=file.id, path=file.path, size=file.size, active=a, remote=r,
                active_status=site_status(a, retry_cnt, now),
                remote_status=site_status(r, retry_cnt, now),
                status=file_pair_status(file, active_site, remote_site, retry_cnt, now),
            ))
        return details

    # -- large representations, subscriptions, adopting copies ----------------------------------

    @_guarded
    def representation_heads(
        self, project: str, after: str | None = None, limit: int = 500
    ) -> list[RepresentationHead]:
        """Keys are the ``_id`` (ObjectIds sort by their creation second, text ids before
        every ObjectId). ObjectIds are made by the publishing client, so a late insert
        can carry an older key: readers that must see everything rewind (rewind_key)."""
        coll = self._coll(project)
        self._project_doc(coll, project)
        match: Doc = {"type": "representation"}
        if after is not None:
            key = _as_id(after)
            match["$or"] = [{"_id": {"$gt": key}}]
            if not isinstance(key, ObjectId):
                match["$or"].append({"_id": {"$type": "objectId"}})
        pipeline: list[Doc] = [
            {"$match": match}, {"$sort": {"_id": 1}}, {"$limit": max(1, limit)},
            {"$project": {"name": 1, "context": 1, "sitesync_created_dt": 1, "files_count": {
                "$cond": [{"$isArray": "$files"}, {"$size": "$files"}, 0]}}},
        ]
        heads = []
        for doc in coll.aggregate(pipeline) if limit > 0 else ():
            context = doc.get("context") if isinstance(doc.get("context"), Mapping) else {}
            created = doc.get("sitesync_created_dt")
            if created is None and isinstance(doc["_id"], ObjectId):
                created = doc["_id"].generation_time
            try:
                created_dt = parse_datetime(created)
            except ValueError:
                created_dt = None
            heads.append(RepresentationHead(
                id=str(doc["_id"]), project=project, key=str(doc["_id"]), context=dict(context),
                name=str(doc.get("name") or context.get("representation") or ""),
                created_dt=created_dt, files_count=int(doc.get("files_count") or 0)))
        return heads

    @_guarded
    def newest_key(self, project: str) -> str | None:
        coll = self._coll(project)
        self._project_doc(coll, project)
        doc = coll.find_one({"type": "representation"}, {"_id": 1}, sort=[("_id", -1)])
        return None if doc is None else str(doc["_id"])

    def rewind_key(self, key: str, seconds: float) -> str:
        if not _HEX24.match(key):
            return key
        when = ObjectId(key).generation_time - timedelta(seconds=seconds)
        return str(ObjectId.from_datetime(when))

    @_guarded
    def file_page(
        self, project: str, repre_id: str, offset: int = 0, limit: int = 1000
    ) -> list[FileRecord]:
        """Only the page is sent by the server (``$slice``), so a 16 MB document is never
        decoded whole."""
        count = _ALL_FILES if limit is None or limit < 0 else limit
        if count == 0:
            return []
        doc = self._coll(project).find_one(
            {"_id": _id_match(repre_id), "type": "representation"},
            {"files": {"$slice": [max(0, offset), count]}, _OUTBOX: 0})
        if doc is None:
            raise KeyError(f"representation {repre_id} not found in project {project!r}")
        return self._parse_files(project, doc, offset)

    @_guarded
    def get_file(self, project: str, repre_id: str, file_id: str) -> FileRecord:
        doc = self._coll(project).find_one(
            {"_id": _id_match(repre_id), "type": "representation"},
            {"files": {"$elemMatch": {"_id": _id_match(file_id)}}})
        if doc is None:
            raise KeyError(f"representation {repre_id} not found in project {project!r}")
        files = self._parse_files(project, doc, 0)
        if not files:
            raise KeyError(f"file {file_id} not found in representation {repre_id}")
        return files[0]

    def _parse_files(self, project: str, doc: Doc, offset: int) -> list[FileRecord]:
        raw = doc.get("files")
        if not isinstance(raw, list):
            return []
        try:
            return [parse_file(f, offset + i) for i, f in enumerate(raw)]
        except ValueError as exc:
            raise DocumentError(
                f"representation {doc.get('_id')} in project {project!r} is malformed: {exc}. "
                "SiteSync leaves it untouched; fix the document or republish it") from None

    @_guarded
    def adopt_file(
        self, project: str, repre_id: str, file_id: str, site: str, provider_id: str,
        checksum: str, now: datetime,
    ) -> bool:
        """Two conditional updates, each atomic on the document: push a new available
        entry if the file has none for ``site``, else make the waiting, unleased entry
        available (`created_dt`, `id`, checksum; failure and lease fields cleared)."""
        now = _aware(now)
        coll = self._coll(project)
        self._convert_legacy_docs(project, coll)
        repre_key, file_key = _id_match(repre_id), _id_match(file_id)
        if coll.find_one({"_id": repre_key, "files._id": file_key}, {"_id": 1}) is None:
            raise KeyError(f"file {file_id} not found in representation {repre_id} of {project!r}")
        entry = {"name": site, "created_dt": now, "id": provider_id, "sitesync_checksum": checksum}
        added = coll.update_one(
            {"_id": repre_key, "files": {"$elemMatch": {"_id": file_key, "sites.name": {"$ne": site}}}},
            {"$push": {"files.$[f].sites": entry}}, array_filters=[{"f._id": file_key}])
        if added.matched_count:
            return True
        waiting = {"name": site, "created_dt": {"$in": [None, ""]},
                   "sitesync_lease_until": {"$not": {"$gt": now}}}
        cleared = ["tries", "error", "last_failed_dt", "progress", *_LEASE_KEYS,
                   "sitesync_next_attempt_dt", "sitesync_permanent"]
        made = coll.update_one(
            {"_id": repre_key, "files": {"$elemMatch": {"_id": file_key,
                                                        "sites": {"$elemMatch": waiting}}}},
            {"$set": {_ENTRY + "created_dt": now, _ENTRY + "id": provider_id,
                      _ENTRY + "sitesync_checksum": checksum},
             "$unset": _entry_keys(cleared)},
            array_filters=_entry_filters(file_key, site))
        return bool(made.matched_count)

    # -- change notification -------------------------------------------------------------------

    def _on_change(self, event: Mapping[str, Any]) -> None:
        project = (event.get("ns") or {}).get("coll")
        if project and _event_may_add_legacy(event):
            self._legacy_hint(project)

    def _started_watcher(self) -> _ChangeWatcher | None:
        with self._lock:
            if self._closed:
                return None
            watcher, created = self._watcher, False
            if watcher is None:
                watcher = self._watcher = _ChangeWatcher(
                    self._db, self._on_change, self._redact, self.use_change_streams)
                created = True
        if created:
            watcher.start(self._timeout_s + 1.0)
        else:  # another thread may still be opening the stream
            watcher.wait_ready(self._timeout_s + 1.0)
        return watcher

    def change_marker(self) -> object:
        """A counter bumped by a background change-stream follower (see _ChangeWatcher);
        the stream is already open when this returns, so no later write is missed."""
        watcher = self._started_watcher()
        return watcher.count if watcher is not None else -1

    def wait_for_change(self, marker: object, timeout_s: float) -> bool:
        watcher = self._started_watcher()
        if watcher is None:
            return False
        if not isinstance(marker, int) or isinstance(marker, bool):
            return True  # not one of ours: be safe and report a change
        return watcher.wait_past(marker, timeout_s)


# -- the event log ------------------------------------------------------------------------------


def _wall_now() -> datetime:
    """Time of a user action (the store API passes no clock for those)."""
    return datetime.now(UTC)


def _staged_events(doc: Mapping[str, Any], site: str, now: datetime) -> list[Doc] | None:
    """file_synced outbox entries for the staged entries of ``site``; None when some
    file's entry is neither available nor staged (not complete yet)."""
    events = []
    for raw_file in doc.get("files") or []:
        sites = raw_file.get("sites") if isinstance(raw_file, Mapping) else None
        entry = next((e for e in sites or [] if isinstance(e, Mapping) and e.get("name") == site),
                     None)
        if entry is None or entry.get("created_dt") not in (None, ""):
            continue
        if entry.get("sitesync_staged_dt") in (None, ""):
            return None
        events.append(_outbox_entry(EventType.FILE_SYNCED, now, site, str(raw_file.get("_id")), {
            "path": raw_file.get("path"), "size": raw_file.get("size"),
            "checksum": entry.get("sitesync_checksum"), "provider_id": entry.get("id"),
            "staged": True}))
    return events


def _outbox_entry(kind: EventType, now: datetime, site: str, file_id: str, data: Doc) -> Doc:
    """An event as it waits on its representation (project and id are the document's)."""
    return {"uid": ObjectId(), "type": kind.value, "at": _aware(now), "site": site,
            "file_id": file_id, "data": data}


def _event_from_doc(doc: Mapping[str, Any]) -> EventRecord:
    at = doc.get("at")
    data = doc.get("data")
    return EventRecord(
        id=int(doc["_id"]), type=str(doc.get("type", "")),
        at=_aware(at) if isinstance(at, datetime) else datetime.fromtimestamp(0, UTC),
        project=str(doc.get("project") or ""), site=str(doc.get("site") or ""),
        repre_id=str(doc.get("repre_id") or ""), file_id=str(doc.get("file_id") or ""),
        data=dict(data) if isinstance(data, Mapping) else {},
    )


def _available_on(raw_file: Any, site: str) -> datetime | None:
    """`created_dt` of the file's entry for ``site`` when it is available there."""
    sites = raw_file.get("sites") if isinstance(raw_file, Mapping) else None
    for entry in sites if isinstance(sites, list) else ():
        if isinstance(entry, Mapping) and entry.get("name") == site:
            created = entry.get("created_dt")
            return created if isinstance(created, datetime) else None
    return None


def _ready_event(project: str, doc: Mapping[str, Any], site: str) -> Doc | None:
    """representation_ready for ``site`` if every file is available there now. Its uid
    is the completion itself (representation, site, newest created_dt), so two
    processes deriving it log it once, and a later re-sync completes anew."""
    files = doc.get("files")
    if not isinstance(files, list) or not files:
        return None
    dates = [_available_on(f, site) for f in files]
    if any(d is None for d in dates):
        return None
    newest = max(_aware(d) for d in dates if d is not None)
    context = doc.get("context") if isinstance(doc.get("context"), Mapping) else {}
    version = context.get("version")
    data = {
        "asset": str(context.get("asset", "")), "subset": str(context.get("subset", "")),
        "version": version if isinstance(version, int) else None,
        "representation": str(context.get("representation", doc.get("name", ""))),
        "files": len(files),
        "size": sum(f.get("size", 0) for f in files
                    if isinstance(f, Mapping) and isinstance(f.get("size"), int)),
    }
    return {"uid": f"ready:{doc['_id']}:{site}:{newest.isoformat()}",
            "type": EventType.REPRESENTATION_READY.value, "at": newest, "project": project,
            "site": site, "repre_id": str(doc["_id"]), "file_id": "", "data": data}


_DRAIN_PROJECTION = {_OUTBOX: 1, "files._id": 1, "files.size": 1, "files.sites.name": 1,
                     "files.sites.created_dt": 1, "context": 1, "name": 1}


class _EventLog:
    """Ids, sealing and the outbox drain of one MongoStore (see the module docstring).

    The drain thread starts on the first outbox write or log read, scans every project
    for leftovers when it starts and every :attr:`SCAN_INTERVAL_S`, and otherwise only
    visits the documents this process wrote to.
    """

    SCAN_INTERVAL_S = 300.0
    RETRY_S = 2.0
    BATCH_WINDOW_S = 0.2
    #: How long logged entries may stay in their documents before being taken out.
    CLEANUP_DELAY_S = 0.5

    def __init__(self, db: Database[Doc], redact: Callable[[str], str]) -> None:
        self._db = db
        self._events: Collection[Doc] = db[_EVENTS]
        self._counters: Collection[Doc] = db[_COUNTERS]
        self._redact = redact
        self._cond = threading.Condition()
        self._pending: dict[tuple[str, str], None] = {}
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._next_scan = 0.0
        self._indexed = False
        self._counter_ready = False
        #: Entries logged but still in their documents, by (project, representation id).
        self._logged: dict[tuple[str, str], set[Any]] = {}
        #: Each document's outbox as its last drain read it (for the one-write removal).
        self._outbox_seen: dict[tuple[str, str], list[Any]] = {}
        self._next_cleanup = 0.0
        self._cleanup_now = False

    # -- writing ---------------------------------------------------------------------------

    def _ensure_indexes(self) -> None:
        if self._indexed:
            return
        self._events.create_index([("uid", ASCENDING)], unique=True, sparse=True)
        self._events.create_index([("at", ASCENDING)])
        self._indexed = True

    def _ensure_counter(self) -> None:
        """Create the counter once; several processes may race to, one insert wins."""
        if self._counter_ready:
            return
        # A DuplicateKeyError means another process created it between look and insert.
        with contextlib.suppress(DuplicateKeyError):
            self._counters.update_one(
                {"_id": "events"}, {"$setOnInsert": {"seq": 0, "log_id": uuid.uuid4().hex}},
                upsert=True)
        self._counter_ready = True

    def counter(self) -> Doc:
        """The counter document: ``seq``, ``log_id``, ``pruned_through``."""
        self._ensure_counter()
        return self._counters.find_one({"_id": "events"}) or {}

    def _allocate(self, count: int = 1) -> int:
        """Take ``count`` ids; returns the last one (they are last-count+1 .. last)."""
        for _ in range(5):
            self._ensure_counter()
            doc = self._counters.find_one_and_update(
                {"_id": "events"}, {"$inc": {"seq": count}},
                return_document=ReturnDocument.AFTER)
            if doc is not None:
                return int(doc["seq"])
            self._counter_ready = False  # deleted by hand? create it again
        raise StoreUnavailableError("the event log counter (sitesync_counters) cannot be updated")

    def insert(self, doc: Doc) -> int:
        """Insert ``doc`` (with its ``uid``) under a fresh id; returns the id it has.

        A sealed id (duplicate ``_id``) means a reader gave up on it: take the next one.
        A duplicate ``uid`` means it is logged already: seal the id just taken, so
        readers need not wait for it, and return the logged one."""
        self._ensure_indexes()
        for _ in range(1000):
            event_id = self._allocate()
            try:
                self._events.insert_one({"_id": event_id, **doc})
                return event_id
            except DuplicateKeyError as exc:
                pattern = (exc.details or {}).get("keyPattern") or {}
                if "_id" in pattern:
                    continue
                existing = self._events.find_one({"uid": doc["uid"]}, {"_id": 1})
                if existing is None:
                    continue
                self.seal(event_id, _wall_now())
                return int(existing["_id"])
        raise StoreUnavailableError("the event log counter keeps handing out sealed ids")

    def seal(self, event_id: int, now: datetime) -> EventRecord | None:
        try:
            self._events.insert_one({"_id": event_id, "type": EventType.GAP.value,
                                     "at": _aware(now), "project": ""})
            return None
        except DuplicateKeyError:
            doc = self._events.find_one({"_id": event_id})
        if doc is None:  # cannot happen: the duplicate was there a moment ago
            return None
        event = _event_from_doc(doc)
        return None if event.is_gap else event

    # -- the outbox drain -------------------------------------------------------------------

    def hint(self, project: str, repre_id: str) -> None:
        with self._cond:
            self._pending[(project, repre_id)] = None
            self._cond.notify_all()
        self.start()

    def start(self) -> None:
        with self._cond:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name="sitesync-eventlog",
                                            daemon=True)
        self._thread.start()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every hinted outbox is in the log and removed from its document."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            self._cleanup_now = True
            self._cond.notify_all()
            # A scan is due on the thread's first pass: leftovers of a crashed process count.
            while self._pending or self._busy or self._logged or (
                    self._thread is not None and time.monotonic() >= self._next_scan):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout_s: float) -> None:
        """Drain what this process wrote (up to ``timeout_s``), then stop the thread.
        Whatever is left stays in the outboxes for the next start."""
        if self._thread is None:
            return
        self.flush(timeout_s)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout_s + 1.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping and not self._cleanup_due() \
                        and time.monotonic() < self._next_scan:
                    # The cleanup time matters only while something logged awaits it: a
                    # past cleanup time with nothing to tidy must not turn this into a spin.
                    wake_at = min(self._next_scan, self._next_cleanup) if self._logged \
                        else self._next_scan
                    self._cond.wait(max(0.0, wake_at - time.monotonic()))
                if self._stopping:
                    return
                if self._pending and not self._cleanup_now:
                    # A moment to gather: one pass then serves many writes (a busy engine
                    # records several files per BATCH_WINDOW_S). New hints notify the
                    # condition, so wait for the deadline, not the first notification.
                    gather_until = time.monotonic() + self.BATCH_WINDOW_S
                    while not self._stopping and not self._cleanup_now and \
                            time.monotonic() < gather_until:
                        self._cond.wait(gather_until - time.monotonic())
                batch = list(self._pending)
                self._pending.clear()
                cleanup = self._cleanup_due()
                self._busy = True
            failed = self._work(batch, cleanup)
            with self._cond:
                self._busy = False
                for key in failed:
                    self._pending.setdefault(key, None)
                self._cond.notify_all()
                if failed:
                    self._cond.wait(self.RETRY_S)

    def _cleanup_due(self) -> bool:
        return bool(self._logged) and (self._cleanup_now or
                                       time.monotonic() >= self._next_cleanup)

    def _work(self, batch: list[tuple[str, str]], cleanup: bool) -> list[tuple[str, str]]:
        """Drain ``batch`` (and scan, and tidy the outboxes, when due); returns the keys
        to try again."""
        try:
            if time.monotonic() >= self._next_scan:
                self._next_scan = time.monotonic() + self.SCAN_INTERVAL_S
                batch = batch + [k for k in self._scan() if k not in batch]
        except PyMongoError as exc:
            self._next_scan = time.monotonic() + self.RETRY_S
            log.warning("event log: cannot look for undrained events (%s); retrying",
                        self._redact(str(exc))[:200])
        by_project: dict[str, list[str]] = {}
        for project, repre_id in batch:
            by_project.setdefault(project, []).append(repre_id)
        failed: list[tuple[str, str]] = []
        for project, repre_ids in by_project.items():
            try:
                self._drain(project, repre_ids)
            except PyMongoError as exc:
                failed.extend((project, r) for r in repre_ids)
                log.warning("event log: events of %d representation(s) in %s not logged yet "
                            "(%s); retrying", len(repre_ids), project,
                            self._redact(str(exc))[:200])
            except Exception:
                log.exception("event log: cannot drain %s", project)
        if cleanup:
            self._tidy()
        return failed

    def _scan(self) -> list[tuple[str, str]]:
        found = []
        for name in self._db.list_collection_names():
            if name.startswith("system.") or name in _RESERVED:
                continue
            for doc in self._db[name].find({_OUTBOX + ".0": {"$exists": True}}, {"_id": 1}):
                found.append((name, str(doc["_id"])))
        return found

    def _drain(self, project: str, repre_ids: list[str]) -> None:
        """Log the outbox entries of these representations: one read of the documents,
        one block of ids, one insert.

        The documents are not changed here: taking the entries out is another write of
        each (large) document, so :meth:`_tidy` does it later for everything logged
        meanwhile, one write per document however many events it carried."""
        coll = self._db[project]
        wanted: list[Any] = []
        for repre_id in repre_ids:
            wanted.extend([ObjectId(repre_id), repre_id] if _HEX24.match(repre_id) else [repre_id])
        docs = [d for d in coll.find({"_id": {"$in": wanted}}, _DRAIN_PROJECTION)
                if isinstance(d.get(_OUTBOX), list) and d[_OUTBOX]]
        if not docs:
            return
        candidates: list[tuple[tuple[str, str], Doc]] = []
        for doc in docs:
            key = (project, str(doc["_id"]))
            known = self._logged.get(key, set())
            synced_sites: list[str] = []
            for entry in doc[_OUTBOX]:
                if not isinstance(entry, Mapping) or "uid" not in entry or entry["uid"] in known:
                    continue
                site = str(entry.get("site") or "")
                candidates.append((key, {
                    "uid": entry["uid"], "type": str(entry.get("type", "")),
                    "at": entry.get("at") or _wall_now(), "project": project, "site": site,
                    "repre_id": str(doc["_id"]), "file_id": str(entry.get("file_id") or ""),
                    "data": entry.get("data") or {},
                }))
                if entry.get("type") == EventType.FILE_SYNCED.value and site not in synced_sites:
                    synced_sites.append(site)
            candidates.extend((key, ready) for site in synced_sites
                              if (ready := _ready_event(project, doc, site)) is not None)
        if not candidates:
            return
        # Usually none is logged yet; one that is (another process drained the same
        # document) is refused by the unique uid and settled by insert_many.
        self.insert_many([event for _, event in candidates])
        with self._cond:
            for doc in docs:
                self._outbox_seen[(project, str(doc["_id"]))] = doc[_OUTBOX]
            for key, event in candidates:
                if not str(event["uid"]).startswith("ready:"):
                    self._logged.setdefault(key, set()).add(event["uid"])
            if self._next_cleanup <= time.monotonic():
                self._next_cleanup = time.monotonic() + self.CLEANUP_DELAY_S

    def _tidy(self) -> None:
        """Take logged entries out of their documents (the array goes when empty)."""
        with self._cond:
            logged, self._logged = self._logged, {}
            seen, self._outbox_seen = self._outbox_seen, {}
            self._cleanup_now = False
            self._next_cleanup = time.monotonic() + self.CLEANUP_DELAY_S
        retry: dict[tuple[str, str], set[Any]] = {}
        for (project, repre_id), uids in logged.items():
            coll = self._db[project]
            match = _id_match(repre_id)
            outbox = seen.get((project, repre_id))
            try:
                # Usually nothing was added since the last drain read the array: one
                # compare-and-swap write removes it. Otherwise pull what was logged.
                if outbox is not None and {e.get("uid") for e in outbox
                                           if isinstance(e, Mapping)} <= uids and \
                        coll.update_one({"_id": match, _OUTBOX: outbox},
                                        {"$unset": {_OUTBOX: ""}}).matched_count:
                    continue
                coll.update_one({"_id": match},
                                {"$pull": {_OUTBOX: {"uid": {"$in": list(uids)}}}})
                coll.update_one({"_id": match, _OUTBOX: {"$size": 0}}, {"$unset": {_OUTBOX: ""}})
            except PyMongoError as exc:
                retry[(project, repre_id)] = uids
                log.warning("event log: cannot tidy the outbox of %s/%s (%s); retrying",
                            project, repre_id, self._redact(str(exc))[:200])
        if retry:
            with self._cond:
                for key, uids in retry.items():
                    self._logged.setdefault(key, set()).update(uids)

    def insert_many(self, docs: list[Doc]) -> None:
        """Log ``docs`` (each with its ``uid``) in order under a block of fresh ids.

        What the block insert refuses is settled one by one by :meth:`insert`: a sealed
        id gets a new one, an event already logged (same uid) is left as it is."""
        if not docs:
            return
        if len(docs) == 1:
            self.insert(docs[0])
            return
        self._ensure_indexes()
        last = self._allocate(len(docs))
        first = last - len(docs) + 1
        try:
            self._events.insert_many([{"_id": first + i, **doc} for i, doc in enumerate(docs)],
                                     ordered=False)
        except BulkWriteError as exc:
            for error in (exc.details or {}).get("writeErrors", []):
                if error.get("code") != 11000:
                    raise
                index = int(error["index"])
                if "_id" in (error.get("keyPattern") or {}):
                    self.insert(docs[index])  # that id was sealed: take another
                else:
                    self.seal(first + index, _wall_now())  # logged already: free the id


# -- helpers used by the store ------------------------------------------------------------------


def _entry_keys(keys: Iterable[str]) -> Doc:
    return {_ENTRY + key: "" for key in keys}


def _raw_entries(doc: Mapping[str, Any], site: str) -> list[tuple[Doc, Doc]]:
    """(raw file, raw site entry) for every list-form file that has an entry for ``site``."""
    found = []
    for raw_file in doc.get("files") or []:
        sites = raw_file.get("sites") if isinstance(raw_file, Mapping) else None
        if not isinstance(sites, list):
            continue
        entry = next((e for e in sites if isinstance(e, Mapping) and e.get("name") == site),
                     None)
        if entry is not None:
            found.append((raw_file, entry))
    return found


def _new_doc(repre: Representation) -> Doc:
    """The OpenPype document of a representation that has its ids, with ObjectIds where
    OpenPype's integrator writes them."""
    doc = representation_to_doc(repre)
    doc["_id"] = _as_id(doc["_id"])
    if isinstance(doc.get("parent"), str):
        doc["parent"] = _as_id(doc["parent"])
    for file in doc["files"]:
        file["_id"] = _as_id(str(file["_id"]))
    return doc


def _with_ids(repre: Representation) -> Representation:
    """Give a new representation (and files) ids, as OpenPype's integrator does."""
    files = tuple(f if f.id else replace(f, id=str(ObjectId())) for f in repre.files)
    return replace(repre, id=repre.id or str(ObjectId()), files=files)


def _project_paused(doc: Mapping[str, Any]) -> bool:
    data = doc.get("data")
    nested = isinstance(data, Mapping) and bool(data.get("sitesync_paused"))
    return nested or bool(doc.get("sitesync_paused"))


def _project_code(doc: Mapping[str, Any]) -> str:
    data = doc.get("data")
    code = data.get("code") if isinstance(data, Mapping) else None
    return str(code or doc.get("code") or "")
