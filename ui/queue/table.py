"""The representation table view: keeps the rows the user looks at in place.

Rows inserted or removed above the screen (a publish landing in a sorted window, a row
leaving the status filter) would otherwise slide the content under the user's eyes.
Before such a change the view notes the representation at the top of the screen and
afterwards scrolls so that it is at the top again; a view scrolled to the very top stays
there, so new rows show up. Selection needs no help: it lives on persistent indexes and
the model never resets for live updates.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from ui.queue.columns import COLUMNS, column_index
from ui.queue.site_delegate import SiteDelegate
from ui.queue.summary_model import SummaryModel

__all__ = ["QueueTable"]

_ANCHORS = 8  # rows below the top remembered, in case the top one leaves


class QueueTable(QTableView):
    def __init__(self, model: SummaryModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setModel(model)
        self._model = model
        self._anchor: list[str] | None = None
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerItem)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.setMouseTracking(True)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(26)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.delegate = SiteDelegate(self)
        for key in ("active", "remote"):
            self.setItemDelegateForColumn(column_index(key), self.delegate)
        for i, column in enumerate(COLUMNS):
            self.setColumnWidth(i, column.width)
        self.horizontalHeader().setStretchLastSection(True)
        self.horizontalHeader().setSortIndicator(*model.sort_order)
        self.setSortingEnabled(True)
        model.rowsAboutToBeInserted.connect(self._note_anchor)
        model.rowsAboutToBeRemoved.connect(self._note_anchor)
        model.rowsInserted.connect(self._restore_anchor)
        model.rowsRemoved.connect(self._restore_anchor)
        model.set_visible_rows(self.visible_rows)

    def visible_rows(self) -> tuple[int, int] | None:
        """First and last row on screen; None when nothing is laid out yet."""
        rows = self._model.rowCount()
        if not rows or not self.isVisible():
            return None
        first = self.rowAt(0)
        last = self.rowAt(self.viewport().height() - 1)
        return (max(0, first), rows - 1 if last < 0 else last)

    def top_repre_id(self) -> str | None:
        top = self.rowAt(0)
        return self._model.row(top).repre_id if top >= 0 else None

    def _note_anchor(self, _parent: QModelIndex | QPersistentModelIndex, _first: int,
                     _last: int) -> None:
        bar = self.verticalScrollBar()
        top = bar.value()
        if top <= 0 or self._anchor is not None:
            return
        rows = self._model.rowCount()
        self._anchor = [self._model.row(r).repre_id for r in range(top, min(rows, top + _ANCHORS))]

    def _restore_anchor(self, _parent: QModelIndex | QPersistentModelIndex, _first: int,
                        _last: int) -> None:
        anchor, self._anchor = self._anchor, None
        if not anchor:
            return
        for repre_id in anchor:
            row = self._model.row_of(repre_id)
            if row is not None:
                self.updateGeometries()  # the scroll range still has the old row count
                self.verticalScrollBar().setValue(row)
                return
