"""Leases: heartbeats that extend them, and the rescue of jobs whose lease expired.

A heartbeat for many jobs is (at most) one bulk write (each statement fenced by its token) and one read
of the flags the worker must act on (``cancel_requested``, ``pause_requested``). The read
reports a lease as held only if the job is still ``running`` with the same token, which is
exactly the condition under which the write applied: a token never comes back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, UpdateOne

from asynctask.brokers.mongo.documents import PHASE_QUEUED
from asynctask.brokers.mongo.expressions import REMOVE, has_parent
from asynctask.brokers.mongo.journal import record
from asynctask.brokers.mongo.outcomes import held
from asynctask.brokers.mongo.quarantine import quarantine
from asynctask.brokers.rules import lease_expired
from asynctask.models import Lease, LeaseState

__all__ = ["extend", "rescue", "rescue_candidates", "rescue_update"]


async def extend(
    coll: Any, leases: Sequence[Lease], until: float, *, known: Mapping[tuple[str, int], float]
) -> list[LeaseState]:
    """Push the expiry of the leases still held to ``until``; a state per lease.

    ``known`` holds the expiries this broker last wrote; a lease already expiring at ``until``
    is not written again (on a paused clock, heartbeats then cost one read).
    """
    unique = sorted({(lease.job_id, lease.token) for lease in leases})
    writes = [
        UpdateOne(held(job_id, token), {"$set": {"lease_expires_at": until}})
        for job_id, token in unique
        if known.get((job_id, token)) != until
    ]
    if writes:
        await coll.bulk_write(writes, ordered=False)
    ids = sorted({job_id for job_id, _ in unique})
    projection = {"token": 1, "status": 1, "cancel_requested": 1, "pause_requested": 1}
    states: dict[tuple[str, int], LeaseState] = {}
    async for doc in coll.find({"_id": {"$in": ids}, "status": "running"}, projection):
        if doc.get("cancel_requested"):
            state = LeaseState.CANCEL
        else:
            state = LeaseState.PAUSE if doc.get("pause_requested") else LeaseState.OK
        states[(doc["_id"], doc["token"])] = state
    return [states.get((lease.job_id, lease.token), LeaseState.LOST) for lease in leases]


def rescue_candidates(now: float, limit: int) -> dict[str, Any]:
    """``find`` arguments for running jobs whose lease expired, oldest job first, and running
    jobs whose lease is not a number (damaged: nothing else would ever end them)."""
    expired = [{"lease_expires_at": {"$lte": now}}, {"lease_expires_at": {"$not": {"$type": "number"}}}]
    return {
        "filter": {"status": "running", "$or": expired},
        "projection": {"token": 1, "attempts": 1, "max_retries": 1, "lease_expires_at": 1, "parent_id": 1},
        "sort": [("cseq", ASCENDING)],
        "limit": limit,
    }


def _problem(doc: Any) -> str | None:
    """What in a rescue candidate (as projected) the rescue cannot read."""
    lease = doc.get("lease_expires_at")
    if lease is None:
        return "a running job without lease_expires_at"
    if not isinstance(lease, (int, float)) or isinstance(lease, bool):
        return "field lease_expires_at is not a number"
    for name in ("token", "attempts", "max_retries"):
        value = doc.get(name)
        if value is None:
            return f"field {name} is missing"
        if not isinstance(value, int) or isinstance(value, bool):
            return f"field {name} is not an integer"
    return None


async def rescue(
    coll: Any, event: Callable[[dict[str, Any], Any, float], Awaitable[Any]], now: float, limit: int
) -> int:
    """Rescue up to ``limit`` running jobs whose lease expired (see :func:`rescue_update`); one
    whose counters cannot be read is quarantined instead. ``event`` applies a fenced update
    with workflow effects (:meth:`~asynctask.brokers.mongo.workflows.Workflows.event`)."""
    rescued = 0
    async for doc in coll.find(**rescue_candidates(now, limit)):
        reason = _problem(doc)
        if reason is not None:
            query = {**held(doc["_id"], doc.get("token")), "lease_expires_at": doc.get("lease_expires_at")}
            rescued += await quarantine(coll, query, reason, now)
            continue
        query, update = rescue_update(doc, now)
        if doc.get("parent_id") is not None and doc["attempts"] > doc["max_retries"]:
            changed = await event(query, update, now) is not None
        else:
            changed = bool((await coll.update_one(query, update)).modified_count)
        rescued += changed
    return rescued


def rescue_update(doc: Any, now: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The fenced update rescuing one expired job: queued again, or failed with no retries left.

    The lost attempt stays counted. The filter repeats the lease check, so a heartbeat that
    renewed the lease after the candidate was read wins.
    """
    lease = doc["lease_expires_at"]
    error = lease_expired(lease, doc["attempts"])
    query = {**held(doc["_id"], doc["token"]), "lease_expires_at": lease}
    fields: dict[str, Any] = {"error": {"$literal": error}, "lease_expires_at": "$$REMOVE"}
    if doc["attempts"] > doc["max_retries"]:
        entry = record({"out": "$parent_id"}, has_parent(), now)
        fields.update(status="failed", finished_at=now, ukey=REMOVE, **entry)
    else:
        fields.update(status="queued", phase=PHASE_QUEUED, seq=ObjectId())
    return query, [{"$set": fields}]
