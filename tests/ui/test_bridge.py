"""EngineBridge: engine-thread events arrive in the GUI thread, coalesced, none lost."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from app.events.bus import EventBus
from app.events.types import (
    EngineStateChanged,
    FileFailed,
    FileProgress,
    FileSynced,
    TransferStarted,
    TransferStopped,
)
from app.model import Direction
from ui.bridge import EngineBridge, Totals

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


def fields(repre: str, file: str, target: str = "studio") -> dict:
    return {"at": NOW, "project": "demo", "repre_id": repre, "file_id": file,
            "path": f"{{root[work]}}/demo/{repre}/{file}.exr", "source_site": "local",
            "target_site": target, "direction": Direction.UPLOAD}


def in_thread(work) -> None:
    thread = threading.Thread(target=work, name="fake-engine")
    thread.start()
    thread.join(10)
    assert not thread.is_alive()


class Recorder:
    """Records what each signal delivered and on which thread (must be the GUI's)."""

    def __init__(self, bridge: EngineBridge) -> None:
        self.got: dict[str, list] = {}
        self.threads: set[bool] = set()
        self.times: dict[str, list[float]] = {}
        for name in ("transfer_started", "transfer_stopped", "file_synced", "file_failed",
                     "engine_state", "events", "progress", "representations_changed", "totals"):
            getattr(bridge, name).connect(self._make(name))

    def _make(self, name: str):
        def slot(value: object) -> None:
            self.threads.add(threading.current_thread() is threading.main_thread())
            self.got.setdefault(name, []).append(value)
            self.times.setdefault(name, []).append(time.monotonic())
        return slot

    def all(self, name: str) -> list:
        return self.got.get(name, [])


def test_events_from_an_engine_thread_arrive_in_the_gui_thread(qtbot):
    bus = EventBus()
    bridge = EngineBridge(bus)
    rec = Recorder(bridge)

    def engine():
        bus.publish(EngineStateChanged(NOW, state="running", in_flight=1))
        bus.publish(TransferStarted(**fields("r1", "f1"), size=100))
        bus.publish(FileProgress(**fields("r1", "f1"), bytes_done=50, size=100, bytes_per_s=1.0))
        bus.publish(FileSynced(**fields("r1", "f1"), size=100, checksum="x", seconds=0.1))

    in_thread(engine)
    qtbot.waitUntil(lambda: bool(rec.all("file_synced") and rec.all("representations_changed")))
    assert rec.threads == {True}
    assert [e.state for e in rec.all("engine_state")] == ["running"]
    assert len(rec.all("transfer_started")) == 1
    assert rec.all("representations_changed")[-1] == frozenset({("demo", "r1")})
    qtbot.waitUntil(lambda: bool(rec.all("totals")) and rec.all("totals")[-1].synced == 1)
    final = rec.all("totals")[-1]
    assert final == Totals(state="running", in_flight=0, synced=1)
    # Progress for a file that has since synced is stale and must not be emitted after it.
    for batch in rec.all("progress"):
        assert ("demo", "r1", "f1", "studio") not in batch
    bridge.close()


def test_progress_is_coalesced_to_the_latest_per_file_at_most_ten_per_second(qtbot):
    bus = EventBus()
    bridge = EngineBridge(bus)
    rec = Recorder(bridge)
    files = [f"f{i}" for i in range(2000)]

    def engine():
        for f in files:
            bus.publish(TransferStarted(**fields("r1", f), size=1000))
        deadline = time.monotonic() + 0.6
        done = 0
        while time.monotonic() < deadline:
            done = min(1000, done + 10)
            for f in files:
                bus.publish(FileProgress(**fields("r1", f), bytes_done=done, size=1000, bytes_per_s=1.0))
        # One last, known value per file.
        for f in files:
            bus.publish(FileProgress(**fields("r1", f), bytes_done=777, size=1000, bytes_per_s=1.0))

    in_thread(engine)

    def last_seen() -> dict:
        merged: dict = {}
        for batch in rec.all("progress"):
            merged.update(batch)
        return merged

    qtbot.waitUntil(lambda: len(last_seen()) == 2000
                    and all(e.bytes_done == 777 for e in last_seen().values()), timeout=5000)
    batches = rec.all("progress")
    # Millions of events would be one signal each; coalesced they are a handful of batches.
    assert len(batches) < 30
    gaps = [b - a for a, b in zip(rec.times["progress"], rec.times["progress"][1:], strict=False)]
    assert all(gap >= 0.09 for gap in gaps), gaps
    qtbot.waitUntil(lambda: rec.all("totals")[-1].bytes_done == 777 * 2000)
    totals = rec.all("totals")[-1]
    assert (totals.in_flight, totals.bytes_total) == (2000, 2000 * 1000)
    assert abs(totals.fraction - 0.777) < 1e-9
    bridge.close()


def test_no_synced_or_failed_event_is_lost_and_rows_are_coalesced(qtbot):
    bus = EventBus()
    bridge = EngineBridge(bus)
    rec = Recorder(bridge)
    n = 3000

    def engine():
        for i in range(n):
            repre = f"r{i % 50}"
            bus.publish(TransferStarted(**fields(repre, f"f{i}"), size=10))
            if i % 3:
                bus.publish(FileSynced(**fields(repre, f"f{i}"), size=10, checksum="c", seconds=0.0))
            else:
                bus.publish(FileFailed(**fields(repre, f"f{i}"), error="disk full", tries=1,
                                       permanent=False, next_attempt_dt=None))

    # Publish from two engine threads at once, like two site pools.
    threads = [threading.Thread(target=engine) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    qtbot.waitUntil(lambda: len(rec.all("file_synced")) + len(rec.all("file_failed")) == 2 * n,
                    timeout=10000)
    assert len(rec.all("file_failed")) == 2 * len(range(0, n, 3))
    qtbot.waitUntil(lambda: rec.all("totals")[-1].synced + rec.all("totals")[-1].failed == 2 * n)
    changed = set().union(*rec.all("representations_changed"))
    assert changed == {("demo", f"r{i}") for i in range(50)}
    assert len(rec.all("representations_changed")) < 20
    gaps = [b - a for a, b in zip(rec.times["representations_changed"],
                                  rec.times["representations_changed"][1:], strict=False)]
    assert all(gap >= 0.19 for gap in gaps), gaps
    assert rec.all("totals")[-1].in_flight == 0
    # The same events also arrive together, in order, a wake-up's worth per call: a
    # busy window pays one slot call per batch, not per event.
    batches = rec.all("events")
    flat = [e for batch in batches for e in batch]
    assert len(flat) == 4 * n and len(batches) < len(flat) / 10
    seen_start = set()
    for event in flat:
        key = (event.repre_id, event.file_id)
        if isinstance(event, TransferStarted):
            seen_start.add(key)
        else:
            assert key in seen_start, event  # a file's end never precedes its start
    bridge.close()


def test_stopped_transfers_leave_the_in_flight_totals(qtbot):
    bus = EventBus()
    bridge = EngineBridge(bus)
    rec = Recorder(bridge)

    def engine():
        bus.publish(TransferStarted(**fields("r1", "a"), size=100))
        bus.publish(TransferStarted(**fields("r1", "b"), size=100))
        bus.publish(TransferStopped(**fields("r1", "a"), reason="syncing paused"))
        bus.publish(EngineStateChanged(NOW, state="paused", in_flight=1))

    in_thread(engine)
    qtbot.waitUntil(lambda: bool(rec.all("totals")) and rec.all("totals")[-1].state == "paused")
    assert rec.all("totals")[-1].in_flight == 1
    assert len(rec.all("transfer_stopped")) == 1
    # The engine reports nothing running: a transfer whose end was never seen is dropped.
    in_thread(lambda: bus.publish(EngineStateChanged(NOW, state="paused", in_flight=0)))
    qtbot.waitUntil(lambda: rec.all("totals")[-1].in_flight == 0)
    bridge.close()


def test_close_unsubscribes_and_nothing_is_emitted_afterwards(qtbot):
    bus = EventBus()
    bridge = EngineBridge(bus)
    rec = Recorder(bridge)
    bridge.close()
    in_thread(lambda: bus.publish(FileSynced(**fields("r1", "f"), size=1, checksum="c", seconds=0)))
    qtbot.wait(300)
    assert rec.got == {}
    assert bus._subscribers == []
