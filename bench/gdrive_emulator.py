"""Benchmark: SiteSync's Drive sync vs an OpenPype-style Drive client, on the Drive emulator.

Both sides talk to the same Drive v3 emulator (tests/gdrive_emulator, run as its own
process, a fresh one per side) through the real googleapiclient and google-auth code,
with the same number of worker threads, on the same files:

* many small files (default 200 x 64 KiB in version folders of 50), up then down;
* one large file (default 128 MiB), up then down;
* the large upload interrupted half-way and restarted (a crash or a restart).

SiteSync is the real engine (embedded SQLite store, local_drive <-> gdrive), timed from
start until every file is verified and recorded. Its pacer is raised to 1000 calls/s here
so the emulator, not the pacer, is what is measured; on real Drive the account's quota
is the limit, which is why "API calls per file" is the number that matters (the last
row turns it into files/s at rclone's Drive pace of 10 calls/s).

The OpenPype-style baseline follows OpenPype 3.x's ``GDriveHandler`` as described in
the sync-model reference §4.4: a new handler (credentials, client, token, root lookup)
per file; the folder tree (every folder visible to the account) listed once per loop of
7 files (its gdrive batch limit) — no 60 s loop delay is added, in its favour; a file
lookup before each upload; resumable uploads with ``MediaFileUpload`` in 2 MiB chunks,
no session kept across restarts; downloads with ``MediaIoBaseDownload`` straight into
the final file; md5Checksum never compared.

Usage:  python -m bench.gdrive_emulator [--files 200] [--file-kib 64] [--large-mib 128]
                                        [--workers 4] [--out FILE]
Prints a Markdown table (also written to --out if given).
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from google.oauth2 import service_account  # noqa: E402
from googleapiclient.discovery import build_from_document  # noqa: E402
from googleapiclient.discovery_cache import get_static_doc  # noqa: E402
from googleapiclient.http import MediaFileUpload, MediaIoBaseDownload  # noqa: E402

from app.engine.engine import Engine  # noqa: E402
from app.events.types import FileSynced  # noqa: E402
from app.publish import build_representation  # noqa: E402
from app.settings import load_settings  # noqa: E402
from app.store.sqlite import SqliteStore  # noqa: E402
from tests.gdrive_emulator.auth import ServiceAccountKey  # noqa: E402

FOLDER_MIME = "application/vnd.google-apps.folder"
LOCAL_ID = "bench-artist"
PROJECT = "bench"


# -- the emulator in its own process ----------------------------------------------------------


class Emulator:
    def __init__(self, key: ServiceAccountKey) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.gdrive_emulator"], cwd=ROOT,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/"
        self.control("account", body={"client_email": key.client_email, "public_pem": key.public_pem})

    def control(self, action: str, body: Any = None, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(f"{self.url}_emulator/{action}?{query}", data=data, method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"{}")

    def stats(self) -> dict[str, Any]:
        return self.control("stats")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@dataclass
class Result:
    seconds: float
    files: int
    bytes: int
    requests: int
    tokens: int
    upload_bytes: int

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0

    @property
    def calls_per_file(self) -> float:
        return self.requests / self.files


def _measure(emu: Emulator, files: int, size: int, run: Callable[[], None]) -> Result:
    emu.control("reset")
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    stats = emu.stats()
    return Result(seconds, files, size, sum(stats["requests"].values()), stats["token_grants"],
                  stats["upload_bytes"])


# -- SiteSync: the engine -------------------------------------------------------------------------


class SiteSyncSide:
    def __init__(self, tmp: Path, emu: Emulator, key_file: Path, workers: int) -> None:
        self.tmp = tmp
        self.emu = emu
        self.local = tmp / "local"
        self.local.mkdir()
        emu.control("mkdir", path="/My Drive/bench")
        settings = {
            "local_id": LOCAL_ID, "publish_site": "local", "remote_site": "gdrive", "loop_delay": 1,
            "sites": {"local": {"provider": "local_drive", "root": {"work": str(self.local)}},
                      "gdrive": {"provider": "gdrive", "root": {"work": "/My Drive/bench"},
                                 "credentials_url": str(key_file), "api_url": emu.url,
                                 "max_calls_per_s": 1000}},
            "engine": {"workers_per_site": workers, "progress_interval_s": 1.0},
        }
        (tmp / "settings.json").write_text(json.dumps(settings))
        self.settings = load_settings(tmp / "settings.json")
        self.store = SqliteStore(tmp / "sitesync.db")
        self.store.ensure_project(PROJECT)
        self.repres: list[str] = []

    def place(self, files: dict[str, bytes]) -> None:
        """Write the files locally and publish them, a representation per folder."""
        by_folder: dict[str, list[Path]] = {}
        for rel, data in files.items():
            path = self.local / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            by_folder.setdefault(posixpath.dirname(rel), []).append(path)
        for i, paths in enumerate(by_folder.values()):
            repre = build_representation(PROJECT, paths, {"work": str(self.local)}, asset=f"a{i}",
                                         subset="s", version=1, name="exr", family="render",
                                         publish_site=LOCAL_ID, queued_sites=("gdrive",),
                                         now=datetime.now(timezone.utc))
            self.repres.append(self.store.insert_representation(repre))

    def run_engine(self, expect: int, stop_when: Callable[[], bool] | None = None) -> int:
        """Run until every file is recorded (``serve --once``); the engine is shut down
        at the start of the next run, outside the timed part (its store watcher takes up
        to a second to notice a stop)."""
        self.finish()
        engine = Engine(self.store, self.settings, state_path=self.tmp / "engine.json")
        synced = []
        engine.bus.subscribe(lambda e: synced.append(e) if isinstance(e, FileSynced) else None)
        engine.start(once=stop_when is None)
        if stop_when is None:
            engine.wait_stopped()
            self._engine = engine
        else:
            while not stop_when():
                time.sleep(0.01)
            engine.stop(drain=False)  # a shutdown mid-transfer: the session is kept
        if stop_when is None and len(synced) != expect:
            raise RuntimeError(f"SiteSync synced {len(synced)} of {expect} files")
        return len(synced)

    def finish(self) -> None:
        engine, self._engine = getattr(self, "_engine", None), None
        if engine is not None:
            engine.stop(drain=False)

    def upload(self, files: dict[str, bytes]) -> None:
        self.place(files)
        self.run_engine(len(files))

    def download(self, files: dict[str, bytes]) -> None:
        """Drop the local copies and reset the local site: everything comes back."""
        for repre_id in self.repres:
            for f in self.store.get_representation(PROJECT, repre_id).files:
                (self.local / f.path.replace("{root[work]}/", "")).unlink(missing_ok=True)
                self.store.reset_site(PROJECT, repre_id, LOCAL_ID, f.id)
        self.run_engine(len(files))
        for rel, data in files.items():
            if (self.local / rel).read_bytes() != data:
                raise RuntimeError(f"SiteSync downloaded wrong bytes for {rel}")

    def forget(self) -> None:
        self.repres.clear()


# -- the OpenPype-style baseline ----------------------------------------------------------------


class OpenPypeStyleHandler:
    """OpenPype's GDriveHandler, reduced to what a transfer does (reference §4.4)."""

    CHUNK_SIZE = 2097152  # OpenPype's gdrive CHUNK_SIZE
    #: OpenPype creates folders on its event-loop thread under a lock.
    folder_lock = threading.Lock()

    def __init__(self, key_file: Path, api_url: str, tree: dict[str, str] | None = None) -> None:
        credentials = service_account.Credentials.from_service_account_file(
            str(key_file), scopes=["https://www.googleapis.com/auth/drive"])
        doc = json.loads(get_static_doc("drive", "v3"))
        doc["rootUrl"] = doc["mtlsRootUrl"] = api_url  # build('drive', 'v3') pointed at the emulator
        self.service = build_from_document(doc, credentials=credentials)
        self.root = self.service.files().get(fileId="root", fields="id, name").execute()
        self._tree = tree

    def get_tree(self) -> dict[str, str]:
        if self._tree is None:
            self._tree = self._build_tree(self.list_folders())
        return self._tree

    def list_folders(self) -> list[dict[str, Any]]:
        folders, token = [], None
        while True:
            page = self.service.files().list(
                q=f"mimeType='{FOLDER_MIME}' and trashed = false", pageSize=1000, pageToken=token,
                corpora="allDrives", includeItemsFromAllDrives=True, supportsAllDrives=True,
                fields="nextPageToken, files(id, name, parents)").execute()
            folders += page.get("files", [])
            token = page.get("nextPageToken")
            if not token:
                return folders

    def _build_tree(self, folders: list[dict[str, Any]]) -> dict[str, str]:
        tree = {"/My Drive": self.root["id"]}
        by_id = {self.root["id"]: "/My Drive"}
        pending = list(folders)
        for _ in range(20):  # OpenPype's resolution passes
            left = []
            for folder in pending:
                parent = (folder.get("parents") or [self.root["id"]])[0]
                if parent in by_id:
                    path = f"{by_id[parent]}/{folder['name']}"
                    tree[path] = folder["id"]
                    by_id[folder["id"]] = path
                else:
                    left.append(folder)
            pending = left
            if not pending:
                break
        return tree

    def create_folder(self, path: str) -> str:
        with self.folder_lock:
            return self._create_folder(path)

    def _create_folder(self, path: str) -> str:
        tree = self.get_tree()
        if path in tree:
            return tree[path]
        parent = posixpath.dirname(path)
        parent_id = self._create_folder(parent)
        made = self.service.files().create(body={"name": posixpath.basename(path), "mimeType": FOLDER_MIME,
                                                 "parents": [parent_id]},
                                           supportsAllDrives=True, fields="id").execute()
        tree[path] = made["id"]
        return made["id"]

    def file_path_exists(self, path: str) -> dict[str, Any] | None:
        folder_id = self.get_tree().get(posixpath.dirname(path))
        if folder_id is None:
            return None
        # Names are not quote-escaped in OpenPype; the bench names need none.
        found = self.service.files().list(
            q=f"name = '{posixpath.basename(path)}' and '{folder_id}' in parents and trashed = false",
            supportsAllDrives=True, includeItemsFromAllDrives=True,
            fields="files(id, name, parents, mimeType, modifiedTime, size, md5Checksum)").execute()["files"]
        return found[0] if found else None

    def upload_file(self, source: Path, path: str, stop_after_chunks: int | None = None) -> str | None:
        folder_id = self.create_folder(posixpath.dirname(path))
        existing = self.file_path_exists(path)
        media = MediaFileUpload(str(source), mimetype="application/octet-stream", chunksize=self.CHUNK_SIZE,
                                resumable=True)
        if existing:
            request = self.service.files().update(fileId=existing["id"], media_body=media,
                                                  supportsAllDrives=True, fields="id")
        else:
            body = {"name": posixpath.basename(path), "parents": [folder_id]}
            request = self.service.files().create(body=body, media_body=media, supportsAllDrives=True,
                                                  fields="id")
        response, chunks = None, 0
        while response is None:
            _, response = request.next_chunk()
            chunks += 1
            if stop_after_chunks is not None and chunks >= stop_after_chunks:
                return None  # the process dies: nothing of the session is kept
        return response["id"]

    def download_file(self, path: str, target: Path) -> None:
        found = self.file_path_exists(path)
        if found is None:
            raise RuntimeError(f"{path} not found")
        request = self.service.files().get_media(fileId=found["id"], supportsAllDrives=True)
        with open(target, "wb") as stream:  # straight into the final name, as OpenPype does
            downloader = MediaIoBaseDownload(stream, request)
            done = False
            while not done:
                _, done = downloader.next_chunk()


class OpenPypeSide:
    BATCH = 7  # OpenPype's gdrive batch limit per loop

    def __init__(self, tmp: Path, emu: Emulator, key_file: Path, workers: int) -> None:
        self.tmp = tmp
        self.emu = emu
        self.key_file = key_file
        self.workers = workers
        self.local = tmp / "local"
        self.local.mkdir()
        emu.control("mkdir", path="/My Drive/bench")

    def _loops(self, items: list[Any], work: Callable[[OpenPypeStyleHandler, Any], None]) -> None:
        with ThreadPoolExecutor(self.workers) as pool:
            for start in range(0, len(items), self.BATCH):
                loop_handler = OpenPypeStyleHandler(self.key_file, self.emu.url)
                tree = loop_handler.get_tree()  # once per loop, shared by the loop's files
                batch = items[start:start + self.BATCH]

                def one(item: Any, tree: dict[str, str] = tree) -> None:
                    work(OpenPypeStyleHandler(self.key_file, self.emu.url, tree), item)  # a handler per file

                list(pool.map(one, batch))

    def upload(self, files: dict[str, bytes]) -> None:
        for rel, data in files.items():
            path = self.local / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self._loops(list(files), lambda h, rel: h.upload_file(self.local / rel, f"/My Drive/bench/{rel}"))

    def download(self, files: dict[str, bytes]) -> None:
        for rel in files:
            (self.local / rel).unlink()
        self._loops(list(files), lambda h, rel: h.download_file(f"/My Drive/bench/{rel}", self.local / rel))
        for rel, data in files.items():
            if (self.local / rel).read_bytes() != data:
                raise RuntimeError(f"baseline downloaded wrong bytes for {rel}")


# -- the run --------------------------------------------------------------------------------------


def _small_files(count: int, size: int) -> dict[str, bytes]:
    return {f"rep{i // 50:03d}/v001/frame.{i:05d}.exr": os.urandom(size) for i in range(count)}


def _side_run(kind: str, tmp: Path, key: ServiceAccountKey, args: argparse.Namespace,
              small: dict[str, bytes], large: dict[str, bytes]) -> dict[str, Any]:
    emu = Emulator(key)
    try:
        key_file = key.write(tmp / "key.json", f"{emu.url}token")
        side: Any = (SiteSyncSide if kind == "sitesync" else OpenPypeSide)(tmp, emu, key_file, args.workers)
        small_bytes = sum(map(len, small.values()))
        large_bytes = sum(map(len, large.values()))
        out = {
            "small_up": _measure(emu, len(small), small_bytes, lambda: side.upload(small)),
            "small_down": _measure(emu, len(small), small_bytes, lambda: side.download(small)),
        }
        if kind == "sitesync":
            side.forget()
        out["large_up"] = _measure(emu, 1, large_bytes, lambda: side.upload(large))
        out["large_down"] = _measure(emu, 1, large_bytes, lambda: side.download(large))
        out["interrupted"] = _interrupted(kind, side, emu, key_file, large_bytes)
        if kind == "sitesync":
            side.finish()
        return out
    finally:
        emu.stop()


def _interrupted(kind: str, side: Any, emu: Emulator, key_file: Path, size: int) -> int:
    """Bytes sent to upload the large file once, when the first attempt dies half-way."""
    data = os.urandom(size)
    rel = "resume/v001/plate.mov"
    emu.control("reset")
    if kind == "sitesync":
        side.forget()
        side.place({rel: data})
        # Stop the engine (keeping the session) once half is on Drive, then start again.
        first = side.run_engine(1, stop_when=lambda: emu.stats()["upload_bytes"] >= size // 2)
        if not first:
            side.run_engine(1)
    else:
        path = side.local / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        handler = OpenPypeStyleHandler(key_file, emu.url)
        half = size // 2 // OpenPypeStyleHandler.CHUNK_SIZE
        handler.upload_file(path, f"/My Drive/bench/{rel}", stop_after_chunks=half)
        OpenPypeStyleHandler(key_file, emu.url).upload_file(path, f"/My Drive/bench/{rel}")
    return emu.stats()["upload_bytes"]


def _table(args: argparse.Namespace, ours: dict[str, Any], theirs: dict[str, Any], large: int) -> str:
    def cell(r: Result) -> str:
        return (f"{r.seconds:.2f} s, {r.files / r.seconds:.0f} files/s, {r.mb_per_s:.0f} MB/s, "
                f"{r.calls_per_file:.2f} calls/file")

    def paced(side: dict[str, Any]) -> str:
        up, down = side["small_up"].calls_per_file, side["small_down"].calls_per_file
        return f"{10 / up:.1f} up, {10 / down:.1f} down"

    def big(r: Result) -> str:
        return f"{r.seconds:.2f} s, {r.mb_per_s:.0f} MB/s, {r.requests} calls"

    n, kib, mib = args.files, args.file_kib, args.large_mib
    rows = [
        ("Scenario", "SiteSync (engine + gdrive provider)", "OpenPype-style client"),
        ("---", "---", "---"),
        (f"{n} x {kib} KiB up", cell(ours["small_up"]), cell(theirs["small_up"])),
        (f"{n} x {kib} KiB down", cell(ours["small_down"]), cell(theirs["small_down"])),
        ("tokens fetched (small up + down)", str(ours["small_up"].tokens + ours["small_down"].tokens),
         str(theirs["small_up"].tokens + theirs["small_down"].tokens)),
        (f"1 x {mib} MiB up", big(ours["large_up"]), big(theirs["large_up"])),
        (f"1 x {mib} MiB down", big(ours["large_down"]), big(theirs["large_down"])),
        (f"{mib} MiB upload killed half-way, then restarted: bytes sent",
         f"{ours['interrupted'] / large:.2f} x the file", f"{theirs['interrupted'] / large:.2f} x the file"),
        ("small files/s at Drive's pace (10 calls/s, rclone's default)", paced(ours), paced(theirs)),
        ("checked against Drive's md5Checksum", "every file, both ways", "never"),
    ]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--file-kib", type=int, default=64)
    parser.add_argument("--large-mib", type=int, default=128)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--out")
    args = parser.parse_args()
    small = _small_files(args.files, args.file_kib * 1024)
    large = {"plate/v001/plate.mov": os.urandom(args.large_mib * 1024 * 1024)}
    key = ServiceAccountKey.generate()
    base = Path(tempfile.mkdtemp(prefix="sitesync-gdrive-bench-"))
    os.environ["SITESYNC_DATA_DIR"] = str(base / "data")
    try:
        results = {}
        for kind in ("sitesync", "openpype"):
            (base / kind).mkdir()
            results[kind] = _side_run(kind, base / kind, key, args, small, large)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    table = _table(args, results["sitesync"], results["openpype"], args.large_mib * 1024 * 1024)
    header = (f"Drive emulator in its own process, {args.workers} workers each, "
              f"{os.cpu_count()} CPUs, {datetime.now():%Y-%m-%d}")
    print(header)
    print(table)
    if args.out:
        Path(args.out).write_text(header + "\n\n" + table + "\n")


if __name__ == "__main__":
    main()
