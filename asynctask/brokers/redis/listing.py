"""Listing jobs a page at a time (keyset pagination) and counting them by status, on Redis.

Two per-queue indexes back this (see the inspection block of ``asynctask.lua``): ``created``
holds every job scored by ``created_at`` and ``status:<s>`` the waiting, paused and finished
jobs of each status, members being job ids, so reading a zset in reverse gives the listing
order (``created_at`` descending, then id descending) and a page starts at one ``ZREVRANK``.

Costs, per queue:

* a page with no filter, or filtered by a waiting, paused or finished status, reads
  ``O(log n + limit)`` index entries;
* a filter the index does not hold (task, parent, or a queued/scheduled/running status) is
  checked on each entry walked (one ``HMGET``, no payload), so a rare match costs a walk over
  the newer non-matching jobs; the walk runs in scripts reading at most :data:`BUDGET` entries
  each, so Redis never blocks for long;
* the matching jobs are then read in one pipeline.

Across queues (no queue filter) each queue yields its own page and the pages are merged.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from asynctask.brokers.redis.codec import fmt
from asynctask.brokers.redis.index import visible
from asynctask.brokers.redis.keys import Keys
from asynctask.brokers.redis.scripts import Scripts
from asynctask.models import Job, JobStatus, QueueStats, zero_counts

__all__ = ["BUDGET", "TRACKED", "list_jobs", "queue_stats"]

#: Index entries one listing script call reads at most.
BUDGET = 2000

#: Statuses with their own index (the others are the ready, scheduled and leased zsets).
TRACKED = frozenset(
    {JobStatus.WAITING, JobStatus.PAUSED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
)


async def _page(
    scripts: Scripts,
    queue: str,
    now: float,
    *,
    status: JobStatus | None,
    task: str | None,
    parent_id: str | None,
    limit: int,
    before: tuple[float, str] | None,
) -> list[tuple[float, str]]:
    """Up to ``limit`` ``(created_at, id)`` of matching jobs of one queue, newest first."""
    source = status.value if status in TRACKED else "created"
    after = None if before is None else (fmt(before[0]), before[1])
    found: list[tuple[float, str]] = []
    while len(found) < limit:
        batch, after = await scripts.list_page(
            queue,
            now,
            source=source,
            after=after,
            limit=limit - len(found),
            budget=BUDGET,
            status=status.value if status is not None else None,
            task=task,
            parent_id=parent_id,
        )
        found += batch
        if after is None:
            break
    return found


async def list_jobs(
    client: Redis,
    keys: Keys,
    scripts: Scripts,
    queues: Sequence[str],
    now: float,
    *,
    status: JobStatus | None,
    task: str | None,
    parent_id: str | None,
    limit: int,
    before: tuple[float, str] | None,
) -> list[Job]:
    """Jobs of ``queues`` matching every filter, newest first, strictly after ``before``."""
    if limit <= 0:
        return []
    entries: list[tuple[float, str, str]] = []
    for queue in queues:
        page = await _page(
            scripts, queue, now, status=status, task=task, parent_id=parent_id, limit=limit, before=before
        )
        entries += [(created_at, job_id, queue) for created_at, job_id in page]
    entries.sort(reverse=True)
    del entries[limit:]
    if not entries:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for _, job_id, queue in entries:
            pipe.hgetall(keys.queue(queue).job(job_id))
        rows = await pipe.execute()
    jobs = []
    for raw in rows:
        # Read after the index walk: a job that changed in between is checked again.
        job = visible(raw, now)
        if job is None or (status is not None and job.status is not status):
            continue
        if (task is not None and job.task != task) or (parent_id is not None and job.parent_id != parent_id):
            continue
        jobs.append(job)
    return jobs


async def queue_stats(client: Redis, scripts: Scripts, queues: Sequence[str], now: float) -> list[QueueStats]:
    """Every queue's live jobs by status: one ``stats`` script per queue, in one pipeline."""
    if not queues:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            await scripts.stats(queue, now, client=pipe)
        replies = await pipe.execute()
    stats = []
    for queue, reply in zip(queues, replies, strict=True):
        counts = zero_counts()
        for i in range(0, len(reply) - 1, 2):
            counts[JobStatus(reply[i].decode())] = int(reply[i + 1])
        oldest = reply[-1]
        if any(counts.values()):
            stats.append(
                QueueStats(queue=queue, counts=counts, oldest_ready_at=float(oldest) if oldest else None)
            )
    return sorted(stats, key=lambda s: s.queue)
