"""The PostgreSQL broker, on asyncpg.

Every protocol call is one SQL statement (one round trip) from ``sql/queries.sql``; batches
travel as arrays and are unnested server-side. The one exception is a completion that spawns
jobs (subtasks, the next link of a chain): lock, insert, count, complete, in one transaction.
See :class:`PostgresBroker`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Self

import anyio
import asyncpg

from asynctask.brokers.base import Capabilities, Clock, Migration
from asynctask.brokers.postgres import migrate, sql
from asynctask.brokers.postgres.config import PostgresOptions, parse_url, pick
from asynctask.brokers.postgres.errors import quiet_driver_logs, schema_outdated, translate_errors
from asynctask.brokers.postgres.flow import FlowCalls, PostgresFlow
from asynctask.brokers.postgres.listener import Listener, channel_for
from asynctask.brokers.postgres.listing import list_rows
from asynctask.brokers.postgres.outcomes import complete_args
from asynctask.brokers.postgres.pool import CLOSE_LIMIT, Database, pool_options_for
from asynctask.brokers.postgres.publishing import insert
from asynctask.brokers.postgres.rows import lease_state, queue_stats_from_rows, to_job, to_jobs
from asynctask.brokers.postgres.workers import WorkerCalls
from asynctask.brokers.refcount import OpenCount
from asynctask.errors import ConfigurationError
from asynctask.flow import TaskLimits
from asynctask.models import Job, JobStatus, Lease, LeaseState, NewJob, Outcome, OutcomeKind, QueueStats

_FAILED = OutcomeKind.FAILED

__all__ = ["PostgresBroker"]

_LISTENER_SETTINGS = {"application_name": "asynctask-listener"}
# Seconds allowed to open the LISTEN connection (less when a wait's timeout is shorter).
_LISTENER_CONNECT_TIMEOUT = 10.0
# Seconds a statement may take unless the URL or the caller says otherwise.
_COMMAND_TIMEOUT = 30.0


class PostgresBroker(FlowCalls, WorkerCalls):
    """A broker keeping jobs in one table of a PostgreSQL schema (default ``asynctask``).

    Build it from a URL (``postgresql://user:pass@host:5432/db?schema=jobs``, see
    :func:`~asynctask.brokers.postgres.config.parse_url` for the query options) or around an
    existing ``asyncpg.Pool`` (``PostgresBroker(pool=pool, url=...)``; the URL is still needed
    for the dedicated LISTEN connection unless ``notify=False``). A pool passed in is not
    closed by :meth:`close`.

    * ``notify``: wake idle workers with LISTEN/NOTIFY. Turn it off behind PgBouncer in
      transaction pooling mode; waits then poll every ``poll_interval`` seconds.
    * ``auto_migrate``: apply missing migrations in :meth:`open` instead of raising
      :class:`~asynctask.errors.SchemaOutdated`.
    * ``command_timeout`` (URL ``?command_timeout=``, default 30 s): the deadline of every
      statement. Past it the statement is cancelled and the call raises
      :class:`~asynctask.errors.BrokerUnavailable`; a connection that does not come back from
      the cancel is terminated and replaced (see :meth:`.Database.connection`). A worker's
      ``broker_timeout`` (default 10 s) is usually the tighter bound on its own calls.
      Migrations run on a connection of their own, without it.
    * ``enqueue(jobs, connection=conn)`` runs on the caller's asyncpg connection, inside the
      caller's transaction: the jobs exist only if it commits.
    * ``pool_options`` go to ``asyncpg.create_pool``. The broker's own pool starts its
      connections with ``plan_cache_mode = force_generic_plan``, ``enable_seqscan = off``, ``jit = off``
      (unless ``statement_cache_size=0``) and skips asyncpg's server-side reset at each release
      (see :data:`.pool.POOL_SETTINGS` and :func:`.pool.keep_session`); passing
      ``server_settings`` or ``reset`` replaces them.

    >>> PostgresBroker("postgresql://app:s3cret@db/jobs?schema=work")
    <PostgresBroker postgresql://app:***@db/jobs?schema=work schema=work closed>
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        pool: Any = None,
        schema: str | None = None,
        notify: bool | None = None,
        auto_migrate: bool | None = None,
        poll_interval: float | None = None,
        pool_options: Mapping[str, Any] | None = None,
        command_timeout: float | None = None,
        clock: Clock = time.time,
    ) -> None:
        if url is None and pool is None:
            raise ConfigurationError("PostgresBroker needs a url, a pool, or both")
        opts = parse_url(url) if url is not None else None
        self.clock = clock
        self.schema = sql.validate_schema(pick(schema, opts.schema if opts else None, "asynctask"))
        self.notify = pick(notify, opts.notify if opts else None, True)
        self.auto_migrate = pick(auto_migrate, opts.auto_migrate if opts else None, False)
        self.poll_interval = pick(poll_interval, opts.poll_interval if opts else None, 1.0)
        if self.poll_interval <= 0:
            raise ConfigurationError(f"poll_interval must be positive, got {self.poll_interval}")
        self.command_timeout = pick(command_timeout, opts.command_timeout if opts else None, _COMMAND_TIMEOUT)
        if not 0 < self.command_timeout < math.inf:
            raise ConfigurationError(f"command_timeout must be positive, got {self.command_timeout}")
        if pool is not None and opts is None and self.notify:
            raise ConfigurationError(
                "PostgresBroker(pool=...) with notify=True also needs url=... for its dedicated "
                "LISTEN connection (or pass notify=False to poll)"
            )
        self._opts: PostgresOptions | None = opts
        self._pool_options = pool_options_for(
            self.command_timeout, opts.pool_options if opts else {}, pool_options or {}
        )
        self._open = OpenCount(self._connect, self._disconnect)
        self._owns_pool = pool is None
        self._target = opts.target if opts else "an asyncpg pool"
        secret = opts.secret if opts else None
        self._translated = partial(translate_errors, self._target, schema=self.schema, secret=secret)
        self._q = sql.queries(self.schema)
        self._db = Database(self._q, self._target, pool, timeout=self.command_timeout)
        self._channel = channel_for(self.schema)
        self._listener = Listener(self._connect_listener, self._channel, where=self._target)
        self.capabilities = Capabilities(transactional_publish=True, push_wakeups=self.notify)
        self._flow = PostgresFlow(self._db, self.schema, self._channel, lambda: self.notify)

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = time.time, command_timeout: float | None = None) -> Self:
        """The broker for a ``postgresql://`` or ``postgres://`` URL."""
        return cls(url, clock=clock, command_timeout=command_timeout)

    @property
    def display_url(self) -> str:
        """The URL with its password redacted."""
        return self._opts.display_url if self._opts else "postgresql://(asyncpg pool)"

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` was called more times than :meth:`close`."""
        return self._open.is_open

    @property
    def listener(self) -> Listener:
        """The dedicated LISTEN connection, for monitoring (``connected``, ``backend_pid``);
        opened by the first :meth:`wait_for_jobs`, never by a broker that only publishes."""
        return self._listener

    def __repr__(self) -> str:
        state = "open" if self._open.is_open else "closed"
        return f"<PostgresBroker {self.display_url} schema={self.schema} {state}>"

    # --- plumbing --------------------------------------------------------------------------

    def _dsn(self) -> str:
        if self._opts is None:
            raise ConfigurationError(
                "this PostgresBroker was built from a pool and has no URL to connect with"
            )
        return self._opts.dsn

    async def _connect_listener(self, timeout: float) -> Any:
        # Shielded for the reason given in Database.connection; the timeout bounds the shield.
        with anyio.CancelScope(shield=True):
            return await asyncpg.connect(
                self._dsn(), server_settings=_LISTENER_SETTINGS, timeout=max(timeout, 0.1)
            )

    async def _connect_one(self) -> Any:
        try:
            return await asyncpg.connect(self._dsn())
        except ValueError as exc:  # asyncpg's ClientConfigurationError, bad DSN parts
            raise ConfigurationError(f"invalid Postgres URL {self.display_url}: {exc}") from None

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, then migrate (``auto_migrate``) or check that the schema is up to date.

        Opens are counted: a broker shared by its owner and an app stays connected until the last
        of them closes it.
        """
        await self._open.open()

    async def close(self) -> None:
        """Stop listening and close the pool this broker opened, at the last close; safe to repeat."""
        await self._open.close()

    async def _connect(self) -> None:
        quiet_driver_logs()
        if self._owns_pool:
            with self._translated():
                try:
                    self._db.pool = await asyncpg.create_pool(self._dsn(), **self._pool_options)
                except ValueError as exc:
                    raise ConfigurationError(f"invalid Postgres URL {self.display_url}: {exc}") from None
        try:
            if self.auto_migrate:
                await self.migrate()
            else:
                await self._check_schema()
            # No LISTEN here: the first wait_for_jobs opens it. A process that only publishes
            # would otherwise keep a connection, and a server backend, receiving its own NOTIFYs.
        except BaseException:
            await self._release_pool()
            raise

    async def _disconnect(self) -> None:
        await self._listener.close()
        await self._release_pool()
        # A closed broker may be opened again.
        self._listener = Listener(self._connect_listener, self._channel, where=self._target)

    async def _release_pool(self) -> None:
        if self._owns_pool and self._db.pool is not None:
            pool, self._db.pool = self._db.pool, None
            with self._translated():
                try:
                    with anyio.fail_after(CLOSE_LIMIT):
                        await pool.close()
                except TimeoutError:
                    pool.terminate()

    async def _check_schema(self) -> None:
        with self._translated():
            async with self._db.connection() as conn:
                version = await migrate.schema_version(conn, self.schema)
        expected = sql.latest_version()
        if version is None or version < expected:
            raise schema_outdated(self.schema, self._target, version, expected)

    async def migrate(self) -> Migration:
        """Apply the migrations the schema lacks (creating it if needed); says what it did.

        Works on an opened or unopened broker, and is safe to run from many processes at once.
        """
        # On a connection of its own where we can: a migration may outlast command_timeout.
        with self._translated():
            if self._opts is None:
                async with self._db.connection() as conn:
                    return await migrate.apply_migrations(conn, self.schema, self.clock)
            conn = await self._connect_one()
            try:
                return await migrate.apply_migrations(conn, self.schema, self.clock)
            finally:
                await conn.close()

    # --- publishing and claiming -----------------------------------------------------------

    async def enqueue(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[bool]:
        """Store jobs in one statement; ``connection`` joins the caller's transaction."""
        if not jobs:
            return []
        with self._translated():
            if connection is not None:
                created, _ = await self._insert(connection, jobs)
            else:
                async with self._db.connection() as conn:
                    created, _ = await self._insert(conn, jobs)
        return created

    async def _insert(self, runner: Any, jobs: Sequence[NewJob]) -> tuple[list[bool], list[str]]:
        """Insert ``jobs``; returns which were created and the parent ids of those created."""
        return await insert(
            runner, self._q, jobs, now=self.clock(), channel=self._channel, notify=self.notify
        )

    async def claim(
        self, queue: str, limit: int, *, lease: float, worker: str, limits: TaskLimits | None = None
    ) -> list[Job]:
        """Claim up to ``limit`` ready jobs with ``FOR UPDATE SKIP LOCKED``, in one statement; a
        claim that meets a flow limit takes the flow path (:mod:`.flow`)."""
        if limit <= 0:
            return []
        with self._translated():
            jobs = await self._flow.claim(queue, limit, self.clock(), lease, worker, limits)
        # A claimed job reads as failed only if its row is corrupt (rows.to_job): fail it for good.
        if bad := [job for job in jobs if job.status is JobStatus.FAILED]:
            await self.complete(
                [Outcome(job_id=j.id, token=j.token, kind=_FAILED, error=j.error) for j in bad]
            )
            jobs[:] = [job for job in jobs if job.status is not JobStatus.FAILED]
        return jobs

    async def complete(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply outcomes in one statement, each only while its token still holds the job."""
        if not outcomes:
            return []
        # Outcomes repeating a (job, token) pair: the first is applied, the rest are stale.
        first: dict[tuple[str, int], int] = {}
        for i, o in enumerate(outcomes):
            first.setdefault((o.job_id, o.token), i)
        # Sent in id order so that two batches sharing jobs lock them in the same order.
        firsts = sorted(first.values(), key=lambda i: outcomes[i].job_id)
        unique = [outcomes[i] for i in firsts]
        args = complete_args(unique, self.clock(), self._channel, self.notify)
        with self._translated():
            if any(o.spawn for o in unique):
                ords = await self._complete_spawning(unique, args)
            else:
                ords = (await self._db.fetchrow("complete", *args))["ords"]
        applied = {firsts[ordinal - 1] for ordinal in ords}
        return [i in applied for i in range(len(outcomes))]

    async def _complete_spawning(self, outcomes: Sequence[Outcome], args: tuple[Any, ...]) -> list[int]:
        """Outcomes that spawn jobs: lock, spawn, count children in, complete; one transaction."""

        async def body(conn: Any) -> list[int]:
            held = [r["ord"] for r in await conn.fetch(self._q["held"], args[0], args[1])]
            spawn = [job for ordinal in held for job in outcomes[ordinal - 1].spawn]
            if spawn:
                _, parents = await self._insert(conn, spawn)
                if parents:
                    await conn.execute(self._q["add_pending"], parents)
            ords: list[int] = (await conn.fetchrow(self._q["complete"], *args))["ords"]
            return ords

        return await self._db.transaction(body)

    async def extend_leases(self, leases: Sequence[Lease], *, lease: float) -> list[LeaseState]:
        """Extend the leases still held, in one statement."""
        if not leases:
            return []
        unique = sorted({(held.job_id, held.token) for held in leases})
        with self._translated():
            rows = await self._db.fetch(
                "extend_leases",
                [job_id for job_id, _ in unique],
                [token for _, token in unique],
                self.clock() + lease,
            )
        held = {unique[row["ord"] - 1]: lease_state(row) for row in rows}
        return [held.get((lease_.job_id, lease_.token), LeaseState.LOST) for lease_ in leases]

    async def save(
        self, job_id: str, token: int, *, state: bytes | None = None, result: bytes | None = None
    ) -> bool:
        """Persist a running job's state and/or result, fenced by ``token``."""
        with self._translated():
            found = await self._db.fetchval("save", job_id, token, state, result)
        return found is not None

    async def wait_for_jobs(self, queue: str, timeout: float, *, held: bool = False) -> None:
        """Return when a job of ``queue`` may be ready (NOTIFY), or by ``timeout`` at the latest.

        Without a working LISTEN connection (``notify=False``, or while reconnecting) the wait
        polls every ``poll_interval`` seconds instead. ``held``: ready jobs are no reason to
        return (flow control held them back); only a NOTIFY or the timeout end the wait.
        """
        # Everything happens inside the timeout (a listener connect is shielded, but bounded by
        # it too): an unresponsive server makes this a plain timed-out wait. Except the broker's
        # first wait, which opens the LISTEN connection with the deadline open() used to give it.
        timeout = max(timeout, 0.0)
        if self.notify and not self._listener.tried:  # the first wait connects as open() would
            await self._listener.ensure(timeout=_LISTENER_CONNECT_TIMEOUT)
        with anyio.move_on_after(timeout):
            event = None
            if self.notify and await self._listener.ensure(timeout=min(timeout, _LISTENER_CONNECT_TIMEOUT)):
                # Register before looking, so a NOTIFY sent after the look still ends this wait.
                event = self._listener.event(queue)
                if not self._listener.connected:  # lost in between: its wake-up came before our event
                    event = None
            if held:
                await (event.wait() if event is not None else anyio.sleep(min(timeout, self.poll_interval)))
                return
            while True:
                now = self.clock()
                with self._translated():
                    row = await self._db.fetchrow("readiness", queue, now)
                if row["ready"]:
                    return
                # When a scheduled job comes due, wake for it and let the caller claim it.
                due = row["next_run_at"]
                until_due = None if due is None else max(due - now, 0.0)
                if event is not None:
                    with anyio.move_on_after(until_due):
                        await event.wait()
                    return
                if until_due is not None and until_due <= self.poll_interval:
                    await anyio.sleep(until_due)
                    return
                await anyio.sleep(self.poll_interval)

    # --- maintenance -----------------------------------------------------------------------

    async def promote_due(self, limit: int) -> int:
        """Move due ``scheduled`` jobs to ``queued``; safe to run from many workers at once."""
        with self._translated():
            row = await self._db.fetchrow("promote_due", self.clock(), limit, self._channel, self.notify)
        return int(row["moved"])

    async def rescue_expired(self, limit: int) -> int:
        """Re-queue (or fail) running jobs whose lease expired; safe to run concurrently."""
        with self._translated():
            row = await self._db.fetchrow("rescue_expired", self.clock(), limit, self._channel, self.notify)
        return int(row["rescued"])

    async def prune(self, limit: int) -> int:
        """Delete up to ``limit`` jobs past ``expires_at``."""
        with self._translated():
            count = await self._db.fetchval("prune", self.clock(), limit)
        return int(count)

    # --- inspection ------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        """The job, or ``None`` if it does not exist or has expired."""
        with self._translated():
            row = await self._db.fetchrow("get", job_id, self.clock())
        return None if row is None else to_job(row)

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        task: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        before: tuple[float, str] | None = None,
    ) -> list[Job]:
        """Jobs matching every given filter, newest first, from ``before`` on (keyset pagination).

        Each page is one statement starting at the cursor: a walk of ``jobs_list_idx``
        unfiltered, of ``jobs_settled_idx`` for a finished, waiting or paused status, of
        ``jobs_parent_idx`` for a job's children; for a queued, scheduled or running status the
        planner picks the walk or a sort of the few such jobs (see ``queries.sql``). A queue or
        task filter is checked on the rows walked, so a rare task among many jobs costs a longer
        walk (``benchmarks/web_list.py`` measures these on 100,000 jobs).
        """
        with self._translated():
            rows = await list_rows(self._db, status, queue, task, parent_id, limit, before, self.clock())
        return to_jobs(rows)

    async def queue_stats(self) -> list[QueueStats]:
        """Every queue's live jobs by status, in one statement (one pass over the table, planned
        for the table as it is: see :meth:`.Database.fetch_planned`)."""
        with self._translated():
            rows = await self._db.fetch_planned("queue_stats", self.clock())
        return queue_stats_from_rows(rows)

    async def cancel(self, job_id: str, *, expires_at: float | None) -> Job | None:
        """Cancel a waiting job now, or request the cancel of a running one."""
        with self._translated():
            row = await self._db.fetchrow(
                "cancel", job_id, self.clock(), expires_at, self._channel, self.notify
            )
        return None if row is None else to_job(row)

    async def pause(self, job_id: str) -> Job | None:
        """Park a scheduled or queued job as paused, or ask a running one to pause."""
        with self._translated():
            row = await self._db.fetchrow("pause", job_id, self.clock())
        return None if row is None else to_job(row)

    async def resume(self, job_id: str) -> Job | None:
        """Queue a paused job again."""
        with self._translated():
            row = await self._db.fetchrow("resume", job_id, self.clock(), self._channel, self.notify)
        return None if row is None else to_job(row)

    async def retry(self, job_id: str) -> Job | None:
        """Queue a failed or cancelled job again with a fresh attempt count."""
        with self._translated():
            row = await self._db.fetchrow("retry", job_id, self.clock(), self._channel, self.notify)
        return None if row is None else to_job(row)

    async def delete(self, job_id: str) -> bool:
        """Delete a job in any status."""
        with self._translated():
            found = await self._db.fetchval("delete", job_id)
        return found is not None
