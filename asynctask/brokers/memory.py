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
from typing import Any

import anyio
import msgspec

from asynctask.brokers.base import Capabilities, Clock
from asynctask.brokers.memory_flow import FlowCalls, MemoryFlow
from asynctask.brokers.refcount import OpenCount
from asynctask.brokers.rules import lease_expired
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
    OutcomeKind,
    QueueStats,
    zero_counts,
)

__all__ = ["MemoryBroker"]

_replace = msgspec.structs.replace
_WAITABLE = frozenset({JobStatus.SCHEDULED, JobStatus.QUEUED})
_CANCELLABLE = frozenset({JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.PAUSED, JobStatus.WAITING})


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
    def from_url(cls, url: str, *, clock: Clock = time.time) -> MemoryBroker:
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
        if job is not None and job.expires_at is not None and job.expires_at <= self.clock():
            return None
        return job

    def _held(self, job_id: str, token: int) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or job.status is not JobStatus.RUNNING or job.token != token:
            return None
        return job

    def _move_due(self, queue: str, now: float) -> None:
        scheduled = self._scheduled.get(queue)
        while scheduled and scheduled[0][0] <= now:
            _, seq, job_id = heapq.heappop(scheduled)
            job = self._jobs.get(job_id)
            if job is not None and self._seq.get(job_id) == seq and job.status is JobStatus.SCHEDULED:
                self._store(_replace(job, status=JobStatus.QUEUED))

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
        expired = self._jobs.get(new.id)
        if new.pending > 0:
            status = JobStatus.WAITING
        else:
            status = JobStatus.SCHEDULED if new.run_at > now else JobStatus.QUEUED
        self._store(
            Job(
                id=new.id,
                task=new.task,
                queue=new.queue,
                payload=new.payload,
                status=status,
                priority=new.priority,
                max_retries=new.max_retries,
                timeout=new.timeout,
                run_at=new.run_at,
                created_at=now,
                parent_id=new.parent_id,
                pending=new.pending,
                meta=new.meta,
                headers=new.headers,
                unique_key=new.unique_key,
                token=expired.token if expired is not None else 0,
            )
        )
        if new.unique_key is not None:
            self._flow.unique[new.unique_key] = new.id
        return True

    def _add_pending(self, job_id: str, delta: int) -> None:
        """Count a child in (+1) or out (-1); a waiting parent at 0 is queued for its finish phase."""
        parent = self._jobs.get(job_id)
        if parent is None:
            return
        pending = max(parent.pending + delta, 0)
        if parent.status is JobStatus.WAITING and pending == 0:
            self._store(_replace(parent, pending=0, status=JobStatus.QUEUED, attempts=0, run_at=self.clock()))
        else:
            self._jobs[job_id] = _replace(parent, pending=pending)

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
        return self._store(
            _replace(
                job,
                status=JobStatus.RUNNING,
                attempts=job.attempts + 1,
                token=job.token + 1,
                started_at=now,
                lease_expires_at=now + lease,
            )
        )

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
            job = self._jobs[outcome.job_id]  # re-read: spawning may have raised its pending
            if outcome.meta is not None:
                job = _replace(job, meta=outcome.meta)
            kind = outcome.kind
            if kind is OutcomeKind.SUCCEEDED:
                result = outcome.result if outcome.result is not None else job.result
                status = JobStatus.WAITING if job.pending > 0 else JobStatus.SUCCEEDED
                job = _replace(job, status=status, result=result, lease_expires_at=None)
            elif kind is OutcomeKind.FAILED:
                job = _replace(job, status=JobStatus.FAILED, error=outcome.error)
            elif kind is OutcomeKind.CANCELLED:
                job = _replace(job, status=JobStatus.CANCELLED, error=outcome.error)
            elif kind is OutcomeKind.RETRY:
                run_at = outcome.run_at if outcome.run_at is not None else now
                status = JobStatus.SCHEDULED if run_at > now else JobStatus.QUEUED
                job = _replace(job, status=status, run_at=run_at, error=outcome.error, lease_expires_at=None)
            elif kind is OutcomeKind.PAUSE:
                job = _replace(
                    job,
                    status=JobStatus.PAUSED,
                    attempts=job.attempts - 1,
                    lease_expires_at=None,
                    pause_requested=False,
                )
            else:  # RELEASE: the attempt does not count
                job = _replace(job, status=JobStatus.QUEUED, attempts=job.attempts - 1, lease_expires_at=None)
            if job.status.finished:
                job = _replace(job, finished_at=now, lease_expires_at=None, expires_at=outcome.expires_at)
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
            self._jobs[job.id] = _replace(job, lease_expires_at=now + lease)
            if job.cancel_requested:
                states.append(LeaseState.CANCEL)
            else:
                states.append(LeaseState.PAUSE if job.pause_requested else LeaseState.OK)
        return states

    async def save(
        self, job_id: str, token: int, *, state: bytes | None = None, result: bytes | None = None
    ) -> bool:
        job = self._held(job_id, token)
        if job is None:
            return False
        self._jobs[job_id] = _replace(
            job,
            state=state if state is not None else job.state,
            result=result if result is not None else job.result,
        )
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
            self._store(_replace(job, status=JobStatus.QUEUED))
        return min(len(due), limit)

    async def rescue_expired(self, limit: int) -> int:
        now = self.clock()
        expired = [
            j
            for j in self._jobs.values()
            if j.status is JobStatus.RUNNING and j.lease_expires_at is not None and j.lease_expires_at <= now
        ][:limit]
        for job in expired:
            error = lease_expired(job.lease_expires_at or now, job.attempts)
            if job.attempts > job.max_retries:
                failed = _replace(
                    job, status=JobStatus.FAILED, error=error, finished_at=now, lease_expires_at=None
                )
                self._finished(self._store(failed))
            else:
                self._store(_replace(job, status=JobStatus.QUEUED, error=error, lease_expires_at=None))
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
        if job.status in _CANCELLABLE:
            job = self._store(
                _replace(job, status=JobStatus.CANCELLED, finished_at=self.clock(), expires_at=expires_at)
            )
            self._finished(job)
        elif job.status is JobStatus.RUNNING:
            job = self._jobs[job_id] = _replace(job, cancel_requested=True)
        return job

    async def pause(self, job_id: str) -> Job | None:
        job = self._live(job_id)
        if job is None:
            return None
        if job.status in (JobStatus.SCHEDULED, JobStatus.QUEUED):
            job = self._store(_replace(job, status=JobStatus.PAUSED))
        elif job.status is JobStatus.RUNNING:
            job = self._jobs[job_id] = _replace(job, pause_requested=True)
        return job

    async def resume(self, job_id: str) -> Job | None:
        job = self._live(job_id)
        if job is None:
            return None
        if job.status is JobStatus.PAUSED:
            # A delayed job keeps its time: resumed before it, it is scheduled again.
            status = JobStatus.SCHEDULED if job.run_at > self.clock() else JobStatus.QUEUED
            job = self._store(_replace(job, status=status, pause_requested=False))
        return job

    async def retry(self, job_id: str) -> Job | None:
        job = self._live(job_id)
        if job is None:
            return None
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            if job.unique_key is not None:
                holder = self._flow.holder(self._jobs, job.unique_key, self.clock())
                if holder is not None and holder.id != job.id:
                    return job  # its key is taken by a newer job: left finished
                self._flow.unique[job.unique_key] = job.id
            parent = self._jobs.get(job.parent_id) if job.parent_id is not None else None
            if parent is not None and parent.status is JobStatus.WAITING:
                self._add_pending(parent.id, +1)
            job = self._store(
                _replace(
                    job,
                    status=JobStatus.QUEUED,
                    attempts=0,
                    run_at=self.clock(),
                    finished_at=None,
                    expires_at=None,
                    cancel_requested=False,
                )
            )
        return job

    async def delete(self, job_id: str) -> bool:
        self._seq.pop(job_id, None)
        self._flow.forget(job_id)
        return self._jobs.pop(job_id, None) is not None
