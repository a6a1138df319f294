"""Security: paths that try to leave a site root, credentials that must never show, and
files that must be private.

* Documents whose paths climb out (``..``), are absolute, carry Windows drive letters,
  UNC prefixes, backslashes or NUL bytes, name unknown roots, or reach outside through
  a symlink (a symlinked source file, a symlinked target folder) fail with a message
  naming the path; nothing is read from or written outside the roots, and the good file
  next to them still syncs.
* Database and SFTP passwords appear in no command output, no log, no error text and no
  file SiteSync writes (run as a user would: `python -m app ...` processes).
* Settings, the embedded database and state files are created owner-only whatever the
  umask, inside owner-only folders.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from bson import ObjectId

from app.errors import PathEscapeError
from app.model import Status
from app.status import site_status
from tests.integration.conftest import LOCAL_ID
from tests.reliability.helpers import STUDIO, all_synced, publish, report

REPO_ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(timezone.utc)

# -- paths ---------------------------------------------------------------------------------------

ESCAPES = [
    "{root[work]}/../outside/escaped.exr",
    "{root[work]}/demo/../../outside/escaped.exr",
    "{root[work]}//outside/escaped.exr",
    "{root[work]}x/../outside/escaped.exr",
    "/etc/passwd",
    "{root[work]}/C:/Windows/escaped.exr",
    "{root[work]}/C:escaped.exr",
    "{root[work]}/\\\\server\\share\\escaped.exr",
    "{root[work]}/demo\\..\\..\\outside\\escaped.exr",
    "{root[work]}/demo/a\x00b.exr",
    "{root[work]}/demo/./x.exr",
    "{root[work]}/demo/.../x.exr",
    "{root[work]}/demo/x.exr:stream",
    "{root[work]}",
    "{root[other]}/demo/x.exr",
    "{root[work]!r}/demo/x.exr",
]


def _doc(path: str, size: int = 11) -> dict:
    return {
        "_id": ObjectId(), "type": "representation", "name": "exr",
        "context": {"asset": "evil", "subset": "x", "version": 1, "representation": "exr"},
        "files": [{"_id": ObjectId(), "path": path, "size": size, "hash": "",
                   "sites": [{"name": LOCAL_ID, "created_dt": NOW}, {"name": STUDIO}]}],
    }


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root`` (links by target), to see that nothing changed."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[rel] = path.read_bytes()
    return found


def test_paths_and_symlinks_that_leave_a_root_are_refused(sync_env):
    env = sync_env
    outside = env.tmp / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"not for syncing")
    # A source file that is a link to a file outside the source root (exfiltration).
    (env.roots[LOCAL_ID] / "demo").mkdir()
    (env.roots[LOCAL_ID] / "demo" / "leak.exr").symlink_to(outside / "secret.txt")
    # A target folder that is a link out of the target root (writing elsewhere).
    (env.roots[LOCAL_ID] / "demo" / "linked").mkdir()
    (env.roots[LOCAL_ID] / "demo" / "linked" / "x.exr").write_bytes(b"hello world")
    (env.roots[STUDIO] / "demo").mkdir()
    (env.roots[STUDIO] / "demo" / "linked").symlink_to(outside, target_is_directory=True)
    before = {"outside": _tree(outside), "tmp": sorted(p.name for p in env.tmp.iterdir())}

    env.store.ensure_project("demo")
    bad = {}
    for path in [*ESCAPES, "{root[work]}/demo/leak.exr", "{root[work]}/demo/linked/x.exr"]:
        try:
            bad[env.store.insert_document("demo", _doc(path, 15 if "leak" in path else 11))] = path
        except Exception as exc:  # a store may refuse a path it cannot hold at all
            pytest.fail(f"insert_document refused {path!r} with {exc!r}; it should store it "
                        "and let the engine refuse to move it")
    import random

    good = publish(env, LOCAL_ID, "good", [5000], random.Random(1))
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: all_synced(env, [good]))

    def failed(repre_id: str) -> bool:
        state = env.store.get_representation("demo", repre_id).files[0].site(STUDIO)
        return site_status(state, 3, datetime.now(timezone.utc)) is Status.FAILED

    env.wait_for(lambda: all(failed(r) for r in bad), timeout=30)
    for repre_id, path in bad.items():
        state = env.store.get_representation("demo", repre_id).files[0].site(STUDIO)
        assert state.permanent and state.tries == 1, (path, state)
        assert any(word in state.error for word in ("refusing", "rootless", "no root")), \
            (path, state.error)
    assert _tree(outside) == before["outside"], "something was written outside the roots"
    assert sorted(p.name for p in env.tmp.iterdir()) == before["tmp"]
    assert not any(b"not for syncing" in data for data in _tree(env.roots[STUDIO]).values()
                   if isinstance(data, bytes))
    assert env.part_files() == []
    report("escaping_paths", store=env.store.kind, documents=len(bad))


@pytest.mark.parametrize("path", ESCAPES[:14])
def test_every_escaping_shape_is_refused_with_the_path_named(path):
    from app.errors import PermanentError
    from providers.paths import safe_join, split_rootless

    with pytest.raises(PermanentError) as caught:  # PathEscapeError is one
        _, parts = split_rootless(path)
        safe_join("/mnt/root", parts)
    assert repr(path) in str(caught.value), str(caught.value)
    assert isinstance(caught.value, PathEscapeError) or "not rootless" in str(caught.value)


# -- credentials -------------------------------------------------------------------------------

DB_PASSWORD = "S3cr3t:p@ss/w0rd!"
SFTP_PASSWORD = "Sftp-Pa55word-xyzzy"
KEY_PASSPHRASE = "Key-Phrase-plugh-42"
SECRETS = [DB_PASSWORD, quote(DB_PASSWORD, safe=""), SFTP_PASSWORD, KEY_PASSPHRASE]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed once we return: connections are refused


def _env(home: Path, umask: int = 0o022) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITESYNC_") and k != "PYTHONPATH"}
    env |= {"SITESYNC_DATA_DIR": str(home / "data"), "SITESYNC_LOG_DIR": str(home / "logs"),
            "SITESYNC_CONFIG": str(home / "config" / "settings.json"),
            "PYTHONPATH": str(REPO_ROOT), "HOME": str(home / "home"),
            "XDG_CONFIG_HOME": str(home / "xdg-config"), "XDG_DATA_HOME": str(home / "xdg-data"),
            "XDG_STATE_HOME": str(home / "xdg-state"), "XDG_CACHE_HOME": str(home / "xdg-cache")}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def _cli(home: Path, *args: str, timeout: float = 60, umask: int = 0o022) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=REPO_ROOT, env=_env(home), capture_output=True,
        text=True, timeout=timeout, stdin=subprocess.DEVNULL, preexec_fn=lambda: os.umask(umask),
    )


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.mark.slow
def test_passwords_never_reach_output_logs_errors_or_files(tmp_path):
    home = tmp_path
    (home / "config").mkdir(mode=0o700)
    (home / "sites" / "local").mkdir(parents=True)
    (home / "sites" / "local" / "demo").mkdir()
    shot = home / "sites" / "local" / "demo" / "sh010.exr"
    shot.write_bytes(b"frame")
    sftp_site = {"provider": "sftp", "sftp_host": "127.0.0.1", "sftp_port": _closed_port(),
                 "sftp_user": "pipeline", "sftp_pass": SFTP_PASSWORD, "sftp_key_pass": KEY_PASSPHRASE,
                 "insecure_skip_host_key_check": True, "sftp_connect_timeout_s": 2,
                 "root": {"work": "/srv/work"}}
    raw = {"local_id": LOCAL_ID, "publish_site": "local", "remote_site": "nas", "retry_cnt": 2,
           "sites": {"local": {"provider": "local_drive", "root": {"work": str(home / "sites" / "local")}},
                     "nas": sftp_site},
           "engine": {"backoff_base_s": 0.1, "backoff_max_s": 0.2}}
    settings = home / "config" / "settings.json"
    settings.write_text(json.dumps(raw))
    runs = [_cli(home, "publish", "--project", "demo", "--asset", "sh010", "--subset", "render",
                 "--version", "1", "--name", "exr", str(shot)),
            _cli(home, "serve", "--once", timeout=120),
            _cli(home, "status"), _cli(home, "status", "--json"), _cli(home, "--debug", "status"),
            _cli(home, "doctor"), _cli(home, "--debug", "doctor")]
    assert "FAILED" in runs[1].stdout or "retry" in runs[1].stdout, runs[1].stdout  # sftp was tried

    # The same with a studio MongoDB that cannot be reached, its password in the URL.
    raw["database_url"] = f"mongodb://pipeline:{quote(DB_PASSWORD, safe='')}@127.0.0.1:{_closed_port()}/" \
                          "?serverSelectionTimeoutMS=1000"
    settings.write_text(json.dumps(raw))
    runs += [_cli(home, *args) for args in (["status"], ["--debug", "status"], ["doctor"], ["reset"],
                                            ["pause", "--project", "demo"], ["limit"])]
    mongo_down = runs[-6]
    assert mongo_down.returncode == 1 and "cannot be reached" in mongo_down.stderr, mongo_down.stderr
    # A broken settings file next to the passwords: the error quotes keys, never secrets.
    raw["retry_cnt"] = "many"
    raw["sites"]["nas"]["sftp_port"] = SFTP_PASSWORD
    settings.write_text(json.dumps(raw))
    broken = _cli(home, "status")
    runs.append(broken)
    assert broken.returncode == 2 and "retry_cnt" in broken.stderr, broken.stderr

    for run in runs:
        assert not _leaks(run.stdout + run.stderr), (run.args, _leaks(run.stdout + run.stderr),
                                                     run.stdout[-2000:], run.stderr[-2000:])
        assert "Traceback" not in run.stderr or "--debug" in run.args, run.stderr
    written = [p for p in home.rglob("*") if p.is_file() and p != settings]
    assert any(p.name == "sitesync.db" for p in written)
    for path in written:
        data = path.read_bytes()
        assert not [s for s in SECRETS if s.encode() in data], f"a password was written to {path}"
    report("secrets", commands=len(runs), files_scanned=len(written))


# -- permissions ----------------------------------------------------------------------------------


def test_settings_database_and_state_are_owner_only_whatever_the_umask(tmp_path):
    home = tmp_path
    for args in (["status"], ["pause"], ["demo"], ["serve", "--once"], ["resume"]):
        run = _cli(home, *args, timeout=120, umask=0o000)  # the most permissive umask
        assert run.returncode == 0, (args, run.stdout, run.stderr)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    private_dirs = [home / "config", home / "data", home / "data" / "state"]
    private_files = [home / "config" / "settings.json", home / "data" / "state" / "engine.json",
                     *(home / "data").glob("sitesync.db*")]
    assert len(private_files) >= 3
    for path in private_dirs:
        assert mode(path) == 0o700, f"{path} is {oct(mode(path))}"
    for path in private_files:
        assert mode(path) == 0o600, f"{path} is {oct(mode(path))}"
    report("permissions", files=len(private_files), folders=len(private_dirs))
