"""LISTEN on one dedicated connection and wake the broker's idle waiters, per queue.

The connection never comes from the pool: a pooled connection would be handed to other queries
(and PgBouncer in transaction mode would drop the LISTEN). Nothing runs in the background:
a waiter calls :meth:`Listener.ensure` before it waits, which (re)connects when needed. When the
connection is lost every waiter is woken at once, so each does a catch-up claim, and the next
wait reconnects and LISTENs again. Until then, waits fall back to polling: correctness never
depends on a notification arriving.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg

from asynctask.brokers.postgres.pool import CLOSE_LIMIT

__all__ = ["Listener", "channel_for"]

logger = logging.getLogger("asynctask.brokers.postgres")

_CONNECT_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def channel_for(schema: str) -> str:
    """The NOTIFY channel of a schema (channel names, like identifiers, stop at 63 bytes)."""
    return f"asynctask_{schema}"[:63]


class Listener:
    """A LISTEN connection on ``channel`` whose notifications (payload: a queue name) set events."""

    def __init__(
        self,
        connect: Callable[[float], Awaitable[Any]],
        channel: str,
        *,
        where: str,
        retry_interval: float = 1.0,
    ) -> None:
        self.channel = channel
        self._connect = connect
        self._where = where
        self._retry_interval = retry_interval
        self._conn: Any = None
        self._events: dict[str, anyio.Event] = {}
        self._lock: anyio.Lock | None = None
        self._retry_at = float("-inf")
        self._closed = False
        self._tried = False
        #: How many times the connection was lost; for tests and metrics.
        self.losses = 0

    def __repr__(self) -> str:
        state = f"listening pid={self.backend_pid}" if self.connected else "not listening"
        return f"<Listener {self.channel} {state} waiters={len(self._events)}>"

    @property
    def connected(self) -> bool:
        """Whether notifications are being received right now."""
        return self._alive()

    @property
    def tried(self) -> bool:
        """Whether :meth:`ensure` has tried to connect yet (a broker listens from its first wait)."""
        return self._tried

    @property
    def waiting(self) -> frozenset[str]:
        """The queues that have a waiter registered for their next notification."""
        return frozenset(self._events)

    def _alive(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    @property
    def backend_pid(self) -> int | None:
        """The server process id of the LISTEN connection, if connected."""
        return int(self._conn.get_server_pid()) if self.connected else None

    async def ensure(self, timeout: float = 10.0) -> bool:
        """Connect and LISTEN unless already listening; ``False`` if that is not possible now.

        ``timeout`` bounds the connection attempt, in seconds.

        A failed attempt is not retried for ``retry_interval`` seconds, so a server that is down
        costs one connection attempt per interval, not one per wait.
        """
        if self.connected:
            return True
        if self._closed or anyio.current_time() < self._retry_at:
            return False
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._alive():  # another waiter connected while this one queued for the lock
                return True
            self._tried = True
            # Shielded as a whole, each step bounded by ``timeout``: a waiter cancelled between
            # the connect and the LISTEN would leave the connection open and unused.
            with anyio.CancelScope(shield=True):
                await self._listen(timeout)
            return self._alive()

    async def _listen(self, timeout: float) -> None:
        try:
            conn = await self._connect(timeout)
        except _CONNECT_ERRORS as exc:
            self._failed(exc)
            return
        try:
            with anyio.fail_after(max(timeout, 0.1)):
                await conn.add_listener(self.channel, self._on_notification)
            conn.add_termination_listener(self._on_lost)
        except _CONNECT_ERRORS as exc:
            conn.terminate()
            self._failed(exc)
            return
        self._conn = conn

    def _failed(self, exc: BaseException) -> bool:
        self._retry_at = anyio.current_time() + self._retry_interval
        logger.warning(
            "cannot LISTEN on %s (%s: %s); polling until it can",
            self._where,
            type(exc).__name__,
            exc,
            extra={"action": "listener_connect_failed"},
        )
        return False

    def event(self, queue: str) -> anyio.Event:
        """The event set by the next notification for ``queue`` (or by a lost connection)."""
        event = self._events.get(queue)
        if event is None:
            event = self._events[queue] = anyio.Event()
        return event

    async def close(self) -> None:
        """Stop listening and wake every waiter; safe to call twice."""
        self._closed = True
        conn, self._conn = self._conn, None
        self._wake_all()
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._on_lost)
            try:
                with anyio.fail_after(CLOSE_LIMIT):
                    await conn.close()
            except (*_CONNECT_ERRORS, TimeoutError):
                conn.terminate()

    # --- driver callbacks (run on the event loop) ------------------------------------------

    def _on_notification(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        event = self._events.pop(payload, None)
        if event is not None:
            event.set()

    def _on_lost(self, conn: Any) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        self.losses += 1
        logger.warning(
            "lost the LISTEN connection to %s; waking waiters and reconnecting",
            self._where,
            extra={"action": "listener_lost"},
        )
        self._wake_all()

    def _wake_all(self) -> None:
        events, self._events = self._events, {}
        for event in events.values():
            event.set()
