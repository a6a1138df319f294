"""Paths on Drive: roots in My Drive and shared drives, quoting, the folder cache,
folder creation under races, API calls per file, one client per thread."""

from __future__ import annotations

import os
import threading

import pytest

from app.errors import PermanentError, TransientError
from providers.gdrive.folders import q_string
from tests.gdrive_emulator import FOLDER, UNIT
from tests.unit.providers.gdrive.conftest import put, read

ROOT = "/My Drive/sitesync"


def test_q_string_escapes_backslash_and_quote():
    assert q_string("it's") == r"'it\'s'"
    assert q_string("a\\b") == r"'a\\b'"
    assert q_string("\\'") == r"'\\\''"


@pytest.mark.parametrize("name", ["it's.exr", "'quoted'.exr", "or name = 'x'.exr", "and (not) trashed.exr",
                                  "ünï 'cödé'.exr", "a\"b.exr"])
def test_names_that_need_quoting_round_trip(env, make, name):
    """Rootless paths cannot hold backslashes, but roots can: both are quoted in q."""
    root = "/My Drive/it's a \\root"
    env.drive.mkdir(root)
    provider = make(root)
    folder = "{root[work]}/it's (a) 'folder'"
    put(provider, f"{folder}/{name}", name.encode())
    assert read(provider, f"{folder}/{name}") == name.encode()
    assert provider.stat(f"{folder}/{name}") is not None
    assert provider.stat(f"{folder}/other.exr") is None
    assert env.drive.names(f"{root}/it's (a) 'folder'") == [name]


def test_shared_drive_roots_and_multiple_roots(env, make):
    provider = make({"work": "/Studio Team/projects", "textures": "/My Drive/sitesync"})
    put(provider, "{root[work]}/a/x.exr", b"shared")
    put(provider, "{root[textures]}/a/y.tx", b"mine")
    assert env.drive.read("/Studio Team/projects/a/x.exr") == b"shared"
    assert env.drive.read("/My Drive/sitesync/a/y.tx") == b"mine"
    assert provider.resolve("{root[work]}/a/x.exr") == "/Studio Team/projects/a/x.exr"
    item = env.drive.find("/Studio Team/projects/a/x.exr")[0]
    assert item.drive_id is not None, "created inside the shared drive"


def test_missing_root_folder_names_the_share_fix(env, make):
    provider = make("/My Drive/not-there")
    with pytest.raises(PermanentError) as caught:
        provider.stat("{root[work]}/x.exr")
    text = str(caught.value)
    assert "/My Drive/not-there does not exist or is not shared" in text
    assert env.key.client_email in text and "sites.gdrive.root.work" in text
    assert env.drive.find("/My Drive/not-there") == [], "a root is never created"


def test_a_shared_drive_the_account_is_not_in(env, make):
    env.drive.add_shared_drive("Other Team", member=None)
    provider = make("/Other Team/x")
    with pytest.raises(PermanentError, match="add that e-mail as a member"):
        provider.open_writer("{root[work]}/x.exr", 3)


def test_two_shared_drives_with_one_name_are_refused(env, make):
    env.drive.add_shared_drive("Studio Team")
    with pytest.raises(PermanentError, match="2 shared drives are named 'Studio Team'"):
        make("/Studio Team/projects").stat("{root[work]}/x.exr")


def test_folders_are_resolved_once_and_cached(env, make):
    provider = make()
    put(provider, "{root[work]}/a/b/c/1.exr", b"1")
    env.drive.reset_log()
    for i in range(2, 6):
        put(provider, f"{{root[work]}}/a/b/c/{i}.exr", b"x")
    kinds = [e.kind for e in env.drive.log]
    assert kinds == ["multipart"] * 4, "no folder lookups and, in a folder we made, no file lookups"


def test_calls_per_file_in_an_existing_folder(env, make):
    env.drive.mkdir(f"{ROOT}/existing")
    provider = make()
    put(provider, "{root[work]}/existing/1.exr", b"1")
    env.drive.reset_log()
    put(provider, "{root[work]}/existing/2.exr", b"2")
    assert [e.kind for e in env.drive.log] == ["list", "multipart"]
    env.drive.reset_log()
    assert read(provider, "{root[work]}/existing/2.exr") == b"2"
    assert [e.kind for e in env.drive.log] == ["list", "media"]


def test_one_client_and_one_token_per_thread_reused_for_every_file(env, make):
    provider = make()
    account = provider.account
    before = account.clients_built

    def work(index: int) -> None:
        for i in range(5):
            put(provider, f"{{root[work]}}/t{index}/{i}.exr", os.urandom(100))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert account.clients_built - before <= 4, "one client per thread, not per file"
    assert env.drive.token_grants == 1, "one token for the account"


def test_racing_workers_create_a_folder_once(env, make):
    provider = make()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait()
            put(provider, f"{{root[work]}}/race/v001/{index}.exr", b"%d" % index)
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(env.drive.find(f"{ROOT}/race")) == 1
    assert len(env.drive.find(f"{ROOT}/race/v001")) == 1
    assert env.drive.names(f"{ROOT}/race/v001") == sorted(f"{i}.exr" for i in range(8))


def test_two_engines_racing_keep_the_oldest_folder(env, make):
    """Two processes (separate caches: same emulator under two host names) create one
    folder at the same moment: both end up using the oldest, the other is removed."""
    env.drive.inject(method="POST", path=r"^/drive/v3/files\?", delay=0.3, times=2)
    first = make()
    second = make(api_url=env.drive.url.replace("127.0.0.1", "localhost"))
    assert first.account is not second.account
    barrier = threading.Barrier(2)

    def work(provider, name: str) -> None:
        barrier.wait()
        put(provider, f"{{root[work]}}/shared/{name}", name.encode())

    threads = [threading.Thread(target=work, args=(p, n)) for p, n in ((first, "a.exr"), (second, "b.exr"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert env.drive.count("create") == 2, "both created one"
    assert len(env.drive.find(f"{ROOT}/shared")) == 1, "the younger one was removed"
    assert env.drive.names(f"{ROOT}/shared") == ["a.exr", "b.exr"]


def test_a_lost_answer_to_a_folder_create_leaves_one_folder(env, make):
    env.drive.inject(method="POST", path=r"^/drive/v3/files\?", drop_response=True)
    provider = make()
    put(provider, "{root[work]}/lost/x.exr", b"x")
    assert len(env.drive.find(f"{ROOT}/lost")) == 1
    assert env.drive.read(f"{ROOT}/lost/x.exr") == b"x"


def test_a_folder_deleted_behind_our_back_is_found_again(env, make):
    provider = make()
    put(provider, "{root[work]}/gone/v1/x.exr", b"old")
    with env.drive.lock:  # someone deletes the folder in the Drive web UI ...
        env.drive._delete(env.drive.find(f"{ROOT}/gone")[0])
    env.drive.put_file(f"{ROOT}/gone/v1/x.exr", b"new")  # ... and puts it back anew
    assert read(provider, "{root[work]}/gone/v1/x.exr") == b"new"
    put(provider, "{root[work]}/gone/v1/y.exr", b"y")
    assert env.drive.names(f"{ROOT}/gone/v1") == ["x.exr", "y.exr"]


def test_upload_into_a_folder_trashed_behind_our_back(env, make):
    provider = make()
    put(provider, "{root[work]}/trashed/a.exr", b"a")
    with env.drive.lock:
        env.drive._delete(env.drive.find(f"{ROOT}/trashed")[0])
    # The cached parent is gone: the try fails transiently, the next one re-creates it.
    with pytest.raises(Exception) as caught:
        put(provider, "{root[work]}/trashed/b.exr", b"b")
    assert "not found" in str(caught.value)
    put(provider, "{root[work]}/trashed/b.exr", b"b")
    assert env.drive.names(f"{ROOT}/trashed") == ["b.exr"]


def test_duplicate_names_resolve_to_the_newest_file(env, make):
    env.drive.put_file(f"{ROOT}/dup/x.exr", b"older")
    env.drive.put_file(f"{ROOT}/dup/x.exr", b"newer")
    assert read(make(), "{root[work]}/dup/x.exr") == b"newer"


def test_folders_with_the_file_name_are_not_files(env, make):
    env.drive.mkdir(f"{ROOT}/f/x.exr")
    provider = make()
    assert provider.stat("{root[work]}/f/x.exr") is None
    assert [i.mime_type for i in env.drive.find(f"{ROOT}/f/x.exr")] == [FOLDER]


def test_delete_trashes_the_file_and_removes_leftovers(env, make):
    provider = make()
    put(provider, "{root[work]}/d/x.exr", b"x")
    env.drive.put_file(f"{ROOT}/d/.x.exr.sitesync-part", b"leftover")
    provider.delete("{root[work]}/d/x.exr")
    provider.delete("{root[work]}/d/x.exr")
    provider.delete("{root[work]}/nowhere/x.exr")
    assert env.drive.names(f"{ROOT}/d") == []
    assert env.drive.names(f"{ROOT}/d", trashed=True) == ["x.exr"], "recoverable from the trash"


def test_part_names_are_reserved(make):
    with pytest.raises(PermanentError, match="reserved"):
        make().stat("{root[work]}/a/.x.exr.sitesync-part")


def test_a_folder_shared_from_a_users_my_drive_is_a_my_drive_root(env, make):
    """OpenPype's way: share a folder with the service account's e-mail, set the root to
    /My Drive/<folder>."""
    env.drive.share("/Artist Drive/show", env.key.client_email)
    provider = make("/My Drive/show")
    assert provider.check() == []
    put(provider, "{root[work]}/sh010/v001/x.exr", b"shared")
    assert env.drive.read("/Artist Drive/show/sh010/v001/x.exr") == b"shared"
    assert read(provider, "{root[work]}/sh010/v001/x.exr") == b"shared"


def test_a_folder_shared_read_only_is_reported_by_check(env, make):
    env.drive.share("/Artist Drive/viewonly", env.key.client_email, readonly=True)
    env.drive.mkdir("/Artist Drive/private")  # not shared: invisible
    provider = make({"work": "/My Drive/viewonly", "other": "/My Drive/private"})
    problems = provider.check()
    assert len(problems) == 2
    assert "is read-only for the service account" in problems[1]
    assert "/My Drive/private does not exist or is not shared" in problems[0]


def test_two_shared_folders_with_one_name_are_refused(env, make):
    env.drive.share("/Artist Drive/a/show", env.key.client_email)
    env.drive.share("/Artist Drive/b/show", env.key.client_email)
    with pytest.raises(PermanentError, match="2 folders named 'show' are shared"):
        make("/My Drive/show").stat("{root[work]}/x.exr")


def test_a_root_folder_deleted_and_made_again_is_found_again(env, make):
    provider = make()
    put(provider, "{root[work]}/a.exr", b"a")
    with env.drive.lock:
        env.drive._delete(env.drive.find(ROOT)[0])
    env.drive.put_file(f"{ROOT}/a.exr", b"again")  # a new root folder with a new id
    assert read(provider, "{root[work]}/a.exr") == b"again"
    put(provider, "{root[work]}/b.exr", b"b")
    assert env.drive.names(ROOT) == ["a.exr", "b.exr"]


def test_move_renames_on_drive_without_moving_bytes(env, make):
    provider = make()
    put(provider, "{root[work]}/stage/.x.exr.sitesync-staged", b"staged bytes")
    env.drive.reset_log()
    info = provider.move("{root[work]}/stage/.x.exr.sitesync-staged", "{root[work]}/final/x.exr")
    assert info.size == len(b"staged bytes")
    assert env.drive.read(f"{ROOT}/final/x.exr") == b"staged bytes"
    assert env.drive.names(f"{ROOT}/stage") == []
    assert env.drive.upload_bytes == 0 and env.drive.download_bytes == 0


def test_a_resumable_upload_into_a_folder_deleted_behind_our_back(env, make):
    """A 404 on starting an upload session is a missing folder, not an expired session:
    the cached folder ids are dropped and the next try re-creates the folder."""
    provider = make()
    put(provider, "{root[work]}/trashed/a.exr", b"a")
    with env.drive.lock:
        env.drive._delete(env.drive.find(f"{ROOT}/trashed")[0])
    data = os.urandom(3 * UNIT)
    with pytest.raises(TransientError) as caught:
        put(provider, "{root[work]}/trashed/b.exr", data)
    assert "not found" in str(caught.value) and "session" not in str(caught.value)
    put(provider, "{root[work]}/trashed/b.exr", data)
    assert env.drive.read(f"{ROOT}/trashed/b.exr") == data
