"""`sitesync serve` as a service manager runs it: a separate process on real local sites,
stopped with SIGTERM in the middle of transfers (what `systemctl stop` sends).

A clean stop means: exit code 0 within seconds, no file under its final name that is not
the complete published file, no try counted against any file, and the next run finishes
the job from the partial data. Its log goes to the rotated file in the log folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FILES = 6
FILE_SIZE = 4 * 1024 * 1024
PART_SUFFIX = ".sitesync-part"


@pytest.fixture
def service(tmp_path: Path) -> dict:
    roots = {"artist-one": tmp_path / "local", "studio": tmp_path / "studio"}
    for root in roots.values():
        root.mkdir()
    settings = {
        "local_id": "artist-one", "publish_site": "local", "remote_site": "studio",
        "retry_cnt": 3,
        "sites": {name: {"provider": "local_drive", "root": {"work": str(root)}}
                  for name, root in roots.items()},
        "engine": {"workers_per_site": 4, "progress_interval_s": 0.1},
    }
    # A bandwidth limit keeps the transfers running long enough to be interrupted.
    settings["sites"]["studio"]["bwlimit"] = "6M"
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    env = dict(os.environ, SITESYNC_CONFIG=str(tmp_path / "settings.json"),
               SITESYNC_DATA_DIR=str(tmp_path / "data"), SITESYNC_LOG_DIR=str(tmp_path / "log"))
    folder = roots["artist-one"] / "shots" / "sh010"
    folder.mkdir(parents=True)
    sources = []
    for n in range(FILES):
        path = folder / f"frame.{n:04d}.exr"
        path.write_bytes(os.urandom(FILE_SIZE))
        sources.append(path)
    done = cli(env, "publish", "--project", "show", "--asset", "sh010", "--subset", "render",
               "--version", "1", "--name", "exr", *map(str, sources))
    assert done.returncode == 0, done.stderr
    return {"env": env, "roots": roots, "sources": sources, "tmp": tmp_path}


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def target_files(studio: Path) -> tuple[list[Path], list[Path]]:
    """(files under their final names, part files) on the studio site."""
    found = [p for p in studio.rglob("*") if p.is_file()]
    return ([p for p in found if not p.name.endswith(PART_SUFFIX)],
            [p for p in found if p.name.endswith(PART_SUFFIX)])


def site_entries(env: dict) -> list[dict]:
    done = cli(env, "status", "--json")
    assert done.returncode == 0, done.stderr
    return [r for project in json.loads(done.stdout) for r in project["representations"]]


@pytest.mark.slow
def test_sigterm_mid_sync_stops_cleanly_and_the_next_run_finishes(service):
    env, studio = service["env"], service["roots"]["studio"]
    out = service["tmp"] / "serve.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "app", "serve"], env=env, cwd=REPO,
                                stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not target_files(studio)[1]:  # transfers under way: part files exist
                assert proc.poll() is None, out.read_text()
                assert time.monotonic() < deadline, "no transfer started: " + out.read_text()
                time.sleep(0.05)
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            rc = proc.wait(15)
            stopped_in = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    text = out.read_text()
    assert rc == 0, text
    assert stopped_in < 5, f"took {stopped_in:.1f} s to stop"
    assert "received SIGTERM: stopping" in text and "Traceback" not in text

    finals, parts = target_files(studio)
    assert parts, "the stop came after every transfer ended; nothing was interrupted"
    assert len(finals) < FILES
    by_name = {p.name: p for p in service["sources"]}
    for final in finals:  # whatever carries a final name is the whole, verified file
        assert final.read_bytes() == by_name[final.name].read_bytes(), final
    for repre in site_entries(env):
        for side in ("active", "remote"):
            assert repre[side]["tries"] == 0 and repre[side]["error"] is None, repre

    log = (service["tmp"] / "log" / "serve.log").read_text()
    assert "engine " in log and "stopped:" in log

    done = cli(env, "serve", "--once")
    assert done.returncode == 0, done.stdout + done.stderr
    finals, parts = target_files(studio)
    assert (sorted(p.name for p in finals), parts) == (sorted(by_name), [])
    for final in finals:
        assert final.read_bytes() == by_name[final.name].read_bytes(), final
    assert [r["status"] for r in site_entries(env)] == ["Synced"]
