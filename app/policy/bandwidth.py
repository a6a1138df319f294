"""Bandwidth limits per site and direction: rclone's ``--bwlimit`` syntax, token buckets.

Why rclone's syntax: it is what studio admins already type. A site's ``bwlimit`` is

* ``"off"`` (or empty): no limit;
* one rate, ``"10M"``: both directions; ``"10M:2M"``: *upload:download*;
* a weekly timetable of ``[Day-]HH:MM,RATE`` entries separated by spaces, e.g.
  ``"08:00,2M 19:00,off"`` (every day) or ``"Mon-08:00,2M:8M Fri-19:00,off"``.

Rates are bytes per second with binary suffixes ``B K M G T P`` (``512k`` = 512 KiB/s); a
bare number is KiB/s, as in rclone. For a site, *upload* is traffic **into** the site (the
engine writes there) and *download* is traffic **out of** it (the engine reads from it),
the same meaning rclone gives them for a remote. A transfer from A to B is counted against
A's download bucket and B's upload bucket.

One :class:`TokenBucket` per site and direction is shared by every worker moving bytes
through that site, so the limit holds for the site as a whole, however many transfers run.
Workers reserve small pieces (about 50 ms of traffic each) and sleep out their debt, so a
limit changed at runtime takes effect within a fraction of a second, and a pause or
shutdown interrupts the sleep at once.
"""

from __future__ import annotations

import bisect
import collections
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from app.model import Direction
from providers.base import Provider, Reader, RemoteFile, Writer

__all__ = [
    "BandwidthLimiter",
    "BandwidthSchedule",
    "LimitStatus",
    "Rate",
    "RatePair",
    "ThrottledProvider",
    "ThrottledReader",
    "TokenBucket",
    "format_rate",
    "parse_bwlimit",
    "parse_rate",
]

#: Bytes per second; None means unlimited.
Rate = float | None

_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_RATE = re.compile(
    r"^(?P<num>\d+(?:\.\d*)?|\.\d+)(?P<unit>[bkmgtp])?(?:ib|i|b)?(?:/s)?$", re.IGNORECASE
)
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ENTRY = re.compile(
    r"^(?:(?P<day>[a-z]+)-)?(?P<hour>\d{1,2}):(?P<minute>\d{2}),(?P<rate>\S+)$", re.IGNORECASE
)
_LONE_TIME = re.compile(r"^(?:[a-z]+-)?\d{1,2}:\d{2}$", re.IGNORECASE)
_MINUTES_PER_DAY = 24 * 60
_MINUTES_PER_WEEK = 7 * _MINUTES_PER_DAY

#: Seconds of traffic a bucket lets through at once after being idle.
BURST_S = 0.1
#: Seconds of traffic one reservation covers; bounds how long a rate change takes.
PIECE_S = 0.05
MIN_PIECE = 16 * 1024
MAX_PIECE = 4 * 1024 * 1024
#: Seconds the measured rate is averaged over.
MEASURE_WINDOW_S = 2.0


class BandwidthError(ValueError):
    """A ``bwlimit`` value that cannot be read; ``fix`` says how to write it."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


_FIX = ('write "off", a rate such as "10M" or "512k" (upload:download as "10M:2M"), or a '
        'timetable such as "08:00,2M 19:00,off" or "Mon-08:00,1M Sat-00:00,off"')


def parse_rate(text: str) -> Rate:
    """``"10M"`` -> 10485760.0, ``"off"`` -> None; a bare number is KiB/s (rclone)."""
    word = text.strip()
    if word.lower() in ("off", "", "unlimited", "none"):
        return None
    match = _RATE.match(word)
    if match is None:
        raise BandwidthError(f"{text!r} is not a rate", _FIX)
    number = float(match.group("num"))
    unit = (match.group("unit") or "k").lower()
    rate = number * _UNITS[unit]
    if rate <= 0 or not math.isfinite(rate):
        raise BandwidthError(f"{text!r} is not a usable rate (it must be above zero)",
                             'use "off" for no limit; pause the site to stop transfers')
    if rate < 1024:
        raise BandwidthError(f"{text!r} is below 1 KiB/s", "use at least 1k, or pause the site")
    return rate


def format_rate(rate: Rate) -> str:
    """A rate as people read it: ``off``, ``512 KiB/s``, ``10 MiB/s``, ``1.5 GiB/s``."""
    if rate is None:
        return "off"
    for unit, size in (("GiB/s", 1 << 30), ("MiB/s", 1 << 20), ("KiB/s", 1 << 10)):
        if rate >= size:
            value = rate / size
            return f"{value:.0f} {unit}" if value >= 100 or value.is_integer() else \
                f"{value:.3g} {unit}"
    return f"{rate:.0f} B/s"


@dataclass(frozen=True)
class RatePair:
    """Limits of one site: ``upload`` = into the site, ``download`` = out of it."""

    upload: Rate = None
    download: Rate = None

    def get(self, direction: Direction) -> Rate:
        return self.upload if direction is Direction.UPLOAD else self.download

    @classmethod
    def parse(cls, text: str) -> RatePair:
        up, sep, down = text.partition(":")
        if not sep:
            rate = parse_rate(up)
            return cls(rate, rate)
        return cls(parse_rate(up), parse_rate(down))

    def text(self) -> str:
        up, down = format_rate(self.upload), format_rate(self.download)
        return up if up == down else f"{up} up, {down} down"


@dataclass(frozen=True)
class BandwidthSchedule:
    """A parsed ``bwlimit``: a constant pair, or timetable entries by minute of the week.

    ``entries`` holds (minute of week from Monday 00:00, rates), sorted; the entry in force
    is the last one at or before now, wrapping round from the end of the week, as rclone
    does. ``text`` is the value as written (for display and for saving back).
    """

    text: str
    entries: tuple[tuple[int, RatePair], ...]

    @property
    def unlimited(self) -> bool:
        return all(r.upload is None and r.download is None for _, r in self.entries)

    @property
    def is_timetable(self) -> bool:
        return len(self.entries) > 1

    def at(self, when: datetime) -> RatePair:
        """The rates in force at local time ``when``."""
        if len(self.entries) == 1:
            return self.entries[0][1]
        minute = _minute_of_week(when)
        index = bisect.bisect_right([m for m, _ in self.entries], minute) - 1
        return self.entries[index][1]  # -1 wraps to last week's final entry

    def next_change(self, when: datetime) -> datetime | None:
        """Local time of the next timetable entry after ``when`` (None if constant)."""
        if len(self.entries) == 1:
            return None
        minute = _minute_of_week(when)
        later = [m for m, _ in self.entries if m > minute]
        target = later[0] if later else self.entries[0][0] + _MINUTES_PER_WEEK
        start = when.replace(second=0, microsecond=0)
        return start + timedelta(minutes=target - minute)


def _minute_of_week(when: datetime) -> int:
    return when.weekday() * _MINUTES_PER_DAY + when.hour * 60 + when.minute


def parse_bwlimit(text: object) -> BandwidthSchedule:
    """Read a ``bwlimit`` value (see the module docstring); raises BandwidthError."""
    if text is None:
        return BandwidthSchedule("off", ((0, RatePair()),))
    if not isinstance(text, str):
        raise BandwidthError(f"must be text, not {type(text).__name__}", _FIX)
    words = text.split()
    if len(words) <= 1 and (not words or "," not in words[0]):
        try:
            pair = RatePair.parse(text)
        except BandwidthError:
            if words and _LONE_TIME.match(words[0]):  # "08:00": a time with no rate
                raise BandwidthError(f"timetable entry {words[0]!r} has no rate", _FIX) from None
            raise
        return BandwidthSchedule(text.strip() or "off", ((0, pair),))
    by_minute: dict[int, RatePair] = {}
    for word in words:
        match = _ENTRY.match(word)
        if match is None:
            raise BandwidthError(f"timetable entry {word!r} is not [Day-]HH:MM,RATE", _FIX)
        hour, minute = int(match.group("hour")), int(match.group("minute"))
        if hour > 23 or minute > 59:
            raise BandwidthError(f"timetable entry {word!r} has no such time of day",
                                 "use 24-hour times from 00:00 to 23:59")
        rates = RatePair.parse(match.group("rate"))
        day = match.group("day")
        if day is None:
            days: Iterable[int] = range(7)
        else:
            key = day.lower()
            if key in _DAYS:
                days = (_DAYS.index(key),)
            elif key in _FULL_DAYS:
                days = (_FULL_DAYS.index(key),)
            else:
                raise BandwidthError(f"timetable entry {word!r} has unknown day {day!r}",
                                     "use Mon, Tue, Wed, Thu, Fri, Sat or Sun")
        for d in days:
            by_minute[d * _MINUTES_PER_DAY + hour * 60 + minute] = rates
    return BandwidthSchedule(text.strip(), tuple(sorted(by_minute.items())))


class TokenBucket:
    """A token bucket for one site and direction, shared by every worker using it.

    Implemented as a "theoretical arrival time": each reservation of ``n`` bytes moves
    ``_tat`` forward by ``n / rate``; the caller sleeps until its bytes are paid for, less
    a small burst allowance. Over any stretch of a transfer the bytes that passed are
    ``rate * elapsed`` plus at most the burst, whatever the number of workers.
    """

    def __init__(self, rate: Rate = None, *, clock: Callable[[], float] = time.monotonic,
                 burst_s: float = BURST_S) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._rate = rate
        self._burst_s = burst_s
        self._tat = clock()
        self._flow: collections.deque[tuple[float, int]] = collections.deque()
        self.total_bytes = 0

    @property
    def rate(self) -> Rate:
        return self._rate

    def set_rate(self, rate: Rate) -> None:
        """Change the rate now; debt accumulated at the old rate is forgiven, so raising
        a limit (or lifting it) helps at once."""
        with self._lock:
            if rate == self._rate:
                return
            self._rate = rate
            self._tat = min(self._tat, self._clock())

    def piece_size(self) -> int:
        """Bytes a worker should reserve at a time: about ``PIECE_S`` of traffic."""
        rate = self._rate
        if rate is None:
            return MAX_PIECE
        return int(max(MIN_PIECE, min(MAX_PIECE, rate * PIECE_S)))

    def reserve(self, n: int) -> float:
        """Reserve ``n`` bytes; returns the seconds to wait before moving them."""
        with self._lock:
            now = self._clock()
            rate = self._rate
            if rate is None:
                delay = 0.0
            else:
                self._tat = max(self._tat, now) + n / rate
                delay = max(0.0, self._tat - now - self._burst_s)
            self._record(now + delay, n)
            return delay

    def refund(self, n: int) -> None:
        """Give back bytes reserved but not moved (end of file, cancelled)."""
        if n <= 0:
            return
        with self._lock:
            if self._rate is not None:
                self._tat -= n / self._rate
            self._record(self._clock(), -n)

    def count(self, n: int) -> None:
        """Record ``n`` bytes that moved unthrottled (for :meth:`measured`)."""
        with self._lock:
            self._record(self._clock(), n)

    def measured(self) -> float:
        """Bytes per second that flowed over the last ``MEASURE_WINDOW_S``."""
        with self._lock:
            now = self._clock()
            self._trim(now)
            return sum(n for t, n in self._flow if t <= now) / MEASURE_WINDOW_S

    def _record(self, when: float, n: int) -> None:
        self.total_bytes += n
        self._flow.append((when, n))
        self._trim(when)

    def _trim(self, now: float) -> None:
        while self._flow and self._flow[0][0] < now - MEASURE_WINDOW_S:
            self._flow.popleft()


@dataclass(frozen=True)
class LimitStatus:
    """What the tray shows for one site and direction."""

    site: str
    direction: Direction
    limit: Rate
    #: "override" (set at runtime), "schedule" (timetable), "setting" (constant) or "none".
    origin: str
    measured: float
    schedule: str = ""
    next_change: datetime | None = None


def _local_now() -> datetime:
    return datetime.now().astimezone()


class BandwidthLimiter:
    """Every site's buckets; limits from settings (``sites.<name>.bwlimit``) and runtime
    overrides (the tray's "limit now", ``Engine.set_bandwidth_limit``).

    An override wins until it is cleared; timetables are re-evaluated at most once a
    second, on use, so a limit changes within a second of its timetable slot.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 local_now: Callable[[], datetime] = _local_now) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._local_now = local_now
        self._schedules: dict[str, BandwidthSchedule] = {}
        self._overrides: dict[tuple[str, Direction], Rate] = {}
        self._buckets: dict[tuple[str, Direction], TokenBucket] = {}
        self._next_refresh = 0.0

    def configure(self, schedules: Mapping[str, BandwidthSchedule]) -> None:
        """Replace the limits from settings (site name -> schedule)."""
        with self._lock:
            self._schedules = {s: v for s, v in schedules.items() if not v.unlimited}
            self._refresh_locked(force=True)

    def set_override(self, site: str, direction: Direction, rate: Rate) -> None:
        """Limit ``site`` in ``direction`` to ``rate`` (None = unlimited) until cleared."""
        with self._lock:
            self._overrides[(site, direction)] = rate
            self._refresh_locked(force=True)

    def clear_override(self, site: str, direction: Direction | None = None) -> None:
        with self._lock:
            for d in (Direction.UPLOAD, Direction.DOWNLOAD):
                if direction in (None, d):
                    self._overrides.pop((site, d), None)
            self._refresh_locked(force=True)

    def bucket(self, site: str, direction: Direction) -> TokenBucket:
        with self._lock:
            self._refresh_locked()
            return self._bucket_locked(site, direction)

    def buckets_for(self, source_site: str, target_site: str) -> tuple[TokenBucket, TokenBucket]:
        """(source's download bucket, target's upload bucket) for one transfer."""
        with self._lock:
            self._refresh_locked()
            return (self._bucket_locked(source_site, Direction.DOWNLOAD),
                    self._bucket_locked(target_site, Direction.UPLOAD))

    def status(self, sites: Iterable[str] = ()) -> list[LimitStatus]:
        """Limits and measured rates for ``sites`` plus every site with a limit or traffic."""
        with self._lock:
            self._refresh_locked(force=True)
            names = dict.fromkeys([*sites, *self._schedules,
                                   *(s for s, _ in self._overrides), *(s for s, _ in self._buckets)])
            now = self._local_now()
            result = []
            for site in names:
                schedule = self._schedules.get(site)
                for direction in (Direction.UPLOAD, Direction.DOWNLOAD):
                    limit, origin = self._effective(site, direction, now)
                    bucket = self._buckets.get((site, direction))
                    result.append(LimitStatus(
                        site=site, direction=direction, limit=limit, origin=origin,
                        measured=bucket.measured() if bucket else 0.0,
                        schedule=schedule.text if schedule else "",
                        next_change=schedule.next_change(now) if schedule else None,
                    ))
            return result

    def _effective(self, site: str, direction: Direction, now: datetime) -> tuple[Rate, str]:
        key = (site, direction)
        if key in self._overrides:
            return self._overrides[key], "override"
        schedule = self._schedules.get(site)
        if schedule is None:
            return None, "none"
        return schedule.at(now).get(direction), "schedule" if schedule.is_timetable else "setting"

    def _bucket_locked(self, site: str, direction: Direction) -> TokenBucket:
        key = (site, direction)
        bucket = self._buckets.get(key)
        if bucket is None:
            limit, _ = self._effective(site, direction, self._local_now())
            bucket = self._buckets[key] = TokenBucket(limit, clock=self._clock)
        return bucket

    def _refresh_locked(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now < self._next_refresh:
            return
        self._next_refresh = now + 1.0
        local = self._local_now()
        for (site, direction), bucket in self._buckets.items():
            bucket.set_rate(self._effective(site, direction, local)[0])


class _Waiter(Protocol):
    """Anything with ``wait(timeout) -> bool`` (True when cancelled): the CancelToken."""

    def wait(self, timeout: float) -> bool: ...


class ThrottledReader(Reader):
    """A source stream that moves at most what ``buckets`` allow.

    Each read reserves one piece in every bucket and sleeps out the longest wait; the
    sleep ends early when ``cancel`` is set, and the read then returns b"" so the transfer
    stops at once and keeps its partial data.
    """

    def __init__(self, reader: Reader, buckets: Sequence[TokenBucket], cancel: _Waiter) -> None:
        self._reader = reader
        self._buckets = tuple(buckets)
        self._cancel = cancel
        # The storage's own checksums (Drive's md5) still reach the engine's check.
        self.hashes = getattr(reader, "hashes", {})

    def read(self, size: int) -> bytes:
        if all(bucket.rate is None for bucket in self._buckets):
            # No limit now: count what moved, without reserving and refunding a piece
            # (four lock round trips per read, most of a small frame's bookkeeping).
            data = self._reader.read(size)
            if data:
                for bucket in self._buckets:
                    bucket.count(len(data))
            return data
        piece = min([size, *(b.piece_size() for b in self._buckets)])
        delay = max([0.0, *(b.reserve(piece) for b in self._buckets)])
        if delay > 0 and self._cancel.wait(delay):
            self._refund(piece)
            return b""
        data = self._reader.read(piece)
        self._refund(piece - len(data))
        return data

    def _refund(self, n: int) -> None:
        for bucket in self._buckets:
            bucket.refund(n)

    def changed(self) -> str | None:
        """The wrapped reader's answer (a duck-typed reader without one cannot tell)."""
        changed = getattr(self._reader, "changed", None)
        return changed() if changed is not None else None

    def close(self) -> None:
        self._reader.close()


class ThrottledProvider(Provider):
    """A provider seen through bandwidth limits: its readers are throttled.

    Only reading is wrapped: a transfer's bytes are read from the source and then
    written, so throttling the read paces the write too (both buckets are charged).
    ``close`` does nothing: the wrapped provider belongs to the engine.
    """

    def __init__(self, provider: Provider, buckets: Sequence[TokenBucket], cancel: _Waiter) -> None:
        super().__init__(provider.site, provider.config)
        self.kind = provider.kind
        self.features = provider.features
        self._provider = provider
        self._buckets = tuple(buckets)
        self._cancel = cancel

    @property
    def wrapped(self) -> Provider:
        return self._provider

    def resolve(self, rootless_path: str) -> str:
        return self._provider.resolve(rootless_path)

    def stat(self, rootless_path: str) -> RemoteFile | None:
        return self._provider.stat(rootless_path)

    def open_reader(self, rootless_path: str, offset: int = 0) -> Reader:
        reader = self._provider.open_reader(rootless_path, offset)
        # Unlimited buckets still count the bytes (for the measured rates); a piece is
        # then a whole transfer chunk, so the cost is one lock per chunk.
        return ThrottledReader(reader, self._buckets, self._cancel)

    def open_writer(self, rootless_path: str, size: int, resume: bool = True) -> Writer:
        return self._provider.open_writer(rootless_path, size, resume)

    def delete(self, rootless_path: str) -> None:
        self._provider.delete(rootless_path)

    def move(self, source_path: str, target_path: str) -> RemoteFile:
        return self._provider.move(source_path, target_path)

    def check(self) -> list[str]:
        return self._provider.check()

    def close(self) -> None:
        """The wrapped provider is shared; its owner closes it."""
