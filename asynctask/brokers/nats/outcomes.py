"""What workers write about the jobs they hold: outcomes, heartbeats, saves, and rescues.

Each is a transaction on the job's record fenced by its token (the job must be ``running`` with
it) and by the record's revision. An outcome that spawns children or finishes a child writes the
job, the children and the parent counters in one atomic batch, so a parent never counts a child
that was not created, nor misses one that finished. An outcome spawning more than
:data:`SPAWN_CHUNK` jobs is written in several batches: the children of each earlier batch are
created and counted while the job still runs under its token, and the last batch applies the
outcome itself; if the lease is lost in between, the children already created stay, counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import msgspec

from asynctask.brokers import transitions
from asynctask.brokers.nats import records, unique
from asynctask.brokers.nats.index import Index
from asynctask.brokers.nats.store import Store, Write
from asynctask.brokers.nats.tx import KeyedLock, Tx, concurrently, run, run_each
from asynctask.models import Job, JobStatus, Lease, LeaseState, NewJob, Outcome

__all__ = ["SPAWN_CHUNK", "complete", "extend_leases", "rescue_expired", "save"]

#: Most children created by one atomic batch (each may touch a parent and its unique key's record
#: too: 3 writes per child).
SPAWN_CHUNK = 300
#: Characters of an error kept when a record must shrink to fit the server's max_payload.
_KEPT_ERROR = 16_384
#: Most outcomes of children of one parent written in one atomic batch.
_GROUP = 900


async def complete(
    store: Store, index: Index | None, outcomes: Sequence[Outcome], now: float, locks: KeyedLock
) -> list[bool]:
    """Apply outcomes; for each, ``False`` if its token was stale (nothing written).

    An outcome of a job the index holds, without a parent or children, is a single write decided
    from the index, all of them in flight together. The outcomes of children of one parent are
    one atomic batch (the parent's counter is written once for all of them), and this process's
    transactions on one parent take turns (``locks``). An outcome that spawns children, or whose
    job the index does not hold, is a transaction of its own.
    """
    applied = [False] * len(outcomes)
    plain: list[int] = []
    groups: dict[str | None, list[int]] = {}
    for i, outcome in enumerate(outcomes):
        known = index.get(outcome.job_id) if index is not None else None
        job = known.job if known is not None else None
        parent = job.parent_id if job is not None else None
        if job is not None and parent is None and not outcome.spawn:
            plain.append(i)
        elif parent is None or outcome.spawn:
            groups.setdefault(None, []).append(i)
        else:
            groups.setdefault(parent, []).append(i)

    def plan(n: int) -> tuple[bool, Write | None] | None:
        outcome = outcomes[plain[n]]
        known = index.get(outcome.job_id) if index is not None else None
        if known is None or known.job is None:
            return None
        if not transitions.held(known.job, outcome.token):
            return False, None  # a token that lost its job never holds it again
        new = _fitted(transitions.finish(known.job, outcome, now), store.record_limit)
        return True, Write(new.id, new, known.revision)

    async def alone(n: int) -> bool:
        return await _complete(store, index, outcomes[plain[n]], now)

    async def quick() -> None:
        for i, flag in zip(plain, await run_each(store, index, len(plain), plan, alone), strict=True):
            applied[i] = flag

    async def group(parent: str | None, indexes: Sequence[int]) -> None:
        batch = [outcomes[i] for i in indexes]
        async with locks.hold_all([parent] if parent is not None else []):
            if parent is None or len(batch) == 1:
                flags = [await _complete(store, index, outcome, now) for outcome in batch]
            else:
                flags = await run(store, index, _finish_all, batch, now)
        for i, flag in zip(indexes, flags, strict=True):
            applied[i] = flag

    calls = [quick] if plain else []
    for parent, indexes in groups.items():
        if parent is None:
            calls += [partial(group, None, [i]) for i in indexes]
            continue
        for start in range(0, len(indexes), _GROUP):
            calls.append(partial(group, parent, indexes[start : start + _GROUP]))
    await concurrently(calls)
    return applied


async def _finish_all(tx: Tx, batch: Sequence[Outcome], now: float) -> list[bool]:
    await tx.load([o.job_id for o in batch])
    return [await _finish(tx, outcome, outcome.spawn, now) for outcome in batch]


async def _complete(store: Store, index: Index | None, outcome: Outcome, now: float) -> bool:
    spawn = outcome.spawn
    while len(spawn) > SPAWN_CHUNK:
        chunk, spawn = spawn[:SPAWN_CHUNK], spawn[SPAWN_CHUNK:]
        if not await run(store, index, _spawn, outcome, chunk, now, True):
            return False
    return await run(store, index, _finish, outcome, spawn, now)


async def _spawn(
    tx: Tx, outcome: Outcome, children: Sequence[NewJob], now: float, fence: bool = False
) -> bool:
    """Create ``children`` (those whose id is free) and count them in, if the job is still held.

    ``fence`` writes the job back even if unchanged, so the batch applies only while it is held.
    """
    await tx.load([outcome.job_id])
    job = tx.get(outcome.job_id)
    if not transitions.held(job, outcome.token):
        return False
    if fence:
        tx.put(outcome.job_id, job)
    await tx.load([c.id for c in children], fresh=True)
    for child in children:
        current = tx.get(child.id)
        if transitions.live(current, now):
            continue
        if child.unique_key is not None:
            if await unique.holder(tx, child.unique_key, now) is not None:
                continue  # not stored, so not waited for
            unique.take(tx, child.unique_key, child.id)
        tx.put(child.id, transitions.create(child, now, current))
        if child.parent_id is not None:
            await _count(tx, child.parent_id, +1, now)
    return True


async def _finish(tx: Tx, outcome: Outcome, spawn: Sequence[NewJob], now: float) -> bool:
    if not await _spawn(tx, outcome, spawn, now):
        return False
    job = tx.get(outcome.job_id)  # read again: spawning may have raised its pending
    assert job is not None
    job = _fitted(transitions.finish(job, outcome, now), tx.record_limit)
    tx.put(job.id, job)
    if job.status.finished and job.parent_id is not None:
        await _count(tx, job.parent_id, -1, now)
    return True


def _fitted(job: Job, limit: int) -> Job:
    """``job``, or, if its record is over the server's limit, failed without its result.

    Only a result or an error can grow a running job's record past what its publish fitted
    in; reporting it would fail for ever, so the job fails with the reason instead.
    """
    size = len(records.encode(job))
    if size <= limit:
        return job
    reason = (
        f"the job's record with its result is {size} bytes; the NATS server accepts {limit} "
        "(raise max_payload in the server's configuration)"
    )
    error = reason if not job.error else f"{reason}\n\n{job.error[-_KEPT_ERROR:]}"
    status = JobStatus.FAILED if job.status in (JobStatus.SUCCEEDED, JobStatus.WAITING) else job.status
    return msgspec.structs.replace(job, result=None, error=error, status=status)


async def _count(tx: Tx, parent_id: str, delta: int, now: float) -> None:
    """Count a child in or out of its parent, if the parent exists."""
    await tx.load([parent_id])
    parent = tx.get(parent_id)
    if parent is not None:
        tx.put(parent_id, transitions.add_pending(parent, delta, now))


async def extend_leases(
    store: Store, index: Index | None, leases: Sequence[Lease], *, lease: float, now: float
) -> list[LeaseState]:
    """Extend leases still held with these tokens; ``LOST`` for the others."""

    def plan(n: int) -> tuple[LeaseState, Write | None] | None:
        held = leases[n]
        known = index.get(held.job_id) if index is not None else None
        if known is None or known.job is None:
            return None
        if not transitions.held(known.job, held.token):
            return LeaseState.LOST, None
        job, state = transitions.extend(known.job, now, lease)
        return state, Write(job.id, job, known.revision)

    async def extend(tx: Tx, held: Lease) -> LeaseState:
        await tx.load([held.job_id])
        job = tx.get(held.job_id)
        if job is None or not transitions.held(job, held.token):
            return LeaseState.LOST
        job, state = transitions.extend(job, now, lease)
        tx.put(job.id, job)
        return state

    async def slow(n: int) -> LeaseState:
        return await run(store, index, extend, leases[n])

    return await run_each(store, index, len(leases), plan, slow)


async def save(
    store: Store,
    index: Index | None,
    job_id: str,
    token: int,
    *,
    state: bytes | None,
    result: bytes | None,
) -> bool:
    """Persist a running job's state and/or result now, fenced by ``token``."""

    async def write(tx: Tx) -> bool:
        await tx.load([job_id])
        job = tx.get(job_id)
        if job is None or not transitions.held(job, token):
            return False
        tx.put(job_id, transitions.save(job, state, result))
        return True

    return await run(store, index, write)


async def rescue_expired(store: Store, index: Index, limit: int, now: float) -> int:
    """Re-queue (or fail, with no retries left) running jobs whose lease expired."""

    async def rescue(tx: Tx, job_id: str) -> bool:
        await tx.load([job_id])
        job = tx.get(job_id)
        if job is None or job.status is not JobStatus.RUNNING:
            return False
        if job.lease_expires_at is None or job.lease_expires_at > now:
            return False
        job = transitions.rescue(job, now)
        tx.put(job_id, job)
        if job.status.finished and job.parent_id is not None:
            await _count(tx, job.parent_id, -1, now)
        return True

    lapsed = [e.job.id for e in index.lapsed(now)[:limit] if e.job is not None]
    calls = [partial(run, store, index, rescue, i) for i in lapsed]
    return sum(await concurrently(calls)) if calls else 0
