"""Publishing: new job records, created only where no live job holds the id.

The common case costs one round trip: every job of a call (up to 1,000 at a time) is written
in one atomic batch that expects each key to be empty. If any key is taken (a duplicate id, an
expired job not pruned yet, a delete marker), the batch stores nothing and that chunk is done
again on fresh reads, job by job in order: a live job keeps its id (``False``), an expired one is
replaced by the new job (its token keeps counting up), and the first of two equal ids in one call
wins. A group and its members therefore appear together or not at all, as long as the call
holds at most 1,000 jobs; bigger calls are written in chunks, each atomic on its own.

Jobs with a ``unique_key`` (:mod:`.unique`) take the checked path at once: their keys' records
and holders are read, and each job stored is written with its key's record in one atomic batch
(so chunks of such calls hold at most 500 jobs). Within a call the first job of a key wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from asynctask.brokers import transitions
from asynctask.brokers.nats import unique
from asynctask.brokers.nats.client import MAX_BATCH, Conflict
from asynctask.brokers.nats.index import Index
from asynctask.brokers.nats.store import Store, Write
from asynctask.brokers.nats.tx import Tx, concurrently, run
from asynctask.models import NewJob

__all__ = ["enqueue"]

#: Chunks written at once: the server takes at most 50 open batches per stream.
_PARALLEL_BATCHES = 8


async def enqueue(store: Store, index: Index | None, jobs: Sequence[NewJob], now: float) -> list[bool]:
    """Store ``jobs``; for each, ``True`` if it was created, ``False`` if its id was taken."""
    created = [False] * len(jobs)
    first: dict[str, int] = {}
    for i, job in enumerate(jobs):
        first.setdefault(job.id, i)
    ids = list(first.values())
    # A keyed job is written with its key's record: two writes each.
    size = MAX_BATCH // 2 if any(job.unique_key is not None for job in jobs) else MAX_BATCH
    chunks = [ids[start : start + size] for start in range(0, len(ids), size)]

    async def write_chunk(chunk: list[int]) -> None:
        news = [jobs[i] for i in chunk]
        for i, flag in zip(chunk, await _create(store, index, news, now), strict=True):
            created[i] = flag

    await concurrently([partial(write_chunk, chunk) for chunk in chunks], limit=_PARALLEL_BATCHES)
    return created


async def _create(store: Store, index: Index | None, news: list[NewJob], now: float) -> list[bool]:
    if any(new.unique_key is not None for new in news):
        return await run(store, index, _create_checked, news, now)
    writes = [Write(new.id, transitions.create(new, now, None), 0) for new in news]
    try:
        revisions = await store.write(writes)
    except Conflict:
        return await run(store, index, _create_checked, news, now)
    if index is not None:
        for write, revision in zip(writes, revisions, strict=True):
            index.apply(write.job_id, write.job, revision)
    return [True] * len(news)


async def _create_checked(tx: Tx, news: list[NewJob], now: float) -> list[bool]:
    await tx.load([new.id for new in news], fresh=True)
    flags = []
    for new in news:
        current = tx.get(new.id)
        if transitions.live(current, now):
            flags.append(False)
            continue
        if new.unique_key is not None:
            if await unique.holder(tx, new.unique_key, now) is not None:
                flags.append(False)
                continue
            unique.take(tx, new.unique_key, new.id)
        tx.put(new.id, transitions.create(new, now, current))
        flags.append(True)
    return flags
