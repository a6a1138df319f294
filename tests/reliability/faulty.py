"""A fault-injecting provider: a real provider (local_drive) behind a wrapper that, at a
steady random rate, fails calls, times out, stalls and drops the connection mid-stream.

It stands in for a network site in the engine (through ``Engine(provider_factory=...)``,
the same seam the registry fills): the bytes still go to and come from real folders, so
whatever the engine records can be checked against the files. Every injected fault is
counted, so a test can assert the engine saw each one exactly once.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.errors import TransientError
from providers.base import Provider, Reader, RemoteFile, Writer
from providers.registry import create_provider

__all__ = ["FaultPlan", "FaultyProvider", "faulty_factory"]

#: What a fault looks like to the engine: the texts real providers produce for them.
_TEXTS = {
    "refused": "injected: connection refused by {site}",
    "timeout": "injected: read timed out on {site}",
    "drop": "injected: connection reset by peer on {site}",
    "commit_lost": "injected: connection lost after {site} stored the file",
}


@dataclass
class FaultPlan:
    """Per-call fault probabilities; ``counts`` says what was injected.

    ``open_error``: opening a reader or writer fails. Per ``read``/``write`` call:
    ``stall`` (pause ``stall_s`` then carry on), ``timeout`` (pause ``timeout_s`` then
    fail), ``drop`` (fail at once, mid-stream). ``commit_lost``: the commit reaches the
    real provider, which stores the file, but the answer is lost (the engine must treat it
    as a failure, and the next attempt must be harmless).
    """

    open_error: float = 0.0
    stall: float = 0.0
    timeout: float = 0.0
    drop: float = 0.0
    commit_lost: float = 0.0
    stall_s: float = 0.3
    timeout_s: float = 0.1
    seed: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def roll(self, kind: str) -> bool:
        rate = getattr(self, kind)
        with self._lock:
            hit = rate > 0 and self._rng.random() < rate
            if hit:
                self.counts[kind] += 1
            return hit

    @property
    def raised(self) -> int:
        """Faults that end a transfer (all but stalls)."""
        with self._lock:
            return sum(n for kind, n in self.counts.items() if kind != "stall")

    def fail(self, kind: str, site: str) -> TransientError:
        return TransientError(_TEXTS[kind].format(site=site))

    def on_call(self, site: str) -> None:
        """The per-call faults of a read or a write."""
        if self.roll("stall"):
            time.sleep(self.stall_s)
        if self.roll("timeout"):
            time.sleep(self.timeout_s)
            raise self.fail("timeout", site)
        if self.roll("drop"):
            raise self.fail("drop", site)


class _FaultyReader(Reader):
    def __init__(self, inner: Reader, plan: FaultPlan, site: str) -> None:
        self._inner, self._plan, self._site = inner, plan, site

    def read(self, size: int) -> bytes:
        self._plan.on_call(self._site)
        return self._inner.read(size)

    def changed(self) -> str | None:
        return self._inner.changed()

    def close(self) -> None:
        self._inner.close()


class _FaultyWriter(Writer):
    def __init__(self, inner: Writer, plan: FaultPlan, site: str) -> None:
        self._inner, self._plan, self._site = inner, plan, site
        self.offset = inner.offset

    def write(self, data: bytes) -> None:
        self._plan.on_call(self._site)
        self._inner.write(data)

    def commit(self, expected_size: int, expected_hashes: Mapping[str, str]) -> RemoteFile:
        stored = self._inner.commit(expected_size, expected_hashes)
        if self._plan.roll("commit_lost"):
            raise self._plan.fail("commit_lost", self._site)
        return stored

    def abort(self, keep_partial: bool) -> None:
        self._inner.abort(keep_partial)


class FaultyProvider(Provider):
    """``inner`` with faults from ``plan``; everything else is delegated unchanged."""

    def __init__(self, inner: Provider, plan: FaultPlan) -> None:
        super().__init__(inner.site, inner.config)
        self.kind = f"faulty_{inner.kind}"
        self.features = inner.features
        self.inner = inner
        self.plan = plan

    def resolve(self, rootless_path: str) -> str:
        return self.inner.resolve(rootless_path)

    def stat(self, rootless_path: str) -> RemoteFile | None:
        return self.inner.stat(rootless_path)

    def open_reader(self, rootless_path: str, offset: int = 0) -> Reader:
        if self.plan.roll("open_error"):
            raise self.plan.fail("refused", self.site)
        return _FaultyReader(self.inner.open_reader(rootless_path, offset), self.plan, self.site)

    def open_writer(self, rootless_path: str, size: int, resume: bool = True) -> Writer:
        if self.plan.roll("open_error"):
            raise self.plan.fail("refused", self.site)
        writer = self.inner.open_writer(rootless_path, size, resume)
        return _FaultyWriter(writer, self.plan, self.site)

    def delete(self, rootless_path: str) -> None:
        self.inner.delete(rootless_path)

    def sweep_partials(self, max_age_s: float) -> list[str]:
        return self.inner.sweep_partials(max_age_s)

    def check(self) -> list[str]:
        return self.inner.check()

    def close(self) -> None:
        self.inner.close()


def faulty_factory(plans: Mapping[str, FaultPlan]) -> Callable[[str, str, Any], Provider]:
    """An engine provider factory: sites named in ``plans`` get faults, others are real."""

    def factory(kind: str, site: str, config: Any) -> Provider:
        provider = create_provider(kind, site, config)
        plan = plans.get(site)
        return FaultyProvider(provider, plan) if plan is not None else provider

    return factory
