"""transfer_file over real local_drive providers: both the sequential and the pipelined path."""

from __future__ import annotations

import dataclasses
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
    # An interruption keeps what was stored; the retry resumes and commit verifies it all.
    parts = list(roots["dst"].glob("*.sitesync-part"))
    assert len(parts) == 1 and parts[0].stat().st_size > 0
    src.open_reader = original
    result = transfer_file(_item(data), src, dst, CancelToken())
    assert result.resumed_from > 0
    assert (roots["dst"] / "f.bin").read_bytes() == data
    assert list(roots["dst"].glob("*.sitesync-part")) == []


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["sequential", "pipelined"])
def test_source_larger_than_published_is_refused(sites, size):
    roots, src, dst = sites
    data = os.urandom(size)
    (roots["src"] / "f.bin").write_bytes(data + b"extra")
    with pytest.raises(PermanentError, match="changed after it was published"):
        transfer_file(_item(data), src, dst, CancelToken())
    assert not (roots["dst"] / "f.bin").exists()
    assert list(roots["dst"].glob("*.sitesync-part")) == []


class _RemoteLike(LocalDriveProvider):
    """A real local_drive that declares itself non-local, as SFTP and Drive sources are,
    and records where each read starts."""

    def __init__(self, site, config):
        super().__init__(site, config)
        self.features = dataclasses.replace(self.features, local=False)
        self.read_offsets: list[int] = []

    def open_reader(self, rootless_path, offset=0):
        self.read_offsets.append(offset)
        return super().open_reader(rootless_path, offset)


def _checked(item: WorkItem, data: bytes) -> WorkItem:
    return dataclasses.replace(item, source_checksum="sha256:" + hashlib.sha256(data).hexdigest())


def _half_copied(roots, src, dst, data):
    token = CancelToken()

    def cancel_midway(done, total):
        if done >= total // 2:
            token.cancel("paused")

    with pytest.raises(CancelledTransfer):
        transfer_file(_checked(_item(data), data), src, dst, token, on_progress=cancel_midway)
    (part,) = roots["dst"].glob("*.sitesync-part")
    return part


@pytest.mark.parametrize("verify_reread", [False, True], ids=["running-hash", "reread"])
def test_resumed_download_reads_the_source_only_from_the_offset(tmp_path, verify_reread):
    roots = {name: tmp_path / name for name in ("src", "dst")}
    for root in roots.values():
        root.mkdir()
    src = _RemoteLike("src", {"root": {"work": str(roots["src"])}})
    dst = LocalDriveProvider("dst", {"root": {"work": str(roots["dst"])},
                                     "verify_reread": verify_reread})
    data = os.urandom(SMALL * 50)
    (roots["src"] / "f.bin").write_bytes(data)
    kept = _half_copied(roots, src, dst, data).stat().st_size
    result = transfer_file(_checked(_item(data), data), src, dst, CancelToken())
    assert src.read_offsets == [0, kept] and result.resumed_from == kept
    assert result.checksum == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (roots["dst"] / "f.bin").read_bytes() == data


def test_resumed_download_with_a_bad_kept_part_starts_over(tmp_path):
    roots = {name: tmp_path / name for name in ("src", "dst")}
    for root in roots.values():
        root.mkdir()
    src = _RemoteLike("src", {"root": {"work": str(roots["src"])}})
    dst = LocalDriveProvider("dst", {"root": {"work": str(roots["dst"])}})
    data = os.urandom(SMALL * 50)
    (roots["src"] / "f.bin").write_bytes(data)
    part = _half_copied(roots, src, dst, data)
    with open(part, "r+b") as handle:  # the kept prefix rotted on the local disk
        handle.write(b"\0" * 100)
    with pytest.raises(TransientError, match="does not match the source's recorded checksum"):
        transfer_file(_checked(_item(data), data), src, dst, CancelToken())
    assert not part.exists() and not (roots["dst"] / "f.bin").exists()
    result = transfer_file(_checked(_item(data), data), src, dst, CancelToken())
    assert result.resumed_from == 0
    assert (roots["dst"] / "f.bin").read_bytes() == data


def test_a_local_source_is_read_from_the_start_on_resume(sites):
    roots, src, dst = sites
    data = os.urandom(SMALL * 50)
    (roots["src"] / "f.bin").write_bytes(data)
    offsets = []
    original = src.open_reader
    src.open_reader = lambda path, offset=0: offsets.append(offset) or original(path, offset)
    _half_copied(roots, src, dst, data)
    result = transfer_file(_checked(_item(data), data), src, dst, CancelToken())
    assert offsets == [0, 0] and result.resumed_from > 0
    assert (roots["dst"] / "f.bin").read_bytes() == data


def test_cancel_callbacks_run_once_and_can_be_removed():
    token = CancelToken()
    calls = []
    remove = token.on_cancel(lambda: calls.append("a"))
    token.on_cancel(lambda: calls.append("b"))
    remove()
    token.cancel("paused")
    assert calls == ["b"]
    token.on_cancel(lambda: calls.append("late"))  # already cancelled: called at once
    assert calls == ["b", "late"]
