"""How many transfers run at once per site and direction, adjustable while running.

A transfer from site A to site B holds one *download* slot of A (bytes out of A) and one
*upload* slot of B (bytes into B), the same directions as bandwidth limits. Limits come
from ``sites.<name>.transfers`` (a number for both directions, or
``{"upload": n, "download": n}``), else ``engine.workers_per_site``; the tray or the CLI
can change them at runtime.

The engine claims work ahead of its workers (so a freed worker starts the next file at
once); :class:`SlotTable` is what makes only ``limit`` of them *run*. Lowering a limit lets
running transfers finish and holds new ones; raising it releases waiting ones at once.
Grants are first come, first served among the transfers whose slots are all free, so a
transfer waiting on a busy site never blocks one that could run elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from app.model import Direction

__all__ = ["MAX_TRANSFERS", "SlotKey", "SlotTable", "TransferLimits", "parse_transfers"]

MAX_TRANSFERS = 256

SlotKey = tuple[str, Direction]


class TransfersError(ValueError):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


_FIX = 'write a number such as 4, "2:8" (upload:download) or {"upload": 2, "download": 8}'


@dataclass(frozen=True)
class TransferLimits:
    """Running transfers allowed into (``upload``) and out of (``download``) one site;
    None = the engine default (``engine.workers_per_site``)."""

    upload: int | None = None
    download: int | None = None

    def get(self, direction: Direction) -> int | None:
        return self.upload if direction is Direction.UPLOAD else self.download

    def text(self) -> str:
        up = "default" if self.upload is None else str(self.upload)
        down = "default" if self.download is None else str(self.download)
        return up if up == down else f"{up} up, {down} down"


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TransfersError(f"{what} {value!r} is not a whole number", _FIX)
    try:
        number = int(value)
    except ValueError:
        raise TransfersError(f"{what} {value!r} is not a whole number", _FIX) from None
    if not 1 <= number <= MAX_TRANSFERS:
        raise TransfersError(f"{what} {number} is out of range",
                             f"use 1 to {MAX_TRANSFERS} (pause the site to stop transfers)")
    return number


def parse_transfers(value: object) -> TransferLimits:
    """``4`` -> both 4; ``"2:8"`` or ``{"upload": 2, "download": 8}`` -> per direction."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"upload", "download"})
        if unknown:
            raise TransfersError(f"unknown key {unknown[0]!r}", 'use "upload" and "download"')
        up = value.get("upload")
        down = value.get("download")
        return TransferLimits(None if up is None else _count(up, "upload"),
                              None if down is None else _count(down, "download"))
    if isinstance(value, str) and ":" in value:
        up, _, down = value.partition(":")
        return TransferLimits(_count(up.strip(), "upload"), _count(down.strip(), "download"))
    number = _count(value, "transfers")
    return TransferLimits(number, number)


class _Cancel(Protocol):
    @property
    def cancelled(self) -> bool: ...


class _Ticket:
    """One waiting transfer. ``gate`` is held until the ticket is granted: the granter
    releases it, waking this waiter and no other (a shared condition woke every waiting
    transfer for every freed slot, a storm of thread switches per small file)."""

    __slots__ = ("gate", "granted", "keys")

    def __init__(self, keys: tuple[SlotKey, ...]) -> None:
        self.keys = keys
        self.granted = False
        self.gate = threading.Lock()
        self.gate.acquire()


class SlotTable:
    """Running-transfer slots per (site, direction), limits changeable at any time."""

    #: How often a waiting transfer looks at its cancel token.
    POLL_S = 0.1

    def __init__(self, default_limit: int = 8) -> None:
        self._lock = threading.Lock()
        self._default = default_limit
        self._configured: dict[str, TransferLimits] = {}
        self._overrides: dict[SlotKey, int] = {}
        self._running: dict[SlotKey, int] = {}
        self._waiting: list[_Ticket] = []

    # -- limits -----------------------------------------------------------------------------

    def configure(self, limits: Mapping[str, TransferLimits], default_limit: int) -> None:
        """Limits from settings (site -> limits) and the engine default."""
        with self._lock:
            self._configured = dict(limits)
            self._default = max(1, default_limit)
            self._grant_locked()

    def set_override(self, site: str, direction: Direction, limit: int | None) -> None:
        """Runtime limit for one site and direction; None goes back to the settings."""
        with self._lock:
            if limit is None:
                self._overrides.pop((site, direction), None)
            else:
                self._overrides[(site, direction)] = max(1, min(MAX_TRANSFERS, int(limit)))
            self._grant_locked()

    def limit(self, site: str, direction: Direction) -> int:
        with self._lock:
            return self._limit_locked((site, direction))

    def running(self, site: str, direction: Direction) -> int:
        with self._lock:
            return self._running.get((site, direction), 0)

    def origin(self, site: str, direction: Direction) -> str:
        """"override", "setting" or "default": where the limit comes from."""
        with self._lock:
            if (site, direction) in self._overrides:
                return "override"
            configured = self._configured.get(site)
            if configured is not None and configured.get(direction) is not None:
                return "setting"
            return "default"

    def _limit_locked(self, key: SlotKey) -> int:
        if key in self._overrides:
            return self._overrides[key]
        configured = self._configured.get(key[0])
        value = configured.get(key[1]) if configured is not None else None
        return self._default if value is None else value

    # -- slots ------------------------------------------------------------------------------

    def acquire(self, keys: Iterable[SlotKey], cancel: _Cancel) -> bool:
        """Wait for a slot on every key; False (holding nothing) if cancelled meanwhile."""
        ticket = _Ticket(tuple(dict.fromkeys(keys)))
        with self._lock:
            self._waiting.append(ticket)
            self._grant_locked()
            if ticket.granted:
                return True
        while not ticket.gate.acquire(timeout=self.POLL_S):
            if cancel.cancelled:
                with self._lock:
                    if ticket.granted:
                        return True  # granted meanwhile: it holds the slots now
                    self._waiting.remove(ticket)
                    return False
        return True

    def release(self, keys: Iterable[SlotKey]) -> None:
        with self._lock:
            for key in dict.fromkeys(keys):
                left = self._running.get(key, 0) - 1
                if left > 0:
                    self._running[key] = left
                else:
                    self._running.pop(key, None)
            self._grant_locked()

    def _grant_locked(self) -> None:
        """Grant waiting tickets in arrival order, skipping those whose slots are full."""
        if not self._waiting:
            return
        still_waiting = []
        for ticket in self._waiting:
            if all(self._running.get(k, 0) < self._limit_locked(k) for k in ticket.keys):
                for key in ticket.keys:
                    self._running[key] = self._running.get(key, 0) + 1
                ticket.granted = True
                ticket.gate.release()
            else:
                still_waiting.append(ticket)
        self._waiting = still_waiting


def slot_keys(source_site: str, target_site: str) -> tuple[SlotKey, SlotKey]:
    """The slots one transfer holds: into the target, out of the source."""
    return ((target_site, Direction.UPLOAD), (source_site, Direction.DOWNLOAD))


def pair_sites(active: str, remote: str, direction: Direction) -> tuple[str, str]:
    """(source, target) of a pair's transfers in ``direction`` (seen from the active site)."""
    return (active, remote) if direction is Direction.UPLOAD else (remote, active)


def claim_windows(
    active: str, remote: str, busy: Mapping[SlotKey, int], slots: SlotTable
) -> dict[Direction, int]:
    """How many more files of a pair to claim, per direction.

    A direction is refilled once its claimed-ahead queue has drained to at most the
    running limit on both of its slots (batching the database work), up to twice the
    limit: ``limit`` running plus ``limit`` waiting, so a freed slot starts the next file
    at once. ``busy`` counts this engine's claimed transfers per slot key.
    """
    windows: dict[Direction, int] = {}
    for direction in (Direction.UPLOAD, Direction.DOWNLOAD):
        source, target = pair_sites(active, remote, direction)
        free = None
        for key in slot_keys(source, target):
            limit = slots.limit(*key)
            held = busy.get(key, 0)
            if held > limit:
                free = 0
                break
            free = 2 * limit - held if free is None else min(free, 2 * limit - held)
        if free:
            windows[direction] = free
    return windows
