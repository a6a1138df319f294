"""TaskRunner: work runs off the GUI thread, answers come back on it (as asyncio tasks on Qt's
loop), stale ones are dropped and superseded ones that have not started never run."""

from __future__ import annotations

import asyncio
import threading

import qasync

from app.errors import StoreUnavailableError
from ui.queue.worker import TaskRunner

WAIT = 15_000  # ms; CI machines are shared and slow


def test_work_runs_on_a_pool_thread_and_answers_in_the_gui_thread(qtbot, runner):
    seen = {}

    def work():
        seen["worker"] = threading.current_thread() is threading.main_thread()
        return 42

    def done(value):
        seen["value"] = value
        seen["gui"] = threading.current_thread() is threading.main_thread()

    runner.submit(work, done)
    qtbot.waitUntil(lambda: "value" in seen, timeout=WAIT)
    assert seen == {"worker": False, "value": 42, "gui": True}
    assert runner.pending == 0


def test_a_newer_task_on_a_channel_supersedes_the_older(qtbot, runner):
    gate = threading.Event()
    started = threading.Event()
    got = []

    def slow():
        started.set()
        gate.wait(5)
        return "old"

    runner.submit(slow, got.append, channel="page")
    assert started.wait(5)
    runner.submit(lambda: "new", got.append, channel="page")
    qtbot.waitUntil(lambda: got == ["new"], timeout=WAIT)
    gate.set()
    qtbot.waitUntil(lambda: runner.pending == 0, timeout=WAIT)
    assert got == ["new"]  # the old answer arrived later and was dropped
    # Other channels and channel-less tasks are independent.
    runner.submit(lambda: "a", got.append, channel="other")
    runner.submit(lambda: "b", got.append)
    qtbot.waitUntil(lambda: runner.pending == 0, timeout=WAIT)
    assert sorted(got[1:]) == ["a", "b"]


def test_errors_go_to_the_callback_or_the_error_signal(qtbot, runner):
    errors = []

    def fail():
        raise StoreUnavailableError("cannot reach MongoDB at db:27017; check the network")

    runner.submit(fail, lambda _v: None, errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=WAIT)
    assert isinstance(errors[0], StoreUnavailableError)
    with qtbot.waitSignal(runner.error, timeout=WAIT) as blocker:
        runner.submit(fail, lambda _v: None)
    assert "cannot reach MongoDB" in blocker.args[0]
    # A bug in a result callback is reported too, not raised into Qt's event loop.
    with qtbot.waitSignal(runner.error, timeout=WAIT) as blocker:
        runner.submit(lambda: 1, lambda _v: 1 / 0)
    assert "ZeroDivisionError" in blocker.args[0]


def test_shutdown_waits_and_then_delivers_nothing(qtbot, runner):
    got = []
    release = threading.Event()
    runner.submit(lambda: release.wait(5) and "late", got.append)
    threading.Timer(0.2, release.set).start()
    runner.shutdown()
    qtbot.wait(50)
    assert got == []
    runner.submit(lambda: "after", got.append)
    qtbot.wait(50)
    assert got == []


def test_a_superseded_call_that_has_not_started_never_runs(qtbot, qapp):
    one_thread = TaskRunner(max_threads=1)
    gate = threading.Event()
    ran, got = [], []
    try:
        one_thread.submit(lambda: gate.wait(5), got.append)  # holds the only thread
        one_thread.submit(lambda: ran.append("old") or "old", got.append, channel="page")
        one_thread.submit(lambda: ran.append("new") or "new", got.append, channel="page")
        gate.set()
        qtbot.waitUntil(lambda: one_thread.pending == 0, timeout=WAIT)
        assert ran == ["new"]
        assert got == [True, "new"]
    finally:
        one_thread.shutdown()


def test_answers_come_from_an_asyncio_task_on_the_qt_loop(qtbot, runner):
    seen = {}

    def done(value):
        seen["loop"] = asyncio.get_running_loop()
        seen["task"] = asyncio.current_task()
        seen["value"] = value

    runner.submit(lambda: threading.current_thread().name, done)
    qtbot.waitUntil(lambda: "value" in seen, timeout=WAIT)
    assert isinstance(seen["loop"], qasync.QEventLoop)
    assert seen["task"] is not None
    assert seen["value"].startswith("sitesync-ui")  # the runner's own bounded pool
