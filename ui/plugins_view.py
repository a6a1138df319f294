"""The hook plugins as a table: state, place in the event log, backlog, errors.

A standalone widget the tray or the main window mounts. It is fed by a *status source*,
normally :meth:`app.hooks.HookRunner.status`, which it calls every ``interval_ms`` on a
worker thread (:class:`ui.queue.worker.TaskRunner`): the runner's status is cheap, but
the GUI thread never calls into the hooks or the database at all, so nothing there can
freeze the window. A source that fails is shown in the header line, not raised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt, QTimer
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QHeaderView, QLabel, QTableView, QVBoxLayout, QWidget

from app.hooks.status import HooksStatus, PluginStatus
from ui.queue.worker import TaskRunner

__all__ = ["PluginsModel", "PluginsView", "StatusSource"]

StatusSource = Callable[[], HooksStatus]
_Index = QModelIndex | QPersistentModelIndex

#: (header, value of a PluginStatus as shown)
COLUMNS: tuple[tuple[str, Callable[[PluginStatus], str]], ...] = (
    ("Plugin", lambda p: p.name),
    ("State", lambda p: p.state if p.busy_s is None or p.state != "stuck"
     else f"stuck ({p.busy_s:.0f} s)"),
    ("At event", lambda p: str(p.last_id)),
    ("Behind", lambda p: str(p.behind)),
    ("Backlog", lambda p: str(p.backlog) if p.backlog else ""),
    ("Handled", lambda p: str(p.delivered)),
    ("Problem", lambda p: "" if not p.error else (
        f"event {p.error_event}: {p.error}" if p.error_event is not None else p.error)),
)
_PROBLEM_STATES = frozenset({"failed", "load error", "stuck", "offline"})
_WARNING_STATES = frozenset({"retrying", "catching up", "waiting"})
_NUMERIC = frozenset({"At event", "Behind", "Backlog", "Handled"})


class PluginsModel(QAbstractTableModel):
    """Rows = plugins in run order. Updated in place so selection and scroll stay put."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[PluginStatus] = []

    @property
    def rows(self) -> list[PluginStatus]:
        return list(self._rows)

    def set_plugins(self, plugins: tuple[PluginStatus, ...]) -> None:
        new = list(plugins)
        if [p.name for p in new] != [p.name for p in self._rows]:
            self.beginResetModel()
            self._rows = new
            self.endResetModel()
            return
        changed = [i for i, (a, b) in enumerate(zip(self._rows, new, strict=True)) if a != b]
        self._rows = new
        if changed:
            self.dataChanged.emit(self.index(min(changed), 0),
                                  self.index(max(changed), len(COLUMNS) - 1))

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section][0]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        plugin = self._rows[index.row()]
        header, value = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return value(plugin)
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [f"{plugin.name} ({plugin.path})", f"state: {plugin.state}"]
            lines += [f"callback: {c}" for c in plugin.callbacks]
            if plugin.error:
                lines.append(f"problem: {COLUMNS[-1][1](plugin)}")
            return "\n".join(lines)
        if role == Qt.ItemDataRole.TextAlignmentRole and header in _NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and header in ("State", "Problem"):
            if plugin.state in _PROBLEM_STATES:
                return QBrush(QColor("#c62828"))
            if plugin.state in _WARNING_STATES:
                return QBrush(QColor("#b26a00"))
        return None


class PluginsView(QWidget):
    """Header line (runner state, folder problems) over the plugins table.

    ``source`` may be given later with :meth:`set_source` (the tray creates the widget
    before the runner). :meth:`refresh` asks for a new status at once.
    """

    def __init__(self, source: StatusSource | None = None, parent: QWidget | None = None,
                 interval_ms: int = 1000) -> None:
        super().__init__(parent)
        self._source = source
        self._tasks = TaskRunner(self, max_threads=1)
        self.model = PluginsModel(self)
        self.header = QLabel("Hooks: not started", self)
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        layout = QVBoxLayout(self)
        layout.addWidget(self.header)
        layout.addWidget(self.table)
        self.last_status: HooksStatus | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.refresh()

    def set_source(self, source: StatusSource | None) -> None:
        self._source = source
        self.refresh()

    def refresh(self) -> None:
        """Ask the source on the worker thread; the answer updates the table later."""
        source = self._source
        if source is None:
            self._show_text("Hooks: not started")
            return
        self._tasks.submit(source, self._show, self._show_error, channel="status")

    def closeEvent(self, event: Any) -> None:
        self._timer.stop()
        self._tasks.shutdown(2000)
        super().closeEvent(event)

    def _show(self, status: HooksStatus) -> None:
        self.last_status = status
        self.model.set_plugins(status.plugins)
        count = len(status.plugins)
        failing = sum(1 for p in status.plugins if not p.healthy)
        parts = [f"Hooks: {status.state}"]
        if status.state == "running":
            parts.append(f"{count} plugin{'s' if count != 1 else ''}, newest event {status.head}")
            if failing:
                parts.append(f"{failing} need{'s' if failing == 1 else ''} attention")
        text = ", ".join(parts)
        if status.message:
            text += f". {status.message}"
        for problem in status.problems:
            text += f"\n! {problem}"
        self._show_text(text)

    def _show_error(self, exc: BaseException) -> None:
        self._show_text(f"Hooks: status unavailable ({exc or type(exc).__name__})")

    def _show_text(self, text: str) -> None:
        if self.header.text() != text:
            self.header.setText(text)
