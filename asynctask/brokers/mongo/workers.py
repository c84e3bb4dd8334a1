"""The worker registry: ``<prefix>.workers``, one document per live worker (``_id``: its id).

A record past ``expires_at`` (a double, from the injected clock) is a worker that died: never
listed, and deleted by the next :func:`record` (in the same bulk write). The collection stays
small (a few documents per worker process), so it needs no index beyond ``_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import msgspec
from pymongo import DeleteMany, ReplaceOne

from asynctask.models import WorkerInfo

__all__ = ["WorkerCalls", "list_live", "record", "remove", "workers_collection"]


def workers_collection(prefix: str) -> str:
    return f"{prefix}.workers"


async def record(coll: Any, info: WorkerInfo, now: float, ttl: float) -> None:
    """Store ``info`` as live until ``now + ttl``; drop dead workers' records; one round trip."""
    doc: dict[str, Any] = msgspec.to_builtins(
        msgspec.structs.replace(info, heartbeat_at=now, expires_at=now + ttl)
    )
    doc["_id"] = doc.pop("id")
    await coll.bulk_write(
        [
            DeleteMany({"expires_at": {"$lte": now}, "_id": {"$ne": info.id}}),
            ReplaceOne({"_id": info.id}, doc, upsert=True),
        ],
        ordered=True,
    )


async def remove(coll: Any, worker_id: str) -> None:
    await coll.delete_one({"_id": worker_id})


async def list_live(coll: Any, now: float) -> list[WorkerInfo]:
    found = []
    async for doc in coll.find({"expires_at": {"$gt": now}}, sort=[("_id", 1)]):
        doc["id"] = doc.pop("_id")
        found.append(msgspec.convert(doc, WorkerInfo))
    return found


class WorkerCalls:
    """The broker protocol's worker-registry calls, mixed into
    :class:`~asynctask.brokers.mongo.MongoBroker`."""

    _workers: Any
    clock: Callable[[], float]
    _translated: Callable[[], AbstractContextManager[None]]

    @property
    def collection(self) -> Any: ...  # provided by the broker

    async def record_worker(self, info: WorkerInfo, *, ttl: float) -> None:
        """Upsert the worker's record and drop dead workers' ones: one bulk write."""
        with self._translated():
            await record(self._workers_coll(), info, self.clock(), ttl)

    async def remove_worker(self, worker_id: str) -> None:
        with self._translated():
            await remove(self._workers_coll(), worker_id)

    async def list_workers(self) -> list[WorkerInfo]:
        with self._translated():
            return await list_live(self._workers_coll(), self.clock())

    def _workers_coll(self) -> Any:
        self.collection  # noqa: B018 - raises the same "not open" error
        return self._workers
