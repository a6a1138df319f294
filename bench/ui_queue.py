"""Benchmark: the Sync Queue window vs an OpenPype-style queue window, same store, same run.

Two measurements, each for SiteSync's window and for the baseline:

1. **First page** of a project with 100,000 representations: seconds from opening the
   window until rows are on screen, and the longest stall of the GUI thread meanwhile.
2. **1,000 files syncing** through a real Engine between two real local_drive sites (in
   the same 100,000-representation project, the new rows sorted on screen): the longest
   and the 99th-percentile GUI-thread stall while the window follows the sync, and the
   most files the engine had in flight (claimed or moving) meanwhile. ``--transfers``
   raises the engine's transfers at once (up to 256 per site) and ``--bwlimit`` slows the
   studio site so that many stay in flight: the window under a flood of engine events.

Stalls are measured with a 5 ms QTimer heartbeat on the GUI thread: a stall is the gap
between two ticks minus the interval, i.e. how long the window could not repaint or take
a click.

The baseline is OpenPype's Sync Queue design (openpype-sync-model.md §6.5), implemented
here honestly on the same Store API: 20-row pages; a QTimer every 5 s re-runs the query
for every loaded row and resets the model (restoring selection and scroll by hand);
fetchMore and the project list (every 10 s) query synchronously; every call runs on the
GUI thread. It uses the same ``Store.summary_page`` as SiteSync, so the difference is the
window's design, not the database work per query.

Usage:  QT_QPA_PLATFORM=offscreen python -m bench.ui_queue [--reps 100000] [--files 1000]
            [--mongo-reps 10000] [--repeat 3] [--sync-repeat 1] [--cache DIR] [--out FILE]
            [--transfers 8] [--bwlimit 4M] [--progress-s 1]
Seeding 100,000 representations takes about a minute; ``--cache DIR`` keeps the seeded
SQLite file there for the next run. Prints a Markdown table (also to --out).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bson import ObjectId  # noqa: E402
from PySide6.QtCore import (  # noqa: E402
    QAbstractTableModel,
    QEventLoop,
    QModelIndex,
    QObject,
    Qt,
    QTimer,
)
from PySide6.QtWidgets import (  # noqa: E402
    QAbstractItemView,
    QApplication,
    QListWidget,
    QMainWindow,
    QSplitter,
    QTableView,
)

from app.engine.engine import Engine  # noqa: E402
from app.model import FileRecord, Representation, SiteState, SummaryQuery, SummaryRow  # noqa: E402
from app.publish import build_representation  # noqa: E402
from app.settings import Settings, load_settings  # noqa: E402
from app.store.base import Store  # noqa: E402
from app.store.docs import representation_to_doc  # noqa: E402
from app.store.sqlite import SqliteStore  # noqa: E402
from ui.bridge import EngineBridge  # noqa: E402
from ui.queue import SyncQueueWindow  # noqa: E402
from ui.queue.columns import COLUMNS  # noqa: E402

PROJECT = "big"
LOCAL = "artist"
REMOTE = "studio"
RETRY = 3
T0 = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
FILES_PER_NEW_REPRE = 4
FILE_SIZE = 32 * 1024


# -- data -------------------------------------------------------------------------------------


def background_repre(i: int) -> Representation:
    """A representation the engine has nothing to do for: synced, failed for good, paused,
    or not subscribed on the remote site (2 files each)."""
    kind = i % 4
    remote: dict[str, Any] | None = [
        {"created_dt": T0},
        {"tries": RETRY, "error": "quota exceeded on the studio share", "last_failed_dt": T0},
        {"paused": True},
        None,
    ][kind]
    files = []
    for n in range(2):
        sites = [SiteState(name=LOCAL, created_dt=T0)]
        if remote is not None:
            sites.append(SiteState(name=REMOTE, **remote))
        files.append(FileRecord(
            id=str(ObjectId()), path=f"{{root[work]}}/{PROJECT}/sh{i:06d}/v001/sh{i:06d}.{1001 + n}.exr",
            size=1_000_000 + n, hash="", sites=tuple(sites)))
    return Representation(
        id=str(ObjectId()), project=PROJECT, files=tuple(files), name="exr",
        context={"asset": f"sh{i:06d}", "subset": "renderMain", "version": 1,
                 "representation": "exr", "family": "render"},
    )


@dataclass(frozen=True)
class Load:
    """How hard the engine works while the window is open (the syncing runs)."""

    transfers: int = 8
    bwlimit: str = ""
    progress_s: float = 1.0

    def describe(self) -> str:
        text = f"real Engine, 2 local_drive sites, {self.transfers} transfers at once"
        if self.bwlimit:
            text += f", studio limited to {self.bwlimit}/s"
        if self.progress_s != 1.0:
            text += f", progress every {self.progress_s:g} s"
        return text


def write_settings(tmp: Path, local_root: Path, remote_root: Path, database_url: str = "",
                   load: Load = Load()) -> Settings:
    path = tmp / "settings.json"
    remote: dict[str, Any] = {"provider": "local_drive", "root": {"work": str(remote_root)}}
    if load.bwlimit:
        remote["bwlimit"] = load.bwlimit
    path.write_text(json.dumps({
        "database_url": database_url, "database_name": "bench", "local_id": LOCAL,
        "publish_site": "local", "remote_site": REMOTE, "retry_cnt": RETRY, "loop_delay": 5,
        "sites": {LOCAL: {"provider": "local_drive", "root": {"work": str(local_root)}},
                  REMOTE: remote},
        "engine": {"workers_per_site": load.transfers, "lease_s": 60,
                   "progress_interval_s": load.progress_s},
    }))
    return load_settings(path)


def seed_sqlite(path: Path, reps: int, local_root: Path, new_files: int) -> None:
    """The background representations plus ``new_files`` real files queued for the studio,
    in representations "aa0000", … that sort first (so they are the rows on screen)."""
    store = SqliteStore(path)
    store.ensure_project(PROJECT)
    started = time.perf_counter()
    for i in range(reps):
        store.insert_representation(background_repre(i))
        if i and i % 20_000 == 0:
            print(f"  seeded {i:,} representations ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr)
    now = datetime.now(UTC)
    for n in range(0, new_files, FILES_PER_NEW_REPRE):
        folder = local_root / PROJECT / f"aa{n // FILES_PER_NEW_REPRE:04d}" / "v001"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for k in range(min(FILES_PER_NEW_REPRE, new_files - n)):
            file = folder / f"frame.{1001 + k}.exr"
            file.write_bytes(os.urandom(FILE_SIZE))
            paths.append(file)
        store.insert_representation(build_representation(
            PROJECT, paths, {"work": str(local_root)}, asset=f"aa{n // FILES_PER_NEW_REPRE:04d}",
            subset="renderMain", version=1, name="exr", family="render", publish_site=LOCAL,
            queued_sites=[REMOTE], now=now))
    store.close()


# -- measuring the GUI thread ------------------------------------------------------------------


class Heartbeat(QObject):
    """Ticks every ``interval_ms`` on the GUI thread and records the gaps."""

    def __init__(self, interval_ms: int = 5) -> None:
        super().__init__()
        self.interval = interval_ms / 1000
        self.gaps: list[float] = []
        self._last = 0.0
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.gaps = []
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        self._tick()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(max(0.0, now - self._last - self.interval))
        self._last = now

    @property
    def longest_ms(self) -> float:
        return max(self.gaps, default=0.0) * 1000

    @property
    def p99_ms(self) -> float:
        if len(self.gaps) < 2:
            return self.longest_ms
        return statistics.quantiles(self.gaps, n=100, method="inclusive")[98] * 1000


def spin_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Run the Qt event loop until ``condition()`` (checked every 10 ms)."""
    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    result = {"ok": False}

    def check() -> None:
        if condition():
            result["ok"] = True
            loop.quit()
        elif time.monotonic() > deadline:
            loop.quit()

    timer = QTimer()
    timer.timeout.connect(check)
    timer.start(10)
    QTimer.singleShot(0, check)
    loop.exec()
    timer.stop()
    return result["ok"]


# -- the OpenPype-style baseline -----------------------------------------------------------------


class OpenPypeStyleModel(QAbstractTableModel):
    """OpenPype's SyncRepresentationSummaryModel, on the Store API (see module docstring)."""

    PAGE_SIZE = 20
    REFRESH_MS = 5000

    def __init__(self, store: Store, project: str, view: QTableView) -> None:
        super().__init__()
        self.store, self.project, self.view = store, project, view
        self.rows: list[SummaryRow] = []
        self.total = 0
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.tick)
        self.timer.start(self.REFRESH_MS)

    def query(self, offset: int, limit: int) -> Any:
        q = SummaryQuery(LOCAL, REMOTE, sort_key="asset", offset=offset, limit=limit)
        return self.store.summary_page(self.project, q, RETRY, datetime.now(UTC))  # GUI thread

    def refresh(self, load_records: int = 0) -> None:
        selected = {self.rows[i.row()].repre_id for i in self.view.selectionModel().selectedRows()}
        scroll = self.view.verticalScrollBar().value()
        self.beginResetModel()
        page = self.query(0, load_records or self.PAGE_SIZE)
        self.rows, self.total = list(page.rows), page.total
        self.endResetModel()
        for row, item in enumerate(self.rows):  # OpenPype's linear get_index per selected id
            if item.repre_id in selected:
                self.view.selectRow(row)
        self.view.verticalScrollBar().setValue(scroll)

    def tick(self) -> None:
        self.refresh(load_records=len(self.rows))

    def canFetchMore(self, parent: QModelIndex = QModelIndex()) -> bool:  # noqa: B008
        return not parent.isValid() and self.total > len(self.rows)

    def fetchMore(self, parent: QModelIndex = QModelIndex()) -> None:  # noqa: B008
        page = self.query(len(self.rows), self.PAGE_SIZE)
        self.beginInsertRows(QModelIndex(), len(self.rows), len(self.rows) + len(page.rows) - 1)
        self.rows.extend(page.rows)
        self.endInsertRows()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid():
            return None
        row = self.rows[index.row()]
        values = (row.asset, row.subset, row.version, row.representation,
                  f"{row.active.progress:.0%}", f"{row.remote.progress:.0%}", row.files_count,
                  row.size, row.priority, row.status.label)
        return values[index.column()]


class OpenPypeStyleWindow(QMainWindow):
    """Project list (rebuilt every 10 s) and the summary table, all synchronous."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.projects = QListWidget()
        self.table = QTableView()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.model = OpenPypeStyleModel(store, PROJECT, self.table)
        self.table.setModel(self.model)
        splitter = QSplitter()
        splitter.addWidget(self.projects)
        splitter.addWidget(self.table)
        self.setCentralWidget(splitter)
        self.resize(1450, 700)
        self.project_timer = QTimer(self)
        self.project_timer.timeout.connect(self.refresh_projects)
        self.project_timer.start(10_000)

    def refresh_projects(self) -> None:
        self.projects.clear()
        self.projects.addItems([p.name for p in self.store.list_projects()])

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.refresh_projects()
        self.model.refresh()


# -- runs ----------------------------------------------------------------------------------------


@dataclass
class Result:
    first_page_s: float = 0.0
    load_stall_ms: float = 0.0
    sync_s: float = 0.0
    sync_stall_ms: float = 0.0
    sync_p99_ms: float = 0.0
    rows_seen_synced: int = 0
    peak_in_flight: int = 0


def _median(results: list[Result]) -> Result:
    """Each field's median over the runs."""
    fields = Result.__dataclass_fields__
    return Result(**{name: statistics.median(getattr(r, name) for r in results) for name in fields})


def open_window(kind: str, store: Store, settings: Settings, bridge: Any, engine: Any) -> Any:
    if kind == "sitesync":
        window = SyncQueueWindow(store, settings, bridge, engine)
        window.select_project(PROJECT)
        return window
    return OpenPypeStyleWindow(store)


def first_page(kind: str, store: Store, settings: Settings, heartbeat: Heartbeat) -> Result:
    """Open the window and time it until the first rows are there."""
    result = Result()
    heartbeat.start()
    started = time.perf_counter()
    holder: dict[str, Any] = {}

    def build() -> None:  # inside the event loop, so a blocking show() is measured as a stall
        holder["window"] = open_window(kind, store, settings, None, None)
        holder["window"].show()

    QTimer.singleShot(0, build)
    ok = spin_until(lambda: "window" in holder and _rows(holder["window"]) > 0, 600)
    result.first_page_s = time.perf_counter() - started
    heartbeat.stop()
    result.load_stall_ms = heartbeat.longest_ms
    window = holder.get("window")
    if not ok:
        raise SystemExit(f"{kind}: no rows after 600 s")
    _close(window)
    return result


def _rows(window: Any) -> int:
    return window.model.rowCount()


def _close(window: Any) -> None:
    if isinstance(window, SyncQueueWindow):
        window.shutdown()
    else:
        window.model.timer.stop()
        window.project_timer.stop()
    window.close()
    window.deleteLater()
    QApplication.processEvents()


def syncing(kind: str, tmp: Path, base_db: Path, local_root: Path, files: int,
            heartbeat: Heartbeat, load: Load) -> Result:
    """A copy of the seeded database, an empty studio, a real engine: sync ``files`` files
    while the window is open, and measure the GUI thread."""
    run = tmp / f"run-{kind}"
    run.mkdir()
    db = run / "sitesync.db"
    shutil.copy(base_db, db)
    remote_root = run / "studio"
    remote_root.mkdir()
    settings = write_settings(run, local_root, remote_root, load=load)
    store = SqliteStore(db)
    engine = Engine(store, settings, state_path=run / "engine.json")
    bridge = EngineBridge(engine.bus) if kind == "sitesync" else None
    window = open_window(kind, store, settings, bridge, engine)
    window.show()
    if not spin_until(lambda: _rows(window) > 0 and _idle(window), 600):
        raise SystemExit(f"{kind}: the window did not load")
    window.table.selectRow(3)
    result = Result()
    heartbeat.start()
    started = time.perf_counter()
    engine.start()

    def synced() -> bool:
        result.peak_in_flight = max(result.peak_in_flight, engine.in_flight)
        return engine.counts["synced"] >= files

    done = spin_until(synced, 1200)
    result.sync_s = time.perf_counter() - started
    # Let the window catch up (SiteSync: events; baseline: its next 5 s refresh).
    spin_until(lambda: _synced_rows(window) >= min(_rows(window), files // FILES_PER_NEW_REPRE), 15)
    heartbeat.stop()
    result.sync_stall_ms = heartbeat.longest_ms
    result.sync_p99_ms = heartbeat.p99_ms
    result.rows_seen_synced = _synced_rows(window)
    engine.stop(drain=False, timeout_s=30)
    if bridge is not None:
        bridge.close()
    _close(window)
    store.close()
    if not done:
        raise SystemExit(f"{kind}: synced {engine.counts['synced']} of {files} files")
    return result


def _idle(window: Any) -> bool:
    return not isinstance(window, SyncQueueWindow) or (window.model.idle and window.runner.pending == 0)


def _synced_rows(window: Any) -> int:
    model = window.model
    rows = model.rows() if isinstance(window, SyncQueueWindow) else model.rows
    return sum(1 for r in rows if r.asset.startswith("aa") and r.status.label == "Synced")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mongo_first_page(reps: int, heartbeat: Heartbeat, tmp: Path,
                     repeat: int) -> dict[str, list[Result]]:
    """First page on MongoDB for both windows. The server is SecantusDB (the test suite's
    MongoDB-wire server) in its own process, as a studio's mongod would be: in this
    process its Python threads would compete for the GIL and blame the window."""
    from pymongo import MongoClient

    from app.store.mongo import MongoStore

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
         "--storage-path", str(tmp / "mongo"), "--cache-size", "512M", "--log-level", "ERROR"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    results: dict[str, list[Result]] = {}
    try:
        client = MongoClient(uri, serverSelectionTimeoutMS=30_000)
        client.admin.command("ping")
        seeder = MongoStore(uri, database="bench")
        seeder.ensure_project(PROJECT)
        collection = client["bench"][PROJECT]
        batch = []
        for i in range(reps):  # as OpenPype's integrator writes them
            batch.append(representation_to_doc(background_repre(i)))
            if len(batch) == 1000:
                collection.insert_many(batch)
                batch = []
        if batch:
            collection.insert_many(batch)
        seeder.close()
        client.close()
        settings = write_settings(tmp, tmp / "local", tmp / "studio", database_url=uri)
        for _ in range(repeat):
            for kind in ("sitesync", "openpype"):
                store = MongoStore(uri, database="bench")
                results.setdefault(kind, []).append(first_page(kind, store, settings, heartbeat))
                store.close()
    finally:
        server.terminate()
        server.wait(30)
    return results


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=1_000)
    parser.add_argument("--mongo-reps", type=int, default=10_000,
                        help="representations for the MongoDB first-page run (0: skip)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="first-page runs per window and store (the median is shown)")
    parser.add_argument("--sync-repeat", type=int, default=1,
                        help="syncing runs per window (the median is shown)")
    parser.add_argument("--cache", help="keep the seeded SQLite database in this folder")
    parser.add_argument("--out")
    parser.add_argument("--transfers", type=int, default=8,
                        help="transfers at once per site in the syncing runs (1-256)")
    parser.add_argument("--bwlimit", default="",
                        help="bandwidth limit of the studio site in the syncing runs, e.g. 4M")
    parser.add_argument("--progress-s", type=float, default=1.0,
                        help="the engine's progress_interval_s in the syncing runs")
    args = parser.parse_args()
    load = Load(args.transfers, args.bwlimit, args.progress_s)
    app = QApplication.instance() or QApplication([])
    heartbeat = Heartbeat()

    with tempfile.TemporaryDirectory(prefix="sitesync-uibench-", dir=os.environ.get("BENCH_DIR")) as t:
        tmp = Path(t)
        cache = Path(args.cache) if args.cache else tmp
        cache.mkdir(parents=True, exist_ok=True)
        base_db = cache / f"queue-{args.reps}-{args.files}.db"
        local_root = cache / f"queue-{args.reps}-{args.files}-local"
        if not base_db.exists():
            print(f"seeding {args.reps:,} representations + {args.files:,} files…", file=sys.stderr)
            shutil.rmtree(local_root, ignore_errors=True)
            partial = base_db.with_suffix(".partial")
            for leftover in cache.glob(partial.name + "*"):
                leftover.unlink()
            seed_sqlite(partial, args.reps, local_root, args.files)
            partial.rename(base_db)
        settings = write_settings(tmp, local_root, tmp / "unused-studio")

        runs: dict[tuple[str, int, str], list[Result]] = {}
        total_reps = args.reps + args.files // FILES_PER_NEW_REPRE
        for _ in range(args.repeat):  # alternating, so a busy moment hits both
            for kind in ("sitesync", "openpype"):
                store = SqliteStore(base_db)
                runs.setdefault(("SQLite", total_reps, kind), []).append(
                    first_page(kind, store, settings, heartbeat))
                store.close()
        if args.mongo_reps:
            mongo = mongo_first_page(args.mongo_reps, heartbeat, tmp, args.repeat)
            for kind, results in mongo.items():
                runs[("MongoDB (SecantusDB)", args.mongo_reps, kind)] = results
        rows = [(store_name, reps, kind, _median(results))
                for (store_name, reps, kind), results in runs.items()]
        sync_runs: dict[str, list[Result]] = {}
        for repeat in range(args.sync_repeat):
            for kind in ("sitesync", "openpype"):
                sync_tmp = tmp / f"sync-{repeat}"
                sync_tmp.mkdir(exist_ok=True)
                sync_runs.setdefault(kind, []).append(
                    syncing(kind, sync_tmp, base_db, local_root, args.files, heartbeat, load))
        sync_rows = [(kind, _median(results)) for kind, results in sync_runs.items()]
    del app

    names = {"sitesync": "SiteSync Sync Queue", "openpype": "OpenPype-style (sync, reset every 5 s)"}
    lines = [
        f"Sync Queue window vs OpenPype-style baseline, {os.cpu_count()} cores, "
        f"heartbeat {heartbeat.interval * 1000:.0f} ms, medians of {args.repeat} first-page and "
        f"{args.sync_repeat} syncing run(s) per window",
        "",
        "| store | representations | window | first page on screen (s) | longest UI stall meanwhile (ms) |",
        "|---|---:|---|---:|---:|",
    ]
    for store_name, reps, kind, r in rows:
        lines.append(f"| {store_name} | {reps:,} | {names[kind]} | {r.first_page_s:.2f} | "
                     f"{r.load_stall_ms:,.0f} |")
    lines += [
        "",
        f"| {args.files:,} files syncing (SQLite, {args.reps:,} representations) | window | "
        "files in flight (peak) | sync time (s) | longest UI stall (ms) | p99 UI stall (ms) | "
        "synced rows on screen |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind, r in sync_rows:
        lines.append(f"| {load.describe()} | {names[kind]} | {int(r.peak_in_flight):,} | "
                     f"{r.sync_s:.1f} | {r.sync_stall_ms:,.0f} | {r.sync_p99_ms:,.0f} | "
                     f"{int(r.rows_seen_synced)} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
