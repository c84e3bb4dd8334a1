"""Claiming ready jobs in batches, each job by one claimer only; promoting delayed jobs.

MongoDB has no ``SELECT ... FOR UPDATE SKIP LOCKED``. A claim is three round trips, whatever
the batch size:

1. **look**: the ids of the first ``limit`` ready jobs, in claim order, from the partial
   ``claim_order`` index (queued jobs, and scheduled jobs that are due), and the queue's flow
   settings if it has any (``$unionWith``): then the claim takes the flow path instead;
2. **take**: one ``update`` command with three statements: promote the queue's due scheduled
   jobs to ``queued``, then move those of the looked-up ids that are still ``queued`` to
   ``running``, bumping ``attempts`` and the fencing ``token`` and stamping the claim's own
   ``claim`` mark, then mark those still ready that the take could not take (damaged: see
   :mod:`~asynctask.brokers.mongo.quarantine`). Each document update is atomic and requires
   ``status: queued``, so two claimers can never both take a job: the second one's filter no
   longer matches;
3. **read**: the documents carrying this claim's mark; a damaged one is quarantined, not returned.

A claimer that lost every job it looked at to others looks again (a random number of batches
further down the line, so that many claimers spread out), so an empty answer means the queue
had nothing ready. Without contention the first look is the answer, in exact claim order.

Claim order is ``priority`` (highest first), ``run_at``, then ``seq``: an ObjectId taken when
the job entered the ready set. Due scheduled jobs sort after queued ones with the same priority
and ``run_at`` (``phase``), in their own order; the promotion gives them one fresh ``seq`` and
keeps that order in ``seq2``, so the order seen by step 1 is the order they keep.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, UpdateMany

from asynctask.brokers.mongo.documents import PHASE_QUEUED, PHASE_SCHEDULED, problem, to_job
from asynctask.brokers.mongo.quarantine import POISON, TAKEABLE, poison_reason, quarantine
from asynctask.models import Job

__all__ = [
    "CLAIM_ORDER",
    "Diverted",
    "claim",
    "due",
    "look_pipeline",
    "promote",
    "promote_due",
    "ready",
    "take",
]

CLAIM_ORDER = [
    ("priority", DESCENDING),
    ("run_at", ASCENDING),
    ("phase", ASCENDING),
    ("seq", ASCENDING),
    ("seq2", ASCENDING),
]

# A claimer that keeps losing races gives up (returning nothing) after this many looks.
_MAX_LOOKS = 100
# How many batches down the line a claimer that lost a race may look next.
_SPREAD = 8


def ready(queue: str, now: float) -> dict[str, Any]:
    """Claimable jobs of ``queue``: queued, or scheduled and due."""
    return {
        "queue": queue,
        "phase": {"$exists": True},
        "$or": [{"phase": PHASE_QUEUED}, {"phase": PHASE_SCHEDULED, "run_at": {"$lte": now}}],
    }


def due(now: float, queue: str | None = None) -> dict[str, Any]:
    """Scheduled jobs whose time has come (of one queue, or of all)."""
    query: dict[str, Any] = {"phase": PHASE_SCHEDULED, "run_at": {"$lte": now}}
    if queue is not None:
        query["queue"] = queue
    return query


def promote(order_field: str) -> list[dict[str, Any]]:
    """Queue scheduled jobs, one batch: one fresh ``seq``, the former order kept in ``seq2``."""
    return [
        {"$set": {"status": "queued", "phase": PHASE_QUEUED, "seq": ObjectId(), "seq2": f"${order_field}"}}
    ]


class Diverted:
    """A plain claim's answer when flow control applies: nothing was claimed, take the flow path
    (:mod:`~asynctask.brokers.mongo.flow`). ``settings``: the queue's settings document as the
    look read it (``None``: it has none; ``"read"``: not looked up)."""

    __slots__ = ("settings",)

    def __init__(self, settings: dict[str, Any] | Literal["read"] | None) -> None:
        self.settings = settings


def look_pipeline(
    queue: str, now: float, *, skip: int, limit: int, settings: str | None, tasks: bool
) -> list[dict[str, Any]]:
    """The look as an aggregation: the ids (and tasks) of the first ready jobs in claim order, then
    the queue's settings document (from collection ``settings``, marked ``_flow``), if any, in
    the same round trip."""
    pipeline: list[dict[str, Any]] = [{"$match": ready(queue, now)}, {"$sort": dict(CLAIM_ORDER)}]
    if skip:
        pipeline.append({"$skip": skip})
    pipeline += [{"$limit": limit}, {"$project": {"_id": 1, "task": 1} if tasks else {"_id": 1}}]
    if settings is not None:
        union = [{"$match": {"_id": queue}}, {"$addFields": {"_flow": True}}]
        pipeline.append({"$unionWith": {"coll": settings, "pipeline": union}})
    return pipeline


async def claim(
    coll: Any,
    queue: str,
    limit: int,
    *,
    now: float,
    lease: float,
    worker: str,
    settings: str | None = None,
    limited: frozenset[str] = frozenset(),
) -> list[Job] | Diverted:
    """Claim up to ``limit`` ready jobs of ``queue``, in claim order.

    ``settings`` names the collection of queue settings: a queue that has a document there, or a
    look that finds a job of a task in ``limited``, diverts the claim (see :class:`Diverted`)
    before anything is written. The check rides on the look, so it costs no round trip.
    """
    lost = 0  # looks that lost nothing to others (they met damaged jobs)
    for attempt in range(_MAX_LOOKS):
        # After a lost race, look a random number of batches further down the line, so that
        # many claimers spread out instead of all fighting over the same first jobs.
        skip = random.randrange(min(attempt - lost, _SPREAD) + 1) * limit
        pipeline = look_pipeline(queue, now, skip=skip, limit=limit, settings=settings, tasks=bool(limited))
        ids = []
        async for doc in await coll.aggregate(pipeline):
            if doc.get("_flow"):
                return Diverted(doc)
            if limited and doc.get("task") in limited:
                return Diverted(None)
            ids.append(doc["_id"])
        if not ids:
            if skip:
                continue  # looked past the end of the line
            return []
        jobs, quarantined = await _take(coll, queue, ids, now=now, lease=lease, worker=worker)
        if jobs:
            return jobs
        if quarantined:
            lost += 1
            continue  # the damaged jobs are out of the way: look again from the front
    return []


async def take(coll: Any, queue: str, ids: list[str], *, now: float, lease: float, worker: str) -> list[Job]:
    """Move those of ``ids`` that are still ready to ``running`` (promoting the queue's due
    scheduled jobs first); the jobs taken, in the order of ``ids``. Damaged jobs met on the way
    are quarantined (:mod:`~asynctask.brokers.mongo.quarantine`), not returned."""
    return (await _take(coll, queue, ids, now=now, lease=lease, worker=worker))[0]


async def _take(
    coll: Any, queue: str, ids: list[str], *, now: float, lease: float, worker: str
) -> tuple[list[Job], int]:
    """:func:`take`, and how many damaged jobs it quarantined."""
    mark = ObjectId()
    take = {
        "$set": {
            "status": "running",
            "started_at": now,
            "lease_expires_at": now + lease,
            "worker": worker,
            "claim": mark,
        },
        "$inc": {"attempts": 1, "token": 1},
        "$unset": {"phase": "", "seq2": ""},
    }
    await coll.bulk_write(
        [
            UpdateMany(due(now, queue), promote("seq")),
            UpdateMany({"_id": {"$in": ids}, **TAKEABLE}, take),
            # Ready but damaged so that the take cannot take them: marked, for the read below.
            UpdateMany({"_id": {"$in": ids}, "$and": [ready(queue, now), POISON]}, {"$set": {"claim": mark}}),
        ],
        ordered=True,
    )
    position = {job_id: i for i, job_id in enumerate(ids)}
    docs = [doc async for doc in coll.find({"_id": {"$in": ids}, "claim": mark})]
    docs.sort(key=lambda doc: position[doc["_id"]])
    jobs, quarantined = [], 0
    for doc in docs:
        # A taken job has no phase any more; a marked damaged one still has it.
        reason = poison_reason(doc) if "phase" in doc else problem(doc)
        if reason is None:
            jobs.append(to_job(doc))
        else:
            quarantined += await quarantine(coll, {"_id": doc["_id"], "claim": mark}, reason, now)
    return jobs, quarantined


async def promote_due(coll: Any, now: float, limit: int) -> int:
    """Queue up to ``limit`` due scheduled jobs, oldest first; returns how many."""
    cursor = coll.find(due(now), projection={"_id": 1}, sort=[("cseq", ASCENDING)], limit=limit)
    ids = [doc["_id"] async for doc in cursor]
    if not ids:
        return 0
    result = await coll.update_many({"_id": {"$in": ids}, **due(now)}, promote("cseq"))
    return int(result.modified_count)
