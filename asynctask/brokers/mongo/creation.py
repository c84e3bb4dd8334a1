"""Storing new jobs, idempotently: an id that exists (and has not expired) is never stored twice.

Two strategies, one result:

* **Insert first** (no session): one unordered ``insert_many``; the ids the server refuses as
  duplicates are then checked one by one, and an *expired* record under such an id is replaced
  by the new job. One round trip in the common case.
* **Read first** (inside a transaction, where a duplicate-key error would abort the caller's
  transaction): read which ids exist, insert the others, replace the expired ones.

Within one batch the first job with an id wins, and the first job with a unique key (see
:mod:`~asynctask.brokers.mongo.unique`: a key an unfinished job holds refuses the job, as an id
does). Replacing an expired record keeps its fencing
``token`` (so a zombie of the old job can never match the new one), its creation order, and its
workflow bookkeeping (``ev``, ``ledger``, ``journal``), which belong to the id rather than to one
incarnation of it.

A ``hold`` stores jobs *dormant*: invisible to readers and claims until their parent's outcome
releases them (see :mod:`asynctask.brokers.mongo.workflows`). A dormant record left by an earlier
attempt of the same holder is taken over.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bson import ObjectId
from pymongo.errors import BulkWriteError, DuplicateKeyError

from asynctask.brokers.mongo.documents import new_document
from asynctask.brokers.mongo.unique import free_stale, holder, is_key_conflict
from asynctask.models import NewJob

__all__ = ["Hold", "create_jobs"]

_DUPLICATE_KEY = 11000

#: Kept when an expired record's id is reused (see the module docstring).
_KEPT = frozenset({"_id", "token", "cseq", "ev", "ledger", "journal", "jat"})
#: Every other field a job document may have.
_FIELDS = (
    "task", "queue", "payload", "status", "priority", "attempts", "max_retries", "timeout", "run_at",
    "created_at", "started_at", "finished_at", "lease_expires_at", "error", "state", "result",
    "expires_at", "expire_on", "cancel_requested", "pause_requested", "parent_id", "pending", "meta",
    "worker", "claim", "done", "phase", "seq", "seq2", "hold", "headers", "unique_key", "ukey",
)  # fmt: skip

#: ``{"j": holder job id, "t": holder's token}``: who may release a dormant job.
Hold = dict[str, Any]


def _document(job: NewJob, now: float, hold: Hold | None) -> dict[str, Any]:
    doc = new_document(job, now, ObjectId())
    if hold is not None:
        # Out of the claim index until released; the phase to restore travels in the hold.
        doc["hold"] = dict(hold)
        if "phase" in doc:
            doc["hold"]["p"] = doc.pop("phase")
    return doc


def _replacement(doc: dict[str, Any]) -> dict[str, Any]:
    """An update turning any record into ``doc``, keeping the fields in ``_KEPT``."""
    fields = {k: v for k, v in doc.items() if k not in _KEPT}
    gone = {k: "" for k in _FIELDS if k not in fields}
    update: dict[str, Any] = {"$set": fields}
    if gone:
        update["$unset"] = gone
    return update


async def _reuse(coll: Any, doc: dict[str, Any], now: float, hold: Hold | None, session: Any) -> bool:
    """Replace an expired record (or our own stale dormant one) by ``doc``; ``True`` if done."""
    stale: list[dict[str, Any]] = [{"expires_at": {"$lte": now}}]
    if hold is not None:
        stale.append({"hold.j": hold["j"], "hold.t": {"$ne": hold["t"]}})
    try:
        result = await coll.update_one({"_id": doc["_id"], "$or": stale}, _replacement(doc), session=session)
    except DuplicateKeyError as exc:
        if not is_key_conflict(exc):
            raise
        return False  # its unique key is held by another unfinished job
    return bool(result.matched_count)


async def create_jobs(
    coll: Any,
    jobs: Sequence[NewJob],
    now: float,
    *,
    session: Any = None,
    hold: Hold | None = None,
) -> list[bool]:
    """Store ``jobs``; for each, ``True`` if it was created, ``False`` if its id was taken."""
    first: dict[str, int] = {}
    keys: dict[str, int] = {}
    later: list[int] = []  # a key's next jobs: tried if the first one was not created
    for i, job in enumerate(jobs):
        if job.id in first:
            continue
        if job.unique_key is not None:
            if job.unique_key in keys:
                later.append(i)
                continue
            keys[job.unique_key] = i
        first[job.id] = i
    created = [False] * len(jobs)
    if not first:
        return created
    docs = {i: _document(jobs[i], now, hold) for i in first.values()}
    if session is None:
        refused, held = await _insert_first(coll, list(docs.values()))
        held = await _retry_stale(coll, [d for d in docs.values() if d["_id"] in held], now)
    else:
        refused, held = await _read_first(coll, list(docs.values()), now, session)
    for i, doc in docs.items():
        if doc["_id"] in held:
            created[i] = False
        elif doc["_id"] not in refused:
            created[i] = True
        else:
            created[i] = await _reuse(coll, doc, now, hold, session)
    retry = [i for i in later if not created[keys[jobs[i].unique_key]]]  # type: ignore[index]
    if retry:
        again = await create_jobs(coll, [jobs[i] for i in retry], now, session=session, hold=hold)
        for i, made in zip(retry, again, strict=True):
            created[i] = made
    return created


async def _retry_stale(coll: Any, docs: list[dict[str, Any]], now: float) -> set[str]:
    """Insert again the ``docs`` refused for their unique key if its holder had finished (a stale
    key, see :mod:`~asynctask.brokers.mongo.unique`); returns the ids still refused."""
    held: set[str] = set()
    for doc in docs:
        if await holder(coll, doc["ukey"], now) is not None or not await free_stale(coll, doc["ukey"]):
            held.add(doc["_id"])
            continue
        try:
            await coll.insert_one(doc)
        except DuplicateKeyError:
            held.add(doc["_id"])  # taken again meanwhile (or the id was): refused
    return held


async def _insert_first(coll: Any, docs: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """Insert ``docs``; returns the ids refused as duplicates, and those refused for their key."""
    try:
        await coll.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        others = [e for e in errors if e.get("code") != _DUPLICATE_KEY]
        if others:
            raise
        held = {docs[e["index"]]["_id"] for e in errors if is_key_conflict(e)}
        return {docs[e["index"]]["_id"] for e in errors} - held, held
    return set(), set()


async def _read_first(
    coll: Any, docs: list[dict[str, Any]], now: float, session: Any
) -> tuple[set[str], set[str]]:
    """Insert the ``docs`` whose id and unique key are free; returns the ids that exist, and the
    ids whose key an unfinished job holds."""
    ids = [doc["_id"] for doc in docs]
    cursor = coll.find({"_id": {"$in": ids}}, projection={"_id": 1}, session=session)
    taken = {doc["_id"] async for doc in cursor}
    held: set[str] = set()
    for doc in docs:
        if "ukey" in doc:
            if await holder(coll, doc["ukey"], now, session=session) is not None:
                held.add(doc["_id"])
            else:
                await free_stale(coll, doc["ukey"], session=session)
    fresh = [doc for doc in docs if doc["_id"] not in taken and doc["_id"] not in held]
    if fresh:
        await coll.insert_many(fresh, session=session)
    return taken, held
