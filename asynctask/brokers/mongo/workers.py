"""The worker registry: ``<prefix>.workers``, one document per live worker (``_id``: its id).

A record past ``expires_at`` (a double, from the injected clock) is a worker that died: never
listed, and deleted by the next :func:`record` (in the same bulk write). The collection stays
small (a few documents per worker process), so it needs no index beyond ``_id``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from pymongo import DeleteMany, ReplaceOne

from asynctask.models import WorkerInfo

__all__ = ["list_live", "record", "remove", "workers_collection"]


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
