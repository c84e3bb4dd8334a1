"""Publishing on Postgres: the ``enqueue`` statements' parameters, and running them.

A publish is one statement, one round trip: ``enqueue_one`` for a single job (the common call,
its columns as scalars), ``enqueue`` for a batch (its columns as arrays, unnested server-side;
outside a transaction ``enqueue_fresh`` first, see :func:`_insert_batch`).
Both follow the same rules (see ``queries.sql``): an existing live id is kept, an expired record
is replaced, a live unique key keeps a job out, and the queues of the jobs written are notified.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import msgspec

from asynctask.models import NewJob

__all__ = ["enqueue_columns", "insert", "insert_jobs"]

_UNIQUE_ATTEMPTS = 3
_JSON = msgspec.json.Encoder()


async def insert(
    runner: Any, queries: Mapping[str, str], jobs: Sequence[NewJob], *, now: float, channel: str, notify: bool
) -> tuple[list[bool], list[str]]:
    """Insert ``jobs`` on ``runner`` (a connection); which were created, and the parent ids of
    those created."""
    if len(jobs) == 1:
        job = jobs[0]
        args: tuple[Any, ...] = (
            *(job.id, job.task, job.queue, job.payload, job.priority, job.max_retries, job.timeout),
            *(job.run_at, now, channel, notify, job.parent_id, job.pending, job.meta, job.unique_key),
            _headers(job),
        )
        row = await insert_jobs(runner, queries["enqueue_one"], args, unique=job.unique_key is not None)
        if row is None:
            return [False], []
        return [True], [] if row["parent_id"] is None else [row["parent_id"]]
    # Within one batch the first job with an id wins, and the first with a unique key;
    # ON CONFLICT and NOT EXISTS cannot see the statement's own rows.
    first: dict[str, int] = {}
    keys: set[str] = set()
    for i, job in enumerate(jobs):
        if job.id in first or job.unique_key in keys:
            continue
        if job.unique_key is not None:
            keys.add(job.unique_key)
        first[job.id] = i
    unique = jobs if len(first) == len(jobs) else [jobs[i] for i in first.values()]
    cols = enqueue_columns(unique)
    args = (*cols[:8], now, channel, notify, *cols[8:])
    row = await _insert_batch(runner, queries, args, unique=bool(keys))
    parents: list[str] = row["parent_ids"] or []
    if row["ids"] is None:  # every job of ``unique`` was created
        if unique is jobs:
            return [True] * len(jobs), parents
        return [first.get(job.id) == i for i, job in enumerate(jobs)], parents
    created = set(row["ids"])
    return [first.get(job.id) == i and job.id in created for i, job in enumerate(jobs)], parents


async def _insert_batch(
    runner: Any, queries: Mapping[str, str], args: tuple[Any, ...], *, unique: bool
) -> Any:
    """Run the batch statement. Outside a transaction a plain insert goes first: new ids, the
    common batch, then skip the speculative insertion ``ON CONFLICT`` costs (server time of a
    10,000-job batch 70 -> 59 ms). A batch holding an id that exists fails it as a whole (nothing
    written) and runs again with the conflict rule. Inside the caller's transaction the failure
    would abort it, so the batch takes the conflict rule at once."""
    if not runner.is_in_transaction():
        try:
            return await insert_jobs(runner, queries["enqueue_fresh"], args, unique=unique)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "jobs_pkey":
                raise
    return await insert_jobs(runner, queries["enqueue"], args, unique=unique)


async def insert_jobs(runner: Any, query: str, args: tuple[Any, ...], *, unique: bool) -> Any:
    """Run an ``enqueue`` statement on ``runner``. With unique keys in the batch, two publishes
    racing for one key meet at ``jobs_unique_idx``: the loser runs again and then sees the holder
    (inside a transaction, a savepoint keeps that failure from aborting it)."""
    if not unique:
        return await runner.fetchrow(query, *args)
    for attempt in range(1, _UNIQUE_ATTEMPTS + 1):
        try:
            if runner.is_in_transaction():
                async with runner.transaction():
                    return await runner.fetchrow(query, *args)
            return await runner.fetchrow(query, *args)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "jobs_unique_idx" or attempt == _UNIQUE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def enqueue_columns(jobs: Sequence[NewJob]) -> tuple[list[Any] | None, ...]:
    """The ``enqueue`` query's array parameters, one list per column.

    In parameter order: ``$1..$8`` then (after now, channel and notify) ``$12..$16``. A column
    that holds nothing (all ``None``, or all ``0`` for the integer columns the query defaults)
    goes as ``None``: ``unnest`` pads a NULL array with NULLs, and every array sent costs a type
    check per element in asyncpg and a detoast and walk on the server.
    """
    return (
        [job.id for job in jobs],
        [job.task for job in jobs],
        [job.queue for job in jobs],
        [job.payload for job in jobs],
        _unless_zero([job.priority for job in jobs]),
        _unless_zero([job.max_retries for job in jobs]),
        _unless_null([job.timeout for job in jobs]),
        [job.run_at for job in jobs],
        _unless_null([job.parent_id for job in jobs]),
        _unless_zero([job.pending for job in jobs]),
        _unless_null([job.meta for job in jobs]),
        _unless_null([job.unique_key for job in jobs]),
        _unless_null([_headers(job) for job in jobs]),
    )


def _headers(job: NewJob) -> str | None:
    return _JSON.encode(job.headers).decode() if job.headers else None


def _unless_zero(column: list[int]) -> list[int] | None:
    return column if any(column) else None


def _unless_null(column: list[Any]) -> list[Any] | None:
    return None if column.count(None) == len(column) else column
