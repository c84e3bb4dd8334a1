"""Flow control on Postgres: the claim's two paths, queue settings and unique-job look-ups.

**Two paths.** The plain ``claim`` statement is the whole claim as long as its queue has no row in
``queues`` and none of the jobs it picks belongs to a task with limits; that costs one indexed
look-up of an (almost always empty) table. Otherwise it claims nothing and answers "diverted", and
the claim takes the **flow path**: one transaction of ``flow_lock`` (advisory locks of the limited
keys, always in one order) and ``flow_claim`` (counts, tokens, the claim, the spent tokens), four
round trips with ``BEGIN`` and ``COMMIT``. A queue that diverted once goes straight to the flow
path until a flow claim reports that a plain claim would not meet a limit there any more.

Counting running jobs rather than keeping counters means no other statement (completion, rescue,
cancel, delete) has to know about limits, and nothing can drift: a count is exact once the lock
is held, since ``flow_claim`` starts after the previous holder committed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from asynctask.brokers.postgres.pool import Database
from asynctask.brokers.postgres.rows import claimed_job, to_job
from asynctask.flow import CLOCK_SLACK, Claimed, QueueSettings, RateLimit, TaskLimits, normalize_limits
from asynctask.models import Job

__all__ = ["FlowCalls", "PostgresFlow", "to_settings"]

#: How many ready jobs a flow claim looks at, at most, for ``limit`` jobs: it skips jobs of tasks
#: over their limit, so it looks further than a plain claim.
_WINDOW_FACTOR, _WINDOW_EXTRA, _WINDOW_MAX = 4, 64, 2048


def to_settings(row: Any) -> QueueSettings:
    """A queue's settings from its row in ``queues`` (``None``: the defaults)."""
    if row is None:
        return QueueSettings()
    rate = None
    if row["rate_count"] is not None:
        rate = RateLimit(row["rate_count"], per=row["rate_per"], burst=row["rate_burst"])
    return QueueSettings(paused=row["paused"], concurrency=row["concurrency"], rate=rate)


class PostgresFlow:
    """The flow-control half of one :class:`~asynctask.brokers.postgres.PostgresBroker`."""

    def __init__(self, db: Database, schema: str, channel: str, notify: Callable[[], bool]) -> None:
        self._db = db
        self._schema = schema
        self._channel = channel
        self._notify = notify
        #: Queues whose last claim diverted: their next claim takes the flow path directly.
        self._diverted: set[str] = set()

    async def claim(
        self, queue: str, limit: int, now: float, lease: float, worker: str, limits: TaskLimits | None
    ) -> list[Job]:
        task_limits = normalize_limits(limits)
        names = sorted(task_limits)
        if queue not in self._diverted:
            rows = await self._db.fetch("claim", queue, limit, now, lease, worker, names)
            if not rows or not rows[-1]["diverted"]:
                return [claimed_job(row) for row in rows]
            self._diverted.add(queue)
        return await self._claim_flow(queue, limit, now, lease, worker, task_limits, names)

    async def _claim_flow(
        self,
        queue: str,
        limit: int,
        now: float,
        lease: float,
        worker: str,
        limits: Mapping[str, Any],
        names: list[str],
    ) -> Claimed:
        rates = [limits[n].rate for n in names]
        args = (
            queue,
            limit,
            now,
            lease,
            worker,
            names,
            [limits[n].concurrency for n in names],
            [None if r is None else r.per_second for r in rates],
            [None if r is None else float(r.burst) for r in rates],
            CLOCK_SLACK,
            min(limit * _WINDOW_FACTOR + _WINDOW_EXTRA, _WINDOW_MAX),
        )
        q = self._db.queries

        async def body(conn: Any) -> list[Any]:
            await conn.execute(q["flow_lock"], queue, names, self._schema)
            rows: list[Any] = await conn.fetch(q["flow_claim"], *args)
            return rows

        rows = await self._db.transaction(body)
        summary = rows[-1]
        if not summary["flow"]:
            self._diverted.discard(queue)
        return Claimed(
            [to_job(row) for row in rows[:-1]],
            held_back=summary["held_back"],
            retry_at=summary["retry_at"] if summary["held_back"] else None,
        )

    # --- queue settings ---------------------------------------------------------------------

    async def settings(self, queue: str) -> QueueSettings:
        return to_settings(await self._db.fetchrow("queue_settings", queue))

    async def configured(self) -> dict[str, QueueSettings]:
        return {row["name"]: to_settings(row) for row in await self._db.fetch("configured_queues")}

    async def set_limits(self, queue: str, concurrency: int | None, rate: RateLimit | None) -> QueueSettings:
        args = (None, None, None) if rate is None else (rate.count, rate.per, rate.burst)
        return await self._change("set_queue_limits", queue, concurrency, *args)

    async def set_paused(self, queue: str, paused: bool) -> QueueSettings:
        return await self._change("set_queue_paused", queue, paused)

    async def _change(self, name: str, queue: str, *args: Any) -> QueueSettings:
        q = self._db.queries

        async def body(conn: Any) -> Any:
            row = await conn.fetchrow(q[name], queue, *args)
            await conn.execute(q["drop_default_queue"], queue, self._channel, self._notify())
            return row

        # The next claim of this queue asks the plain path first, which sees the new settings.
        self._diverted.discard(queue)
        return to_settings(await self._db.transaction(body))

    # --- unique jobs --------------------------------------------------------------------------

    async def find_unique(self, unique_key: str) -> Job | None:
        row = await self._db.fetchrow("find_unique", unique_key)
        return None if row is None else to_job(row)


class FlowCalls:
    """The broker protocol's flow-control calls, mixed into
    :class:`~asynctask.brokers.postgres.PostgresBroker`."""

    _flow: PostgresFlow
    _translated: Callable[[], AbstractContextManager[None]]

    async def find_unique(self, unique_key: str) -> Job | None:
        """The unfinished job holding ``unique_key``, or ``None``."""
        with self._translated():
            return await self._flow.find_unique(unique_key)

    async def queue_settings(self, queue: str) -> QueueSettings:
        """The queue's settings (the defaults when it has no row)."""
        with self._translated():
            return await self._flow.settings(queue)

    async def configured_queues(self) -> dict[str, QueueSettings]:
        """Every queue with a row in ``queues``."""
        with self._translated():
            return await self._flow.configured()

    async def set_queue_limits(
        self, queue: str, *, concurrency: int | None, rate: RateLimit | None
    ) -> QueueSettings:
        """Replace the queue's limits; wakes its idle workers."""
        with self._translated():
            return await self._flow.set_limits(queue, concurrency, rate)

    async def set_queue_paused(self, queue: str, paused: bool) -> QueueSettings:
        """Pause or resume the queue; wakes its idle workers."""
        with self._translated():
            return await self._flow.set_paused(queue, paused)
