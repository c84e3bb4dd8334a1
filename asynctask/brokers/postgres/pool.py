"""The broker's use of its asyncpg pool: named queries, shielded checkouts, deadlock retries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import asyncpg

from asynctask.errors import BrokerError

__all__ = ["Database"]

_T = TypeVar("_T")

# Aborted by the server to break a deadlock or a serialization conflict: safe to run again.
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_ATTEMPTS = 3


class Database:
    """Runs the named queries of one schema on a pool (``None`` until the broker opens)."""

    def __init__(self, queries: Mapping[str, str], where: str, pool: Any = None) -> None:
        self.queries = queries
        self.pool: Any = pool
        self._where = where

    def require(self) -> Any:
        """The pool; raises :class:`BrokerError` before the broker is opened."""
        if self.pool is None:
            raise BrokerError(f"the Postgres broker for {self._where} is not open; call open() first")
        return self.pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled connection, acquired and released in shielded scopes.

        Acquiring may open a new connection, and anyio re-delivers a cancellation at every
        await, including those of asyncpg's own cleanup: a connect or release interrupted that
        way leaks its socket. Shielding both leaves only the query itself cancellable.
        """
        pool = self.require()
        # No deadline of our own: a connect is bounded by asyncpg's connect timeout, a wait for
        # a free connection by the queries holding them; timeouts would cost a timer per call.
        with anyio.CancelScope(shield=True):
            conn = await pool.acquire()
        try:
            yield conn
        finally:
            with anyio.CancelScope(shield=True):
                await pool.release(conn)

    async def transaction(self, body: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run ``body(conn)`` in a transaction, again if the server aborted it to break a deadlock.

        Every query here is one atomic statement (or one transaction), so an aborted one left
        nothing behind: children of the same parents finishing in two batches at once may
        deadlock on the parents' rows, and simply run again.
        """
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self.connection() as conn, conn.transaction():
                    return await body(conn)
            except _RETRYABLE:
                if attempt == _ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def _run(self, method: str, name: str, *args: Any) -> Any:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self.connection() as conn:
                    return await getattr(conn, method)(self.queries[name], *args)
            except _RETRYABLE:  # see transaction()
                if attempt == _ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def fetch(self, name: str, *args: Any) -> list[Any]:
        """The rows of query ``name``."""
        rows: list[Any] = await self._run("fetch", name, *args)
        return rows

    async def fetchrow(self, name: str, *args: Any) -> Any:
        """The first row of query ``name``, or ``None``."""
        return await self._run("fetchrow", name, *args)

    async def fetchval(self, name: str, *args: Any) -> Any:
        """The first value of query ``name``, or ``None``."""
        return await self._run("fetchval", name, *args)
