"""Benchmark: SiteSync's engine vs `rclone copy` on the same data, in the same run.

Two workloads between two local_drive sites on this machine:

* many small files (default 10,000 x 16 KiB, in representations of 100 files);
* one large file (default 1 GiB).

SiteSync is timed from engine start until every file is verified and recorded in the
embedded store (publishing the records happens before the clock starts, as it does in a
pipeline). rclone is timed for `rclone copy SRC DST` into an empty destination with the
same parallelism (`--transfers` = SiteSync's workers) and, in a second row, with
`--checksum` hashing. Each run copies into a fresh destination; the page cache is warm
for both tools (the source was just written), which is the fair comparison on one box.
Destinations are deleted only when the workload is over: on ext4 without a journal
(this VM's disk) every file created within about 30 s of a mass delete makes the kernel
look past the freed inodes (perf: ``recently_deleted`` under ``ext4_create``, a third
of all CPU), so deleting one tool's 10,000 copies slowed whichever tool ran next. For the same
reason each run starts after an ``os.sync()``: rclone's plain copy leaves its last
gigabyte dirty in the page cache, and the next run would write it back.

Then the same two workloads (smaller by default) between a local folder and an SFTP site
on a throwaway OpenSSH sshd on 127.0.0.1, both ways, against `rclone copy` to the same
server (see bench/sftp_bench.py; skipped with --no-sftp).

Usage:  python -m bench.transfer_vs_rclone [--small 10000] [--small-size 16384]
                                            [--large-mib 1024] [--workers 8] [--out FILE]
                                            [--sftp-small 2000] [--sftp-large-mib 256]
                                            [--no-sftp]
Prints a Markdown table (also written to --out if given).
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
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.engine.engine import Engine  # noqa: E402
from app.publish import build_representation  # noqa: E402
from app.settings import load_settings  # noqa: E402
from app.store.sqlite import SqliteStore  # noqa: E402


def _write_small(folder: Path, count: int, size: int) -> list[Path]:
    paths = []
    for i in range(count):
        sub = folder / f"rep{i // 100:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"frame.{i:06d}.exr"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def _write_large(folder: Path, mib: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plate.mov"
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as stream:
        for _ in range(mib):
            stream.write(block)
    return [path]


def _settings(tmp: Path, src: Path, dst: Path, workers: int) -> Path:
    path = tmp / "settings.json"
    path.write_text(json.dumps({
        "local_id": "bench", "publish_site": "src", "remote_site": "dst", "loop_delay": 5,
        "sites": {"src": {"provider": "local_drive", "root": {"work": str(src)}},
                  "dst": {"provider": "local_drive", "root": {"work": str(dst)}}},
        "engine": {"workers_per_site": workers, "lease_s": 60, "progress_interval_s": 2},
    }))
    return path


def run_sitesync(tmp: Path, src: Path, paths: list[Path], workers: int) -> float:
    """Seconds for the engine to sync ``paths`` into ``tmp/sitesync-dst`` (kept: see the
    module docstring)."""
    dst = tmp / "sitesync-dst"
    dst.mkdir()
    settings = load_settings(_settings(tmp, src, dst, workers))
    store = SqliteStore(tmp / "bench.db")
    store.ensure_project("bench")
    now = datetime.now(timezone.utc)
    groups: dict[Path, list[Path]] = {}
    for p in paths:
        groups.setdefault(p.parent, []).append(p)
    for n, files in enumerate(groups.values()):
        store.insert_representation(build_representation(
            "bench", files, {"work": str(src)}, asset=f"a{n}", subset="s", version=1,
            name="exr", family="render", publish_site="src", queued_sites=["dst"], now=now))
    engine = Engine(store, settings, state_path=tmp / "engine.json")
    os.sync()  # no run pays for the write-back of the one before
    started = time.perf_counter()
    engine.start(once=True)
    engine.wait_stopped()
    elapsed = time.perf_counter() - started
    engine.stop()
    synced = engine.counts["synced"]
    store.close()
    if synced != len(paths):
        raise SystemExit(f"SiteSync synced {synced} of {len(paths)} files")
    return elapsed


def run_rclone(tmp: Path, src: Path, workers: int, checksum: bool, durable: bool = False) -> float:
    """Seconds for ``rclone copy`` into a new folder under ``tmp`` (kept: see the module
    docstring). ``durable`` adds what rclone leaves out and SiteSync does before it
    records a file: an fsync of every copied file and folder (run on ``workers``
    threads, as SiteSync's workers would), so the copy survives a power cut."""
    dst = Path(tempfile.mkdtemp(prefix="rclone-dst-", dir=tmp))
    cmd = ["rclone", "copy", str(src), str(dst), "--transfers", str(workers),
           "--checkers", str(workers * 2)]
    if checksum:
        cmd.append("--checksum")
    os.sync()  # no run pays for the write-back of the one before
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    if durable:
        _fsync_tree(dst, workers)
    return time.perf_counter() - started


def _fsync_tree(root: Path, workers: int) -> None:
    def fsync(path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    paths = []
    for folder, _dirs, files in os.walk(root):
        paths += [os.path.join(folder, name) for name in files]
        paths.append(folder)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fsync, paths))


def _row(name: str, tool: str, seconds: float, files: int, total_bytes: int) -> str:
    return (f"| {name} | {tool} | {seconds:.2f} | {files / seconds:,.0f} | "
            f"{total_bytes / seconds / 1e6:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--small-size", type=int, default=16 * 1024)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--out")
    parser.add_argument("--sftp-small", type=int, default=2_000)
    parser.add_argument("--sftp-large-mib", type=int, default=256)
    parser.add_argument("--no-sftp", action="store_true", help="skip the SFTP rows")
    args = parser.parse_args()
    if shutil.which("rclone") is None:
        raise SystemExit("rclone not found: apt-get install rclone")
    version = subprocess.run(["rclone", "version"], capture_output=True, text=True).stdout
    lines = [
        f"SiteSync vs {version.splitlines()[0]}, {os.cpu_count()} cores, "
        f"workers/transfers={args.workers}",
        "",
        "| workload | tool | seconds | files/s | MB/s |",
        "|---|---|---:|---:|---:|",
    ]
    workloads = [
        (f"{args.small:,} x {args.small_size // 1024} KiB", "small", args.small),
        (f"1 x {args.large_mib} MiB", "large", 1),
    ]
    for label, kind, count in workloads:
        with tempfile.TemporaryDirectory(prefix="sitesync-bench-", dir=os.environ.get("BENCH_DIR")) as t:
            tmp = Path(t)
            src = tmp / "src"
            if kind == "small":
                paths = _write_small(src, args.small, args.small_size)
            else:
                paths = _write_large(src, args.large_mib)
            total = sum(p.stat().st_size for p in paths)
            results = [
                ("SiteSync (sha256 verified, fsync'd, DB recorded)",
                 run_sitesync(tmp, src, paths, args.workers)),
                ("rclone copy", run_rclone(tmp, src, args.workers, checksum=False)),
                ("rclone copy --checksum", run_rclone(tmp, src, args.workers, checksum=True)),
                ("rclone copy, then fsync (durable)",
                 run_rclone(tmp, src, args.workers, checksum=False, durable=True)),
            ]
            for tool, seconds in results:
                lines.append(_row(label, tool, seconds, count, total))
    if not args.no_sftp:
        lines += _sftp_lines(args)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


def _sftp_lines(args: argparse.Namespace) -> list[str]:
    from bench.sftp_bench import sftp_available, sftp_rows

    why = sftp_available()
    if why:
        return ["", f"SFTP rows skipped: {why}"]

    def write(folder: Path, kind: str) -> list[Path]:
        if kind == "small":
            return _write_small(folder, args.sftp_small, args.small_size)
        return _write_large(folder, args.sftp_large_mib)

    workloads = [
        (f"{args.sftp_small:,} x {args.small_size // 1024} KiB", "small", args.sftp_small),
        (f"1 x {args.sftp_large_mib} MiB", "large", 1),
    ]
    return sftp_rows(workloads, write, args.workers, _row)


if __name__ == "__main__":
    main()
