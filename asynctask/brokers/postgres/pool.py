"""The broker's use of its asyncpg pool: named queries, shielded checkouts, deadlock retries."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import asyncpg

from asynctask.errors import BrokerError

__all__ = ["CLOSE_LIMIT", "POOL_SETTINGS", "Database", "keep_session", "pool_options_for"]

_T = TypeVar("_T")
logger = logging.getLogger("asynctask.brokers.postgres")

# Aborted by the server to break a deadlock or a serialization conflict: safe to run again.
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_ATTEMPTS = 3
# Seconds a shielded checkout may take (a connect on the way) and a shielded release (one reset
# round trip, normally milliseconds; past it the connection is terminated, which costs nothing).
_ACQUIRE_LIMIT = 5.0
_RELEASE_LIMIT = 2.0
#: Seconds a graceful close (of the pool, of the LISTEN connection) may take before the
#: connections are terminated: a stalled server must not hold a stopping worker for long.
CLOSE_LIMIT = 2.0

#: Session settings of the connections of a pool the broker opens. Every statement of the broker
#: is prepared once per connection and run many times, and most take arrays: Postgres would plan
#: each run afresh (a "custom plan", since it cannot tell what an array's length does to the
#: cost), which took longer than running it (about 0.7 ms of a publish's 1 ms on the server).
#: The protocol's statements are written for their one plan (primary-key probes, walks of partial
#: indexes, the status a literal where a plan depends on it), so the cached generic plan is used
#: from the first run. A generic plan is made once per connection, possibly while the table is
#: nearly empty, and kept until the table's statistics change (the next ANALYZE, autovacuum's
#: included): with sequential and bitmap scans disabled it walks the indexes even then, rather
#: than keeping a scan of the whole table, or a bitmap scan of the whole ready set and a sort of
#: it, that only a tiny table would make worth it. (The migration builds the partial indexes on an
#: empty table, so their statistics say "no rows" until the first ANALYZE: a claim planned then
#: sorted every ready job at every run, and a backlog of 100,000 jobs drained at 2,100 jobs/s
#: instead of 30,000.) Listing and counting jobs (:meth:`Database.fetch_planned`) keep Postgres's
#: own choice of plan. JIT is off: a disabled scan's cost is huge by design, and would have
#: JIT-compiled, at every run, the statements with no other way to read a table (the small
#: ``queues`` and ``workers`` tables); none of the broker's statements gains from it anyway.
POOL_SETTINGS = {
    "plan_cache_mode": "force_generic_plan",
    "enable_seqscan": "off",
    "enable_bitmapscan": "off",
    "jit": "off",
}
# Postgres's defaults again, for the statements whose best plan depends on the values given.
_PLANNER_DEFAULTS = (
    "SET LOCAL plan_cache_mode = auto; SET LOCAL enable_seqscan = on; SET LOCAL enable_bitmapscan = on;"
    " SET LOCAL jit = DEFAULT"
)


async def keep_session(conn: Any) -> None:
    """The pool's ``reset``: nothing beyond asyncpg's own (a ROLLBACK of an open transaction,
    listeners dropped).

    asyncpg's default runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` at
    every release, a round trip per checkout. The broker leaves none of those behind on a pooled
    connection: its advisory locks are transaction-scoped, its cursors live in transactions, it
    LISTENs on a connection of its own and never runs SET. Only for a pool the broker opens: a
    pool passed in keeps its own ``reset``.
    """


def pool_options_for(
    command_timeout: float, from_url: Mapping[str, Any], passed: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``asyncpg.create_pool`` options of a pool the broker opens: its defaults, then the
    URL's, then those passed in (each replacing the one before)."""
    options: dict[str, Any] = {
        "min_size": 1,
        "max_size": 10,
        "reset": keep_session,
        "command_timeout": command_timeout,
        **from_url,
        **passed,
    }
    # Generic plans pay off only for statements prepared once and kept (asyncpg's statement
    # cache); without the cache (statement_cache_size=0, PgBouncer in transaction mode, which
    # would also refuse these startup parameters) the server's defaults stay.
    if options.get("statement_cache_size") != 0:
        options.setdefault("server_settings", dict(POOL_SETTINGS))
    return options


class Database:
    """Runs the named queries of one schema on a pool (``None`` until the broker opens)."""

    def __init__(
        self, queries: Mapping[str, str], where: str, pool: Any = None, *, timeout: float = 30.0
    ) -> None:
        self.queries = queries
        self.pool: Any = pool
        #: The broker's statement deadline; checkouts and releases get at most this.
        self.timeout = timeout
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

        Both have a deadline, which matters most for the release: it resets the connection, and
        a query cancelled on a connection that stopped answering (a stalled proxy, a half-open
        TCP connection) leaves a reset that would wait for ever, shielded. Past the deadline
        asyncpg terminates the connection, and the pool opens a new one when it next needs one:
        the stuck connection is abandoned, not waited for (and the pool's other connections
        are replaced at their next use). The deadlines are short (at most
        ``_ACQUIRE_LIMIT`` and ``_RELEASE_LIMIT`` seconds) because a shield also holds off a
        stopping worker.
        """
        pool = self.require()
        with anyio.CancelScope(shield=True):
            conn = await pool.acquire(timeout=min(self.timeout, _ACQUIRE_LIMIT))
        try:
            yield conn
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await pool.release(conn, timeout=min(self.timeout, _RELEASE_LIMIT))
                except Exception as exc:
                    # asyncpg terminated it already; nothing is lost (the query's own outcome,
                    # if any, was raised or returned before). The pool's other connections
                    # likely share its path: each is replaced at its next use, rather than
                    # found stuck one deadline at a time.
                    await pool.expire_connections()
                    logger.warning(
                        "abandoned a PostgreSQL connection to %s that did not come back (%s); "
                        "replacing the pool's connections",
                        self._where,
                        type(exc).__name__ if not str(exc) else exc,
                        extra={"action": "postgres_connection_abandoned"},
                    )

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

    async def fetch_planned(self, name: str, *args: Any) -> list[Any]:
        """The rows of query ``name``, planned for the values given (see :data:`POOL_SETTINGS`):
        a transaction of two more round trips, for the listings, whose walks depend on them, and
        the per-queue counts, whose aggregation does."""

        async def body(conn: Any) -> list[Any]:
            await conn.execute(_PLANNER_DEFAULTS)
            rows: list[Any] = await conn.fetch(self.queries[name], *args)
            return rows

        return await self.transaction(body)

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
