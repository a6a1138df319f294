"""Benchmark: the stores at studio scale.

Fills a store with N representations (2 files each, published on ``studio``; a small
share queued for this machine, some failed, some paused) through the Store API, then
times what the engine and the tray do all day:

* ``find_work`` (the engine's look for work: a batch of 16, and the idle case where a
  project has nothing queued) and ``claim_many`` of that batch;
* the first summary page (200 rows) as the Sync Queue window opens it (rows first, without
  the per-status counts, then with them), sorted by asset, status, priority and date,
  filtered by a word and by status;
* ``file_details`` of one representation;
* the database size and, for the embedded store, the peak memory of an engine process
  (``serve --once``) that syncs the queued files out of that database.

Each timed call runs ``--repeat`` times; the table shows the median (and the first call,
which pays for a cold cache). Mongo runs against a throwaway SecantusDB server (the
MongoDB-wire server the tests use), which is written in Python: it is far slower than a
real MongoDB, so its column shows what the store's queries cost there, not what a studio
MongoDB would do.

20,000 representations take SecantusDB about 4.5 minutes on a quiet 2-core machine;
under heavy load a summary page can run past its operation limit (cancelled): use
fewer (``--mongo 5000``) then.

Usage:  python -m bench.store_scale [--sqlite 1000000] [--mongo 20000] [--repeat 5]
                                    [--queued 0.01] [--engine-files 2000] [--no-openpype]
                                    [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bson import ObjectId  # noqa: E402

from app.model import FileRecord, Representation, SiteState, Status, SummaryQuery  # noqa: E402
from app.store.base import Store  # noqa: E402

PROJECT = "scale"
LOCAL = "artist-one"
STUDIO = "studio"
NOW = datetime(2025, 1, 1, tzinfo=UTC)
ASSETS = ["sh", "char", "prop", "env", "fx"]


def _representation(n: int, rng: random.Random, queued: float) -> Representation:
    """A published representation; ``queued`` of them wait for this machine, 0.2% of
    those failed and 0.2% are paused (the mix a studio's table shows)."""
    asset = f"{rng.choice(ASSETS)}{n % 5000:04d}"
    roll = rng.random()
    local: SiteState | None = None
    if roll < queued:
        local = SiteState(name=LOCAL, priority=rng.choice([None, 50, 90]))
        if rng.random() < 0.02:
            local = SiteState(name=LOCAL, tries=3, error="disk full", last_failed_dt=NOW)
        elif rng.random() < 0.02:
            local = SiteState(name=LOCAL, paused=True)
    elif roll < 0.3:  # already on this machine
        local = SiteState(name=LOCAL, created_dt=NOW - timedelta(days=rng.randint(0, 300)), id="x")
    files = []
    for i in range(2):
        studio = SiteState(name=STUDIO, created_dt=NOW - timedelta(days=rng.randint(0, 400)), id="x",
                           checksum="sha256:" + "0" * 64)
        sites = (studio,) if local is None else (studio, local)
        files.append(FileRecord(
            id=str(ObjectId()), size=rng.randint(1, 1 << 30), hash="h", sites=sites,
            path=f"{{root[work]}}/{PROJECT}/{asset}/publish/v{n % 40:03d}/{asset}.{1001 + i}.exr"))
    return Representation(
        id=str(ObjectId()), project=PROJECT, parent=str(ObjectId()), name="exr",
        context={"asset": asset, "subset": "renderMain", "version": n % 40 + 1,
                 "representation": "exr"},
        files=tuple(files),
    )


def fill(store: Store, count: int, queued: float, report: Callable[[str], None]) -> float:
    """Insert ``count`` representations through the store's bulk path
    (``insert_representations``: a transaction or round trip per 1,000); returns
    representations per second."""
    rng = random.Random(1)
    store.ensure_project(PROJECT)
    started = time.perf_counter()
    last = [started]

    def generate():
        for n in range(count):
            if time.perf_counter() - last[0] > 30:
                last[0] = time.perf_counter()
                report(f"  {n:,} / {count:,} inserted ({n / (last[0] - started):,.0f}/s)")
            yield _representation(n, rng, queued)

    stored = store.insert_representations(generate())
    assert stored == count, (stored, count)
    return count / (time.perf_counter() - started)


def _timed(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(first call, median of the rest) in milliseconds."""
    times = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return times[0], statistics.median(times[1:])


def measure(store: Store, repeat: int) -> dict[str, tuple[float, float]]:
    rows: dict[str, tuple[float, float]] = {}
    rows["find_work (batch of 16, work queued)"] = _timed(
        lambda: store.find_work(PROJECT, LOCAL, STUDIO, 3, NOW, limit=16), repeat)
    rows["find_work (idle: pair with nothing queued)"] = _timed(
        lambda: store.find_work(PROJECT, "nobody", STUDIO, 3, NOW, limit=16), repeat)
    items = store.find_work(PROJECT, LOCAL, STUDIO, 3, NOW, limit=16 * (repeat + 1))
    batches = [items[i:i + 16] for i in range(0, len(items), 16)]
    lease = NOW + timedelta(hours=1)
    rows["claim_many (16 files)"] = _timed(
        lambda: store.claim_many(batches.pop() if batches else [], "bench", lease, NOW), repeat)
    for label, query in (
        ("summary page 1 (200 rows, by asset), no status counts",
         SummaryQuery(LOCAL, STUDIO, limit=200, with_counts=False)),
        ("summary page 1 (200 rows, by asset)", SummaryQuery(LOCAL, STUDIO, limit=200)),
        ("summary page 1, by status", SummaryQuery(LOCAL, STUDIO, sort_key="status", limit=200)),
        ("summary page 1, by priority desc",
         SummaryQuery(LOCAL, STUDIO, sort_key="priority", descending=True, limit=200)),
        ("summary page 1, by local date", SummaryQuery(LOCAL, STUDIO, sort_key="active_dt", limit=200)),
        ("summary page 1, text filter 'char01'", SummaryQuery(LOCAL, STUDIO, text="char01", limit=200)),
        ("summary page 1, status filter Failed",
         SummaryQuery(LOCAL, STUDIO, statuses=frozenset({Status.FAILED}), limit=200)),
        ("summary page 50 (offset 9,800)", SummaryQuery(LOCAL, STUDIO, offset=9800, limit=200)),
    ):
        rows[label] = _timed(lambda q=query: store.summary_page(PROJECT, q, 3, NOW), repeat)
    repre_id = store.summary_page(PROJECT, SummaryQuery(LOCAL, STUDIO, limit=1), 3, NOW).rows[0].repre_id
    rows["file_details (one representation)"] = _timed(
        lambda: store.file_details(PROJECT, repre_id, LOCAL, STUDIO, 3, NOW), repeat)
    return rows


# -- the OpenPype baseline: its own queries on the same documents ---------------------------

RETRIES = [0, 1, 2, None]  # OpenPype's retries_arr for retry_cnt 3 (None: no `tries` key)


def _site(site: str) -> dict:
    """The first `files.sites` entry of ``site`` in the unwound file (or null)."""
    return {"$arrayElemAt": [{"$filter": {"input": "$files.sites", "as": "s",
                                          "cond": {"$eq": ["$$s.name", site]}}}, 0]}


def _has(expr: str) -> dict:
    return {"$ne": [{"$ifNull": [expr, None]}, None]}


def openpype_sync_representations(coll, active: str, remote: str) -> list:
    """OpenPype's get_sync_representations (reference §3.4): a `$match` that no index
    serves (every representation document is read), `$unwind`/`$group` of every match,
    sorted by priority; the sync loop then walks the whole cursor every 60 s."""
    def queued(site: str) -> dict:
        return {"$elemMatch": {"name": site, "created_dt": {"$exists": False},
                               "tries": {"$in": RETRIES}, "paused": {"$exists": False}}}

    def available(site: str) -> dict:
        return {"$elemMatch": {"name": site, "created_dt": {"$exists": True}}}

    match = {"type": "representation", "$or": [
        {"$and": [{"files.sites": available(active)}, {"files.sites": queued(remote)}]},
        {"$and": [{"files.sites": queued(active)}, {"files.sites": available(remote)}]},
    ]}
    pipeline = [
        {"$match": match},
        {"$unwind": "$files"},
        {"$addFields": {"order_local": _site(active), "order_remote": _site(remote)}},
        {"$addFields": {"priority": {"$ifNull": ["$order_local.priority",
                                                 {"$ifNull": ["$order_remote.priority", 50]}]}}},
        {"$group": {"_id": "$_id", "context": {"$addToSet": "$context"},
                    "files": {"$addToSet": "$files"}, "priority": {"$max": "$priority"}}},
        {"$sort": {"priority": -1, "_id": 1}},
    ]
    return list(coll.aggregate(pipeline, allowDiskUse=True))


def openpype_summary_page(coll, active: str, remote: str, limit: int) -> list:
    """OpenPype's Sync Queue query (reference §6.4): match both sites, unwind every file
    of every match, group, compute the status, sort, then `$facet` the page and the
    `$count`. The window re-runs it every 5 s."""
    side_fields = {}
    for prefix in ("local", "remote"):
        entry = f"$o_{prefix}"
        side_fields |= {
            f"progress_{prefix}": {"$cond": [_has(f"{entry}.progress"), f"{entry}.progress",
                                             {"$cond": [_has(f"{entry}.created_dt"), 1, 0]}]},
            f"updated_dt_{prefix}": {"$ifNull": [f"{entry}.created_dt",
                                                 {"$ifNull": [f"{entry}.last_failed_dt", FAR]}]},
            f"failed_{prefix}_tries": {"$ifNull": [f"{entry}.tries", 0]},
            f"paused_{prefix}": {"$cond": [_has(f"{entry}.paused"), 1, 0]},
        }
    group = {"_id": "$_id", "asset": {"$first": "$context.asset"}, "files_count": {"$sum": 1},
             "files_size": {"$sum": "$files.size"}, "priority": {"$max": "$priority"}}
    for prefix in ("local", "remote"):
        group |= {f"avg_progress_{prefix}": {"$avg": f"$progress_{prefix}"},
                  f"updated_dt_{prefix}": {"$max": f"$updated_dt_{prefix}"},
                  f"failed_{prefix}_tries": {"$sum": f"$failed_{prefix}_tries"},
                  f"paused_{prefix}": {"$sum": f"$paused_{prefix}"}}
    status = {"$switch": {"branches": [
        {"case": {"$or": [{"$gt": ["$paused_remote", 0]}, {"$gt": ["$paused_local", 0]}]}, "then": 3},
        {"case": {"$or": [{"$gte": ["$failed_local_tries", 3]}, {"$gte": ["$failed_remote_tries", 3]}]},
         "then": 2},
        {"case": {"$or": [{"$eq": ["$avg_progress_remote", 0]}, {"$eq": ["$avg_progress_local", 0]}]},
         "then": 1},
        {"case": {"$and": [{"$eq": ["$avg_progress_remote", 1]}, {"$eq": ["$avg_progress_local", 1]}]},
         "then": 4},
    ], "default": 0}}
    pipeline = [
        # OpenPype writes {"files.sites.name": {"$all": [active, remote]}}; SecantusDB does
        # not apply $all through nested arrays, so the same condition as two equalities.
        {"$match": {"type": "representation",
                    "$and": [{"files.sites.name": active}, {"files.sites.name": remote}]}},
        {"$unwind": "$files"},
        {"$addFields": {"o_local": _site(active), "o_remote": _site(remote)}},
        {"$addFields": {**side_fields, "priority": {
            "$ifNull": ["$o_local.priority", {"$ifNull": ["$o_remote.priority", 50]}]}}},
        {"$group": group},
        {"$addFields": {"status": status}},
        {"$sort": {"updated_dt_remote": -1, "_id": 1}},
        {"$facet": {"paginatedResults": [{"$skip": 0}, {"$limit": limit}],
                    "totalCount": [{"$count": "count"}]}},
    ]
    return list(coll.aggregate(pipeline, allowDiskUse=True))


FAR = datetime(2099, 1, 1)


def measure_openpype(coll, repeat: int) -> dict[str, tuple[float, float]]:
    """The OpenPype baseline's figures, keyed by the rows of measure() they compare with."""
    rows = {}
    found = openpype_sync_representations(coll, LOCAL, STUDIO)
    assert found, "the OpenPype work query found nothing: the baseline would be meaningless"
    rows["find_work (batch of 16, work queued)"] = _timed(
        lambda: openpype_sync_representations(coll, LOCAL, STUDIO), repeat)
    rows["find_work (idle: pair with nothing queued)"] = _timed(
        lambda: openpype_sync_representations(coll, "nobody", STUDIO), repeat)
    page = openpype_summary_page(coll, LOCAL, STUDIO, 200)
    assert page and page[0]["paginatedResults"], "the OpenPype summary found nothing"
    rows["summary page 1 (200 rows, by asset)"] = _timed(
        lambda: openpype_summary_page(coll, LOCAL, STUDIO, 200), repeat)
    return rows


def engine_memory(db_dir: Path, files: int) -> tuple[float, float, int]:
    """Queue ``files`` real small files for this machine in the big database and let a
    `serve --once` process sync them; returns (seconds, peak RSS MiB, files synced)."""
    from app.publish import build_representation
    from app.store.sqlite import SqliteStore

    sites = db_dir / "sites"
    studio = sites / STUDIO
    (sites / LOCAL).mkdir(parents=True, exist_ok=True)
    folder = studio / PROJECT / "engine"
    folder.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(db_dir / "sitesync.db")
    # The bulk representations reference no real files: take this machine off them so
    # the engine moves only the files below.
    store.set_project_paused(PROJECT, True)
    store.ensure_project("engine")
    for r in range(files // 10):
        paths = []
        for i in range(10):
            path = folder / f"r{r:05d}.{i:02d}.exr"
            path.write_bytes(os.urandom(4096))
            paths.append(path)
        store.insert_representation(build_representation(
            "engine", paths, {"work": str(studio)}, asset=f"r{r}", subset="s", version=1, name="exr",
            family="render", publish_site=STUDIO, queued_sites=(LOCAL,), now=NOW))
    store.close()
    settings = db_dir / "settings.json"
    settings.write_text(json.dumps({
        "local_id": LOCAL, "publish_site": "local", "remote_site": STUDIO,
        "sites": {"local": {"provider": "local_drive", "root": {"work": str(sites / LOCAL)}},
                  STUDIO: {"provider": "local_drive", "root": {"work": str(studio)}}},
        "engine": {"workers_per_site": 8}}))
    env = {**os.environ, "SITESYNC_DATA_DIR": str(db_dir), "SITESYNC_LOG_DIR": str(db_dir / "logs"),
           "PYTHONPATH": str(ROOT)}
    code = ("import resource, sys, time; from app.cli import main; t = time.perf_counter(); "
            "rc = main(['--config', sys.argv[1], 'serve', '--once']); "
            "print('SECONDS', time.perf_counter() - t); "
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    run = subprocess.run([sys.executable, "-c", code, str(settings)], env=env, capture_output=True,
                         text=True, timeout=3600)
    if run.returncode != 0:
        raise RuntimeError(f"serve --once failed: {run.stdout[-2000:]} {run.stderr[-2000:]}")
    values = dict(line.split(" ", 1) for line in run.stdout.splitlines()
                  if line.startswith(("SECONDS", "MAXRSS")))
    synced = int(next(line.split()[1] for line in run.stdout.splitlines() if line.startswith("stopped:")))
    return float(values["SECONDS"]), int(values["MAXRSS"]) / 1024, synced


def _size_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / (1 << 20)


def run_sqlite(count: int, queued: float, repeat: int, engine_files: int, log) -> dict:
    from app.store.sqlite import SqliteStore

    with tempfile.TemporaryDirectory(prefix="sitesync-scale-") as tmp:
        db_dir = Path(tmp)
        store = SqliteStore(db_dir / "sitesync.db")
        log(f"sqlite: inserting {count:,} representations")
        rate = fill(store, count, queued, log)
        store.close()
        store = SqliteStore(db_dir / "sitesync.db")  # a fresh process's view: cold statements
        rows = measure(store, repeat)
        store.close()
        result = {"store": "SQLite (embedded)", "count": count, "insert_rate": rate, "rows": rows,
                  "size_mib": _size_mib(db_dir)}
        if engine_files:
            log(f"sqlite: engine process syncing {engine_files:,} files beside them")
            result["engine"] = engine_memory(db_dir, engine_files)
        return result


def run_mongo(count: int, queued: float, repeat: int, openpype: bool, log) -> dict:
    from secantus import SecantusDBServer

    from app.store.mongo import MongoStore

    with tempfile.TemporaryDirectory(prefix="sitesync-scale-mongo-") as tmp:
        server = SecantusDBServer(storage_path=tmp, port=0, sync_on_commit=False, cache_size="512M")
        server.__enter__()
        try:
            store = MongoStore(server.uri, database="scale")
            log(f"mongo: inserting {count:,} representations")
            rate = fill(store, count, queued, log)
            rows = measure(store, repeat)
            stats = store._db.command("dbStats")
            size = (stats.get("storageSize") or stats.get("dataSize") or 0) / (1 << 20)
            result = {"store": "MongoStore on SecantusDB", "count": count, "insert_rate": rate,
                      "rows": rows, "size_mib": size or _size_mib(Path(tmp))}
            if openpype:
                log("mongo: OpenPype's queries on the same documents")
                result["openpype"] = measure_openpype(store._db[PROJECT], repeat)
            store.close()
            return result
        finally:
            server.__exit__(None, None, None)


def _columns(results: list[dict]) -> list[tuple[str, dict]]:
    """(heading, result) per column; a Mongo run with the baseline adds OpenPype's column."""
    columns = []
    for r in results:
        columns.append((f"{r['store']}, {r['count']:,} repres", r))
        if "openpype" in r:
            columns.append((f"OpenPype's queries, same {r['count']:,} repres on SecantusDB",
                            {"rows": r["openpype"]}))
    return columns


def table(results: list[dict]) -> str:
    columns = _columns(results)
    lines = ["| operation | " + " | ".join(head for head, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for label in results[0]["rows"]:
        cells = []
        for _, r in columns:
            if label in r["rows"]:
                first, median = r["rows"][label]
                cells.append(f"{median:,.1f} ms (first {first:,.0f})")
            else:
                cells.append("-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def row(label: str, cell: Callable[[dict], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(r) if "store" in r else "-" for _, r in columns)
                     + " |")

    row("insert rate (representations/s, bulk path)", lambda r: f"{r['insert_rate']:,.0f}")
    row("database size", lambda r: f"{r['size_mib']:,.0f} MiB")
    if any("engine" in r for r in results):
        def engine(r: dict) -> str:
            if "engine" not in r:
                return "-"
            seconds, rss, synced = r["engine"]
            return f"{rss:,.0f} MiB peak RSS ({synced:,} files in {seconds:,.1f} s)"
        row("engine process (`serve --once`)", engine)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqlite", type=int, default=1_000_000, help="representations (0: skip)")
    parser.add_argument("--mongo", type=int, default=20_000, help="representations (0: skip)")
    parser.add_argument("--queued", type=float, default=0.01, help="share queued for this machine")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--engine-files", type=int, default=2000,
                        help="files the engine process syncs beside the bulk (0: skip)")
    parser.add_argument("--no-openpype", action="store_true",
                        help="skip OpenPype's queries on the Mongo documents (the baseline column)")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    results = []
    if args.sqlite:
        results.append(run_sqlite(args.sqlite, args.queued, args.repeat, args.engine_files, log))
    if args.mongo:
        results.append(run_mongo(args.mongo, args.queued, args.repeat, not args.no_openpype, log))
    text = table(results)
    text += (f"\n\n{os.cpu_count()} CPUs; {args.queued:.0%} of representations queued for this "
             f"machine; medians of {args.repeat} calls after a first one. Peak RSS of this bench "
             f"process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB.")
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
