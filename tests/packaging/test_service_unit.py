"""The example systemd unit (packaging/sitesync.service) is valid and its command runs:
`systemd-analyze verify` accepts it, and its ExecStart with its Environment (folders
moved into tmp_path) starts the engine, which stops with exit code 0 on SIGTERM."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "packaging" / "sitesync.service"
BINARY = "/opt/sitesync/sitesync"


def unit_values(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
            if line.startswith(key + "=")]


def test_systemd_accepts_the_unit(tmp_path):
    unit = tmp_path / "sitesync.service"
    unit.write_text(UNIT.read_text().replace(BINARY, sys.executable))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "sitesync.service" not in done.stderr, done.stderr  # no warnings about the unit


def test_the_units_command_serves_and_stops_cleanly_on_sigterm(tmp_path):
    (command,) = unit_values("ExecStart")
    argv = shlex.split(command)
    assert argv[0] == BINARY
    env = dict(os.environ)
    for assignment in unit_values("Environment"):
        name, value = assignment.split("=", 1)
        env[name] = str(tmp_path / value.strip("/").replace("/", "_"))
    settings = {"publish_site": "studio", "remote_site": "backup",
                "sites": {"studio": {"provider": "local_drive", "root": {"work": str(tmp_path / "s")}},
                          "backup": {"provider": "local_drive", "root": {"work": str(tmp_path / "b")}}}}
    Path(env["SITESYNC_CONFIG"]).write_text(json.dumps(settings))
    for root in ("s", "b"):
        (tmp_path / root).mkdir()
    subprocess.run([sys.executable, "-m", "app", "demo"], env=env, cwd=REPO, check=True,
                   capture_output=True, timeout=60)
    out = tmp_path / "serve.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "app", *argv[1:]], env=env, cwd=REPO,
                                stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while "serving demo: studio <-> backup" not in out.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0, out.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert "received SIGTERM: stopping" in out.read_text()
    assert (Path(env["SITESYNC_LOG_DIR"]) / "serve.log").is_file()
