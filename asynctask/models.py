"""The records that cross the broker boundary.

Jobs are immutable :class:`msgspec.Struct` values: a broker returns a fresh ``Job`` for every
read, and a worker reports what happened with an :class:`Outcome` instead of mutating the job.
Times are POSIX timestamps (``float`` seconds) taken from the app's injected clock.
"""

from __future__ import annotations

import enum

import msgspec

__all__ = [
    "Job",
    "JobStatus",
    "Lease",
    "LeaseState",
    "NewJob",
    "Outcome",
    "OutcomeKind",
    "QueueStats",
    "WorkerInfo",
]


class JobStatus(enum.StrEnum):
    """Where a job is in its life.

    ``scheduled`` → ``queued`` → ``running`` → ``succeeded`` | ``failed`` | ``cancelled``.
    A failed job is the dead-letter: it is kept (until its expiry) for inspection and
    :meth:`App.retry <asynctask.App.retry>`.
    """

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    WAITING = "waiting"
    PAUSED = "paused"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class NewJob(msgspec.Struct, frozen=True, kw_only=True):
    """A job as it is handed to :meth:`Broker.enqueue`; the broker sets status and times."""

    id: str
    task: str
    queue: str
    payload: bytes
    priority: int = 0
    max_retries: int = 0
    timeout: float | None = None
    run_at: float
    #: The job that waits for this one (its subtask parent, group or chain).
    parent_id: str | None = None
    #: Children still to finish before this job may run; > 0 stores it as ``waiting``.
    pending: int = 0
    #: Opaque workflow data; brokers store and return it, never read it.
    meta: bytes | None = None
    #: String headers travelling with the job (the user's, and the W3C trace context); brokers
    #: store and return them as they are.
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    #: ``unique="active"``: no other unfinished job may hold this key (see :mod:`asynctask.flow`).
    unique_key: str | None = None


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """A stored job, as read back from a broker."""

    id: str
    task: str
    queue: str
    payload: bytes
    status: JobStatus
    priority: int = 0
    #: Attempts started so far (the running one included).
    attempts: int = 0
    #: Attempts allowed after the first one fails.
    max_retries: int = 0
    timeout: float | None = None
    run_at: float
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    lease_expires_at: float | None = None
    #: Fencing token: bumped by every claim; writes carrying an older token are rejected.
    token: int = 0
    #: The last error, with its traceback text.
    error: str | None = None
    state: bytes | None = None
    result: bytes | None = None
    #: When a finished job may be pruned; reads after this time treat it as gone.
    expires_at: float | None = None
    cancel_requested: bool = False
    pause_requested: bool = False
    #: The job that waits for this one (its subtask parent, group or chain).
    parent_id: str | None = None
    #: Children of this job that have not finished yet (while it is ``waiting``).
    pending: int = 0
    #: Opaque workflow data; brokers store and return it, never read it.
    meta: bytes | None = None
    #: The headers it was published with (``{}`` for none).
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    #: The key this job holds while it is unfinished (``unique="active"``), or ``None``.
    unique_key: str | None = None

    @property
    def has_result(self) -> bool:
        return self.result is not None


class OutcomeKind(enum.StrEnum):
    """What a worker reports at the end of an attempt."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Run again at ``Outcome.run_at``; the attempt counts.
    RETRY = "retry"
    #: Hand the lease back (graceful shutdown): queued again, the attempt does not count.
    RELEASE = "release"
    #: Stop after this step on request: ``paused`` until resumed; the attempt does not count.
    PAUSE = "pause"


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """The end of one attempt, applied only while ``token`` is still the job's token."""

    job_id: str
    token: int
    kind: OutcomeKind
    result: bytes | None = None
    error: str | None = None
    #: For ``RETRY``: when to run next.
    run_at: float | None = None
    #: For finished kinds: when the job record expires.
    expires_at: float | None = None
    #: Jobs enqueued atomically with this outcome, only if it applies (subtasks, next chain link).
    spawn: tuple[NewJob, ...] = ()
    #: Replaces the job's ``meta`` when given.
    meta: bytes | None = None


class Lease(msgspec.Struct, frozen=True):
    """A job held by a worker, as sent with a heartbeat."""

    job_id: str
    token: int


class LeaseState(enum.StrEnum):
    """A broker's answer for one lease in :meth:`Broker.extend_leases`."""

    #: Extended.
    OK = "ok"
    #: Extended, and a cancel was requested: stop the handler.
    CANCEL = "cancel"
    #: Extended, and a pause was requested: stop after the current step.
    PAUSE = "pause"
    #: The job is no longer ours (rescued, deleted or finished): stop the handler, write nothing.
    LOST = "lost"


class QueueStats(msgspec.Struct, frozen=True, kw_only=True):
    """One queue's jobs by status, read from the broker in one call (:meth:`Broker.queue_stats`).

    ``counts`` has an entry for every :class:`JobStatus` (zeros included) and counts live jobs:
    finished jobs past their ``expires_at`` are gone, as for every other read.
    ``oldest_ready_at`` is the smallest ``run_at`` among the queue's ready jobs (``queued``, or
    ``scheduled`` with ``run_at <= now``): how long the head of the queue has been waiting.

    >>> stats = QueueStats(queue="emails", counts={JobStatus.QUEUED: 3}, oldest_ready_at=100.0)
    >>> stats.count(JobStatus.QUEUED), stats.total, stats.oldest_ready_age(130.0)
    (3, 3, 30.0)
    """

    queue: str
    counts: dict[JobStatus, int]
    oldest_ready_at: float | None = None
    #: Whether the queue is paused (flow control); ``None`` where it was not looked up: a
    #: broker's ``queue_stats`` leaves it out, :meth:`App.queue_stats` fills it in.
    paused: bool | None = None

    def count(self, status: JobStatus) -> int:
        """Jobs of this queue in ``status``."""
        return self.counts.get(status, 0)

    @property
    def total(self) -> int:
        """Live jobs of this queue, whatever their status."""
        return sum(self.counts.values())

    def oldest_ready_age(self, now: float) -> float | None:
        """Seconds the oldest ready job has been waiting at ``now`` (``None``: nothing is ready)."""
        return None if self.oldest_ready_at is None else max(now - self.oldest_ready_at, 0.0)


def zero_counts() -> dict[JobStatus, int]:
    """A ``counts`` mapping with every status at 0 (brokers fill it in)."""
    return dict.fromkeys(JobStatus, 0)


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A live worker, as it records itself in the broker (:meth:`Broker.record_worker`).

    The worker writes it when it starts and at every heartbeat; the broker stamps
    ``heartbeat_at`` and ``expires_at`` (``heartbeat_at + ttl``, three heartbeats) from its clock,
    and :meth:`Broker.list_workers` leaves out records past ``expires_at``: a worker that died is
    gone three heartbeats later, one that stops cleanly at once.
    """

    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    #: The asynctask version the worker runs.
    version: str
    started_at: float
    heartbeat_at: float = 0.0
    expires_at: float = 0.0
    #: Handlers running at the last heartbeat.
    running: int = 0
    #: What it did so far, by outcome: ``claimed``, ``succeeded``, ``failed``, ``retried``,
    #: ``cancelled``, ``released``, ``lost`` (see :class:`~asynctask.WorkerStats`).
    counts: dict[str, int] = msgspec.field(default_factory=dict)
