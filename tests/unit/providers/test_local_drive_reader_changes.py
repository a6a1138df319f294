"""local_drive's reader tells when the file it reads was modified or replaced meanwhile,
and does not cry wolf when it was only read, deleted or renamed away."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from providers.local_drive import LocalDriveProvider

PATH = "{root[work]}/demo/a.exr"


@pytest.fixture
def source(tmp_path: Path) -> tuple[LocalDriveProvider, Path]:
    root = tmp_path / "root"
    (root / "demo").mkdir(parents=True)
    file = root / "demo" / "a.exr"
    file.write_bytes(os.urandom(10_000))
    return LocalDriveProvider("artist", {"root": {"work": str(root)}}), file


def _edit_in_place(file: Path) -> None:
    with open(file, "r+b") as handle:
        handle.write(b"edited")


def _edit_keeping_mtime(file: Path) -> None:
    """What `cp -p` or an rsync onto the same inode does: write, then restore the mtime."""
    before = file.stat()
    _edit_in_place(file)
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))


def _append(file: Path) -> None:
    with open(file, "ab") as handle:
        handle.write(b"more")


def _replace(file: Path) -> None:
    new = file.with_name("new")
    new.write_bytes(file.read_bytes())
    os.replace(new, file)


@pytest.mark.parametrize(("edit", "reason"), [
    (_edit_in_place, "modified"), (_edit_keeping_mtime, "modified"), (_append, "modified"),
    (_replace, "replaced"),
])
def test_a_change_while_reading_is_reported(source, edit, reason):
    provider, file = source
    with provider.open_reader(PATH) as reader:
        reader.read(100)
        edit(file)
        reader.read(1 << 20)
        assert reason in (reader.changed() or "")


@pytest.mark.parametrize("action", [
    lambda file: None, Path.unlink, lambda file: file.rename(file.with_name("moved")),
], ids=["untouched", "deleted", "renamed-away"])
def test_reading_deleting_or_renaming_away_is_no_change(source, action):
    provider, file = source
    data = file.read_bytes()
    with provider.open_reader(PATH) as reader:
        first = reader.read(100)
        action(file)
        assert first + reader.read(1 << 20) == data  # the open file still gives one version
        assert reader.changed() is None


def test_the_reader_ends_at_the_size_it_opened_and_a_file_grown_since_is_a_change(source):
    provider, file = source
    data = file.read_bytes()
    reader = provider.open_reader(PATH)
    first = reader.read(4000)
    _append(file)
    rest = b"".join(iter(lambda: reader.read(1 << 20), b""))
    assert first + rest == data  # the bytes of the size it had when opened, no more
    assert reader.read(10) == b""
    assert "modified" in reader.changed()
    reader.close()


def test_a_file_shrunk_while_read_ends_short(source):
    provider, file = source
    reader = provider.open_reader(PATH, offset=1000)
    os.truncate(file, 3000)
    got = b"".join(iter(lambda: reader.read(1 << 20), b""))
    assert len(got) == 2000  # the transfer then sees fewer bytes than published
    assert reader.changed() is not None
    reader.close()
