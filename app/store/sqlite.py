"""SqliteStore: the embedded default store, one SQLite file shared by threads and processes.

Why it looks the way it does:

* **Normalised tables** (``projects``, ``representations``, ``files``, ``file_sites``)
  instead of one JSON blob per representation, so a claim or a progress update rewrites
  one small row, and the hot queries (work for a site pair, the summary table) are plain
  indexed joins. Fields of an imported OpenPype document that have no column (``data``,
  ``schema``, unknown keys on files and site entries) are kept as Extended JSON beside the
  row, so :meth:`SqliteStore.get_document` gives the document back.
* **WAL mode** lets readers (the UI paging the summary) run while an engine writes, and
  several processes share the file. Every write is one short ``BEGIN IMMEDIATE``
  transaction: taking the write lock up front means the ``busy_timeout`` wait applies and a
  read-then-write can never deadlock on a lock upgrade.
* **One connection per thread** (:class:`threading.local`): the engine calls the store
  from many worker threads and an sqlite3 connection must not be shared mid-transaction.
* **Claims are conditional UPDATEs** whose WHERE clause holds every "still claimable"
  condition; the row count says who won, atomically across processes.
* **Statuses come from :mod:`app.status`**: :func:`app.status.site_status_code` is
  registered as the SQL function ``sitesync_status`` and combined with the ranks of
  :class:`app.model.Status`, so SQL never restates a status rule.
* **Times** are REAL epoch seconds (UTC); they come back as aware UTC datetimes.
* The schema is versioned with ``PRAGMA user_version`` and upgraded by ``_MIGRATIONS``.
* **The event log** (``events``) is written in the same transaction as the state change
  it reports, and SQLite serialises writers, so ids are committed in order: a reader of
  this store never sees a gap that later fills (only pruning removes ids, from the old end).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from bson import ObjectId
from bson.errors import InvalidId
from bson.json_util import JSONMode, JSONOptions
from bson.json_util import dumps as _bson_dumps
from bson.json_util import loads as _bson_loads

from app.errors import DocumentError, StoreUnavailableError
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
from app.status import combine, site_status, site_status_code
from app.store.base import CHUNK_FILES, Store
from app.store.docs import SITESYNC_KEYS, parse_representation, representation_to_doc

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

_INT64_MAX = 2**63 - 1
#: Seconds a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_S = 10.0
#: How often :meth:`SqliteStore.wait_for_change` looks for commits by other processes.
POLL_INTERVAL_S = 0.075

_P = ParamSpec("_P")
_R = TypeVar("_R")

# -- schema ---------------------------------------------------------------------------------

_SCHEMA_V1 = (
    """
    CREATE TABLE projects (
        name TEXT PRIMARY KEY,
        code TEXT NOT NULL DEFAULT '',
        paused INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    )
    """,
    # seq (the rowid) is the representation's age; ids are unique per project, like an
    # OpenPype project collection.
    """
    CREATE TABLE representations (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        project TEXT NOT NULL REFERENCES projects (name),
        parent TEXT,
        name TEXT NOT NULL DEFAULT '',
        asset TEXT NOT NULL DEFAULT '',
        subset TEXT NOT NULL DEFAULT '',
        version INTEGER,
        representation TEXT NOT NULL DEFAULT '',
        context_json TEXT NOT NULL DEFAULT '{}',
        extra_json TEXT,
        created_at REAL,
        UNIQUE (project, id)
    )
    """,
    # Summary paging walks one project's representations in age order.
    "CREATE INDEX representations_by_project ON representations (project, seq)",
    """
    CREATE TABLE files (
        seq INTEGER PRIMARY KEY,
        repre_seq INTEGER NOT NULL REFERENCES representations (seq) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        id TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        hash TEXT NOT NULL DEFAULT '',
        extra_json TEXT,
        UNIQUE (repre_seq, position),
        UNIQUE (repre_seq, id)
    )
    """,
    # One row per `files[].sites[]` entry; rowid order is the entry order in the document.
    """
    CREATE TABLE file_sites (
        file_seq INTEGER NOT NULL REFERENCES files (seq) ON DELETE CASCADE,
        site TEXT NOT NULL,
        created_dt REAL,
        provider_id TEXT,
        tries INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        last_failed_dt REAL,
        progress REAL,
        paused INTEGER NOT NULL DEFAULT 0,
        priority INTEGER,
        lease_owner TEXT,
        lease_until REAL,
        checksum TEXT,
        next_attempt_dt REAL,
        permanent INTEGER NOT NULL DEFAULT 0,
        extra_json TEXT,
        PRIMARY KEY (file_seq, site)
    )
    """,
    # find_work starts from the (usually few) queued entries of one site; available
    # entries, the vast majority, are not in this index at all.
    """
    CREATE INDEX file_sites_queued ON file_sites (site, file_seq)
    WHERE created_dt IS NULL
    """,
)

#: Each item upgrades the schema by one version; never edit a released item, append.
#: Version 2: "when complete" entries (``atomic``) and staged files (``staged_dt``); the
#: queued index leaves staged entries out, since nothing is left to move for them.
_SCHEMA_V2 = (
    "ALTER TABLE file_sites ADD COLUMN atomic INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE file_sites ADD COLUMN staged_dt REAL",
    "DROP INDEX file_sites_queued",
    """
    CREATE INDEX file_sites_queued ON file_sites (site, file_seq)
    WHERE created_dt IS NULL AND staged_dt IS NULL
    """,
    # Staged entries are few and short-lived; this finds them after a restart.
    """
    CREATE INDEX file_sites_staged ON file_sites (site, file_seq)
    WHERE staged_dt IS NOT NULL
    """,
)

#: Version 3: the event log (app.hooks reads it).
_SCHEMA_V3 = (
    # The event log. Ids are rowids (max + 1); pruning always keeps the newest event, so
    # an id is never handed out twice and a reader's saved position keeps its meaning.
    # (AUTOINCREMENT would do the same for a third more per insert.)
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        at REAL NOT NULL,
        project TEXT NOT NULL DEFAULT '',
        site TEXT NOT NULL DEFAULT '',
        repre_id TEXT NOT NULL DEFAULT '',
        file_id TEXT NOT NULL DEFAULT '',
        data_json TEXT
    )
    """,
    # The log's identity: a new database file is a new log, whatever its ids.
    "CREATE TABLE event_log (log_id TEXT NOT NULL, pruned_through INTEGER NOT NULL DEFAULT 0)",
    "INSERT INTO event_log (log_id) VALUES (lower(hex(randomblob(16))))",
)

#: A (project, site, representation) that some file of the representation has an entry
#: for, with how many entries: "does this row belong to the pair" without visiting files.
_REPRE_SITE_KEY = """
    (SELECT r.project FROM files AS f JOIN representations AS r ON r.seq = f.repre_seq
     WHERE f.seq = {entry}.file_seq),
    {entry}.site,
    (SELECT repre_seq FROM files WHERE seq = {entry}.file_seq)
"""
_COUNT_ENTRY = f"""
    INSERT INTO repre_sites (project, site, repre_seq, entries)
    VALUES ({_REPRE_SITE_KEY.format(entry="NEW")}, 1)
    ON CONFLICT (project, site, repre_seq) DO UPDATE SET entries = entries + 1;
"""
_UNCOUNT_ENTRY = f"""
    UPDATE repre_sites SET entries = entries - 1
    WHERE (project, site, repre_seq) = ({_REPRE_SITE_KEY.format(entry="OLD")});
    DELETE FROM repre_sites
    WHERE (project, site, repre_seq) = ({_REPRE_SITE_KEY.format(entry="OLD")}) AND entries <= 0;
"""

#: Version 4: the Sync Queue pages through indexes at a million representations. Each
#: representation-column sort has an index ending in ``seq`` (the tie-break), so a page is
#: an index walk; ``repre_sites`` (kept by triggers on every insert, delete or move of an
#: entry, so no code path can forget it) answers "is this representation on the pair"
#: and the page's ``total`` from a few index ranges instead of visiting 2M files.
_SCHEMA_V4 = (
    "CREATE INDEX representations_by_asset ON representations (project, asset, seq)",
    "CREATE INDEX representations_by_subset ON representations (project, subset, seq)",
    "CREATE INDEX representations_by_version ON representations (project, version, seq)",
    "CREATE INDEX representations_by_name ON representations (project, representation, seq)",
    """
    CREATE TABLE repre_sites (
        project TEXT NOT NULL,
        site TEXT NOT NULL,
        repre_seq INTEGER NOT NULL,
        entries INTEGER NOT NULL,
        PRIMARY KEY (project, site, repre_seq)
    ) WITHOUT ROWID
    """,
    """
    INSERT INTO repre_sites (project, site, repre_seq, entries)
    SELECT r.project, fs.site, r.seq, COUNT(*)
    FROM file_sites AS fs
    JOIN files AS f ON f.seq = fs.file_seq
    JOIN representations AS r ON r.seq = f.repre_seq
    GROUP BY r.project, fs.site, r.seq
    """,
    f"CREATE TRIGGER repre_sites_insert AFTER INSERT ON file_sites BEGIN {_COUNT_ENTRY} END",
    f"CREATE TRIGGER repre_sites_delete AFTER DELETE ON file_sites BEGIN {_UNCOUNT_ENTRY} END",
    f"""
    CREATE TRIGGER repre_sites_move AFTER UPDATE OF site, file_seq ON file_sites
    BEGIN {_UNCOUNT_ENTRY} {_COUNT_ENTRY} END
    """,
)

#: Version 5: the entries whose status needs app.status's full rules (not yet available,
#: or paused). Every other entry is Synced whatever its tries, lease or the time, so the
#: status counts and status pages aggregate only the representations these index. The
#: condition is written with a bitwise ``|`` so only a query repeating it (_UNSETTLED_CTE)
#: can use the index: with a logical OR, ``created_dt IS NULL`` in find_work implied it and
#: the planner swapped file_sites_queued for this larger index.
_SCHEMA_V5 = (
    """
    CREATE INDEX file_sites_unsettled ON file_sites (site, file_seq)
    WHERE (created_dt IS NULL) | (paused <> 0)
    """,
)

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4, _SCHEMA_V5)
SCHEMA_VERSION = len(_MIGRATIONS)

# -- SQL fragments ----------------------------------------------------------------------------

_SITE_COLUMNS = (
    "site", "created_dt", "provider_id", "tries", "error", "last_failed_dt", "progress",
    "paused", "priority", "lease_owner", "lease_until", "checksum", "next_attempt_dt",
    "permanent", "extra_json", "atomic", "staged_dt",
)

#: A fresh queued entry: everything but `name`, `priority` and the "when complete" mode
#: goes (OpenPype's re-sync).
_RESET_ENTRY = """
    created_dt = NULL, provider_id = NULL, tries = 0, error = NULL, last_failed_dt = NULL,
    progress = NULL, paused = 0, lease_owner = NULL, lease_until = NULL, checksum = NULL,
    next_attempt_dt = NULL, permanent = 0, extra_json = NULL, staged_dt = NULL
"""

_REPRE_FILES = "SELECT seq FROM files WHERE repre_seq = :repre_seq"

#: The target entry of a claim, located by the ids a WorkItem carries.
_CLAIM_TARGET = """
    rowid = (
        SELECT tgt.rowid FROM representations AS r
        JOIN files AS f ON f.repre_seq = r.seq
        JOIN file_sites AS tgt ON tgt.file_seq = f.seq AND tgt.site = :target
        WHERE r.project = :project AND r.id = :repre_id AND f.id = :file_id
    )
"""

#: Still held by this claim: same owner and the very lease this claim wrote. A lease that
#: expired and was taken over has another owner or another lease_until (the same owner
#: name after a restart gets a new lease_until), so a late result cannot overwrite it.
_HELD = (
    _CLAIM_TARGET
    + " AND lease_owner = :owner AND lease_until = :held_until AND created_dt IS NULL"
)

_FIND_WORK_SQL = """
SELECT r.id AS repre_id, f.id AS file_id, f.path AS path, f.size AS size, f.hash AS hash,
       src.site AS source_site, tgt.site AS target_site, tgt.tries AS tries,
       src.checksum AS source_checksum, tgt.atomic AS atomic,
       COALESCE(
           CASE WHEN tgt.site = :active THEN tgt.priority ELSE src.priority END,
           CASE WHEN tgt.site = :active THEN src.priority ELSE tgt.priority END,
           :default_priority
       ) AS priority
FROM file_sites AS tgt
JOIN file_sites AS src
     ON src.file_seq = tgt.file_seq
    AND src.site = CASE WHEN tgt.site = :active THEN :remote ELSE :active END
JOIN files AS f ON f.seq = tgt.file_seq
JOIN representations AS r ON r.seq = f.repre_seq
JOIN projects AS p ON p.name = r.project
WHERE tgt.site IN (:target_a, :target_b)
  AND tgt.created_dt IS NULL
  AND tgt.staged_dt IS NULL
  AND tgt.paused = 0
  AND tgt.permanent = 0
  AND tgt.tries < :retry_cnt
  AND (tgt.next_attempt_dt IS NULL OR tgt.next_attempt_dt <= :now)
  AND (tgt.lease_until IS NULL OR tgt.lease_until <= :now)
  AND src.created_dt IS NOT NULL
  AND src.paused = 0
  AND r.project = :project
  AND p.paused = 0
ORDER BY priority DESC, f.position / :chunk, r.seq, f.position
LIMIT :limit
"""

_CLAIM_SQL = """
UPDATE file_sites SET lease_owner = :owner, lease_until = :lease_until
WHERE rowid = (
    SELECT tgt.rowid FROM representations AS r
    JOIN projects AS p ON p.name = r.project
    JOIN files AS f ON f.repre_seq = r.seq
    JOIN file_sites AS tgt ON tgt.file_seq = f.seq AND tgt.site = :target
    JOIN file_sites AS src ON src.file_seq = f.seq AND src.site = :source
    WHERE r.project = :project AND r.id = :repre_id AND f.id = :file_id
      AND p.paused = 0
      AND tgt.created_dt IS NULL AND tgt.staged_dt IS NULL
      AND tgt.paused = 0 AND tgt.permanent = 0
      AND tgt.tries = :tries
      AND (tgt.next_attempt_dt IS NULL OR tgt.next_attempt_dt <= :now)
      AND (tgt.lease_until IS NULL OR tgt.lease_until <= :now)
      AND src.created_dt IS NOT NULL AND src.paused = 0
)
"""


def _find_work_query(
    project: str, active_site: str, remote_site: str, retry_cnt: int, now: datetime, limit: int,
    direction: Direction | None = None,
) -> tuple[str, dict[str, Any]]:
    """The find_work statement and its parameters (tests EXPLAIN it). Targets: both
    sites, or the remote only (uploads) or the active only (downloads)."""
    targets = {None: (active_site, remote_site), Direction.UPLOAD: (remote_site, remote_site),
               Direction.DOWNLOAD: (active_site, active_site)}[direction]
    return _FIND_WORK_SQL, {
        "project": project,
        "active": active_site,
        "remote": remote_site,
        "target_a": targets[0],
        "target_b": targets[1],
        "chunk": CHUNK_FILES,
        "retry_cnt": retry_cnt,
        "now": _ts(now),
        "limit": limit,
        "default_priority": DEFAULT_PRIORITY,
    }


# -- summary SQL ------------------------------------------------------------------------------

_BY_RANK = {status.rank: status for status in Status}
#: app.status.site_status_code as the SQL function ``sitesync_status``. Memoised because a
#: summary page calls it for every file on both sides with only a handful of distinct
#: inputs, and it is pure; this roughly halves the time spent in Python per page.
_status_code_udf = functools.lru_cache(maxsize=4096)(site_status_code)
#: Status code -> rank, written out from the enum so SQL aggregates by urgency without
#: knowing any status rule (min rank wins, as in status.combine).
_RANK_CASE = "CASE {} " + " ".join(f"WHEN {s.value} THEN {s.rank}" for s in Status) + " END"
#: One pass counting rows per rank (a GROUP BY would sort every row).
_RANK_COUNTS = ", ".join(
    f"COALESCE(SUM(MIN(a_rank, b_rank) = {rank}), 0) AS n{rank}" for rank in sorted(_BY_RANK)
)


def _side_rank_sql(alias: str) -> str:
    """Rank of one file on one side, via the registered app.status.site_status_code."""
    call = (
        f"sitesync_status({alias}.file_seq IS NOT NULL, {alias}.created_dt IS NOT NULL, "
        f"{alias}.paused, {alias}.tries, {alias}.permanent, {alias}.lease_until, "
        f"{alias}.progress IS NOT NULL AND {alias}.lease_owner IS NULL, :retry_cnt, :now)"
    )
    return _RANK_CASE.format(call)


def _side_progress_sql(alias: str) -> str:
    """app.status.site_progress as SQL: 1 when available, the clamped fraction while
    moving, 0 otherwise (no entry included). Kept equal by a parity test in
    tests/unit/store/test_sqlite.py; a Python call per file would double the page time."""
    return (
        f"CASE WHEN {alias}.created_dt IS NOT NULL THEN 1.0 "
        f"WHEN {alias}.progress IS NOT NULL THEN MAX(0.0, MIN(1.0, {alias}.progress)) "
        "ELSE 0.0 END"
    )


def _side_aggregates_sql(alias: str) -> str:
    """One side of a representation: combined status rank, mean progress, latest date
    (available, else last failure) and total tries; a file without an entry counts as
    Not available with progress 0."""
    return (
        f"MIN({_side_rank_sql(alias)}) AS {alias}_rank, "
        f"AVG({_side_progress_sql(alias)}) AS {alias}_progress, "
        f"MAX(COALESCE({alias}.created_dt, {alias}.last_failed_dt)) AS {alias}_dt, "
        f"COALESCE(SUM({alias}.tries), 0) AS {alias}_tries"
    )


def _latest_error_sql(site_param: str) -> str:
    """Error text of the most recently failed file on a side; evaluated for page rows only."""
    return f"""(
        SELECT fs.error FROM files AS ef
        JOIN file_sites AS fs ON fs.file_seq = ef.seq AND fs.site = :{site_param}
        WHERE ef.repre_seq = p.seq AND fs.error IS NOT NULL
        ORDER BY fs.last_failed_dt DESC, ef.position LIMIT 1
    )"""


_TEXT_FILTER = """
  AND (instr(sitesync_fold(r.asset), :needle) > 0
       OR instr(sitesync_fold(r.subset), :needle) > 0
       OR instr(sitesync_fold(r.representation), :needle) > 0
       OR r.id = :raw_text)
"""

_SORT_COLUMNS = {
    "asset": "asset",
    "subset": "subset",
    "version": "version",
    "representation": "representation",
    "files_count": "files_count",
    "size": "size",
    "priority": "priority",
    "status": "rank",
    "active_dt": "a_dt",
    "remote_dt": "b_dt",
    "created": "seq",
}


#: By rowid through the (project, id) index: written as ``r.id IN (...)`` the planner walks
#: the whole project through representations_by_project instead.
_IDS_FILTER = """
  AND r.seq IN (SELECT seq FROM representations
                WHERE project = :project AND id IN (SELECT value FROM json_each(:ids)))
"""


def _per_repre_select(representations: str = "representations AS r") -> str:
    """One summary row per representation: its files with the entries of the active
    (``a``) and remote (``b``) sites, aggregated; callers add the WHERE and GROUP BY.
    ``representations`` is the FROM source that names the rows ``r`` (the page-first
    query joins a picked page of seqs)."""
    return f"""\
    SELECT r.seq AS seq, r.id AS id, r.asset AS asset, r.subset AS subset,
           r.version AS version, r.representation AS representation,
           COUNT(*) AS files_count, COALESCE(SUM(f.size), 0) AS size,
           MAX(COALESCE(a.priority, b.priority, :default_priority)) AS priority,
           {_side_aggregates_sql("a")},
           {_side_aggregates_sql("b")}
    FROM {representations}
    JOIN files AS f ON f.repre_seq = r.seq
    LEFT JOIN file_sites AS a ON a.file_seq = f.seq AND a.site = :active
    LEFT JOIN file_sites AS b ON b.file_seq = f.seq AND b.site = :remote
"""


_PER_REPRE_SELECT = _per_repre_select()


def _summary_sql(
    text_filter: bool, rank_count: int, sort_key: str, descending: bool, by_ids: bool = False
) -> str:
    """One statement: aggregate every representation once (MATERIALIZED), count rows by
    status rank, cut the page.

    ``a`` is the active site, ``b`` the remote one; a row's rank is the lower (more
    urgent) of its two sides. The single row of counts is LEFT JOINed to the page so an
    empty page still carries the counts; the per-row extras (first path, latest error)
    are computed after LIMIT, for page rows only. Ties sort by seq (age) so pages never
    overlap. ``by_ids`` narrows it to the representations in the JSON array ``:ids``
    (the Sync Queue refreshing the rows an event touched).
    """
    if sort_key not in _SORT_COLUMNS:
        keys = ", ".join(_SORT_COLUMNS)
        raise ValueError(f"unknown sort key {sort_key!r}; use one of: {keys}")
    direction = "DESC" if descending else "ASC"
    order = f"{_SORT_COLUMNS[sort_key]} {direction}, seq {direction}"
    ranks = ", ".join(f":rank{i}" for i in range(rank_count))
    rank_filter = f"MIN(a_rank, b_rank) IN ({ranks})" if rank_count else "1"
    extra_filters = (_TEXT_FILTER if text_filter else "") + (_IDS_FILTER if by_ids else "")
    return f"""
WITH per_repre AS MATERIALIZED (
{_PER_REPRE_SELECT}    WHERE r.project = :project {extra_filters}
    GROUP BY r.seq
    HAVING COUNT(a.file_seq) + COUNT(b.file_seq) > 0
),
counts AS (SELECT {_RANK_COUNTS} FROM per_repre),
page AS (
    SELECT *, MIN(a_rank, b_rank) AS rank FROM per_repre WHERE {rank_filter}
    ORDER BY {order} LIMIT :limit OFFSET :offset
)
SELECT c.*, p.*,
       (SELECT path FROM files WHERE repre_seq = p.seq ORDER BY position LIMIT 1)
           AS first_path,
       {_latest_error_sql("active")} AS a_error,
       {_latest_error_sql("remote")} AS b_error
FROM counts AS c LEFT JOIN page AS p ON 1
ORDER BY {order}
"""


#: Sort keys that are columns of ``representations``: a page sorted by one of them can be
#: cut before aggregating (see _page_first_sql).
_PLAIN_SORTS = {"asset": "r.asset", "subset": "r.subset", "version": "r.version",
                "representation": "r.representation", "created": "r.seq"}
#: "Some file has an entry for either site": the HAVING of _summary_sql, per row.
#: Through repre_sites (schema 4): one index probe per site instead of visiting files.
_TRACKED = """EXISTS (
    SELECT 1 FROM repre_sites AS t
    WHERE t.project = :project AND t.site IN (:active, :remote) AND t.repre_seq = r.seq)"""


# -- status counts and status pages without aggregating every representation ---------------
#
# A file's entry that is available and not paused is Synced whatever else it holds (its
# tries, lease, progress, retry_cnt, the time): app.status decides so, and a unit test pins
# it. A missing entry is Not available. So a representation of the pair whose entries on
# both sites are all "settled" (available, unpaused) has one of two statuses, decided by
# whether every file has an entry on both sites: repre_sites' counts against the file
# count say that without visiting files. Only the "unsettled" representations (the queue,
# usually a small share) are aggregated through app.status, file by file.

#: Representations of the project with an unsettled entry on either site
#: (file_sites_unsettled, schema 5).
_UNSETTLED_CTE = """
unsettled AS MATERIALIZED (
    SELECT DISTINCT f.repre_seq AS seq
    FROM file_sites AS fs
    JOIN files AS f ON f.seq = fs.file_seq
    JOIN representations AS ur ON ur.seq = f.repre_seq
    WHERE fs.site IN (:active, :remote) AND (fs.created_dt IS NULL) | (fs.paused <> 0)
      AND ur.project = :project
)"""

#: Entries of a representation on a site (NULL: none) and its file count.
_ENTRIES = """(SELECT entries FROM repre_sites
    WHERE project = :project AND site = :{site} AND repre_seq = {seq})"""
_FILES_COUNT = "(SELECT COUNT(*) FROM files WHERE repre_seq = {seq})"


def _complete_sql(seq: str) -> str:
    """Every file of the representation has an entry on both sites."""
    count = _FILES_COUNT.format(seq=seq)
    return (f"{_ENTRIES.format(site='active', seq=seq)} = {count} "
            f"AND {_ENTRIES.format(site='remote', seq=seq)} = {count}")


#: Status rank of each unsettled representation, through app.status file by file.
_UNSETTLED_RANKS_SQL = f"""
WITH {_UNSETTLED_CTE}
SELECT r.seq AS seq,
       MIN(MIN({_side_rank_sql("a")}), MIN({_side_rank_sql("b")})) AS rank
FROM unsettled AS u
JOIN representations AS r ON r.seq = u.seq
JOIN files AS f ON f.repre_seq = r.seq
LEFT JOIN file_sites AS a ON a.file_seq = f.seq AND a.site = :active
LEFT JOIN file_sites AS b ON b.file_seq = f.seq AND b.site = :remote
GROUP BY r.seq
"""

#: One pass over the smaller site's rows of repre_sites, each probed on the other site:
#: how many representations are on both sites, and how many settled ones have every file
#: on both (complete). :unsettled is the JSON array of the unsettled representations.
_PAIR_COUNTS_SQL = f"""
SELECT COUNT(y.repre_seq) AS both_sites,
       COALESCE(SUM(x.entries = y.entries
                    AND x.entries = {_FILES_COUNT.format(seq="x.repre_seq")}
                    AND x.repre_seq NOT IN (SELECT value FROM json_each(:unsettled))), 0)
           AS complete
FROM repre_sites AS x
LEFT JOIN repre_sites AS y
       ON y.project = x.project AND y.site = :large AND y.repre_seq = x.repre_seq
WHERE x.project = :project AND x.site = :small
"""


def _settled_walk_sql(complete: bool, sort_key: str, descending: bool) -> str:
    """The first ``:limit`` settled representations that are complete (or not) in the
    page's order, through the sort column's index (status: by age)."""
    direction = "DESC" if descending else "ASC"
    column = _PLAIN_SORTS.get(sort_key, "r.seq")
    condition = (_complete_sql("r.seq") if complete
                 else f"{_TRACKED} AND NOT COALESCE({_complete_sql('r.seq')}, 0)")
    return f"""
SELECT r.seq AS seq FROM representations AS r
WHERE r.project = :project AND {condition}
  AND r.seq NOT IN (SELECT value FROM json_each(:unsettled))
ORDER BY {column} {direction}, r.seq {direction}
LIMIT :limit
"""


def _settled_ranks(retry_cnt: int, now: datetime) -> tuple[int, int]:
    """Ranks of a settled representation, complete and incomplete, from app.status: a
    settled entry's status (present, available, unpaused) and a missing entry's. A
    tracked representation has at least one entry, so an incomplete one combines both."""
    at = now.timestamp()
    synced = Status(site_status_code(True, True, False, 0, False, None, False, retry_cnt, at))
    missing = Status(site_status_code(False, False, False, 0, False, None, False, retry_cnt, at))
    return synced.rank, combine((synced, missing)).rank


#: Full rows (as _summary_sql gives them) of the representations in the JSON array :seqs.
_ROWS_BY_SEQ_SQL = f"""
WITH page AS (
{_PER_REPRE_SELECT}    WHERE r.seq IN (SELECT value FROM json_each(:seqs))
    GROUP BY r.seq
)
SELECT p.*, MIN(p.a_rank, p.b_rank) AS rank,
       (SELECT path FROM files WHERE repre_seq = p.seq ORDER BY position LIMIT 1) AS first_path,
       {_latest_error_sql("active")} AS a_error,
       {_latest_error_sql("remote")} AS b_error
FROM page AS p
"""


def _order_seqs_sql(sort_key: str, descending: bool) -> str:
    """The page's slice of the representations in :seqs, in the page's order."""
    direction = "DESC" if descending else "ASC"
    return f"""
SELECT r.seq FROM representations AS r WHERE r.seq IN (SELECT value FROM json_each(:seqs))
ORDER BY {_PLAIN_SORTS[sort_key]} {direction}, r.seq {direction} LIMIT :limit OFFSET :offset
"""


def _site_counts(conn: sqlite3.Connection, project: str, sites: Iterable[str]) -> dict[str, int]:
    """Representations with an entry on each site (index ranges of repre_sites)."""
    return {
        site: conn.execute("SELECT COUNT(*) FROM repre_sites WHERE project = ? AND site = ?",
                           (project, site)).fetchone()[0]
        for site in sites
    }


def _pair_counts(conn: sqlite3.Connection, params: dict[str, Any], unsettled: Collection[int]
                 ) -> tuple[int, int]:
    """(representations with an entry on either site, settled ones with every file on
    both), from repre_sites alone: the _TRACKED and _complete_sql counts without reading
    representations, or files beyond the smaller site's representations."""
    active, remote = params["active"], params["remote"]
    sites = _site_counts(conn, params["project"], (active, remote))
    small, large = sorted((active, remote), key=lambda site: sites[site])
    row = conn.execute(_PAIR_COUNTS_SQL, params | {
        "small": small, "large": large, "unsettled": json.dumps(sorted(unsettled))}).fetchone()
    return sites[active] + sites[remote] - row["both_sites"], row["complete"]


def _page_first_sql(text_filter: bool, sort_key: str, descending: bool) -> str:
    """A page without status counts or status filter, sorted by a representation column:
    pick the page's rows by walking that column's index (schema 4), then aggregate only
    them; membership in the pair is a repre_sites probe. At 1,000,000 representations this
    is 0.3 s where aggregating everything took 7 s: it is what the Sync Queue waits for
    before showing anything. The rows and ``total`` are exactly those of _summary_sql (a
    contract test compares them); without a text filter ``total`` is _pair_counts's, with one
    it is counted here (the filter has to read every representation anyway)."""
    direction = "DESC" if descending else "ASC"
    where = f"r.project = :project {_TEXT_FILTER if text_filter else ''} AND {_TRACKED}"
    order = f"{_SORT_COLUMNS[sort_key]} {direction}, seq {direction}"
    return f"""
WITH picked AS MATERIALIZED (
    SELECT r.seq FROM representations AS r WHERE {where}
    ORDER BY {_PLAIN_SORTS[sort_key]} {direction}, r.seq {direction}
    LIMIT :limit OFFSET :offset
),
page AS (
{_per_repre_select("picked JOIN representations AS r ON r.seq = picked.seq")}    GROUP BY r.seq
)
SELECT {f"(SELECT COUNT(*) FROM representations AS r WHERE {where})" if text_filter else "NULL"}
           AS total,
       p.*, MIN(p.a_rank, p.b_rank) AS rank,
       (SELECT path FROM files WHERE repre_seq = p.seq ORDER BY position LIMIT 1)
           AS first_path,
       {_latest_error_sql("active")} AS a_error,
       {_latest_error_sql("remote")} AS b_error
FROM (SELECT 1) LEFT JOIN page AS p ON 1
ORDER BY {order}
"""


# -- small conversions ------------------------------------------------------------------------

_JSON = JSONOptions(json_mode=JSONMode.RELAXED, tz_aware=True, tzinfo=UTC)
_DOC_COLUMNS = frozenset({"_id", "parent", "name", "context", "files", "sitesync_created_dt"})
_FILE_COLUMNS = frozenset({"_id", "path", "size", "hash", "sites"})
_ENTRY_COLUMNS = frozenset(
    {"name", "created_dt", "id", "tries", "error", "last_failed_dt", "progress", "paused",
     "priority", *SITESYNC_KEYS}
)


def _ts(value: datetime | None) -> float | None:
    """Epoch seconds; a naive datetime is taken as UTC (the codec's rule)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _dump_json(value: Mapping[str, Any] | None) -> str | None:
    """Extended JSON (MongoDB's own text form) so dates and ObjectIds come back typed;
    anything JSON cannot hold is kept as its text rather than refused."""
    if not value:
        return None
    return _bson_dumps(value, json_options=_JSON, default=str)


def _load_json(text: str | None) -> dict[str, Any]:
    return {} if not text else dict(_bson_loads(text, json_options=_JSON))


def _fold(value: str | None) -> str:
    """Unicode case folding for the text filter (SQLite's lower() is ASCII only)."""
    return "" if value is None else str(value).casefold()


def _created_from_id(repre: Representation) -> datetime | None:
    """Age of a representation: its own date, else its ObjectId's time (what pymongo gives
    the Mongo store for the same document), else unknown."""
    if repre.created_dt is not None:
        return repre.created_dt
    try:
        return ObjectId(repre.id).generation_time
    except (InvalidId, TypeError):
        return None


def _site_from_row(row: sqlite3.Row) -> SiteState:
    return SiteState(
        name=row["site"],
        created_dt=_dt(row["created_dt"]),
        id=row["provider_id"],
        tries=row["tries"],
        error=row["error"],
        last_failed_dt=_dt(row["last_failed_dt"]),
        progress=row["progress"],
        paused=bool(row["paused"]),
        priority=row["priority"],
        lease_owner=row["lease_owner"],
        lease_until=_dt(row["lease_until"]),
        checksum=row["checksum"],
        next_attempt_dt=_dt(row["next_attempt_dt"]),
        permanent=bool(row["permanent"]),
        atomic=bool(row["atomic"]),
        staged_dt=_dt(row["staged_dt"]),
    )


def _site_values(file_seq: int, state: SiteState, extra: Mapping[str, Any] | None) -> tuple:
    return (
        file_seq, state.name, _ts(state.created_dt), state.id, state.tries, state.error,
        _ts(state.last_failed_dt), state.progress, int(state.paused), state.priority,
        state.lease_owner, _ts(state.lease_until), state.checksum,
        _ts(state.next_attempt_dt), int(state.permanent), _dump_json(extra),
        int(state.atomic), _ts(state.staged_dt),
    )


# -- imported-document extras ------------------------------------------------------------------


@dataclass(frozen=True)
class _Extras:
    """Fields of an OpenPype document that have no column, by level."""

    doc: dict[str, Any] = field(default_factory=dict)
    files: tuple[dict[str, Any], ...] = ()
    sites: tuple[dict[str, dict[str, Any]], ...] = ()

    def file(self, position: int) -> dict[str, Any]:
        return self.files[position] if position < len(self.files) else {}

    def site(self, position: int, name: str) -> dict[str, Any]:
        by_name = self.sites[position] if position < len(self.sites) else {}
        return by_name.get(name, {})

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> _Extras:
        """Called only after parse_representation accepted ``doc``, so shapes are valid."""
        files = [f for f in doc.get("files") or [] if isinstance(f, Mapping)]
        return cls(
            doc={k: v for k, v in doc.items() if k not in _DOC_COLUMNS},
            files=tuple({k: v for k, v in f.items() if k not in _FILE_COLUMNS} for f in files),
            sites=tuple(_entry_extras(f.get("sites")) for f in files),
        )


def _entry_extras(raw: Any) -> dict[str, dict[str, Any]]:
    """Unknown keys of each site entry, by site name; the first entry of a name wins,
    as in docs.parse_sites."""
    if isinstance(raw, Mapping):
        pairs = [(str(name), entry or {}) for name, entry in raw.items()]
    elif isinstance(raw, list):
        pairs = [(e.get("name"), e) for e in raw if isinstance(e, Mapping)]
    else:
        return {}
    extras: dict[str, dict[str, Any]] = {}
    for name, entry in pairs:
        if isinstance(name, str) and name not in extras:
            extras[name] = {k: v for k, v in entry.items() if k not in _ENTRY_COLUMNS}
    return extras


@dataclass(frozen=True)
class _Loaded:
    repre: Representation
    extras: _Extras


# -- errors -------------------------------------------------------------------------------------

_ERROR_TEXTS: dict[int, tuple[str, str]] = {
    sqlite3.SQLITE_BUSY: (
        "the SiteSync database {path} stayed locked for more than {timeout:.0f} s",
        "another process holds a long write; SiteSync retries on its own. If this keeps "
        "happening, look for a hung process using the file",
    ),
    sqlite3.SQLITE_CANTOPEN: (
        "cannot open the SiteSync database {path}",
        "make sure its folder exists and this user may write there, or choose another "
        "database path in the settings",
    ),
    sqlite3.SQLITE_READONLY: (
        "the SiteSync database {path} is read-only",
        "give this user write access to the file and its folder (SQLite writes -wal and "
        "-shm files next to it)",
    ),
    sqlite3.SQLITE_IOERR: (
        "disk I/O error on the SiteSync database {path}",
        "check the disk holding it; the database must be on a local disk, not a network share",
    ),
    sqlite3.SQLITE_FULL: (
        "the disk holding the SiteSync database {path} is full",
        "free some space on that disk",
    ),
    sqlite3.SQLITE_NOTADB: (
        "{path} is not a SiteSync database (not SQLite, encrypted or damaged)",
        "point SiteSync at the right file, or move this one away to start a new database",
    ),
}
_ERROR_TEXTS[sqlite3.SQLITE_LOCKED] = _ERROR_TEXTS[sqlite3.SQLITE_BUSY]
_ERROR_TEXTS[sqlite3.SQLITE_PERM] = _ERROR_TEXTS[sqlite3.SQLITE_READONLY]
_ERROR_TEXTS[sqlite3.SQLITE_CORRUPT] = _ERROR_TEXTS[sqlite3.SQLITE_NOTADB]


def _unavailable(path: Path, exc: sqlite3.Error) -> StoreUnavailableError:
    """A driver error as the contract's error kind, naming the file and the fix."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    what, fix = _ERROR_TEXTS.get(code, ("SQLite error on the SiteSync database {path}", ""))
    message = what.format(path=path, timeout=BUSY_TIMEOUT_S) + f" ({exc})"
    return StoreUnavailableError(f"{message}. Fix: {fix}" if fix else message)


def _guarded(
    method: Callable[Concatenate[SqliteStore, _P], _R],
) -> Callable[Concatenate[SqliteStore, _P], _R]:
    """Let no sqlite3 exception out of a public method (the store contract)."""

    @functools.wraps(method)
    def wrapper(self: SqliteStore, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _unavailable(self.path, exc) from exc

    return wrapper


# -- change notification -------------------------------------------------------------------------


class _Notifier:
    """Per-file, in-process wake-up: bumped after every local commit that changed rows.

    ``PRAGMA data_version`` covers other processes but is only polled; this lets a
    waiter in the same process wake at once.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.counter = 0
        #: Writers of this process take turns here before ``BEGIN IMMEDIATE``. Left to
        #: SQLite, a writer that finds the file locked sleeps in its busy handler (1, 2,
        #: 5, 10 ms...), and eight transfer workers recording results at once spent more
        #: time asleep than writing. Other processes still meet SQLite's own lock.
        self.write_lock = threading.Lock()

    def bump(self) -> None:
        with self._cond:
            self.counter += 1
            self._cond.notify_all()

    def wait_past(self, seen: int, timeout_s: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.counter != seen, timeout_s)


_NOTIFIERS: weakref.WeakValueDictionary[str, _Notifier] = weakref.WeakValueDictionary()
_NOTIFIERS_LOCK = threading.Lock()


def _notifier_for(path: Path) -> _Notifier:
    key = os.path.realpath(path)
    with _NOTIFIERS_LOCK:
        notifier = _NOTIFIERS.get(key)
        if notifier is None:
            notifier = _NOTIFIERS[key] = _Notifier()
        return notifier


@dataclass(frozen=True)
class _Marker:
    data_version: int
    local: int


def _create_private(path: Path) -> None:
    """Create a new database file owner-only (0o600) before SQLite opens it: SQLite gives
    its -wal and -shm files the database file's permissions, and the default umask would
    make all three readable by every user (they hold every project's paths and errors),
    whichever folder ``SITESYNC_DATA_DIR`` points at. An existing file keeps its mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # sqlite3.connect reports the real problem with its own message
    os.close(fd)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


# -- the store ------------------------------------------------------------------------------------


class SqliteStore(Store):
    """The store on one SQLite file; safe for many threads and several processes.

    ``synchronous=NORMAL``: with WAL a commit is atomic and survives a process crash; only
    a power cut can lose the last commits, and losing a `record_success` just means the
    file is copied again. FULL would fsync on every progress update for no real gain.
    """

    kind = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        text = os.fspath(path)
        if text == ":memory:" or text.startswith("file:"):
            raise ValueError("SqliteStore needs a file path; every thread opens the file itself")
        self.path = Path(text)
        self._local = threading.local()
        self._closed = False
        self._notifier = _notifier_for(self.path)
        self._watch: sqlite3.Connection | None = None
        self._watch_lock = threading.Lock()
        try:
            _create_private(self.path)
            self._open_database()
        except sqlite3.Error as exc:
            self.close()
            raise _unavailable(self.path, exc) from exc
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    @property
    def scope(self) -> str:
        return os.path.realpath(self.path)

    # -- connections and transactions ------------------------------------------------------------

    def _open_database(self) -> None:
        conn = self._conn()
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreUnavailableError(
                f"the SiteSync database {self.path} cannot use WAL mode (got {mode!r}). "
                "Fix: keep the database on a local disk"
            )
        self._migrate(conn)
        self._watch = self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.create_function("sitesync_status", 9, _status_code_udf, deterministic=True)
            conn.create_function("sitesync_fold", 1, _fold, deterministic=True)
        except BaseException:
            conn.close()
            raise
        return conn

    def _drop_own_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        if self._closed:
            self._drop_own_connection()
            raise StoreUnavailableError(f"the SiteSync store on {self.path} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # Per thread: sqlite3 connections must not run statements from two threads
            # at once. A finished thread's connection is closed when it is collected.
            conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, write lock taken up front; wakes local waiters if it
        changed anything."""
        conn = self._conn()
        before = conn.total_changes
        with self._notifier.write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        if conn.total_changes != before:
            self._notifier.bump()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so several SELECTs see one snapshot."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            _rollback(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with self._write() as wconn:  # another process may be migrating: re-read under lock
            version = wconn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreUnavailableError(
                    f"the SiteSync database {self.path} has schema version {version}, newer "
                    f"than this SiteSync understands ({SCHEMA_VERSION}). Fix: upgrade "
                    "SiteSync, or use another database file"
                )
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    wconn.execute(statement)
            wconn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close this thread's connection; later calls from any thread raise
        StoreUnavailableError and close that thread's connection.

        Another thread's connection is never closed from here: it may be in the middle
        of a query (the tray's background reader, an engine worker), and closing a
        connection under a running statement crashes the sqlite3 module. A connection
        whose thread never calls again is closed with the thread."""
        self._closed = True
        self._drop_own_connection()
        with self._watch_lock:
            if self._watch is not None:
                self._watch.close()
                self._watch = None

    @_guarded
    def ping(self) -> None:
        self._conn().execute("SELECT COUNT(*) FROM projects").fetchone()

    # -- projects ----------------------------------------------------------------------------------

    @_guarded
    def ensure_project(self, name: str, code: str = "") -> None:
        with self._write() as conn:
            self._ensure_project(conn, name, code)

    @staticmethod
    def _ensure_project(conn: sqlite3.Connection, name: str, code: str) -> None:
        conn.execute(
            """
            INSERT INTO projects (name, code, created_at) VALUES (?, ?, ?)
            ON CONFLICT (name) DO UPDATE SET code = excluded.code
            WHERE projects.code = '' AND excluded.code != ''
            """,
            (name, code or "", time.time()),
        )

    @_guarded
    def list_projects(self) -> list[ProjectInfo]:
        rows = self._conn().execute(
            """
            SELECT p.name, p.code, p.paused,
                   (SELECT COUNT(*) FROM representations WHERE project = p.name) AS n
            FROM projects AS p ORDER BY p.name
            """
        )
        return [
            ProjectInfo(name=r["name"], code=r["code"], paused=bool(r["paused"]),
                        representations=r["n"])
            for r in rows
        ]

    @_guarded
    def set_project_paused(self, project: str, paused: bool) -> None:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE projects SET paused = ? WHERE name = ?", (int(paused), project)
            )
            if cursor.rowcount == 0:
                raise KeyError(f"unknown project {project!r}")

    @staticmethod
    def _require_project(conn: sqlite3.Connection, project: str) -> None:
        if conn.execute("SELECT 1 FROM projects WHERE name = ?", (project,)).fetchone() is None:
            raise KeyError(f"unknown project {project!r}")

    # -- representations ---------------------------------------------------------------------------

    @_guarded
    def insert_representation(self, repre: Representation) -> str:
        if not repre.id:
            repre = replace(repre, id=str(ObjectId()))
        with self._write() as conn:
            self._ensure_project(conn, repre.project, "")
            self._insert(conn, repre, _Extras())
        return repre.id

    #: Representations written per transaction by insert_representations.
    insert_batch: int = 1000

    @_guarded
    def insert_representations(self, repres: Iterable[Representation]) -> int:
        """A transaction per ``insert_batch`` representations (about 20 times faster than
        one each), a savepoint per representation so a refused one undoes only itself:
        those before it are committed, it and the rest are not written."""
        count = 0
        source = iter(repres)
        while chunk := list(itertools.islice(source, self.insert_batch)):
            failure: BaseException | None = None
            with self._write() as conn:
                for repre in chunk:
                    if not repre.id:
                        repre = replace(repre, id=str(ObjectId()))
                    conn.execute("SAVEPOINT one_representation")
                    try:
                        self._ensure_project(conn, repre.project, "")
                        self._insert(conn, repre, _Extras())
                    except BaseException as exc:
                        conn.execute("ROLLBACK TO one_representation")
                        conn.execute("RELEASE one_representation")
                        failure = exc
                        break
                    conn.execute("RELEASE one_representation")
                    count += 1
            if failure is not None:
                raise failure
        return count

    @_guarded
    def insert_document(self, project: str, doc: dict) -> str:
        """Import an OpenPype document; a document without `_id` gets one, as in MongoDB."""
        if doc.get("_id") is None:
            doc = {**doc, "_id": ObjectId()}
        repre = parse_representation(doc, project)  # DocumentError: nothing written
        extras = _Extras.of(doc)
        with self._write() as conn:
            self._ensure_project(conn, project, "")
            self._insert(conn, repre, extras)
        return repre.id

    def _insert(self, conn: sqlite3.Connection, repre: Representation, extras: _Extras) -> None:
        self._check_insertable(conn, repre)
        repre_seq = conn.execute(
            """
            INSERT INTO representations (id, project, parent, name, asset, subset, version,
                                         representation, context_json, extra_json, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            (repre.id, repre.project, repre.parent, repre.name, repre.asset, repre.subset,
             repre.version, repre.representation, _dump_json(repre.context) or "{}",
             _dump_json(extras.doc), _ts(_created_from_id(repre))),
        ).lastrowid
        for position, record in enumerate(repre.files):
            self._insert_file(conn, repre_seq, position, record, extras)

    @staticmethod
    def _check_insertable(conn: sqlite3.Connection, repre: Representation) -> None:
        """Refuse what the unique constraints would, with a message an admin can act on."""
        exists = conn.execute(
            "SELECT 1 FROM representations WHERE project = ? AND id = ?",
            (repre.project, repre.id),
        ).fetchone()
        if exists:
            raise DocumentError(
                f"representation {repre.id} already exists in project {repre.project!r}; "
                "SiteSync keeps the stored one. Use the site actions to change it"
            )
        ids = [f.id for f in repre.files]
        if len(set(ids)) != len(ids):
            raise DocumentError(
                f"representation {repre.id} in project {repre.project!r} lists a file _id "
                "twice, so its files cannot be told apart. Fix the document or republish it"
            )

    @staticmethod
    def _insert_file(
        conn: sqlite3.Connection, repre_seq: int, position: int, record: FileRecord,
        extras: _Extras,
    ) -> None:
        file_seq = conn.execute(
            """
            INSERT INTO files (repre_seq, position, id, path, size, hash, extra_json)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """,
            (repre_seq, position, record.id, record.path, record.size, record.hash,
             _dump_json(extras.file(position))),
        ).lastrowid
        conn.executemany(
            f"INSERT INTO file_sites (file_seq, {', '.join(_SITE_COLUMNS)}) "
            f"VALUES ({', '.join('?' * (len(_SITE_COLUMNS) + 1))})",
            [_site_values(file_seq, s, extras.site(position, s.name)) for s in record.sites],
        )

    @_guarded
    def get_representation(self, project: str, repre_id: str) -> Representation:
        with self._read() as conn:
            return self._load(conn, project, repre_id).repre

    @_guarded
    def get_document(self, project: str, repre_id: str) -> dict[str, Any]:
        """The representation as an OpenPype document (list-form `sites`), with every field
        an imported document had that SiteSync has no column for. SQLite store only: this is
        what an export to MongoDB writes."""
        with self._read() as conn:
            loaded = self._load(conn, project, repre_id)
        doc = representation_to_doc(loaded.repre)
        doc.update(loaded.extras.doc)
        for position, file_doc in enumerate(doc["files"]):
            file_doc.update(loaded.extras.file(position))
            for entry in file_doc["sites"]:
                entry.update(loaded.extras.site(position, entry["name"]))
        return doc

    def _repre_row(self, conn: sqlite3.Connection, project: str, repre_id: str) -> sqlite3.Row:
        """The representation's row, or KeyError naming what is missing (project or id)."""
        row = conn.execute(
            "SELECT * FROM representations WHERE project = ? AND id = ?", (project, repre_id)
        ).fetchone()
        if row is None:
            self._require_project(conn, project)
            raise KeyError(f"no representation {repre_id} in project {project!r}")
        return row

    def _load(self, conn: sqlite3.Connection, project: str, repre_id: str) -> _Loaded:
        row = self._repre_row(conn, project, repre_id)
        files = conn.execute(
            "SELECT * FROM files WHERE repre_seq = ? ORDER BY position", (row["seq"],)
        ).fetchall()
        entries: dict[int, list[sqlite3.Row]] = {}
        for entry in conn.execute(
            """
            SELECT fs.* FROM file_sites AS fs JOIN files AS f ON f.seq = fs.file_seq
            WHERE f.repre_seq = ? ORDER BY fs.file_seq, fs.rowid
            """,
            (row["seq"],),
        ):
            entries.setdefault(entry["file_seq"], []).append(entry)
        return _assemble(project, row, files, entries)

    @_guarded
    def count_representations(self, project: str) -> int:
        conn = self._conn()
        self._require_project(conn, project)
        return conn.execute(
            "SELECT COUNT(*) FROM representations WHERE project = ?", (project,)
        ).fetchone()[0]

    def _repre_seq(self, conn: sqlite3.Connection, project: str, repre_id: str) -> int:
        return int(self._repre_row(conn, project, repre_id)["seq"])

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
        """See Store.find_work. ``exclude`` is applied by fetching that many extra rows,
        which keeps the statement (and its plan) fixed whatever the caller holds."""
        conn = self._conn()
        self._require_project(conn, project)
        if active_site == remote_site or limit <= 0:
            return []
        sql, params = _find_work_query(
            project, active_site, remote_site, retry_cnt, now, limit + len(exclude), direction
        )
        items = []
        for row in conn.execute(sql, params):
            if (row["repre_id"], row["file_id"]) in exclude:
                continue
            items.append(_work_item(project, remote_site, row))
            if len(items) == limit:
                break
        return items

    @_guarded
    def claim(
        self, item: WorkItem, owner: str, lease_until: datetime, now: datetime
    ) -> Claim | None:
        """Take the lease if the target is still exactly as ``item`` saw it: queued, not
        paused, not backing off, same `tries` (so a stale item cannot spend a try another
        engine already counted), source still available, project not paused, no live lease."""
        lease_until = _aware(lease_until)
        with self._write() as conn:
            won = conn.execute(_CLAIM_SQL, _claim_params(item, owner, lease_until, now)).rowcount == 1
        return Claim(item=item, owner=owner, lease_until=lease_until) if won else None

    @_guarded
    def claim_many(
        self, items: list[WorkItem], owner: str, lease_until: datetime, now: datetime
    ) -> list[Claim]:
        """Every claim in one write transaction: one lock and one commit for a batch."""
        lease_until = _aware(lease_until)
        won = []
        with self._write() as conn:
            for item in items:
                params = _claim_params(item, owner, lease_until, now)
                if conn.execute(_CLAIM_SQL, params).rowcount == 1:
                    won.append(Claim(item=item, owner=owner, lease_until=lease_until))
        return won

    @_guarded
    def extend_lease(self, claim: Claim, lease_until: datetime) -> Claim | None:
        lease_until = _aware(lease_until)
        updated = self._update_held(
            claim, "lease_until = :lease_until", {"lease_until": _ts(lease_until)}
        )
        return claim.renewed(lease_until) if updated else None

    @_guarded
    def release(self, claim: Claim) -> None:
        """Drop the lease and its progress (progress without a lease reads as OpenPype's
        own transfer, i.e. In progress)."""
        self._update_held(claim, "lease_owner = NULL, lease_until = NULL, progress = NULL", {})

    @_guarded
    def record_progress(self, claim: Claim, progress: float) -> None:
        self._update_held(claim, "progress = :progress", {"progress": float(progress)})

    @_guarded
    def record_success(
        self, claim: Claim, provider_id: str, checksum: str | None, now: datetime
    ) -> bool:
        """Also appends file_synced, and representation_ready when this was the last file
        missing on the target site, in the same transaction (writers are serialised, so
        exactly one of two engines finishing the last two files sees the representation
        complete)."""
        with self._write() as conn:
            return self._record_success_in(conn, claim, provider_id, checksum, now)

    @_guarded
    def record_successes(
        self, successes: Sequence[tuple[Claim, str, str | None]], now: datetime
    ) -> list[bool | None]:
        """All in one transaction: what :meth:`record_success` does per file, with one
        BEGIN/COMMIT, one write lock and one wake-up for the whole batch. The file_synced
        events are appended in batch order, then representation_ready once for each
        representation the batch completed (after its files, as the single calls would)."""
        answers: list[bool | None] = []
        rows: list[tuple[Any, ...]] = []
        touched: dict[tuple[str, str, str], None] = {}
        with self._write() as conn:
            for claim, provider_id, checksum in successes:
                held = self._mark_synced(conn, claim, provider_id, checksum, now)
                answers.append(held)
                if held:
                    item = claim.item
                    rows.append(_event_row(EventType.FILE_SYNCED, item.project, now,
                                           item.target_site, item.repre_id, item.file_id,
                                           _synced_data(item, provider_id, checksum)))
                    touched[(item.project, item.repre_id, item.target_site)] = None
            conn.executemany(_INSERT_EVENT_SQL, rows)
            for project, repre_id, site in touched:
                _append_if_ready(conn, project, repre_id, site, now)
        return answers

    def _record_success_in(
        self, conn: sqlite3.Connection, claim: Claim, provider_id: str, checksum: str | None,
        now: datetime,
    ) -> bool:
        held = self._mark_synced(conn, claim, provider_id, checksum, now)
        if held:
            item = claim.item
            _append_event(conn, EventType.FILE_SYNCED, item.project, now, item.target_site,
                          item.repre_id, item.file_id, _synced_data(item, provider_id, checksum))
            _append_if_ready(conn, item.project, item.repre_id, item.target_site, now)
        return held

    def _mark_synced(
        self, conn: sqlite3.Connection, claim: Claim, provider_id: str, checksum: str | None,
        now: datetime,
    ) -> bool:
        return self._update_held_in(
            conn, claim,
            """
            created_dt = :now, provider_id = :provider_id, checksum = :checksum, tries = 0,
            error = NULL, last_failed_dt = NULL, progress = NULL, next_attempt_dt = NULL,
            permanent = 0, lease_owner = NULL, lease_until = NULL, staged_dt = NULL
            """,
            {"now": _ts(now), "provider_id": provider_id, "checksum": checksum},
        )

    @_guarded
    def record_failure(
        self,
        claim: Claim,
        error: str,
        now: datetime,
        next_attempt_dt: datetime | None,
        permanent: bool = False,
    ) -> bool:
        """OpenPype writes `progress: ""` on failure; the column holds NULL, which the
        codec writes as no key and reads back the same way. Appends file_failed."""
        item = claim.item

        def log(conn: sqlite3.Connection) -> None:
            data = {"path": item.path, "error": error, "tries": item.tries + 1,
                    "permanent": bool(permanent), "source_site": item.source_site,
                    "direction": item.direction.value,
                    "next_attempt_dt": next_attempt_dt.isoformat() if next_attempt_dt else None}
            _append_event(conn, EventType.FILE_FAILED, item.project, now, item.target_site,
                          item.repre_id, item.file_id, data)

        return self._update_held(
            claim,
            """
            tries = tries + 1, error = :error, last_failed_dt = :now, progress = NULL,
            next_attempt_dt = :next_attempt, permanent = :permanent,
            lease_owner = NULL, lease_until = NULL
            """,
            {"error": error, "now": _ts(now), "next_attempt": _ts(next_attempt_dt),
             "permanent": int(permanent)},
            log,
        )

    @_guarded
    def record_staged(self, claim: Claim, checksum: str, now: datetime) -> bool:
        """The file is verified under its staged name: done moving, not yet available.
        `progress` 1.0 without a lease reads as In progress at 100 % (app.status), which
        is what it is: moved, waiting for the representation's other files."""
        return self._update_held(
            claim,
            """
            staged_dt = :now, checksum = :checksum, progress = 1.0, tries = 0, error = NULL,
            last_failed_dt = NULL, next_attempt_dt = NULL, permanent = 0,
            lease_owner = NULL, lease_until = NULL
            """,
            {"now": _ts(now), "checksum": checksum},
        )

    @_guarded
    def has_unstaged(self, project: str, repre_id: str, site: str) -> bool:
        with self._read() as conn:
            repre_seq = self._repre_seq(conn, project, repre_id)
            return self._has_unstaged(conn, repre_seq, site)

    @staticmethod
    def _has_unstaged(conn: sqlite3.Connection, repre_seq: int, site: str) -> bool:
        """An entry of ``site`` neither available nor staged. A representation's files are
        inserted in one transaction, in file order, so their row numbers are one range:
        the queued index is searched over that range only, whatever the file count
        (asked after every staged file, it must not cost a pass over 100,000 rows)."""
        bounds = conn.execute(
            """
            SELECT (SELECT seq FROM files WHERE repre_seq = :r ORDER BY position LIMIT 1),
                   (SELECT seq FROM files WHERE repre_seq = :r ORDER BY position DESC LIMIT 1)
            """,
            {"r": repre_seq},
        ).fetchone()
        if bounds[0] is None:
            return False
        return conn.execute(
            f"""
            SELECT 1 FROM file_sites INDEXED BY file_sites_queued
            WHERE site = :site AND created_dt IS NULL AND staged_dt IS NULL
              AND file_seq BETWEEN :lo AND :hi AND file_seq IN ({_REPRE_FILES}) LIMIT 1
            """,
            {"site": site, "repre_seq": repre_seq, "lo": min(bounds), "hi": max(bounds)},
        ).fetchone() is not None

    @_guarded
    def staged_representations(self, project: str, site: str) -> list[str]:
        conn = self._conn()
        self._require_project(conn, project)
        rows = conn.execute(
            """
            SELECT DISTINCT r.id FROM file_sites AS fs INDEXED BY file_sites_staged
            JOIN files AS f ON f.seq = fs.file_seq
            JOIN representations AS r ON r.seq = f.repre_seq
            WHERE fs.site = ? AND fs.staged_dt IS NOT NULL AND fs.created_dt IS NULL
              AND r.project = ?
            """,
            (site, project),
        )
        return [row[0] for row in rows]

    @_guarded
    def complete_staged(self, project: str, repre_id: str, site: str, now: datetime) -> int:
        """Also appends, in the same transaction, file_synced for every file completed and
        representation_ready."""
        staged_files = f"""
            FROM file_sites AS fs JOIN files AS f ON f.seq = fs.file_seq
            WHERE fs.site = :site AND fs.staged_dt IS NOT NULL AND fs.created_dt IS NULL
              AND fs.file_seq IN ({_REPRE_FILES})
        """
        with self._write() as conn:
            repre_seq = self._repre_seq(conn, project, repre_id)
            if self._has_unstaged(conn, repre_seq, site):
                return 0
            params = {"now": _ts(now), "site": site, "repre_seq": repre_seq}
            files = conn.execute(
                f"SELECT f.id, f.path, f.size, fs.checksum, fs.provider_id {staged_files} "
                "ORDER BY f.position", params).fetchall()
            completed = conn.execute(
                f"""
                UPDATE file_sites SET created_dt = :now, staged_dt = NULL, progress = NULL
                WHERE site = :site AND staged_dt IS NOT NULL AND created_dt IS NULL
                  AND file_seq IN ({_REPRE_FILES})
                """,
                params,
            ).rowcount
            if completed:
                for row in files:
                    _append_event(conn, EventType.FILE_SYNCED, project, now, site, repre_id,
                                  row["id"], {"path": row["path"], "size": row["size"],
                                              "checksum": row["checksum"],
                                              "provider_id": row["provider_id"], "staged": True})
                _append_if_ready(conn, project, repre_id, site, now)
            return completed

    def _update_held(
        self, claim: Claim, assignments: str, params: dict[str, Any],
        then: Callable[[sqlite3.Connection], None] | None = None,
    ) -> bool:
        """Apply ``assignments`` to the claim's target only while the claim still holds;
        ``then`` runs in the same transaction when it did (the event log)."""
        with self._write() as conn:
            held = self._update_held_in(conn, claim, assignments, params)
            if held and then is not None:
                then(conn)
            return held

    @staticmethod
    def _update_held_in(
        conn: sqlite3.Connection, claim: Claim, assignments: str, params: dict[str, Any]
    ) -> bool:
        params = params | _item_params(claim.item) | {
            "owner": claim.owner,
            "held_until": _ts(claim.lease_until),
        }
        cursor = conn.execute(f"UPDATE file_sites SET {assignments} WHERE {_HELD}", params)
        return cursor.rowcount == 1

    # -- user actions ----------------------------------------------------------------------------

    @_guarded
    def set_paused(self, project: str, repre_id: str, site: str, paused: bool) -> None:
        kind = EventType.SITE_PAUSED if paused else EventType.SITE_RESUMED
        self._update_site(project, repre_id, site, "paused = :paused", {"paused": int(paused)},
                          event=(kind, ""))

    @_guarded
    def reset_site(
        self, project: str, repre_id: str, site: str, file_id: str | None = None
    ) -> int:
        only_file = "" if file_id is None else " AND id = :file_id"
        return self._update_site(
            project, repre_id, site, _RESET_ENTRY, {"file_id": file_id}, only_file,
            event=(EventType.RETRY_REQUESTED, file_id or ""),
        )

    @_guarded
    def set_priority(self, project: str, repre_id: str, site: str, priority: int) -> None:
        self._update_site(project, repre_id, site, "priority = :priority",
                          {"priority": int(priority)})

    def _update_site(
        self, project: str, repre_id: str, site: str, assignments: str,
        params: dict[str, Any], file_filter: str = "",
        event: tuple[EventType, str] | None = None,
    ) -> int:
        """One UPDATE of the ``site`` entries of a representation's files; ``event``
        (type, file id) is appended in the same transaction when entries changed."""
        with self._write() as conn:
            repre_seq = self._repre_seq(conn, project, repre_id)
            cursor = conn.execute(
                f"UPDATE file_sites SET {assignments} WHERE site = :site "
                f"AND file_seq IN ({_REPRE_FILES}{file_filter})",
                params | {"site": site, "repre_seq": repre_seq},
            )
            if event is not None and cursor.rowcount:
                kind, file_id = event
                _append_event(conn, kind, project, _wall_now(), site, repre_id, file_id,
                              {"entries": cursor.rowcount})
            return cursor.rowcount

    @_guarded
    def reset_failed(self, project: str, site: str | None = None) -> int:
        """Failed = not available, not paused, with a counted try or a permanent error,
        as the contract defines it (retry_cnt is not known here)."""
        only_site = "" if site is None else " AND fs.site = :site"
        failed = f"""
            fs.created_dt IS NULL AND fs.paused = 0
            AND (fs.tries > 0 OR fs.permanent = 1){only_site}
        """
        params = {"project": project, "site": site}
        with self._write() as conn:
            self._require_project(conn, project)
            groups = conn.execute(
                f"""
                SELECT r.id AS repre_id, fs.site AS site, COUNT(*) AS n
                FROM file_sites AS fs JOIN files AS f ON f.seq = fs.file_seq
                JOIN representations AS r ON r.seq = f.repre_seq
                WHERE r.project = :project AND {failed}
                GROUP BY r.seq, fs.site ORDER BY r.seq, fs.site
                """,
                params,
            ).fetchall()
            cursor = conn.execute(
                f"""
                UPDATE file_sites AS fs SET {_RESET_ENTRY}
                WHERE {failed}
                  AND file_seq IN (
                      SELECT f.seq FROM files AS f
                      JOIN representations AS r ON r.seq = f.repre_seq
                      WHERE r.project = :project)
                """,
                params,
            )
            now = _wall_now()
            for group in groups:
                _append_event(conn, EventType.RETRY_REQUESTED, project, now, group["site"],
                              group["repre_id"], "", {"entries": group["n"]})
            return cursor.rowcount

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
        """Entries are appended in file order; ``force`` resets existing ones, keeping
        their priority unless a new one is given."""
        with self._write() as conn:
            repre_seq = self._repre_seq(conn, project, repre_id)
            params = {"site": site, "repre_seq": repre_seq, "priority": priority,
                      "atomic": int(atomic)}
            reset = 0
            if force:
                reset = conn.execute(
                    f"""
                    UPDATE file_sites SET {_RESET_ENTRY}, priority = COALESCE(:priority, priority)
                    WHERE site = :site AND file_seq IN ({_REPRE_FILES})
                    """,
                    params,
                ).rowcount
            added = conn.execute(
                """
                INSERT INTO file_sites (file_seq, site, priority, atomic)
                SELECT f.seq, :site, :priority, :atomic FROM files AS f
                WHERE f.repre_seq = :repre_seq AND NOT EXISTS (
                    SELECT 1 FROM file_sites WHERE file_seq = f.seq AND site = :site)
                ORDER BY f.position
                """,
                params,
            ).rowcount
            return reset + added

    @_guarded
    def remove_site(self, project: str, repre_id: str, site: str) -> int:
        with self._write() as conn:
            repre_seq = self._repre_seq(conn, project, repre_id)
            return conn.execute(
                f"DELETE FROM file_sites WHERE site = :site AND file_seq IN ({_REPRE_FILES})",
                {"site": site, "repre_seq": repre_seq},
            ).rowcount

    # -- event log -------------------------------------------------------------------------------

    @_guarded
    def append_event(
        self, event_type: str, project: str, now: datetime, *, site: str = "",
        repre_id: str = "", file_id: str = "", data: Mapping[str, Any] | None = None,
    ) -> int:
        with self._write() as conn:
            return _append_event(conn, EventType(event_type), project, now, site, repre_id,
                                 file_id, dict(data or {}))

    @_guarded
    def read_events(self, after_id: int, limit: int = 500) -> list[EventRecord]:
        rows = self._conn().execute(
            "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (int(after_id), max(0, int(limit))),
        )
        return [_event_from_row(row) for row in rows]

    @_guarded
    def get_events(self, ids: Iterable[int]) -> list[EventRecord]:
        wanted = sorted({int(i) for i in ids})
        found: list[EventRecord] = []
        conn = self._conn()
        for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            chunk = wanted[start:start + 500]
            rows = conn.execute(
                f"SELECT * FROM events WHERE id IN ({', '.join('?' * len(chunk))}) ORDER BY id",
                chunk,
            )
            found.extend(_event_from_row(row) for row in rows)
        return found

    @_guarded
    def seal_event_id(self, event_id: int, now: datetime) -> EventRecord | None:
        """Ids here commit in order, so a missing id below the newest is one that was
        pruned or never existed; sealing records that, harmlessly."""
        with self._write() as conn:
            row = conn.execute("SELECT * FROM events WHERE id = ?", (int(event_id),)).fetchone()
            if row is None:
                conn.execute("INSERT INTO events (id, type, at) VALUES (?, ?, ?)",
                             (int(event_id), EventType.GAP.value, _ts(now)))
                return None
        event = _event_from_row(row)
        return None if event.is_gap else event

    @_guarded
    def event_log_info(self) -> EventLogInfo:
        with self._read() as conn:
            log_id, pruned = conn.execute("SELECT log_id, pruned_through FROM event_log").fetchone()
            last = conn.execute("SELECT MAX(id) FROM events").fetchone()[0]
        return EventLogInfo(log_id=log_id, pruned_through=pruned, last_id=last or 0)

    @_guarded
    def prune_events(self, before: datetime) -> int:
        """Never the newest event: its id is what the next one counts on from."""
        condition = "at < :before AND id < (SELECT MAX(id) FROM events)"
        with self._write() as conn:
            params = {"before": _ts(before)}
            highest = conn.execute(f"SELECT MAX(id) FROM events WHERE {condition}",
                                   params).fetchone()[0]
            if highest is None:
                return 0
            conn.execute("UPDATE event_log SET pruned_through = MAX(pruned_through, ?)",
                         (highest,))
            return conn.execute(f"DELETE FROM events WHERE {condition}", params).rowcount

    # -- reading for the UI and CLI --------------------------------------------------------------

    @_guarded
    def summary_page(
        self, project: str, query: SummaryQuery, retry_cnt: int, now: datetime
    ) -> SummaryPage:
        """The page and its counts come from one snapshot (one statement or one read
        transaction). Without a text filter, sorted by a representation column or by
        status, nothing is aggregated beyond the page and the unsettled representations:
        the page is cut through an index (_page_first_sql, _settled_page) and the counts
        come from repre_sites (_pair_counts). A text filter or a sort by an aggregate
        (size, priority, dates) aggregates every representation once (_summary_sql)."""
        ranks = sorted(status.rank for status in query.statuses)
        conn = self._conn()
        self._require_project(conn, project)
        params = _summary_params(project, query, retry_cnt, now)
        if not query.text.strip() and (query.sort_key in _PLAIN_SORTS or query.sort_key == "status"):
            with self._read() as conn:
                if ranks or query.sort_key == "status":
                    return self._settled_page(conn, query, params, ranks, retry_cnt, now)
                if query.with_counts:
                    page = self._settled_page(conn, query, params, ranks, retry_cnt, now,
                                              rows_wanted=False)
                    counts, total = page.status_counts, page.total
                else:
                    counts, total = {}, _pair_counts(conn, params, ())[0]
                rows = conn.execute(_page_first_sql(False, query.sort_key, query.descending),
                                    params).fetchall()
                return SummaryPage(
                    rows=tuple(_summary_row(r) for r in rows if r["seq"] is not None),
                    total=total,
                    status_counts=counts,
                )
        if not query.with_counts and not ranks and query.sort_key in _PLAIN_SORTS:
            text = bool(query.text.strip())
            sql = _page_first_sql(text, query.sort_key, query.descending)
            with self._read() as conn:  # the page and its total from one snapshot
                rows = conn.execute(sql, params).fetchall()
                total = rows[0]["total"] if text else _pair_counts(conn, params, ())[0]
            return SummaryPage(
                rows=tuple(_summary_row(r) for r in rows if r["seq"] is not None),
                total=total,
                status_counts={},
            )
        sql = _summary_sql(bool(query.text.strip()), len(ranks), query.sort_key, query.descending)
        rows = conn.execute(sql, params).fetchall()
        counts = {rank: rows[0][f"n{rank}"] for rank in _BY_RANK} if rows else {}
        total = sum(n for rank, n in counts.items() if not ranks or rank in ranks)
        return SummaryPage(
            rows=tuple(_summary_row(r) for r in rows if r["seq"] is not None),
            total=total,
            status_counts={_BY_RANK[rank]: n for rank, n in sorted(counts.items()) if n},
        )

    def _settled_page(
        self, conn: sqlite3.Connection, query: SummaryQuery, params: dict[str, Any],
        ranks: Sequence[int], retry_cnt: int, now: datetime, rows_wanted: bool = True,
    ) -> SummaryPage:
        """Counts, and a page sorted by status or filtered by status (no text filter),
        without aggregating the settled representations (see _UNSETTLED_CTE).

        Counts: the unsettled representations' ranks from app.status, plus the settled
        ones split into complete and incomplete. Page: each settled class can only give
        its first ``offset + limit`` rows in the page's order (an index walk), so those and
        the wanted unsettled rows hold the page; it is cut from them in the page's order,
        and only its rows are aggregated."""
        unsettled = {row["seq"]: row["rank"] for row in conn.execute(_UNSETTLED_RANKS_SQL, params)}
        pair_total, complete = _pair_counts(conn, params, unsettled)
        complete_rank, incomplete_rank = _settled_ranks(retry_cnt, now)
        counts: dict[int, int] = {}
        for rank, n in itertools.chain(
            ((rank, 1) for rank in unsettled.values()),
            ((complete_rank, complete), (incomplete_rank, pair_total - len(unsettled) - complete)),
        ):
            counts[rank] = counts.get(rank, 0) + n
        wanted = set(ranks) if ranks else set(_BY_RANK)
        total = sum(n for rank, n in counts.items() if rank in wanted)
        status_counts = ({_BY_RANK[rank]: n for rank, n in sorted(counts.items()) if n}
                         if query.with_counts else {})
        if not rows_wanted:
            return SummaryPage(rows=(), total=total, status_counts=status_counts)
        offset, limit = params["offset"], params["limit"]
        reach = min(offset + limit, _INT64_MAX)
        candidates = [(rank, seq) for seq, rank in unsettled.items() if rank in wanted]
        for is_complete, rank in ((True, complete_rank), (False, incomplete_rank)):
            if rank in wanted and reach:
                sql = _settled_walk_sql(is_complete, query.sort_key, query.descending)
                walk = params | {"limit": reach, "unsettled": json.dumps(sorted(unsettled))}
                candidates += [(rank, row["seq"]) for row in conn.execute(sql, walk)]
        if query.sort_key == "status":
            ordered = sorted(candidates, reverse=query.descending)[offset:offset + limit]
            seqs = [seq for _, seq in ordered]
        else:
            sql = _order_seqs_sql(query.sort_key, query.descending)
            seqs = [row[0] for row in conn.execute(
                sql, params | {"seqs": json.dumps([seq for _, seq in candidates])})]
        found = {row["seq"]: row for row in conn.execute(
            _ROWS_BY_SEQ_SQL, params | {"seqs": json.dumps(seqs)})}
        return SummaryPage(
            rows=tuple(_summary_row(found[seq]) for seq in seqs),
            total=total,
            status_counts=status_counts,
        )

    @_guarded
    def summary_rows(
        self, project: str, query: SummaryQuery, repre_ids: Collection[str], retry_cnt: int,
        now: datetime,
    ) -> list[SummaryRow]:
        """The summary statement narrowed to ``repre_ids`` by the (project, id) index, so
        refreshing a few rows costs a few rows, not the project."""
        ids = sorted(set(repre_ids))
        if not ids:
            return []
        ranks = sorted(status.rank for status in query.statuses)
        sql = _summary_sql(bool(query.text.strip()), len(ranks), query.sort_key, query.descending,
                           by_ids=True)
        bounded = replace(query, offset=0, limit=len(ids))
        params = _summary_params(project, bounded, retry_cnt, now) | {"ids": json.dumps(ids)}
        conn = self._conn()
        self._require_project(conn, project)
        rows = conn.execute(sql, params).fetchall()
        return [_summary_row(r) for r in rows if r["seq"] is not None]

    @_guarded
    def file_details(
        self, project: str, repre_id: str, active_site: str, remote_site: str,
        retry_cnt: int, now: datetime, offset: int = 0, limit: int | None = None,
    ) -> list[FileDetail]:
        files = self.file_page(project, repre_id, offset, -1 if limit is None else limit)
        return [_file_detail(f, active_site, remote_site, retry_cnt, now) for f in files]

    # -- large representations, subscriptions, adopting copies --------------------------------------

    @_guarded
    def representation_heads(
        self, project: str, after: str | None = None, limit: int = 500
    ) -> list[RepresentationHead]:
        """Keys are the row numbers (``seq``), zero-padded: assigned under the write lock,
        so in commit order, and a reader that has seen key K has seen every earlier one."""
        conn = self._conn()
        self._require_project(conn, project)
        rows = conn.execute(
            """
            SELECT r.seq, r.id, r.name, r.context_json, r.created_at,
                   (SELECT COUNT(*) FROM files WHERE repre_seq = r.seq) AS files_count
            FROM representations AS r
            WHERE r.project = ? AND r.seq > ? ORDER BY r.seq LIMIT ?
            """,
            (project, int(after) if after else 0, max(0, limit)),
        ).fetchall()
        return [
            RepresentationHead(id=r["id"], project=project, key=f"{r['seq']:012d}",
                               context=_load_json(r["context_json"]), name=r["name"],
                               created_dt=_dt(r["created_at"]), files_count=r["files_count"])
            for r in rows
        ]

    @_guarded
    def newest_key(self, project: str) -> str | None:
        conn = self._conn()
        self._require_project(conn, project)
        seq = conn.execute("SELECT MAX(seq) FROM representations WHERE project = ?",
                           (project,)).fetchone()[0]
        return None if seq is None else f"{seq:012d}"

    @_guarded
    def file_page(
        self, project: str, repre_id: str, offset: int = 0, limit: int = 1000
    ) -> list[FileRecord]:
        """One page of files and their entries (``limit`` -1: all from ``offset``)."""
        with self._read() as conn:
            repre_seq = self._repre_seq(conn, project, repre_id)
            files = conn.execute(
                "SELECT * FROM files WHERE repre_seq = ? ORDER BY position LIMIT ? OFFSET ?",
                (repre_seq, limit, max(0, offset)),
            ).fetchall()
            if not files:
                return []
            entries: dict[int, list[sqlite3.Row]] = {}
            for entry in conn.execute(
                """
                SELECT fs.* FROM file_sites AS fs JOIN files AS f ON f.seq = fs.file_seq
                WHERE f.repre_seq = ? AND f.position BETWEEN ? AND ?
                ORDER BY fs.file_seq, fs.rowid
                """,
                (repre_seq, files[0]["position"], files[-1]["position"]),
            ):
                entries.setdefault(entry["file_seq"], []).append(entry)
        return [_file_record(f, entries.get(f["seq"], ())) for f in files]

    @_guarded
    def get_file(self, project: str, repre_id: str, file_id: str) -> FileRecord:
        with self._read() as conn:
            repre_seq = self._repre_seq(conn, project, repre_id)
            row = conn.execute("SELECT * FROM files WHERE repre_seq = ? AND id = ?",
                               (repre_seq, file_id)).fetchone()
            if row is None:
                raise KeyError(f"file {file_id} not found in representation {repre_id}")
            entries = conn.execute(
                "SELECT * FROM file_sites WHERE file_seq = ? ORDER BY rowid", (row["seq"],)
            ).fetchall()
        return _file_record(row, entries)

    @_guarded
    def adopt_file(
        self, project: str, repre_id: str, file_id: str, site: str, provider_id: str,
        checksum: str, now: datetime,
    ) -> bool:
        """One upsert: a new available entry, or the waiting entry made available unless
        it is already available or leased by a live claim."""
        with self._write() as conn:
            repre_seq = self._repre_seq(conn, project, repre_id)
            row = conn.execute("SELECT seq FROM files WHERE repre_seq = ? AND id = ?",
                               (repre_seq, file_id)).fetchone()
            if row is None:
                raise KeyError(f"file {file_id} not found in representation {repre_id}")
            cursor = conn.execute(
                """
                INSERT INTO file_sites (file_seq, site, created_dt, provider_id, checksum)
                VALUES (:file_seq, :site, :now, :provider_id, :checksum)
                ON CONFLICT (file_seq, site) DO UPDATE SET
                    created_dt = excluded.created_dt, provider_id = excluded.provider_id,
                    checksum = excluded.checksum, tries = 0, error = NULL,
                    last_failed_dt = NULL, progress = NULL, next_attempt_dt = NULL,
                    permanent = 0, lease_owner = NULL, lease_until = NULL, staged_dt = NULL
                WHERE file_sites.created_dt IS NULL
                  AND (file_sites.lease_until IS NULL OR file_sites.lease_until <= :now)
                """,
                {"file_seq": row["seq"], "site": site, "now": _ts(now),
                 "provider_id": provider_id, "checksum": checksum},
            )
            return cursor.rowcount == 1

    # -- change notification ----------------------------------------------------------------------

    def change_marker(self) -> object:
        """(data_version of a connection that never writes, in-process counter).

        data_version moves on every commit made through any *other* connection, which
        for the watch connection is all of them, this process's included; the counter
        only exists to wake local waiters without waiting for the next poll.
        """
        local = self._notifier.counter
        return _Marker(self._data_version(), local)

    def wait_for_change(self, marker: object, timeout_s: float) -> bool:
        """Sleep on the in-process condition for at most one poll interval at a time,
        then look at data_version for commits from other processes."""
        if not isinstance(marker, _Marker):
            raise TypeError("marker must come from SqliteStore.change_marker()")
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            if self._notifier.counter != marker.local:
                return True
            if self._data_version() != marker.data_version:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._notifier.wait_past(marker.local, min(POLL_INTERVAL_S, remaining))

    @_guarded
    def _data_version(self) -> int:
        with self._watch_lock:
            if self._closed or self._watch is None:
                raise StoreUnavailableError(f"the SiteSync store on {self.path} is closed")
            return int(self._watch.execute("PRAGMA data_version").fetchone()[0])


# -- event log helpers -----------------------------------------------------------------------------


def _wall_now() -> datetime:
    """Time of a user action (the store API passes no clock for those)."""
    return datetime.now(UTC)


def _append_event(
    conn: sqlite3.Connection, kind: EventType, project: str, now: datetime, site: str,
    repre_id: str, file_id: str, data: Mapping[str, Any],
) -> int:
    """Append one event inside the caller's write transaction; returns its id."""
    cursor = conn.execute(_INSERT_EVENT_SQL, _event_row(kind, project, now, site, repre_id,
                                                        file_id, data))
    return int(cursor.lastrowid or 0)


_INSERT_EVENT_SQL = """
INSERT INTO events (type, at, project, site, repre_id, file_id, data_json)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
#: One encoder for every event: ``json.dumps(..., default=str)`` builds a new one per call.
_encode_event_data = json.JSONEncoder(default=str).encode


def _event_row(
    kind: EventType, project: str, now: datetime, site: str, repre_id: str, file_id: str,
    data: Mapping[str, Any],
) -> tuple[Any, ...]:
    return (kind.value, _ts(now), project, site or "", repre_id or "", file_id or "",
            _encode_event_data(dict(data)) if data else None)


def _append_if_ready(
    conn: sqlite3.Connection, project: str, repre_id: str, site: str, now: datetime
) -> None:
    """representation_ready if every file of the representation is available on ``site``.

    Runs on every success, so the usual answer ("no, files are still queued") must be
    cheap: a representation's files are inserted in one transaction, so their seqs form
    one range, and one probe of the ``file_sites_queued`` index over that range finds a
    queued file without visiting the others. Only when none is queued (once per
    representation, normally) are the entries counted.
    """
    # First and last file by position: two probes of the (repre_seq, position) index.
    span = conn.execute(
        """
        SELECT r.seq AS repre_seq,
               (SELECT seq FROM files WHERE repre_seq = r.seq ORDER BY position LIMIT 1) AS lo,
               (SELECT seq FROM files WHERE repre_seq = r.seq ORDER BY position DESC LIMIT 1)
                   AS hi,
               (SELECT position FROM files WHERE repre_seq = r.seq ORDER BY position DESC
                LIMIT 1) + 1 AS files
        FROM representations AS r WHERE r.project = ? AND r.id = ?
        """,
        (project, repre_id),
    ).fetchone()
    if span is None or span["lo"] is None:
        return
    params = {"site": site, "lo": span["lo"], "hi": span["hi"], "repre_seq": span["repre_seq"]}
    contiguous = span["hi"] - span["lo"] + 1 == span["files"]
    files = "file_seq BETWEEN :lo AND :hi" if contiguous else f"file_seq IN ({_REPRE_FILES})"
    # Named indexes: left to itself the planner walks the whole seq range of the
    # representation (every file's every site), which made each success O(files) and a
    # 100,000-file representation quadratic. Queued and staged entries are the two ways a
    # file is not available yet; each has its partial index.
    for index, waiting in (("file_sites_queued", "created_dt IS NULL AND staged_dt IS NULL"),
                           ("file_sites_staged", "staged_dt IS NOT NULL AND created_dt IS NULL")):
        probe = conn.execute(
            f"SELECT 1 FROM file_sites INDEXED BY {index} "
            f"WHERE site = :site AND {waiting} AND {files} LIMIT 1",
            params,
        ).fetchone()
        if probe is not None:
            return
    available = conn.execute(
        f"SELECT COUNT(*) FROM file_sites WHERE site = :site AND created_dt IS NOT NULL "
        f"AND {files}",
        params,
    ).fetchone()[0]
    if available != span["files"]:
        return  # some file has no entry for the site at all
    row = conn.execute(
        """
        SELECT r.asset, r.subset, r.version, r.representation,
               (SELECT COALESCE(SUM(size), 0) FROM files WHERE repre_seq = r.seq) AS size
        FROM representations AS r WHERE r.seq = ?
        """,
        (span["repre_seq"],),
    ).fetchone()
    data = {"asset": row["asset"], "subset": row["subset"], "version": row["version"],
            "representation": row["representation"], "files": span["files"],
            "size": int(row["size"])}
    _append_event(conn, EventType.REPRESENTATION_READY, project, now, site, repre_id, "", data)


def _event_from_row(row: sqlite3.Row) -> EventRecord:
    data = json.loads(row["data_json"]) if row["data_json"] else {}
    return EventRecord(
        id=int(row["id"]), type=row["type"], at=datetime.fromtimestamp(row["at"], tz=UTC),
        project=row["project"], site=row["site"], repre_id=row["repre_id"],
        file_id=row["file_id"], data=data if isinstance(data, dict) else {"value": data},
    )


# -- row -> model --------------------------------------------------------------------------------


def _file_record(row: sqlite3.Row, entries: Sequence[sqlite3.Row]) -> FileRecord:
    return FileRecord(id=row["id"], path=row["path"], size=row["size"], hash=row["hash"],
                      sites=tuple(_site_from_row(s) for s in entries))


def _assemble(
    project: str, row: sqlite3.Row, files: Sequence[sqlite3.Row],
    entries: Mapping[int, Sequence[sqlite3.Row]],
) -> _Loaded:
    records = []
    file_extras = []
    site_extras = []
    for f in files:
        states = entries.get(f["seq"], ())
        records.append(
            FileRecord(id=f["id"], path=f["path"], size=f["size"], hash=f["hash"],
                       sites=tuple(_site_from_row(s) for s in states))
        )
        file_extras.append(_load_json(f["extra_json"]))
        site_extras.append({s["site"]: _load_json(s["extra_json"]) for s in states})
    repre = Representation(
        id=row["id"],
        project=project,
        context=_load_json(row["context_json"]),
        files=tuple(records),
        parent=row["parent"],
        name=row["name"],
        created_dt=_dt(row["created_at"]),
    )
    extras = _Extras(_load_json(row["extra_json"]), tuple(file_extras), tuple(site_extras))
    return _Loaded(repre, extras)


def _claim_params(
    item: WorkItem, owner: str, lease_until: datetime, now: datetime
) -> dict[str, Any]:
    """Parameters of _CLAIM_SQL: the item as find_work saw it, plus the new lease."""
    return _item_params(item) | {
        "source": item.source_site,
        "owner": owner,
        "lease_until": _ts(lease_until),
        "tries": item.tries,
        "now": _ts(now),
    }


def _synced_data(item: WorkItem, provider_id: str, checksum: str | None) -> dict[str, Any]:
    """What a file_synced event says about the file."""
    return {"path": item.path, "size": item.size, "checksum": checksum,
            "provider_id": provider_id, "source_site": item.source_site,
            "direction": item.direction.value}


def _item_params(item: WorkItem) -> dict[str, Any]:
    return {
        "project": item.project,
        "repre_id": item.repre_id,
        "file_id": item.file_id,
        "target": item.target_site,
    }


def _work_item(project: str, remote_site: str, row: sqlite3.Row) -> WorkItem:
    upload = row["target_site"] == remote_site
    return WorkItem(
        project=project,
        repre_id=row["repre_id"],
        file_id=row["file_id"],
        path=row["path"],
        size=row["size"],
        hash=row["hash"],
        source_site=row["source_site"],
        target_site=row["target_site"],
        direction=Direction.UPLOAD if upload else Direction.DOWNLOAD,
        priority=int(row["priority"]),
        tries=row["tries"],
        source_checksum=row["source_checksum"],
        atomic=bool(row["atomic"]),
    )


def _summary_params(
    project: str, query: SummaryQuery, retry_cnt: int, now: datetime
) -> dict[str, Any]:
    """Parameters of _summary_sql for ``query``."""
    text = query.text.strip()
    ranks = sorted(status.rank for status in query.statuses)
    return {
        "project": project,
        "active": query.active_site,
        "remote": query.remote_site,
        "retry_cnt": retry_cnt,
        "now": _ts(now),
        "default_priority": DEFAULT_PRIORITY,
        "needle": _fold(text),
        "raw_text": text,
        # Clamped to what SQLite binds (64 bits): a page never needs more.
        "limit": min(max(0, query.limit), _INT64_MAX),
        "offset": min(max(0, query.offset), _INT64_MAX),
    } | {f"rank{i}": rank for i, rank in enumerate(ranks)}


def _side(row: sqlite3.Row, prefix: str) -> SideSummary:
    return SideSummary(
        status=_BY_RANK[row[f"{prefix}_rank"]],
        progress=float(row[f"{prefix}_progress"]),
        updated_dt=_dt(row[f"{prefix}_dt"]),
        tries=int(row[f"{prefix}_tries"]),
        error=row[f"{prefix}_error"],
    )


def _summary_row(row: sqlite3.Row) -> SummaryRow:
    return SummaryRow(
        repre_id=row["id"],
        asset=row["asset"],
        subset=row["subset"],
        version=row["version"],
        representation=row["representation"],
        active=_side(row, "a"),
        remote=_side(row, "b"),
        files_count=row["files_count"],
        size=int(row["size"]),
        priority=int(row["priority"]),
        status=_BY_RANK[row["rank"]],
        first_path=row["first_path"] or "",
    )


def _file_detail(
    record: FileRecord, active_site: str, remote_site: str, retry_cnt: int, now: datetime
) -> FileDetail:
    active, remote = record.site(active_site), record.site(remote_site)
    active_status = site_status(active, retry_cnt, now)
    remote_status = site_status(remote, retry_cnt, now)
    return FileDetail(
        file_id=record.id,
        path=record.path,
        size=record.size,
        active=active,
        remote=remote,
        active_status=active_status,
        remote_status=remote_status,
        status=combine((active_status, remote_status)),
    )
