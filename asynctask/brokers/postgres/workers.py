"""The worker registry of the Postgres broker: the ``workers`` table (migration 004), one
statement per call (see ``sql/queries.sql``)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from asynctask.brokers.postgres.pool import Database
from asynctask.brokers.postgres.rows import to_worker, worker_args
from asynctask.models import WorkerInfo

__all__ = ["WorkerCalls"]


class WorkerCalls:
    """The broker protocol's worker-registry calls, mixed into
    :class:`~asynctask.brokers.postgres.PostgresBroker`."""

    _db: Database
    _translated: Callable[[], AbstractContextManager[None]]
    clock: Callable[[], float]

    async def record_worker(self, info: WorkerInfo, *, ttl: float) -> None:
        """Upsert the worker's row (and delete dead workers' rows), in one statement."""
        args = worker_args(info)
        with self._translated():
            await self._db.fetchval("record_worker", *args[:8], self.clock(), ttl, args[8])

    async def remove_worker(self, worker_id: str) -> None:
        with self._translated():
            await self._db.fetchval("remove_worker", worker_id)

    async def list_workers(self) -> list[WorkerInfo]:
        with self._translated():
            return [to_worker(row) for row in await self._db.fetch("list_workers", self.clock())]
