"""One pacer per Google account: every API call of every worker thread asks it first.

Drive's limits are per user and project, not per connection, so eight workers that each
back off on their own still hammer the account (and OpenPype slept 60 s inside the
worker that happened to see the error). Here:

* calls are spaced by a token bucket (``calls_per_s``, bursts of two seconds' worth), the
  way rclone paces Drive (10 calls/s by default);
* a rate-limit or server error pushes back *every* caller of the account: the wait grows
  exponentially (1, 2, 4 ... s, capped at ``max_backoff_s``) with equal jitter, and a
  server's ``Retry-After`` is a floor;
* each success walks the back-off level down one step, so a short burst of errors does
  not leave the account slow for long.

``clock``/``sleep``/``rng`` are injectable so the arithmetic is tested without waiting.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

__all__ = ["Pacer"]


class Pacer:
    def __init__(
        self,
        calls_per_s: float,
        max_backoff_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.interval = 1.0 / calls_per_s
        self.burst = max(1, round(2 * calls_per_s))
        self.max_backoff_s = max_backoff_s
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._tat = 0.0  # theoretical arrival time of the next call (GCRA)
        self._blocked_until = 0.0
        self._level = 0
        #: Totals for tests and the benchmark.
        self.calls = 0
        self.slowdowns = 0
        self.slept_s = 0.0

    @property
    def blocked_for(self) -> float:
        """Seconds until calls may go out again after a slow-down (0 if not blocked)."""
        with self._lock:
            return max(0.0, self._blocked_until - self._clock())

    def wait(self) -> float:
        """Block until this caller may make one API call; returns the seconds waited."""
        waited = 0.0
        with self._lock:
            now = self._clock()
            tolerance = (self.burst - 1) * self.interval
            start = max(now, self._tat - tolerance)
            self._tat = max(self._tat, start) + self.interval
            self.calls += 1
        delay = start - now
        while True:
            if delay > 0:
                self._sleep(delay)
                waited += delay
            with self._lock:
                # A slow-down may have arrived while we slept: it holds us back too.
                delay = self._blocked_until - self._clock()
                if delay <= 0:
                    self.slept_s += waited
                    return waited

    def ok(self) -> None:
        """A call succeeded: relax the back-off one step."""
        with self._lock:
            if self._level:
                self._level -= 1

    def slow_down(self, retry_after_s: float | None = None) -> float:
        """A call was rate-limited or hit a server error: hold every caller back.

        Returns the hold in seconds from now.
        """
        with self._lock:
            self._level = min(self._level + 1, 30)
            ceiling = min(self.max_backoff_s, 2.0 ** (self._level - 1))
            delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
            if retry_after_s is not None:
                delay = max(delay, min(retry_after_s, 24 * 3600.0))
            now = self._clock()
            self._blocked_until = max(self._blocked_until, now + delay)
            self.slowdowns += 1
            return self._blocked_until - now
