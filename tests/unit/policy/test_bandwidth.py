"""Bandwidth limits: rclone's syntax, weekly timetables, token buckets, throttled reads."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest

from app.engine.transfer import CancelToken
from app.model import Direction
from app.policy.bandwidth import (
    BandwidthError,
    BandwidthLimiter,
    RatePair,
    ThrottledReader,
    TokenBucket,
    format_rate,
    parse_bwlimit,
    parse_rate,
)
from providers.base import Reader

K, M = 1024, 1024 * 1024
UP, DOWN = Direction.UPLOAD, Direction.DOWNLOAD


@pytest.mark.parametrize(("text", "rate"), [
    ("10M", 10 * M), ("512k", 512 * K), ("512K", 512 * K), ("512", 512 * K), ("1.5G", 1.5 * 1024 * M),
    ("10MiB", 10 * M), ("10MB", 10 * M), ("10Mi", 10 * M), ("4M/s", 4 * M), ("2048B", 2048),
    ("off", None), ("", None), (" OFF ", None),
])
def test_rates_read_like_rclone(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize(("text", "words"), [
    ("0", "above zero"), ("-1M", "not a rate"), ("ten", "not a rate"), ("10Q", "not a rate"),
    ("100B", "below 1 KiB/s"),
])
def test_bad_rates_say_what_to_write(text, words):
    with pytest.raises(BandwidthError) as err:
        parse_rate(text)
    assert words in err.value.message and err.value.fix


def test_upload_download_pairs_and_formatting():
    assert RatePair.parse("10M:2M") == RatePair(10 * M, 2 * M)
    assert RatePair.parse("off:1M") == RatePair(None, M)
    assert RatePair.parse("4M") == RatePair(4 * M, 4 * M)
    assert format_rate(None) == "off" and format_rate(10 * M) == "10 MiB/s"
    assert format_rate(1.5 * M) == "1.5 MiB/s" and format_rate(512 * K) == "512 KiB/s"
    assert RatePair(10 * M, 2 * M).text() == "10 MiB/s up, 2 MiB/s down"


# 2024-03-04 is a Monday.
def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 3, 4 + day, hour, minute)


def test_daily_timetable_wraps_round_midnight():
    schedule = parse_bwlimit("08:00,512k 12:00,10M 13:00,512k 18:00,30M 23:00,off")
    assert schedule.is_timetable and not schedule.unlimited
    assert schedule.at(_at(2, 7, 59)) == RatePair(None, None)  # 23:00 the day before
    assert schedule.at(_at(2, 8, 0)) == RatePair(512 * K, 512 * K)
    assert schedule.at(_at(2, 12, 30)).upload == 10 * M
    assert schedule.at(_at(6, 22, 59)).upload == 30 * M
    assert schedule.at(_at(0, 0, 1)) == RatePair(None, None)  # Monday wraps to Sunday 23:00
    assert schedule.next_change(_at(2, 9, 15)) == _at(2, 12, 0)
    assert schedule.next_change(_at(6, 23, 30)) == _at(7, 8, 0)


def test_weekly_timetable_with_upload_download_values():
    schedule = parse_bwlimit("Mon-08:00,2M:8M Fri-19:00,off sunday-12:00,1M")
    assert schedule.at(_at(0, 9)) == RatePair(2 * M, 8 * M)
    assert schedule.at(_at(3, 23)) == RatePair(2 * M, 8 * M)  # Thursday: still Monday's
    assert schedule.at(_at(4, 19, 0)) == RatePair(None, None)
    assert schedule.at(_at(6, 13)) == RatePair(M, M)
    assert schedule.at(_at(0, 7)) == RatePair(M, M)  # before Mon 08:00: Sunday's, last week
    assert schedule.next_change(_at(4, 20)) == _at(6, 12)


def test_constant_limits():
    assert parse_bwlimit("10M:2M").at(_at(0, 0)) == RatePair(10 * M, 2 * M)
    assert parse_bwlimit("off").unlimited and parse_bwlimit(None).unlimited
    assert parse_bwlimit("4M").next_change(_at(0, 0)) is None


@pytest.mark.parametrize(("text", "words"), [
    ("25:00,1M", "no such time"), ("Xyz-08:00,1M", "unknown day"), ("08:00", "has no rate"),
    ("08:00,1M 09:00", "[Day-]HH:MM,RATE"), ("08:00,1M 12:00,fast", "not a rate"),
    (12, "must be text"),
])
def test_bad_timetables(text, words):
    with pytest.raises(BandwidthError) as err:
        parse_bwlimit(text)
    assert words in err.value.message and err.value.fix


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_passes_a_burst_then_paces_to_the_rate():
    clock = _Clock()
    bucket = TokenBucket(100 * K, clock=clock, burst_s=0.05)
    assert bucket.reserve(5 * K) == 0.0  # within the burst allowance
    delays = [bucket.reserve(10 * K) for _ in range(10)]
    assert delays[-1] == pytest.approx((5 * K + 100 * K) / (100 * K) - 0.05)
    assert delays == sorted(delays)  # later pieces wait longer: one shared queue


def test_bucket_rate_change_forgives_old_debt():
    clock = _Clock()
    bucket = TokenBucket(10 * K, clock=clock)
    bucket.reserve(100 * K)  # ten seconds of debt at 10 KiB/s
    bucket.set_rate(None)
    assert bucket.reserve(M) == 0.0
    bucket.set_rate(M)
    assert bucket.reserve(64 * K) < 0.1


def test_bucket_measures_what_flowed():
    clock = _Clock()
    bucket = TokenBucket(None, clock=clock)
    for _ in range(10):
        bucket.reserve(100 * K)
        clock.now += 0.1
    assert bucket.measured() == pytest.approx(1000 * K / 2.0, rel=0.01)
    bucket.refund(100 * K)
    assert bucket.total_bytes == 900 * K


def test_many_workers_share_one_rate():
    """Simulated time: 8 workers each moving pieces as fast as the bucket lets them."""
    clock = _Clock()
    bucket = TokenBucket(M, clock=clock)
    ready = [clock.now] * 8
    moved = 0  # bytes whose wait ended within the ten seconds
    while clock.now < 110.0:
        worker = min(range(8), key=ready.__getitem__)
        clock.now = max(clock.now, ready[worker])
        delay = bucket.reserve(bucket.piece_size())
        ready[worker] = clock.now + delay
        if ready[worker] <= 110.0:
            moved += bucket.piece_size()
    assert moved / 10.0 == pytest.approx(M, rel=0.02)


def test_limiter_precedence_and_timetable_switch():
    clock = _Clock()
    local = [_at(0, 7)]
    limiter = BandwidthLimiter(clock=clock, local_now=lambda: local[0])
    limiter.configure({"studio": parse_bwlimit("08:00,2M:4M 19:00,off")})
    assert limiter.bucket("studio", UP).rate is None  # before 08:00: the 19:00 entry
    local[0] = _at(0, 8, 1)
    clock.now += 1.1  # timetables are looked at once a second
    assert limiter.bucket("studio", UP).rate == 2 * M
    assert limiter.bucket("studio", DOWN).rate == 4 * M
    limiter.set_override("studio", UP, 512 * K)
    assert limiter.bucket("studio", UP).rate == 512 * K
    status = {(s.site, s.direction): s for s in limiter.status(["studio", "local"])}
    assert status[("studio", UP)].origin == "override"
    assert status[("studio", DOWN)].origin == "schedule"
    assert status[("studio", DOWN)].next_change == _at(0, 19)
    assert status[("local", UP)].origin == "none" and status[("local", UP)].limit is None
    limiter.clear_override("studio")
    assert limiter.bucket("studio", UP).rate == 2 * M
    source, target = limiter.buckets_for("local", "studio")
    assert source is limiter.bucket("local", DOWN) and target is limiter.bucket("studio", UP)


class _Zeros(Reader):
    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, size: int) -> bytes:
        n = min(size, self.left)
        self.left -= n
        return bytes(n)

    def close(self) -> None:
        pass


def _drain(reader: Reader) -> int:
    total = 0
    while chunk := reader.read(4 * M):
        total += len(chunk)
    return total


def test_throttled_reads_hold_the_rate_in_real_time():
    bucket = TokenBucket(4 * M)
    started = time.monotonic()
    assert _drain(ThrottledReader(_Zeros(2 * M), [bucket], CancelToken())) == 2 * M
    elapsed = time.monotonic() - started
    assert 0.5 * 0.9 <= elapsed <= 0.5 * 1.25
    assert bucket.total_bytes == 2 * M


def test_unlimited_reads_are_still_measured_and_a_new_limit_applies_at_once():
    clock = _Clock()
    source, target = TokenBucket(None, clock=clock), TokenBucket(None, clock=clock)
    reader = ThrottledReader(_Zeros(3 * M), [source, target], CancelToken())
    assert reader.read(2 * M) == bytes(2 * M)
    clock.now += 1.0
    assert source.total_bytes == target.total_bytes == 2 * M
    assert target.measured() == pytest.approx(2 * M / 2.0)
    target.set_rate(64 * K)  # limited from the next read on: a piece at a time
    assert len(reader.read(2 * M)) == target.piece_size() < 2 * M


def test_cancel_interrupts_a_throttled_read_at_once():
    token = CancelToken()
    reader = ThrottledReader(_Zeros(10 * M), [TokenBucket(64 * K)], token)
    reader.read(4 * M)  # the burst
    threading.Timer(0.2, token.cancel, ("pause",)).start()
    started = time.monotonic()
    while reader.read(4 * M):
        pass
    assert time.monotonic() - started < 1.0
