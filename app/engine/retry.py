"""When to try a failed transfer again: exponential back-off with jitter.

OpenPype retried on the next loop with no back-off, so a down server was hammered and a
rate limit got worse. Here each try doubles the wait (``base * 2**(tries-1)``, capped),
with "equal jitter" (half fixed, half random) so many files failing together do not
come back together; a server's Retry-After, when given, is a floor.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

__all__ = ["next_attempt_at"]


def next_attempt_at(
    now: datetime,
    tries: int,
    base_s: float,
    max_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> datetime:
    """Earliest time for the next attempt after the ``tries``-th failure (1-based)."""
    rng = rng or random
    ceiling = min(max_s, base_s * (2 ** max(0, tries - 1)))
    delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return now + timedelta(seconds=delay)
