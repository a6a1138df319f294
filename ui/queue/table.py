"""The representation table view: asks for pages as the user scrolls, sorts on the
server, and keeps the rows the user looks at in place.

Its model is the controller's C++ ``QStandardItemModel`` (see :mod:`ui.queue.cells` for
why), so Qt's own ``fetchMore``/``sort`` hooks would not reach the store; the view calls
:meth:`SummaryModel.fetchMore` when scrolled near the end and :meth:`SummaryModel.sort`
from the header's sort indicator.

Rows inserted or removed above the screen (a publish landing in a sorted window, a row
leaving the status filter) would otherwise slide the content under the user's eyes.
Before such a change the view notes the representation at the top of the screen and
afterwards scrolls so that it is at the top again; a view scrolled to the very top stays
there, so new rows show up. Selection needs no help: it lives on persistent indexes and
live updates never reset the model.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from ui.queue.cells import ICON_SIZE
from ui.queue.columns import COLUMNS
from ui.queue.summary_model import SummaryModel

__all__ = ["QueueTable"]

_ANCHORS = 8  # rows below the top remembered, in case the top one leaves
_FETCH_MARGIN = 20  # rows before the end at which the next page is asked for


class QueueTable(QTableView):
    def __init__(self, model: SummaryModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = model
        self.setModel(model.items)
        self._anchor: list[str] | None = None
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerItem)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.setIconSize(ICON_SIZE)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(24)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        for i, column in enumerate(COLUMNS):
            self.setColumnWidth(i, column.width)
        header = self.horizontalHeader()
        header.setStretchLastSection(True)
        header.setSectionsClickable(True)
        header.setSortIndicatorShown(True)
        header.setSortIndicator(*model.sort_order)
        header.sortIndicatorChanged.connect(model.sort)

        self._fetch_timer = QTimer(self)
        self._fetch_timer.setSingleShot(True)
        self._fetch_timer.timeout.connect(self.fetch_if_needed)
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._scrolled)
        bar.rangeChanged.connect(lambda _lo, _hi: self._fetch_timer.start(0))
        model.page_loaded.connect(self._new_query)
        model.rows_changed.connect(lambda: self._fetch_timer.start(0))
        model.rows_about_to_move.connect(self._note_anchor)
        model.rows_moved.connect(self._restore_anchor)
        model.set_visible_rows(self.visible_rows)
        model.items.headerDataChanged.connect(self._fit_headers)
        self._fit_headers()

    def _fit_headers(self, *_args: object) -> None:
        """Widen a column whose label no longer fits (a site name longer than the column
        would otherwise be cut off at both ends); never narrows what the user widened."""
        header = self.horizontalHeader()
        for i in range(len(COLUMNS)):
            wanted = header.sectionSizeHint(i)
            if self.columnWidth(i) < wanted:
                self.setColumnWidth(i, wanted)

    def visible_rows(self) -> tuple[int, int] | None:
        """First and last row on screen; None when nothing is laid out yet."""
        rows = self.summary.rowCount()
        if not rows or not self.isVisible():
            return None
        first = self.rowAt(0)
        last = self.rowAt(self.viewport().height() - 1)
        return (max(0, first), rows - 1 if last < 0 else last)

    def top_repre_id(self) -> str | None:
        top = self.rowAt(0)
        return self.summary.row(top).repre_id if top >= 0 else None

    def fetch_if_needed(self) -> None:
        """Ask for the next page when the last loaded rows are (nearly) on screen."""
        if not self.isVisible() or not self.summary.canFetchMore():
            return
        visible = self.visible_rows()
        last = visible[1] if visible is not None else -1
        if last >= self.summary.rowCount() - _FETCH_MARGIN:
            self.summary.fetchMore()

    def _scrolled(self, _value: int) -> None:
        self.summary.show_visible()
        self._fetch_timer.start(0)

    def _new_query(self) -> None:
        self.scrollToTop()
        self._fetch_timer.start(0)

    def _note_anchor(self) -> None:
        top = self.verticalScrollBar().value()
        if top <= 0 or self._anchor is not None:
            return
        rows = self.summary.rowCount()
        self._anchor = [self.summary.row(r).repre_id for r in range(top, min(rows, top + _ANCHORS))]

    def _restore_anchor(self) -> None:
        anchor, self._anchor = self._anchor, None
        if not anchor:
            return
        for repre_id in anchor:
            row = self.summary.row_of(repre_id)
            if row is not None:
                self.updateGeometries()  # the scroll range still has the old row count
                self.verticalScrollBar().setValue(row)
                return
