"""The store contract: every operation the engine, CLI and UI need from a database.

Two back-ends implement it (``SqliteStore``, the embedded default, and ``MongoStore`` for
studio OpenPype/Avalon databases) and one contract suite (``tests/contract``) runs against
both. Everything is expressed in :mod:`app.model` objects; no back-end type leaks out.

Rules every back-end follows:

* A site entry is the OpenPype `files[].sites[]` entry. "Available" means `created_dt` is
  set; an entry without it is queued. No entry means the site does not track the file.
* Claims are leases written in the database: :meth:`Store.claim` succeeds for exactly one
  caller until the lease expires or is released, across threads and processes.
* Times come from the caller (``now``) so tests and engines share one injectable clock.
* State changes that matter outside SiteSync are appended to an **event log** (see
  "event log" below) in the same write as the change itself, so the log and the state
  never disagree, even after a crash.
* Methods raise :class:`app.errors.StoreUnavailableError` when the database cannot be
  reached, :class:`KeyError` for an unknown project/representation, and
  :class:`app.errors.DocumentError` for documents they cannot interpret. They never
  raise a driver exception.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from app.errors import StoreUnavailableError
from app.model import (
    Claim,
    Direction,
    EventLogInfo,
    EventRecord,
    FileDetail,
    FileRecord,
    ProjectInfo,
    Representation,
    RepresentationHead,
    SummaryPage,
    SummaryQuery,
    SummaryRow,
    WorkItem,
)

__all__ = ["CHUNK_FILES", "Store"]

#: Files of one representation scheduled before the next representation of the same
#: priority gets its turn (see Store.find_work).
CHUNK_FILES = 200


class Store(abc.ABC):
    """Abstract store; see the module docstring for the rules."""

    #: Short name for messages and `doctor` ("sqlite", "mongo").
    kind: str = ""

    @property
    def scope(self) -> str:
        """Which database this is, stably across runs (a file path, host/database), for
        state kept per database such as subscription cursors; never credentials."""
        return ""

    # -- lifecycle -------------------------------------------------------------------------

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. Safe to call twice."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailableError unless the database answers now."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- projects --------------------------------------------------------------------------

    @abc.abstractmethod
    def ensure_project(self, name: str, code: str = "") -> None:
        """Create the project (OpenPype: a `{type: "project"}` document) if missing."""

    @abc.abstractmethod
    def list_projects(self) -> list[ProjectInfo]:
        """All projects, by name, with their persisted pause flag."""

    @abc.abstractmethod
    def set_project_paused(self, project: str, paused: bool) -> None:
        """Persist a project-level pause (OpenPype kept it in memory and lost it)."""

    # -- representations -------------------------------------------------------------------

    @abc.abstractmethod
    def insert_representation(self, repre: Representation) -> str:
        """Store a new representation (as OpenPype's integrator would) and return its id.

        An empty ``repre.id`` gets a new id. Site entries are written as given.
        """

    def insert_representations(self, repres: Iterable[Representation]) -> int:
        """Store many new representations (an import, a studio-scale benchmark); returns
        how many were stored. Same rules as :meth:`insert_representation`; on an error
        (a DocumentError for a duplicate id, say) the ones before the offending one are
        stored and it and the rest are not. Back-ends override it to write a batch per
        transaction or round trip: one commit per representation makes a million take
        an hour."""
        count = 0
        for repre in repres:
            self.insert_representation(repre)
            count += 1
        return count

    @abc.abstractmethod
    def insert_document(self, project: str, doc: dict) -> str:
        """Store an OpenPype representation document as it is (list or legacy dict
        `sites`), the way OpenPype or a HOWTO command would have written it.

        The Mongo store inserts it verbatim; the SQLite store imports it through
        :mod:`app.store.docs`. Raises DocumentError if it cannot be read.
        """

    @abc.abstractmethod
    def get_representation(self, project: str, repre_id: str) -> Representation:
        """The whole representation, sites normalised to the list form."""

    @abc.abstractmethod
    def count_representations(self, project: str) -> int:
        """Number of representations in the project."""

    # -- work and claims ---------------------------------------------------------------------

    @abc.abstractmethod
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
        """Files to move between the two sites, most urgent first.

        Upload: available on ``active_site`` and queued (entry without `created_dt`) on
        ``remote_site``. Download: the mirror. Skipped: paused entries (either side),
        paused projects, entries with ``tries >= retry_cnt`` or a permanent error,
        entries whose ``next_attempt_dt`` is after ``now``, and live leases. Order:
        priority descending (active site's entry, else remote's, else 50), then
        chunk of :data:`CHUNK_FILES` files, then representation age, then file order:
        representations of one priority take turns a chunk at a time, so a sequence of
        100,000 frames never holds up a newer publish of the same priority for longer
        than a chunk (rayvision's manifest cutting). ``exclude`` holds ``(repre_id, file_id)``
        pairs the caller already has in hand. ``direction`` keeps only uploads (to the
        remote site) or only downloads (to the active site); the engine asks for one
        direction when only that direction has free transfer slots.
        """

    @abc.abstractmethod
    def claim(self, item: WorkItem, owner: str, lease_until: datetime, now: datetime) -> Claim | None:
        """Atomically take ``item`` for ``owner``; None if someone else holds a live lease,
        the target became available, was paused or removed meanwhile."""

    def claim_many(
        self, items: list[WorkItem], owner: str, lease_until: datetime, now: datetime
    ) -> list[Claim]:
        """Claim several items; returns the claims won, in order. Same rules as
        :meth:`claim`. Back-ends override it to claim in one round trip, which is what
        keeps a scheduler of many small files from waiting on the database."""
        claims = []
        for item in items:
            claim = self.claim(item, owner, lease_until, now)
            if claim is not None:
                claims.append(claim)
        return claims

    @abc.abstractmethod
    def extend_lease(self, claim: Claim, lease_until: datetime) -> Claim | None:
        """Push the lease out; None if the claim was lost (expired and taken, reset, removed)."""

    @abc.abstractmethod
    def release(self, claim: Claim) -> None:
        """Give the claim back without counting a try (pause, shutdown, cancel)."""

    @abc.abstractmethod
    def record_progress(self, claim: Claim, progress: float) -> None:
        """Store progress 0..1 on the target entry (OpenPype's `progress`)."""

    @abc.abstractmethod
    def record_success(
        self, claim: Claim, provider_id: str, checksum: str | None, now: datetime
    ) -> bool:
        """Mark the target available: `created_dt`, `id`, checksum; clears tries, error,
        last_failed_dt, progress, next attempt and the lease. Returns False (and writes
        nothing) if the claim is no longer held by its owner."""

    def record_successes(
        self, successes: Sequence[tuple[Claim, str, str | None]], now: datetime
    ) -> list[bool | None]:
        """:meth:`record_success` for each ``(claim, provider_id, checksum)``: one answer
        per entry, in order, as the single call would give it, or None for an entry the
        database failed on (nothing recorded for it: ask again). Raises
        StoreUnavailableError when nothing at all was recorded.

        Why a batch: the engine's finisher records every small file a burst of workers
        committed, and one write transaction (or one network round trip) per file cost
        more than copying the file. SQLite records the batch in one transaction; MongoDB
        sends the updates side by side. The None answers let the caller record only the
        failed entries again, so it never mistakes a file it already recorded for a
        claim another engine took. This default makes the single calls in order.
        """
        answers: list[bool | None] = []
        for claim, provider_id, checksum in successes:
            try:
                answers.append(self.record_success(claim, provider_id, checksum, now))
            except StoreUnavailableError:
                if not answers:
                    raise
                answers += [None] * (len(successes) - len(answers))
                break
        return answers

    @abc.abstractmethod
    def record_failure(
        self,
        claim: Claim,
        error: str,
        now: datetime,
        next_attempt_dt: datetime | None,
        permanent: bool = False,
    ) -> bool:
        """Count a failed try on the target OpenPype-style (`tries+1`, `error`,
        `last_failed_dt`, `progress: ""`), set the next attempt time and release the lease.
        Returns False if the claim is no longer held."""

    # -- user actions ------------------------------------------------------------------------

    @abc.abstractmethod
    def set_paused(self, project: str, repre_id: str, site: str, paused: bool) -> None:
        """Pause/resume the representation on a site (OpenPype's `paused` flag on every
        file's entry for that site, and only that flag)."""

    @abc.abstractmethod
    def reset_site(
        self, project: str, repre_id: str, site: str, file_id: str | None = None
    ) -> int:
        """Retry: replace the site entry with a fresh queued one keeping `name` and
        `priority` (OpenPype's re-sync). For one file or all. Returns entries reset."""

    @abc.abstractmethod
    def reset_failed(self, project: str, site: str | None = None) -> int:
        """Reset every failed entry (tries or permanent error, not available) in the
        project, optionally only for one site. Returns entries reset.

        Paused entries are left alone: they show as Paused, not Failed (app.status), and
        resetting would drop the pause the user set."""

    @abc.abstractmethod
    def add_site(
        self,
        project: str,
        repre_id: str,
        site: str,
        force: bool = False,
        priority: int | None = None,
        atomic: bool = False,
    ) -> int:
        """Add a queued entry for ``site`` to every file lacking one; with ``force`` also
        reset existing entries. Returns entries added or reset. ``atomic`` makes the new
        entries "when complete" (staged, then moved in together; app.policy.staging)."""

    @abc.abstractmethod
    def remove_site(self, project: str, repre_id: str, site: str) -> int:
        """Pull the site's entry from every file. Returns entries removed."""

    @abc.abstractmethod
    def set_priority(self, project: str, repre_id: str, site: str, priority: int) -> None:
        """Set `priority` on every file's entry for ``site`` (OpenPype writes it on the
        active site)."""

    # -- reading for the UI and CLI -----------------------------------------------------------

    @abc.abstractmethod
    def summary_page(
        self, project: str, query: SummaryQuery, retry_cnt: int, now: datetime
    ) -> SummaryPage:
        """One page of representation rows for the site pair.

        Rows: representations where some file has an entry for either site. Text
        filter: case-insensitive substring of asset, subset or representation name (or
        the exact id). ``total`` counts rows after text and status filters;
        ``status_counts`` counts rows by status after the text filter only, so a filter
        menu can show how many rows each choice gives. Statuses come from
        :mod:`app.status`. With ``query.with_counts`` False a back-end may return empty
        ``status_counts`` (and answer faster); rows and ``total`` are the same.
        """

    @abc.abstractmethod
    def summary_rows(
        self, project: str, query: SummaryQuery, repre_ids: Collection[str], retry_cnt: int,
        now: datetime,
    ) -> list[SummaryRow]:
        """The rows :meth:`summary_page` would give for just ``repre_ids``, in no
        particular order, under ``query``'s site pair, text and status filters (its sort,
        offset and limit are ignored). Ids that are unknown, track neither site or are
        filtered out are absent.

        This is how the Sync Queue applies an engine event: it re-reads the handful of rows
        the event touched instead of re-running the page over the whole project.
        """

    @abc.abstractmethod
    def file_details(
        self, project: str, repre_id: str, active_site: str, remote_site: str,
        retry_cnt: int, now: datetime, offset: int = 0, limit: int | None = None,
    ) -> list[FileDetail]:
        """The files of the representation with both site entries and statuses, in file
        order; ``offset``/``limit`` page through a large one (100,000 frames) without
        reading it whole."""

    # -- large representations, subscriptions, adopting copies ----------------------------------

    @abc.abstractmethod
    def representation_heads(
        self, project: str, after: str | None = None, limit: int = 500
    ) -> list[RepresentationHead]:
        """Representations without their files, in the store's insertion order (by
        ``key``), those after the key ``after``; never loads a file list."""

    def newest_key(self, project: str) -> str | None:
        """The key of the most recently inserted representation (None: none yet)."""
        newest = None
        while page := self.representation_heads(project, newest, 1000):
            newest = page[-1].key
        return newest

    def rewind_key(self, key: str, seconds: float) -> str:
        """A key at least ``seconds`` older than ``key``, for stores whose keys are not
        assigned in commit order (MongoDB's client-made ObjectIds): a reader that only
        looked past ``key`` could miss a representation inserted late with an older id.
        Stores whose keys are exact return ``key``."""
        return key

    @abc.abstractmethod
    def record_staged(self, claim: Claim, checksum: str, now: datetime) -> bool:
        """A "when complete" file is verified under its staged name: mark it staged (not
        available; find_work and claim skip it), release the lease. False if the claim
        is no longer held."""

    @abc.abstractmethod
    def has_unstaged(self, project: str, repre_id: str, site: str) -> bool:
        """Whether some file's ``site`` entry is neither available nor staged, i.e. the
        representation cannot be completed on the site yet. Cheap at any file count."""

    @abc.abstractmethod
    def staged_representations(self, project: str, site: str) -> list[str]:
        """Ids of representations with staged, not yet available entries for ``site``
        (completion that a crash interrupted is finished from these)."""

    @abc.abstractmethod
    def complete_staged(self, project: str, repre_id: str, site: str, now: datetime) -> int:
        """Make every staged entry of ``site`` available at once, atomically, but only
        when no entry is left unstaged. Returns the entries completed (0: not complete,
        or nothing staged)."""

    @abc.abstractmethod
    def file_page(
        self, project: str, repre_id: str, offset: int = 0, limit: int = 1000
    ) -> list[FileRecord]:
        """Files ``offset`` .. ``offset + limit`` of a representation, in file order."""

    @abc.abstractmethod
    def get_file(self, project: str, repre_id: str, file_id: str) -> FileRecord:
        """One file and its site entries (KeyError if unknown), without the others."""

    @abc.abstractmethod
    def adopt_file(
        self, project: str, repre_id: str, file_id: str, site: str, provider_id: str,
        checksum: str, now: datetime,
    ) -> bool:
        """Record that ``site`` already holds the file (``sitesync validate`` checked its
        bytes): the entry becomes available with ``checksum``, keeping its priority;
        a file without an entry for the site gets one. Nothing happens (False) when the
        entry is already available or leased by a running transfer."""

    # -- change notification --------------------------------------------------------------------

    @abc.abstractmethod
    def change_marker(self) -> object:
        """An opaque value that differs after any write (by anyone) to the store.

        :meth:`wait_for_change` compares against it; callers take a marker, look for
        work, then wait with that marker so no change between the two is missed.
        """

    @abc.abstractmethod
    def wait_for_change(self, marker: object, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` until the store changed since ``marker``.

        True if it changed. Uses change streams where the server has them, polling
        otherwise; never busy-waits.
        """

    # -- event log --------------------------------------------------------------------------------
    #
    # Append-only, ids increasing. Written by the store itself, in the same write as the
    # state change: record_success -> file_synced (and representation_ready when it was
    # the representation's last file missing on that site), record_failure ->
    # file_failed, set_paused -> site_paused / site_resumed, reset_site / reset_failed ->
    # retry_requested (one per representation and site, only when entries were reset).
    # Readers (app.hooks) keep their own positions; the store keeps no reader state.
    #
    # Ids may be *seen* out of order: a writer can take id 7, another take 8 and commit
    # first (MongoDB: the id comes from a counter before the insert). A reader that sees
    # 8 but not 7 waits for 7 for a while, then calls seal_event_id(7): from then on no
    # write can land on 7, so nothing committed late is ever silently skipped.

    @abc.abstractmethod
    def append_event(
        self, event_type: str, project: str, now: datetime, *, site: str = "",
        repre_id: str = "", file_id: str = "", data: Mapping[str, Any] | None = None,
    ) -> int:
        """Append an event that no state change carries (an integrity alert); returns
        its id. ``data`` must hold JSON values only."""

    @abc.abstractmethod
    def read_events(self, after_id: int, limit: int = 500) -> list[EventRecord]:
        """Committed events with ``id > after_id``, ascending, at most ``limit``.
        Sealed ids come back as records of type ``gap`` so a reader can step over them."""

    @abc.abstractmethod
    def get_events(self, ids: Iterable[int]) -> list[EventRecord]:
        """The committed events (or sealed gaps) among ``ids``, ascending."""

    @abc.abstractmethod
    def seal_event_id(self, event_id: int, now: datetime) -> EventRecord | None:
        """Declare ``event_id`` lost unless it was committed meanwhile.

        Returns the event if it exists (deliver it), else None: the id is now sealed
        and a writer that still holds it will write under a new id instead."""

    @abc.abstractmethod
    def event_log_info(self) -> EventLogInfo:
        """The log's identity and its first and last ids."""

    @abc.abstractmethod
    def prune_events(self, before: datetime) -> int:
        """Delete events older than ``before`` (retention); returns how many."""

    def flush_events(self, timeout_s: float = 10.0) -> bool:
        """Wait until every event of writes made through this store is readable; True
        if so. Back-ends that append in the writing transaction have nothing to wait for."""
        return True
