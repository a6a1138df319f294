"""The GUI thread's asyncio event loop is Qt's own: a :class:`qasync.QEventLoop`.

With it, a coroutine started in the GUI thread (:class:`~ui.queue.worker.TaskRunner`'s
calls) resumes in the GUI thread whenever Qt processes events: qasync turns asyncio's
callbacks into Qt timer events, and ``call_soon_threadsafe`` from a pool thread into a
queued signal of a GUI-thread object, so it is posted to the GUI thread like any other
Qt event.

The loop is made in qasync's "already running" mode, which registers it as the thread's
running asyncio loop at once and never calls ``exec`` itself: asyncio work then advances
in *every* Qt loop of the GUI thread, the one ``app.exec()`` runs in `sitesync tray`, a
modal dialog's nested loop, pytest-qt's waits in the tests and a benchmark's
``processEvents``, with one loop object for all of them (a loop started with
``run_forever()`` would count as running only inside that call).

qasync uses the Qt binding that is already imported: PySide6 is imported before qasync
here, so another binding a user happens to have installed is never picked (Qt then
refuses the loop's timers, qasync issue #23).
"""

from __future__ import annotations

import asyncio
import time

from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QApplication
from qasync import QEventLoop  # after PySide6 (see the module docstring)

__all__ = ["close_gui_loop", "gui_loop"]

#: How long closing the loop lets cancelled tasks finish (they only need a turn of the loop).
_CLOSE_WAIT_S = 1.0


def gui_loop() -> QEventLoop:
    """The GUI thread's qasync loop, made on first use (call it from the GUI thread,
    after the QApplication exists)."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if isinstance(running, QEventLoop):
        return running
    if running is not None:
        raise RuntimeError(f"the GUI thread already runs a non-Qt asyncio loop ({running!r})")
    app = QApplication.instance()
    if app is None:
        raise RuntimeError("the GUI's asyncio loop needs a QApplication first")
    loop = QEventLoop(app, already_running=True)
    asyncio.set_event_loop(loop)
    return loop


def close_gui_loop() -> None:
    """Cancel what is left on the GUI thread's loop, let it finish and close the loop
    (at exit, when no Qt loop runs any more). Does nothing if there is no such loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if not isinstance(loop, QEventLoop):
        return
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    deadline = time.monotonic() + _CLOSE_WAIT_S
    while any(not task.done() for task in tasks) and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.001)
    loop.stop()  # in "already running" mode: marks it stopped (no Qt loop runs to exit)
    loop.close()
    asyncio.events._set_running_loop(None)  # qasync never unsets it in this mode
    asyncio.set_event_loop(None)
