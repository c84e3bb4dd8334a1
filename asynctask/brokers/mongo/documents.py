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

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
from bson import Binary, Int64, ObjectId

from asynctask.brokers.rules import corrupt
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
    "problem",
    "to_job",
]

#: ``phase`` of a claimable job (``queued``) and of a delayed one (``scheduled``). The field is
#: absent in every other status; the claim index covers exactly the documents that have it.
PHASE_QUEUED = 0
PHASE_SCHEDULED = 1

_I64 = 1 << 63
logger = logging.getLogger("asynctask.brokers.mongo")


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


_STATUSES = {status.value: status for status in JobStatus}

# What each stored field must be: a description for errors, and the exact types of the values
# PyMongo decodes it to (``bool`` is not an integer; an int64 decodes as ``Int64``, a binary
# of another subtype than 0 as ``Binary``). ``type(v) in types`` is the whole check but for
# ``status`` and ``headers``; it keeps the check of a sound document near 1 us.
_INT = ("an integer", frozenset({int, Int64}))
_NUMBER = ("a number", frozenset({int, Int64, float}))
_TEXT = ("a string", frozenset({str}))
_BINARY = ("binary", frozenset({bytes, Binary}))
_FLAG = ("a boolean", frozenset({bool}))
_REQUIRED_FIELDS: tuple[tuple[str, tuple[str, frozenset[type]]], ...] = (
    ("task", _TEXT),
    ("queue", _TEXT),
    ("payload", _BINARY),
    ("status", ("a job status", frozenset({str}))),
    ("priority", _INT),
    ("attempts", _INT),
    ("max_retries", _INT),
    ("token", _INT),
    ("run_at", _NUMBER),
    ("created_at", _NUMBER),
)
_OPTIONAL_FIELDS: tuple[tuple[str, tuple[str, frozenset[type]]], ...] = (
    ("pending", _INT),
    ("timeout", _NUMBER),
    ("started_at", _NUMBER),
    ("finished_at", _NUMBER),
    ("lease_expires_at", _NUMBER),
    ("expires_at", _NUMBER),
    ("error", _TEXT),
    ("state", _BINARY),
    ("result", _BINARY),
    ("meta", _BINARY),
    ("parent_id", _TEXT),
    ("unique_key", _TEXT),
    ("headers", ("a list of name-value pairs", frozenset({list}))),
    ("cancel_requested", _FLAG),
    ("pause_requested", _FLAG),
)
_FIELDS = _REQUIRED_FIELDS + tuple(
    (name, (what, types | {type(None)})) for name, (what, types) in _OPTIONAL_FIELDS
)
# The value of a required field that cannot be read, in a damaged document's job.
_DEFAULTS: dict[str, Any] = {
    "task": "?",
    "queue": "?",
    "payload": b"",
    "status": JobStatus.FAILED.value,
    "priority": 0,
    "attempts": 0,
    "max_retries": 0,
    "token": 0,
    "run_at": 0.0,
    "created_at": 0.0,
    "pending": 0,
    "headers": [],
    "cancel_requested": False,
    "pause_requested": False,
}


def problem(doc: Mapping[str, Any]) -> str | None:
    """What is wrong with a stored document (the first problem), or ``None`` if it reads whole."""
    for name, (what, types) in _FIELDS:
        if type(doc.get(name)) not in types:
            return f"field {name} is missing" if doc.get(name) is None else f"field {name} is not {what}"
    if doc["status"] not in _STATUSES:
        return "field status is not a job status"
    headers = doc.get("headers")
    if headers and not all(_pair(item) for item in headers):
        return "field headers is not a list of name-value pairs"
    return None


def _pair(item: Any) -> bool:
    return type(item) is list and len(item) == 2 and type(item[0]) is str and type(item[1]) is str


def _readable(name: str, value: Any) -> bool:
    """Whether the field ``name`` of a damaged document can be read as it is."""
    return problem({**_DEFAULTS, name: value}) is None


def to_job(doc: Mapping[str, Any]) -> Job:
    """The :class:`Job` a stored document describes.

    A document that cannot be read whole (see :mod:`asynctask.brokers.rules`) reads as a
    ``failed`` job carrying ``corrupt job record: <the first problem>`` (or the error it was
    quarantined with), with every field that could be read and defaults for the others, and
    is logged as a warning; claims quarantine such a job (see
    :mod:`~asynctask.brokers.mongo.quarantine`).
    """
    reason = problem(doc)
    if reason is None:
        return _job(doc)
    read = {name: doc[name] for name, _ in _FIELDS if name in doc and _readable(name, doc[name])}
    job = _job({**_DEFAULTS, **read, "_id": doc.get("_id")})
    logger.warning(
        "job %s has a corrupt record (%s); it reads as failed",
        job.id,
        reason,
        extra={"action": "corrupt_job_record", "job_id": job.id},
    )
    error = job.error if job.error and job.error.startswith(corrupt("")) else corrupt(reason)
    return msgspec.structs.replace(job, status=JobStatus.FAILED, error=error, lease_expires_at=None)


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _job(doc: Mapping[str, Any]) -> Job:
    return Job(
        id=doc["_id"],
        task=doc["task"],
        queue=doc["queue"],
        payload=bytes(doc["payload"]),
        status=_STATUSES[doc["status"]],
        priority=doc["priority"],
        attempts=doc["attempts"],
        max_retries=doc["max_retries"],
        timeout=doc.get("timeout"),
        run_at=doc["run_at"],
        created_at=doc["created_at"],
        started_at=doc.get("started_at"),
        finished_at=doc.get("finished_at"),
        lease_expires_at=doc.get("lease_expires_at"),
        token=doc["token"],
        error=doc.get("error"),
        state=_bytes(doc.get("state")),
        result=_bytes(doc.get("result")),
        expires_at=doc.get("expires_at"),
        cancel_requested=bool(doc.get("cancel_requested")),
        pause_requested=bool(doc.get("pause_requested")),
        parent_id=doc.get("parent_id"),
        pending=doc.get("pending") or 0,
        meta=_bytes(doc.get("meta")),
        headers=dict(doc.get("headers") or ()),
        unique_key=doc.get("unique_key"),
    )
