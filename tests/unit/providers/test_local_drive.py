"""local_drive specifics the contract cannot see: part files, symlinks, roots, errors."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import providers.local_drive as local_drive
from app.errors import ConfigError, PathEscapeError, PermanentError, TransientError
from providers.local_drive import PART_SUFFIX, LocalDriveProvider, classify_oserror, part_path
from providers.paths import current_platform

REPO = Path(__file__).resolve().parents[3]
SITE = "studio"


def _sha(data: bytes) -> dict[str, str]:
    return {"sha256": hashlib.sha256(data).hexdigest()}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    return path


@pytest.fixture
def provider(root: Path) -> LocalDriveProvider:
    return LocalDriveProvider(SITE, {"root": {"work": str(root)}})


def _put(provider: LocalDriveProvider, path: str, data: bytes) -> None:
    with provider.open_writer(path, len(data), resume=False) as writer:
        writer.write(data)
        writer.commit(len(data), _sha(data))


# -- configuration --------------------------------------------------------------------------


def test_resolve_maps_the_root(provider, root):
    assert provider.resolve("{root[work]}/demo/sh010/x.exr") == str(root / "demo/sh010/x.exr")


def test_multiplatform_root_uses_this_platform(root):
    config = {"root": {"work": {"windows": "Z:/w", "linux": "/nonexistent", "darwin": "/V"}}}
    config["root"]["work"][current_platform()] = str(root)
    provider = LocalDriveProvider(SITE, config)
    assert provider.resolve("{root[work]}/x") == str(root / "x")
    assert provider.check() == []


def test_plain_string_root_serves_bare_and_named_templates(root):
    provider = LocalDriveProvider(SITE, {"root": str(root)})
    assert provider.resolve("{root}/x") == provider.resolve("{root[work]}/x") == str(root / "x")


def test_verify_reread_must_be_a_bool(root):
    with pytest.raises(ConfigError) as caught:
        LocalDriveProvider(SITE, {"root": {"work": str(root)}, "verify_reread": "yes"})
    assert caught.value.key == f"sites.{SITE}.verify_reread"


def test_features_are_local_resumable_ranged_atomic():
    features = LocalDriveProvider.features
    assert features.local and features.resumable_upload and features.ranged_read
    assert features.atomic_rename and features.server_hashes == frozenset()
    assert LocalDriveProvider.kind == "local_drive"


# -- check (sitesync doctor) ------------------------------------------------------------------


def test_check_lists_every_root_problem(tmp_path, root):
    a_file = tmp_path / "file"
    a_file.write_bytes(b"")
    config = {
        "root": {
            "ok": str(root),
            "gone": str(tmp_path / "unmounted"),
            "file": str(a_file),
            "relative": "projects/x",
            "other_os": {"nope": "/x"},
        }
    }
    problems = LocalDriveProvider(SITE, config).check()
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert "root 'gone'" in text and "is the drive mounted?" in text
    assert "root 'file'" in text and "not a folder" in text
    assert "root 'relative'" in text and "not an absolute path" in text
    assert f"sites.{SITE}.root.other_os.{current_platform()}" in text
    assert os.listdir(root) == [], "the writability probe must clean up"


def test_check_without_roots():
    assert LocalDriveProvider(SITE, {}).check() == [
        f"site '{SITE}' has no roots; set sites.{SITE}.root"
    ]


def test_check_reports_an_unwritable_root(provider, root, monkeypatch):
    real_open = os.open

    def deny(path, *args, **kwargs):
        if ".sitesync-probe-" in str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)  # chmod cannot stop root, who runs CI
    (problem,) = provider.check()
    assert "not writable" in problem and "write access" in problem


# -- missing root: an unmounted drive is not an empty site ------------------------------------


def test_missing_root_is_never_created(tmp_path):
    gone = tmp_path / "mnt" / "nas"
    provider = LocalDriveProvider(SITE, {"root": {"work": str(gone)}})
    for call in (
        lambda: provider.stat("{root[work]}/x"),
        lambda: provider.open_writer("{root[work]}/a/x", 1),
        lambda: provider.open_reader("{root[work]}/x"),
        lambda: provider.delete("{root[work]}/x"),
    ):
        with pytest.raises(PermanentError, match="mount the drive"):
            call()
    assert not gone.exists()


# -- the part file ----------------------------------------------------------------------------


def test_part_file_is_hidden_beside_the_target_until_commit(provider, root):
    data = b"x" * 1000
    writer = provider.open_writer("{root[work]}/a/b.exr", len(data))
    writer.write(data)
    assert os.listdir(root / "a") == [f".b.exr{PART_SUFFIX}"]
    info = writer.commit(len(data), _sha(data))
    assert os.listdir(root / "a") == ["b.exr"]
    assert info.path == "{root[work]}/a/b.exr"
    assert info.id == "b.exr"
    assert info.size == 1000 and info.mtime is not None
    assert info.hashes == _sha(data)


def test_part_name_of_a_long_file_name_stays_within_name_max():
    final = "/r/" + "é" * 120 + ".exr"  # 244 bytes in UTF-8
    part = os.path.basename(part_path(final))
    assert part.startswith(".") and part.endswith(PART_SUFFIX)
    assert len(os.fsencode(part)) <= 255
    assert part_path(final) == part_path(final), "one part name per target"


def test_long_file_name_round_trips(provider):
    path = "{root[work]}/" + "é" * 120 + ".exr"
    _put(provider, path, b"data")
    assert provider.stat(path).size == 4


def test_names_that_look_like_part_files_are_reserved(provider):
    with pytest.raises(PermanentError, match="reserved"):
        provider.open_writer(f"{{root[work]}}/.x.exr{PART_SUFFIX}", 1)


def test_resume_feeds_the_kept_prefix_into_the_hash(provider, root):
    data = os.urandom(3 << 20)
    writer = provider.open_writer("{root[work]}/r.bin", len(data))
    writer.write(data[: 1 << 20])
    writer.abort(keep_partial=True)
    assert (root / f".r.bin{PART_SUFFIX}").stat().st_size == 1 << 20
    writer = provider.open_writer("{root[work]}/r.bin", len(data))
    assert writer.offset == 1 << 20
    writer.write(data[writer.offset :])
    assert writer.commit(len(data), _sha(data)).hashes == _sha(data)


def test_corrupted_kept_prefix_fails_verification_and_is_discarded(provider, root):
    data = os.urandom(2 << 20)
    writer = provider.open_writer("{root[work]}/c.bin", len(data))
    writer.write(data[: 1 << 20])
    writer.abort(keep_partial=True)
    part = root / f".c.bin{PART_SUFFIX}"
    with part.open("r+b") as f:  # a crash left garbage in the kept bytes
        f.seek(1000)
        f.write(b"\0" * 10)
    writer = provider.open_writer("{root[work]}/c.bin", len(data))
    writer.write(data[writer.offset :])
    with pytest.raises(TransientError, match=r"verification failed.*sha256"):
        writer.commit(len(data), _sha(data))
    assert os.listdir(root) == []


def test_a_caller_that_hashes_the_stream_spares_the_running_hash_not_the_checks(provider, root):
    data = os.urandom(300_000)
    writer = provider.open_writer("{root[work]}/h.bin", len(data))
    writer.stream_hashed_by_caller()
    writer.write(data)
    assert writer.commit(len(data), _sha(data)).hashes == _sha(data)
    assert (root / "h.bin").read_bytes() == data
    # The size on disk is still checked: a short write is caught.
    writer = provider.open_writer("{root[work]}/short.bin", len(data))
    writer.stream_hashed_by_caller()
    writer.write(data[:-1])
    with pytest.raises(TransientError, match=r"verification failed.*size"):
        writer.commit(len(data), _sha(data))
    assert not (root / "short.bin").exists()


def test_a_resumed_write_keeps_hashing_its_kept_prefix(provider, root):
    data = os.urandom(2 << 20)
    writer = provider.open_writer("{root[work]}/k.bin", len(data))
    writer.write(data[: 1 << 20])
    writer.abort(keep_partial=True)
    with (root / f".k.bin{PART_SUFFIX}").open("r+b") as f:
        f.write(b"\0" * 10)  # the kept bytes went bad
    writer = provider.open_writer("{root[work]}/k.bin", len(data))
    writer.stream_hashed_by_caller()  # only for fresh writes: ignored here
    writer.write(data[writer.offset :])
    with pytest.raises(TransientError, match=r"verification failed.*sha256"):
        writer.commit(len(data), _sha(data))


def _cached_bytes(path: Path) -> int:
    """How many bytes of ``path`` are in the page cache (mincore on a mapping of it)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert address not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            pages = (ctypes.c_ubyte * -(-size // mmap.PAGESIZE))()
            assert libc.mincore(address, size, pages) == 0, os.strerror(ctypes.get_errno())
            return sum(page & 1 for page in pages) * mmap.PAGESIZE
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)


def _write_in_chunks(writer, data: bytes, chunk: int = 2 << 20) -> None:
    for start in range(0, len(data), chunk):
        writer.write(data[start : start + chunk])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore is Linux's")
@pytest.mark.parametrize("kept", [0, 5 << 20], ids=["fresh", "resumed"])
def test_a_large_copy_does_not_stay_in_the_page_cache(provider, root, tmp_path, kept):
    data = os.urandom(40 << 20)
    plain = tmp_path / "plain.bin"
    with plain.open("wb") as stream:  # how a copy without write-behind leaves the cache
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    assert _cached_bytes(plain) > len(data) // 2
    if kept:
        writer = provider.open_writer("{root[work]}/plate.mov", len(data))
        writer.write(data[:kept])
        writer.abort(keep_partial=True)
    writer = provider.open_writer("{root[work]}/plate.mov", len(data))
    assert writer.offset == kept
    _write_in_chunks(writer, data[kept:])
    writer.commit(len(data), _sha(data))
    final = root / "plate.mov"
    assert _cached_bytes(final) < 1 << 20
    assert hashlib.sha256(final.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_write_behind_windows_follow_the_bytes_written(provider, root, monkeypatch):
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(local_drive, "_FADVISE",
                        lambda fd, offset, length, advice: calls.append((offset, length)))
    mib = 1 << 20
    small = os.urandom(3 * mib)
    writer = provider.open_writer("{root[work]}/small.bin", len(small))
    _write_in_chunks(writer, small)
    writer.commit(len(small), _sha(small))
    assert calls == []  # below one window: not one extra system call
    data = os.urandom(21 * mib)
    writer = provider.open_writer("{root[work]}/big.bin", len(data))
    writer.write(data[: 3 * mib])
    writer.abort(keep_partial=True)
    writer = provider.open_writer("{root[work]}/big.bin", len(data))
    _write_in_chunks(writer, data[3 * mib :])
    writer.commit(len(data), _sha(data))
    # Windows start where the resumed write did; each drops the one before; the commit
    # drops the whole file.
    assert calls == [(3 * mib, 8 * mib), (11 * mib, 8 * mib), (3 * mib, 8 * mib), (0, 0)]
    assert (root / "big.bin").read_bytes() == data


def test_reread_mode_reads_back_even_when_the_caller_hashes(root):
    provider = LocalDriveProvider(SITE, {"root": {"work": str(root)}, "verify_reread": True})
    data = os.urandom(100_000)
    writer = provider.open_writer("{root[work]}/w.bin", len(data))
    writer.stream_hashed_by_caller()
    writer.write(data)
    with (root / f".w.bin{PART_SUFFIX}").open("r+b") as f:  # changed behind our back
        f.write(b"!")
    with pytest.raises(TransientError, match="verification failed"):
        writer.commit(len(data), _sha(data))


def test_a_part_longer_than_the_file_is_not_resumed(provider, root):
    (root / f".s.bin{PART_SUFFIX}").write_bytes(b"y" * 100)
    writer = provider.open_writer("{root[work]}/s.bin", 10)
    assert writer.offset == 0
    writer.write(b"0123456789")
    writer.commit(10, _sha(b"0123456789"))
    assert (root / "s.bin").read_bytes() == b"0123456789"


def test_reread_mode_checks_the_bytes_on_disk(root):
    provider = LocalDriveProvider(SITE, {"root": {"work": str(root)}, "verify_reread": True})
    data = os.urandom(100_000)
    writer = provider.open_writer("{root[work]}/v.bin", len(data))
    writer.write(data)
    with (root / f".v.bin{PART_SUFFIX}").open("r+b") as f:  # changed behind our back
        f.write(b"!")
    with pytest.raises(TransientError, match="verification failed"):
        writer.commit(len(data), _sha(data))
    assert os.listdir(root) == []
    _put(provider, "{root[work]}/v.bin", data)
    assert (root / "v.bin").read_bytes() == data


def test_reread_mode_resumes(root):
    provider = LocalDriveProvider(SITE, {"root": {"work": str(root)}, "verify_reread": True})
    data = os.urandom(50_000)
    writer = provider.open_writer("{root[work]}/v.bin", len(data))
    writer.write(data[:20_000])
    writer.abort(keep_partial=True)
    writer = provider.open_writer("{root[work]}/v.bin", len(data))
    assert writer.offset == 20_000
    writer.write(data[20_000:])
    assert writer.commit(len(data), _sha(data)).hashes == _sha(data)


def test_md5_is_verified_when_asked_and_unknown_algorithms_are_ignored(provider, root):
    data = b"hello" * 1000
    hashes = {**_sha(data), "MD5": hashlib.md5(data).hexdigest().upper(), "quickxor": "zz"}
    with provider.open_writer("{root[work]}/m.bin", len(data)) as writer:
        writer.write(data)
        writer.commit(len(data), hashes)
    bad = {**_sha(data), "md5": hashlib.md5(b"other").hexdigest()}
    with provider.open_writer("{root[work]}/m2.bin", len(data)) as writer:
        writer.write(data)
        with pytest.raises(TransientError, match="md5"):
            writer.commit(len(data), bad)
    assert sorted(os.listdir(root)) == ["m.bin"]


def test_writer_cannot_be_used_after_commit(provider):
    writer = provider.open_writer("{root[work]}/once.bin", 1)
    writer.write(b"1")
    writer.commit(1, _sha(b"1"))
    writer.abort(keep_partial=False)  # no-op, the file stays
    assert provider.stat("{root[work]}/once.bin") is not None
    with pytest.raises(ValueError, match="already committed"):
        writer.write(b"2")
    with pytest.raises(ValueError, match="already committed"):
        writer.commit(1, _sha(b"1"))


def test_two_writers_on_one_target_do_not_share_the_part(provider):
    first = provider.open_writer("{root[work]}/busy.bin", 4)
    try:
        with pytest.raises(TransientError, match="another transfer is writing"):
            provider.open_writer("{root[work]}/busy.bin", 4)
    finally:
        first.abort(keep_partial=False)
    provider.open_writer("{root[work]}/busy.bin", 4).abort(keep_partial=False)


def test_new_folders_and_files_respect_the_umask(provider, root):
    old = os.umask(0o027)
    try:
        _put(provider, "{root[work]}/new/dir/f.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((root / "new").stat().st_mode) == 0o750
    assert stat.S_IMODE((root / "new/dir/f.bin").stat().st_mode) == 0o640


def test_overwrite_replaces_a_read_only_final_file(provider, root):
    _put(provider, "{root[work]}/ro.bin", b"old")
    (root / "ro.bin").chmod(0o444)
    _put(provider, "{root[work]}/ro.bin", b"new")
    assert (root / "ro.bin").read_bytes() == b"new"


def test_delete_also_removes_a_leftover_part(provider, root):
    writer = provider.open_writer("{root[work]}/d.bin", 10)
    writer.write(b"12345")
    writer.abort(keep_partial=True)
    provider.delete("{root[work]}/d.bin")
    assert os.listdir(root) == []


# -- stat, read ---------------------------------------------------------------------------------


def test_a_folder_is_not_a_file(provider, root):
    (root / "dir").mkdir()
    with pytest.raises(PermanentError, match="not a regular file"):
        provider.stat("{root[work]}/dir")
    with pytest.raises(PermanentError, match="folder"):
        provider.open_reader("{root[work]}/dir")


def test_a_file_where_a_folder_is_expected(provider, root):
    (root / "f").write_bytes(b"")
    assert provider.stat("{root[work]}/f/x.exr") is None
    with pytest.raises(PermanentError, match="folder and a file"):
        provider.open_writer("{root[work]}/f/x.exr", 1)


def test_read_past_the_end_is_empty(provider):
    _put(provider, "{root[work]}/e.bin", b"abc")
    with provider.open_reader("{root[work]}/e.bin", offset=10) as reader:
        assert reader.read(100) == b""
    with pytest.raises(ValueError):
        provider.open_reader("{root[work]}/e.bin", offset=-1)


def test_missing_source_message_says_what_to_do(provider, root):
    with pytest.raises(PermanentError) as caught:
        provider.open_reader("{root[work]}/gone.exr")
    message = str(caught.value)
    assert f"source file missing on site '{SITE}'" in message
    assert str(root / "gone.exr") in message and "re-publish" in message


# -- symlinks -----------------------------------------------------------------------------------


def test_a_folder_swapped_for_a_link_after_use_is_still_refused(provider, root, outside):
    """Placing a path is remembered; its symlink check is not."""
    _put(provider, "{root[work]}/shot/a.bin", b"first")
    (root / "shot/a.bin").unlink()
    (root / "shot").rmdir()
    (root / "shot").symlink_to(outside)
    with pytest.raises(PathEscapeError, match="outside root"):
        _put(provider, "{root[work]}/shot/a.bin", b"again")
    with pytest.raises(PathEscapeError):
        provider.stat("{root[work]}/shot/a.bin")
    assert os.listdir(outside) == []


def test_a_refused_path_is_refused_every_time(provider):
    for _ in range(2):
        with pytest.raises(PathEscapeError, match="relative step"):
            provider.stat("{root[work]}/../x.bin")


def test_symlink_inside_the_root_is_followed(provider, root):
    (root / "v003").mkdir()
    (root / "latest").symlink_to(root / "v003")
    _put(provider, "{root[work]}/latest/x.bin", b"via link")
    assert (root / "v003/x.bin").read_bytes() == b"via link"
    assert provider.stat("{root[work]}/latest/x.bin").size == 8


def test_symlinked_file_pointing_outside_is_refused(provider, root, outside):
    secret = outside / "secret"
    secret.write_bytes(b"secret")
    (root / "f.bin").symlink_to(secret)
    for call in (
        lambda: provider.stat("{root[work]}/f.bin"),
        lambda: provider.open_reader("{root[work]}/f.bin"),
        lambda: provider.open_writer("{root[work]}/f.bin", 1),
        lambda: provider.delete("{root[work]}/f.bin"),
    ):
        with pytest.raises(PathEscapeError, match="outside root"):
            call()
    assert secret.read_bytes() == b"secret"


def test_dangling_symlinked_folder_pointing_outside_creates_nothing(provider, root, outside):
    (root / "link").symlink_to(outside / "not-yet")
    with pytest.raises(PathEscapeError):
        provider.open_writer("{root[work]}/link/a/b.bin", 1)
    assert list(outside.iterdir()) == []


def test_symlinked_folder_deep_below_the_root_pointing_outside_is_refused(provider, root, outside):
    (outside / "secret.bin").write_bytes(b"secret")
    (root / "show" / "sh010").mkdir(parents=True)
    (root / "show" / "sh010" / "render").symlink_to(outside)
    for call in (
        lambda: provider.stat("{root[work]}/show/sh010/render/secret.bin"),
        lambda: provider.open_reader("{root[work]}/show/sh010/render/secret.bin"),
        lambda: provider.open_writer("{root[work]}/show/sh010/render/new.bin", 1),
    ):
        with pytest.raises(PathEscapeError, match="outside root"):
            call()
    assert sorted(p.name for p in outside.iterdir()) == ["secret.bin"]


def test_symlink_at_the_part_name_is_never_written_through(provider, root, outside):
    victim = outside / "victim"
    victim.write_bytes(b"keep")
    (root / f".p.bin{PART_SUFFIX}").symlink_to(victim)
    with pytest.raises(PathEscapeError):
        provider.open_writer("{root[work]}/p.bin", 4)
    (root / f".p.bin{PART_SUFFIX}").unlink()
    (root / "inside").write_bytes(b"keep")
    (root / f".p.bin{PART_SUFFIX}").symlink_to(root / "inside")
    with pytest.raises(PathEscapeError, match="symlink"):  # O_NOFOLLOW: ELOOP
        provider.open_writer("{root[work]}/p.bin", 4)
    assert victim.read_bytes() == b"keep" and (root / "inside").read_bytes() == b"keep"


def test_root_that_is_itself_a_symlink_works(tmp_path, root):
    link = tmp_path / "mnt-link"
    link.symlink_to(root)
    provider = LocalDriveProvider(SITE, {"root": {"work": str(link)}})
    _put(provider, "{root[work]}/x.bin", b"ok")
    assert (root / "x.bin").read_bytes() == b"ok"


def test_symlink_loop_is_refused(provider, root):
    (root / "loop").symlink_to(root / "loop")
    with pytest.raises(PermanentError):
        provider.open_reader("{root[work]}/loop")


# -- error classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind", "text"),
    [
        (errno.EIO, TransientError, "will retry"),
        (errno.ETIMEDOUT, TransientError, "will retry"),
        (errno.ESTALE, TransientError, "ESTALE"),
        (errno.EAGAIN, TransientError, "will retry"),
        (errno.ENOSPC, PermanentError, "disk full on site 'studio'"),
        (errno.EDQUOT, PermanentError, "disk full on site 'studio'"),
        (errno.EFBIG, PermanentError, "disk full or file size limit"),
        (errno.EACCES, PermanentError, "give the user running SiteSync write access"),
        (errno.EPERM, PermanentError, "write access"),
        (errno.EROFS, PermanentError, "read-only file system"),
        (errno.ENAMETOOLONG, PermanentError, "path too long"),
        (errno.ENOENT, TransientError, "a folder vanished"),
        (errno.ELOOP, PathEscapeError, "symlink"),
        (errno.EXDEV, TransientError, "EXDEV"),
    ],
)
def test_oserrors_are_classified(code, kind, text):
    error = classify_oserror(OSError(code, os.strerror(code)), SITE, "/mnt/x.exr", "writing")
    assert type(error) is kind
    assert text in str(error) and "/mnt/x.exr" in str(error)


def test_permission_denied_on_read_asks_for_read_access():
    error = classify_oserror(PermissionError(errno.EACCES, "no"), SITE, "/m/x", "reading")
    assert isinstance(error, PermanentError) and "read access to /m" in str(error)


def test_windows_sharing_violation_is_transient():
    exc = PermissionError(errno.EACCES, "in use")
    exc.winerror = 32  # type: ignore[attr-defined]
    assert isinstance(classify_oserror(exc, SITE, "x", "writing"), TransientError)


def test_disk_full_during_write_is_permanent_and_abort_cleans_up(provider, root, monkeypatch):
    writer = provider.open_writer("{root[work]}/full.bin", 10)

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(PermanentError, match=r"disk full on site 'studio'.*free space then retry"):
        writer.write(b"0123456789")
    monkeypatch.undo()
    writer.abort(keep_partial=False)
    assert os.listdir(root) == []


def test_nas_io_error_while_reading_is_transient(provider, monkeypatch):
    _put(provider, "{root[work]}/nas.bin", b"abc")
    reader = provider.open_reader("{root[work]}/nas.bin")

    def eio(size):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(reader._raw, "read", eio)  # type: ignore[attr-defined]
    with pytest.raises(TransientError, match="will retry"):
        reader.read(10)
    reader.close()


def test_permission_denied_on_open_is_permanent(provider, monkeypatch):
    _put(provider, "{root[work]}/p.bin", b"abc")

    def deny(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(local_drive, "open", deny, raising=False)
    with pytest.raises(PermanentError, match="read access"):
        provider.open_reader("{root[work]}/p.bin")


def test_fsync_failure_on_commit_discards_the_part(provider, root, monkeypatch):
    writer = provider.open_writer("{root[work]}/f.bin", 3)
    writer.write(b"abc")

    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(TransientError, match="I/O error"):
        writer.commit(3, _sha(b"abc"))
    monkeypatch.undo()
    assert os.listdir(root) == []


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_file_size_limit_reached_is_reported_like_a_full_disk(root):
    """A real EFBIG from the kernel: a child process with RLIMIT_FSIZE of 1 MiB (the only
    way to make a write fail for lack of space without mounting a small file system)."""
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills us
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
        from app.errors import PermanentError
        from providers.local_drive import LocalDriveProvider
        provider = LocalDriveProvider("studio", {{"root": {{"work": {str(root)!r}}}}})
        writer = provider.open_writer("{{root[work]}}/big.bin", 4 << 20)
        try:
            for _ in range(4):
                writer.write(b"x" * (1 << 20))
        except PermanentError as exc:
            writer.abort(keep_partial=False)
            print(exc)
            sys.exit(0)
        sys.exit("no error")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "disk full or file size limit reached on site 'studio'" in result.stdout
    assert "EFBIG" in result.stdout
    assert os.listdir(root) == []


# -- folder fsync group commit ------------------------------------------------------------------


def test_concurrent_renames_into_one_folder_share_folder_fsyncs(monkeypatch, tmp_path):
    """Eight workers finishing at once need at most two folder fsyncs (the running one
    plus one that starts after all of them), and a later rename always gets its own."""
    import threading
    import time

    from providers import local_drive

    calls: list[float] = []
    real = local_drive._fsync_dir

    def slow_fsync(folder: str) -> None:
        calls.append(time.monotonic())
        time.sleep(0.05)
        real(folder)

    monkeypatch.setattr(local_drive, "_fsync_dir", slow_fsync)
    sync = local_drive._FolderSync()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        sync.sync(str(tmp_path))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)
    assert 1 <= len(calls) <= 2
    before = len(calls)
    sync.sync(str(tmp_path))
    assert len(calls) == before + 1  # after the others finished: a fresh fsync, never skipped
    assert sync._folders == {}  # nothing kept for folders nobody is waiting on


# -- deferred commits (the engine's finisher fsyncs and renames a batch) ------------------------


def _deferred(provider: LocalDriveProvider, path: str, data: bytes):
    writer = provider.open_writer(path, len(data), resume=False)
    writer.write(data)
    stored = writer.commit_deferred(len(data), _sha(data))
    return writer, stored


def test_a_deferred_commit_is_verified_at_once_and_renamed_only_when_finished(provider, root):
    data = os.urandom(30_000)
    writer, stored = _deferred(provider, "{root[work]}/seq/f.0001.exr", data)
    assert stored.size == len(data) and stored.hashes == _sha(data)
    folder = root / "seq"
    # Verified, write-back started, but not yet durable: nothing under the final name.
    assert os.listdir(folder) == [f".f.0001.exr{PART_SUFFIX}"]
    writer.finish_deferred()
    provider.sync_committed(["{root[work]}/seq/f.0001.exr"])
    assert os.listdir(folder) == ["f.0001.exr"]
    assert (folder / "f.0001.exr").read_bytes() == data
    with pytest.raises(ValueError, match="already committed"):
        writer.write(b"more")


def test_a_deferred_commit_of_wrong_bytes_fails_at_once_and_keeps_nothing(provider, root):
    data = os.urandom(10_000)
    writer = provider.open_writer("{root[work]}/f.exr", len(data))
    writer.write(data)
    with pytest.raises(TransientError, match="verification failed"):
        writer.commit_deferred(len(data), _sha(b"other bytes"))
    assert os.listdir(root) == []
    writer.finish_deferred()  # nothing deferred: nothing to do
    assert os.listdir(root) == []


def test_a_deferred_commit_that_cannot_be_renamed_fails_clearly_and_leaves_the_obstacle(provider, root):
    data = os.urandom(10_000)
    writer, _ = _deferred(provider, "{root[work]}/f.exr", data)
    (root / "f.exr").mkdir()  # someone made a folder with the file's name meanwhile
    (root / "f.exr" / "keep.txt").write_text("theirs")
    with pytest.raises(PermanentError, match="a folder and a file are in each other's way"):
        writer.finish_deferred()
    assert os.listdir(root) == ["f.exr"]
    assert (root / "f.exr" / "keep.txt").read_text() == "theirs"


def test_an_aborted_deferred_commit_keeps_its_verified_part_for_a_resume(provider, root):
    data = os.urandom(20_000)
    writer, _ = _deferred(provider, "{root[work]}/f.exr", data)
    writer.abort(keep_partial=True)
    assert os.listdir(root) == [f".f.exr{PART_SUFFIX}"]
    writer = provider.open_writer("{root[work]}/f.exr", len(data))
    assert writer.offset == len(data)
    writer.commit(len(data), _sha(data))
    assert (root / "f.exr").read_bytes() == data


def test_past_the_limit_of_open_deferred_commits_a_commit_is_done_at_once(provider, root, monkeypatch):
    """Each deferred commit holds its part file open until it is finished: a backlog of
    them must not run the process out of file descriptors."""
    monkeypatch.setattr(local_drive, "_MAX_DEFERRED", 2)
    data = os.urandom(1_000)
    first, _ = _deferred(provider, "{root[work]}/a.exr", data)
    second, _ = _deferred(provider, "{root[work]}/b.exr", data)
    third, _ = _deferred(provider, "{root[work]}/c.exr", data)
    assert sorted(os.listdir(root)) == [f".a.exr{PART_SUFFIX}", f".b.exr{PART_SUFFIX}", "c.exr"]
    first.finish_deferred()
    second.abort(keep_partial=True)  # an abort frees its place too
    fourth, _ = _deferred(provider, "{root[work]}/d.exr", data)
    fifth, _ = _deferred(provider, "{root[work]}/e.exr", data)
    assert sorted(os.listdir(root)) == [f".b.exr{PART_SUFFIX}", f".d.exr{PART_SUFFIX}",
                                        f".e.exr{PART_SUFFIX}", "a.exr", "c.exr"]
    for writer in (third, fourth, fifth):
        writer.finish_deferred()
    assert sorted(os.listdir(root)) == [f".b.exr{PART_SUFFIX}", "a.exr", "c.exr", "d.exr", "e.exr"]


def test_reread_mode_never_defers_a_commit(root):
    """Re-reading checks what is on the disk, so the data must be there first."""
    provider = LocalDriveProvider(SITE, {"root": {"work": str(root)}, "verify_reread": True})
    data = os.urandom(10_000)
    _deferred(provider, "{root[work]}/f.exr", data)
    assert os.listdir(root) == ["f.exr"]
