"""Benchmark: how close the bandwidth limit holds, SiteSync vs `rclone copy --bwlimit`.

For each limit and worker count, both tools move the same files (about ``--seconds`` of
traffic at that limit, split into 8 files) between two local folders, into an empty
destination. SiteSync's rate is bytes over the time from the first transfer start to the
last verified file (events from the engine); rclone's is bytes over its wall time (it
starts in ~0.1 s). The error column is measured vs target; the goal is within ±10 %.

Usage:  python -m bench.bandwidth_limiter [--limits 1M,4M,16M,64M] [--workers 1,4]
                                           [--seconds 4] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.engine.engine import Engine  # noqa: E402
from app.events.types import FileSynced, TransferStarted  # noqa: E402
from app.policy.bandwidth import format_rate, parse_rate  # noqa: E402
from app.publish import build_representation  # noqa: E402
from app.settings import load_settings  # noqa: E402
from app.store.sqlite import SqliteStore  # noqa: E402

FILES = 8


def _write(folder: Path, total: int) -> list[Path]:
    folder.mkdir(parents=True)
    size = total // FILES
    paths = []
    for i in range(FILES):
        path = folder / f"plate.{i:04d}.exr"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def run_sitesync(tmp: Path, src: Path, paths: list[Path], limit: str, workers: int) -> float:
    dst = tmp / "sitesync-dst"
    dst.mkdir()
    settings_path = tmp / "settings.json"
    settings_path.write_text(json.dumps({
        "local_id": "bench", "publish_site": "src", "remote_site": "dst", "loop_delay": 5,
        "sites": {"src": {"provider": "local_drive", "root": {"work": str(src)}},
                  "dst": {"provider": "local_drive", "root": {"work": str(dst)},
                          "bwlimit": limit}},
        "engine": {"workers_per_site": workers, "lease_s": 60, "progress_interval_s": 2},
    }))
    store = SqliteStore(tmp / "bench.db")
    store.insert_representation(build_representation(
        "bench", paths, {"work": str(src)}, asset="plate", subset="s", version=1, name="exr",
        family="render", publish_site="src", queued_sites=["dst"],
        now=datetime.now(timezone.utc)))
    engine = Engine(store, load_settings(settings_path), state_path=tmp / "engine.json")
    starts: list[float] = []
    ends: list[float] = []
    engine.bus.subscribe(lambda e: starts.append(time.perf_counter()), TransferStarted)
    engine.bus.subscribe(lambda e: ends.append(time.perf_counter()), FileSynced)
    engine.start(once=True)
    engine.wait_stopped()
    engine.stop()
    store.close()
    if len(ends) != len(paths):
        raise SystemExit(f"SiteSync synced {len(ends)} of {len(paths)} files")
    shutil.rmtree(dst)
    (tmp / "bench.db").unlink()
    return max(ends) - min(starts)


def run_rclone(tmp: Path, src: Path, limit: str, workers: int) -> float:
    dst = tmp / "rclone-dst"
    started = time.perf_counter()
    subprocess.run(["rclone", "copy", str(src), str(dst), "--transfers", str(workers),
                    "--bwlimit", limit], check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    shutil.rmtree(dst)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limits", default="1M,4M,16M,64M")
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--out")
    args = parser.parse_args()
    rclone = shutil.which("rclone")
    version = subprocess.run(["rclone", "version"], capture_output=True,
                             text=True).stdout.splitlines()[0] if rclone else "rclone missing"
    lines = [
        f"Bandwidth limit accuracy, SiteSync vs {version}, {os.cpu_count()} cores, "
        f"{FILES} files of ~{args.seconds:g} s of traffic in total per run",
        "",
        "| limit | workers | tool | seconds | measured | error |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for limit in args.limits.split(","):
        target = parse_rate(limit)
        assert target is not None
        for workers in (int(w) for w in args.workers.split(",")):
            with tempfile.TemporaryDirectory(prefix="sitesync-bw-",
                                             dir=os.environ.get("BENCH_DIR")) as t:
                tmp = Path(t)
                paths = _write(tmp / "src", int(target * args.seconds))
                total = sum(p.stat().st_size for p in paths)
                runs = [("SiteSync", run_sitesync(tmp, tmp / "src", paths, limit, workers))]
                if rclone:
                    runs.append(("rclone --bwlimit", run_rclone(tmp, tmp / "src", limit, workers)))
                for tool, seconds in runs:
                    measured = total / seconds
                    lines.append(f"| {format_rate(target)} | {workers} | {tool} | {seconds:.2f} | "
                                 f"{format_rate(measured)} | {(measured / target - 1):+.1%} |")
                    print(lines[-1], flush=True)
    text = "\n".join(lines)
    print()
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
