"""``queue_stats``: every queue's live jobs counted by status, in one aggregation.

The server groups the jobs by queue and status and keeps, per group, the smallest ``run_at``
among ready jobs (``queued``, or ``scheduled`` and due); only those small groups travel back.
Its cost is a pass over the live jobs on the server, never one round trip per job, and no
payload leaves it.
"""

from __future__ import annotations

from typing import Any

from asynctask.models import JobStatus, QueueStats, zero_counts

__all__ = ["queue_stats"]


async def queue_stats(coll: Any, now: float, visible: dict[str, Any]) -> list[QueueStats]:
    """The stats of every queue with at least one live job, sorted by queue name."""
    ready = {
        "$or": [
            {"$eq": ["$status", "queued"]},
            {"$and": [{"$eq": ["$status", "scheduled"]}, {"$lte": ["$run_at", now]}]},
        ]
    }
    pipeline = [
        {"$match": visible},
        {"$project": {"queue": 1, "status": 1, "run_at": 1}},
        {
            "$group": {
                "_id": {"queue": "$queue", "status": "$status"},
                "n": {"$sum": 1},
                "oldest": {"$min": {"$cond": [ready, "$run_at", None]}},
            }
        },
    ]
    found: dict[str, tuple[dict[JobStatus, int], list[float]]] = {}
    async for group in await coll.aggregate(pipeline):
        counts, oldest = found.setdefault(group["_id"]["queue"], (zero_counts(), []))
        counts[JobStatus(group["_id"]["status"])] += int(group["n"])
        if group.get("oldest") is not None:
            oldest.append(float(group["oldest"]))
    return [
        QueueStats(queue=queue, counts=counts, oldest_ready_at=min(oldest, default=None))
        for queue, (counts, oldest) in sorted(found.items())
    ]
