"""`sitesync` / `sitesync tray`: start the tray application.

Order matters: without a display Qt would abort the process (rc 134), so that is checked
before a QApplication exists; a second launch must show the first one's window even when
there is no tray; and without a tray host the user is told to run `sitesync serve`
instead (exit code 2, like every settings/usage problem).

The GUI thread's asyncio loop is qasync's, installed before the tray exists, so
``app.exec()`` runs asyncio work and Qt events alike (ui/event_loop.py); it is closed
after the Qt loop ends.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence

from PySide6.QtCore import QElapsedTimer, Qt, QThread, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox, QSystemTrayIcon

from app import paths
from app.errors import ConfigError
from app.events.bus import EventBus
from app.logs import log_to_file
from app.settings import load_settings
from ui.event_loop import close_gui_loop, gui_loop
from ui.icons import app_icon
from ui.single_instance import SingleInstance
from ui.tray import TrayController

__all__ = ["display_problem", "run_tray"]

_log = logging.getLogger(__name__)

#: How long to wait for a tray host: on a desktop that is still logging in, the panel
#: with the tray may appear a little after SiteSync starts.
TRAY_WAIT_S = float(os.environ.get("SITESYNC_TRAY_WAIT_S", "5"))
_HEADLESS_PLATFORMS = frozenset({"offscreen", "minimal", "vnc", "linuxfb", "eglfs"})
_USE_SERVE = "Run `sitesync serve` for the headless sync engine instead."


def display_problem(environ: os._Environ[str] | dict[str, str] | None = None,
                    platform: str | None = None) -> str:
    """Why no window can be shown here ("" when a display looks available)."""
    env = os.environ if environ is None else environ
    platform = platform or sys.platform
    if not platform.startswith("linux") and not platform.startswith("freebsd"):
        return ""
    if env.get("QT_QPA_PLATFORM") or env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return ""
    return "no graphical display (neither DISPLAY nor WAYLAND_DISPLAY is set)"


def _fail(message: str) -> int:
    print(f"sitesync: error: {message}. {_USE_SERVE}", file=sys.stderr, flush=True)
    return 2


def _wait_for_tray(app: QApplication) -> bool:
    if QSystemTrayIcon.isSystemTrayAvailable():
        return True
    if QGuiApplication.platformName() in _HEADLESS_PLATFORMS:
        return False
    clock = QElapsedTimer()
    clock.start()
    while clock.elapsed() < TRAY_WAIT_S * 1000:
        app.processEvents()
        if QSystemTrayIcon.isSystemTrayAvailable():
            return True
        QThread.msleep(100)
    return False


def run_tray(config: str | None = None, *, debug: bool = False, create_demo: bool = True,
             argv: Sequence[str] | None = None, quit_after_s: float | None = None) -> int:
    """Run the tray app until Quit (or, with ``quit_after_s``, until it quits by itself
    that many seconds after starting, the way Quit does); returns the exit code."""
    problem = display_problem()
    if problem:
        return _fail(problem)
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication.instance() or QApplication(list(argv or [sys.argv[0]]))
    assert isinstance(app, QApplication)
    app.setApplicationName("SiteSync")
    app.setApplicationDisplayName("SiteSync")
    app.setQuitOnLastWindowClosed(False)  # closing the Sync Queue window keeps the tray
    app.setWindowIcon(app_icon())

    instance = SingleInstance(paths.state_dir())
    if not instance.acquire():
        print("SiteSync is already running: its Sync Queue window was brought to the front.",
              flush=True)
        return 0
    try:
        if not _wait_for_tray(app):
            return _fail(f"no system tray is available on this desktop "
                         f"(Qt platform {QGuiApplication.platformName()!r})")
        try:
            settings = load_settings(config)
        except ConfigError as exc:
            QMessageBox.critical(None, "SiteSync: settings problem", str(exc))
            print(f"sitesync: error: settings problem: {exc}", file=sys.stderr, flush=True)
            return 2
        log_to_file("tray.log", debug=debug, max_bytes=1_000_000, backups=3)
        gui_loop()
        controller = TrayController(settings, bus=EventBus())
        instance.show_requested.connect(controller.open_queue)
        controller.finished.connect(app.quit)
        _quit_on_signals(controller)
        controller.show()
        controller.start(create_demo=create_demo)
        if quit_after_s is not None:
            QTimer.singleShot(int(quit_after_s * 1000), controller.quit)
        print(f"SiteSync is running in the system tray (settings: {settings.path}).", flush=True)
        return app.exec()
    finally:
        close_gui_loop()
        instance.release()


def _quit_on_signals(controller: TrayController) -> None:
    """Ctrl+C / SIGTERM quit cleanly. Python only runs signal handlers between bytecodes,
    and the Qt loop runs in C++, so a timer gives the interpreter a turn regularly."""

    def handler(_signum: int, _frame: object) -> None:
        QTimer.singleShot(0, controller.quit)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    ticker = QTimer(controller)
    ticker.timeout.connect(_let_python_run)
    ticker.start(250)


def _let_python_run() -> None:
    """Nothing to do: returning to Python is the point (pending signal handlers run)."""
