"""One asyncio event loop on its own thread, called from the engine's worker threads.

asyncssh is asyncio-only and the provider interface is synchronous and shared by many
worker threads. Each provider instance owns one :class:`LoopThread`: every connection,
channel and file handle lives on that loop (so the pool needs no locks), and worker
threads hand it coroutines and wait for the result. A wait that is given up (a timeout,
an interrupt from a pause) cancels the coroutine on the loop, so nothing keeps running
for a caller that has left.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopClosedError", "LoopThread"]

T = TypeVar("T")
_log = logging.getLogger(__name__)


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Log what asyncio reports (an orphaned task's error) in one line, without a traceback.

    Formatting a traceback parses source with ``ast`` on Python 3.11, and CPython 3.11
    before 3.11.8 keeps one global recursion counter for that (gh-106905): a traceback
    formatted on this thread while another thread parses corrupts the counter and breaks
    later imports with "AST constructor recursion depth mismatch".
    """
    exc = context.get("exception")
    detail = f"{type(exc).__name__}: {exc}" if exc is not None else ""
    _log.debug("%s %s", context.get("message", "asyncio error"), detail)


class LoopClosedError(RuntimeError):
    """The provider was closed while (or before) a call was made."""


class LoopThread:
    """A lazily started event loop thread; :meth:`call` runs a coroutine on it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise LoopClosedError(f"{self._name} is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                loop.set_exception_handler(_quiet_exception_handler)

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name=self._name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    @property
    def started(self) -> bool:
        return self._loop is not None

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; the caller owns the returned future."""
        try:
            loop = self.loop
        except LoopClosedError:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Run ``coro`` on the loop and return its result.

        Raises ``TimeoutError`` after ``timeout`` seconds (the coroutine is cancelled),
        ``concurrent.futures.CancelledError`` if someone cancelled the future, or what the
        coroutine raised.
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("LoopThread.call from its own loop would deadlock")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {timeout:g} s") from None
        except BaseException:
            future.cancel()  # a KeyboardInterrupt in the caller: stop the work too
            raise

    def close(self, final: Coroutine[Any, Any, Any] | None = None, timeout: float = 5.0) -> None:
        """Run ``final`` (closing connections) with a time limit, then stop the loop and
        join its thread. Idempotent; later calls raise LoopClosedError."""
        with self._lock:
            if self._closed:
                if final is not None:
                    final.close()
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            if final is not None:
                final.close()
            return
        if final is not None:
            future = asyncio.run_coroutine_threadsafe(final, loop)
            try:
                future.result(timeout)
            except BaseException:  # closing is best effort: the process may be exiting
                future.cancel()

        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(BaseException):
            asyncio.run_coroutine_threadsafe(cancel_rest(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()
