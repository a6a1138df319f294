"""The GUI thread's asyncio loop (ui/event_loop.py), as `sitesync tray` sets it up and
closes it, in a child process so the tests' own loop is left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CHILD = textwrap.dedent("""
    import asyncio, time
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    from ui.event_loop import close_gui_loop, gui_loop
    from ui.queue.worker import TaskRunner

    loop = gui_loop()
    assert asyncio.get_running_loop() is loop is gui_loop(), "one loop, registered as running"
    ticks = []

    async def ticking():
        while True:
            ticks.append(loop.time())
            await asyncio.sleep(0.01)

    forever = loop.create_task(ticking())
    runner = TaskRunner()
    got = []
    runner.submit(lambda: 6 * 7, got.append)
    deadline = time.monotonic() + 20
    while not (got and len(ticks) >= 3):
        assert time.monotonic() < deadline, (got, ticks)
        app.processEvents()
        time.sleep(0.005)
    runner.shutdown()
    close_gui_loop()
    assert forever.cancelled() and loop.is_closed()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise AssertionError("the closed loop is still registered as running")
    close_gui_loop()  # nothing left to close
    print("answer", got[0])
""")


def test_the_loop_runs_tasks_while_qt_spins_and_closes_cleanly(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _CHILD], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "answer 42"
    assert "Task was destroyed" not in done.stderr and "Traceback" not in done.stderr, done.stderr
