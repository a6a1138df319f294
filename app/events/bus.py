"""A small thread-safe publish/subscribe bus.

Subscribers are called on the publishing thread (the engine's), so they must be quick:
the Qt bridge only re-emits a queued signal. A subscriber that raises is logged and
kept; it can never break the engine.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from app.events.types import Event

__all__ = ["EventBus", "Subscriber"]

Subscriber = Callable[[Event], None]
_log = logging.getLogger(__name__)


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[tuple[type[Event], Subscriber]] = []

    def subscribe(self, callback: Subscriber, kind: type[Event] = Event) -> Callable[[], None]:
        """Call ``callback`` for every event of ``kind``; returns an unsubscribe function."""
        entry = (kind, callback)
        with self._lock:
            self._subscribers.append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._subscribers:
                    self._subscribers.remove(entry)

        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            targets = [cb for kind, cb in self._subscribers if isinstance(event, kind)]
        for callback in targets:
            try:
                callback(event)
            except Exception:
                _log.exception("event subscriber %r failed on %s", callback, type(event).__name__)
