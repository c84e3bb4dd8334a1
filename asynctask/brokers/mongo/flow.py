"""Flow control on MongoDB: queue settings, the claim's flow path, and its locks and buckets.

The rules are those of :mod:`asynctask.brokers.base` ("Flow control").

**Two paths.** The plain claim (:func:`~asynctask.brokers.mongo.claims.claim`) is the whole claim
as long as the queue has no settings document and no job it looks at belongs to a task with
limits: its look, an aggregation, reads the queue's document in ``<prefix>.queues`` with
``$unionWith`` in the same round trip, so a queue without settings claims in the three round
trips it always did, and a settings change made by any process is seen by the next claim.
Otherwise the look *diverts* the claim to the flow path before anything is written, and the
queue's next claims go to the flow path directly (which reads the settings document itself)
until one of them finds that a plain claim would have done.

**The flow path** serialises the claims of each limited key (the queue, when it has a concurrency
or a rate; each task in the claim's ``limits``) with a lock document per key in
``<prefix>.locks``, taken by a conditional write: an update whose filter matches only a free
lock (no ``lock``, or its ``until`` past), so of two claimers one takes it and the other's update
matches nothing. Locks are taken in one order (sorted keys), so claims never deadlock, and a
claimer that meets a taken lock keeps the ones it has and waits for the next. Under the locks
the claim counts the running jobs of the limited keys (indexes ``running_by_queue`` and
``running_by_task``), refills the buckets, reads the window of ready jobs (``4 * n + 64``, at
most 2048, in pages), takes the jobs the limits admit, and writes the spent tokens in the same
bulk write that releases the locks (each release fenced by the claim's mark).
Counts are exact: every claim that could add to them holds the same lock, and a claim's jobs are
``running`` before its lock is released. Counting running jobs rather than keeping counters means
nothing else (completion, rescue, cancel, delete) has to know about limits, and nothing drifts.

This one path serves both modes, with transactions and without: a transaction would serialise
two claims only through a document both write, which is what the lock document is, and the lock
needs no session. A lock expires :data:`LOCK_TTL_MS` after it was taken, by the *server's*
clock (``$$NOW``), so a claimer that died holding it blocks that key for that long at most; a
claim holds its locks for a few round trips, and releases them even when it is cancelled.

**Buckets** live in the lock documents (``tokens``, ``at``), with the signature of the rate they
were filled under (``sig``): a bucket of another rate reads as full, so a changed rate starts
with a full bucket (a queue's settings carry ``gen``, renewed whenever its rate changes).
As on Redis, task concurrency counts every running job of the task, but only claims made with
the task's limit wait for its lock (every worker running a task declares the same limits).
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal

import anyio
from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError, PyMongoError

from asynctask.brokers.memory_flow import Quota
from asynctask.brokers.mongo import claims
from asynctask.brokers.mongo.expressions import REMOVE, cond, keep
from asynctask.flow import Claimed, QueueSettings, RateLimit, TaskLimit, refill
from asynctask.models import Job

__all__ = ["LOCK_TTL_MS", "MongoFlow", "locks_collection", "queues_collection", "to_settings"]

#: A flow lock left by a claimer that died is free again after this many milliseconds.
LOCK_TTL_MS = 10_000
_WINDOW_FACTOR, _WINDOW_EXTRA, _WINDOW_MAX = 4, 64, 2048
_FIRST_PAUSE, _MAX_PAUSE = 0.002, 0.05
_AFTER = ReturnDocument.AFTER


def queues_collection(prefix: str) -> str:
    return f"{prefix}.queues"


def locks_collection(prefix: str) -> str:
    return f"{prefix}.locks"


def _rate_doc(rate: RateLimit) -> dict[str, Any]:
    return {"count": rate.count, "per": rate.per, "burst": rate.burst}


def to_settings(doc: Mapping[str, Any] | None) -> QueueSettings:
    """A queue's settings from its document (``None``: the defaults)."""
    if doc is None:
        return QueueSettings()
    raw = doc.get("rate")
    rate = None if raw is None else RateLimit(raw["count"], per=raw["per"], burst=raw["burst"])
    return QueueSettings(paused=bool(doc.get("paused", False)), concurrency=doc.get("concurrency"), rate=rate)


def _is_default(doc: Mapping[str, Any] | None) -> bool:
    return to_settings(doc).is_default


class MongoFlow:
    """The flow-control half of one :class:`~asynctask.brokers.mongo.MongoBroker`."""

    def __init__(self, jobs: Any, queues: Any, locks: Any) -> None:
        self.jobs = jobs
        self.queues = queues
        self.locks = locks
        #: Queues whose last claim took the flow path: the next one goes there directly (reading
        #: the settings itself), until a flow claim finds that a plain claim would have done.
        self.diverted: set[str] = set()
        #: Lock keys whose document exists (seen once by this broker).
        self._known: set[str] = set()

    # --- queue settings ---------------------------------------------------------------------

    async def settings(self, queue: str) -> QueueSettings:
        return to_settings(await self.queues.find_one({"_id": queue}))

    async def configured(self) -> dict[str, QueueSettings]:
        cursor = self.queues.find({}, sort=[("_id", ASCENDING)])
        found = {doc["_id"]: to_settings(doc) async for doc in cursor}
        return {name: settings for name, settings in found.items() if not settings.is_default}

    async def set_limits(self, queue: str, concurrency: int | None, rate: RateLimit | None) -> QueueSettings:
        stored = None if rate is None else _rate_doc(rate)
        same_rate = {"$eq": [{"$ifNull": ["$rate", None]}, {"$literal": stored}]}
        fields = {
            "paused": {"$ifNull": ["$paused", False]},
            "concurrency": REMOVE if concurrency is None else {"$literal": concurrency},
            "rate": REMOVE if stored is None else {"$literal": stored},
            # A changed rate starts with a full bucket: buckets filled under another gen read full.
            "gen": cond(same_rate, keep("gen"), {"$literal": ObjectId()}),
        }
        return await self._change(queue, [{"$set": fields}])

    async def set_paused(self, queue: str, paused: bool) -> QueueSettings:
        return await self._change(queue, {"$set": {"paused": paused}})

    async def _change(self, queue: str, update: Any) -> QueueSettings:
        self.diverted.discard(queue)  # the next claim asks the plain path, which sees the change
        doc = await self.queues.find_one_and_update(
            {"_id": queue}, update, upsert=True, return_document=ReturnDocument.AFTER
        )
        if _is_default(doc):
            # A queue back to the defaults has no document, so its claims take the plain path.
            await self.queues.delete_one(
                {"_id": queue, "paused": False, "concurrency": {"$exists": False}, "rate": {"$exists": False}}
            )
        return to_settings(doc)

    # --- the flow path ------------------------------------------------------------------------

    async def claim(
        self,
        queue: str,
        limit: int,
        *,
        now: float,
        lease: float,
        worker: str,
        limits: Mapping[str, TaskLimit],
        settings_doc: Mapping[str, Any] | Literal["read"] | None,
    ) -> Claimed:
        """Claim within the queue's settings and ``limits``.

        ``settings_doc``: the settings document as the plain claim's look read it, or ``"read"``
        to read it here (a queue in :attr:`diverted`).
        """
        self.diverted.add(queue)
        if settings_doc == "read":
            settings_doc = await self.queues.find_one({"_id": queue})
        assert not isinstance(settings_doc, str)
        settings = to_settings(settings_doc)
        if settings.paused:
            ready = await self.jobs.find_one(claims.ready(queue, now), projection={"_id": 1})
            return Claimed(held_back=ready is not None)
        keys = sorted(([f"queue:{queue}"] if settings.limited else []) + [f"task:{t}" for t in limits])
        if not keys:  # no settings, or the defaults (being deleted): nothing to lock
            return await self._take(queue, limit, now, lease, worker, settings, {}, {})
        mark = ObjectId()
        buckets = await self._lock(keys, mark)
        spent: dict[str, dict[str, Any]] = {}
        try:
            gen = None if settings_doc is None else settings_doc.get("gen")
            return await self._take(
                queue, limit, now, lease, worker, settings, limits, buckets, gen=gen, spent=spent
            )
        finally:
            with anyio.CancelScope(shield=True):
                await self._release(keys, mark, spent)

    async def _take(
        self,
        queue: str,
        limit: int,
        now: float,
        lease: float,
        worker: str,
        settings: QueueSettings,
        limits: Mapping[str, TaskLimit],
        buckets: Mapping[str, Any],
        *,
        gen: Any = None,
        spent: dict[str, dict[str, Any]] | None = None,
    ) -> Claimed:
        """Look at the window, admit what the limits allow, take it; records the spent tokens.

        The window is read in pages (the first of ``2 * limit`` jobs, each next one twice as
        large), so a claim that skips nothing reads little more than it takes.
        """
        running = await self._running(queue, settings, limits)
        queue_sig = str(gen)
        budget = Quota(
            _free(settings.concurrency, running.get(None, 0)),
            _tokens(buckets.get(f"queue:{queue}"), settings.rate, now, queue_sig),
            settings.rate,
        )
        quotas = {
            task: Quota(
                _free(task_limit.concurrency, running.get(task, 0)),
                _tokens(buckets.get(f"task:{task}"), task_limit.rate, now, _sig(task_limit.rate)),
                task_limit.rate,
            )
            for task, task_limit in limits.items()
        }
        chosen: list[str] = []
        held_back = False
        retry_at: float | None = None

        def hold(quota: Quota) -> None:
            nonlocal held_back, retry_at
            held_back = True
            when = quota.tokens_at(now, limit)
            if when is not None:
                retry_at = when if retry_at is None else min(retry_at, when)

        limited = False
        window = min(limit * _WINDOW_FACTOR + _WINDOW_EXTRA, _WINDOW_MAX)
        seen, page, done = 0, min(2 * limit, window), False
        while not done and seen < window:
            cursor = self.jobs.find(
                claims.ready(queue, now),
                projection={"_id": 1, "task": 1},
                sort=claims.CLAIM_ORDER,
                skip=seen,
                limit=page,
            )
            looked = [(doc["_id"], doc.get("task")) async for doc in cursor]  # damaged: see take
            seen, page, done = seen + page, min(page * 2, window - seen - page), len(looked) < page
            for job_id, task in looked:
                if len(chosen) == limit:
                    done = True
                    break
                if not budget.allows():
                    hold(budget)
                    done = True
                    break
                quota = quotas.get(task)
                limited = limited or quota is not None
                if quota is not None and not quota.allows():
                    hold(quota)  # held back: it stays queued, in its place
                    continue
                chosen.append(job_id)
                budget.take()
                if quota is not None:
                    quota.take()
        if not limited and settings.is_default:
            self.diverted.discard(queue)  # a plain claim would have done: the next one is plain
        jobs = []
        if chosen:
            jobs = await claims.take(self.jobs, queue, chosen, now=now, lease=lease, worker=worker)
        if spent is not None:
            self._spend(queue, jobs, now, settings, limits, buckets, queue_sig, spent)
        return Claimed(jobs, held_back=held_back, retry_at=retry_at if held_back else None)

    def _spend(
        self,
        queue: str,
        jobs: list[Job],
        now: float,
        settings: QueueSettings,
        limits: Mapping[str, TaskLimit],
        buckets: Mapping[str, Any],
        queue_sig: str,
        spent: dict[str, dict[str, Any]],
    ) -> None:
        """The bucket fields each key's release writes: its tokens after the jobs ``jobs`` took."""
        if settings.rate is not None and jobs:
            key = f"queue:{queue}"
            left = _tokens(buckets.get(key), settings.rate, now, queue_sig) - len(jobs)
            spent[key] = {"tokens": left, "at": now, "sig": queue_sig}
        for task, n in Counter(job.task for job in jobs).items():
            rate = limits[task].rate if task in limits else None
            if rate is not None:
                key, sig = f"task:{task}", _sig(rate)
                spent[key] = {"tokens": _tokens(buckets.get(key), rate, now, sig) - n, "at": now, "sig": sig}

    async def _running(
        self, queue: str, settings: QueueSettings, limits: Mapping[str, TaskLimit]
    ) -> dict[str | None, int]:
        """Running jobs of the queue (key ``None``) and of each task with a concurrency limit."""
        tasks = sorted(t for t, limit in limits.items() if limit.concurrency is not None)
        branches: list[dict[str, Any]] = []
        if settings.concurrency is not None:
            branches.append({"queue": queue})
        if tasks:
            branches.append({"task": {"$in": tasks}})
        if not branches:
            return {}
        pipeline = [
            {"$match": {"status": "running", "$or": branches}},
            {"$group": {"_id": {"q": {"$eq": ["$queue", queue]}, "t": "$task"}, "n": {"$sum": 1}}},
        ]
        counts: Counter[str | None] = Counter()
        async for row in await self.jobs.aggregate(pipeline):
            if row["_id"]["q"]:
                counts[None] += row["n"]
            counts[row["_id"]["t"]] += row["n"]
        return dict(counts)

    # --- locks ------------------------------------------------------------------------------

    async def _lock(self, keys: list[str], mark: ObjectId) -> dict[str, Any]:
        """Take the locks of ``keys`` (sorted), waiting for those another claim holds; returns the
        lock documents as taken (with their buckets), by key.

        One conditional update per key (MongoDB refuses ``$expr`` in an upsert's filter, so the
        lock document of a key never used is first inserted free, once).
        """
        free = {"$or": [{"lock": {"$exists": False}}, {"$expr": {"$lt": ["$until", "$$NOW"]}}]}
        grab = [{"$set": {"lock": mark, "until": {"$add": ["$$NOW", LOCK_TTL_MS]}}}]
        taken: dict[str, Any] = {}
        try:
            for key in keys:
                pause, tries = _FIRST_PAUSE, 0
                while True:
                    doc = await self.locks.find_one_and_update(
                        {"_id": key, **free}, grab, return_document=_AFTER
                    )
                    if doc is not None:
                        break
                    tries += 1
                    # Maybe a key never used (its document is missing); asked again now and then,
                    # in case the collection was dropped.
                    if key not in self._known or tries % 32 == 0:
                        self._known.add(key)
                        with contextlib.suppress(DuplicateKeyError):
                            await self.locks.insert_one({"_id": key})
                            continue  # it was: its lock is free now
                    await anyio.sleep(pause)
                    pause = min(pause * 2, _MAX_PAUSE)
                taken[key] = doc
                self._known.add(key)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release(keys[: len(taken) + 1], mark, {})
            raise
        return taken

    async def _release(self, keys: list[str], mark: ObjectId, spent: Mapping[str, dict[str, Any]]) -> None:
        """Release the locks of ``keys`` held by ``mark``, writing the buckets' spent tokens."""
        if not keys:
            return
        writes = []
        for key in keys:
            update: dict[str, Any] = {"$unset": {"lock": "", "until": ""}}
            if key in spent:
                update["$set"] = spent[key]
            writes.append(UpdateOne({"_id": key, "lock": mark}, update))
        # Best effort when the claim failed: an unreleased lock expires anyway.
        with contextlib.suppress(PyMongoError), anyio.move_on_after(10):
            await self.locks.bulk_write(writes, ordered=False)


def _free(concurrency: int | None, running: int) -> float:
    return math.inf if concurrency is None else float(concurrency - running)


def _sig(rate: RateLimit | None) -> str:
    return "" if rate is None else f"{rate.count}/{rate.per!r}/{rate.burst}"


def _tokens(bucket: Mapping[str, Any] | None, rate: RateLimit | None, now: float, sig: str) -> float:
    """The tokens of a bucket at ``now``; full when it was never used or filled under another rate."""
    if rate is None:
        return math.inf
    if bucket is None or bucket.get("sig") != sig:
        return refill(None, None, now, rate)
    return refill(bucket.get("tokens"), bucket.get("at"), now, rate)
