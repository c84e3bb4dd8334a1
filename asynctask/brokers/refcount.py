"""Counted open/close, the one implementation every broker uses (``tests/unit/test_refcount.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

__all__ = ["OpenCount"]


class OpenCount:
    """The first :meth:`open` calls ``connect``, the last :meth:`close` calls ``disconnect``.

    Opens and closes are serialised, so two tasks opening at once connect once. ``close`` is
    shielded from cancellation: a cancelled caller still counts down and disconnects, or the
    connections would leak. A failed ``connect`` leaves the count at zero.
    """

    __slots__ = ("_connect", "_count", "_disconnect", "_lock")

    def __init__(
        self, connect: Callable[[], Awaitable[None]], disconnect: Callable[[], Awaitable[None]]
    ) -> None:
        self._connect = connect
        self._disconnect = disconnect
        self._count = 0
        self._lock: anyio.Lock | None = None

    @property
    def is_open(self) -> bool:
        return self._count > 0

    @property
    def count(self) -> int:
        return self._count

    async def open(self) -> None:
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._count == 0:
                await self._connect()
            self._count += 1

    async def close(self) -> None:
        if self._count == 0 or self._lock is None:
            return
        with anyio.CancelScope(shield=True):
            async with self._lock:
                if self._count == 0:
                    return
                self._count -= 1
                if self._count == 0:
                    await self._disconnect()
