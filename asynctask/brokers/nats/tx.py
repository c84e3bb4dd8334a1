"""Optimistic transactions over job records: read, decide, write everything fenced, or retry.

A transaction function reads the records it needs through a :class:`Tx`, decides with the pure
transitions of :mod:`asynctask.brokers.transitions`, and :meth:`Tx.put` s the records it changes.
:func:`run` then writes every changed record in one atomic batch, each under the revision it was
read at. If any of them moved on meanwhile, nothing is written and the function runs again on
fresh reads.

Reads may come from the broker's index (cheap, possibly a little behind) only where the outcome
is fenced anyway: a record read that way is always written back under its revision, or the
decision taken on it cannot be undone later (a token that no longer holds a job never holds it
again). Anything else, and every retry, reads from the server.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import anyio

from asynctask.brokers.nats import flowrecords
from asynctask.brokers.nats.client import Conflict
from asynctask.brokers.nats.index import Index
from asynctask.brokers.nats.layout import Layout
from asynctask.brokers.nats.records import Versioned
from asynctask.brokers.nats.store import Put, Store, Write
from asynctask.errors import BrokerError
from asynctask.models import Job

__all__ = ["KeyedLock", "Tx", "apply", "concurrently", "run", "run_each"]

T = TypeVar("T")

#: Attempts before a transaction gives up on a record that keeps changing.
_ATTEMPTS = 100


class Tx:
    """One attempt of a transaction: the records read, and those to write."""

    def __init__(self, store: Store, index: Index | None, *, fresh: bool) -> None:
        self._store = store
        self._index = index
        self._fresh = fresh
        self._base: dict[str, Versioned] = {}
        self._view: dict[str, Job | None] = {}
        self._dirty: dict[str, None] = {}
        #: Other records (flow records) by key: the data read, its revision, and any data to write.
        self._records: dict[str, tuple[bytes | None, int]] = {}
        self._record_puts: dict[str, tuple[bytes, Any]] = {}

    async def load_records(self, keys: Iterable[str]) -> None:
        """Read the non-job records of ``keys`` not read yet, from the server."""
        missing = [k for k in dict.fromkeys(keys) if k not in self._records]

        async def one(key: str) -> None:
            self._records[key] = await self._store.read_record(key)

        if missing:
            await concurrently([partial(one, key) for key in missing])

    @property
    def layout(self) -> Layout:
        return self._store.layout

    def record(self, key: str) -> bytes | None:
        """The data of a non-job record as this transaction sees it (it must have been loaded)."""
        put = self._record_puts.get(key)
        return put[0] if put is not None else self._records[key][0]

    def put_record(self, key: str, data: bytes, value: Any = None) -> None:
        """Write ``data`` under ``key`` at commit, fenced by the revision it was read at."""
        self._record_puts[key] = (data, value)

    async def load(self, job_ids: Iterable[str], *, fresh: bool = False) -> None:
        """Read the records of ``job_ids`` not read yet (``fresh``: from the server)."""
        missing = [i for i in dict.fromkeys(job_ids) if i not in self._base]
        if not missing:
            return
        if self._index is not None and not (fresh or self._fresh):
            # Only records holding a job come from the index: "absent" is confirmed by the server.
            for job_id in missing:
                known = self._index.get(job_id)
                if known is not None and known.job is not None:
                    self._base[job_id] = known
                    self._view[job_id] = known.job
            missing = [i for i in missing if i not in self._base]
        if missing:
            read = await self._store.read_many(missing)
            for job_id in missing:
                self._base[job_id] = read[job_id]
                self._view[job_id] = read[job_id].job

    @property
    def record_limit(self) -> int:
        """The largest record the server accepts, in bytes."""
        return self._store.record_limit

    def get(self, job_id: str) -> Job | None:
        """The record of ``job_id`` as this transaction sees it (it must have been loaded)."""
        return self._view[job_id]

    def put(self, job_id: str, job: Job | None) -> None:
        """Write ``job`` (``None``: delete) at commit; records are written in order of last put."""
        self._view[job_id] = job
        self._dirty.pop(job_id, None)
        self._dirty[job_id] = None

    def writes(self) -> list[Write | Put]:
        """The writes this attempt commits, each fenced by the revision it was read at."""
        writes: list[Write | Put] = [Write(i, self._view[i], self._base[i].revision) for i in self._dirty]
        for key, (data, value) in self._record_puts.items():
            writes.append(Put(key, data, self._records[key][1], value))
        return writes


async def run(store: Store, index: Index | None, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``fn(tx, *args)`` and commit its writes atomically, retrying on fresh reads after a conflict.

    Committed records are applied to ``index`` at once, so this broker reads its own writes.
    """
    fresh = False
    for attempt in range(_ATTEMPTS):
        tx = Tx(store, index, fresh=fresh)
        result = await fn(tx, *args)
        writes = tx.writes()
        if not writes:
            return result
        try:
            revisions = await store.write(writes)
        except Conflict:
            # The index usually has the newer revision a moment later; after that, ask the server.
            fresh = attempt >= 1
            # Spread the retries of writers racing for the same record.
            await anyio.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.05)))
            continue
        if index is not None:
            apply(index, writes, revisions)
        return result
    raise BrokerError(f"gave up after {_ATTEMPTS} attempts: the records kept changing while being written")


def apply(index: Index, writes: Sequence[Write | Put], revisions: Sequence[int]) -> None:
    """Show committed writes to the index at once, so this broker reads its own writes."""
    for write, revision in zip(writes, revisions, strict=True):
        if isinstance(write, Put):
            if flowrecords.indexed(write.key):
                index.apply_record(write.key, write.value, revision)
        else:
            index.apply(write.job_id, write.job, revision)


async def concurrently(calls: Iterable[Callable[[], Awaitable[T]]], *, limit: int = 256) -> list[T]:
    """Await every call, at most ``limit`` at a time (started in order); results in order.

    Every call runs to its end even if another fails; the first failure is then raised as is
    (not wrapped in an exception group), so callers see the broker's own errors.
    """
    pending = list(calls)
    if len(pending) == 1:
        return [await pending[0]()]
    results: list[T | None] = [None] * len(pending)
    errors: list[Exception] = []
    limiter = anyio.Semaphore(limit)

    async def one(i: int, call: Callable[[], Awaitable[T]]) -> None:
        async with limiter:
            try:
                results[i] = await call()
            except Exception as exc:
                errors.append(exc)

    async with anyio.create_task_group() as tg:
        for i, call in enumerate(pending):
            tg.start_soon(one, i, call)
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


async def run_each(
    store: Store,
    index: Index | None,
    count: int,
    plan: Callable[[int], tuple[T, Write | None] | None],
    slow: Callable[[int], Awaitable[T]],
) -> list[T]:
    """Items ``0..count-1`` as single-record writes planned from the index, all in flight at once.

    ``plan(i)`` returns the item's result and the write that makes it so (``None``: nothing to
    write), or ``None`` when the index cannot tell; those items, and the ones whose write met a
    conflict, are done by ``slow(i)`` (a full transaction on fresh reads) instead.
    """
    results: list[T | None] = [None] * count
    later: list[int] = []
    owners: list[int] = []
    writes: list[Write] = []
    for i in range(count):
        planned = plan(i)
        if planned is None:
            later.append(i)
            continue
        results[i], write = planned
        if write is not None:
            owners.append(i)
            writes.append(write)
    if writes:
        answers = await store.write_each(writes)
        for i, write, answer in zip(owners, writes, answers, strict=True):
            if isinstance(answer, Conflict):
                later.append(i)
            elif isinstance(answer, BaseException):
                raise answer
            elif index is not None:
                index.apply(write.job_id, write.job, answer)
    if later:
        for i, result in zip(later, await concurrently([partial(slow, i) for i in later]), strict=True):
            results[i] = result
    return results  # type: ignore[return-value]


class KeyedLock:
    """One lock per key, held only while in use: serialises this process's writers of one record.

    Writers in other processes still race, and the compare-and-set decides; this only keeps a
    worker's own concurrent completions of children of one parent from fighting each other.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[anyio.Lock, int]] = {}

    @asynccontextmanager
    async def hold_all(self, keys: Sequence[str]) -> AsyncIterator[None]:
        """Hold the locks of ``keys`` (give them sorted: two holders never wait on each other)."""
        async with AsyncExitStack() as stack:
            for key in keys:
                await stack.enter_async_context(self.hold(key))
            yield

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold the lock of ``key``."""
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = anyio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
