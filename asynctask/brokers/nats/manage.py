"""Managing jobs by id (cancel, pause, resume, retry, delete) and pruning expired ones.

These come from clients, rarely and one job at a time, so they read from the server (never the
index) and write under the revision they read; a parent whose counter changes is written in the
same atomic batch. A delete writes a purge marker (it tells watchers the key is gone) that
expires by itself after :data:`~asynctask.brokers.nats.store.MARKER_TTL`.
"""

from __future__ import annotations

from functools import partial

from asynctask.brokers import transitions
from asynctask.brokers.nats import unique
from asynctask.brokers.nats.index import Index
from asynctask.brokers.nats.store import Store
from asynctask.brokers.nats.tx import Tx, concurrently, run
from asynctask.models import Job, JobStatus

__all__ = ["cancel", "delete", "pause", "prune", "resume", "retry"]


async def _live(tx: Tx, job_id: str, now: float) -> Job | None:
    await tx.load([job_id], fresh=True)
    job = tx.get(job_id)
    return job if transitions.live(job, now) else None


async def cancel(
    store: Store, index: Index | None, job_id: str, *, expires_at: float | None, now: float
) -> Job | None:
    """Cancel a job that has not finished; a running one gets ``cancel_requested``."""

    async def change(tx: Tx) -> Job | None:
        job = await _live(tx, job_id, now)
        if job is None:
            return None
        new = transitions.cancel(job, now, expires_at)
        if new is None:
            return job
        tx.put(job_id, new)
        if new.status.finished and new.parent_id is not None:
            await tx.load([new.parent_id], fresh=True)
            parent = tx.get(new.parent_id)
            if parent is not None:
                tx.put(parent.id, transitions.add_pending(parent, -1, now))
        return new

    return await run(store, index, change)


async def pause(store: Store, index: Index | None, job_id: str, *, now: float) -> Job | None:
    """Park a scheduled or queued job as ``paused``; ask a running one to pause."""

    async def change(tx: Tx) -> Job | None:
        job = await _live(tx, job_id, now)
        if job is None:
            return None
        new = transitions.pause(job)
        if new is None:
            return job
        tx.put(job_id, new)
        return new

    return await run(store, index, change)


async def resume(store: Store, index: Index | None, job_id: str, *, now: float) -> Job | None:
    """Queue a ``paused`` job again; other statuses are left as they are."""

    async def change(tx: Tx) -> Job | None:
        job = await _live(tx, job_id, now)
        if job is None:
            return None
        new = transitions.resume(job, now)
        if new is None:
            return job
        tx.put(job_id, new)
        return new

    return await run(store, index, change)


async def retry(store: Store, index: Index | None, job_id: str, *, now: float) -> Job | None:
    """Queue a failed or cancelled job again; a waiting parent waits for it again. A job whose
    unique key another unfinished job holds now is left as it is; otherwise it takes the key back."""

    async def change(tx: Tx) -> Job | None:
        job = await _live(tx, job_id, now)
        if job is None:
            return None
        new = transitions.retry(job, now)
        if new is None:
            return job
        if job.unique_key is not None:
            holder = await unique.holder(tx, job.unique_key, now)
            if holder is not None and holder.id != job_id:
                return job  # its key is taken by a newer job: left finished
            unique.take(tx, job.unique_key, job_id)
        if job.parent_id is not None:
            await tx.load([job.parent_id], fresh=True)
            parent = tx.get(job.parent_id)
            if parent is not None and parent.status is JobStatus.WAITING:
                tx.put(parent.id, transitions.add_pending(parent, +1, now))
        tx.put(job_id, new)
        return new

    return await run(store, index, change)


async def delete(store: Store, index: Index | None, job_id: str) -> bool:
    """Delete a job in any status (an expired one too); ``False`` if there is none."""

    async def change(tx: Tx) -> Job | None:
        await tx.load([job_id], fresh=True)
        job = tx.get(job_id)
        if job is not None:
            tx.put(job_id, None)
        return job

    deleted = await run(store, index, change)
    if deleted is not None and deleted.unique_key is not None:
        await unique.release(store, deleted.unique_key, job_id)
    return deleted is not None


async def prune(store: Store, index: Index, limit: int, now: float) -> int:
    """Delete jobs past their ``expires_at``, oldest records first; returns how many."""

    async def drop(tx: Tx, job_id: str) -> bool:
        await tx.load([job_id])
        job = tx.get(job_id)
        if job is None or job.expires_at is None or job.expires_at > now:
            return False
        tx.put(job_id, None)
        return True

    async def prune_one(job_id: str, key: str | None) -> bool:
        dropped = await run(store, index, drop, job_id)
        if dropped and key is not None:
            await unique.release(store, key, job_id)
        return dropped

    expired = [(e.job.id, e.job.unique_key) for e in index.expired(now)[:limit] if e.job is not None]
    calls = [partial(prune_one, job_id, key) for job_id, key in expired]
    return sum(await concurrently(calls)) if calls else 0
