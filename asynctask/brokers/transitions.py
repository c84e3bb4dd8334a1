"""The protocol's state changes as pure functions: a job record in, the next record out.

Each rule of :mod:`asynctask.brokers.base` that changes one job (its initial status, a claim, an
outcome, a rescue, the parent count-out, cancel, pause, resume, retry -> scheduled or queued) is
written here once, for the brokers that keep whole job records in Python: the in-memory
reference applies them to its dict, the NATS broker to records it writes under a
compare-and-set. Nothing here reads a clock or the network: ``now`` is passed in. (The SQL, Lua
and MongoDB brokers restate the same rules in their own languages; the contract suite and its
differential test hold them to these.)
"""

from __future__ import annotations

import msgspec

from asynctask.brokers.rules import lease_expired
from asynctask.models import Job, JobStatus, LeaseState, NewJob, Outcome, OutcomeKind

__all__ = [
    "CANCELLABLE",
    "add_pending",
    "cancel",
    "claim",
    "create",
    "extend",
    "finish",
    "held",
    "holds_key",
    "live",
    "pause",
    "promote",
    "rescue",
    "resume",
    "retry",
    "save",
]

_replace = msgspec.structs.replace
CANCELLABLE = frozenset({JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.PAUSED, JobStatus.WAITING})


def holds_key(job: Job | None, key: str, now: float) -> bool:
    """Whether ``job`` holds the unique key ``key``: it took it, is live and unfinished."""
    return job is not None and job.unique_key == key and live(job, now) and not job.status.finished


def live(job: Job | None, now: float) -> bool:
    """Whether ``job`` exists for readers: present and not past its ``expires_at``."""
    return job is not None and (job.expires_at is None or job.expires_at > now)


def held(job: Job | None, token: int) -> bool:
    """Whether ``job`` is running under ``token`` (the fence of every worker write)."""
    return job is not None and job.status is JobStatus.RUNNING and job.token == token


def create(new: NewJob, now: float, prior: Job | None) -> Job:
    """A new job; over an expired one, its token keeps counting up so old owners stay fenced."""
    if new.pending > 0:
        status = JobStatus.WAITING
    else:
        status = JobStatus.SCHEDULED if new.run_at > now else JobStatus.QUEUED
    return Job(
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
        token=prior.token if prior is not None else 0,
    )


def claim(job: Job, now: float, lease: float) -> Job:
    """A ready job, leased: running, one more attempt, a new fencing token."""
    return _replace(
        job,
        status=JobStatus.RUNNING,
        attempts=job.attempts + 1,
        token=job.token + 1,
        started_at=now,
        lease_expires_at=now + lease,
    )


def promote(job: Job) -> Job:
    """A scheduled job whose time has come."""
    return _replace(job, status=JobStatus.QUEUED)


def add_pending(parent: Job, delta: int, now: float) -> Job:
    """Count a child in (+1) or out (-1); a waiting parent at 0 is queued for its finish phase."""
    pending = max(parent.pending + delta, 0)
    if parent.status is JobStatus.WAITING and pending == 0:
        return _replace(parent, pending=0, status=JobStatus.QUEUED, attempts=0, run_at=now)
    return _replace(parent, pending=pending)


def finish(job: Job, outcome: Outcome, now: float) -> Job:
    """``job`` (running, its spawned children already counted in) after ``outcome``."""
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
    return job


def extend(job: Job, now: float, lease: float) -> tuple[Job, LeaseState]:
    """A held job's lease pushed to ``now + lease``, and what its worker should be told."""
    job = _replace(job, lease_expires_at=now + lease)
    if job.cancel_requested:
        return job, LeaseState.CANCEL
    return job, LeaseState.PAUSE if job.pause_requested else LeaseState.OK


def save(job: Job, state: bytes | None, result: bytes | None) -> Job:
    """A held job with its state and/or result replaced (``None`` keeps the stored one)."""
    return _replace(
        job,
        state=state if state is not None else job.state,
        result=result if result is not None else job.result,
    )


def rescue(job: Job, now: float) -> Job:
    """A running job whose lease expired: queued again, or failed with no retries left."""
    error = lease_expired(job.lease_expires_at or now, job.attempts)
    if job.attempts > job.max_retries:
        return _replace(job, status=JobStatus.FAILED, error=error, finished_at=now, lease_expires_at=None)
    return _replace(job, status=JobStatus.QUEUED, error=error, lease_expires_at=None)


def cancel(job: Job, now: float, expires_at: float | None) -> Job | None:
    """A cancelled (or, when running, cancel-requested) job; ``None`` when nothing changes."""
    if job.status in CANCELLABLE:
        return _replace(job, status=JobStatus.CANCELLED, finished_at=now, expires_at=expires_at)
    if job.status is JobStatus.RUNNING:
        return _replace(job, cancel_requested=True)
    return None


def pause(job: Job) -> Job | None:
    """A parked (or, when running, pause-requested) job; ``None`` when nothing changes."""
    if job.status in (JobStatus.SCHEDULED, JobStatus.QUEUED):
        return _replace(job, status=JobStatus.PAUSED)
    if job.status is JobStatus.RUNNING:
        return _replace(job, pause_requested=True)
    return None


def resume(job: Job, now: float) -> Job | None:
    """A paused job queued again (scheduled while its ``run_at`` is ahead); ``None`` otherwise."""
    if job.status is JobStatus.PAUSED:
        status = JobStatus.SCHEDULED if job.run_at > now else JobStatus.QUEUED
        return _replace(job, status=status, pause_requested=False)
    return None


def retry(job: Job, now: float) -> Job | None:
    """A failed or cancelled job queued again with a fresh attempt count; ``None`` otherwise."""
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        return _replace(
            job,
            status=JobStatus.QUEUED,
            attempts=0,
            run_at=now,
            finished_at=None,
            expires_at=None,
            cancel_requested=False,
        )
    return None
