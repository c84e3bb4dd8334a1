"""The queries and updates of single-job reads and management calls (cancel, pause, resume, retry).

Pure functions: each returns the filter or the update pipeline; the broker runs them. Every read
hides dormant children (``hold``) and jobs past ``expires_at`` (:func:`visible`).
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from asynctask.brokers.mongo.documents import PHASE_QUEUED, PHASE_SCHEDULED, expire_on
from asynctask.brokers.mongo.expressions import REMOVE, cond, has_parent
from asynctask.brokers.mongo.journal import record
from asynctask.models import JobStatus

__all__ = ["CANCELLABLE", "cancel", "listing", "live", "pause", "resume", "retry", "visible"]

#: Statuses a cancel finishes at once (a running job gets ``cancel_requested`` instead).
CANCELLABLE = ["scheduled", "queued", "paused", "waiting"]


def visible(now: float) -> dict[str, Any]:
    """Jobs a reader sees: not dormant, not expired."""
    return {
        "hold": {"$exists": False},
        "$or": [{"expires_at": {"$exists": False}}, {"expires_at": {"$gt": now}}],
    }


def live(job_id: str, statuses: list[str], now: float) -> dict[str, Any]:
    """The visible job ``job_id``, if it is in one of ``statuses``."""
    return {"_id": job_id, "status": {"$in": statuses}, **visible(now)}


def listing(
    now: float, filters: dict[str, str | JobStatus | None], before: tuple[float, str] | None
) -> dict[str, Any]:
    """``list_jobs``: every given filter, and strictly after ``before`` in newest-first order."""
    query: dict[str, Any] = visible(now)
    for field, value in filters.items():
        if value is not None:
            query[field] = value.value if isinstance(value, JobStatus) else value
    if before is None:
        return query
    created_at, job_id = before
    after = {"$or": [{"created_at": {"$lt": created_at}}, {"created_at": created_at, "_id": {"$lt": job_id}}]}
    return {"$and": [query, after]}


def cancel(now: float, expires_at: float | None, ttl_margin: float) -> list[dict[str, Any]]:
    """Finish a waiting-to-run job as ``cancelled``, counting it out of its parent."""
    fields: dict[str, Any] = {
        "status": "cancelled",
        "finished_at": now,
        "phase": REMOVE,
        "ukey": REMOVE,
        "seq2": REMOVE,
        **record({"out": "$parent_id"}, has_parent(), now),
    }
    if expires_at is not None:
        fields.update(expires_at=expires_at, expire_on=expire_on(expires_at, now, ttl_margin))
    return [{"$set": fields}]


def pause() -> dict[str, Any]:
    """Park a scheduled or queued job."""
    return {"$set": {"status": "paused"}, "$unset": {"phase": "", "seq2": ""}}


def resume(now: float) -> list[dict[str, Any]]:
    """Queue a paused job again, keeping its ``run_at`` (``scheduled`` while that is ahead)."""
    later = {"$gt": ["$run_at", now]}
    fields = {
        "status": cond(later, "scheduled", "queued"),
        "phase": cond(later, PHASE_SCHEDULED, PHASE_QUEUED),
        "pause_requested": False,
        "seq": ObjectId(),
        "seq2": REMOVE,
    }
    return [{"$set": fields}]


def retry(now: float) -> list[dict[str, Any]]:
    """Queue a finished job again with a fresh attempt count, counting it back into its parent."""
    fields: dict[str, Any] = {
        "status": "queued",
        "attempts": 0,
        "run_at": now,
        "finished_at": REMOVE,
        "expires_at": REMOVE,
        "expire_on": REMOVE,
        "cancel_requested": False,
        "phase": PHASE_QUEUED,
        "seq": ObjectId(),
        "seq2": REMOVE,
        **record({"rin": "$parent_id"}, has_parent(), now),
    }
    return [{"$set": fields}]
