"""Benchmark: one representation of 100,000 files synced with bounded memory.

Three fresh processes on the same embedded store, so each peak RSS is its own:

* *idle*: Python with SiteSync imported and the store open: the floor;
* *sync*: the engine syncing the whole representation between two local_drive sites
  (``serve --once``: every file copied, hashed, verified, fsynced and recorded);
* *load whole*: ``Store.get_representation`` of that representation, which is what a
  design that reads a representation whole (OpenPype's sync loop, every poll) needs.

The files are tiny (``--size`` bytes) so the run measures the per-file machinery, not the
disk. Seeding (writing the files, publishing them) happens in its own process first.

Usage:  python -m bench.large_representation [--files 100000] [--size 512] [--workers 8]
                                              [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _settings(tmp: Path, workers: int) -> Path:
    path = tmp / "settings.json"
    path.write_text(json.dumps({
        "local_id": "bench", "publish_site": "src", "remote_site": "dst", "loop_delay": 5,
        "sites": {"src": {"provider": "local_drive", "root": {"work": str(tmp / "src")}},
                  "dst": {"provider": "local_drive", "root": {"work": str(tmp / "dst")}}},
        "engine": {"workers_per_site": workers, "lease_s": 120, "progress_interval_s": 5},
    }))
    return path


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_seed(tmp: Path, files: int, size: int) -> dict:
    import hashlib

    from bson import ObjectId

    from app.model import FileRecord, Representation, SiteState
    from app.publish import openpype_hash
    from app.store.sqlite import SqliteStore
    from providers.base import CHECKSUM_ALGORITHM

    folder = tmp / "src" / "bench" / "sh010" / "publish" / "render" / "v001"
    folder.mkdir(parents=True)
    (tmp / "dst").mkdir()
    now = datetime.now(timezone.utc)
    records = []
    for i in range(files):
        data = os.urandom(size)
        path = folder / f"sh010_render_v001.{i:06d}.exr"
        path.write_bytes(data)
        checksum = f"{CHECKSUM_ALGORITHM}:{hashlib.sha256(data).hexdigest()}"
        records.append(FileRecord(
            id=str(ObjectId()), path="{root[work]}/" + str(path.relative_to(tmp / "src")),
            size=size, hash=openpype_hash(path),
            sites=(SiteState("src", created_dt=now, id=path.name, checksum=checksum),
                   SiteState("dst"))))
    repre = Representation(
        id=str(ObjectId()), project="bench", files=tuple(records), name="exr", created_dt=now,
        context={"asset": "sh010", "subset": "render", "version": 1, "representation": "exr",
                 "family": "render"})
    with SqliteStore(tmp / "bench.db") as store:
        store.insert_representation(repre)
    return {"repre_id": repre.id}


def child_idle(tmp: Path) -> dict:
    from app.engine.engine import Engine  # noqa: F401 - the import is what is measured
    from app.store.sqlite import SqliteStore

    with SqliteStore(tmp / "bench.db") as store:
        store.list_projects()
        return {"peak_mib": _peak_mib()}


def child_sync(tmp: Path, workers: int) -> dict:
    from app.engine.engine import Engine
    from app.settings import load_settings
    from app.store.sqlite import SqliteStore

    with SqliteStore(tmp / "bench.db") as store:
        engine = Engine(store, load_settings(_settings(tmp, workers)),
                        state_path=tmp / "engine.json")
        started = time.perf_counter()
        engine.start(once=True)
        engine.wait_stopped()
        seconds = time.perf_counter() - started
        engine.stop()
        return {"peak_mib": _peak_mib(), "seconds": seconds, "synced": engine.counts["synced"],
                "failed": engine.counts["failed"]}


def child_load(tmp: Path, repre_id: str) -> dict:
    from app.store.sqlite import SqliteStore

    with SqliteStore(tmp / "bench.db") as store:
        started = time.perf_counter()
        repre = store.get_representation("bench", repre_id)
        seconds = time.perf_counter() - started
        return {"peak_mib": _peak_mib(), "seconds": seconds, "files": len(repre.files)}


def _run(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.large_representation", *args],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--repre", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tmp = Path(args.dir)
        result = {
            "seed": lambda: child_seed(tmp, args.files, args.size),
            "idle": lambda: child_idle(tmp),
            "sync": lambda: child_sync(tmp, args.workers),
            "load": lambda: child_load(tmp, args.repre),
        }[args.child]()
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="sitesync-large-", dir=os.environ.get("BENCH_DIR")) as t:
        common = ["--dir", t, "--files", str(args.files), "--size", str(args.size)]
        seeded = _run("--child", "seed", *common)
        idle = _run("--child", "idle", *common)
        sync = _run("--child", "sync", "--workers", str(args.workers), *common)
        load = _run("--child", "load", "--repre", seeded["repre_id"], *common)
    if sync["synced"] != args.files:
        raise SystemExit(f"synced {sync['synced']} of {args.files} files ({sync['failed']} failed)")
    lines = [
        f"One representation of {args.files:,} files x {args.size} B, embedded store, "
        f"{args.workers} workers, {os.cpu_count()} cores; each row a fresh process",
        "",
        "| process | peak RSS | above idle | seconds | files/s |",
        "|---|---:|---:|---:|---:|",
        f"| idle (SiteSync imported, store open) | {idle['peak_mib']:.0f} MiB | - | - | - |",
        f"| sync every file (engine, `serve --once`) | {sync['peak_mib']:.0f} MiB | "
        f"{sync['peak_mib'] - idle['peak_mib']:.0f} MiB | {sync['seconds']:.1f} | "
        f"{args.files / sync['seconds']:,.0f} |",
        f"| load it whole (`get_representation`) | {load['peak_mib']:.0f} MiB | "
        f"{load['peak_mib'] - idle['peak_mib']:.0f} MiB | {load['seconds']:.1f} | - |",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
