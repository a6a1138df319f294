"""transfer_file over real local_drive providers: both the sequential and the pipelined path."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from app.engine.transfer import PIPELINE_MIN_BYTES, CancelToken, transfer_file
from app.errors import CancelledTransfer, PermanentError, TransientError
from app.model import Direction, WorkItem
from providers.local_drive import LocalDriveProvider

SMALL = 100_000
LARGE = PIPELINE_MIN_BYTES + 3 * 1024 * 1024 + 17


@pytest.fixture
def sites(tmp_path):
    roots = {}
    for name in ("src", "dst"):
        (tmp_path / name).mkdir()
        roots[name] = tmp_path / name
    return roots, LocalDriveProvider("src", {"root": {"work": str(roots["src"])}}), \
        LocalDriveProvider("dst", {"root": {"work": str(roots["dst"])}})


def _item(data: bytes, name: str = "f.bin") -> WorkItem:
    return WorkItem(project="p", repre_id="r", file_id="f", path=f"{{root[work]}}/{name}",
                    size=len(data), hash="", source_site="src", target_site="dst",
                    direction=Direction.UPLOAD)


@pytest.mark.parametrize("size", [0, SMALL, LARGE], ids=["empty", "sequential", "pipelined"])
def test_copies_and_reports_the_stream_hash(sites, size):
    roots, src, dst = sites
    data = os.urandom(size)
    (roots["src"] / "f.bin").write_bytes(data)
    progress = []
    result = transfer_file(_item(data), src, dst, CancelToken(),
                           on_progress=lambda done, total: progress.append(done))
    assert (roots["dst"] / "f.bin").read_bytes() == data
    assert result.checksum == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.size == size and result.resumed_from == 0
    assert progress == sorted(progress) and (not size or progress[-1] == size)


@pytest.mark.parametrize("size", [SMALL * 50, LARGE], ids=["sequential", "pipelined"])
def test_cancel_keeps_the_part_and_resume_finishes(sites, size):
    roots, src, dst = sites
    data = os.urandom(size)
    (roots["src"] / "f.bin").write_bytes(data)
    token = CancelToken()

    def cancel_midway(done, total):
        if done >= total // 3:
            token.cancel("paused")

    with pytest.raises(CancelledTransfer):
        transfer_file(_item(data), src, dst, token, on_progress=cancel_midway)
    assert not (roots["dst"] / "f.bin").exists()
    parts = list(roots["dst"].glob("*.sitesync-part"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size < size
    result = transfer_file(_item(data), src, dst, CancelToken())
    assert result.resumed_from > 0
    assert (roots["dst"] / "f.bin").read_bytes() == data


def test_reader_error_in_the_pipeline_reaches_the_caller(sites):
    roots, src, dst = sites
    data = os.urandom(LARGE)
    (roots["src"] / "f.bin").write_bytes(data)
    original = src.open_reader
    calls = threading.local()

    def failing_reader(path, offset=0):
        reader = original(path, offset)
        real_read = reader.read

        def read(n):
            calls.n = getattr(calls, "n", 0) + 1
            if calls.n == 3:
                raise TransientError("connection dropped")
            return real_read(n)

        reader.read = read
        return reader

    src.open_reader = failing_reader
    with pytest.raises(TransientError, match="connection dropped"):
        transfer_file(_item(data), src, dst, CancelToken())
    assert not (roots["dst"] / "f.bin").exists()
    assert list(roots["dst"].glob("*.sitesync-part")) == []


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["sequential", "pipelined"])
def test_source_larger_than_published_is_refused(sites, size):
    roots, src, dst = sites
    data = os.urandom(size)
    (roots["src"] / "f.bin").write_bytes(data + b"extra")
    with pytest.raises(PermanentError, match="changed after it was published"):
        transfer_file(_item(data), src, dst, CancelToken())
    assert not (roots["dst"] / "f.bin").exists()
