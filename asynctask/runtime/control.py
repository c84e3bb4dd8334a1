"""The state a worker's parts share: how many jobs it may take, what it holds, and whether it stops."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping

import anyio
import msgspec

from asynctask.models import Lease

__all__ = ["Control", "Slots", "WorkerStats"]


class WorkerStats(msgspec.Struct, kw_only=True):
    """Counts of what this worker did, by outcome."""

    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    released: int = 0
    lost: int = 0


class Control:
    """Stop requests, seen by every loop: :meth:`stop` cuts short every wait begun with
    :meth:`unless_stopping`."""

    def __init__(self) -> None:
        self.stopping = False
        self.immediate = False
        #: Set by stop(): when the worker should give up reporting outcomes (anyio time).
        self.give_up_at = math.inf
        self._scopes: set[anyio.CancelScope] = set()
        self._listeners: list[Callable[[], None]] = []

    def on_stop(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def stop(self, drain: float) -> None:
        if not self.stopping:
            self.stopping = True
            with contextlib.suppress(RuntimeError):  # no event loop yet: stopped before it ran
                self.give_up_at = anyio.current_time() + drain
        for scope in list(self._scopes):
            scope.cancel()
        for listener in self._listeners:
            listener()

    async def unless_stopping(self, wait: Callable[[], Awaitable[object]]) -> None:
        """Run ``wait()`` unless stopping; :meth:`stop` cuts it short."""
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                if not self.stopping:
                    await wait()
            finally:
                self._scopes.discard(scope)


class Slots:
    """How many more jobs the worker may hold, in all and per queue (prefetched ones included)."""

    def __init__(
        self, total: int, queues: Iterable[str], limits: Mapping[str, int], *, spare: int | None = None
    ) -> None:
        self.free = total
        #: How many slots waits (``wait_and_claim``) may still hold, in all: ``spare`` (the
        #: worker's prefetch), so that idle queues' waits never take the executors' slots from a
        #: busy queue; all of them when ``spare`` is None.
        self.wait_free = total if spare is None else spare
        self.queue_free: dict[str, float] = {q: limits.get(q, math.inf) for q in queues}
        self._changed = anyio.Event()
        self._settled = anyio.Event()
        #: The leases of the jobs this worker holds (claimed, running or being reported).
        self.held: dict[str, Lease] = {}

    def reserve(self, queue: str, most: int) -> int:
        n = int(min(most, self.free, self.queue_free[queue]))
        self.free -= n
        self.queue_free[queue] -= n
        return n

    def reserve_wait(self, queue: str, most: int) -> int:
        """:meth:`reserve` for a wait that claims as it wakes, out of ``wait_free``; give the
        budget back with :meth:`end_wait` (the slots themselves with :meth:`release`)."""
        n = self.reserve(queue, min(most, self.wait_free))
        self.wait_free -= n
        return n

    def end_wait(self, n: int) -> None:
        self.wait_free += n

    def release(self, queue: str, n: int = 1) -> None:
        if n:
            self.free += n
            self.queue_free[queue] += n
            self.poke()

    def poke(self) -> None:
        self._changed.set()

    def settle(self) -> None:
        """Outcomes were just written to the broker: a concurrency limit may have room again."""
        self._settled.set()
        self._settled = anyio.Event()

    async def settled(self) -> None:
        """Until the next :meth:`settle`."""
        await self._settled.wait()

    async def wait(self, queue: str) -> None:
        """Until a slot of ``queue`` is free."""
        while self.free <= 0 or self.queue_free[queue] <= 0:
            event = self._changed
            await event.wait()
            if self._changed is event:
                self._changed = anyio.Event()
