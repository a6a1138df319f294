"""The provider contract: one ordered scenario run against every provider (rclone fstests).

Tests talk to providers only through :mod:`providers.base`, so a provider that passes
here can carry the engine. They are listed in scenario order (health, put, stat, read,
ranged read, missing, names, atomic overwrite, resume, verification, delete, escapes,
threads) but each one stands alone on a fresh folder, so any of them can run by itself.

Adding a provider: one entry in ``HARNESSES`` (a context manager that yields a
:class:`Harness`, starting any server it needs through ``request``), and for each step it
cannot pass yet, one entry with a reason in ``KNOWN_GAPS``. Optional steps check
``provider.features`` and skip naming the feature, so a gap is visible, never a silent pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.errors import PathEscapeError, PermanentError, TransientError
from providers.base import CHECKSUM_ALGORITHM, Provider, RemoteFile
from providers.registry import create_provider

SITE = "contract"
CHUNK = 1 << 20  # what the engine would send per write()


@dataclass
class Harness:
    """A provider under test plus what the test needs to know about its storage."""

    id: str
    provider: Provider
    #: A rootless folder unique to this test (shared servers stay usable across tests).
    base: str
    #: Creates a symlink at a rootless path pointing at an absolute storage path outside
    #: every root; None if the storage has no symlinks or the harness cannot make them.
    symlink: Callable[[str, str], None] | None = None
    #: An absolute storage path outside every root that symlinks may point at.
    outside: str | None = None
    #: Lists what exists under ``outside`` (to prove refused writes left nothing there).
    list_outside: Callable[[], list[str]] | None = None


@contextlib.contextmanager
def _local_drive(request: pytest.FixtureRequest) -> Iterator[Harness]:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    provider = create_provider("local_drive", SITE, {"root": {"work": str(root)}})

    def symlink(rootless_link: str, target: str) -> None:
        link = Path(provider.resolve(rootless_link))
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)

    def list_outside() -> list[str]:
        return sorted(str(p.relative_to(outside)) for p in outside.rglob("*"))

    try:
        yield Harness(
            id="local_drive",
            provider=provider,
            base="{root[work]}/contract-" + uuid.uuid4().hex[:8],
            symlink=symlink,
            outside=str(outside),
            list_outside=list_outside,
        )
    finally:
        provider.close()


@contextlib.contextmanager
def _sftp(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """A real OpenSSH sshd on 127.0.0.1 (tests/sftp_server.py), known_hosts checked."""
    server = request.getfixturevalue("sshd")
    name = uuid.uuid4().hex[:8]
    root = server.folder(f"contract-{name}/root")
    outside = server.folder(f"contract-{name}/outside")
    provider = create_provider("sftp", SITE, server.site_config(root, sftp_stall_timeout_s=10))

    def symlink(rootless_link: str, target: str) -> None:
        link = Path(provider.resolve(rootless_link))
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
        server.chown(root)

    def list_outside() -> list[str]:
        return sorted(str(p.relative_to(outside)) for p in outside.rglob("*"))

    try:
        yield Harness(
            id="sftp",
            provider=provider,
            base="{root[work]}/contract-" + name,
            symlink=symlink,
            outside=str(outside),
            list_outside=list_outside,
        )
    finally:
        provider.close()


def _gdrive(root: str) -> Callable[[pytest.FixtureRequest], contextlib.AbstractContextManager]:
    """Google Drive through the real googleapiclient/google-auth against the Drive v3
    emulator (tests/gdrive_emulator), in My Drive or in a shared drive; 256 KiB chunks so
    the 1 MiB writes here make multi-chunk resumable uploads."""

    @contextlib.contextmanager
    def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
        env = request.getfixturevalue("gdrive_contract_env")  # tests/contract/conftest.py
        monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setenv("SITESYNC_DATA_DIR", str(request.getfixturevalue("tmp_path") / "data"))
        provider = create_provider("gdrive", SITE, env.site(root))
        try:
            yield Harness(id="gdrive", provider=provider,
                          base="{root[work]}/contract-" + uuid.uuid4().hex[:8])
        finally:
            provider.close()

    return harness


#: Provider id -> harness factory.
HARNESSES: dict[str, Callable[[pytest.FixtureRequest], contextlib.AbstractContextManager]] = {
    "local_drive": _local_drive,
    "sftp": _sftp,
    "gdrive": _gdrive("/My Drive/sitesync"),
    "gdrive_shared_drive": _gdrive("/Studio Team/projects"),
}

#: (provider id, test name) -> why that provider does not pass that step yet. Runs as a
#: strict xfail, so fixing the gap fails the run until the entry is removed.
KNOWN_GAPS: dict[tuple[str, str], str] = {}


@pytest.fixture(params=list(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    with HARNESSES[request.param](request) as made:
        gap = KNOWN_GAPS.get((made.id, request.node.originalname))
        if gap:
            request.applymarker(pytest.mark.xfail(reason=f"known gap: {gap}", strict=True))
        yield made


@pytest.fixture
def provider(harness: Harness) -> Provider:
    return harness.provider


# -- helpers --------------------------------------------------------------------------------


def _hashes(data: bytes) -> dict[str, str]:
    return {CHECKSUM_ALGORITHM: hashlib.sha256(data).hexdigest()}


def _put(provider: Provider, path: str, data: bytes, chunk: int = CHUNK) -> RemoteFile:
    with provider.open_writer(path, len(data), resume=False) as writer:
        assert writer.offset == 0
        for start in range(0, len(data), chunk):
            writer.write(data[start : start + chunk])
        return writer.commit(len(data), _hashes(data))


def _read(provider: Provider, path: str, offset: int = 0, chunk: int = CHUNK) -> bytes:
    out = bytearray()
    with provider.open_reader(path, offset) as reader:
        while block := reader.read(chunk):
            out += block
    return bytes(out)


def _check_hashes(info: RemoteFile, data: bytes) -> None:
    """Every hash a provider reports that hashlib knows must be right."""
    for name, value in info.hashes.items():
        if name in hashlib.algorithms_guaranteed:
            assert value == hashlib.new(name, data).hexdigest(), name


def _payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating bytes (a repeated pattern would hide offset bugs)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


SIZES = {"zero": 0, "small": 1000, "multichunk": 3 * CHUNK + 17}


# -- health -----------------------------------------------------------------------------------


def test_check_reports_no_problems(provider: Provider) -> None:
    assert provider.check() == []


def test_kind_and_features_are_declared(provider: Provider) -> None:
    assert provider.kind
    assert CHECKSUM_ALGORITHM == "sha256"
    assert all(isinstance(name, str) for name in provider.features.server_hashes)


# -- put, stat, read ------------------------------------------------------------------------


@pytest.mark.parametrize("size", list(SIZES.values()), ids=list(SIZES))
def test_put_returns_the_stored_file(harness: Harness, size: int) -> None:
    data = _payload(size)
    path = f"{harness.base}/shots/sh010/v001/file.bin"
    info = _put(harness.provider, path, data)
    assert info.size == size
    assert info.id
    _check_hashes(info, data)


@pytest.mark.parametrize("size", list(SIZES.values()), ids=list(SIZES))
def test_stat_reports_size_and_hash(harness: Harness, size: int) -> None:
    provider = harness.provider
    data = _payload(size, seed=1)
    path = f"{harness.base}/stat/file.bin"
    _put(provider, path, data)
    info = provider.stat(path)
    assert info is not None
    assert info.size == size
    _check_hashes(info, data)
    for name in provider.features.server_hashes:
        assert name in info.hashes, f"server hash {name} declared but not reported"
    # Without a server hash, the content hash comes from reading the file back.
    assert hashlib.sha256(_read(provider, path)).hexdigest() == _hashes(data)["sha256"]


@pytest.mark.parametrize("size", list(SIZES.values()), ids=list(SIZES))
@pytest.mark.parametrize("chunk", [CHUNK, 8 * CHUNK, 4096], ids=["1MiB", "8MiB", "4KiB"])
def test_read_back_returns_the_same_bytes(harness: Harness, size: int, chunk: int) -> None:
    data = _payload(size, seed=2)
    path = f"{harness.base}/read/file.bin"
    _put(harness.provider, path, data)
    assert _read(harness.provider, path, chunk=chunk) == data


@pytest.mark.parametrize("offset", [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 16, 3 * CHUNK + 17])
def test_ranged_read_starts_mid_file(harness: Harness, offset: int) -> None:
    provider = harness.provider
    if not provider.features.ranged_read:
        pytest.skip(f"{harness.id}: feature ranged_read not supported")
    data = _payload(SIZES["multichunk"], seed=3)
    path = f"{harness.base}/ranged.bin"
    _put(provider, path, data)
    assert _read(provider, path, offset=offset) == data[offset:]


def test_missing_file_is_none_on_stat_and_permanent_on_read(harness: Harness) -> None:
    provider = harness.provider
    path = f"{harness.base}/no/such/file.exr"
    assert provider.stat(path) is None
    with pytest.raises(PermanentError) as caught:
        provider.open_reader(path)
    assert not isinstance(caught.value, PathEscapeError)
    assert SITE in str(caught.value)


NAMES = {
    "spaces": "name with spaces.exr",
    "unicode": "ünïcödé ファイル ✓.exr",
    "leading_dot": ".hidden",
    "nested": "sub dir/ünï cödé/.x y.exr",
    "many_dots": "a.b.c..d.exr",
    "long": "n" * 200 + ".exr",
}


@pytest.mark.parametrize("name", list(NAMES.values()), ids=list(NAMES))
def test_awkward_names_round_trip(harness: Harness, name: str) -> None:
    provider = harness.provider
    data = _payload(2000, seed=4)
    path = f"{harness.base}/{name}"
    info = _put(provider, path, data)
    assert info.size == len(data)
    assert provider.stat(path) is not None
    assert _read(provider, path) == data
    provider.delete(path)
    assert provider.stat(path) is None


# -- overwrite, resume, verification -------------------------------------------------------


def test_overwrite_replaces_the_final_file_atomically(harness: Harness) -> None:
    provider = harness.provider
    if not provider.features.atomic_rename:
        pytest.skip(f"{harness.id}: feature atomic_rename not supported")
    old, new = _payload(CHUNK + 5, seed=5), _payload(2 * CHUNK + 9, seed=6)
    path = f"{harness.base}/overwrite.bin"
    _put(provider, path, old)
    writer = provider.open_writer(path, len(new), resume=False)
    writer.write(new[:CHUNK])
    writer.write(new[CHUNK:])
    # Everything written but not committed: readers still see the whole old file.
    info = provider.stat(path)
    assert info is not None and info.size == len(old)
    assert _read(provider, path) == old
    committed = writer.commit(len(new), _hashes(new))
    assert committed.size == len(new)
    assert _read(provider, path) == new


def test_interrupted_write_resumes_from_offset(harness: Harness) -> None:
    provider = harness.provider
    if not provider.features.resumable_upload:
        pytest.skip(f"{harness.id}: feature resumable_upload not supported")
    data = _payload(3 * CHUNK + 17, seed=7)
    path = f"{harness.base}/resume/file.bin"
    writer = provider.open_writer(path, len(data))
    writer.write(data[:CHUNK])
    writer.write(data[CHUNK : 2 * CHUNK])
    writer.abort(keep_partial=True)  # a pause or shutdown
    assert provider.stat(path) is None, "a partial file must never be visible"

    writer = provider.open_writer(path, len(data), resume=True)
    assert 0 < writer.offset <= 2 * CHUNK
    for start in range(writer.offset, len(data), CHUNK):
        writer.write(data[start : start + CHUNK])
    info = writer.commit(len(data), _hashes(data))
    assert info.size == len(data)
    assert _read(provider, path) == data


def test_resume_false_starts_over(harness: Harness) -> None:
    provider = harness.provider
    data = _payload(2 * CHUNK, seed=8)
    path = f"{harness.base}/restart.bin"
    writer = provider.open_writer(path, len(data))
    writer.write(data[:CHUNK])
    writer.abort(keep_partial=True)
    writer = provider.open_writer(path, len(data), resume=False)
    assert writer.offset == 0
    writer.write(data)
    writer.commit(len(data), _hashes(data))
    assert _read(provider, path) == data


def test_abort_without_keep_discards_the_partial(harness: Harness) -> None:
    provider = harness.provider
    data = _payload(2 * CHUNK, seed=9)
    path = f"{harness.base}/abort.bin"
    writer = provider.open_writer(path, len(data))
    writer.write(data[:CHUNK])
    writer.abort(keep_partial=False)
    writer.abort(keep_partial=False)  # idempotent
    assert provider.stat(path) is None
    writer = provider.open_writer(path, len(data), resume=True)
    assert writer.offset == 0
    writer.abort(keep_partial=False)


def test_exception_inside_with_aborts_and_leaves_no_file(harness: Harness) -> None:
    provider = harness.provider
    path = f"{harness.base}/with.bin"
    with pytest.raises(RuntimeError), provider.open_writer(path, 10) as writer:
        writer.write(b"12345")
        raise RuntimeError("source went away")
    assert provider.stat(path) is None
    reopened = provider.open_writer(path, 10, resume=True)
    assert reopened.offset == 0
    reopened.abort(keep_partial=False)


@pytest.mark.parametrize("wrong", ["hash", "size"])
def test_mismatched_commit_is_transient_and_leaves_no_file(harness: Harness, wrong: str) -> None:
    provider = harness.provider
    data = _payload(CHUNK + 3, seed=10)
    path = f"{harness.base}/mismatch.bin"
    writer = provider.open_writer(path, len(data))
    writer.write(data)
    expected_size, hashes = len(data), _hashes(data)
    if wrong == "hash":
        hashes = _hashes(data + b"x")
    else:
        expected_size += 1
    with pytest.raises(TransientError, match="verification failed"):
        writer.commit(expected_size, hashes)
    assert provider.stat(path) is None
    # The temporary data was discarded: the next attempt starts clean.
    retry = provider.open_writer(path, len(data), resume=True)
    assert retry.offset == 0
    retry.write(data)
    retry.commit(len(data), _hashes(data))
    assert _read(provider, path) == data


def test_mismatched_commit_keeps_the_previous_version(harness: Harness) -> None:
    provider = harness.provider
    old, new = _payload(500, seed=11), _payload(700, seed=12)
    path = f"{harness.base}/keep-old.bin"
    _put(provider, path, old)
    writer = provider.open_writer(path, len(new), resume=False)
    writer.write(new)
    with pytest.raises(TransientError):
        writer.commit(len(new), _hashes(old))
    assert _read(provider, path) == old


def test_resumed_write_with_a_wrong_prefix_fails_verification(harness: Harness) -> None:
    """The engine hashes only what it sends after ``offset``; the provider must verify
    the whole file, or a resumed copy of a changed source would pass."""
    provider = harness.provider
    if not provider.features.resumable_upload:
        pytest.skip(f"{harness.id}: feature resumable_upload not supported")
    first, second = _payload(2 * CHUNK, seed=13), _payload(2 * CHUNK, seed=14)
    path = f"{harness.base}/changed-source.bin"
    writer = provider.open_writer(path, len(first))
    writer.write(first[:CHUNK])
    writer.abort(keep_partial=True)
    writer = provider.open_writer(path, len(second), resume=True)
    assert writer.offset > 0
    writer.write(second[writer.offset :])
    with pytest.raises(TransientError, match="verification failed"):
        writer.commit(len(second), _hashes(second))
    assert provider.stat(path) is None


# -- delete ------------------------------------------------------------------------------------


def test_delete_removes_and_tolerates_absence(harness: Harness) -> None:
    provider = harness.provider
    path = f"{harness.base}/delete/me.bin"
    provider.delete(path)
    _put(provider, path, b"bye")
    provider.delete(path)
    provider.delete(path)
    assert provider.stat(path) is None
    with pytest.raises(PermanentError):
        provider.open_reader(path)


# -- paths that must be refused --------------------------------------------------------------

ESCAPES = {
    "dotdot": "{root[work]}/../outside/x.bin",
    "dotdot_nested": "{root[work]}/a/b/../../../x.bin",
    "dot": "{root[work]}/a/./x.bin",
    "windows_dots": "{root[work]}/.../x.bin",
    "absolute_after_root": "{root[work]}//etc/passwd",
    "no_separator": "{root[work]}../x.bin",
    "sibling_of_root": "{root[work]}2/x.bin",
    "root_itself": "{root[work]}/",
    "drive_letter": "{root[work]}/C:/Windows/x.bin",
    "drive_relative": "{root[work]}/c:x.bin",
    "backslash": "{root[work]}/a\\..\\..\\x.bin",
    "nul": "{root[work]}/a\x00/x.bin",
    "empty_component": "{root[work]}/a//x.bin",
}

OPERATIONS: dict[str, Callable[[Provider, str], object]] = {
    "resolve": lambda p, path: p.resolve(path),
    "stat": lambda p, path: p.stat(path),
    "open_reader": lambda p, path: p.open_reader(path),
    "open_writer": lambda p, path: p.open_writer(path, 3),
    "delete": lambda p, path: p.delete(path),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("path", list(ESCAPES.values()), ids=list(ESCAPES))
def test_escaping_paths_are_refused(harness: Harness, path: str, operation: str) -> None:
    before = harness.list_outside() if harness.list_outside else None
    with pytest.raises(PathEscapeError, match="refusing"):
        OPERATIONS[operation](harness.provider, path)
    if harness.list_outside:
        assert harness.list_outside() == before


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_symlinked_folder_pointing_outside_is_refused(harness: Harness, operation: str) -> None:
    if harness.symlink is None or harness.outside is None:
        pytest.skip(f"{harness.id}: the harness cannot create symlinks on this storage")
    harness.symlink(f"{harness.base}/link", harness.outside)
    before = harness.list_outside() if harness.list_outside else None
    with pytest.raises(PathEscapeError):
        OPERATIONS[operation](harness.provider, f"{harness.base}/link/sub/x.bin")
    if harness.list_outside:
        assert harness.list_outside() == before


@pytest.mark.parametrize("path", ["/etc/passwd", "relative/x.bin", "{work}/x.bin", "C:/x"])
def test_paths_without_a_root_are_permanent_errors(provider: Provider, path: str) -> None:
    with pytest.raises(PermanentError, match="not rootless"):
        provider.resolve(path)


def test_unknown_root_names_the_site_root_and_fix(provider: Provider) -> None:
    with pytest.raises(PermanentError) as caught:
        provider.stat("{root[textures]}/x.bin")
    assert not isinstance(caught.value, PathEscapeError)
    message = str(caught.value)
    assert SITE in message and "textures" in message
    assert f"add root 'textures' to sites.{SITE}.root" in message


# -- threads ----------------------------------------------------------------------------------


def test_one_instance_serves_many_threads(harness: Harness) -> None:
    provider = harness.provider
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            data = _payload(CHUNK + index * 1001, seed=100 + index)
            path = f"{harness.base}/threads/{index}/file.bin"
            _put(provider, path, data, chunk=64 * 1024)
            assert _read(provider, path) == data
            info = provider.stat(path)
            assert info is not None and info.size == len(data)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_no_temporary_files_are_left_after_commit(harness: Harness) -> None:
    provider = harness.provider
    if not provider.features.local:
        pytest.skip(f"{harness.id}: feature local not supported (cannot list the folder)")
    path = f"{harness.base}/clean/file.bin"
    _put(provider, path, _payload(CHUNK + 1, seed=15))
    folder = os.path.dirname(provider.resolve(path))
    assert os.listdir(folder) == ["file.bin"]
