"""The Sync Queue's project list: every project in the store, whether it syncs, and a
pause/resume switch that persists (OpenPype kept project pauses in memory and lost them).

The list is read on a worker thread; a project's state text comes from the store (its
persisted pause flag) and the settings (enabled, site pair, configuration errors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app.errors import SiteSyncError
from app.model import ProjectInfo
from app.settings import ProjectSettings, Settings
from app.store.base import Store
from ui.icons import state_icon
from ui.queue.worker import TaskRunner

__all__ = ["ProjectEntry", "ProjectList"]

_NAME_ROLE = int(Qt.ItemDataRole.UserRole) + 1


@dataclass(frozen=True)
class ProjectEntry:
    """One project as the list shows it."""

    name: str
    paused: bool
    representations: int
    settings: ProjectSettings | None
    problem: str = ""

    @property
    def enabled(self) -> bool:
        return self.settings is not None and self.settings.syncing

    @property
    def state(self) -> str:
        if self.problem:
            return "settings error"
        if not self.enabled:
            return "sync disabled"
        return "paused" if self.paused else "syncing"


def project_entries(infos: list[ProjectInfo], settings: Settings) -> list[ProjectEntry]:
    entries = []
    for info in infos:
        try:
            ps = settings.project(info.name)
            if ps.syncing:
                ps.site(ps.active_site)
                ps.site(ps.remote_site)
        except SiteSyncError as exc:
            entries.append(ProjectEntry(info.name, info.paused, info.representations, None, str(exc)))
            continue
        entries.append(ProjectEntry(info.name, info.paused, info.representations, ps))
    return entries


class ProjectList(QWidget):
    """Emits ``project_selected`` with the entry of the chosen project."""

    project_selected = Signal(object)  # ProjectEntry | None
    message = Signal(str)

    def __init__(self, store: Store, settings: Settings, runner: TaskRunner,
                 set_paused: Callable[[str, bool], None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store, self._settings, self._runner = store, settings, runner
        self._set_paused = set_paused
        self._entries: dict[str, ProjectEntry] = {}
        self._wanted: str | None = None

        self.list = QListWidget()
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.list.currentItemChanged.connect(self._current_changed)
        self.pause_button = QPushButton("Pause project")
        self.pause_button.setEnabled(False)
        self.pause_button.clicked.connect(self._toggle_pause)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Projects"))
        layout.addWidget(self.list, 1)
        layout.addWidget(self.pause_button)

    @property
    def current(self) -> ProjectEntry | None:
        item = self.list.currentItem()
        return self._entries.get(item.data(_NAME_ROLE)) if item is not None else None

    def entry(self, name: str) -> ProjectEntry | None:
        return self._entries.get(name)

    def update_settings(self, settings: Settings) -> None:
        self._settings = settings
        self.refresh()

    def select(self, name: str) -> None:
        """Select ``name`` now, or as soon as the list has it."""
        self._wanted = name
        for i in range(self.list.count()):
            if self.list.item(i).data(_NAME_ROLE) == name:
                self.list.setCurrentRow(i)
                return

    def refresh(self) -> None:
        store, settings = self._store, self._settings
        self._runner.submit(lambda: project_entries(store.list_projects(), settings),
                            self._on_entries, self._on_failed, channel="projects")

    def _on_entries(self, entries: list[ProjectEntry]) -> None:
        previous = self.current
        keep = self._wanted or (previous.name if previous else None)
        self._entries = {e.name: e for e in entries}
        names = [e.name for e in entries]
        shown = [self.list.item(i).data(_NAME_ROLE) for i in range(self.list.count())]
        self.list.blockSignals(True)
        if shown != names:
            self.list.clear()
            for entry in entries:
                item = QListWidgetItem()
                item.setData(_NAME_ROLE, entry.name)
                self.list.addItem(item)
        for i, entry in enumerate(entries):
            self._decorate(self.list.item(i), entry)
        self.list.blockSignals(False)
        target = keep if keep in self._entries else (names[0] if names else None)
        if target is not None:
            row = names.index(target)
            if self.list.currentRow() != row:
                self.list.setCurrentRow(row)  # emits project_selected
            else:
                self._current_changed(self.list.currentItem(), None)
        else:
            self.project_selected.emit(None)
        self._wanted = None

    def _decorate(self, item: QListWidgetItem, entry: ProjectEntry) -> None:
        if entry.state == "sync disabled":
            item.setIcon(QApplication.style().standardIcon(
                QStyle.StandardPixmap.SP_DialogCancelButton))
        else:  # the tray's colours: green syncs, grey paused, red cannot sync
            item.setIcon(state_icon({"syncing": "idle", "paused": "paused",
                                     "settings error": "error"}[entry.state]))
        suffix = "" if entry.state == "syncing" else f"  ({entry.state})"
        item.setText(f"{entry.name}{suffix}")
        tip = f"{entry.name}: {entry.representations} representations, {entry.state}"
        if entry.settings is not None and entry.enabled:
            tip += f"\n{entry.settings.active_site} ↔ {entry.settings.remote_site}"
        if entry.problem:
            tip += f"\n{entry.problem}"
        item.setToolTip(tip)
        flags = item.flags()
        item.setForeground(self.palette().color(
            self.palette().ColorGroup.Disabled if not entry.enabled else self.palette().ColorGroup.Active,
            self.palette().ColorRole.Text))
        item.setFlags(flags)

    def _on_failed(self, exc: BaseException) -> None:
        self.message.emit(f"Could not list projects: {exc}")

    def _current_changed(self, current: QListWidgetItem | None, _previous: object) -> None:
        entry = self._entries.get(current.data(_NAME_ROLE)) if current is not None else None
        self.pause_button.setEnabled(entry is not None and entry.enabled)
        self.pause_button.setText("Resume project" if entry and entry.paused else "Pause project")
        self.project_selected.emit(entry)

    def _toggle_pause(self) -> None:
        entry = self.current
        if entry is not None and entry.enabled:
            self._set_paused(entry.name, not entry.paused)

    def _context_menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        entry = self._entries.get(item.data(_NAME_ROLE)) if item is not None else None
        if entry is None:
            return
        self.menu = QMenu(self)
        action = self.menu.addAction("Resume project" if entry.paused else "Pause project")
        action.setEnabled(entry.enabled)
        action.triggered.connect(lambda: self._set_paused(entry.name, not entry.paused))
        self.menu.popup(self.list.viewport().mapToGlobal(pos))
