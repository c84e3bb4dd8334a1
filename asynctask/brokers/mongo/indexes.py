"""The MongoDB data model and every index, created idempotently by :func:`ensure_indexes`.

One collection, ``<prefix>.jobs``, holds one document per job (``_id`` is the job id):

==================  =========================================================================
field               meaning
==================  =========================================================================
task, queue         names
payload, state,     BSON binary (``meta`` is opaque workflow data, never read here)
result, meta
status              a :class:`~asynctask.models.JobStatus` value
priority, attempts, integers; ``token`` is the fencing token, bumped by every claim, never reset
max_retries, token
run_at, created_at, doubles: POSIX seconds from the injected clock
started_at, ...
phase               0 (``queued``) or 1 (``scheduled``); absent otherwise. The claim index
                    covers exactly the documents that have it.
seq, seq2           claim order among equal priority and run_at: ``seq`` is an ObjectId taken
                    each time the job enters the ready set; a batch promoted together shares
                    one ``seq`` and keeps its former order in ``seq2``
cseq                creation order (ObjectId), kept when an expired id is reused: the order
                    maintenance batches take jobs in
expires_at,         when a finished job expires (double, injected clock) and the BSON date the
expire_on           TTL index deletes it at (``expires_at`` plus a margin, on the wall clock)
lease_expires_at,   the lease of a running job; ``worker`` and ``claim`` name its holder and
worker, claim       the claim call that took it; ``done`` marks the completion call that ended it
parent_id, pending  the workflow counter (see :mod:`asynctask.brokers.mongo.workflows`)
journal, jat, ev,   workflow effects still to apply, when they were recorded, the event counter
ledger, hold        of this job; the effects applied to this job (without transactions); a
                    spawned child not yet released by its parent's outcome
headers             the job's headers as ``[name, value]`` pairs; absent when there are none
unique_key, ukey    the job's unique key, and the same key while the job is unfinished (see
                    :mod:`asynctask.brokers.mongo.unique`)
==================  =========================================================================

``<prefix>.workers`` is the worker registry (:mod:`asynctask.brokers.mongo.workers`).
``<prefix>.queues`` holds the queues' flow settings and ``<prefix>.locks`` the flow keys' locks
and token buckets (:mod:`asynctask.brokers.mongo.flow`); both are read by ``_id`` only. Reserved
for later: ``<prefix>.quarantine`` (records that cannot be decoded).
``<prefix>.meta`` holds the schema version (:func:`migrate`). Listings page by
``(created_at, _id)``, which every listing index ends with (keyset pagination).

Indexes are declared once, below. Creating an index that exists with the same definition is a
no-op on the server, so :func:`ensure_indexes` runs on every open; an index whose definition
changed in a later version gets a new name rather than a conflicting redefinition.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from asynctask.brokers.base import Migration

__all__ = ["INDEXES", "SCHEMA_VERSION", "ensure_indexes", "jobs_collection", "migrate"]

#: The version of the data model and indexes below; :func:`migrate` records it.
SCHEMA_VERSION = 2

_RUNNING = {"status": "running"}
_NEWEST = [("created_at", DESCENDING), ("_id", DESCENDING)]

INDEXES: tuple[IndexModel, ...] = (
    # The ready set in claim order: priority DESC, run_at, then publish order. Queued and
    # scheduled jobs only (``phase`` exists), so finished jobs never slow a claim down.
    IndexModel(
        [
            ("queue", ASCENDING),
            ("priority", DESCENDING),
            ("run_at", ASCENDING),
            ("phase", ASCENDING),
            ("seq", ASCENDING),
            ("seq2", ASCENDING),
        ],
        name="claim_order",
        partialFilterExpression={"phase": {"$exists": True}},
    ),
    # An idle worker's look at its queue: anything queued, else the next scheduled job.
    IndexModel(
        [("queue", ASCENDING), ("phase", ASCENDING), ("run_at", ASCENDING)],
        name="queue_next",
        partialFilterExpression={"phase": {"$exists": True}},
    ),
    # Delayed jobs coming due (promote_due, a claim's own promotion, a wait's next due time).
    IndexModel(
        [("run_at", ASCENDING), ("queue", ASCENDING)],
        name="scheduled_due",
        partialFilterExpression={"phase": 1},
    ),
    # The rescue scan: running jobs by lease expiry.
    IndexModel(
        [("lease_expires_at", ASCENDING)],
        name="running_leases",
        partialFilterExpression={"status": "running"},
    ),
    # prune: finished jobs by expiry (``expires_at`` is only set on finished jobs).
    IndexModel(
        [("expires_at", ASCENDING)],
        name="expiry",
        partialFilterExpression={"expires_at": {"$exists": True}},
    ),
    # The TTL janitor: deletes a job some time after it expired, even if nobody prunes.
    IndexModel([("expire_on", ASCENDING)], name="ttl", expireAfterSeconds=0),
    # list_jobs, newest first, by each filter.
    IndexModel(_NEWEST, name="newest"),
    IndexModel([("status", ASCENDING), *_NEWEST], name="by_status"),
    IndexModel([("queue", ASCENDING), *_NEWEST], name="by_queue"),
    IndexModel([("task", ASCENDING), *_NEWEST], name="by_task"),
    IndexModel(
        [("parent_id", ASCENDING), *_NEWEST],
        name="by_parent",
        partialFilterExpression={"parent_id": {"$exists": True}},
    ),
    # Flow control: the running jobs of a queue, of a task (concurrency limits count them).
    IndexModel([("queue", ASCENDING)], name="running_by_queue", partialFilterExpression=_RUNNING),
    IndexModel([("task", ASCENDING)], name="running_by_task", partialFilterExpression=_RUNNING),
    # Unique jobs: one unfinished job per key (only unfinished jobs have ``ukey``).
    IndexModel(
        [("ukey", ASCENDING)],
        name="unique_active",
        unique=True,
        partialFilterExpression={"ukey": {"$exists": True}},
    ),
    # Workflow effects left behind by a crash, for repair (without transactions).
    IndexModel([("jat", ASCENDING)], name="journal", partialFilterExpression={"jat": {"$exists": True}}),
    # Spawned children whose parent's outcome never applied (without transactions).
    IndexModel([("hold.j", ASCENDING)], name="held", partialFilterExpression={"hold": {"$exists": True}}),
)


def jobs_collection(prefix: str) -> str:
    """The name of the jobs collection for a collection prefix."""
    return f"{prefix}.jobs"


async def ensure_indexes(collection: Any) -> list[str]:
    """Create every index that is missing (a no-op for those that exist); returns their names."""
    names: list[str] = await collection.create_indexes(list(INDEXES))
    return names


async def migrate(database: Any, prefix: str) -> Migration:
    """Create the indexes and record :data:`SCHEMA_VERSION`; says what it did. Idempotent."""
    meta = database[f"{prefix}.meta"]
    found = await meta.find_one({"_id": "schema"})
    before = None if found is None else int(found["version"])
    await ensure_indexes(database[jobs_collection(prefix)])
    after = max(before or 0, SCHEMA_VERSION)
    await meta.update_one({"_id": "schema"}, {"$max": {"version": after}}, upsert=True)
    return Migration(before, after)
