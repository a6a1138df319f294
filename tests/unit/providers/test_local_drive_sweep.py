"""local_drive's sweep of abandoned part files: only old, unlocked part files inside the
roots go; resumable work, live writers, published files and anything behind a symlink stay."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from providers.local_drive import PART_SUFFIX, LocalDriveProvider, part_path

SITE = "studio"
DAY_S = 24 * 3600.0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def provider(root: Path) -> LocalDriveProvider:
    return LocalDriveProvider(SITE, {"root": {"work": str(root)}})


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def _part(root: Path, rel: str, data: bytes = b"partial", age_s: float = 3 * DAY_S) -> Path:
    final = root / rel
    final.parent.mkdir(parents=True, exist_ok=True)
    part = Path(part_path(str(final)))
    part.write_bytes(data)
    _age(part, age_s)
    return part


def test_old_abandoned_part_files_are_removed_and_reported(provider, root):
    old = [_part(root, "demo/sh010/v001/a.exr"), _part(root, "demo/sh020/v003/deep/b.exr")]
    assert sorted(provider.sweep_partials(2 * DAY_S)) == sorted(str(p) for p in old)
    assert not any(p.exists() for p in old)
    assert provider.sweep_partials(2 * DAY_S) == []


def test_young_part_files_stay_for_a_resume(provider, root):
    young = _part(root, "demo/a.exr", age_s=DAY_S)
    assert provider.sweep_partials(2 * DAY_S) == []
    assert young.exists()
    # ...and the resume picks the bytes up.
    with provider.open_writer("{root[work]}/demo/a.exr", 100) as writer:
        assert writer.offset == len(b"partial")
        writer.abort(keep_partial=True)


def test_a_part_file_being_written_is_never_removed_however_old(provider, root):
    data = os.urandom(1000)
    writer = provider.open_writer("{root[work]}/demo/live.exr", len(data), resume=False)
    writer.write(data[:400])
    part = Path(part_path(str(root / "demo/live.exr")))
    _age(part, 10 * DAY_S)  # e.g. a writer stalled on a dead NAS link for days
    assert provider.sweep_partials(DAY_S) == []
    assert part.exists()
    writer.write(data[400:])
    writer.commit(len(data), {"sha256": hashlib.sha256(data).hexdigest()})
    assert (root / "demo/live.exr").read_bytes() == data


def test_published_files_and_lookalikes_are_never_touched(provider, root):
    keep = {
        "demo/a.exr": b"published",
        # Our part files always start with a dot; this name is not one of ours.
        f"demo/visible{PART_SUFFIX}": b"x",
        "demo/.hidden.exr": b"y",
    }
    for rel, data in keep.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        _age(root / rel, 30 * DAY_S)
    assert provider.sweep_partials(DAY_S) == []
    assert all((root / rel).read_bytes() == data for rel, data in keep.items())


def test_symlinks_never_lead_the_sweep_out_of_the_root(provider, root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    foreign = outside / f".x.exr{PART_SUFFIX}"
    foreign.write_bytes(b"someone else's")
    _age(foreign, 30 * DAY_S)
    (root / "linked-folder").symlink_to(outside, target_is_directory=True)
    link = root / f".y.exr{PART_SUFFIX}"
    link.symlink_to(foreign)
    _age(link, 30 * DAY_S)
    assert provider.sweep_partials(DAY_S) == []
    assert foreign.read_bytes() == b"someone else's" and link.is_symlink()


def test_missing_or_unusable_roots_are_skipped(tmp_path, root):
    _part(root, "a.exr")
    provider = LocalDriveProvider(SITE, {"root": {"work": str(root), "gone": str(tmp_path / "gone"),
                                                  "bad": "relative/path"}})
    assert provider.sweep_partials(DAY_S) == [part_path(str(root / "a.exr"))]


def test_a_root_nested_in_another_is_swept_once(tmp_path, root):
    part = _part(root, "inner/a.exr")
    provider = LocalDriveProvider(SITE, {"root": {"work": str(root), "inner": str(root / "inner")}})
    assert provider.sweep_partials(DAY_S) == [str(part)]
