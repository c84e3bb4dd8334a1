"""Turning rows of the ``jobs`` table into :class:`~asynctask.models.Job` values."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import msgspec

from asynctask.brokers.rules import corrupt
from asynctask.models import Job, JobStatus, LeaseState, QueueStats, WorkerInfo, zero_counts

__all__ = [
    "claimed_job",
    "lease_state",
    "queue_stats_from_rows",
    "to_job",
    "to_jobs",
    "to_worker",
    "worker_args",
]

_HEADERS = msgspec.json.Decoder(dict[str, str])
logger = logging.getLogger("asynctask.brokers.postgres")
_COUNTS = msgspec.json.Decoder(dict[str, int])
# A dict look-up, where JobStatus(value) costs the better part of a microsecond a row.
_STATUSES = {status.value: status for status in JobStatus}


def to_job(row: Any) -> Job:
    """A ``Job`` from a row holding every column of the ``jobs`` table (extra columns ignored).

    The schema types every column but ``headers`` (jsonb: any JSON). Headers that are not an
    object of strings make the row read as a ``failed`` job with the error
    ``corrupt job record: ...`` (see :mod:`asynctask.brokers.rules`), logged as a warning;
    :meth:`PostgresBroker.claim` fails such a job for good instead of running it.
    """
    headers, problem = _headers(row["headers"])
    job = Job(
        id=row["id"],
        task=row["task"],
        queue=row["queue"],
        payload=row["payload"],
        status=_STATUSES.get(row["status"]) or JobStatus(row["status"]),
        priority=row["priority"],
        attempts=row["attempts"],
        max_retries=row["max_retries"],
        timeout=row["timeout"],
        run_at=row["run_at"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        lease_expires_at=row["lease_expires_at"],
        token=row["token"],
        error=row["error"],
        state=row["state"],
        result=row["result"],
        expires_at=row["expires_at"],
        cancel_requested=row["cancel_requested"],
        pause_requested=row["pause_requested"],
        parent_id=row["parent_id"],
        pending=row["pending"],
        meta=row["meta"],
        headers=headers,
        unique_key=row["unique_key"],
    )
    return job if problem is None else _corrupt(job, problem)


def claimed_job(row: Any) -> Job:
    """:func:`to_job` for a row of the ``claim`` query, whose columns are the fields of a
    ``Job`` in order (then ``seq`` and ``diverted``): read by position, where 26 look-ups by
    name cost about as much again as building the ``Job`` (the claim's client time per job)."""
    (
        id_, task, queue, payload, status, priority, attempts, max_retries, timeout, run_at,
        created_at, started_at, finished_at, lease_expires_at, token, error, state, result,
        expires_at, cancel_requested, pause_requested, parent_id, pending, meta, raw_headers,
        unique_key, _seq, _diverted,
    ) = row  # fmt: skip
    headers, problem = _headers(raw_headers)
    job = Job(
        id=id_,
        task=task,
        queue=queue,
        payload=payload,
        status=_STATUSES.get(status) or JobStatus(status),
        priority=priority,
        attempts=attempts,
        max_retries=max_retries,
        timeout=timeout,
        run_at=run_at,
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
        lease_expires_at=lease_expires_at,
        token=token,
        error=error,
        state=state,
        result=result,
        expires_at=expires_at,
        cancel_requested=cancel_requested,
        pause_requested=pause_requested,
        parent_id=parent_id,
        pending=pending,
        meta=meta,
        headers=headers,
        unique_key=unique_key,
    )
    return job if problem is None else _corrupt(job, problem)


def _headers(raw: str | None) -> tuple[dict[str, str], str | None]:
    """The headers from their jsonb text (NULL, no headers, is the common case), and what is
    wrong with them (``None``: nothing)."""
    if raw is None:
        return {}, None
    try:
        return _HEADERS.decode(raw), None
    except msgspec.DecodeError:
        return {}, "field headers is not a JSON object of strings"


def _corrupt(job: Job, problem: str) -> Job:
    logger.warning(
        "job %s has a corrupt record (%s); it reads as failed",
        job.id,
        problem,
        extra={"action": "corrupt_job_record", "job_id": job.id},
    )
    return msgspec.structs.replace(
        job, status=JobStatus.FAILED, error=corrupt(problem), lease_expires_at=None
    )


def to_jobs(rows: Iterable[Any]) -> list[Job]:
    """``Job`` values from rows, in order."""
    return [to_job(row) for row in rows]


def queue_stats_from_rows(rows: Iterable[Any]) -> list[QueueStats]:
    """``QueueStats`` per queue from ``queue_stats`` rows (one per queue and status)."""
    counts: dict[str, dict[JobStatus, int]] = {}
    oldest: dict[str, float] = {}
    for row in rows:
        queue = row["queue"]
        counts.setdefault(queue, zero_counts())[JobStatus(row["status"])] = row["jobs"]
        ready = row["oldest_ready_at"]
        if ready is not None:
            oldest[queue] = min(ready, oldest.get(queue, ready))
    return [
        QueueStats(queue=queue, counts=counts[queue], oldest_ready_at=oldest.get(queue))
        for queue in sorted(counts)
    ]


def worker_args(info: WorkerInfo) -> tuple[Any, ...]:
    """The ``record_worker`` query's ``$1..$8`` and ``$11`` (now and the ttl go in between)."""
    return (
        info.id,
        info.host,
        info.pid,
        list(info.queues),
        info.concurrency,
        info.version,
        info.started_at,
        info.running,
        msgspec.json.encode(info.counts).decode(),
    )


def to_worker(row: Any) -> WorkerInfo:
    """A ``WorkerInfo`` from a row of the ``workers`` table."""
    return WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        queues=list(row["queues"]),
        concurrency=row["concurrency"],
        version=row["version"],
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        expires_at=row["expires_at"],
        running=row["running"],
        counts=_COUNTS.decode(row["counts"]),
    )


def lease_state(row: Any) -> LeaseState:
    """What a worker learns from an ``extend_leases`` row of a lease it still holds."""
    if row["cancel_requested"]:
        return LeaseState.CANCEL
    return LeaseState.PAUSE if row["pause_requested"] else LeaseState.OK
