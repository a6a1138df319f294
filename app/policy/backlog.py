"""Work found ahead: one database query serves many claim rounds when a lot is waiting.

Finding work costs a pass over every waiting file of the pair (the store must order them
by priority): a few milliseconds for a hundred files, about half a second for 100,000
frames of one sequence. The engine claims a window of files at a time (twice its transfer
slots), so asking the store for each window would spend more time looking than moving
once a large representation is queued.

So the engine asks for up to :data:`FETCH` files at once, claims its window and keeps the
rest here. The next rounds take from this list; claiming re-checks every condition in the
database (atomically), so a file that was paused, taken by another engine or finished
meanwhile is simply not claimed. The list expires after a while proportional to what the
query cost (twenty times it, between one and thirty seconds), which is the longest a
newly published file of higher priority waits behind what was found before it; a user
action in this engine drops it at once.

A direction that was just found empty is remembered as such for as long, so a pair with a
huge backlog of uploads does not look for downloads at every round.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Collection, Hashable, Iterable
from dataclasses import dataclass, field

from app.model import Direction, WorkItem

__all__ = ["FETCH", "WorkBacklog", "keep_for"]

#: Files asked for per query when more may be waiting.
FETCH = 2048
MIN_KEEP_S = 1.0
MAX_KEEP_S = 30.0
KEEP_PER_QUERY_S = 20.0


def keep_for(query_s: float) -> float:
    """Seconds to keep what a query that took ``query_s`` found."""
    return min(MAX_KEEP_S, max(MIN_KEEP_S, KEEP_PER_QUERY_S * query_s))


@dataclass
class _Entry:
    #: Per direction, in the order found: a round takes from the front of the
    #: directions it has room for without walking the others (up to FETCH items are kept,
    #: and the engine takes a few at a time, every time a slot frees).
    queues: dict[Direction, deque[WorkItem]]
    expires: float = field(default=0.0)

    def __len__(self) -> int:
        return sum(len(queue) for queue in self.queues.values())


def _by_direction(items: Iterable[WorkItem]) -> dict[Direction, deque[WorkItem]]:
    queues: dict[Direction, deque[WorkItem]] = {}
    for item in items:
        queues.setdefault(item.direction, deque()).append(item)
    return queues


class WorkBacklog:
    """Work items found ahead, per site pair; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self._dry: dict[tuple[Hashable, Direction], float] = {}

    def take(self, pair: Hashable, windows: dict[Direction, int],
             exclude: Collection[tuple[str, str]]) -> list[WorkItem]:
        """Up to ``windows[d]`` kept items per direction, each direction in the order
        found, most urgent first overall; [] when nothing usable is kept (expired, or
        only other directions)."""
        with self._lock:
            entry = self._entries.get(pair)
            if entry is None:
                return []
            if time.monotonic() >= entry.expires:
                del self._entries[pair]
                return []
            taken: list[WorkItem] = []
            for direction, want in windows.items():
                queue = entry.queues.get(direction)
                while queue and want > 0:
                    item = queue.popleft()
                    if (item.repre_id, item.file_id) in exclude:
                        continue  # already in hand
                    taken.append(item)
                    want -= 1
            if not len(entry):
                del self._entries[pair]
        taken.sort(key=lambda i: -i.priority)  # stable: keeps each direction's order
        return taken

    def keep(self, pair: Hashable, items: list[WorkItem], query_s: float,
             replace: bool = True) -> None:
        """Keep ``items`` (what the query found beyond the windows) for later rounds.
        ``replace``: the query looked at both directions, so what was kept before is
        superseded; otherwise (one direction) the items join what is kept."""
        with self._lock:
            entry = self._entries.get(pair)
            if not replace and entry is not None:
                known = {(i.repre_id, i.file_id) for q in entry.queues.values() for i in q}
                for item in items:
                    if (item.repre_id, item.file_id) not in known:
                        entry.queues.setdefault(item.direction, deque()).append(item)
                return
            if not items:
                self._entries.pop(pair, None)
                return
            self._entries[pair] = _Entry(_by_direction(items), time.monotonic() + keep_for(query_s))

    def mark_dry(self, pair: Hashable, direction: Direction, query_s: float) -> None:
        """Nothing was found in ``direction``: do not ask again for a while."""
        with self._lock:
            self._dry[(pair, direction)] = time.monotonic() + keep_for(query_s)

    def is_dry(self, pair: Hashable, direction: Direction) -> bool:
        with self._lock:
            until = self._dry.get((pair, direction))
            if until is None:
                return False
            if time.monotonic() >= until:
                del self._dry[(pair, direction)]
                return False
            return True

    def clear(self) -> None:
        """Forget everything (a user action may have changed what is most urgent)."""
        with self._lock:
            self._entries.clear()
            self._dry.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(e) for e in self._entries.values())
