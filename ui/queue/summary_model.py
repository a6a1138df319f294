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
  signal as a per-file overlay; only rows on screen are repainted.

All store work is serialised on one "update lane" so an older answer can never overwrite
a newer one; page answers carry the query generation and are dropped when stale.
Statuses are the store's (``app.status``), with the project's ``retry_cnt``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor

from app.errors import SiteSyncError
from app.events.types import FileProgress
from app.model import SideSummary, Status, SummaryPage, SummaryQuery, SummaryRow
from app.store.base import Store
from ui.queue.columns import COLUMNS, column_index, pretty_date, pretty_size, pretty_version
from ui.queue.worker import TaskRunner

__all__ = [
    "ROW_ROLE",
    "SITE_ROLE",
    "STATUS_ROLE",
    "QueueContext",
    "SiteCell",
    "SummaryModel",
]

SITE_ROLE = int(Qt.ItemDataRole.UserRole) + 1
ROW_ROLE = int(Qt.ItemDataRole.UserRole) + 2
STATUS_ROLE = int(Qt.ItemDataRole.UserRole) + 3

_ACTIVE = column_index("active")
_REMOTE = column_index("remote")
_STATUS = column_index("status")
_RIGHT = {column_index(k) for k in ("version", "files", "size", "priority")}
_STATUS_COLORS = {
    Status.FAILED: QColor(200, 40, 40),
    Status.PAUSED: QColor(150, 110, 0),
    Status.IN_PROGRESS: QColor(30, 100, 200),
    Status.SYNCED: QColor(40, 140, 60),
}

Index = QModelIndex | QPersistentModelIndex


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


class SiteCell(NamedTuple):
    """What the site delegate paints for one side of a row."""

    site: str
    provider: str
    progress: float
    status: Status
    date: str
    tries: int
    error: str | None


class SummaryModel(QAbstractTableModel):
    """See the module docstring. Construct in the GUI thread; call :meth:`set_context`."""

    #: A new query started (True) or its first page arrived (False).
    loading_changed = Signal(bool)
    #: The first page of a new query was applied (after the model reset).
    page_loaded = Signal()
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
        self._ctx: QueueContext | None = None
        self._text = ""
        self._statuses: frozenset[Status] = frozenset()
        self._sort_column = column_index("asset")
        self._descending = False

        self._rows: list[SummaryRow] = []
        self._index: dict[str, int] = {}
        self._total = 0
        self._counts: dict[Status, int] = {}
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

        # Live progress: repre_id -> {(side, file_id): [live fraction, baseline]}.
        self._overlay: dict[str, dict[tuple[str, str], list[float]]] = {}
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
    def idle(self) -> bool:
        """No query, page or update pending (tests and the benchmark wait for this)."""
        return not (self._loading or self._fetching or self._lane_busy or self._pending_ids
                    or self._merge_wanted or self._merge_due)

    def set_visible_rows(self, provider: Callable[[], tuple[int, int] | None]) -> None:
        """``provider()`` gives the first and last row on screen (None: unknown, all)."""
        self._visible = provider

    def set_context(self, ctx: QueueContext | None) -> None:
        """Show another project or site pair: the table empties and the first page loads."""
        if ctx == self._ctx:
            return
        self._ctx = ctx
        self._overlay.clear()
        self.beginResetModel()
        self._rows, self._index, self._total, self._counts = [], {}, 0, {}
        self.endResetModel()
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
        descending = order == Qt.SortOrder.DescendingOrder
        if not 0 <= column < len(COLUMNS):
            return
        if (column, descending) != (self._sort_column, self._descending):
            self._sort_column, self._descending = column, descending
            self.requery()

    @property
    def sort_order(self) -> tuple[int, Qt.SortOrder]:
        order = Qt.SortOrder.DescendingOrder if self._descending else Qt.SortOrder.AscendingOrder
        return self._sort_column, order

    def requery(self) -> None:
        """Run the current query again from the first page (the model resets when it
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
        query = self._query(0, self.page_size)
        generation = self._generation
        self._runner.submit(
            self._timed(query),
            lambda result: self._on_first_page(generation, result),
            lambda exc: self._on_query_failed(generation, exc),
            channel="page",
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

    def row(self, row: int) -> SummaryRow:
        return self._rows[row]

    def row_of(self, repre_id: str) -> int | None:
        return self._index.get(repre_id)

    def rows(self) -> list[SummaryRow]:
        return list(self._rows)

    # -- live progress ---------------------------------------------------------------------

    def apply_progress(self, batch: dict[Any, FileProgress]) -> None:
        """Bridge ``progress``: latest FileProgress per (project, repre, file, target)."""
        ctx = self._ctx
        if ctx is None:
            return
        touched: dict[int, set[int]] = {}
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
            touched.setdefault(self._index[event.repre_id], set()).add(
                _ACTIVE if side == "active" else _REMOTE)
        self._repaint(touched)

    def file_finished(self, project: str, repre_id: str, file_id: str, target_site: str,
                      synced: bool) -> None:
        """A transfer ended: a synced file counts as whole until its row is re-read; a
        failed or stopped one drops back to what the store says."""
        ctx = self._ctx
        if ctx is None or project != ctx.project or repre_id not in self._index:
            return
        side = ctx.side_of(target_site)
        if side is None:
            return
        files = self._overlay.setdefault(repre_id, {})
        if synced:
            files.setdefault((side, file_id), [0.0, 0.0])[0] = 1.0
        else:
            files.pop((side, file_id), None)
        self._repaint({self._index[repre_id]: {_ACTIVE if side == "active" else _REMOTE}})

    def side_progress(self, row: SummaryRow, side: str) -> float:
        """The store's mean progress of the side plus the live overlay's advance."""
        summary = row.active if side == "active" else row.remote
        progress = summary.progress
        files = self._overlay.get(row.repre_id)
        if files and row.files_count:
            gain = sum(max(0.0, live - base) for (s, _), (live, base) in files.items() if s == side)
            progress += gain / row.files_count
        return min(1.0, progress)

    # -- Qt model --------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt signature
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt signature
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            label = COLUMNS[section].label
            if self._ctx is not None and section in (_ACTIVE, _REMOTE):
                site = self._ctx.active_site if section == _ACTIVE else self._ctx.remote_site
                label = f"{label}: {site}"
            return label
        if role == Qt.ItemDataRole.ToolTipRole and section in (_ACTIVE, _REMOTE):
            return "Provider, progress and the date the files arrived (or last failed)"
        return None

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008 - Qt signature
        if parent.isValid() or self._ctx is None or self._loading or self._fetching:
            return False
        return len(self._rows) < self._total

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008 - Qt signature
        if not self.canFetchMore(parent):
            return
        self._fetching = True
        self._removed_during_fetch = False
        generation = self._generation
        query = self._query(len(self._rows), self.page_size)
        self._runner.submit(
            self._timed(query),
            lambda result: self._on_more(generation, result),
            lambda exc: self._on_more_failed(generation, exc),
            channel="more",
        )

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        row = self._rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, column)
        if role == SITE_ROLE and column in (_ACTIVE, _REMOTE):
            return self._site_cell(row, "active" if column == _ACTIVE else "remote")
        if role == ROW_ROLE:
            return row
        if role == STATUS_ROLE:
            return row.status
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, column)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in _RIGHT:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and column == _STATUS:
            return _STATUS_COLORS.get(row.status)
        return None

    # -- cells -----------------------------------------------------------------------------

    def _display(self, row: SummaryRow, column: int) -> str | int | None:
        key = COLUMNS[column].key
        if key == "asset":
            return row.asset
        if key == "subset":
            return row.subset
        if key == "version":
            return pretty_version(row.version)
        if key == "representation":
            return row.representation
        if key in ("active", "remote"):
            cell = self._site_cell(row, key)
            return f"{cell.progress:.0%} {cell.date or cell.status.label}"
        if key == "files":
            return row.files_count
        if key == "size":
            return pretty_size(row.size)
        if key == "priority":
            return row.priority
        if key == "status":
            return row.status.label
        return None

    def _site_cell(self, row: SummaryRow, side: str) -> SiteCell:
        ctx = self._ctx
        summary: SideSummary = row.active if side == "active" else row.remote
        site = provider = ""
        if ctx is not None:
            site = ctx.active_site if side == "active" else ctx.remote_site
            provider = ctx.active_provider if side == "active" else ctx.remote_provider
        return SiteCell(site, provider, self.side_progress(row, side), summary.status,
                        pretty_date(summary.updated_dt), summary.tries, summary.error)

    def _tooltip(self, row: SummaryRow, column: int) -> str | None:
        if column in (_ACTIVE, _REMOTE):
            cell = self._site_cell(row, "active" if column == _ACTIVE else "remote")
            lines = [f"{cell.site} ({cell.provider or 'unknown provider'}): {cell.status.label}, "
                     f"{cell.progress:.0%}"]
            if cell.tries:
                lines.append(f"failed tries: {cell.tries}")
            if cell.error:
                lines.append(f"last error: {cell.error}")
            return "\n".join(lines)
        if column == _STATUS:
            errors = [f"{side}: {s.error}" for side, s in (("active", row.active),
                                                             ("remote", row.remote)) if s.error]
            return "\n".join([row.status.label, *errors])
        return None

    # -- queries ---------------------------------------------------------------------------

    def _query(self, offset: int, limit: int) -> SummaryQuery:
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
        page, seconds = result
        self._last_full_query_s = seconds
        self.beginResetModel()
        self._rows = _unique(page.rows)
        self._reindex(0)
        self._take_counts(page)
        self._overlay = {k: v for k, v in self._overlay.items() if k in self._index}
        self.endResetModel()
        self._set_loading(False)
        self.counts_changed.emit()
        self.page_loaded.emit()
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
        page, seconds = result
        self._last_full_query_s = seconds
        if self._removed_during_fetch:
            # Rows left the table meanwhile, so the offset skipped some: ask again.
            self.fetchMore()
            return
        new = [r for r in _unique(page.rows) if r.repre_id not in self._index]
        if new:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            self._rows.extend(new)
            self._reindex(first)
            self.endInsertRows()
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

    def _take_counts(self, page: SummaryPage) -> None:
        self._total = page.total
        self._counts = dict(page.status_counts)

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

    def _on_merge(self, result: tuple[SummaryPage, float]) -> None:
        """Insert rows that appeared inside the loaded window at their place, refresh the
        others and the counts; never move or drop a loaded row (that is a re-sort, which
        the user asks for by clicking the header)."""
        page, seconds = result
        self._last_full_query_s = seconds
        position = 0
        for new in _unique(page.rows):
            at = self._index.get(new.repre_id)
            if at is not None:
                self._replace(new)
                position = max(position, at + 1)
                continue
            self.beginInsertRows(QModelIndex(), position, position)
            self._rows.insert(position, new)
            self._reindex(position)
            self.endInsertRows()
            position += 1
        self._take_counts(page)
        self.counts_changed.emit()

    def _replace(self, new: SummaryRow) -> None:
        at = self._index.get(new.repre_id)
        if at is None:
            return
        self._rebase_overlay(new.repre_id)
        if self._rows[at] != new:
            self._rows[at] = new
            self.dataChanged.emit(self.index(at, 0), self.index(at, len(COLUMNS) - 1))

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
        for first, last in runs:
            self.beginRemoveRows(QModelIndex(), first, last)
            for repre in self._rows[first:last + 1]:
                self._overlay.pop(repre.repre_id, None)
                self._index.pop(repre.repre_id, None)
            del self._rows[first:last + 1]
            self._reindex(first)
            self.endRemoveRows()
        self._total = max(len(self._rows), self._total - len(descending_rows))
        self.counts_changed.emit()

    def _reindex(self, start: int) -> None:
        for i in range(start, len(self._rows)):
            self._index[self._rows[i].repre_id] = i
        if start == 0:
            self._index = {r.repre_id: i for i, r in enumerate(self._rows)}

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

    def _repaint(self, touched: dict[int, set[int]]) -> None:
        visible = self._visible()
        for row, columns in touched.items():
            if visible is not None and not visible[0] <= row <= visible[1]:
                continue
            for column in columns:
                index = self.index(row, column)
                self.dataChanged.emit(index, index, [SITE_ROLE, Qt.ItemDataRole.DisplayRole])


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

