"""Unique jobs on MongoDB: a partial unique index on the key an unfinished job holds.

A job published with a ``unique_key`` keeps it in ``unique_key`` for good and, while it is
unfinished, also in ``ukey``. The ``unique_active`` index is unique on ``ukey`` and covers only
the documents that have it (``partialFilterExpression: {ukey: {$exists: true}}``, which MongoDB 4.4
accepts and the test server, mongoeco, enforces), so the server itself refuses a second unfinished
job with the same key, atomically with the insert, however many publishers race:

* every write that finishes a job (an outcome, a cancel, a rescue that fails it) removes ``ukey``
  in the same single-document update; deleting or expiring a finished job changes nothing more;
* a publish whose key is taken is refused like an existing id (``False``); within a batch the
  first job with a key wins; a spawned child follows the same rule (its insert is refused);
* :meth:`~asynctask.brokers.mongo.MongoBroker.retry` of a finished job first writes ``ukey`` back
  on it (refused if another unfinished job holds the key: the job is left as it is), then
  queues it.

A ``ukey`` left on a finished job (a retry interrupted between its two writes) is *stale*: the
holder of a key is the document with that ``ukey`` only while its status is unfinished, and a
publish that meets a stale key removes it and tries again (:func:`free_stale`).
"""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from asynctask.brokers.mongo import changes

__all__ = ["INDEX", "UNFINISHED", "claim_key", "free_stale", "holder", "is_key_conflict"]

#: The name of the partial unique index on ``ukey``.
INDEX = "unique_active"
UNFINISHED = ["scheduled", "queued", "running", "waiting", "paused"]
_FINISHED = ["succeeded", "failed", "cancelled"]


def is_key_conflict(error: Any) -> bool:
    """Whether a duplicate-key error (a write error's details, or the exception) is about ``ukey``."""
    details = error.details if isinstance(error, DuplicateKeyError) else error
    details = details or {}
    pattern = details.get("keyPattern") or {}
    return "ukey" in pattern or f"index: {INDEX}" in str(details.get("errmsg", ""))


async def holder(coll: Any, key: str, now: float, *, session: Any = None) -> Any:
    """The visible, unfinished job holding ``key`` (its document), or ``None``."""
    query = {"ukey": key, "status": {"$in": UNFINISHED}, **changes.visible(now)}
    return await coll.find_one(query, session=session)


async def free_stale(coll: Any, key: str, *, session: Any = None) -> bool:
    """Remove ``key`` from a finished job still carrying it; ``True`` if there was one."""
    result = await coll.update_one(
        {"ukey": key, "status": {"$in": _FINISHED}}, {"$unset": {"ukey": ""}}, session=session
    )
    return bool(result.modified_count)


async def claim_key(coll: Any, job_id: str, key: str, statuses: list[str]) -> bool:
    """Write ``key`` back on a finished job (in ``statuses``) before a retry queues it again;
    ``False`` when another unfinished job holds it."""
    for _ in range(3):
        try:
            await coll.update_one(
                {"_id": job_id, "status": {"$in": statuses}, "unique_key": key}, {"$set": {"ukey": key}}
            )
            return True
        except DuplicateKeyError as exc:
            if not is_key_conflict(exc) or not await free_stale(coll, key):
                return False
    return False
