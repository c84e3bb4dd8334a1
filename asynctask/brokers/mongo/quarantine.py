"""Quarantining damaged job documents met by a claim (issue #11; rules in
:mod:`asynctask.brokers.rules`).

A document edited by hand or half written must not stall its queue. Two kinds meet a claim:

* documents the claim's own update cannot take: ``attempts`` or ``token`` that ``$inc`` cannot
  add to, or a ``status`` other than the ``queued`` its ``phase`` says. The take's filter leaves
  them out (:data:`TAKEABLE`), so they never fail the update for the rest of the batch; a third
  statement of the same bulk write marks them (:data:`POISON`) with the claim's mark;
* documents taken but unreadable (a missing ``task``, a ``payload`` that is not binary: see
  :func:`~asynctask.brokers.mongo.documents.problem`).

Both come back from the claim's read of its mark, and each is quarantined under that mark (a
later claim's mark supersedes it, and that claim quarantines it). No round trip is added to a
claim that meets no damaged job.

Quarantine is one update: ``failed`` with ``corrupt job record: <reason>``, out of the claim
index, lease and unique key released, no expiry; a child is counted out of its parent through
the journal (:mod:`~asynctask.brokers.mongo.journal`), as a failure is.
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import OperationFailure

from asynctask.brokers.mongo.documents import PHASE_QUEUED, lit, problem
from asynctask.brokers.mongo.expressions import REMOVE, has_parent
from asynctask.brokers.mongo.journal import flush, record
from asynctask.brokers.rules import corrupt

__all__ = ["POISON", "TAKEABLE", "poison_reason", "quarantine", "update"]

logger = logging.getLogger("asynctask.brokers.mongo")

# A counter ``$inc`` can add 1 to many times over (an int32 grows into an int64).
_COUNTER = {"$type": ["int", "long"], "$gte": 0, "$lt": 1 << 62}

#: Filter fields a document must match to be taken by a claim's update.
TAKEABLE: dict[str, Any] = {"status": "queued", "attempts": _COUNTER, "token": _COUNTER}

#: A ready document no claim can take (with the claim's ready filter).
POISON: dict[str, Any] = {
    "$or": [
        {"status": {"$nin": ["queued", "scheduled"]}},
        {"phase": PHASE_QUEUED, "status": {"$ne": "queued"}},
        {"attempts": {"$not": _COUNTER}},
        {"token": {"$not": _COUNTER}},
    ]
}


def poison_reason(doc: Any) -> str:
    """Why a ready document the take could not take is damaged."""
    found = problem(doc)
    if found is not None:
        return found
    for name in ("attempts", "token"):
        if not 0 <= doc[name] < 1 << 62:
            return f"field {name} is out of range"
    return f"field status is {doc['status']!r} in the claim index"


def update(reason: str, now: float) -> list[dict[str, Any]]:
    """The pipeline quarantining a job for ``reason``."""
    fields: dict[str, Any] = {
        "status": "failed",
        "error": lit(corrupt(reason)),
        "finished_at": now,
        **dict.fromkeys(("phase", "seq2", "lease_expires_at", "ukey", "expires_at", "expire_on"), REMOVE),
        **record({"out": "$parent_id"}, has_parent(), now),
    }
    return [{"$set": fields}]


async def quarantine(coll: Any, query: dict[str, Any], reason: str, now: float) -> bool:
    """Quarantine the job ``query`` matches for ``reason``; whether it did.

    A document so damaged that even this update fails is logged and left: the claim goes on.
    """
    try:
        doc = await coll.find_one_and_update(query, update(reason, now), return_document=ReturnDocument.AFTER)
        if doc is not None and doc.get("journal"):
            await flush(coll, [doc], now, session=None, ledger=True)
    except OperationFailure as exc:
        logger.error(
            "job %s has a corrupt record (%s) that cannot be quarantined: %s",
            query["_id"],
            reason,
            exc,
            extra={"action": "corrupt_job_record", "job_id": query["_id"]},
        )
        return False
    if doc is not None:
        logger.warning(
            "job %s has a corrupt record (%s); quarantined as failed",
            query["_id"],
            reason,
            extra={"action": "corrupt_job_record", "job_id": query["_id"]},
        )
    return doc is not None
