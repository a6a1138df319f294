"""The SFTP provider against a real OpenSSH sshd on 127.0.0.1 (tests/sftp_server.py).

What goes wrong in production, each on the real server: unknown and changed host keys,
wrong credentials, missing roots, no permission, dropped and frozen connections, a
restarted server, a server without a shell, a full disk, a server with fewer channels
than configured. The shared contract (tests/contract) covers the normal operations.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import replace

import pytest

from app.errors import CancelledTransfer, ConfigError, PathEscapeError, PermanentError, TransientError
from providers.registry import create_provider
from providers.sftp import SftpProvider, streams
from providers.sftp.errors import forget_command
from providers.sftp.options import SftpOptions
from providers.sftp.pool import SessionPool
from providers.sftp.verify import REREAD_MAX_BYTES
from tests.sftp_server import BROKEN_SFTP_SETUPS, can_mount, free_port

SITE = "remote"
MiB = 1 << 20


def _sha(data: bytes) -> dict[str, str]:
    return {"sha256": hashlib.sha256(data).hexdigest()}


@pytest.fixture
def root(sshd):
    return sshd.folder(f"unit-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def make(sshd, root):
    """Builds providers on the session sshd; closes them after the test."""
    made: list[SftpProvider] = []

    def factory(**options) -> SftpProvider:
        config = sshd.site_config(options.pop("root", root), **options)
        provider = create_provider("sftp", SITE, config)
        made.append(provider)
        return provider

    yield factory
    for provider in made:
        provider.close()


def _put(provider, path: str, data: bytes, chunk: int = MiB):
    writer = provider.open_writer(path, len(data), resume=False)
    for start in range(0, len(data), chunk):
        writer.write(data[start:start + chunk])
    return writer.commit(len(data), _sha(data))


def _read(provider, path: str, chunk: int = MiB) -> bytes:
    out = bytearray()
    with provider.open_reader(path) as reader:
        while block := reader.read(chunk):
            out += block
    return bytes(out)


def _upload_at_once(provider, folder: str, data: dict[int, bytes]) -> list[BaseException]:
    """Uploads ``data[index]`` to ``{root[work]}/<folder>/<index>.bin``, a thread each, all
    started together (channels are asked for at the same moment); returns what they raised."""
    errors: list[BaseException] = []

    def upload(index: int) -> None:
        try:
            _put(provider, f"{{root[work]}}/{folder}/{index}.bin", data[index])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(index,)) for index in data]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def _wait_for_size(path, size: int) -> None:
    """Writes are pipelined (``write`` returns before the server has the bytes): wait
    until the server's file has them."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= size:
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} never reached {size} bytes")


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "key"), [
    ({"sftp_host": ""}, "sftp_host"),
    ({"sftp_user": ""}, "sftp_user"),
    ({"sftp_key": "", "sftp_pass": ""}, "sftp_key"),
    ({"sftp_key": "/nonexistent/id_ed25519"}, "sftp_key"),
    ({"sftp_port": 70000}, "sftp_port"),
    ({"sftp_port": "ssh"}, "sftp_port"),
    ({"sftp_verify": "md5"}, "sftp_verify"),
    ({"sftp_stall_timeout_s": 0}, "sftp_stall_timeout_s"),
    ({"insecure_skip_host_key_check": "yes"}, "insecure_skip_host_key_check"),
])
def test_bad_settings_name_the_key_and_the_fix(sshd, root, change, key):
    config = {**sshd.site_config(root), **change}
    with pytest.raises(ConfigError) as caught:
        create_provider("sftp", SITE, config)
    assert caught.value.key == f"sites.{SITE}.{key}" and caught.value.fix


def test_missing_known_hosts_file_says_how_to_add_the_server(sshd, root, tmp_path):
    missing = tmp_path / "nope" / "known_hosts"
    with pytest.raises(ConfigError) as caught:
        create_provider("sftp", SITE, sshd.site_config(root, known_hosts=str(missing)))
    assert caught.value.key == f"sites.{SITE}.known_hosts"
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {missing}" in caught.value.fix
    # The command in the fix works as given, even where the folder does not exist yet.
    command = caught.value.fix.split("`")[1]
    subprocess.run(["sh", "-c", command], check=True, capture_output=True, timeout=30)
    provider = create_provider("sftp", SITE, sshd.site_config(root, known_hosts=str(missing)))
    try:
        assert provider.check() == []
    finally:
        provider.close()


def test_passphrase_protected_key(sshd, root, make):
    provider = make(sftp_key=sshd.protected_key, sftp_key_pass="correct horse")
    assert provider.check() == []
    with pytest.raises(ConfigError) as caught:
        make(sftp_key=sshd.protected_key, sftp_key_pass="not-the-passphrase")
    assert caught.value.key == f"sites.{SITE}.sftp_key_pass"
    assert "wrong passphrase" in str(caught.value) and "not-the" not in str(caught.value)
    with pytest.raises(ConfigError, match="encrypted"):
        make(sftp_key=sshd.protected_key)


# -- trust and login ----------------------------------------------------------------------------


def test_unknown_host_key_is_refused_with_the_keyscan_line(sshd, make):
    provider = make(known_hosts=sshd.known_hosts_with("unknown", "empty"))
    with pytest.raises(PermanentError) as caught:
        provider.stat("{root[work]}/x.bin")
    text = str(caught.value)
    assert "is not trusted" in text and "SHA256:" in text
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> " in text
    assert provider.check() == [text]


def test_changed_host_key_is_refused_as_possible_interception(sshd, make):
    known_hosts = sshd.known_hosts_with("changed", "wrong")
    provider = make(known_hosts=known_hosts)
    with pytest.raises(PermanentError) as caught:
        _put(provider, "{root[work]}/x.bin", b"data")
    text = str(caught.value)
    assert "has CHANGED" in text and "ssh-keygen -R" in text and "SHA256:" in text
    # The two commands the message gives (forget the old key, add the new) fix it.
    forget, scan = text.split("`")[1::2]
    for command in (forget, scan):
        subprocess.run(["sh", "-c", command], check=True, capture_output=True, timeout=30)
    fixed = make(known_hosts=known_hosts)
    _put(fixed, "{root[work]}/x.bin", b"data")
    assert fixed.stat("{root[work]}/x.bin").size == 4


def test_known_hosts_names_port_22_without_brackets():
    options = SftpOptions(host="files.example", port=22, user="a", known_hosts="/k")
    assert forget_command(options) == "ssh-keygen -R files.example -f /k"
    assert forget_command(replace(options, port=2222)) == "ssh-keygen -R '[files.example]:2222' -f /k"


def test_opting_out_of_host_key_checks_is_explicit(sshd, make, caplog):
    provider = make(known_hosts=sshd.known_hosts_with("ignored", "wrong"),
                    insecure_skip_host_key_check=True)
    assert "is NOT checked" in caplog.text and "NOT checked" in provider.describe()
    _put(provider, "{root[work]}/x.bin", b"data")
    assert provider.stat("{root[work]}/x.bin").size == 4


def test_wrong_user_is_a_permanent_login_error_naming_the_fix(make):
    provider = make(sftp_user="nobody")
    with pytest.raises(PermanentError) as caught:
        provider.stat("{root[work]}/x.bin")
    assert "refused the login of user 'nobody'" in str(caught.value)
    assert "authorized_keys" in str(caught.value)


def test_wrong_password_is_permanent_and_never_shown(make):
    provider = make(sftp_key="", sftp_pass="hunter2-not-it")
    with pytest.raises(PermanentError) as caught:
        provider.stat("{root[work]}/x.bin")
    assert "refused the login" in str(caught.value)
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(provider)


@pytest.mark.skipif(os.geteuid() != 0, reason="a password check needs a root-run sshd that reads "
                    "/etc/shadow (CI runs as root)")
def test_password_login(sshd, make):
    sshd.start_password_login()
    provider = make(sftp_key="", sftp_pass=sshd.password, sftp_port=sshd.password_port)
    data = os.urandom(2 * MiB)
    _put(provider, "{root[work]}/by-password.bin", data)
    assert _read(provider, "{root[work]}/by-password.bin") == data
    assert provider.check() == [] and sshd.password not in provider.describe()
    wrong = make(sftp_key="", sftp_pass=sshd.password[::-1], sftp_port=sshd.password_port)
    with pytest.raises(PermanentError) as caught:
        wrong.stat("{root[work]}/by-password.bin")
    assert "refused the login" in str(caught.value) and "sftp_pass" in str(caught.value)
    assert sshd.password[::-1] not in str(caught.value)


def test_unreachable_server_is_transient(make):
    provider = make(sftp_port=free_port(), sftp_connect_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(TransientError, match="connection was refused"):
        provider.stat("{root[work]}/x.bin")
    assert time.monotonic() - started < 5


def test_a_server_that_never_answers_times_out_on_connect(make):
    with socket.socket() as silent:  # accepts the TCP connection, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        provider = make(sftp_port=silent.getsockname()[1], sftp_connect_timeout_s=1)
        started = time.monotonic()
        with pytest.raises(TransientError, match="no answer within 1 s"):
            provider.stat("{root[work]}/x.bin")
        assert time.monotonic() - started < 4
        (problem,) = provider.check()
        assert "no answer within 1 s" in problem and "will retry" in problem


@pytest.mark.parametrize("setup", BROKEN_SFTP_SETUPS, ids=lambda setup: setup.name)
def test_a_server_that_cannot_start_sftp_fails_at_once_with_the_fix(sshd, make, root, setup):
    # Common misconfigurations: sshd accepts the login, but its sshd_config has no
    # `Subsystem sftp` line (the subsystem request is refused), or the line names a
    # program that cannot start (the channel closes before the SFTP handshake while the
    # connection stays up). Retrying cannot help: each operation ends permanent after
    # three tries on fresh channels, well before the stall timeout, naming the line.
    port = setup.started(sshd)
    provider = make(sftp_port=port, sftp_stall_timeout_s=5)
    started = time.monotonic()
    texts = []
    for attempt in (lambda: provider.stat("{root[work]}/a.bin"),
                    lambda: _put(provider, "{root[work]}/a.bin", b"frame")):
        with pytest.raises(PermanentError) as caught:
            attempt()
        texts.append(str(caught.value))
    texts += provider.check()
    assert time.monotonic() - started < 4
    assert len(texts) == 3 and len(set(texts)) == 1, texts
    text = texts[0]
    assert f"127.0.0.1:{port} accepts the login of user '{sshd.user}'" in text
    assert all(words in text for words in setup.says), text
    assert not any(words in text for words in setup.never_says), text
    assert list(root.rglob("*")) == []  # not even a part file
    assert provider.pool.connects == 1  # failed channels are no reason to log in again


def test_sftp_channels_that_close_at_once_below_the_budget_are_retried_on_the_same_login(
        sshd, make, root):
    # The rule's other side: two channels in a row whose SFTP program exits at once, then
    # a working one (a one-off failure on the server) is no broken setup. The operation
    # succeeds on the same connection: the connection stayed up, so no new login either.
    sshd.start_with_flaky_sftp_server()
    provider = make(sftp_port=sshd.flaky_sftp_port, sftp_stall_timeout_s=5)
    sshd.fail_next_sftp_channels(2)
    _put(provider, "{root[work]}/a.bin", b"frame")
    assert (root / "a.bin").read_bytes() == b"frame"
    assert provider.pool.connects == 1
    # Three in a row on fresh channels (the site's pool closed, so no idle channel): broken.
    provider.close()
    fresh = make(sftp_port=sshd.flaky_sftp_port, sftp_stall_timeout_s=5)
    sshd.fail_next_sftp_channels(3)
    with pytest.raises(PermanentError, match="SFTP server program exited at once"):
        fresh.stat("{root[work]}/a.bin")


# -- roots and permissions --------------------------------------------------------------------


def test_missing_root_is_never_created(sshd, make, root):
    gone = root / "not-mounted"
    provider = make(root=gone)
    for action in (lambda: provider.stat("{root[work]}/a/x.bin"),
                   lambda: provider.open_writer("{root[work]}/a/x.bin", 3)):
        with pytest.raises(PermanentError, match="does not exist on the SFTP server"):
            action()
    assert not gone.exists()
    (problem,) = provider.check()
    assert "root 'work'" in problem and str(gone) in problem


def test_folder_without_write_permission(sshd, make, root):
    locked = root / "locked"
    locked.mkdir()
    sshd.chown(locked)
    locked.chmod(0o555)
    provider = make()
    with pytest.raises(PermanentError) as caught:
        provider.open_writer("{root[work]}/locked/x.bin", 3)
    assert "permission denied" in str(caught.value)
    assert f"give the SFTP user '{sshd.user}' write access" in str(caught.value)
    assert make(root=locked).check()[0].startswith("root 'work' of site 'remote' is not writable")


def test_multiple_roots(sshd, make, root):
    textures = sshd.folder(f"textures-{uuid.uuid4().hex[:8]}")
    provider = make(root={"work": root, "textures": textures})
    _put(provider, "{root[textures]}/t/wood.tx", b"wood")
    _put(provider, "{root[work]}/s/sh010.exr", b"shot")
    assert (textures / "t" / "wood.tx").read_bytes() == b"wood"
    assert (root / "s" / "sh010.exr").read_bytes() == b"shot"
    assert provider.check() == []


# -- verification -----------------------------------------------------------------------------


def test_large_uploads_are_hashed_by_the_server_small_ones_reread(make):
    provider = make()
    assert provider.features.verification == "server_hash_or_reread"
    _put(provider, "{root[work]}/small.bin", os.urandom(1000))
    assert provider.verifier.last_method == "reread"
    data = os.urandom(REREAD_MAX_BYTES + 1)
    info = _put(provider, "{root[work]}/large.bin", data)
    assert provider.verifier.last_method == "server_hash"
    assert info.hashes == _sha(data) and provider.features.verification == "server_hash"


def test_server_without_a_shell_is_verified_by_reading_back(sshd, make, root):
    provider = make(sftp_port=sshd.sftp_only_port)
    data = os.urandom(2 * MiB)
    _put(provider, "{root[work]}/large.bin", data)
    assert provider.verifier.last_method == "reread"
    assert provider.features.verification == "reread"
    assert (root / "large.bin").read_bytes() == data


def test_hash_mode_without_a_shell_names_the_fix(sshd, make):
    provider = make(sftp_port=sshd.sftp_only_port, sftp_verify="hash")
    (problem,) = provider.check()
    assert "cannot run a SHA-256 command" in problem and "sftp_verify to auto or reread" in problem
    with pytest.raises(PermanentError, match="cannot run a SHA-256 command"):
        _put(provider, "{root[work]}/large.bin", os.urandom(2 * MiB))
    assert provider.stat("{root[work]}/large.bin") is None


def test_reread_mode_never_runs_commands(sshd, make):
    provider = make(sftp_verify="reread")
    _put(provider, "{root[work]}/large.bin", os.urandom(2 * MiB))
    assert provider.verifier.last_method == "reread" and provider.features.verification == "reread"


@pytest.mark.parametrize("check", ["server_hash", "reread"])
def test_a_part_corrupted_on_the_server_fails_verification(sshd, make, root, check):
    provider = make() if check == "server_hash" else make(sftp_port=sshd.sftp_only_port)
    data = os.urandom(3 * MiB)
    writer = provider.open_writer("{root[work]}/rot.bin", len(data))
    writer.write(data)
    part = root / ".rot.bin.sitesync-part"
    _wait_for_size(part, len(data))
    with open(part, "r+b") as handle:  # bit rot on the server's disk
        handle.seek(MiB)
        handle.write(b"\xff" * 16)
    with pytest.raises(TransientError, match="verification failed"):
        writer.commit(len(data), _sha(data))
    assert provider.verifier.last_method == check
    assert not part.exists() and provider.stat("{root[work]}/rot.bin") is None


# -- pooling ------------------------------------------------------------------------------------


def test_connections_are_reused_across_files(make):
    provider = make()
    for index in range(20):
        _put(provider, f"{{root[work]}}/many/{index}.bin", os.urandom(100))
        assert provider.stat(f"{{root[work]}}/many/{index}.bin").size == 100
    assert provider.pool.connects == 1


def test_projects_on_one_site_share_its_connections(sshd, make, root):
    # The engine builds a provider per (project, site); projects may use other roots.
    other_root = sshd.folder(f"other-project-{uuid.uuid4().hex[:8]}")
    first, second = make(), make(root=other_root)
    _put(first, "{root[work]}/a.bin", b"first")
    _put(second, "{root[work]}/b.bin", b"second")
    assert first.pool is second.pool and first.pool.connects == 1
    assert (other_root / "b.bin").read_bytes() == b"second"
    different = make(sftp_max_connections=2)  # other settings: a pool of its own
    assert different.pool is not first.pool
    pool = first.pool
    first.close()
    first.close()  # idempotent: the second provider keeps its connections
    assert _read(second, "{root[work]}/b.bin") == b"second" and pool.connects == 1
    second.close()
    assert pool.connections == 0
    again = make()
    assert again.pool is not pool and _read(again, "{root[work]}/a.bin") == b"first"


def test_channels_stay_within_the_servers_limit(make, caplog):
    # The test server allows 10 sessions per connection; we claim 30 on one connection.
    provider = make(sftp_max_connections=1, sftp_max_sessions=30)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            data = os.urandom(300_000 + index)
            _put(provider, f"{{root[work]}}/t/{index}.bin", data, chunk=64 * 1024)
            assert _read(provider, f"{{root[work]}}/t/{index}.bin") == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(14)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert provider.pool.connects == 1
    learnt = [line for line in caplog.messages if "sftp_max_sessions to" in line]
    # When the threads did overlap past 10 channels, the server's value was said once.
    assert len(learnt) <= 1 and all(line.endswith("sftp_max_sessions to 10") for line in learnt), learnt


@pytest.mark.parametrize("limit", ["server", "setting"])
def test_server_hashing_never_waits_for_the_channels_uploads_hold(sshd, make, root, limit, caplog):
    # One channel per connection — the server's MaxSessions 1 (learnt from its refusal)
    # or sftp_max_sessions 1: the command that hashes a part needs a slot while every
    # slot is held by an upload at that step.
    options = ({"sftp_port": sshd.one_session_port} if limit == "server"
               else {"sftp_max_sessions": 1})
    provider = make(sftp_max_connections=2, sftp_stall_timeout_s=5, **options)
    data = {index: os.urandom(REREAD_MAX_BYTES + 1 + index) for index in range(4)}
    started = time.monotonic()
    errors = _upload_at_once(provider, "one-slot", data)
    assert not errors, errors
    assert time.monotonic() - started < 5  # never waited for the stall timeout
    assert provider.verifier.last_method == "server_hash" and provider.pool.connects <= 2
    for index, content in data.items():
        assert (root / "one-slot" / f"{index}.bin").read_bytes() == content
    assert provider.check() == [] and provider.verifier.server_hash_works
    learnt = {line.split("sftp_max_sessions to ")[1] for line in caplog.messages
              if "sftp_max_sessions to" in line}
    assert learnt == ({"1"} if limit == "server" else set())  # the server's value, said once


def test_a_close_not_yet_confirmed_is_not_read_as_a_larger_session_limit(sshd, make, monkeypatch,
                                                                        caplog):
    # MaxSessions 1: channel A is closed and the server frees its slot and takes B, but
    # this side has not yet seen A's close confirmed (a busy event loop; made slow here).
    # A refusal of C then finds A and B counted: read as a limit, that said 'allows 2'.
    real_slot_freed = SessionPool._slot_freed

    async def confirmed_late(pool, conn, sftp):
        await asyncio.sleep(0.5)
        await real_slot_freed(pool, conn, sftp)

    monkeypatch.setattr(SessionPool, "_slot_freed", confirmed_late)
    provider = make(sftp_port=sshd.one_session_port, sftp_max_connections=1, sftp_stall_timeout_s=10)
    pool = provider.pool

    async def scenario():
        a = await pool.acquire()
        pool.release(a, broken=True)  # closed; its close is confirmed 0.5 s late
        await asyncio.sleep(0.2)  # the server has freed A's slot by now
        b = await pool.acquire()
        c = asyncio.ensure_future(pool.acquire())  # refused while B is open
        await asyncio.sleep(1.0)
        pool.release(b)
        pool.release(await c)
        return b, c.result()

    b, c = provider._run(scenario(), timeout=15)
    assert c.sftp is b.sftp  # C waited for B's channel: one channel at a time
    learnt = {line.split("sftp_max_sessions to ")[1] for line in caplog.messages
              if "sftp_max_sessions to" in line}
    assert learnt == {"1"}


def test_a_refused_command_holds_no_slot_while_its_refusal_is_judged(sshd, make, monkeypatch, caplog):
    # MaxSessions 1: a command and a second upload are refused while an upload holds the
    # one slot. Judging a refusal can wait (for opens in flight, for a slot to be freed);
    # while the command's open, or its refused slot, counted as a channel the server
    # holds, the upload's refusal read the server as 'allows 2' (CI flake).
    real_judge = SessionPool._refusal_explained
    seen = []

    async def judged(pool, conn, exc, own, deadline, what):
        seen.append(what)
        return await real_judge(pool, conn, exc, own, deadline, what)

    monkeypatch.setattr(SessionPool, "_refusal_explained", judged)
    provider = make(sftp_port=sshd.one_session_port, sftp_max_connections=1, sftp_stall_timeout_s=10)
    pool = provider.pool

    async def scenario():
        upload = await pool.acquire()
        # Both refused (the upload holds the slot), each judged while the other counts.
        other = asyncio.ensure_future(pool.acquire())
        command = asyncio.ensure_future(pool.run_command("echo done", timeout=10))
        await asyncio.sleep(0.5)
        pool.release(upload)
        pool.release(await other)
        return await command

    done = provider._run(scenario(), timeout=15)
    assert done.exit_status == 0 and done.stdout.strip() == "done"
    assert {"a channel for a command", "an SFTP channel"} <= set(seen), \
        f"both must have been refused, or the test proves nothing: {seen}"
    learnt = {line.split("sftp_max_sessions to ")[1] for line in caplog.messages
              if "sftp_max_sessions to" in line}
    assert learnt == {"1"}


def test_refusals_behind_a_channel_still_starting_are_no_verdict(sshd, make, monkeypatch, caplog):
    # MaxSessions 1, one connection, four uploads at once: the server accepts one channel
    # and refuses the others while the accepted one is still starting its SFTP subsystem.
    # On a loaded machine that start outlasted the refused opens' retries, which then
    # failed with 'refuses every channel'; here the start is made that slow.
    real_connect = SessionPool.connect_once

    async def slowly_starting_channels(pool):
        ssh = await real_connect(pool)
        real_start = ssh.start_sftp_client

        async def start_sftp_client(*args, **kwargs):
            sftp = await real_start(*args, **kwargs)
            await asyncio.sleep(0.5)
            return sftp

        ssh.start_sftp_client = start_sftp_client
        return ssh

    monkeypatch.setattr(SessionPool, "connect_once", slowly_starting_channels)
    provider = make(sftp_port=sshd.one_session_port, sftp_max_connections=1, sftp_stall_timeout_s=20)
    data = {index: os.urandom(1000 + index) for index in range(4)}
    errors = _upload_at_once(provider, "starting", data)
    assert not errors, errors
    assert provider.pool.connects == 1
    learnt = {line.split("sftp_max_sessions to ")[1] for line in caplog.messages
              if "sftp_max_sessions to" in line}
    assert learnt == {"1"}


# -- failures mid-transfer --------------------------------------------------------------------


def test_dropped_connection_mid_upload_resumes_from_the_confirmed_offset(sshd, make, root):
    provider = make()
    data = os.urandom(8 * MiB)
    writer = provider.open_writer("{root[work]}/cut.bin", len(data))
    for start in range(0, 4 * MiB, MiB):
        writer.write(data[start:start + MiB])
    assert sshd.drop_connections() > 0
    for start in range(4 * MiB, len(data), MiB):
        writer.write(data[start:start + MiB])
    upload = writer._upload
    info = writer.commit(len(data), _sha(data))
    assert upload.recoveries == 1 and provider.pool.connects >= 2
    assert info.size == len(data) and (root / "cut.bin").read_bytes() == data


def test_dropped_connection_mid_download_continues(sshd, make):
    provider = make()
    data = os.urandom(6 * MiB)
    _put(provider, "{root[work]}/cut.bin", data)
    out = bytearray()
    with provider.open_reader("{root[work]}/cut.bin") as reader:
        out += reader.read(MiB)
        assert sshd.drop_connections() > 0
        while block := reader.read(MiB):
            out += block
    assert bytes(out) == data


def test_server_restart_between_files(sshd, make):
    provider = make()
    _put(provider, "{root[work]}/before.bin", b"before")
    sshd.stop()
    sshd.start()
    _put(provider, "{root[work]}/after.bin", b"after")  # the pooled connection is stale
    assert _read(provider, "{root[work]}/before.bin") == b"before"


def test_server_down_fails_transient_and_the_next_attempt_resumes(sshd, make, root, monkeypatch):
    monkeypatch.setattr(streams, "_RECOVERY_DELAYS", (0.05,))
    provider = make(sftp_connect_timeout_s=2)
    data = os.urandom(6 * MiB)
    writer = provider.open_writer("{root[work]}/down.bin", len(data))
    writer.write(data[:3 * MiB])
    _wait_for_size(root / ".down.bin.sitesync-part", 3 * MiB)
    sshd.stop()
    try:
        with pytest.raises(TransientError, match=r"cannot reach|lost"):
            writer.write(data[3 * MiB:])
            writer.commit(len(data), _sha(data))
        writer.abort(keep_partial=True)  # what the engine does on a transient error
    finally:
        sshd.start()
    writer = provider.open_writer("{root[work]}/down.bin", len(data), resume=True)
    assert writer.offset >= 2 * MiB
    writer.write(data[writer.offset:])
    writer.commit(len(data), _sha(data))
    assert (root / "down.bin").read_bytes() == data


def test_stalled_server_is_given_up_on_and_the_upload_recovers(sshd, make, root):
    provider = make(sftp_stall_timeout_s=1)
    data = os.urandom(16 * MiB)
    writer = provider.open_writer("{root[work]}/stall.bin", len(data))
    writer.write(data[:MiB])
    frozen = sshd.freeze_connections()
    try:
        started = time.monotonic()
        for start in range(MiB, len(data), 4 * MiB):
            writer.write(data[start:start + 4 * MiB])
        writer.commit(len(data), _sha(data))
        assert time.monotonic() - started < 15
    finally:
        sshd.kill(frozen)
    assert (root / "stall.bin").read_bytes() == data


def test_stalled_server_is_given_up_on_and_the_download_recovers(sshd, make, root):
    data = os.urandom(16 * MiB)
    (root / "stall-down.bin").write_bytes(data)
    sshd.chown(root / "stall-down.bin")
    provider = make(sftp_stall_timeout_s=1)
    out = bytearray()
    with provider.open_reader("{root[work]}/stall-down.bin") as reader:
        out += reader.read(MiB)
        frozen = sshd.freeze_connections()
        try:
            started = time.monotonic()
            while block := reader.read(MiB):
                out += block
            assert time.monotonic() - started < 15
        finally:
            sshd.kill(frozen)
        assert reader.changed() is None
    assert bytes(out) == data and provider.pool.connects >= 2


def test_interrupt_cuts_a_blocked_write_short(sshd, make, root):
    provider = make(sftp_stall_timeout_s=30)
    data = os.urandom(32 * MiB)
    writer = provider.open_writer("{root[work]}/paused.bin", len(data))
    writer.write(data[:MiB])
    frozen = sshd.freeze_connections()
    outcome: list[BaseException] = []

    def keep_writing() -> None:
        try:
            for start in range(MiB, len(data), 4 * MiB):
                writer.write(data[start:start + 4 * MiB])
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=keep_writing)
    try:
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()  # blocked: the server does not take more
        started = time.monotonic()
        writer.interrupt()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - started < 2
        assert isinstance(outcome[0], CancelledTransfer)
    finally:
        sshd.kill(frozen)
    writer.abort(keep_partial=True)
    assert provider.stat("{root[work]}/paused.bin") is None


@pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs CAP_SYS_ADMIN (CI runs as root)")
def test_full_disk_on_the_server_is_permanent_and_frees_the_part(sshd, make):
    small = sshd.small_disk(f"full-{uuid.uuid4().hex[:8]}", "2m")
    provider = make(root=small)
    data = os.urandom(3 * MiB)
    writer = provider.open_writer("{root[work]}/big.bin", len(data))
    with pytest.raises(PermanentError) as caught:
        for start in range(0, len(data), MiB):
            writer.write(data[start:start + MiB])
        writer.commit(len(data), _sha(data))
    assert "disk full on the SFTP server" in str(caught.value)
    assert "free space on the server" in str(caught.value)
    writer.abort(keep_partial=False)
    assert sorted(p.name for p in small.iterdir()) == []
    _put(provider, "{root[work]}/fits.bin", os.urandom(MiB))  # space is back


# -- housekeeping and source changes -------------------------------------------------------------


def test_sweep_removes_only_old_part_files_inside_the_roots(sshd, make, root):
    day = 24 * 3600
    outside = sshd.folder(f"outside-{uuid.uuid4().hex[:8]}")
    files = {
        "a/.old.exr.sitesync-part": 3 * day,
        "a/b/.older.exr.sitesync-part": 9 * day,
        "a/.young.exr.sitesync-part": 60,
        "a/old.exr": 9 * day,
    }
    for rel, age in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (time.time() - age, time.time() - age))
    (outside / ".far.exr.sitesync-part").write_bytes(b"x")
    os.utime(outside / ".far.exr.sitesync-part", (time.time() - 9 * day,) * 2)
    (root / "link").symlink_to(outside)
    sshd.chown(root)
    sshd.chown(outside)
    provider = make()
    removed = provider.sweep_partials(2 * day)
    assert sorted(removed) == [str(root / "a/.old.exr.sitesync-part"),
                               str(root / "a/b/.older.exr.sitesync-part")]
    assert (root / "a/.young.exr.sitesync-part").exists() and (root / "a/old.exr").exists()
    assert (outside / ".far.exr.sitesync-part").exists()
    assert provider.sweep_partials(2 * day) == []


def test_a_source_rewritten_while_it_is_read_is_reported(sshd, make, root):
    provider = make()
    data = os.urandom(3 * MiB)
    _put(provider, "{root[work]}/live.exr", data)
    with provider.open_reader("{root[work]}/live.exr") as reader:
        assert reader.read(MiB)
        with open(root / "live.exr", "ab") as handle:  # someone appends on the server
            handle.write(b"more")
        while reader.read(MiB):
            pass
        assert reader.changed() == "it was modified while being read"
    with provider.open_reader("{root[work]}/live.exr") as reader:
        while reader.read(MiB):
            pass
        assert reader.changed() is None


def test_move_renames_on_the_server_and_never_replaces(make, root):
    provider = make()
    _put(provider, "{root[work]}/a/shot.exr", b"mine")
    _put(provider, "{root[work]}/a/other.exr", b"theirs")
    moved = provider.move("{root[work]}/a/shot.exr", "{root[work]}/conflicts/shot.1.exr")
    assert moved.size == 4 and (root / "conflicts/shot.1.exr").read_bytes() == b"mine"
    assert provider.stat("{root[work]}/a/shot.exr") is None
    with pytest.raises(PermanentError, match="already exists"):
        provider.move("{root[work]}/a/other.exr", "{root[work]}/conflicts/shot.1.exr")
    assert (root / "a/other.exr").read_bytes() == b"theirs"
    assert (root / "conflicts/shot.1.exr").read_bytes() == b"mine"
    with pytest.raises(PermanentError, match="does not exist"):
        provider.move("{root[work]}/a/gone.exr", "{root[work]}/a/gone2.exr")


def test_a_symlinked_file_in_a_checked_folder_is_still_refused(sshd, make, root):
    outside = sshd.folder(f"secret-{uuid.uuid4().hex[:8]}")
    (outside / "passwords.txt").write_text("nope")
    provider = make()
    _put(provider, "{root[work]}/shots/a.exr", b"frame")  # the folder is now known to be inside
    assert _read(provider, "{root[work]}/shots/a.exr") == b"frame"
    (root / "shots" / "leak.exr").symlink_to(outside / "passwords.txt")
    with pytest.raises(PathEscapeError):
        provider.stat("{root[work]}/shots/leak.exr")
    with pytest.raises(PathEscapeError):
        provider.open_reader("{root[work]}/shots/leak.exr")
    (root / "shots" / "inner.exr").symlink_to(root / "shots" / "a.exr")  # inside: allowed
    assert _read(provider, "{root[work]}/shots/inner.exr") == b"frame"


def test_a_server_without_openssl_hashes_with_sha256sum(sshd, make, root):
    provider = make(sftp_port=sshd.coreutils_port)
    data = os.urandom(2 * MiB)
    _put(provider, "{root[work]}/large.bin", data)
    assert provider.verifier.last_method == "server_hash"
    assert provider.verifier.command.startswith("sha256sum")
    default = make()  # the main port offers openssl, which hashes with the CPU's SHA instructions
    assert default.check() == [] and default.verifier.command.startswith("openssl dgst")
