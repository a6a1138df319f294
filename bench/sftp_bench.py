"""SFTP rows of the rclone benchmark: SiteSync's engine vs `rclone copy` to the same sshd.

A throwaway OpenSSH sshd on 127.0.0.1 (the test suite's, tests/sftp_server.py: a
dedicated unprivileged user, key login, known_hosts checked) serves one folder. Each
workload runs both ways:

* up: local folder -> SFTP; SiteSync verifies every upload on the server (SHA-256 by
  `openssl dgst` over SSH for files over 1 MiB, a re-read for smaller ones) before the atomic rename, and
  records it in the embedded store. rclone's default compares an md5sum it runs on the
  server; the `--sftp-disable-hashcheck` row shows rclone without that check.
* down: SFTP -> local folder; SiteSync hashes the stream, verifies the local copy after
  fsync and records it; rclone as above.

Both tools use the same parallelism (SiteSync workers = rclone --transfers) and copy into
an empty destination; the page cache is warm for both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from app.engine.engine import Engine
from app.publish import build_representation
from app.settings import load_settings
from app.store.sqlite import SqliteStore

__all__ = ["sftp_rows"]


def _rclone_remote(server, path: Path) -> str:
    return (f":sftp,host={server.host},port={server.port},user={server.user},"
            f"key_file={server.key},known_hosts_file={server.known_hosts}:{path}")


def _settings(tmp: Path, server, local: Path, remote: Path, workers: int) -> Path:
    path = tmp / "settings.json"
    path.write_text(json.dumps({
        "local_id": "bench", "publish_site": "disk", "remote_site": "sftp", "loop_delay": 5,
        "sites": {"disk": {"provider": "local_drive", "root": {"work": str(local)}},
                  "sftp": {"provider": "sftp", **server.site_config(remote)}},
        "engine": {"workers_per_site": workers, "lease_s": 60, "progress_interval_s": 2},
    }))
    return path


def _sitesync(tmp: Path, server, paths: list[Path], src_root: Path, src_site: str,
              local: Path, remote: Path, workers: int) -> tuple[float, int]:
    """Sync ``paths`` (under ``src_root`` on ``src_site``) to the other site; returns
    (seconds, SFTP logins made)."""
    settings = load_settings(_settings(tmp, server, local, remote, workers))
    store = SqliteStore(tmp / "bench.db")
    store.ensure_project("bench")
    now = datetime.now(timezone.utc)
    other = "sftp" if src_site == "disk" else "disk"
    groups: dict[Path, list[Path]] = {}
    for path in paths:
        groups.setdefault(path.parent, []).append(path)
    for number, files in enumerate(groups.values()):
        store.insert_representation(build_representation(
            "bench", files, {"work": str(src_root)}, asset=f"a{number}", subset="s", version=1,
            name="exr", family="render", publish_site=src_site, queued_sites=[other], now=now))
    engine = Engine(store, settings, state_path=tmp / "engine.json")
    started = time.perf_counter()
    engine.start(once=True)
    engine.wait_stopped()
    elapsed = time.perf_counter() - started
    provider = engine._providers.get(("bench", "sftp"))
    logins = provider.pool.connects if provider is not None else 0
    engine.stop()
    synced, failed = engine.counts["synced"], engine.counts["failed"]
    store.close()
    if synced != len(paths):
        raise SystemExit(f"SiteSync synced {synced} of {len(paths)} files over SFTP ({failed} failures)")
    return elapsed, logins


def _rclone(source: str, target: str, workers: int, *extra: str) -> float:
    cmd = ["rclone", "copy", source, target, "--transfers", str(workers),
           "--checkers", str(workers * 2), *extra]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _fresh(path: Path, server) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    server.chown(path)
    return path


def sftp_rows(workloads: list[tuple[str, str, int]], write_files, workers: int,
              row) -> list[str]:
    """Table rows for each (label, kind, count) workload, up and down. ``write_files``
    writes a workload's files into a folder and returns them; ``row`` formats a row."""
    from tests.sftp_server import SshServer

    server = SshServer()
    server.start()
    lines = []
    try:
        for label, kind, count in workloads:
            work = server.folder(f"bench-{kind}")
            local_src = work / "local-src"
            paths = write_files(local_src, kind)
            total = sum(path.stat().st_size for path in paths)
            results = []
            # up: local -> SFTP
            remote = _fresh(work / "sitesync-up", server)
            seconds, logins = _sitesync(work, server, paths, local_src, "disk", local_src,
                                        remote, workers)
            results.append((f"up: SiteSync (verified on the server, DB recorded; {_logins(logins)})",
                            seconds))
            (work / "bench.db").unlink()
            remote = _fresh(work / "rclone-up", server)
            results.append(("up: rclone copy (md5sum on the server)",
                            _rclone(str(local_src), _rclone_remote(server, remote), workers)))
            remote = _fresh(work / "rclone-up-nohash", server)
            results.append(("up: rclone copy --sftp-disable-hashcheck",
                            _rclone(str(local_src), _rclone_remote(server, remote), workers,
                                    "--sftp-disable-hashcheck")))
            # down: SFTP -> local (the files SiteSync uploaded, now published there)
            served = work / "sitesync-up"
            server_paths = sorted(p for p in served.rglob("*") if p.is_file())
            local_dst = _fresh(work / "sitesync-down", server)
            seconds, logins = _sitesync(work, server, server_paths, served, "sftp", local_dst,
                                        served, workers)
            results.append((f"down: SiteSync (sha256 verified, DB recorded; {_logins(logins)})",
                            seconds))
            for name, extra in (("down: rclone copy", ()),
                                ("down: rclone copy --sftp-disable-hashcheck",
                                 ("--sftp-disable-hashcheck",))):
                local_dst = _fresh(work / "rclone-down", server)
                results.append((name, _rclone(_rclone_remote(server, served), str(local_dst),
                                              workers, *extra)))
            for tool, seconds in results:
                lines.append(row(f"{label} (SFTP)", tool, seconds, count, total))
            shutil.rmtree(work, ignore_errors=True)
    finally:
        server.close()
    return lines


def _logins(count: int) -> str:
    return f"{count} login" if count == 1 else f"{count} logins"


def sftp_available() -> str | None:
    """Why the SFTP rows cannot run here, or None."""
    if shutil.which("sshd") is None and not os.path.exists("/usr/sbin/sshd"):
        return "openssh-server is not installed (apt-get install openssh-server)"
    return None
