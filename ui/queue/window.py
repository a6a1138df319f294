"""The Sync Queue window: projects on the left, their representations on the right.

It is OpenPype's Sync Queue (same columns, same actions) rebuilt on three rules:

* the GUI thread never calls the store: queries and actions run on a
  :class:`~ui.queue.worker.TaskRunner` and come back as callbacks;
* nothing polls: the engine bridge says which representations changed and only those
  rows are re-read (see :mod:`ui.queue.summary_model`);
* every action checks fresh data before it writes (:mod:`ui.queue.operations`) and then
  nudges the engine, so a retried file starts moving at once instead of a loop later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import QModelIndex, QPoint, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QGuiApplication, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.errors import SiteSyncError
from app.events.types import EngineStateChanged, Event, FileFailed, FileSynced, TransferStopped
from app.model import Status, SummaryRow
from app.settings import ProjectSettings, Settings
from app.store.base import Store
from providers.registry import create_provider
from ui.bridge import Totals
from ui.queue import operations
from ui.queue.detail import DetailDialog
from ui.queue.project_list import ProjectEntry, ProjectList
from ui.queue.summary_model import QueueContext, SummaryModel
from ui.queue.table import QueueTable
from ui.queue.worker import TaskRunner

__all__ = ["SyncQueueWindow"]

#: Status filter choices, most urgent first (the order of Status.rank).
_FILTER_ORDER = sorted(Status, key=lambda s: s.rank)
#: Beyond this many unseen changes while hidden, showing the window re-runs the query.
_HIDDEN_CHANGES_MAX = 5000
#: "Open folder" on a selection opens at most this many file-manager windows.
_OPEN_FOLDERS_MAX = 5


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SyncQueueWindow(QMainWindow):
    """``SyncQueueWindow(store, settings, bridge, engine)``; the tray shows and hides it.

    ``bridge`` is a :class:`ui.bridge.EngineBridge` (or None: no live updates), ``engine``
    the running :class:`app.engine.engine.Engine` (or None: actions only write the store).
    """

    #: An action finished; its one-line outcome (also shown in the status bar).
    action_done = Signal(str)

    def __init__(
        self,
        store: Store,
        settings: Settings,
        bridge: Any,
        engine: Any,
        parent: QWidget | None = None,
        *,
        page_size: int = 250,
        provider_factory: Callable[[str, str, Mapping[str, Any]], Any] = create_provider,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("SiteSync: Sync Queue")
        self.resize(1450, 700)
        self.store, self.settings, self.bridge, self.engine = store, settings, bridge, engine
        self._provider_factory = provider_factory
        self._clock = clock
        self._entry: ProjectEntry | None = None
        self._details: list[DetailDialog] = []
        self._hidden_changes: set[str] = set()
        self._hidden_overflow = False
        self._pending_selection: set[str] = set()

        self.runner = TaskRunner(self)
        self.runner.error.connect(self.show_message)
        self.model = SummaryModel(store, self.runner, self, page_size=page_size, clock=clock)
        self.model.counts_changed.connect(self._update_counts)
        self.model.loading_changed.connect(self._update_counts)
        self.model.failed.connect(self.show_message)
        self.model.page_loaded.connect(self._restore_selection)
        self.model.about_to_reset.connect(self._remember_selection)

        self.projects = ProjectList(store, settings, self.runner, self.set_project_paused)
        self.projects.project_selected.connect(self._project_selected)
        self.projects.message.connect(self.show_message)

        self.table = QueueTable(self.model)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.doubleClicked.connect(self._double_clicked)
        self.table.selectionModel().selectionChanged.connect(self._update_actions)
        self.model.rows_changed.connect(self._update_actions)

        self._build_actions()
        self._build_layout()
        self._filter_timer = QTimer(self)
        self._filter_timer.setSingleShot(True)
        self._filter_timer.setInterval(250)
        self._filter_timer.timeout.connect(lambda: self.model.set_text_filter(self.filter_edit.text()))
        self._message_timer = QTimer(self)
        self._message_timer.setSingleShot(True)
        self._message_timer.timeout.connect(lambda: self.message_label.setText(""))

        if bridge is not None:
            bridge.representations_changed.connect(self._representations_changed)
            bridge.progress.connect(self._progress)
            bridge.events.connect(self._events)
            totals = getattr(bridge, "totals", None)
            if totals is not None:  # the running transfers, counted as the tray counts them
                totals.connect(self._engine_totals)
            else:
                bridge.engine_state.connect(self._engine_state)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        self.projects.refresh()
        self._update_actions()
        self._update_counts()

    # -- layout ----------------------------------------------------------------------------

    def _build_actions(self) -> None:
        def action(text: str, slot: Callable[[], None], tip: str, shortcut: str = "") -> QAction:
            act = QAction(text, self)
            act.setToolTip(tip)
            act.setStatusTip(tip)
            act.triggered.connect(slot)
            if shortcut:
                act.setShortcut(QKeySequence(shortcut))
                act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            return act

        self.retry_action = action("Retry failed", self.retry_failed,
                                   "Reset the tries of failed files so they sync again")
        self.resync_active_action = action("Re-sync active site", lambda: self.resync("active"),
                                           "Transfer every file to the active site again")
        self.resync_remote_action = action("Re-sync remote site", lambda: self.resync("remote"),
                                           "Transfer every file to the remote site again")
        self.pause_action = action("Pause", lambda: self.set_paused(True),
                                   "Stop syncing the selected representations")
        self.resume_action = action("Resume", lambda: self.set_paused(False),
                                    "Sync the selected representations again")
        self.priority_action = action("Change priority…", self.ask_priority,
                                      "Higher numbers sync first (default 50)")
        self.open_active_action = action("Open active site folder", lambda: self.open_folder("active"),
                                         "Open the folder in the file manager")
        self.open_remote_action = action("Open remote site folder", lambda: self.open_folder("remote"),
                                         "Open the folder in the file manager")
        self.remove_local_action = action("Remove local copy…", self.ask_remove_local_copy,
                                          "Delete the files from this machine (kept on other sites)")
        self.copy_error_action = action("Copy error text", self.copy_errors,
                                        "Copy the full error of every failed file", "Ctrl+Shift+C")
        self.details_action = action("Details…", self.show_details,
                                     "Files of the representation with their status per site",
                                     "Return")
        self.refresh_action = action("Refresh", self.refresh, "Read the table again", "F5")
        for act in [*self._row_actions(), self.refresh_action]:
            self.addAction(act)

    def _row_actions(self) -> list[QAction]:
        return [self.retry_action, self.resync_active_action, self.resync_remote_action,
                self.pause_action, self.resume_action, self.priority_action,
                self.open_active_action, self.open_remote_action, self.remove_local_action,
                self.copy_error_action, self.details_action]

    def _build_layout(self) -> None:
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by asset, subset, representation or id…")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(lambda _text: self._filter_timer.start())
        self.status_button = QToolButton()
        self.status_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.status_menu = QMenu(self.status_button)
        self.status_all = self.status_menu.addAction("All statuses")
        self.status_all.triggered.connect(lambda: self.set_status_filter(()))
        self.status_menu.addSeparator()
        self.status_actions: dict[Status, QAction] = {}
        for status in _FILTER_ORDER:
            act = self.status_menu.addAction(status.label)
            act.setCheckable(True)
            act.toggled.connect(self._status_toggled)
            self.status_actions[status] = act
        self.status_button.setMenu(self.status_menu)
        self.counts_label = QLabel()

        top = QHBoxLayout()
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.status_button)

        buttons = QHBoxLayout()

        def button(act: QAction) -> QToolButton:
            tool = QToolButton()
            tool.setDefaultAction(act)
            buttons.addWidget(tool)
            return tool

        for act in (self.retry_action, self.pause_action, self.resume_action, self.priority_action,
                    self.remove_local_action, self.copy_error_action, self.details_action):
            button(act)
        self.resync_button = QToolButton()
        self.resync_button.setText("Re-sync")
        self.resync_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        resync_menu = QMenu(self.resync_button)
        resync_menu.addActions([self.resync_active_action, self.resync_remote_action])
        self.resync_button.setMenu(resync_menu)
        buttons.insertWidget(1, self.resync_button)
        self.open_button = QToolButton()
        self.open_button.setText("Open folder")
        self.open_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        open_menu = QMenu(self.open_button)
        open_menu.addActions([self.open_active_action, self.open_remote_action])
        self.open_button.setMenu(open_menu)
        buttons.addWidget(self.open_button)
        buttons.addStretch(1)
        buttons.addWidget(self.counts_label)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        buttons.addWidget(refresh)

        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.hide()
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(top)
        right_layout.addLayout(buttons)
        right_layout.addWidget(self.notice)
        right_layout.addWidget(self.table, 1)

        splitter = QSplitter()
        splitter.addWidget(self.projects)
        splitter.addWidget(right)
        splitter.setSizes([220, 1230])
        splitter.setStretchFactor(1, 1)
        self.setCentralWidget(splitter)

        self.message_label = QLabel()
        state = getattr(self.engine, "state", None) if self.engine is not None else "not running"
        self.engine_label = QLabel(f"Engine: {state or '…'}")
        self.statusBar().addWidget(self.message_label, 1)
        self.statusBar().addPermanentWidget(self.engine_label)
        totals = getattr(self.bridge, "current_totals", None)
        if isinstance(totals, Totals) and totals.state != "starting":
            self._engine_totals(totals)  # opened while the engine runs: say so at once
        self._update_status_button()

    # -- public API ----------------------------------------------------------------------

    @property
    def context(self) -> QueueContext | None:
        return self.model.context

    @property
    def project_settings(self) -> ProjectSettings | None:
        return self._entry.settings if self._entry is not None else None

    def show_message(self, text: str, timeout_ms: int = 8000) -> None:
        """Status bar line; errors stay longer than OpenPype's 3 s so they can be read."""
        self.message_label.setText(text)
        self.message_label.setToolTip(text)
        self._message_timer.start(timeout_ms)

    def select_project(self, name: str) -> None:
        self.projects.select(name)

    def refresh(self) -> None:
        self.projects.refresh()
        self.model.requery()

    def update_settings(self, settings: Settings) -> None:
        """New settings (the tray's settings dialog): new site pair, retry_cnt, providers."""
        self.settings = settings
        self.projects.update_settings(settings)

    def set_status_filter(self, statuses: Iterable[Status]) -> None:
        wanted = frozenset(statuses)
        for status, act in self.status_actions.items():
            act.blockSignals(True)
            act.setChecked(status in wanted)
            act.blockSignals(False)
        self.model.set_status_filter(wanted)
        self._update_status_button()

    def set_text_filter(self, text: str) -> None:
        """Filter at once (typing waits 250 ms for the next key)."""
        self.filter_edit.blockSignals(True)
        self.filter_edit.setText(text)
        self.filter_edit.blockSignals(False)
        self._filter_timer.stop()
        self.model.set_text_filter(text)

    def selected_rows(self) -> list[SummaryRow]:
        rows = sorted(i.row() for i in self.table.selectionModel().selectedRows())
        return [self.model.row(r) for r in rows if r < self.model.rowCount()]

    def select_ids(self, repre_ids: Iterable[str]) -> None:
        wanted = set(repre_ids)
        selection = self.table.selectionModel()
        selection.clearSelection()
        flags = (selection.SelectionFlag.Select | selection.SelectionFlag.Rows)
        first = None
        for repre_id in wanted:
            row = self.model.row_of(repre_id)
            if row is not None:
                selection.select(self.model.index(row, 0), flags)
                first = row if first is None else min(first, row)
        if first is not None:
            selection.setCurrentIndex(self.model.index(first, 0), selection.SelectionFlag.NoUpdate)

    def shutdown(self) -> None:
        """Stop background work (the app is quitting)."""
        self.runner.shutdown()

    # -- actions ---------------------------------------------------------------------------

    def retry_failed(self) -> None:
        ps, ids, now = self.project_settings, self._selected_ids(), self._clock()
        if ps is None or not ids:
            return
        self._run("Retry failed", lambda: operations.retry_failed(self.store, ps, ids, now))

    def resync(self, side: str) -> None:
        ps, ids, now = self.project_settings, self._selected_ids(), self._clock()
        if ps is None or not ids:
            return
        site = ps.active_site if side == "active" else ps.remote_site
        self._run("Re-sync", lambda: operations.resync_site(self.store, ps, ids, site, now))

    def set_paused(self, paused: bool) -> None:
        ps, ids, now = self.project_settings, self._selected_ids(), self._clock()
        if ps is None or not ids:
            return
        engine = self.engine
        self._run("Pause" if paused else "Resume",
                  lambda: operations.set_paused(self.store, engine, ps, ids, paused, now))

    def ask_priority(self) -> None:
        rows = self.selected_rows()
        if not rows or self.project_settings is None:
            return
        value, ok = QInputDialog.getInt(
            self, "Change priority",
            f"Priority for {len(rows)} representation(s); higher syncs first (default 50):",
            rows[0].priority, 0, 1000)
        if ok:
            self.set_priority(value)

    def set_priority(self, priority: int) -> None:
        ps, ids = self.project_settings, self._selected_ids()
        if ps is None or not ids:
            return
        self._run("Priority", lambda: operations.set_priority(self.store, ps, ids, priority))

    def open_folder(self, side: str) -> None:
        ps, rows = self.project_settings, self.selected_rows()
        if ps is None or not rows:
            return
        site = ps.active_site if side == "active" else ps.remote_site
        paths = [row.first_path for row in rows[:_OPEN_FOLDERS_MAX]]
        left_out, factory = len(rows) - len(paths), self._provider_factory
        self.runner.submit(lambda: operations.local_folders(ps, site, paths, factory),
                           lambda found: self._open_folders(*found, left_out=left_out),
                           lambda exc: self.show_message(f"Open folder: {exc}"))

    def ask_remove_local_copy(self) -> None:
        ps, rows = self.project_settings, self.selected_rows()
        if ps is None or not rows:
            return
        names = ", ".join(f"{r.asset}/{r.subset}/{r.representation}" for r in rows[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        answer = QMessageBox.question(
            self, "Remove local copy",
            f"Delete the files of {names}{more} from this machine ({ps.local_id})?\n\n"
            "Files no other site holds are kept. You can download them again later.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Yes:
            self.remove_local_copy()

    def remove_local_copy(self) -> None:
        ps, ids, factory = self.project_settings, self._selected_ids(), self._provider_factory
        if ps is None or not ids:
            return
        engine = self.engine
        self._run("Remove local copy",
                  lambda: operations.remove_local_copy(self.store, ps, ids, factory, engine))

    def copy_errors(self) -> None:
        ps, ids, now = self.project_settings, self._selected_ids(), self._clock()
        if ps is None or not ids:
            return
        self.runner.submit(lambda: operations.collect_errors(self.store, ps, ids, now),
                           self._copied, lambda exc: self.show_message(f"Copy error text: {exc}"))

    def show_details(self) -> DetailDialog | None:
        ctx = self.model.context
        current = self.table.currentIndex()
        if ctx is None or not current.isValid():
            return None
        row = self.model.row(current.row())
        for dialog in self._details:
            if dialog.repre_id == row.repre_id and dialog.model.context == ctx:
                dialog.show()
                dialog.raise_()
                return dialog
        dialog = DetailDialog(self.store, self.runner, ctx, row, self, clock=self._clock)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(lambda _obj=None, d=dialog: self._forget_detail(d))
        self._details.append(dialog)
        dialog.show()
        return dialog

    def set_project_paused(self, project: str, paused: bool) -> None:
        engine, store = self.engine, self.store

        def run() -> operations.Outcome:
            if engine is not None:
                engine.pause_project(project, paused)
            else:
                store.set_project_paused(project, paused)
            return operations.Outcome(f"project {project} {'paused' if paused else 'resumed'}")

        self.runner.submit(run, self._project_pause_done,
                           lambda exc: self.show_message(f"Pause project: {exc}"))

    # -- action plumbing -------------------------------------------------------------------

    def _selected_ids(self) -> list[str]:
        return [r.repre_id for r in self.selected_rows()]

    def _run(self, label: str, job: Callable[[], operations.Outcome]) -> None:
        self.show_message(f"{label}…", 60_000)
        self.runner.submit(job, self._action_finished,
                           lambda exc: self._action_failed(label, exc))

    def _action_finished(self, outcome: operations.Outcome) -> None:
        self.show_message(outcome.text)
        self.model.refresh_rows(outcome.changed)
        for dialog in self._details:
            dialog.representations_changed(outcome.changed)
        if outcome.changed and self.engine is not None:
            self.engine.sync_now()
        self.action_done.emit(outcome.text)

    def _action_failed(self, label: str, exc: BaseException) -> None:
        text = str(exc) if isinstance(exc, SiteSyncError | KeyError) else \
            f"internal error: {type(exc).__name__}: {exc}"
        self.show_message(f"{label} failed: {text}")
        self.action_done.emit(f"{label} failed: {text}")

    def _project_pause_done(self, outcome: operations.Outcome) -> None:
        self.show_message(outcome.text)
        self.projects.refresh()
        if self.engine is not None:
            self.engine.sync_now()
        self.action_done.emit(outcome.text)

    def _open_folders(self, folders: list[str], problems: list[str], left_out: int) -> None:
        """Open each folder in the file manager; say what was opened, what could not be
        and how many selected rows were left out (a selection of hundreds must not open
        hundreds of windows)."""
        opened = []
        for folder in folders:
            if QDesktopServices.openUrl(QUrl.fromLocalFile(folder)):
                opened.append(folder)
            else:
                problems.append(f"no file manager could open {folder}")
        if not opened:
            self.show_message(f"Open folder: {problems[0] if problems else 'nothing to open'}")
            return
        text = f"Opened {opened[0]}" if len(opened) == 1 else f"Opened {len(opened)} folders"
        if left_out:
            text += f" (the first {_OPEN_FOLDERS_MAX} selected rows; {left_out} more left out)"
        if problems:
            text += f"; {len(problems)} could not be opened: {problems[0]}"
        self.show_message(text)
        self.action_done.emit(f"opened {opened[0]}" if len(opened) == 1 else f"opened {len(opened)} folders")

    def _copied(self, text: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self.show_message("Error text copied" if text else "No error to copy")
        self.action_done.emit("copied" if text else "no error")

    def _forget_detail(self, dialog: DetailDialog) -> None:
        if dialog in self._details:
            self._details.remove(dialog)

    # -- which actions apply ----------------------------------------------------------------

    def _update_actions(self, *_args: object) -> None:
        rows = self.selected_rows()
        ctx = self.model.context
        ps = self.project_settings
        has = bool(rows) and ctx is not None and ps is not None
        sides = [(r.active, r.remote) for r in rows]
        self.retry_action.setEnabled(has and any(
            Status.FAILED in (r.status, a.status, b.status) for r, (a, b) in zip(rows, sides, strict=True)))
        self.resync_active_action.setEnabled(has and any(b.status is Status.SYNCED for _, b in sides))
        self.resync_remote_action.setEnabled(has and any(a.status is Status.SYNCED for a, _ in sides))
        self.pause_action.setEnabled(has and any(
            r.status not in (Status.SYNCED, Status.PAUSED) for r in rows))
        self.resume_action.setEnabled(has and any(
            Status.PAUSED in (a.status, b.status) for a, b in sides))
        self.priority_action.setEnabled(has)
        self.copy_error_action.setEnabled(has and any(a.error or b.error for a, b in sides))
        self.details_action.setEnabled(has and self.table.currentIndex().isValid())
        for act, side in ((self.open_active_action, "active"), (self.open_remote_action, "remote")):
            provider = "" if ctx is None else (ctx.active_provider if side == "active"
                                                else ctx.remote_provider)
            arrived = any((row.active if side == "active" else row.remote).progress > 0
                          for row in rows[:_OPEN_FOLDERS_MAX])
            act.setEnabled(has and provider == "local_drive" and arrived)
            act.setToolTip("Open the folder in the file manager" if provider == "local_drive" or not ctx
                           else f"Only for folders on this machine; this site is {provider}")
        local = ps.local_id if ps is not None else ""
        local_side = None if ctx is None else ctx.side_of(local)
        self.remove_local_action.setEnabled(has and local_side is not None and any(
            (a if local_side == "active" else b).status is not Status.NOT_AVAILABLE for a, b in sides))
        self.open_button.setEnabled(self.open_active_action.isEnabled()
                                    or self.open_remote_action.isEnabled())
        self.resync_button.setEnabled(self.resync_active_action.isEnabled()
                                      or self.resync_remote_action.isEnabled())

    def _context_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if index.isValid() and not self.table.selectionModel().isRowSelected(index.row()):
            self.table.selectRow(index.row())
        self._update_actions()
        self.context_menu = QMenu(self)
        groups = [
            [self.details_action],
            [self.retry_action, self.resync_active_action, self.resync_remote_action],
            [self.pause_action, self.resume_action, self.priority_action],
            [self.open_active_action, self.open_remote_action, self.remove_local_action],
            [self.copy_error_action],
        ]
        for group in groups:
            self.context_menu.addActions(group)
            self.context_menu.addSeparator()
        self.context_menu.popup(self.table.viewport().mapToGlobal(pos))

    def _double_clicked(self, index: QModelIndex) -> None:
        if index.isValid():
            self.show_details()

    # -- filters and counts ----------------------------------------------------------------

    def _status_toggled(self, _checked: bool) -> None:
        wanted = [s for s, act in self.status_actions.items() if act.isChecked()]
        self.model.set_status_filter(wanted)
        self._update_status_button()

    def _update_status_button(self) -> None:
        chosen = self.model.status_filter
        if not chosen:
            self.status_button.setText("Status: all")
        else:
            self.status_button.setText("Status: " + ", ".join(
                s.label for s in _FILTER_ORDER if s in chosen))

    def _update_counts(self, *_args: object) -> None:
        counts = self.model.status_counts
        ready = self.model.counts_ready
        for status, act in self.status_actions.items():
            act.setText(f"{status.label} ({counts.get(status, 0):,})" if ready else
                        f"{status.label} (…)")
        self.status_all.setText(f"All statuses ({self.model.unfiltered_total:,})" if ready else
                                "All statuses (…)")
        if self.model.context is None:
            self.counts_label.setText("")
            return
        if self.model.loading and not self.model.rowCount():
            self.counts_label.setText("Loading…")
            return
        text = f"{self.model.total:,} representations"
        if self.model.status_filter and ready:
            text += f" of {self.model.unfiltered_total:,}"
        if self.model.rowCount() < self.model.total:
            text += f" ({self.model.rowCount():,} loaded)"
        if self.model.loading:
            text += ", updating…"
        self.counts_label.setText(text)

    # -- selection across resets -------------------------------------------------------------

    def _remember_selection(self) -> None:
        self._pending_selection = set(self._selected_ids())

    def _restore_selection(self) -> None:
        if self._pending_selection:
            self.select_ids(self._pending_selection)
            self._pending_selection = set()
        self._update_actions()

    # -- project ---------------------------------------------------------------------------

    def _project_selected(self, entry: ProjectEntry | None) -> None:
        self._entry = entry
        ctx = None
        if entry is None:
            self._show_notice("No projects in the database yet.")
        elif entry.problem:
            self._show_notice(f"Project {entry.name} cannot sync: {entry.problem}")
        elif entry.settings is None or not entry.enabled:
            self._show_notice(f"Sync is disabled for project {entry.name} (no remote site, or "
                              "the same site on both sides). Change it in the settings.")
        else:
            ps = entry.settings
            ctx = QueueContext(
                project=ps.project, active_site=ps.active_site, remote_site=ps.remote_site,
                retry_cnt=ps.retry_cnt, active_provider=ps.site(ps.active_site).provider,
                remote_provider=ps.site(ps.remote_site).provider)
            if entry.paused:
                self._show_notice(f"Project {entry.name} is paused: nothing of it syncs until "
                                  "you resume it.")
            else:
                self._show_notice("")
        self.model.set_context(ctx)
        self._update_actions()
        self._update_counts()

    def _show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    # -- bridge ----------------------------------------------------------------------------

    def _representations_changed(self, changed: Iterable[tuple[str, str]]) -> None:
        ctx = self.model.context
        if ctx is None:
            return
        ids = {repre_id for project, repre_id in changed if project == ctx.project}
        if not ids:
            return
        if not self.isVisible():
            self._hidden_changes |= ids
            if len(self._hidden_changes) > _HIDDEN_CHANGES_MAX:
                self._hidden_overflow = True
                self._hidden_changes.clear()
            return
        self.model.refresh_rows(ids)
        for dialog in self._details:
            dialog.representations_changed(ids)

    def _progress(self, batch: dict[Any, Any]) -> None:
        if not self.isVisible():
            return
        self.model.apply_progress(batch)
        for dialog in self._details:
            dialog.apply_progress(batch)

    def _events(self, events: tuple[Event, ...]) -> None:
        """Transfers that ended (one call per bridge wake-up, however many ended)."""
        self.model.files_finished([
            (e.project, e.repre_id, e.file_id, e.target_site, isinstance(e, FileSynced))
            for e in events if isinstance(e, FileSynced | FileFailed | TransferStopped)])

    def _engine_state(self, event: EngineStateChanged) -> None:
        self._show_engine(event.state, event.message, event.in_flight)

    def _engine_totals(self, totals: Totals) -> None:
        self._show_engine(totals.state, totals.message, totals.in_flight)

    def _show_engine(self, state: str, message: str, transferring: int) -> None:
        if transferring and state in ("starting", "idle"):
            state = "running"  # transfers start a moment before the loop says so
        text = f"Engine: {state}"
        if transferring:
            text += f", {transferring} {'file' if transferring == 1 else 'files'} transferring"
        self.engine_label.setText(text)
        self.engine_label.setToolTip(message)

    # -- show / hide -----------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not event.spontaneous():
            self.projects.refresh()  # pauses set meanwhile from the CLI or another machine
        if self._hidden_overflow:
            self._hidden_overflow = False
            self.model.requery()
        elif self._hidden_changes:
            ids, self._hidden_changes = self._hidden_changes, set()
            self.model.refresh_rows(ids)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing hides the window; the tray keeps running and can show it again."""
        for dialog in list(self._details):
            dialog.close()
        super().closeEvent(event)
