"""The worker's thread pool for sync code (``def`` handlers, steps, hooks, ``ctx.run_sync``).

A thread cannot be killed. When a timeout, a cancel request or a shutdown interrupts sync code,
the attempt ends at once (recorded as failed, cancelled or handed back, like an async one) and
the thread is *abandoned*: it runs on until the function returns, and whatever it returns or
raises is discarded. An abandoned thread still holds its place in the pool, so a worker never has
more than ``size`` (its concurrency) threads busy with job code: runaway threads slow the worker
down instead of piling up. Sync code that wants to stop early when it is interrupted can call
:func:`anyio.from_thread.check_cancelled` between steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

__all__ = ["Threads"]

T = TypeVar("T")


class Threads:
    """Runs sync functions in anyio's worker threads, at most ``size`` at once (abandoned ones
    included). Create it inside the event loop."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = anyio.Semaphore(size)
        # anyio's own bound (40 by default, per process) would cap a larger worker: use ours.
        self._limiter = anyio.CapacityLimiter(size)

    @property
    def busy(self) -> int:
        """Threads running job code now, abandoned ones included."""
        return self.size - self._free.value

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a thread; cancelling the caller abandons the thread (see the module)."""
        await self._free.acquire()
        call = _Call(fn, args, self._free.release, asyncio.get_running_loop())
        try:
            return await anyio.to_thread.run_sync(call, abandon_on_cancel=True, limiter=self._limiter)
        finally:
            call.settle()

    def __repr__(self) -> str:
        return f"<Threads busy={self.busy}/{self.size}>"


class _Call:
    """One call, and who gives its place in the pool back: the thread when it ran the function,
    the event loop when the call was abandoned before a thread picked it up."""

    __slots__ = ("_args", "_fn", "_lock", "_loop", "_release", "_state")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        release: Callable[[], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._fn = fn
        self._args = args
        self._release = release
        self._loop = loop
        self._lock = threading.Lock()
        self._state = "pending"  # -> running -> done | abandoned

    def __call__(self) -> Any:  # in the thread
        with self._lock:
            if self._state == "abandoned":
                return None
            self._state = "running"
        try:
            return self._fn(*self._args)
        finally:
            with self._lock:
                self._state = "done"
            # A closed loop: the worker is gone, there is no place to give back.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._release)

    def settle(self) -> None:  # on the event loop, once the caller is done with the call
        with self._lock:
            if self._state != "pending":
                return  # the thread gives the place back when the function returns
            self._state = "abandoned"
        self._release()
