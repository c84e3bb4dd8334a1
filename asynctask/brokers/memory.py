"""The in-memory broker: every semantic of the protocol, in one process, with no server.

It is the broker of ``asynctask demo`` and of fast unit tests. Jobs live in this process only;
``MemoryBroker(path=...)`` (URL ``memory:///path/to/file.json``) loads a snapshot on open and
writes one on close, so a worker can be stopped and started again without losing its queue.
Two processes must never use the same snapshot file at once. Flow control (queue settings, rate
buckets, unique keys) is in :mod:`.memory_flow`; queue settings are not part of the snapshot.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import anyio
import msgspec

from asynctask.brokers import transitions
from asynctask.brokers.base import Capabilities, Clock
from asynctask.brokers.memory_flow import FlowCalls, MemoryFlow
from asynctask.brokers.refcount import OpenCount
from asynctask.brokers.workers import WorkerCalls, WorkerTable
from asynctask.errors import ConfigurationError
from asynctask.flow import Claimed, TaskLimits
from asynctask.models import (
    Job,
    JobStatus,
    Lease,
    LeaseState,
    NewJob,
    Outcome,
    QueueStats,
    zero_counts,
)

__all__ = ["MemoryBroker"]


class MemoryBroker(FlowCalls, WorkerCalls):
    """A broker that keeps jobs in a dict; see the module docstring."""

    def __init__(self, *, path: str | os.PathLike[str] | None = None, clock: Clock = time.time) -> None:
        self.clock = clock
        self.path = Path(path) if path else None
        self.capabilities = Capabilities(push_wakeups=True)
        self._open = OpenCount(self._load, self._save)
        self._jobs: dict[str, Job] = {}
        # Per queue: ready heap of (-priority, run_at, seq, id) and scheduled heap of
        # (run_at, seq, id). Entries go stale when a job changes; ``_seq`` tells which is live.
        self._ready: dict[str, list[tuple[int, float, int, str]]] = {}
        self._scheduled: dict[str, list[tuple[float, int, str]]] = {}
        self._seq: dict[str, int] = {}
        self._counter = 0
        self._events: dict[str, anyio.Event] = {}
        self._workers = WorkerTable(lambda: self.clock())
        self._flow = MemoryFlow()

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = time.time) -> Self:
        rest = url.removeprefix("memory://")
        if rest.startswith("/") or rest == "":
            return cls(path=rest or None, clock=clock)
        raise ConfigurationError(
            f"memory broker URL must be memory:// or memory:///absolute/path, got {url!r}"
        )

    @property
    def display_url(self) -> str:
        return f"memory://{self.path}" if self.path else "memory://"

    def __repr__(self) -> str:
        return f"<MemoryBroker {self.display_url} jobs={len(self._jobs)}>"

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._open.is_open

    async def open(self) -> None:
        """Load the snapshot file, if there is one (at the first open)."""
        await self._open.open()

    async def close(self) -> None:
        """Write the snapshot file, if there is one (at the last close)."""
        await self._open.close()

    async def _load(self) -> None:
        if self.path is not None and self.path.exists() and not self._jobs:
            jobs = msgspec.json.decode(self.path.read_bytes(), type=list[Job])
            for job in sorted(jobs, key=lambda j: j.created_at):
                self._store(job)

    async def _save(self) -> None:
        if self.path is not None:
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_bytes(msgspec.json.encode(list(self._jobs.values())))
            tmp.replace(self.path)

    # --- internals -------------------------------------------------------------------------

    def _store(self, job: Job) -> Job:
        """Save ``job`` and index it by status; returns it."""
        self._jobs[job.id] = job
        self._counter += 1
        seq = self._seq[job.id] = self._counter
        self._flow.track(job)
        if job.status is JobStatus.QUEUED:
            heapq.heappush(self._ready.setdefault(job.queue, []), (-job.priority, job.run_at, seq, job.id))
            self._wake(job.queue)
        elif job.status is JobStatus.SCHEDULED:
            heapq.heappush(self._scheduled.setdefault(job.queue, []), (job.run_at, seq, job.id))
            self._wake(job.queue)
        return job

    def _wake(self, queue: str) -> None:
        event = self._events.pop(queue, None)
        if event is not None:
            event.set()

    def _live(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return job if transitions.live(job, self.clock()) else None

    def _held(self, job_id: str, token: int) -> Job | None:
        job = self._jobs.get(job_id)
        return job if transitions.held(job, token) else None

    def _move_due(self, queue: str, now: float) -> None:
        scheduled = self._scheduled.get(queue)
        while scheduled and scheduled[0][0] <= now:
            _, seq, job_id = heapq.heappop(scheduled)
            job = self._jobs.get(job_id)
            if job is not None and self._seq.get(job_id) == seq and job.status is JobStatus.SCHEDULED:
                self._store(transitions.promote(job))

    def _has_ready(self, queue: str) -> bool:
        ready = self._ready.get(queue)
        while ready:
            _, _, seq, job_id = ready[0]
            job = self._jobs.get(job_id)
            if job is not None and self._seq.get(job_id) == seq and job.status is JobStatus.QUEUED:
                return True
            heapq.heappop(ready)
        return False

    # --- publishing and claiming -----------------------------------------------------------

    async def enqueue(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[bool]:
        if connection is not None:
            raise ConfigurationError("the memory broker does not support transactional publish (connection=)")
        now = self.clock()
        return [self._create(new, now) for new in jobs]

    def _create(self, new: NewJob, now: float) -> bool:
        if self._live(new.id) is not None:
            return False
        if new.unique_key is not None and self._flow.holder(self._jobs, new.unique_key, now) is not None:
            return False
        # A new job under an expired job's id keeps counting tokens up, so the old owner's
        # token can never match the new job.
        self._store(transitions.create(new, now, self._jobs.get(new.id)))
        if new.unique_key is not None:
            self._flow.unique[new.unique_key] = new.id
        return True

    def _add_pending(self, job_id: str, delta: int) -> None:
        """Count a child in (+1) or out (-1); a waiting parent at 0 is queued for its finish phase."""
        parent = self._jobs.get(job_id)
        if parent is None:
            return
        counted = transitions.add_pending(parent, delta, self.clock())
        if counted.status is not parent.status:
            self._store(counted)  # queued for its finish phase
        else:
            self._jobs[job_id] = counted

    def _finished(self, job: Job) -> None:
        """Bookkeeping for a job that just entered a finished status."""
        if job.parent_id is not None:
            self._add_pending(job.parent_id, -1)

    async def claim(
        self, queue: str, limit: int, *, lease: float, worker: str, limits: TaskLimits | None = None
    ) -> list[Job]:
        now = self.clock()
        self._move_due(queue, now)
        claimed: list[Job] = []
        gate = self._flow.gate(self._jobs, queue, limits, now, limit)
        if gate is None:
            while len(claimed) < limit and self._has_ready(queue):
                _, _, _, job_id = heapq.heappop(self._ready[queue])
                claimed.append(self._lease(self._jobs[job_id], now, lease))
            return claimed
        if gate.paused:
            return Claimed(held_back=self._has_ready(queue))
        skipped: list[tuple[int, float, int, str]] = []
        while len(claimed) < limit and len(skipped) < gate.window and self._has_ready(queue) and gate.room():
            entry = heapq.heappop(self._ready[queue])
            job = self._jobs[entry[3]]
            if gate.admits(job):
                claimed.append(self._lease(job, now, lease))
                gate.took(job)
            else:
                skipped.append(entry)  # held back: it keeps its place
        for entry in skipped:
            heapq.heappush(self._ready[queue], entry)
        return gate.result(claimed)

    def _lease(self, job: Job, now: float, lease: float) -> Job:
        return self._store(transitions.claim(job, now, lease))

    async def complete(self, outcomes: Sequence[Outcome]) -> list[bool]:
        now = self.clock()
        applied: list[bool] = []
        for outcome in outcomes:
            if self._held(outcome.job_id, outcome.token) is None:
                applied.append(False)
                continue
            for child in outcome.spawn:
                if self._create(child, now) and child.parent_id is not None:
                    self._add_pending(child.parent_id, +1)
            # Re-read: spawning may have raised its pending.
            job = transitions.finish(self._jobs[outcome.job_id], outcome, now)
            self._store(job)
            if job.status.finished:
                self._finished(job)
            applied.append(True)
        return applied

    async def extend_leases(self, leases: Sequence[Lease], *, lease: float) -> list[LeaseState]:
        now = self.clock()
        states: list[LeaseState] = []
        for held in leases:
            job = self._held(held.job_id, held.token)
            if job is None:
                states.append(LeaseState.LOST)
                continue
            self._jobs[job.id], state = transitions.extend(job, now, lease)
            states.append(state)
        return states

    async def save(
        self, job_id: str, token: int, *, state: bytes | None = None, result: bytes | None = None
    ) -> bool:
        job = self._held(job_id, token)
        if job is None:
            return False
        self._jobs[job_id] = transitions.save(job, state, result)
        return True

    async def wait_for_jobs(self, queue: str, timeout: float, *, held: bool = False) -> None:
        now = self.clock()
        self._move_due(queue, now)
        if self._has_ready(queue) and not held:
            return
        scheduled = self._scheduled.get(queue)
        if scheduled:
            timeout = min(timeout, max(scheduled[0][0] - now, 0.0))
        event = self._events.get(queue)
        if event is None:
            event = self._events[queue] = anyio.Event()
        with anyio.move_on_after(timeout):
            await event.wait()

    # --- maintenance -----------------------------------------------------------------------

    async def promote_due(self, limit: int) -> int:
        now = self.clock()
        due = [j for j in self._jobs.values() if j.status is JobStatus.SCHEDULED and j.run_at <= now]
        for job in due[:limit]:
            self._store(transitions.promote(job))
        return min(len(due), limit)

    async def rescue_expired(self, limit: int) -> int:
        now = self.clock()
        expired = [
            j
            for j in self._jobs.values()
            if j.status is JobStatus.RUNNING and j.lease_expires_at is not None and j.lease_expires_at <= now
        ][:limit]
        for job in expired:
            rescued = self._store(transitions.rescue(job, now))
            if rescued.status.finished:
                self._finished(rescued)
        return len(expired)

    async def prune(self, limit: int) -> int:
        now = self.clock()
        gone = [j.id for j in self._jobs.values() if j.expires_at is not None and j.expires_at <= now][:limit]
        for job_id in gone:
            del self._jobs[job_id]
            self._seq.pop(job_id, None)
        return len(gone)

    # --- inspection ------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        return self._live(job_id)

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        task: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        before: tuple[float, str] | None = None,
    ) -> list[Job]:
        now = self.clock()
        found = [
            j
            for j in self._jobs.values()
            if (status is None or j.status is status)
            and (queue is None or j.queue == queue)
            and (task is None or j.task == task)
            and (parent_id is None or j.parent_id == parent_id)
            and (j.expires_at is None or j.expires_at > now)
            and (before is None or (j.created_at, j.id) < before)
        ]
        # A scan and a sort: fine for the jobs one process holds in memory.
        found.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return found[:limit]

    async def queue_stats(self) -> list[QueueStats]:
        now = self.clock()
        stats: dict[str, tuple[dict[JobStatus, int], list[float]]] = {}
        for job in self._jobs.values():
            if job.expires_at is not None and job.expires_at <= now:
                continue
            counts, ready = stats.setdefault(job.queue, (zero_counts(), []))
            counts[job.status] += 1
            if job.status is JobStatus.QUEUED or (job.status is JobStatus.SCHEDULED and job.run_at <= now):
                ready.append(job.run_at)
        return [
            QueueStats(queue=queue, counts=counts, oldest_ready_at=min(ready, default=None))
            for queue, (counts, ready) in sorted(stats.items())
        ]

    async def cancel(self, job_id: str, *, expires_at: float | None) -> Job | None:
        job = self._live(job_id)
        if job is None:
            return None
        changed = transitions.cancel(job, self.clock(), expires_at)
        if changed is None:
            return job
        if changed.status is JobStatus.RUNNING:  # asked to stop at its next heartbeat
            self._jobs[job_id] = changed
        else:
            self._finished(self._store(changed))
        return changed

    async def pause(self, job_id: str) -> Job | None:
        job = self._live(job_id)
        if job is None:
            return None
        changed = transitions.pause(job)
        if changed is None:
            return job
        if changed.status is JobStatus.RUNNING:  # asked to stop after its step
            self._jobs[job_id] = changed
            return changed
        return self._store(changed)

    async def resume(self, job_id: str) -> Job | None:
        job = self._live(job_id)
        if job is None:
            return None
        # A delayed job keeps its time: resumed before it, it is scheduled again.
        resumed = transitions.resume(job, self.clock())
        return job if resumed is None else self._store(resumed)

    async def retry(self, job_id: str) -> Job | None:
        job = self._live(job_id)
        if job is None:
            return None
        retried = transitions.retry(job, self.clock())
        if retried is None:  # not failed nor cancelled
            return job
        if job.unique_key is not None:
            holder = self._flow.holder(self._jobs, job.unique_key, self.clock())
            if holder is not None and holder.id != job.id:
                return job  # its key is taken by a newer job: left finished
            self._flow.unique[job.unique_key] = job.id
        parent = self._jobs.get(job.parent_id) if job.parent_id is not None else None
        if parent is not None and parent.status is JobStatus.WAITING:
            self._add_pending(parent.id, +1)
        return self._store(retried)

    async def delete(self, job_id: str) -> bool:
        self._seq.pop(job_id, None)
        self._flow.forget(job_id)
        return self._jobs.pop(job_id, None) is not None
