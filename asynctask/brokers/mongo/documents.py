"""Job documents: a :class:`NewJob` to a BSON document, a stored document back to a :class:`Job`.

The field layout is described once, in :mod:`asynctask.brokers.mongo.indexes`. Conventions:

* ``None`` is never stored: an optional field is absent instead, because the partial indexes
  select documents by the presence or type of a field (``phase``, ``journal``, ``hold``).
* Times are BSON doubles of POSIX seconds from the injected clock, so they round-trip exactly;
  ``expire_on`` is the one BSON date, for the TTL index only (see :func:`expire_on`).
* Values that come from users (ids, errors, payloads) are wrapped in ``$literal`` whenever they
  go into an update pipeline (:func:`lit`), so a string starting with ``$`` is never read as a
  field path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from asynctask.errors import ConfigurationError
from asynctask.models import Job, JobStatus, NewJob

__all__ = [
    "PHASE_QUEUED",
    "PHASE_SCHEDULED",
    "expire_on",
    "initial_status",
    "lit",
    "new_document",
    "phase_of",
    "to_job",
]

#: ``phase`` of a claimable job (``queued``) and of a delayed one (``scheduled``). The field is
#: absent in every other status; the claim index covers exactly the documents that have it.
PHASE_QUEUED = 0
PHASE_SCHEDULED = 1

_I64 = 1 << 63


def lit(value: Any) -> dict[str, Any]:
    """A constant inside an aggregation expression."""
    return {"$literal": value}


def initial_status(job: NewJob, now: float) -> JobStatus:
    """``waiting`` with children pending, else ``scheduled`` or ``queued`` by ``run_at``."""
    if job.pending > 0:
        return JobStatus.WAITING
    return JobStatus.SCHEDULED if job.run_at > now else JobStatus.QUEUED


def phase_of(status: JobStatus) -> int | None:
    """The ``phase`` field for a status (``None``: not in the claim index)."""
    if status is JobStatus.QUEUED:
        return PHASE_QUEUED
    if status is JobStatus.SCHEDULED:
        return PHASE_SCHEDULED
    return None


def _int64(name: str, value: int) -> int:
    if not -_I64 <= value < _I64:
        raise ConfigurationError(f"{name} must fit in a signed 64-bit integer, got {value}")
    return value


def new_document(job: NewJob, now: float, seq: ObjectId) -> dict[str, Any]:
    """The document of a freshly enqueued job; ``seq`` orders it among equal priority and run_at."""
    status = initial_status(job, now)
    doc: dict[str, Any] = {
        "_id": job.id,
        "task": job.task,
        "queue": job.queue,
        "payload": job.payload,
        "status": status.value,
        "priority": _int64("priority", job.priority),
        "attempts": 0,
        "max_retries": _int64("max_retries", job.max_retries),
        "run_at": float(job.run_at),
        "created_at": now,
        "token": 0,
        "pending": _int64("pending", job.pending),
        "seq": seq,
        "cseq": seq,
    }
    phase = phase_of(status)
    if phase is not None:
        doc["phase"] = phase
    if job.timeout is not None:
        doc["timeout"] = float(job.timeout)
    if job.parent_id is not None:
        doc["parent_id"] = job.parent_id
    if job.meta is not None:
        doc["meta"] = job.meta
    if job.unique_key is not None:
        # ``ukey`` is the key while the job is unfinished (the ``unique_active`` index), and
        # ``unique_key`` the key for good (see :mod:`~asynctask.brokers.mongo.unique`).
        doc["unique_key"] = doc["ukey"] = job.unique_key
    if job.headers:
        # Name-value pairs, not a subdocument: a header name may contain "." or start with "$".
        doc["headers"] = [[name, value] for name, value in job.headers.items()]
    return doc


def expire_on(expires_at: float, now: float, margin: float) -> datetime:
    """When the TTL index may delete a job that expires at ``expires_at`` (injected clock).

    The remaining lifetime is measured on the injected clock but elapses on the wall clock the
    server's TTL monitor uses, plus ``margin``: readers stop seeing the job at ``expires_at``
    (the injected clock decides), so the TTL index is only the janitor of last resort.
    """
    wall = time.time() + (expires_at - now) + margin
    return datetime.fromtimestamp(max(wall, 0.0), UTC)


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def to_job(doc: Mapping[str, Any]) -> Job:
    """The :class:`Job` a stored document describes."""
    return Job(
        id=doc["_id"],
        task=doc["task"],
        queue=doc["queue"],
        payload=bytes(doc["payload"]),
        status=JobStatus(doc["status"]),
        priority=doc.get("priority", 0),
        attempts=doc.get("attempts", 0),
        max_retries=doc.get("max_retries", 0),
        timeout=doc.get("timeout"),
        run_at=doc["run_at"],
        created_at=doc["created_at"],
        started_at=doc.get("started_at"),
        finished_at=doc.get("finished_at"),
        lease_expires_at=doc.get("lease_expires_at"),
        token=doc.get("token", 0),
        error=doc.get("error"),
        state=_bytes(doc.get("state")),
        result=_bytes(doc.get("result")),
        expires_at=doc.get("expires_at"),
        cancel_requested=bool(doc.get("cancel_requested", False)),
        pause_requested=bool(doc.get("pause_requested", False)),
        parent_id=doc.get("parent_id"),
        pending=doc.get("pending", 0),
        meta=_bytes(doc.get("meta")),
        headers=dict(doc.get("headers", ())),
        unique_key=doc.get("unique_key"),
    )
