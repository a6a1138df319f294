"""The tray: icon and tooltip showing the sync state, the menu artists click, notifications.

:class:`TrayController` owns the engine session (store + engine, opened and restarted off
the GUI thread), the :class:`~ui.bridge.EngineBridge`, the tray icon and its menu, the
settings dialog and the Sync Queue window. Data flows one way: the engine publishes
events, the bridge turns them into GUI-thread signals, the controller updates the icon;
user actions go to the engine, whose calls used here only persist intent and wake the
loop (pause/resume write a small state file, sync_now sets an event). Anything that
touches the database or the network (opening the store, counting failed rows, applying
settings, stopping the engine) runs on a :class:`~ui.background.Background` thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon, QWidget

from app import paths
from app.engine.engine import Engine
from app.errors import SiteSyncError, StoreUnavailableError
from app.events.bus import EventBus
from app.events.types import FileFailed, FileSynced
from app.hooks import HookRunner
from app.model import Status, SummaryQuery
from app.redact import redact
from app.settings import Settings
from app.store import Store, open_store
from ui.background import Background
from ui.bridge import EngineBridge
from ui.icons import app_icon, state_icon
from ui.notifications import Notice, Notifier
from ui.settings_dialog import SettingsDialog
from ui.tray_state import TrayView, tray_view

if TYPE_CHECKING:  # the window is imported on first use (it pulls in ui.queue)
    from ui.plugins_view import PluginsView

__all__ = ["Session", "TrayController", "count_failed", "open_session"]

_log = logging.getLogger(__name__)

#: Settings a running engine does not pick up: changing one restarts the engine.
_RESTART_KEYS = ("database_url", "database_name", "local_id")
_RESTART_ENGINE_KEYS = ("workers_per_site", "serve_site")


@dataclass(frozen=True)
class Session:
    store: Store
    engine: Engine
    #: The event hook plugins (None when they could not start: syncing goes on).
    hooks: HookRunner | None = None


def open_session(settings: Settings, bus: EventBus, state_path: Path, *,
                 store: Store | None = None, create_demo: bool = False) -> Session:
    """Open the store (unless given), create the demo project on a first run, start an
    engine. Blocking: call it on a background thread."""
    if store is None:
        store = open_store(settings.database_url, settings.database_name, paths.data_dir())
    try:
        if create_demo and not store.list_projects():
            from app.demo import create_demo as make_demo

            make_demo(store, settings, datetime.now(timezone.utc))
        engine = Engine(store, settings, bus=bus, state_path=state_path)
        engine.start()
    except BaseException:
        store.close()
        raise
    return Session(store, engine, start_hooks(store, settings))


def start_hooks(store: Store, settings: Settings) -> HookRunner | None:
    """The event hook plugins beside the engine, on their own threads (on standby when
    `sitesync serve` already runs them on this machine). A runner that cannot start is
    logged and left out: hooks never stop syncing."""
    try:
        hooks = HookRunner(store, settings, log_dir=paths.log_dir())
        hooks.start()
    except Exception:
        _log.exception("event hooks cannot start; syncing goes on without them")
        return None
    return hooks


def count_failed(store: Store, settings: Settings) -> int:
    """Representations shown as Failed for each project's site pair (the Sync Queue's
    count, from the same status function). Blocking: call it on a background thread."""
    now = datetime.now(timezone.utc)
    total = 0
    for info in store.list_projects():
        try:
            ps = settings.project(info.name)
        except SiteSyncError:
            continue
        if not ps.syncing:
            continue
        query = SummaryQuery(ps.active_site, ps.remote_site, limit=1)
        page = store.summary_page(info.name, query, ps.retry_cnt, now)
        total += page.status_counts.get(Status.FAILED, 0)
    return total


def needs_restart(old: Settings, new: Settings) -> tuple[bool, bool]:
    """(restart the engine, reopen the store) for a settings change."""
    reopen = (old.database_url, old.database_name) != (new.database_url, new.database_name)
    restart = reopen or old.local_id != new.local_id or any(
        getattr(old.engine, key) != getattr(new.engine, key) for key in _RESTART_ENGINE_KEYS)
    return restart, reopen


def _stop_session(session: Session | None, timeout_s: float, close_store: bool = True) -> None:
    if session is None:
        return
    hooks_stop = None
    if session.hooks is not None:
        # Beside the engine's stop, not after it: the two waits overlap.
        hooks_stop = threading.Thread(target=session.hooks.stop, args=(min(timeout_s, 5.0),),
                                      name="sitesync-hooks-stop", daemon=True)
        hooks_stop.start()
    try:
        session.engine.stop(drain=False, timeout_s=timeout_s)
    finally:
        if hooks_stop is not None:
            hooks_stop.join(min(timeout_s, 5.0) + 1.0)
        if close_store:
            session.store.close()


class TrayController(QObject):
    """Everything behind the tray icon. ``start()`` opens the session in the background;
    ``quit()`` stops it within a bounded time and emits ``finished``."""

    finished = Signal()
    session_ready = Signal()
    _stopped = Signal()

    def __init__(
        self,
        settings: Settings,
        *,
        bus: EventBus | None = None,
        state_path: Path | None = None,
        notify_interval_s: float = 10.0,
        status_interval_s: float = 30.0,
        quit_timeout_s: float = 10.0,
        reopen_delays_s: tuple[float, ...] = (2.0, 5.0, 10.0, 30.0),
        window_factory: Callable[..., QWidget] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.bus = bus or EventBus()
        self.state_path = state_path or paths.state_dir() / "engine.json"
        self.session: Session | None = None
        self.store_error = ""
        self.failed_representations = 0
        self.notices: deque[Notice] = deque(maxlen=50)  # what was shown, newest last
        self.view: TrayView | None = None
        self.window: QWidget | None = None
        self.settings_dialog: SettingsDialog | None = None
        self.plugins_window: PluginsView | None = None
        self._window_factory = window_factory
        self._quit_timeout_s = quit_timeout_s
        self._quitting = False
        self._done = False
        self._busy = False  # a session is being opened or restarted
        self._count_running = False
        self._count_again = False
        self._create_demo = False
        self._reopen_delays_s = reopen_delays_s
        self._open_failures = 0

        self.background = Background(self)
        self.bridge = EngineBridge(self.bus, self)
        self.notifier = Notifier(self.notify, {settings.local_id}, notify_interval_s, self)

        self.tray = QSystemTrayIcon(self)
        self.menu = QMenu()
        self.status_action = self._action("starting…", None)
        self.status_action.setEnabled(False)
        self.menu.addSeparator()
        self.open_action = self._action("Open Sync Queue", self.open_queue)
        self.pause_action = self._action("Pause syncing", self.toggle_pause)
        self.sync_action = self._action("Sync now", self.sync_now)
        self.menu.addSeparator()
        self.settings_action = self._action("Settings…", self.open_settings)
        self.plugins_action = self._action("Event hooks…", self.open_plugins)
        self.menu.addSeparator()
        self.quit_action = self._action("Quit", self.quit)
        self.tray.setContextMenu(self.menu)
        self.tray.activated.connect(self._on_activated)

        self.bridge.totals.connect(self._on_totals)
        self.bridge.engine_state.connect(self._on_engine_state)
        self.bridge.events.connect(self._on_events)
        self.bridge.representations_changed.connect(self._on_rows_changed)
        self._stopped.connect(self._finish_quit, Qt.ConnectionType.QueuedConnection)

        self._status_timer = QTimer(self)
        self._status_timer.setInterval(int(status_interval_s * 1000))
        self._status_timer.timeout.connect(self.refresh_failed)
        self._count_throttle = QTimer(self)
        self._count_throttle.setSingleShot(True)
        self._count_throttle.setInterval(2000)
        self._count_throttle.timeout.connect(self.refresh_failed)
        self._reopen_timer = QTimer(self)
        self._reopen_timer.setSingleShot(True)
        self._reopen_timer.timeout.connect(self._reopen)
        # A child timer, not QTimer.singleShot(ms, bound method): a pending singleShot
        # outlives this object and fired into a deleted receiver (a crash in the event
        # loop after the controller was collected); a child dies with its parent.
        self._quit_timer = QTimer(self)
        self._quit_timer.setSingleShot(True)
        self._quit_timer.timeout.connect(self._finish_quit)
        self._set_engine_actions(False)
        self.update_view()

    def _action(self, text: str, slot: Callable[[], None] | None) -> QAction:
        action = QAction(text, self.menu)
        if slot is not None:
            action.triggered.connect(slot)
        self.menu.addAction(action)
        return action

    # -- session --------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine | None:
        return self.session.engine if self.session else None

    @property
    def store(self) -> Store | None:
        return self.session.store if self.session else None

    def show(self) -> None:
        self.tray.setIcon(state_icon(self.view.state) if self.view else app_icon())
        self.tray.show()

    def start(self, *, create_demo: bool = False) -> None:
        """Open the store and start the engine in the background (first run: demo)."""
        self._create_demo = create_demo
        self._open(self.settings, store=None)

    def attach(self, session: Session) -> None:
        """Use an already running session (tests; also the end of start/restart)."""
        self.session = session
        self.store_error = ""
        self._open_failures = 0
        self._reopen_timer.stop()
        self._busy = False
        self._set_engine_actions(True)
        self._status_timer.start()
        self._feed_plugins_window()
        self.refresh_failed()
        self.update_view()
        self.session_ready.emit()

    def _open(self, settings: Settings, store: Store | None) -> None:
        self._busy = True
        self._set_engine_actions(False)
        self.update_view()
        bus, state_path, demo = self.bus, self.state_path, self._create_demo
        self.background.submit(
            lambda: open_session(settings, bus, state_path, store=store, create_demo=demo),
            on_done=self._on_session_opened, on_error=self._on_session_failed,
            name="sitesync-open-store")

    def _on_session_opened(self, session: Session) -> None:
        if self._quitting:
            threading.Thread(target=_stop_session, args=(session, 5.0), daemon=True).start()
            return
        wanted = self.settings
        self.attach(session)
        if session.engine.settings is not wanted:
            # Settings were saved while this session was opening with the previous ones.
            self.settings = session.engine.settings
            self.apply_settings(wanted)

    def _on_session_failed(self, exc: BaseException) -> None:
        self._busy = False
        self.store_error = redact(str(exc)) if isinstance(exc, SiteSyncError) else (
            f"cannot open the database: {redact(f'{type(exc).__name__}: {exc}')}")
        _log.error("cannot start syncing: %s", self.store_error)
        self.settings_action.setEnabled(True)
        if isinstance(exc, StoreUnavailableError) and not self._quitting:
            # The database is down (not misconfigured): keep trying, as the engine does
            # once it runs. A settings change tries at once.
            delays = self._reopen_delays_s
            delay = delays[min(self._open_failures, len(delays) - 1)]
            self._open_failures += 1
            self.store_error += f" Trying again in {delay:g} s."
            self._reopen_timer.start(int(delay * 1000))
        self.update_view()

    @Slot()
    def _reopen(self) -> None:
        if self.session is None and not self._busy and not self._quitting:
            self._open(self.settings, store=None)

    def _set_engine_actions(self, enabled: bool) -> None:
        for action in (self.pause_action, self.sync_action):
            action.setEnabled(enabled)

    # -- view -----------------------------------------------------------------------------------

    def update_view(self) -> None:
        engine = self.engine
        totals = self.bridge.current_totals
        paused = engine.paused if engine is not None else False
        view = tray_view(totals, paused=paused, failed_representations=self.failed_representations,
                         store_error=self.store_error)
        if self._busy and not self.store_error:
            view = TrayView("starting", "starting…", "Opening the database.")
        self.pause_action.setText("Resume syncing" if paused else "Pause syncing")
        if view == self.view:
            return
        self.view = view
        self.tray.setIcon(state_icon(view.state))
        self.tray.setToolTip(view.tooltip)
        self.status_action.setText(view.title[:1].upper() + view.title[1:])
        self.status_action.setIcon(state_icon(view.state))

    @Slot(object)
    def _on_totals(self, _totals: object) -> None:
        self.update_view()

    @Slot(object)
    def _on_engine_state(self, _event: object) -> None:
        self.update_view()

    @Slot(object)
    def _on_events(self, events: tuple[object, ...]) -> None:
        """Finished transfers for the notifications (one call per bridge wake-up)."""
        for event in events:
            if isinstance(event, FileFailed):
                self.notifier.file_failed(event)
            elif isinstance(event, FileSynced):
                self.notifier.file_synced(event)

    @Slot(object)
    def _on_rows_changed(self, _changed: object) -> None:
        if not self._count_throttle.isActive():
            self._count_throttle.start()

    def refresh_failed(self) -> None:
        """Recount Failed representations in the background (one query at a time)."""
        session = self.session
        if session is None or self._quitting:
            return
        if self._count_running:
            self._count_again = True
            return
        self._count_running = True
        settings = self.settings
        self.background.submit(lambda: count_failed(session.store, settings),
                               on_done=self._on_failed_count, on_error=self._on_failed_error,
                               name="sitesync-count-failed")

    def _on_failed_count(self, count: int) -> None:
        self._count_running = False
        self.failed_representations = count
        self.update_view()
        if self._count_again:
            self._count_again = False
            self.refresh_failed()

    def _on_failed_error(self, exc: BaseException) -> None:
        self._count_running = False
        if not isinstance(exc, StoreUnavailableError):  # offline shows via the engine state
            _log.warning("counting failed representations: %s", exc)

    # -- notifications --------------------------------------------------------------------------

    def notify(self, notice: Notice) -> None:
        self.notices.append(notice)
        icon = (QSystemTrayIcon.MessageIcon.Critical if notice.error
                else QSystemTrayIcon.MessageIcon.Information)
        self.tray.showMessage(notice.title, notice.text, icon, 8000)

    # -- menu actions ---------------------------------------------------------------------------

    @Slot(QSystemTrayIcon.ActivationReason)
    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger,
                      QSystemTrayIcon.ActivationReason.DoubleClick):
            self.open_queue()

    def toggle_pause(self) -> None:
        engine = self.engine
        if engine is None:
            return
        if engine.paused:
            engine.resume()
        else:
            engine.pause()
        self.update_view()

    def sync_now(self) -> None:
        if self.engine is not None:
            self.engine.sync_now()
            self.refresh_failed()

    def open_queue(self) -> None:
        """Show the Sync Queue window (created on first use), raised and focused."""
        if self.session is None:
            self.notify(Notice("SiteSync is starting", self.store_error or
                               "The Sync Queue opens once the database is open.",
                               error=bool(self.store_error)))
            return
        if self.window is None:
            factory = self._window_factory or _queue_window_class()
            self.window = factory(self.session.store, self.settings, self.bridge, self.session.engine)
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()

    def open_settings(self) -> None:
        if self.settings_dialog is None:
            dialog = SettingsDialog(self.settings)
            dialog.saved.connect(self.apply_settings)
            dialog.finished.connect(self._on_settings_closed)
            self.settings_dialog = dialog
        self.settings_dialog.show()
        self.settings_dialog.raise_()
        self.settings_dialog.activateWindow()

    def open_plugins(self) -> None:
        """Show the event hook plugins (created on first use): state, place in the event
        log, backlog and errors, from the session's HookRunner on a worker thread."""
        if self.plugins_window is None:
            from ui.plugins_view import PluginsView

            view = PluginsView()
            view.setWindowTitle("SiteSync: Event hooks")
            view.resize(900, 320)
            self.plugins_window = view
        self._feed_plugins_window()
        self.plugins_window.show()
        self.plugins_window.raise_()
        self.plugins_window.activateWindow()

    def _feed_plugins_window(self) -> None:
        """Point the plugins window at the current session's runner (none while the
        session is being opened or restarted: it says "not started")."""
        if self.plugins_window is None:
            return
        hooks = self.session.hooks if self.session is not None else None
        self.plugins_window.set_source(hooks.status if hooks is not None else None)

    @Slot(int)
    def _on_settings_closed(self, _result: int) -> None:
        if self.settings_dialog is not None:
            self.settings_dialog.deleteLater()
            self.settings_dialog = None

    @Slot(object)
    def apply_settings(self, new: Settings) -> None:
        """Apply saved settings without restarting the app: the engine takes most at
        once; a database, local_id or concurrency change restarts the engine (in the
        background; running transfers stop and resume from their partial data)."""
        old, self.settings = self.settings, new
        self.notifier.local_sites = {new.local_id}
        session = self.session
        if session is None:
            if not self._busy:  # e.g. the old database URL could not be opened
                self._reopen_timer.stop()
                self._open(new, store=None)
            return
        restart, reopen = needs_restart(old, new)
        if not restart:
            def apply() -> None:
                session.engine.update_settings(new)
                if session.hooks is not None:
                    session.hooks.update_settings(new)

            self.background.submit(apply, name="sitesync-apply-settings")
            update = getattr(self.window, "update_settings", None)
            if update is not None:
                update(new)
            self.refresh_failed()
            return
        self.session = None
        self._close_window()
        self._feed_plugins_window()
        timeout = self._quit_timeout_s
        self._busy = True
        self._set_engine_actions(False)
        self.update_view()

        def restart_session() -> Session:
            _stop_session(session, timeout, close_store=reopen)
            return open_session(new, self.bus, self.state_path,
                                store=None if reopen else session.store)

        self.background.submit(restart_session, on_done=self._on_session_opened,
                               on_error=self._on_session_failed, name="sitesync-restart")

    def _close_window(self) -> None:
        """Close the window for good (it holds the store and engine being replaced or
        stopped); a new one is made on demand. Its queries are stopped first, briefly
        waited for, so none runs on a store that is about to be closed."""
        window, self.window = self.window, None
        if window is None:
            return
        runner = getattr(window, "runner", None)
        if runner is not None:
            runner.shutdown(timeout_ms=3000)
        window.close()
        window.deleteLater()

    # -- quitting -------------------------------------------------------------------------------

    def quit(self) -> None:
        """Stop the engine (transfers are cancelled and resume next time; nothing counts
        as a failure) and emit ``finished``, within ``quit_timeout_s`` even if the
        database hangs."""
        if self._quitting:
            return
        self._quitting = True
        self._status_timer.stop()
        self._reopen_timer.stop()
        self.tray.hide()
        self._close_window()
        if self.settings_dialog is not None:
            self.settings_dialog.close()
        if self.plugins_window is not None:
            # Deleted here, on the GUI thread: left to Python's collector, the top-level
            # widget could be destroyed on whichever thread runs the collection.
            view, self.plugins_window = self.plugins_window, None
            view.close()
            view.deleteLater()
        session, self.session = self.session, None
        timeout = self._quit_timeout_s

        def stop() -> None:
            try:
                _stop_session(session, timeout)
            except Exception:
                _log.exception("stopping the engine")
            self._emit_stopped()

        # A daemon thread: a stop stuck on a dead server can never keep the process alive.
        threading.Thread(target=stop, name="sitesync-quit", daemon=True).start()
        self._quit_timer.start(int((timeout + 2) * 1000))

    def _emit_stopped(self) -> None:
        if not self._done:
            self._stopped.emit()

    @Slot()
    def _finish_quit(self) -> None:
        if self._done:
            return
        self._done = True
        for timer in (self._quit_timer, self._status_timer, self._count_throttle,
                      self._reopen_timer):
            timer.stop()
        self.bridge.close()
        self.background.close()
        self.finished.emit()



def _queue_window_class() -> Callable[..., QWidget]:
    """The Sync Queue window, imported on first use (it is the larger part of the UI)."""
    from ui.queue import SyncQueueWindow

    return SyncQueueWindow
