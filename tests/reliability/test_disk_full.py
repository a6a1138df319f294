"""A full target disk: the studio site's root is a real 4 MiB tmpfs mount.

A file larger than the free space fails at once with a message naming the site and the
fix, its temporary file is removed (the space comes back), the files already there and
the files that still fit are not affected, and after the disk grows (a remount) a reset
syncs it. Needs root for `mount` (CI runs as root).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from app.events.types import FileFailed
from app.model import Status
from app.status import site_status
from tests.integration.conftest import LOCAL_ID
from tests.reliability.helpers import STUDIO, all_synced, configure, publish, report

DISK_BYTES = 4 << 20


def _run(*cmd: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"{' '.join(cmd)} failed ({result.stderr.strip()}); this test needs root and "
        "permission to mount a tmpfs (CI runs as root)")


@pytest.fixture
def small_disk(sync_env) -> Iterator[Path]:
    """The studio root, emptied and mounted as a 4 MiB tmpfs."""
    root = sync_env.roots[STUDIO]
    shutil.rmtree(root)
    root.mkdir()
    _run("mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0755", "tmpfs", str(root))
    try:
        yield root
    finally:
        for engine in sync_env.engines:  # nothing may hold a file on it while unmounting
            engine.stop(drain=False, timeout_s=10)
        subprocess.run(["umount", "-l", str(root)], check=False)


def _free(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def _status(env, repre_id: str) -> Status:
    state = env.store.get_representation("demo", repre_id).files[0].site(STUDIO)
    return site_status(state, 3, datetime.now(timezone.utc))


def test_a_full_disk_fails_that_file_clearly_cleans_up_and_affects_nothing_else(sync_env, small_disk):
    env = sync_env
    configure(env, retry_cnt=3, workers_per_site=1)
    rng = random.Random(11)
    engine = env.engine()
    engine.start()
    before = [publish(env, LOCAL_ID, f"small{i}", [100_000] * 3, rng) for i in range(3)]
    env.wait_for(lambda: all_synced(env, before))
    free_before = _free(small_disk)

    too_big = publish(env, LOCAL_ID, "plate", [6 << 20], rng)
    env.wait_for(lambda: _status(env, too_big) is Status.FAILED)
    state = env.store.get_representation("demo", too_big).files[0].site(STUDIO)
    assert state.permanent and state.tries == 1
    assert f"disk full on site '{STUDIO}'" in state.error and "free space" in state.error, state.error
    failure = env.of_type(FileFailed)[-1]
    assert failure.permanent and failure.error == state.error
    assert env.part_files() == [] and _free(small_disk) == free_before  # the space came back

    after = [publish(env, LOCAL_ID, f"later{i}", [200_000] * 2, rng) for i in range(2)]
    env.wait_for(lambda: all_synced(env, after))
    for repre_id in before + after:  # earlier and later files are whole and right
        for f in env.store.get_representation("demo", repre_id).files:
            assert env.same_bytes(f.path, LOCAL_ID, STUDIO)
    assert len(env.of_type(FileFailed)) == 1

    _run("mount", "-o", "remount,size=16m", str(small_disk))  # the admin makes room
    assert env.store.reset_site("demo", too_big, STUDIO) == 1
    engine.sync_now()
    env.wait_for(lambda: all_synced(env, [too_big]))
    assert env.same_bytes(env.store.get_representation("demo", too_big).files[0].path,
                          LOCAL_ID, STUDIO)
    assert env.part_files() == []
    report("disk_full", store=env.store.kind, disk_bytes=DISK_BYTES)
