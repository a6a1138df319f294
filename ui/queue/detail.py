"""Detail view of one representation: every file, its size, its status on each site, the
tries, and the full error text (the table only has room for the latest one).

Files are read with ``Store.file_details`` on a worker thread and re-read when an event
touches the representation; transfer progress comes live from the bridge.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import QModelIndex, QObject, Qt
from PySide6.QtGui import QGuiApplication, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.events.types import FileProgress
from app.model import FileDetail, SiteState, Status, SummaryRow
from app.store.base import Store
from ui.queue.columns import pretty_date, pretty_size, pretty_version
from ui.queue.summary_model import QueueContext
from ui.queue.worker import TaskRunner

__all__ = ["PAGE_FILES", "DetailDialog", "FileDetailModel"]

_HEADERS = ("File", "Size", "Active site", "Remote site", "Status")
#: Files read at a time; "Show more" reads the next ones.
PAGE_FILES = 1000
_DISPLAY = int(Qt.ItemDataRole.DisplayRole)


def _site_text(state: SiteState | None, status: Status, live: float | None) -> str:
    if status is Status.IN_PROGRESS and live is not None:
        text = f"{status.label} {live:.0%}"
    elif status is Status.SYNCED and state is not None:
        text = f"{status.label} {pretty_date(state.created_dt)}"
    else:
        text = status.label
    if state is not None and state.tries and not state.available:
        text += f" ({state.tries} {'try' if state.tries == 1 else 'tries'})"
    return text


class FileDetailModel(QObject):
    """The files of one representation, written into a C++ ``QStandardItemModel``
    (``items``) so the table paints without calling Python (see ui.queue.cells)."""

    def __init__(self, ctx: QueueContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self._files: list[FileDetail] = []
        self._live: dict[tuple[str, str], float] = {}  # (file_id, side) -> fraction
        self.items = QStandardItemModel(0, len(_HEADERS), self)
        self.items.setHorizontalHeaderLabels([
            _HEADERS[0], _HEADERS[1], f"{_HEADERS[2]}: {ctx.active_site}",
            f"{_HEADERS[3]}: {ctx.remote_site}", _HEADERS[4]])

    @property
    def context(self) -> QueueContext:
        return self._ctx

    def rowCount(self) -> int:
        return len(self._files)

    def index(self, row: int, column: int) -> QModelIndex:
        return self.items.index(row, column)

    def file(self, row: int) -> FileDetail:
        return self._files[row]

    def files(self) -> list[FileDetail]:
        return list(self._files)

    def set_files(self, files: list[FileDetail]) -> None:
        """Update the rows in place when the files are the same or more of them (a
        refresh, the next page), so the selection survives; rebuild them otherwise."""
        self._live = {k: v for k, v in self._live.items() if v < 1.0}
        old = [f.file_id for f in self._files]
        new = [f.file_id for f in files]
        self._files = list(files)
        if new[:len(old)] == old:  # the same files, maybe more of them ("Show more")
            if len(new) > len(old):
                self.items.insertRows(len(old), len(new) - len(old))
            for row in range(len(files)):
                self._write(row, create=row >= len(old))
            return
        self.items.removeRows(0, self.items.rowCount())
        self.items.insertRows(0, len(files))
        for row in range(len(files)):
            self._write(row, create=True)

    def apply_progress(self, file_id: str, side: str, fraction: float) -> None:
        self._live[(file_id, side)] = fraction
        for row, detail in enumerate(self._files):
            if detail.file_id == file_id:
                self._write(row)

    def _write(self, row: int, create: bool = False) -> None:
        detail = self._files[row]
        texts = (
            detail.path.rsplit("/", 1)[-1],
            pretty_size(detail.size),
            _site_text(detail.active, detail.active_status,
                       self._live.get((detail.file_id, "active"))),
            _site_text(detail.remote, detail.remote_status,
                       self._live.get((detail.file_id, "remote"))),
            detail.status.label,
        )
        tips = (detail.path, "", _error(detail.active), _error(detail.remote), "")
        for column, (text, tip) in enumerate(zip(texts, tips, strict=True)):
            index = self.items.index(row, column)
            if create:  # creates the item in C++ (setItemData needs one to exist)
                self.items.setData(index, text, _DISPLAY)
            roles: dict[int, object] = {_DISPLAY: text}
            if tip:
                roles[int(Qt.ItemDataRole.ToolTipRole)] = tip
            if column == 1:
                roles[int(Qt.ItemDataRole.TextAlignmentRole)] = int(
                    Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.items.setItemData(index, roles)


def _error(state: SiteState | None) -> str:
    return state.error or "" if state is not None else ""


class DetailDialog(QDialog):
    """Non-modal window for one representation; :meth:`refresh` re-reads its files."""

    def __init__(self, store: Store, runner: TaskRunner, ctx: QueueContext, row: SummaryRow,
                 parent: QWidget | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(parent)
        self._store, self._runner, self._ctx, self._clock = store, runner, ctx, clock
        self.repre_id = row.repre_id
        self._files_count = row.files_count
        self._limit = PAGE_FILES
        self.setWindowTitle(f"Sync detail: {row.asset} / {row.subset} / "
                            f"{pretty_version(row.version)} / {row.representation}")
        self.resize(1000, 460)

        self.title = QLabel(f"<b>{row.asset}</b> / {row.subset} / {pretty_version(row.version)}"
                            f" / {row.representation} &nbsp; ({ctx.project}: {ctx.active_site} ↔ "
                            f"{ctx.remote_site})")
        self.model = FileDetailModel(ctx, self)
        self.table = QTableView()
        self.table.setModel(self.model.items)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column, width in ((1, 80), (2, 200), (3, 200), (4, 100)):
            self.table.setColumnWidth(column, width)
        self.table.selectionModel().currentRowChanged.connect(self._show_error)

        self.error_view = QPlainTextEdit()
        self.error_view.setReadOnly(True)
        self.error_view.setPlaceholderText("Select a file to see its errors.")
        self.copy_button = QPushButton("Copy error")
        self.copy_button.clicked.connect(self._copy_error)
        self.status_label = QLabel("Loading…")
        self.more_button = QPushButton(f"Show {PAGE_FILES:,} more files")
        self.more_button.hide()
        self.more_button.clicked.connect(self.show_more)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.error_view)
        splitter.setSizes([320, 120])
        buttons = QHBoxLayout()
        buttons.addWidget(self.status_label, 1)
        buttons.addWidget(self.more_button)
        buttons.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(splitter, 1)
        layout.addLayout(buttons)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the files shown so far (the first PAGE_FILES, more on request: an image
        sequence can have 100,000 frames)."""
        store, ctx, clock, repre_id, limit = (self._store, self._ctx, self._clock, self.repre_id,
                                              self._limit)
        self._runner.submit(
            lambda: store.file_details(ctx.project, repre_id, ctx.active_site, ctx.remote_site,
                                       ctx.retry_cnt, clock(), limit=limit),
            self._on_files, self._on_failed, channel=f"detail:{id(self)}",
        )

    def show_more(self) -> None:
        self._limit += PAGE_FILES
        self.refresh()

    def representations_changed(self, repre_ids: set[str]) -> None:
        if self.repre_id in repre_ids:
            self.refresh()

    def apply_progress(self, batch: dict[Any, FileProgress]) -> None:
        for event in batch.values():
            if event.project != self._ctx.project or event.repre_id != self.repre_id:
                continue
            side = self._ctx.side_of(event.target_site)
            if side is not None:
                fraction = min(1.0, event.bytes_done / event.size) if event.size else 1.0
                self.model.apply_progress(event.file_id, side, fraction)

    def _on_files(self, files: list[FileDetail]) -> None:
        self.model.set_files(files)
        failed = sum(f.status is Status.FAILED for f in files)
        synced = sum(f.status is Status.SYNCED for f in files)
        more = len(files) >= self._limit and self._files_count > len(files)
        shown = f"{len(files):,} of {self._files_count:,} files" if more else f"{len(files):,} files"
        self.status_label.setText(f"{shown}: {synced:,} synced, {failed:,} failed")
        self.more_button.setVisible(more)
        self._show_error(self.table.currentIndex())

    def _on_failed(self, exc: BaseException) -> None:
        self.status_label.setText(f"Could not read the files: {exc}")

    def error_text(self, row: int) -> str:
        detail = self.model.file(row)
        blocks = []
        for site, state in ((self._ctx.active_site, detail.active),
                            (self._ctx.remote_site, detail.remote)):
            if state is not None and state.error:
                when = pretty_date(state.last_failed_dt)
                blocks.append(f"{site}: {state.tries} tries, last failed {when}\n{state.error}")
        return "\n\n".join(blocks)

    def _show_error(self, current: QModelIndex) -> None:
        if not current.isValid() or current.row() >= self.model.rowCount():
            self.error_view.setPlainText("")
            return
        detail = self.model.file(current.row())
        text = self.error_text(current.row())
        self.error_view.setPlainText(f"{detail.path}\n\n{text or 'No errors.'}")

    def _copy_error(self) -> None:
        rows = [self.table.currentIndex().row()] if self.table.currentIndex().isValid() else \
            range(self.model.rowCount())
        text = "\n\n".join(t for r in rows if (t := self.error_text(r)))
        QGuiApplication.clipboard().setText(text)
        self.status_label.setText("Error text copied" if text else "No error to copy")
