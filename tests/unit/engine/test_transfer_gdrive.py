"""transfer_file between local_drive and gdrive (the Drive emulator): the hashes Drive
checks, downloads checked against md5Checksum, resumed downloads that do not fetch the
kept prefix again."""

from __future__ import annotations

import hashlib
import os

import pytest

from app.engine.transfer import CancelToken, transfer_file
from app.errors import CancelledTransfer, SiteUnavailableError, TransientError
from app.model import Direction, WorkItem
from providers.local_drive import LocalDriveProvider
from providers.registry import create_provider
from tests.gdrive_emulator import UNIT
from tests.gdrive_emulator.fixtures import drive_env

ROOT = "/My Drive/sitesync"


@pytest.fixture
def sites(tmp_path, monkeypatch):
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "local").mkdir()
    local = LocalDriveProvider("local", {"root": {"work": str(tmp_path / "local")}})
    with drive_env(tmp_path) as env:
        gdrive = create_provider("gdrive", "gdrive", env.site())
        yield env, local, gdrive, tmp_path / "local"
        gdrive.close()


def _item(data: bytes, source: str, target: str) -> WorkItem:
    return WorkItem(project="p", repre_id="r", file_id="f", path="{root[work]}/sh/f.bin", size=len(data),
                    hash="", source_site=source, target_site=target,
                    direction=Direction.UPLOAD if target == "gdrive" else Direction.DOWNLOAD)


def test_upload_passes_md5_so_drive_without_sha256_still_verifies(sites):
    env, local, gdrive, folder = sites
    env.drive.report_sha256 = False
    data = os.urandom(3 * UNIT + 5)
    (folder / "sh").mkdir()
    (folder / "sh" / "f.bin").write_bytes(data)
    result = transfer_file(_item(data, "local", "gdrive"), local, gdrive, CancelToken())
    assert env.drive.read(f"{ROOT}/sh/f.bin") == data
    assert result.checksum == "sha256:" + hashlib.sha256(data).hexdigest()


def test_download_is_checked_against_drives_md5(sites):
    env, local, gdrive, folder = sites
    data = os.urandom(2 * UNIT)
    env.drive.put_file(f"{ROOT}/sh/f.bin", data)
    env.drive.corrupt_media = 1
    with pytest.raises(TransientError, match="do not match the checksum that storage reports"):
        transfer_file(_item(data, "gdrive", "local"), gdrive, local, CancelToken())
    assert not (folder / "sh" / "f.bin").exists()
    assert not list(folder.rglob("*.sitesync-part")), "the corrupt copy was discarded"
    transfer_file(_item(data, "gdrive", "local"), gdrive, local, CancelToken())
    assert (folder / "sh" / "f.bin").read_bytes() == data


def _cancelled_download(gdrive, local, data: bytes) -> None:
    token = CancelToken()

    def stop(done: int, total: int) -> None:
        if done >= total // 2:
            token.cancel("shutting down")

    with pytest.raises(CancelledTransfer):
        transfer_file(_item(data, "gdrive", "local"), gdrive, local, token, on_progress=stop)


@pytest.mark.parametrize("size", [24 * UNIT, 80 * UNIT + 3], ids=["sequential", "pipelined"])
def test_a_resumed_download_fetches_only_the_rest(sites, size):
    env, local, gdrive, folder = sites
    data = os.urandom(size)
    env.drive.put_file(f"{ROOT}/sh/f.bin", data)
    _cancelled_download(gdrive, local, data)
    kept = next(folder.rglob("*.sitesync-part")).stat().st_size
    assert kept > 0
    env.drive.reset_log()
    started = []
    result = transfer_file(_item(data, "gdrive", "local"), gdrive, local, CancelToken(),
                           on_start=started.append)
    assert started == [kept] and result.resumed_from == kept
    assert env.drive.download_bytes == size - kept, "the kept prefix was not downloaded again"
    assert (folder / "sh" / "f.bin").read_bytes() == data
    assert result.checksum == "sha256:" + hashlib.sha256(data).hexdigest()


def test_a_damaged_kept_prefix_is_caught_by_drives_md5(sites):
    env, local, gdrive, folder = sites
    data = os.urandom(24 * UNIT)
    env.drive.put_file(f"{ROOT}/sh/f.bin", data)
    _cancelled_download(gdrive, local, data)
    part = next(folder.rglob("*.sitesync-part"))
    with open(part, "r+b") as stream:
        stream.write(b"\0" * 10)
    with pytest.raises(TransientError, match="md5"):
        transfer_file(_item(data, "gdrive", "local"), gdrive, local, CancelToken())
    assert not part.exists()
    transfer_file(_item(data, "gdrive", "local"), gdrive, local, CancelToken())
    assert (folder / "sh" / "f.bin").read_bytes() == data


def test_the_daily_cap_on_the_last_chunk_keeps_the_session(sites):
    """The engine aborts a failed commit without keeping anything; an interruption while
    the writer sends its last chunk still keeps Drive's session, so after the hold only
    the rest goes up, not the whole file again."""
    env, local, gdrive, folder = sites
    drive = env.drive
    data = os.urandom(3 * UNIT + 9)  # three chunks while writing, nine bytes at commit
    (folder / "sh").mkdir()
    (folder / "sh" / "f.bin").write_bytes(data)
    drive.upload_cap_bytes = 3 * UNIT  # reached exactly when the last chunk goes out
    with pytest.raises(SiteUnavailableError, match="daily upload limit"):
        transfer_file(_item(data, "local", "gdrive"), local, gdrive, CancelToken())
    assert drive.find(f"{ROOT}/sh/f.bin") == []
    drive.upload_cap_bytes = None  # Google lifts the limit
    transfer_file(_item(data, "local", "gdrive"), local, gdrive, CancelToken())
    assert drive.read(f"{ROOT}/sh/f.bin") == data
    assert drive.count("upload-init") == 1, "the same session went on"
    assert drive.upload_bytes == len(data) + 9, "only the refused last chunk was sent twice"
