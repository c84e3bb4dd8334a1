"""Flow control for the in-memory broker: queue settings, token buckets, running counts, unique keys.

The rules are those of :mod:`asynctask.brokers.base` ("Flow control", "Unique jobs"); this module
keeps their state and answers one claim's questions through a :class:`Gate`. Queue settings live
in the process only: a snapshot file (``memory:///path``) keeps jobs, not settings.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping

from asynctask.flow import (
    Claimed,
    QueueSettings,
    Quota,
    RateLimit,
    TaskLimit,
    TaskLimits,
    normalize_limits,
    refill,
)
from asynctask.models import Job, JobStatus

__all__ = ["FlowCalls", "Gate", "MemoryFlow", "Quota"]


class MemoryFlow:
    """The flow state of one :class:`~asynctask.brokers.memory.MemoryBroker`."""

    def __init__(self) -> None:
        self.settings: dict[str, QueueSettings] = {}
        #: Bucket key ("queue:<q>", "task:<t>") -> (tokens, refilled_at).
        self.buckets: dict[str, tuple[float, float]] = {}
        #: Ids of the running jobs, kept by the broker's one write path.
        self.running: set[str] = set()
        #: Unique key -> the id of the job that took it last (checked when read: it may be finished).
        self.unique: dict[str, str] = {}

    def track(self, job: Job) -> None:
        """Follow a job that was just stored (is it running?)."""
        if job.status is JobStatus.RUNNING:
            self.running.add(job.id)
        else:
            self.running.discard(job.id)

    def forget(self, job_id: str) -> None:
        self.running.discard(job_id)

    # --- queue settings -------------------------------------------------------------------

    def get(self, queue: str) -> QueueSettings:
        return self.settings.get(queue, QueueSettings())

    def put(self, queue: str, settings: QueueSettings) -> QueueSettings:
        if self.get(queue).rate != settings.rate:
            self.buckets.pop(f"queue:{queue}", None)  # a changed rate starts with a full bucket
        if settings.is_default:
            self.settings.pop(queue, None)
        else:
            self.settings[queue] = settings
        return settings

    # --- unique keys ----------------------------------------------------------------------

    def holder(self, jobs: Mapping[str, Job], key: str, now: float) -> Job | None:
        """The unfinished job holding ``key``, if any."""
        job_id = self.unique.get(key)
        job = jobs.get(job_id) if job_id is not None else None
        if (
            job is None
            or job.unique_key != key
            or job.status.finished
            or (job.expires_at is not None and job.expires_at <= now)
        ):
            self.unique.pop(key, None)
            return None
        return job

    # --- claiming -------------------------------------------------------------------------

    def gate(
        self, jobs: Mapping[str, Job], queue: str, limits: TaskLimits | None, now: float, want: int
    ) -> Gate | None:
        """The gate of one claim, or ``None`` when no limit applies (the plain claim)."""
        settings = self.settings.get(queue)
        task_limits = normalize_limits(limits)
        if settings is None and not task_limits:
            return None
        return Gate(self, jobs, queue, settings or QueueSettings(), task_limits, now, want)

    def tokens(self, key: str, rate: RateLimit, now: float) -> float:
        tokens, refilled_at = self.buckets.get(key, (None, None))
        return refill(tokens, refilled_at, now, rate)

    def spend(self, key: str, rate: RateLimit, now: float, n: int) -> None:
        self.buckets[key] = (self.tokens(key, rate, now) - n, now)


class FlowCalls:
    """The broker protocol's flow-control calls, mixed into the memory broker."""

    _flow: MemoryFlow
    _jobs: dict[str, Job]
    clock: Callable[[], float]
    _wake: Callable[[str], None]

    async def find_unique(self, unique_key: str) -> Job | None:
        return self._flow.holder(self._jobs, unique_key, self.clock())

    async def queue_settings(self, queue: str) -> QueueSettings:
        return self._flow.get(queue)

    async def configured_queues(self) -> dict[str, QueueSettings]:
        return dict(sorted(self._flow.settings.items()))

    async def set_queue_limits(
        self, queue: str, *, concurrency: int | None, rate: RateLimit | None
    ) -> QueueSettings:
        current = self._flow.get(queue)
        settings = self._flow.put(queue, QueueSettings(current.paused, concurrency, rate))
        self._wake(queue)
        return settings

    async def set_queue_paused(self, queue: str, paused: bool) -> QueueSettings:
        current = self._flow.get(queue)
        settings = self._flow.put(queue, QueueSettings(paused, current.concurrency, current.rate))
        self._wake(queue)
        return settings


class Gate:
    """One claim's quotas: the queue's, and each limited task's (computed when first needed)."""

    def __init__(
        self,
        flow: MemoryFlow,
        jobs: Mapping[str, Job],
        queue: str,
        settings: QueueSettings,
        limits: dict[str, TaskLimit],
        now: float,
        want: int,
    ) -> None:
        self.flow, self.jobs, self.queue, self.settings = flow, jobs, queue, settings
        self.limits, self.now, self.want = limits, now, want
        self.paused = settings.paused
        self.held_back = self.paused
        self.retry_at: float | None = None
        self.taken: Counter[str] = Counter()
        #: How many held-back jobs the claim may pass over (see the broker protocol).
        self.window = min(4 * want + 64, 2048) - want
        self.quotas: dict[str, Quota] = {}
        self.budget = self._quota(
            f"queue:{queue}", settings.concurrency, settings.rate, lambda j: j.queue == queue
        )

    def _quota(
        self, key: str, concurrency: int | None, rate: RateLimit | None, match: Callable[[Job], bool]
    ) -> Quota:
        free = math.inf
        if concurrency is not None:
            free = concurrency - sum(1 for job_id in self.flow.running if match(self.jobs[job_id]))
        tokens = math.inf if rate is None else self.flow.tokens(key, rate, self.now)
        return Quota(free, tokens, rate)

    def _hold(self, quota: Quota) -> None:
        self.held_back = True
        when = quota.tokens_at(self.now, self.want)
        if when is not None:
            self.retry_at = when if self.retry_at is None else min(self.retry_at, when)

    def room(self) -> bool:
        """Whether the queue's own limits let one more job through (called while jobs are ready)."""
        if not self.budget.allows():
            self._hold(self.budget)
            return False
        return True

    def admits(self, job: Job) -> bool:
        """Whether the job's task limits let it through; a job refused stays queued."""
        limit = self.limits.get(job.task)
        if limit is None:
            return True
        quota = self.quotas.get(job.task)
        if quota is None:
            task = job.task
            quota = self.quotas[task] = self._quota(
                f"task:{task}", limit.concurrency, limit.rate, lambda other: other.task == task
            )
        if not quota.allows():
            self._hold(quota)
            return False
        return True

    def took(self, job: Job) -> None:
        self.budget.take()
        if job.task in self.limits:
            self.quotas[job.task].take()
            self.taken[job.task] += 1

    def result(self, claimed: list[Job]) -> Claimed:
        """Spend the tokens of the jobs claimed; the claim's answer."""
        rate = self.settings.rate
        if rate is not None and claimed:
            self.flow.spend(f"queue:{self.queue}", rate, self.now, len(claimed))
        for task, n in self.taken.items():
            task_rate = self.limits[task].rate
            if task_rate is not None:
                self.flow.spend(f"task:{task}", task_rate, self.now, n)
        return Claimed(claimed, held_back=self.held_back, retry_at=self.retry_at if self.held_back else None)
