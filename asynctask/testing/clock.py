"""Time in tests: a clock that moves only when told to, and a bounded poll.

>>> clock = FakeClock(start=100.0)
>>> clock.advance(5)
>>> clock()
105.0
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["FakeClock", "wait_until"]


class FakeClock:
    """A clock that moves only when told to; pass it as ``App(clock=...)`` or ``MemoryBroker(clock=...)``."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def __repr__(self) -> str:
        return f"<FakeClock now={self.now:.3f}>"


async def wait_until(
    predicate: Callable[[], Awaitable[bool] | bool], *, timeout: float = 10.0, interval: float = 0.005
) -> None:
    """Poll ``predicate`` (plain or async) until it is true; :class:`TimeoutError` after ``timeout`` s."""

    async def check() -> bool:
        value = predicate()
        return await value if inspect.isawaitable(value) else value

    with anyio.fail_after(timeout):
        while not await check():  # noqa: ASYNC110 - polls broker state, which has no event
            await anyio.sleep(interval)
