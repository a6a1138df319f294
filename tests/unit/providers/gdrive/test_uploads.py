"""Uploads through the real googleapiclient against the emulator: resumable chunks,
faults on the wire, sessions that survive a restart, verification, replacement."""

from __future__ import annotations

import os
import stat
import time

import pytest

from app.errors import TransientError
from providers.gdrive.upload import part_name
from tests.gdrive_emulator import UNIT
from tests.unit.providers.gdrive.conftest import hashes, put, read

ROOT = "/My Drive/sitesync"
PATH = "{root[work]}/shots/sh010/v001/plate.exr"
FOLDER = f"{ROOT}/shots/sh010/v001"


def _interrupted(provider, data: bytes, upto: int):
    """Write ``upto`` bytes, then stop as a pause or shutdown does (keeping the session)."""
    writer = provider.open_writer(PATH, len(data))
    writer.write(data[:upto])
    writer.abort(keep_partial=True)
    return writer


def test_a_multichunk_upload_is_sent_in_whole_256k_chunks(env, make):
    provider = make(chunk_size=2 * UNIT)
    data = os.urandom(5 * UNIT + 123)
    info = put(provider, PATH, data)
    assert env.drive.read(f"{FOLDER}/plate.exr") == data
    assert info.size == len(data) and info.hashes["md5"] == hashes(data)["md5"]
    chunks = [e for e in env.drive.log if e.kind == "upload-chunk"]
    assert [e.bytes_in for e in chunks] == [2 * UNIT, 2 * UNIT, UNIT + 123]
    assert env.drive.short_bodies == 0


def test_a_small_file_is_one_multipart_request(env, make):
    provider = make()
    data = b"tiny"
    put(provider, PATH, data)
    assert env.drive.count("multipart") == 1
    assert env.drive.count("upload-init") == 0
    assert env.drive.read(f"{FOLDER}/plate.exr") == data


def test_zero_bytes_round_trip(env, make):
    provider = make()
    info = put(provider, PATH, b"")
    assert info.size == 0
    assert read(provider, PATH) == b""
    assert env.drive.count("media") == 0  # nothing to fetch, nothing fetched


def test_restart_resumes_from_the_confirmed_byte_without_resending(env, make):
    data = os.urandom(12 * UNIT + 5)
    first = make()
    _interrupted(first, data, 8 * UNIT + 100)
    sent_before = env.drive.upload_bytes
    confirmed = 8 * UNIT  # whole chunks; the last 100 bytes wait in memory and are lost
    assert sent_before == confirmed
    first.close()

    second = make()  # a new process: a new provider, state read from the state file
    writer = second.open_writer(PATH, len(data))
    assert writer.offset == confirmed
    writer.write(data[writer.offset:])
    writer.commit(len(data), hashes(data))
    assert env.drive.read(f"{FOLDER}/plate.exr") == data
    assert env.drive.upload_bytes == len(data), "no confirmed byte was sent twice"
    assert env.drive.count("upload-status") == 1
    assert not list((second.states.path(PATH)).parent.glob("*.json")), "state file removed after commit"


def test_the_server_is_asked_how_far_it_got_not_the_state_file(env, make):
    """A crash between Drive's 308 and our state write leaves a stale offset: the status
    query corrects it."""
    data = os.urandom(10 * UNIT)
    provider = make()
    _interrupted(provider, data, 6 * UNIT + 1)
    state = provider.states.load(PATH)
    assert state is not None and state.offset == 6 * UNIT
    state.offset = UNIT  # as if the last writes of the state file were lost
    provider.states.save(state)
    writer = make().open_writer(PATH, len(data))
    assert writer.offset == 6 * UNIT
    writer.write(data[writer.offset:])
    writer.commit(len(data), hashes(data))
    assert env.drive.read(f"{FOLDER}/plate.exr") == data


@pytest.mark.parametrize("status", [404, 410])
def test_an_expired_session_starts_over_on_reopen(env, make, status):
    data = os.urandom(6 * UNIT)
    provider = make()
    _interrupted(provider, data, 4 * UNIT)
    env.drive.expire_sessions(status)
    writer = make().open_writer(PATH, len(data))
    assert writer.offset == 0
    writer.write(data)
    writer.commit(len(data), hashes(data))
    assert env.drive.read(f"{FOLDER}/plate.exr") == data


def test_a_session_expiring_mid_upload_fails_the_try_and_the_next_starts_clean(env, make):
    data = os.urandom(8 * UNIT)
    provider = make()
    writer = provider.open_writer(PATH, len(data))
    writer.write(data[: 3 * UNIT])
    env.drive.expire_sessions(404)
    with pytest.raises(TransientError, match="expired"):
        writer.write(data[3 * UNIT:])
    writer.abort(keep_partial=False)
    assert provider.states.load(PATH) is None
    again = provider.open_writer(PATH, len(data))
    assert again.offset == 0
    again.write(data)
    again.commit(len(data), hashes(data))
    assert env.drive.read(f"{FOLDER}/plate.exr") == data


def test_wire_faults_on_chunks_are_survived_with_real_bodies(env, make):
    """503, 429, a rate-limit 403, a connection dropped mid-chunk and a partial commit,
    all in one upload: it completes, and no request ever declared more bytes than it
    carried (googleapiclient's empty re-send, providers-on-loopback.md §1.5)."""
    drive = env.drive
    drive.inject(method="PUT", path="upload_id", status=503, times=2)
    drive.inject(method="PUT", path="upload_id", status=429, reason="rateLimitExceeded")
    drive.inject(method="PUT", path="upload_id", status=403, reason="userRateLimitExceeded",
                 message="User Rate Limit Exceeded. Rate of requests for user exceed configured quota.")
    drive.inject(method="PUT", path="upload_id", drop=True)
    drive.inject(method="PUT", path="upload_id", commit_bytes=100 * 1024)
    drive.inject(method="PUT", path="upload_id", drop=True, drop_after=UNIT // 2, commit_bytes=UNIT // 4)
    provider = make()
    data = os.urandom(9 * UNIT + 77)
    put(provider, PATH, data)
    assert drive.read(f"{FOLDER}/plate.exr") == data
    assert drive.short_bodies == 0
    assert all(f.times == 0 for f in drive.faults), "every fault was hit"
    assert provider.account.pacer.slowdowns >= 4  # 503 x2, 429, 403: the whole account waited


def test_faults_on_the_session_start_and_on_small_uploads(env, make):
    drive = env.drive
    drive.inject(method="POST", path="uploadType=resumable", status=500)
    drive.inject(method="POST", path="uploadType=multipart", status=502)
    provider = make()
    big = os.urandom(3 * UNIT)
    put(provider, PATH, big)
    put(provider, "{root[work]}/small.txt", b"small")
    assert drive.read(f"{FOLDER}/plate.exr") == big
    assert drive.read(f"{ROOT}/small.txt") == b"small"


def test_a_lost_answer_to_a_small_upload_leaves_no_duplicate(env, make):
    env.drive.inject(method="POST", path="uploadType=multipart", drop_response=True)
    provider = make()
    put(provider, "{root[work]}/once.txt", b"exactly once")
    assert env.drive.names(ROOT) == ["once.txt"]
    assert env.drive.count("multipart") == 1, "the retry found the file instead of uploading again"


def test_a_lost_answer_to_the_last_chunk_is_recovered_by_the_status_query(env, make):
    provider = make()
    data = os.urandom(3 * UNIT + 9)
    env.drive.inject(method="PUT", path="upload_id", drop_response=True, times=1)
    put(provider, PATH, data)
    assert env.drive.names(FOLDER) == ["plate.exr"]
    assert env.drive.read(f"{FOLDER}/plate.exr") == data


def test_replacing_keeps_the_old_file_until_the_new_one_is_verified(env, make):
    provider = make()
    old, new = os.urandom(2 * UNIT), os.urandom(3 * UNIT + 1)
    put(provider, PATH, old)
    writer = provider.open_writer(PATH, len(new), resume=False)
    writer.write(new)
    assert read(provider, PATH) == old
    writer.commit(len(new), hashes(new))
    assert read(provider, PATH) == new
    assert env.drive.names(FOLDER) == ["plate.exr"]
    assert env.drive.names(FOLDER, trashed=True) == ["plate.exr", "plate.exr"], "old version in the trash"


def test_a_mismatch_deletes_the_upload_and_keeps_the_old_version(env, make):
    provider = make()
    old, new = os.urandom(UNIT), os.urandom(2 * UNIT)
    put(provider, PATH, old)
    writer = provider.open_writer(PATH, len(new), resume=False)
    writer.write(new)
    with pytest.raises(TransientError, match=r"verification failed.*md5Checksum"):
        writer.commit(len(new), hashes(old + b"!"))
    assert read(provider, PATH) == old
    assert env.drive.names(FOLDER, trashed=True) == ["plate.exr"], "nothing else left behind"


def test_md5_alone_verifies_when_drive_reports_no_sha256(env, make):
    env.drive.report_sha256 = False
    provider = make()
    data = os.urandom(2 * UNIT)
    info = put(provider, PATH, data)
    assert set(info.hashes) == {"md5"}
    writer = provider.open_writer("{root[work]}/b.bin", len(data))
    writer.write(data)
    with pytest.raises(TransientError, match="no checksum to compare"):
        writer.commit(len(data), {"sha256": hashes(data)["sha256"]})
    assert provider.stat("{root[work]}/b.bin") is None, "an unverifiable upload is not kept"


def test_a_leftover_temporary_upload_is_removed_by_the_next_one(env, make):
    provider = make()
    env.drive.put_file(f"{FOLDER}/{part_name('plate.exr')}", b"crashed half")
    put(provider, PATH, b"whole")
    assert env.drive.names(FOLDER) == ["plate.exr"]


def test_a_crash_after_the_last_byte_verifies_on_restart_without_uploading_again(env, make):
    """The state file remembers the finished (not yet verified) upload."""
    provider = make()
    data = os.urandom(3 * UNIT)
    writer = provider.open_writer(PATH, len(data))
    writer.write(data)
    writer._send_chunk()  # what commit does first: the last bytes go out
    assert writer.offset == len(data)
    writer.abort(keep_partial=True)  # the process dies before verifying
    sent = env.drive.upload_bytes
    again = make().open_writer(PATH, len(data))
    assert again.offset == len(data)
    again.commit(len(data), hashes(data))
    assert env.drive.upload_bytes == sent
    assert env.drive.read(f"{FOLDER}/plate.exr") == data


def test_stale_keep_alive_connections_resend_real_bodies(env, make):
    """httplib2 silently re-sends a request whose keep-alive socket the server had closed
    (providers-on-loopback.md §1.5, trigger 2). googleapiclient's stream media can re-send
    such a chunk with an empty body (seen on a loaded machine; whether httplib2 re-sends
    depends on socket timing, so that control is not asserted here); SiteSync's buffer
    media must re-send the real bytes every time."""
    drive = env.drive
    provider = make()
    provider.files()  # build the client (and fetch the token) before the closes start
    drive.silent_close_every = 2
    # A real body is never short, however slowly a loaded machine sends it.
    drive.body_timeout_s = 5.0
    data = os.urandom(9 * UNIT + 5)
    put(provider, PATH, data)
    assert drive.silent_closes >= 4, "chunks went out on connections the server had closed"
    assert drive.short_bodies == 0, "every re-send carried its bytes"
    assert drive.read(f"{FOLDER}/plate.exr") == data


def test_upload_state_is_owner_only_and_holds_no_token(env, make):
    """The session URI lets its holder add bytes to the upload: the state file is 0600
    in a 0700 folder, and it never holds the access token or the key."""
    provider = make()
    _interrupted(provider, os.urandom(4 * UNIT), 3 * UNIT)
    path = provider.states.path(PATH)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert "upload_id" in text and "PRIVATE KEY" not in text
    assert not any(token in text for token in env.drive.tokens)


def test_sweep_forgets_only_this_sites_stale_upload_sessions(env, make):
    provider, other = make(), make(site="gdrive-renders")
    data = os.urandom(4 * UNIT)
    _interrupted(provider, data, 2 * UNIT)
    _interrupted(other, data, 2 * UNIT)
    assert provider.sweep_partials(3600) == [], "a fresh session is kept"
    old = time.time() - 7200
    for path in (provider.states.path(PATH), other.states.path(PATH)):
        os.utime(path, (old, old))
    assert provider.sweep_partials(3600) == [str(provider.states.path(PATH))]
    assert provider.states.load(PATH) is None
    assert other.states.load(PATH) is not None, "another site's session is not this site's to sweep"
