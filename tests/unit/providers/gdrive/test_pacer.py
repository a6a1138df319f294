"""The account pacer: spacing, bursts, one back-off for every worker, Retry-After."""

from __future__ import annotations

import random
import threading
import time

import pytest

from providers.gdrive.pacer import Pacer


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _pacer(rate: float = 10, max_backoff: float = 64, seed: int = 1) -> tuple[Pacer, FakeTime]:
    t = FakeTime()
    return Pacer(rate, max_backoff, clock=t.clock, sleep=t.sleep, rng=random.Random(seed)), t


def test_a_burst_goes_out_at_once_then_calls_are_spaced():
    pacer, t = _pacer(rate=10)
    assert pacer.burst == 20
    waits = [pacer.wait() for _ in range(20)]
    assert max(waits) < 1e-9
    assert pacer.wait() == pytest.approx(0.1)
    assert pacer.wait() == pytest.approx(0.1)
    t.now += 10  # idle: the bucket refills
    assert pacer.wait() == 0.0


def test_a_slow_down_holds_every_caller_and_honours_retry_after():
    pacer, t = _pacer()
    held = pacer.slow_down(retry_after_s=5)
    assert held == pytest.approx(5, abs=0.01)
    assert pacer.blocked_for == pytest.approx(5, abs=0.01)
    start = t.now
    pacer.wait()
    assert t.now - start >= 5
    assert pacer.blocked_for == 0


def test_back_off_doubles_with_jitter_up_to_the_cap():
    pacer, t = _pacer(max_backoff=8)
    holds = []
    for _ in range(6):
        holds.append(pacer.slow_down())
        t.now += holds[-1]  # wait it out before the next error
    ceilings = [1, 2, 4, 8, 8, 8]
    for hold, ceiling in zip(holds, ceilings, strict=True):
        assert ceiling / 2 <= hold <= ceiling
    for _ in range(6):
        pacer.ok()
    assert pacer.slow_down() <= 1, "successes walk the level back down"


def test_retry_after_is_capped_at_a_day():
    pacer, _ = _pacer()
    assert pacer.slow_down(retry_after_s=10**9) == pytest.approx(24 * 3600, abs=1)


def test_one_slow_down_holds_back_workers_already_waiting():
    """Eight real threads: a slow-down raised while they queue delays all of them."""
    pacer = Pacer(calls_per_s=20, max_backoff_s=1)
    pacer.wait()
    started = time.monotonic()
    pacer.slow_down(retry_after_s=0.3)
    finished: list[float] = []

    def work() -> None:
        pacer.wait()
        finished.append(time.monotonic() - started)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(finished) == 8 and min(finished) >= 0.29
