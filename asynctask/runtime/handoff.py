"""A hand-off between the worker's tasks: claimed jobs to executors, outcomes to the completer.

It does what an anyio memory object stream does for the worker, for a fraction of the cost per
item (issue #18: the stream's per-item checkpoints, events and bookkeeping were a measurable part
of a no-op job): putting is synchronous, a waiting getter is woken through one asyncio future,
and getting from a non-empty hand-off does not yield. It is unbounded: the worker's
:class:`~asynctask.runtime.control.Slots` already bound what is claimed and not yet reported.

Closing follows the memory streams: every producer holds a :class:`Sender` (``clone()`` makes
another); once all are closed, getters take what is left, then get ``anyio.EndOfStream``. An item
handed to a getter that is cancelled before it runs goes back to the front, so nothing is lost
between a fetcher and an executor that is being cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Generic, TypeVar

import anyio

__all__ = ["Handoff", "Sender"]

T = TypeVar("T")


class Handoff(Generic[T]):
    """Items from producer tasks to consumer tasks of one event loop, first in first out."""

    __slots__ = ("_closed", "_items", "_senders", "_waiters")

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiters: deque[asyncio.Future[T]] = deque()
        self._senders = 0
        self._closed = False

    def sender(self) -> Sender[T]:
        """A new producer's end; the hand-off ends once every sender is closed."""
        if self._closed:
            raise anyio.ClosedResourceError("the hand-off has ended")
        self._senders += 1
        return Sender(self)

    def _put(self, item: T) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        self._items.append(item)

    def _sender_closed(self) -> None:
        self._senders -= 1
        if self._senders == 0:
            self._closed = True
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(anyio.EndOfStream())

    def get_nowait(self) -> T:
        """The next item; ``anyio.WouldBlock`` if none is waiting, ``anyio.EndOfStream`` at the end."""
        if self._items:
            return self._items.popleft()
        if self._closed:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def get(self) -> T:
        """The next item, waiting for one; ``anyio.EndOfStream`` once the senders are all closed.

        Takes a waiting item without yielding to the event loop (the caller decides when to).
        """
        if self._items:
            return self._items.popleft()
        if self._closed:
            raise anyio.EndOfStream
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed over, then cancelled before it ran: the item goes back to the front.
                self._items.appendleft(waiter.result())
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise


class Sender(Generic[T]):
    """One producer's end of a :class:`Handoff`; a context manager that closes it."""

    __slots__ = ("_closed", "_handoff")

    def __init__(self, handoff: Handoff[T]) -> None:
        self._handoff = handoff
        self._closed = False

    def put(self, item: T) -> None:
        if self._closed:
            raise anyio.ClosedResourceError("this sender is closed")
        self._handoff._put(item)

    def clone(self) -> Sender[T]:
        if self._closed:
            raise anyio.ClosedResourceError("this sender is closed")
        return self._handoff.sender()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._handoff._sender_closed()

    def __enter__(self) -> Sender[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
