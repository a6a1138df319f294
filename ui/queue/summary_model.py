"""The representation table's model: server-side pages, row-level live updates.

What OpenPype's Sync Queue did (re-run the whole aggregation every 5 s, reset the model,
20 rows a page, all on the GUI thread) made the window freeze, lose the selection and
jump. Here:

* **Pages come from the store** (``Store.summary_page``: filter, sort, count, offset and
  limit run in the database) on a worker thread; the table grows with ``fetchMore`` as the
  user scrolls. Only a new query (another project, filter or sort) resets the model.
* **Events update rows in place.** The window passes the representations an engine event
  touched to :meth:`SummaryModel.refresh_rows`; the loaded ones are re-read by id
  (``Store.summary_rows``) and replaced with ``dataChanged``, or removed when they no longer
  match the filter. Selection and scroll position stay where they were.
* **Counts and new rows** (a publish, a row entering the status filter) come from one
  full page query of the loaded window, run at most every few seconds (adaptive: three
  times what the last full query took) and merged in without moving existing rows.
* **Progress** between store writes comes from the bridge's coalesced ``progress``
  signal as a per-file overlay; only rows on screen are updated (the others when they
  scroll into view).
* **The view's model is C++.** :class:`SummaryModel` is a controller that keeps the rows
  in Python and writes their cells into a plain ``QStandardItemModel`` (``.items``), so
  painting never calls into Python and never waits for the GIL the engine's threads hold
  (see :mod:`ui.queue.cells`).

All store work is serialised on one "update lane" so an older answer can never overwrite
a newer one; page answers carry the query generation and are dropped when stale.
Statuses are the store's (``app.status``), with the project's ``retry_cnt``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import QModelIndex, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QStandardItemModel

from app.errors import SiteSyncError
from app.events.types import FileProgress
from app.model import Status, SummaryPage, SummaryQuery, SummaryRow
from app.store.base import Store
from ui.queue.cells import ACTIVE, REMOTE, SITE_ROLE, SiteCell, cell_roles, site_roles
from ui.queue.columns import COLUMNS, column_index, pretty_date
from ui.queue.worker import TaskRunner

__all__ = ["SITE_ROLE", "QueueContext", "SiteCell", "SummaryModel"]

_DISPLAY = int(Qt.ItemDataRole.DisplayRole)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class QueueContext:
    """Which project and site pair the table shows, and how statuses are judged."""

    project: str
    active_site: str
    remote_site: str
    retry_cnt: int
    active_provider: str = ""
    remote_provider: str = ""

    def side_of(self, site: str) -> str | None:
        if site == self.active_site:
            return "active"
        if site == self.remote_site:
            return "remote"
        return None


class SummaryModel(QObject):
    """See the module docstring. Construct in the GUI thread; call :meth:`set_context`;
    give ``items`` to the view."""

    #: A new query started (True) or its first page arrived (False).
    loading_changed = Signal(bool)
    #: The rows of a new query are about to replace the table's (selection: remember it).
    about_to_reset = Signal()
    #: The first page of a new query was applied.
    page_loaded = Signal()
    #: Some loaded rows changed, came or went (actions: re-check what applies).
    rows_changed = Signal()
    #: Rows are about to be inserted or removed in place / were (the view keeps its top row).
    rows_about_to_move = Signal()
    rows_moved = Signal()
    #: total / status counts / loaded rows changed.
    counts_changed = Signal()
    #: A query failed; the text says why (StoreUnavailableError texts say what to do).
    failed = Signal(str)

    def __init__(
        self,
        store: Store,
        runner: TaskRunner,
        parent: QObject | None = None,
        *,
        page_size: int = 250,
        clock: Callable[[], datetime] = utc_now,
        min_merge_interval_s: float = 1.0,
        max_merge_interval_s: float = 15.0,
    ) -> None:
        super().__init__(parent)
        self._store = store
        self._runner = runner
        self._clock = clock
        self.page_size = page_size
        #: What the table view shows: cells only, in C++ (see the module docstring).
        self.items = QStandardItemModel(0, len(COLUMNS), self)
        self._ctx: QueueContext | None = None
        self._text = ""
        self._statuses: frozenset[Status] = frozenset()
        self._sort_column = column_index("asset")
        self._descending = False
        self._set_headers()

        self._rows: list[SummaryRow] = []
        self._cells: list[tuple[SiteCell, SiteCell]] = []  # as written into ``items``
        self._index: dict[str, int] = {}
        self._total = 0
        self._counts: dict[Status, int] = {}
        self._counts_ready = False
        self._generation = 0
        self._loading = False
        self._fetching = False
        self._removed_during_fetch = False
        self._changed_during_page: set[str] = set()

        # The update lane: row refreshes by id, then the periodic window merge.
        self._pending_ids: set[str] = set()
        self._lane_busy = False
        self._merge_wanted = False
        self._merge_due = False
        #: Bounds of the pause between counts/new-rows merges (seconds).
        self.min_merge_interval_s = min_merge_interval_s
        self.max_merge_interval_s = max_merge_interval_s
        self._last_full_query_s = 0.0
        self._merge_timer = QTimer(self)
        self._merge_timer.setSingleShot(True)
        self._merge_timer.timeout.connect(self._on_merge_timer)

        # Live progress: repre_id -> {(side, file_id): [live fraction, baseline]}; rows
        # off screen are only marked stale and written when they scroll into view.
        self._overlay: dict[str, dict[tuple[str, str], list[float]]] = {}
        self._stale: set[str] = set()
        self._visible: Callable[[], tuple[int, int] | None] = lambda: None

    # -- public API ------------------------------------------------------------------------

    @property
    def context(self) -> QueueContext | None:
        return self._ctx

    @property
    def total(self) -> int:
        """Rows matching the text and status filters."""
        return self._total

    @property
    def status_counts(self) -> dict[Status, int]:
        """Rows per status under the text filter only (what each status choice gives)."""
        return dict(self._counts)

    @property
    def counts_ready(self) -> bool:
        """False while the status counts are still those of a previous query."""
        return self._counts_ready

    @property
    def unfiltered_total(self) -> int:
        """Rows under the text filter, any status."""
        return sum(self._counts.values())

    @property
    def loading(self) -> bool:
        return self._loading

    @property
    def text_filter(self) -> str:
        return self._text

    @property
    def status_filter(self) -> frozenset[Status]:
        return self._statuses

    @property
    def sort_order(self) -> tuple[int, Qt.SortOrder]:
        order = Qt.SortOrder.DescendingOrder if self._descending else Qt.SortOrder.AscendingOrder
        return self._sort_column, order

    @property
    def idle(self) -> bool:
        """No query, page or update pending (tests and the benchmark wait for this)."""
        return not (self._loading or self._fetching or self._lane_busy or self._pending_ids
                    or self._merge_wanted or self._merge_due)

    def set_visible_rows(self, provider: Callable[[], tuple[int, int] | None]) -> None:
        """``provider()`` gives the first and last row on screen (None: unknown, all)."""
        self._visible = provider

    def rowCount(self) -> int:
        return len(self._rows)

    def row(self, row: int) -> SummaryRow:
        return self._rows[row]

    def row_of(self, repre_id: str) -> int | None:
        return self._index.get(repre_id)

    def rows(self) -> list[SummaryRow]:
        return list(self._rows)

    def index(self, row: int, column: int) -> QModelIndex:
        return self.items.index(row, column)

    def site_cell(self, row: int, side: str) -> SiteCell:
        """What the table shows (or will show once on screen) for one side of a row."""
        return self._site_cell(self._rows[row], side)

    def set_context(self, ctx: QueueContext | None) -> None:
        """Show another project or site pair: the table empties and the first page loads."""
        if ctx == self._ctx:
            return
        self._ctx = ctx
        self._overlay.clear()
        self._set_headers()
        self.about_to_reset.emit()
        self._set_rows([])
        self._total, self._counts = 0, {}
        self.counts_changed.emit()
        self.requery()

    def set_text_filter(self, text: str) -> None:
        if text != self._text:
            self._text = text
            self.requery()

    def set_status_filter(self, statuses: Iterable[Status]) -> None:
        statuses = frozenset(statuses)
        if statuses != self._statuses:
            self._statuses = statuses
            self.requery()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Server-side sort (the header's sort indicator is connected here)."""
        descending = order == Qt.SortOrder.DescendingOrder
        if not 0 <= column < len(COLUMNS):
            return
        if (column, descending) != (self._sort_column, self._descending):
            self._sort_column, self._descending = column, descending
            self.requery()

    def requery(self) -> None:
        """Run the current query again from the first page (the rows are replaced when it
        lands, keeping the old rows on screen until then)."""
        self._generation += 1
        self._runner.supersede("more")
        self._merge_timer.stop()
        self._pending_ids.clear()
        self._merge_wanted = self._merge_due = False
        self._fetching = False
        self._changed_during_page.clear()
        if self._ctx is None:
            self._set_loading(False)
            return
        self._set_loading(True)
        # Rows first, counts right after on the update lane: on SQLite a page without
        # counts is about six times faster on a big project (Store.summary_page).
        query = self._query(0, self.page_size, counts=False)
        generation = self._generation
        self._runner.submit(
            self._timed(query),
            lambda result: self._on_first_page(generation, result),
            lambda exc: self._on_query_failed(generation, exc),
            channel="page",
        )

    def canFetchMore(self) -> bool:
        if self._ctx is None or self._loading or self._fetching:
            return False
        return len(self._rows) < self._total

    def fetchMore(self) -> None:
        """Load the next page (the view calls this when scrolled near the end)."""
        if not self.canFetchMore():
            return
        self._fetching = True
        self._removed_during_fetch = False
        generation = self._generation
        query = self._query(len(self._rows), self.page_size, counts=False)
        self._runner.submit(
            self._timed(query),
            lambda result: self._on_more(generation, result),
            lambda exc: self._on_more_failed(generation, exc),
            channel="more",
        )

    def refresh_rows(self, repre_ids: Iterable[str]) -> None:
        """Representations of the current project changed: re-read the loaded ones, and
        schedule the counts/new-rows merge."""
        ids = set(repre_ids)
        if not ids or self._ctx is None:
            return
        if self._loading or self._fetching:
            self._changed_during_page |= ids
        self._pending_ids |= ids & self._index.keys()
        self._merge_wanted = True
        self._pump()

    # -- live progress ---------------------------------------------------------------------

    def apply_progress(self, batch: dict[Any, FileProgress]) -> None:
        """Bridge ``progress``: latest FileProgress per (project, repre, file, target)."""
        ctx = self._ctx
        if ctx is None:
            return
        touched = set()
        for event in batch.values():
            if event.project != ctx.project or event.repre_id not in self._index:
                continue
            side = ctx.side_of(event.target_site)
            if side is None:
                continue
            fraction = min(1.0, event.bytes_done / event.size) if event.size else 1.0
            files = self._overlay.setdefault(event.repre_id, {})
            entry = files.setdefault((side, event.file_id), [0.0, 0.0])
            entry[0] = max(entry[0], fraction) if entry[0] < 1.0 else entry[0]
            touched.add(event.repre_id)
        self._show_progress(touched)

    def file_finished(self, project: str, repre_id: str, file_id: str, target_site: str,
                      synced: bool) -> None:
        """A transfer ended: a synced file counts as whole until its row is re-read; a
        failed or stopped one drops back to what the store says."""
        self.files_finished([(project, repre_id, file_id, target_site, synced)])

    def files_finished(self, ended: Iterable[tuple[str, str, str, str, bool]]) -> None:
        """:meth:`file_finished` for many transfers (project, repre_id, file_id,
        target_site, synced) at once; each touched row is written once."""
        ctx = self._ctx
        if ctx is None:
            return
        touched = set()
        for project, repre_id, file_id, target_site, synced in ended:
            if project != ctx.project or repre_id not in self._index:
                continue
            side = ctx.side_of(target_site)
            if side is None:
                continue
            files = self._overlay.setdefault(repre_id, {})
            if synced:
                files.setdefault((side, file_id), [0.0, 0.0])[0] = 1.0
            else:
                files.pop((side, file_id), None)
            touched.add(repre_id)
        self._show_progress(touched)

    def side_progress(self, row: SummaryRow, side: str) -> float:
        """The store's mean progress of the side plus the live overlay's advance."""
        summary = row.active if side == "active" else row.remote
        progress = summary.progress
        files = self._overlay.get(row.repre_id)
        if files and row.files_count:
            gain = sum(max(0.0, live - base) for (s, _), (live, base) in files.items() if s == side)
            progress += gain / row.files_count
        return min(1.0, progress)

    def show_visible(self) -> None:
        """Write the live progress of stale rows that are now on screen (the view calls
        this when it scrolls)."""
        if not self._stale:
            return
        visible = self._visible()
        if visible is None:
            return
        first, last = visible
        for repre_id in [i for i in self._stale if first <= self._index.get(i, -1) <= last]:
            self._stale.discard(repre_id)
            self._write_sites(self._index[repre_id])

    # -- writing cells -----------------------------------------------------------------------

    def _set_headers(self) -> None:
        labels = []
        for i, column in enumerate(COLUMNS):
            label = column.label
            if self._ctx is not None and i in (ACTIVE, REMOTE):
                # On a line of its own: a generated local_id is as long as the column.
                label += f"\n{self._ctx.active_site if i == ACTIVE else self._ctx.remote_site}"
            labels.append(label)
        self.items.setHorizontalHeaderLabels(labels)

    def _site_cell(self, row: SummaryRow, side: str) -> SiteCell:
        ctx = self._ctx
        summary = row.active if side == "active" else row.remote
        site = provider = ""
        if ctx is not None:
            site = ctx.active_site if side == "active" else ctx.remote_site
            provider = ctx.active_provider if side == "active" else ctx.remote_provider
        return SiteCell(site, provider, self.side_progress(row, side), summary.status,
                        pretty_date(summary.updated_dt), summary.tries, summary.error)

    def _write_row(self, at: int, old: SummaryRow | None = None) -> None:
        """Write row ``at`` into ``items``; with ``old``, only the cells that changed."""
        row = self._rows[at]
        cells = (self._site_cell(row, "active"), self._site_cell(row, "remote"))
        previous = self._cells[at] if old is not None else None
        self._cells[at] = cells
        for column in range(len(COLUMNS)):
            if previous is not None:
                if column == ACTIVE and previous[0] == cells[0]:
                    continue
                if column == REMOTE and previous[1] == cells[1]:
                    continue
                if column not in (ACTIVE, REMOTE) and _same_cell(old, row, column):
                    continue
            index = self.items.index(at, column)
            roles = cell_roles(row, column, *cells)
            if old is None:  # creates the item in C++ (setItemData needs one to exist)
                self.items.setData(index, roles[_DISPLAY], _DISPLAY)
            self.items.setItemData(index, roles)

    def _write_sites(self, at: int) -> None:
        row = self._rows[at]
        cells = (self._site_cell(row, "active"), self._site_cell(row, "remote"))
        for column, old, new in ((ACTIVE, self._cells[at][0], cells[0]),
                                 (REMOTE, self._cells[at][1], cells[1])):
            if old != new:
                self.items.setItemData(self.items.index(at, column), site_roles(new))
        self._cells[at] = cells

    def _show_progress(self, repre_ids: set[str]) -> None:
        visible = self._visible()
        for repre_id in repre_ids:
            at = self._index.get(repre_id)
            if at is None:
                continue
            if visible is not None and not visible[0] <= at <= visible[1]:
                self._stale.add(repre_id)
                continue
            self._write_sites(at)

    def _set_rows(self, rows: list[SummaryRow]) -> None:
        """Replace every row (a new query): one remove and one insert for the view."""
        if self.items.rowCount():
            self.items.removeRows(0, self.items.rowCount())
        self._rows = rows
        self._cells = [None] * len(rows)  # type: ignore[list-item]
        self._index = {r.repre_id: i for i, r in enumerate(rows)}
        self._stale.clear()
        if rows:
            self.items.insertRows(0, len(rows))
            for at in range(len(rows)):
                self._write_row(at)

    def _insert_rows(self, position: int, rows: list[SummaryRow]) -> None:
        self.rows_about_to_move.emit()
        self._rows[position:position] = rows
        self._cells[position:position] = [None] * len(rows)  # type: ignore[list-item]
        self._reindex(position)
        self.items.insertRows(position, len(rows))
        for at in range(position, position + len(rows)):
            self._write_row(at)
        self.rows_moved.emit()

    # -- queries ---------------------------------------------------------------------------

    def _query(self, offset: int, limit: int, counts: bool = True) -> SummaryQuery:
        assert self._ctx is not None
        return SummaryQuery(
            active_site=self._ctx.active_site,
            remote_site=self._ctx.remote_site,
            text=self._text,
            statuses=self._statuses,
            sort_key=COLUMNS[self._sort_column].sort_key,
            descending=self._descending,
            offset=offset,
            limit=limit,
            with_counts=counts,
        )

    def _timed(self, query: SummaryQuery) -> Callable[[], tuple[SummaryPage, float]]:
        """The page call for a worker thread; returns (page, seconds it took)."""
        store, ctx, clock = self._store, self._ctx, self._clock
        assert ctx is not None

        def run() -> tuple[SummaryPage, float]:
            started = time.perf_counter()
            page = store.summary_page(ctx.project, query, ctx.retry_cnt, clock())
            return page, time.perf_counter() - started

        return run

    def _set_loading(self, loading: bool) -> None:
        if loading != self._loading:
            self._loading = loading
            self.loading_changed.emit(loading)

    def _on_first_page(self, generation: int, result: tuple[SummaryPage, float]) -> None:
        if generation != self._generation:
            return
        page, _seconds = result
        self.about_to_reset.emit()
        rows = _unique(page.rows)
        keep = {r.repre_id for r in rows}
        self._overlay = {k: v for k, v in self._overlay.items() if k in keep}
        self._set_rows(rows)
        self._take_counts(page, fresh_query=True)
        self._set_loading(False)
        self.counts_changed.emit()
        self.page_loaded.emit()
        self.rows_changed.emit()
        if not page.status_counts and page.total:
            self._merge_due = True  # the status counts, now
        self._after_page()

    def _on_query_failed(self, generation: int, exc: BaseException) -> None:
        if generation != self._generation:
            return
        self._set_loading(False)
        self.failed.emit(_describe(exc))

    def _on_more(self, generation: int, result: tuple[SummaryPage, float]) -> None:
        if generation != self._generation:
            return
        self._fetching = False
        page, _seconds = result
        if self._removed_during_fetch:
            # Rows left the table meanwhile, so the offset skipped some: ask again.
            self.fetchMore()
            return
        new = [r for r in _unique(page.rows) if r.repre_id not in self._index]
        if new:
            self._insert_rows(len(self._rows), new)
            self.rows_changed.emit()
        self._take_counts(page)
        self.counts_changed.emit()
        self._after_page()

    def _on_more_failed(self, generation: int, exc: BaseException) -> None:
        if generation == self._generation:
            self._fetching = False
            self.failed.emit(_describe(exc))

    def _after_page(self) -> None:
        """Changes that arrived while a page was on its way may be missing from it."""
        changed, self._changed_during_page = self._changed_during_page, set()
        self._pending_ids |= changed & self._index.keys()
        self._pump()

    def _take_counts(self, page: SummaryPage, fresh_query: bool = False) -> None:
        self._total = page.total
        if page.status_counts or not page.total:
            self._counts = dict(page.status_counts)
            self._counts_ready = True
        elif fresh_query:
            self._counts_ready = False  # the old query's counts; the merge brings new ones

    # -- the update lane -------------------------------------------------------------------

    def _pump(self) -> None:
        """Start the next update if none is running: row refreshes first, then a due merge."""
        if self._lane_busy or self._ctx is None or self._loading:
            return
        if self._pending_ids:
            ids, self._pending_ids = set(self._pending_ids), set()
            self._start_lane(self._rows_job(ids), lambda rows: self._on_rows(ids, rows))
        elif self._merge_due:
            self._merge_due = self._merge_wanted = False
            limit = max(len(self._rows), self.page_size)
            self._start_lane(self._timed(self._query(0, limit)), self._on_merge)
        elif self._merge_wanted and not self._merge_timer.isActive():
            delay = min(self.max_merge_interval_s,
                        max(self.min_merge_interval_s, 3 * self._last_full_query_s))
            self._merge_timer.start(int(delay * 1000))

    def _on_merge_timer(self) -> None:
        self._merge_due = True
        self._pump()

    def _start_lane(self, job: Callable[[], Any], done: Callable[[Any], None]) -> None:
        self._lane_busy = True
        generation = self._generation

        def on_result(value: Any) -> None:
            self._lane_busy = False
            if generation == self._generation:
                done(value)
            self._pump()

        def on_error(exc: BaseException) -> None:
            self._lane_busy = False
            if generation == self._generation:
                self.failed.emit(_describe(exc))
            self._pump()

        self._runner.submit(job, on_result, on_error)

    def _rows_job(self, ids: set[str]) -> Callable[[], list[SummaryRow]]:
        store, ctx, clock = self._store, self._ctx, self._clock
        assert ctx is not None
        query = self._query(0, len(ids))

        def run() -> list[SummaryRow]:
            return store.summary_rows(ctx.project, query, ids, ctx.retry_cnt, clock())

        return run

    def _on_rows(self, requested: set[str], rows: list[SummaryRow]) -> None:
        found = set()
        for new in rows:
            found.add(new.repre_id)
            self._replace(new)
        gone = sorted((self._index[i] for i in requested - found if i in self._index), reverse=True)
        self._remove_rows(gone)
        self.rows_changed.emit()

    def _on_merge(self, result: tuple[SummaryPage, float]) -> None:
        """Insert rows that appeared inside the loaded window at their place, refresh the
        others and the counts; never move or drop a loaded row (that is a re-sort, which
        the user asks for by clicking the header)."""
        page, seconds = result
        self._last_full_query_s = seconds
        position = 0
        run: list[SummaryRow] = []  # consecutive new rows, inserted in one go
        for new in _unique(page.rows):
            at = self._index.get(new.repre_id)
            if at is None:
                run.append(new)
                continue
            if run:
                self._insert_rows(position, run)
                position += len(run)
                run = []
                at = self._index[new.repre_id]
            self._replace(new)
            position = max(position, at + 1)
        if run:
            self._insert_rows(position, run)
        self._take_counts(page)
        self.counts_changed.emit()
        self.rows_changed.emit()

    def _replace(self, new: SummaryRow) -> None:
        at = self._index.get(new.repre_id)
        if at is None:
            return
        self._rebase_overlay(new.repre_id)
        old = self._rows[at]
        self._rows[at] = new
        self._stale.discard(new.repre_id)
        self._write_row(at, old)

    def _remove_rows(self, descending_rows: list[int]) -> None:
        """Remove rows (given highest first), contiguous runs in one step."""
        if not descending_rows:
            return
        if self._fetching:
            self._removed_during_fetch = True
        runs: list[tuple[int, int]] = []
        for r in descending_rows:
            if runs and runs[-1][0] == r + 1:
                runs[-1] = (r, runs[-1][1])
            else:
                runs.append((r, r))
        self.rows_about_to_move.emit()
        for first, last in runs:
            for repre in self._rows[first:last + 1]:
                self._overlay.pop(repre.repre_id, None)
                self._stale.discard(repre.repre_id)
                self._index.pop(repre.repre_id, None)
            del self._rows[first:last + 1]
            del self._cells[first:last + 1]
            self._reindex(first)
            self.items.removeRows(first, last - first + 1)
        self.rows_moved.emit()
        self._total = max(len(self._rows), self._total - len(descending_rows))
        self.counts_changed.emit()

    def _reindex(self, start: int) -> None:
        for i in range(start, len(self._rows)):
            self._index[self._rows[i].repre_id] = i

    # -- overlay ---------------------------------------------------------------------------

    def _rebase_overlay(self, repre_id: str) -> None:
        """A fresh row from the store already holds finished files and whatever progress
        the engine wrote: keep only the advance made after this moment."""
        files = self._overlay.get(repre_id)
        if not files:
            return
        for key in [k for k, (live, _) in files.items() if live >= 1.0]:
            del files[key]
        for entry in files.values():
            entry[1] = entry[0]
        if not files:
            del self._overlay[repre_id]


def _same_cell(old: SummaryRow | None, new: SummaryRow, column: int) -> bool:
    """Whether a non-site cell shows the same thing for both rows."""
    if old is None:
        return False
    return cell_roles(old, column, *_NO_CELLS) == cell_roles(new, column, *_NO_CELLS)


_NO_CELLS = (SiteCell("", "", 0.0, Status.NOT_AVAILABLE, "", 0, None),) * 2


def _unique(rows: Iterable[SummaryRow]) -> list[SummaryRow]:
    seen: set[str] = set()
    result = []
    for row in rows:
        if row.repre_id not in seen:
            seen.add(row.repre_id)
            result.append(row)
    return result


def _describe(exc: BaseException) -> str:
    """SiteSync errors are written for users (UserFixableError already names the fix);
    anything else is a bug, shown with its type."""
    if isinstance(exc, SiteSyncError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"
