"""Flow control on NATS: queue settings, and claims within the queue's and the tasks' limits.

The rules are those of :mod:`asynctask.brokers.base` ("Flow control"); the records are described
in :mod:`.flowrecords`: ``q.<queue>`` holds a queue's settings and token bucket, ``t.<task>`` a
task's token bucket.

**Two paths.** A claim of a queue whose record (as the index has it) holds the default settings,
made without task limits, is the plain claim of :mod:`.claiming`: no extra read, no extra round
trip. Otherwise :func:`claim` decides from the index and writes the jobs it claims *and* the flow
records it spends (the queue's; each limited task's whose jobs it takes) in **one atomic batch**,
each record under the revision the decision read. Two claimers deciding at once both write the
same record: one batch commits, the other stores nothing, waits until its index has caught up
with the stream and decides again. Token buckets therefore never hand out a token twice.

**Running counts come from the index**, not from counter records, and here is why that is exact
enough. A job only starts running through a claim, and every claim of a limited queue or task
writes that queue's or task's record in the same batch as the jobs it starts: the record's
revisions line up every claim that counts against the limit. Before deciding, a claim makes sure
its index holds every change up to the revision of each record it will write (:meth:`Index.covers
<asynctask.brokers.nats.index.Index.covers>`: the watch delivered it, or this broker wrote it
itself on top of a revision it covered); the batch then commits only if no record moved. So the
index has seen every job started under the limit, and can only be behind on jobs that *stopped*
running (an outcome, a rescue, a delete), which makes it count too many, never too few: a claim
may hold back a moment too long, never exceed the limit. Counting needs no write on completion,
rescue or delete, and nothing can drift, which a counter updated by every exit path could.

What this does not cover, as on Redis: jobs of a task claimed by a worker that does not declare
the task's limit (every worker running a task declares the same limits, as it runs the same
code), and claims that started before the worker's index saw a queue's first settings (the
watch delivers them within milliseconds; a queue's record is never deleted afterwards).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable

import anyio

from asynctask.brokers import transitions
from asynctask.brokers.nats.client import MAX_BATCH, Conflict
from asynctask.brokers.nats.flowrecords import FlowRecord, decode_flow, encode
from asynctask.brokers.nats.index import Entry, Index
from asynctask.brokers.nats.layout import QUEUE_PREFIX, Layout
from asynctask.brokers.nats.store import Put, Store, Write
from asynctask.errors import BrokerError, BrokerUnavailable
from asynctask.flow import Claimed, QueueSettings, Quota, RateLimit, TaskLimit, refill
from asynctask.models import Job, JobStatus

__all__ = ["change_settings", "claim", "configured", "configured_queues", "queue_settings"]

#: How many ready jobs a limited claim looks at, at most, for ``limit`` jobs (held-back included).
_WINDOW_FACTOR, _WINDOW_EXTRA, _WINDOW_MAX = 4, 64, 2048
#: Most jobs one limited claim takes: its atomic batch also holds the queue's record and one
#: record per limited task it takes jobs of (at worst one per job).
_MOST = (MAX_BATCH - 1) // 2
_ATTEMPTS = 100


def configured(index: Index, layout: Layout, queue: str) -> bool:
    """Whether the queue's record, as the index has it, holds anything but the defaults."""
    record: FlowRecord | None = index.record(layout.queue_key(queue))[0]
    return record is not None and not record.settings.is_default


class _Gate:
    """One decision's quotas: the queue's, and each limited task's (as in the memory broker)."""

    def __init__(
        self,
        index: Index,
        queue: str,
        record: FlowRecord,
        tasks: dict[str, tuple[TaskLimit, FlowRecord]],
        now: float,
        want: int,
    ) -> None:
        self.now, self.want = now, want
        self.held_back = False
        self.retry_at: float | None = None
        self.taken: Counter[str] = Counter()
        settings = record.settings
        self.budget = self._quota(record, settings.concurrency, settings.rate, index.running_in_queue[queue])
        self.quotas = {
            task: self._quota(rec, limit.concurrency, limit.rate, index.running_of_task[task])
            for task, (limit, rec) in tasks.items()
        }

    def _quota(
        self, record: FlowRecord, concurrency: int | None, rate: RateLimit | None, running: int
    ) -> Quota:
        free = math.inf if concurrency is None else concurrency - running
        tokens = math.inf if rate is None else refill(record.tokens, record.refilled_at, self.now, rate)
        return Quota(free, tokens, rate)

    def _hold(self, quota: Quota) -> None:
        self.held_back = True
        when = quota.tokens_at(self.now, self.want)
        if when is not None:
            self.retry_at = when if self.retry_at is None else min(self.retry_at, when)

    def pick(self, candidates: list[Entry]) -> list[Entry]:
        """The candidates to claim, in claim order, skipping those a limit holds back."""
        chosen: list[Entry] = []
        for entry in candidates:
            if len(chosen) >= self.want:
                break
            if not self.budget.allows():
                self._hold(self.budget)
                break
            job = _job(entry)
            quota = self.quotas.get(job.task)
            if quota is not None:
                if not quota.allows():
                    self._hold(quota)
                    continue
                quota.take()
                self.taken[job.task] += 1
            self.budget.take()
            chosen.append(entry)
        return chosen


async def claim(
    store: Store,
    index: Index,
    queue: str,
    limit: int,
    *,
    lease: float,
    now: float,
    limits: dict[str, TaskLimit],
) -> Claimed:
    """Claim up to ``limit`` ready jobs of ``queue`` within the flow limits (module docstring).

    A decision that spends no flow record (no job of a limited task chosen, the queue without
    limits: a worker whose registry has one limited task passes its limits with every claim)
    writes its jobs one by one, as the plain claim does, so one lost race costs one job; the
    claim then decides again for the rest.
    """
    layout = store.layout
    queue_key = layout.queue_key(queue)
    limit = min(limit, _MOST)
    window = min(limit * _WINDOW_FACTOR + _WINDOW_EXTRA, _WINDOW_MAX)
    result = Claimed()
    tried: set[str] = set()
    for attempt in range(_ATTEMPTS):
        record, queue_rev = index.record(queue_key)
        record = record or FlowRecord()
        settings = record.settings
        if settings.paused:
            result.held_back = index.has_ready(queue, now)
            break
        candidates, leftover = index.select(queue, now, window, tried)
        if not candidates:
            break
        revs = {queue_key: queue_rev} if settings.limited else {}
        tasks: dict[str, tuple[TaskLimit, FlowRecord]] = {}
        for task in sorted({_job(e).task for e in candidates} & limits.keys()):
            task_record, revs[layout.task_key(task)] = index.record(layout.task_key(task))
            tasks[task] = (limits[task], task_record or FlowRecord())
        if not all(index.covers(key, rev) for key, rev in revs.items()):
            await _catch_up(store, index, max(revs.values()))
            continue  # decide again on what the index holds now
        gate = _Gate(index, queue, record, tasks, now, limit - len(result))
        chosen = gate.pick(candidates)
        result.held_back, result.retry_at = gate.held_back, gate.retry_at if gate.held_back else None
        if not chosen:
            break
        writes: list[Write | Put] = [
            Write(_job(e).id, transitions.claim(_job(e), now, lease), e.rev) for e in chosen
        ]
        if settings.limited:
            writes.append(_spent(queue_key, record, gate.budget, queue_rev, now))
        for task in gate.taken:
            task_key = layout.task_key(task)
            writes.append(_spent(task_key, tasks[task][1], gate.quotas[task], revs[task_key], now))
        picked = {_job(e).id for e in chosen}
        unpicked = [e for e in leftover + candidates if _job(e).id not in picked]
        if len(writes) == len(chosen):  # no flow record to spend
            if await _claim_each(store, index, chosen, writes, result, tried):
                await _promote(store, index, unpicked)
                break
            continue
        try:
            revisions = await store.write(writes)
        except Conflict:
            # Another claimer (or a client) moved a job or a record: catch up, then decide again.
            await anyio.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.05)))
            await _catch_up(store, index, None)
            continue
        for write, revision in zip(writes, revisions, strict=True):
            if isinstance(write, Put):
                index.apply_record(write.key, write.value, revision, own=True)
            else:
                index.apply(write.job_id, write.job, revision)
                assert write.job is not None
                result.append(write.job)
        await _promote(store, index, unpicked)
        break
    else:
        if not result:
            raise BrokerError(f"gave up claiming from {queue!r} after {_ATTEMPTS} attempts: claims raced")
    return result


async def _claim_each(
    store: Store,
    index: Index,
    chosen: list[Entry],
    writes: list[Write | Put],
    result: list[Job],
    tried: set[str],
) -> bool:
    """Write each claim on its own; ``True`` when every one was stored (else the lost ones are
    marked, as the plain claim marks them, and left for the next decision)."""
    answers = await store.write_each(writes)
    for entry, write, answer in zip(chosen, writes, answers, strict=True):
        assert isinstance(write, Write) and write.job is not None
        tried.add(write.job_id)
        if isinstance(answer, Conflict):
            index.conflicted[write.job_id] = entry.rev
        elif isinstance(answer, BaseException):
            raise answer
        else:
            index.apply(write.job_id, write.job, answer)
            result.append(write.job)
    return all(isinstance(answer, int) for answer in answers)


def _spent(key: str, record: FlowRecord, quota: Quota, rev: int, now: float) -> Put:
    """The record written with a claim: its bucket's tokens spent (or as it was, without a rate)."""
    new = record.spent(quota.tokens, now) if quota.rate is not None else record
    return Put(key, encode(new), rev, new)


async def _promote(store: Store, index: Index, entries: list[Entry]) -> None:
    """Due scheduled jobs the claim left behind become queued, as a plain claim does (best effort)."""
    due = [e for e in entries if _job(e).status is JobStatus.SCHEDULED]
    if not due:
        return
    news = [transitions.promote(_job(e)) for e in due]
    answers = await store.write_each([Write(new.id, new, e.rev) for e, new in zip(due, news, strict=True)])
    for new, answer in zip(news, answers, strict=True):
        if isinstance(answer, int):
            index.apply(new.id, new, answer)


async def _catch_up(store: Store, index: Index, seq: int | None) -> None:
    """Wait until the index holds stream sequence ``seq`` (``None``: the stream's end now)."""
    timeout = store.conn.timeout
    if seq is None:
        info = await store.conn.api(f"STREAM.INFO.{store.layout.stream}")
        seq = int(info["state"].get("last_seq", 0))
        await index.caught_up(seq, timeout)  # a retry decides again either way
        return
    if not await index.caught_up(seq, timeout):
        raise BrokerUnavailable(
            f"NATS at {store.conn.where}: the job index did not catch up with the flow records in time"
        )


def _job(entry: Entry) -> Job:
    assert entry.job is not None
    return entry.job


# --- queue settings --------------------------------------------------------------------------


async def queue_settings(store: Store, queue: str) -> QueueSettings:
    """The queue's settings as stored now (read from the server)."""
    data, _ = await store.read_record(store.layout.queue_key(queue))
    record = decode_flow(data) if data else None
    return record.settings if record is not None else QueueSettings()


def configured_queues(index: Index) -> dict[str, QueueSettings]:
    """Every queue whose settings differ from the defaults, by name, from the index."""
    found = {
        Layout.name_of(key): record.settings
        for key, record in index.records(QUEUE_PREFIX)
        if not record.settings.is_default
    }
    return dict(sorted(found.items()))


async def change_settings(
    store: Store, index: Index | None, queue: str, change: Callable[[QueueSettings], QueueSettings]
) -> QueueSettings:
    """Rewrite the queue's record with ``change(settings)``, compare-and-set on a fresh read.

    The write reaches every worker's index through its watch, which wakes the queue's waiters.
    """
    key = store.layout.queue_key(queue)
    for attempt in range(_ATTEMPTS):
        data, rev = await store.read_record(key)
        record = (decode_flow(data) if data else None) or FlowRecord()
        new = record.with_settings(change(record.settings))
        # A write on top of a revision the index covers keeps the chain (Index.covers).
        own = index is not None and index.covers(key, rev)
        try:
            [revision] = await store.write([Put(key, encode(new), rev, new)])
        except Conflict:
            await anyio.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.05)))
            continue
        if index is not None:
            index.apply_record(key, new, revision, own=own)
        return new.settings
    raise BrokerError(f"gave up changing the settings of {queue!r}: its record kept changing")
