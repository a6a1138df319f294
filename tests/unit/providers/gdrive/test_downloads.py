"""Downloads through the real googleapiclient against the emulator: ranged requests that
survive faults one range at a time, and a file that changes while it is read."""

from __future__ import annotations

import os

import pytest

from app.errors import TransientError
from tests.gdrive_emulator import UNIT
from tests.unit.providers.gdrive.conftest import read

ROOT = "/My Drive/sitesync"
PATH = "{root[work]}/shots/sh010/plate.exr"


def test_ranged_download_survives_faults_and_refetches_only_the_broken_range(env, make):
    """5xx, 429 with Retry-After, a rate-limit 403, and a connection cut in the middle
    of an answer: each costs one range, and the bytes are Drive's."""
    drive = env.drive
    data = os.urandom(6 * UNIT + 7)  # 7 ranges of download_chunk_size (256 KiB in tests)
    drive.put_file(f"{ROOT}/shots/sh010/plate.exr", data)
    provider = make()
    media = r"alt=media"
    drive.inject(method="GET", path=media, status=503)
    drive.inject(method="GET", path=media, status=429, retry_after=0.2)
    drive.inject(method="GET", path=media, status=403, reason="userRateLimitExceeded",
                 message="User Rate Limit Exceeded. Rate of requests for user exceed configured quota.")
    drive.inject(method="GET", path=media, truncate=1000)
    assert read(provider, PATH) == data
    assert all(f.times == 0 for f in drive.faults), "every fault was hit"
    ranges = [e for e in drive.log if e.kind == "media" and e.status == 206]
    assert len(ranges) == 7 + 1, "seven ranges, one of them fetched twice after the cut"
    assert drive.download_bytes == len(data) + 1000, "only the cut range's partial bytes again"
    assert provider.account.pacer.slowdowns >= 3


def test_a_download_resumes_at_any_offset(env, make):
    data = os.urandom(3 * UNIT + 1)
    env.drive.put_file(f"{ROOT}/shots/sh010/plate.exr", data)
    provider = make()
    offset = UNIT + 12345
    assert read(provider, PATH, offset) == data[offset:]
    assert env.drive.download_bytes == len(data) - offset


@pytest.mark.parametrize("delta", [UNIT, -UNIT // 2], ids=["grew", "shrank"])
def test_a_file_whose_size_changes_while_read_is_refused(env, make, delta):
    data = os.urandom(4 * UNIT)
    item_id = env.drive.put_file(f"{ROOT}/shots/sh010/plate.exr", data)
    reader = make().open_reader(PATH)
    assert reader.read(UNIT) == data[:UNIT]
    env.drive.items[item_id].content = os.urandom(len(data) + delta)  # replaced by another tool
    with pytest.raises(TransientError, match="changed on Drive while it was read"):
        while reader.read(UNIT):
            pass
    reader.close()
