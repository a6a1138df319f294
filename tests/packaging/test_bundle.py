"""The packaged app: `bash scripts/build` (PyInstaller, build.spec) and the binary run as a
user or a service runs it, with nothing from the source tree on its path.

Built once per session into a temp folder (never over a developer's dist/). Checks: the
bundle's contents (icons, every provider in providers/registry.py, only the Drive v3
discovery document, its size), `--version`, the tray on a real X session with a tray
host (icon shown and drawn from the SVGs, clean exit on --quit-after), the tray's
refusal without a tray host, and `serve --once` syncing real files to the real sshd.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from app import __version__
from providers.registry import PROVIDERS
from tests.helpers.xsession import wait_until, x_session
from tests.ui.test_tray_x11 import colour_share
from ui.icons import ICON_DIR, STATE_COLOURS

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
#: The bundle without numpy and the unused discovery documents is ~180 MiB; the
#: googleapiclient hook's 110 MB of JSON coming back would show here.
MAX_BUNDLE_MB = 220


def bundle_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run scripts/build with its output redirected to a temp dist folder."""
    out = tmp_path_factory.mktemp("bundle")
    env = dict(os.environ, SITESYNC_DIST=str(out / "dist"), SITESYNC_BUILD=str(out / "build"))
    done = subprocess.run(["bash", "scripts/build"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "built " in done.stdout and "MiB as .tar.gz" in done.stdout, done.stdout
    folder = out / "dist" / "sitesync"
    print(done.stdout.strip().splitlines()[-1])
    return folder


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """A user's environment with SiteSync's folders in tmp_path, and no source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(SITESYNC_CONFIG=str(tmp_path / "settings.json"),
               SITESYNC_DATA_DIR=str(tmp_path / "data"), SITESYNC_LOG_DIR=str(tmp_path / "log"),
               SITESYNC_LOCAL_ID="artist-one")
    return env


def run(bundle: Path, env: dict[str, str], *args: str, timeout: float = 120,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(bundle / "sitesync"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False, cwd=cwd or Path("/"))


def test_the_bundle_holds_icons_providers_and_only_the_drive_discovery_document(bundle):
    internal = bundle / "_internal"
    icons = sorted(p.name for p in (internal / "resources" / "icons").glob("*.svg"))
    assert icons == sorted(p.name for p in ICON_DIR.glob("*.svg"))
    documents = internal / "googleapiclient" / "discovery_cache" / "documents"
    assert sorted(p.name for p in documents.iterdir()) == ["drive.v3.json"]
    assert not (internal / "numpy").exists()
    toc = (bundle.parent.parent / "build" / "build" / "PYZ-00.toc").read_text()
    modules = {entry[0] for entry in ast.literal_eval(toc)[1]}
    for target in PROVIDERS.values():
        assert target.partition(":")[0] in modules, target
    # What an admin unpacks on a server is all they need: the unit and its guide.
    unit = (bundle / "sitesync.service").read_text()
    assert unit == (REPO / "packaging" / "sitesync.service").read_text()
    assert "Documentation=file:///opt/sitesync/docs/deploy.md" in unit
    assert (bundle / "docs" / "deploy.md").read_text() == (REPO / "docs" / "deploy.md").read_text()
    assert (bundle / "README.md").is_file() and (bundle / "docs" / "providers" / "gdrive.md").is_file()
    size = bundle_size_mb(bundle)
    assert size < MAX_BUNDLE_MB, f"bundle is {size:.0f} MiB"


def test_version(bundle, home):
    done = run(bundle, home, "--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"sitesync {__version__}"), done.stderr


def test_the_tray_starts_shows_its_icon_and_quits_cleanly(bundle, home, tmp_path):
    tools = ("Xvfb", "trayer", "import", "xwininfo", "xdpyinfo")
    assert all(shutil.which(t) for t in tools), "scripts/test installs the X tools"
    with x_session(tmp_path / "x") as session:
        env = {**home, "DISPLAY": session.display, "QT_QPA_PLATFORM": "xcb"}
        log = tmp_path / "tray.out"
        with open(log, "wb") as sink:
            proc = subprocess.Popen([str(bundle / "sitesync"), "tray", "--quit-after", "6"],
                                    env=env, stdout=sink, stderr=subprocess.STDOUT, cwd="/")
            try:
                icon = wait_until(session.tray_icon, 30, "the tray icon in the panel")
                time.sleep(1.0)
                shot = session.screenshot(tmp_path / "tray.png")
                shares = [colour_share(shot, icon, colour) for colour in STATE_COLOURS.values()]
                rc = proc.wait(30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    text = log.read_text()
    assert rc == 0, text
    assert "SiteSync is running in the system tray" in text and "Traceback" not in text
    assert max(shares) > 0.25, f"tray icon not drawn from the SVGs: {shares}"
    assert (tmp_path / "log" / "tray.log").is_file()


def test_without_a_tray_host_the_tray_says_so(bundle, home):
    done = run(bundle, {**home, "QT_QPA_PLATFORM": "offscreen"}, "tray", "--quit-after", "1")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no system tray is available" in done.stderr and "sitesync serve" in done.stderr


def test_serve_once_syncs_to_the_real_sftp_server(bundle, home, tmp_path, sshd):
    local = tmp_path / "local"
    (local / "sh010").mkdir(parents=True)
    remote = sshd.folder(f"bundle-{uuid.uuid4().hex[:8]}")
    settings = {"publish_site": "local", "remote_site": "studio-sftp",
                "sites": {"artist-one": {"provider": "local_drive", "root": {"work": str(local)}},
                          "studio-sftp": {"provider": "sftp", **sshd.site_config(remote)}}}
    Path(home["SITESYNC_CONFIG"]).write_text(json.dumps(settings))
    frames = []
    for n in range(3):
        frame = local / "sh010" / f"f.{n}.exr"
        frame.write_bytes(os.urandom(100_000 + n))
        frames.append(str(frame))
    done = run(bundle, home, "publish", "--project", "show", "--asset", "sh010", "--subset",
               "render", "--version", "1", "--name", "exr", *frames)
    assert done.returncode == 0, done.stderr
    done = run(bundle, home, "serve", "--once")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped: 3 file(s) synced, 0 failure(s)" in done.stdout, done.stdout
    for frame in frames:
        copy = Path(remote) / "sh010" / Path(frame).name
        assert copy.read_bytes() == Path(frame).read_bytes()
    assert "synced" in (tmp_path / "log" / "serve.log").read_text()
    done = run(bundle, home, "status", "--json")
    assert done.returncode == 0, done.stderr
    assert [r["status"] for p in json.loads(done.stdout) for r in p["representations"]] == ["Synced"]
