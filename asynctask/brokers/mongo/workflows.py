"""Events that touch more than one job: outcomes that spawn or finish children, cancel, retry, rescue.

The parent's ``pending`` counter is the whole of workflow state (see
:mod:`asynctask.brokers.base`): spawning counts children in, a child entering a finished status
counts out, and a waiting parent that reaches 0 is queued again. Two paths keep it exact.

**With transactions** (replica sets and sharded clusters; the default when the server has them),
each event is one multi-document transaction: store the spawned children, apply the outcome
(fenced by the token; if it does not apply, the transaction is aborted and the children vanish
with it), count, commit. Write conflicts and other transient errors retry the whole transaction.

**Without transactions** (a standalone ``mongod``, or ``transactions=false``), the order below
is crash-safe: a crash between any two steps loses nothing and applies nothing twice.

1. *Spawn dormant.* The children are inserted with a ``hold`` naming the outcome's job and token:
   invisible to ``get``, listings and claims. Their ids are the runtime's deterministic ids, and
   inserting is idempotent (an id that exists is skipped; a dormant record left by an earlier,
   crashed attempt of the same job is taken over). *Crash here:* the job's lease expires, it is
   rescued and runs again, and its next attempt spawns the same ids, taking the dormant records
   over. Nothing appeared.
2. *Commit.* One fenced single-document update applies the outcome, counts the job's own new
   children into its ``pending``, and appends a journal entry with the remaining effects (the
   children to release, counts into other parents, its own count-out). This write is the point
   where the outcome happens; if it does not apply (stale token), the dormant children are
   deleted. *Crash after it:* the journal is still on the job.
3. *Flush.* Release the children (idempotent), apply each count to its parent, guarded by the
   parent's ``ledger`` (the last event of each source job it applied, written in the same update
   as the count, so a count can never apply twice), then drop the entry. *Crash anywhere here:*
   :meth:`~asynctask.brokers.mongo.MongoBroker.rescue_expired` (which every worker's maintenance
   loop calls) re-applies journals older than ``repair_after`` seconds; the ledger and the
   idempotent release make the second application a no-op for whatever already happened.

Cancel, a rescue that fails a child, and a manual retry follow the same pattern: one fenced
update of the job with a journal entry, then the flush.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
from bson import ObjectId
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from asynctask.brokers.mongo.creation import create_jobs
from asynctask.brokers.mongo.journal import flush, repair_candidates
from asynctask.brokers.mongo.outcomes import held, outcome_update
from asynctask.models import NewJob, Outcome

__all__ = ["Step", "Workflows"]

logger = logging.getLogger("asynctask.brokers.mongo")

_T = TypeVar("_T")
_AFTER = ReturnDocument.AFTER
# A transaction that lost a race (a write conflict, or another writer storing a child's id
# first) is run again, after a short randomised pause, this many times at most.
_RETRIES = 50
_WRITE_CONFLICT = 112

#: Called between the steps of the non-transactional path with the step's name; tests inject
#: crashes here.
Step = Callable[[str], Awaitable[None]]


async def _no_step(name: str) -> None:
    return None


class _Stale(Exception):
    """The outcome's token no longer holds the job: abort the transaction."""


def _retryable(exc: OperationFailure) -> bool:
    if isinstance(exc, DuplicateKeyError) or exc.code == _WRITE_CONFLICT:
        return True
    return "write conflict" in str(exc).lower()


def tally(outcome: Outcome, created: Sequence[bool]) -> tuple[int, list[tuple[str, int]]]:
    """Children counted into the outcome's own job, and into each other parent, in spawn order.

    A child counts into its parent only if that parent exists when the child is created, as
    in the reference broker, where children are created one by one: a parent that is itself
    spawned later in the same outcome does not exist yet.
    """
    later: dict[str, int] = {}
    for i, child in enumerate(outcome.spawn):
        if created[i]:
            later.setdefault(child.id, i)
    own = 0
    counts: dict[str, int] = {}
    for i, child in enumerate(outcome.spawn):
        parent = child.parent_id
        if not created[i] or parent is None:
            continue
        if parent == outcome.job_id:
            own += 1
        elif later.get(parent, -1) <= i:
            counts[parent] = counts.get(parent, 0) + 1
    return own, list(counts.items())


class Workflows:
    """The multi-document events of one broker; ``transactions`` picks the path."""

    def __init__(
        self,
        client: Any,
        coll: Any,
        *,
        transactions: bool,
        ttl_margin: float,
        step: Step = _no_step,
    ) -> None:
        self.client = client
        self.coll = coll
        self.transactions = transactions
        self.ttl_margin = ttl_margin
        self.step = step

    async def unit(self, body: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run ``body(session)`` in a transaction when the path has them, else with no session.

        ``with_transaction`` already retries errors MongoDB labels transient; a write conflict
        reported without that label (some servers report one only at commit) or a duplicate
        key from a concurrent insert is retried here.
        """
        if not self.transactions:
            return await body(None)
        for attempt in range(_RETRIES + 1):
            async with self.client.start_session() as session:
                try:
                    result: _T = await session.with_transaction(body)
                    return result
                except (DuplicateKeyError, OperationFailure) as exc:
                    await self._reset(session)
                    if attempt == _RETRIES or not _retryable(exc):
                        raise
                except BaseException:
                    # Cancelled (a deadline, a shutdown) in the middle: abort on the server now.
                    await self._reset(session)
                    raise
            await anyio.sleep(random.uniform(0, min(0.005 * 2**attempt, 0.2)))
        raise AssertionError("unreachable")

    async def _reset(self, session: Any) -> None:
        """Abort what is left of a failed or interrupted transaction on ``session``.

        A commit that fails is not followed by an abort, nor is a transaction whose caller was
        cancelled, and some servers (mongoeco) then keep the transaction's snapshot attached to
        the session, where the driver's next implicit use of the same server session would read
        and write. Aborting (or starting and aborting an empty transaction) detaches it; on
        MongoDB it is a no-op. Shielded and bounded: it runs while the caller is being cancelled.
        """
        with anyio.CancelScope(shield=True), anyio.move_on_after(5), contextlib.suppress(PyMongoError):
            if not session.in_transaction:
                await session.start_transaction()
                await self.coll.find_one({"_id": "\x00reset"}, {"_id": 1}, session=session)
            await session.abort_transaction()

    async def settle(self, docs: Sequence[Any], now: float, session: Any) -> None:
        """Apply the journals of ``docs`` (just changed by their events) in this unit."""
        pending = [doc for doc in docs if doc is not None and doc.get("journal")]
        if pending:
            await flush(self.coll, pending, now, session=session, ledger=session is None, step=self.step)

    # --- outcomes without spawn, in one batch -------------------------------------------------

    async def apply(self, outcomes: Sequence[Outcome], now: float, *, session: Any = None) -> list[bool]:
        """One bulk write of fenced outcome updates; which applied (a read only if some did not).

        The journal entries the updates recorded are left for :meth:`settle`; use
        :meth:`complete_many` unless no outcome can have any.
        """
        mark = ObjectId()
        writes = [
            UpdateOne(held(o.job_id, o.token), outcome_update(o, now, mark=mark, ttl_margin=self.ttl_margin))
            for o in outcomes
        ]
        result = await self.coll.bulk_write(writes, ordered=False, session=session)
        if result.modified_count == len(outcomes):
            return [True] * len(outcomes)
        done = await self._marked([o.job_id for o in outcomes], mark, session)
        return [(o.job_id, o.token) in done for o in outcomes]

    async def _marked(self, ids: list[str], mark: ObjectId, session: Any) -> dict[tuple[str, int], Any]:
        """The jobs this call's updates changed, by (id, token)."""
        cursor = self.coll.find({"_id": {"$in": ids}, "done": mark}, {"token": 1}, session=session)
        return {(doc["_id"], doc["token"]): doc async for doc in cursor}

    async def _journaled(self, ids: list[str], session: Any) -> list[Any]:
        """The jobs among ``ids`` with effects still to apply: just recorded, or left by an
        earlier call that was interrupted (its retry then finishes the work at once)."""
        cursor = self.coll.find(
            {"_id": {"$in": ids}, "jat": {"$exists": True}}, {"journal": 1}, session=session
        )
        return [doc async for doc in cursor]

    async def complete_many(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        """Apply outcomes that spawn nothing and count their jobs out of their parents.

        The jobs' own updates come first (one bulk write), then every count (one more): a
        batch holding both a parent and its child applies the parent's outcome before the
        child's count-out, whatever their order in the batch.
        """

        async def body(session: Any) -> list[bool]:
            mark = ObjectId()
            writes = [
                UpdateOne(
                    held(o.job_id, o.token), outcome_update(o, now, mark=mark, ttl_margin=self.ttl_margin)
                )
                for o in outcomes
            ]
            await self.coll.bulk_write(writes, ordered=False, session=session)
            ids = [o.job_id for o in outcomes]
            done = await self._marked(ids, mark, session)
            if session is None:
                await self.step("committed")
            await self.settle(await self._journaled(ids, session), now, session)
            return [(o.job_id, o.token) in done for o in outcomes]

        return await self.unit(body)

    # --- outcomes --------------------------------------------------------------------------

    async def complete(self, outcome: Outcome, now: float) -> bool:
        """Apply one outcome with its effects; ``False`` if its token was stale."""
        mark = ObjectId()
        if self.transactions:

            async def body(session: Any) -> bool:
                created = await self._spawn(outcome.spawn, now, session=session)
                own, counts = tally(outcome, created)
                update = outcome_update(
                    outcome, now, mark=mark, ttl_margin=self.ttl_margin, own_children=own, counts=counts
                )
                doc = await self.coll.find_one_and_update(
                    held(outcome.job_id, outcome.token), update, return_document=_AFTER, session=session
                )
                if doc is None:
                    raise _Stale
                await self.settle([doc], now, session)
                return True

            try:
                return await self.unit(body)
            except _Stale:
                return False
        hold = {"j": outcome.job_id, "t": outcome.token}
        created = await self._spawn(outcome.spawn, now, hold=hold)
        await self.step("spawned")
        own, counts = tally(outcome, created)
        activate = [child.id for child, made in zip(outcome.spawn, created, strict=True) if made]
        update = outcome_update(
            outcome,
            now,
            mark=mark,
            ttl_margin=self.ttl_margin,
            own_children=own,
            activate=activate,
            counts=counts,
        )
        doc = await self.coll.find_one_and_update(
            held(outcome.job_id, outcome.token), update, return_document=_AFTER
        )
        if doc is None:
            if activate:
                await self.coll.delete_many(
                    {"_id": {"$in": activate}, "hold.j": hold["j"], "hold.t": hold["t"]}
                )
            # Stale, or applied by an earlier call that was interrupted: finish its effects.
            await self.settle(await self._journaled([outcome.job_id], None), now, None)
            return False
        await self.step("committed")
        await self.settle([doc], now, None)
        return True

    async def _spawn(
        self, jobs: Sequence[NewJob], now: float, *, session: Any = None, hold: Any = None
    ) -> list[bool]:
        if not jobs:
            return []
        return await create_jobs(self.coll, jobs, now, session=session, hold=hold)

    # --- single-job events with effects ----------------------------------------------------

    async def event(self, query: dict[str, Any], update: Any, now: float) -> Any:
        """One fenced update of a job that may record effects, then its flush; the job after, or None."""

        async def body(session: Any) -> Any:
            doc = await self.coll.find_one_and_update(query, update, return_document=_AFTER, session=session)
            if doc is not None and session is None:
                await self.step("committed")
            await self.settle([doc], now, session)
            return doc

        return await self.unit(body)

    # --- repair ----------------------------------------------------------------------------

    async def repair(self, now: float, *, older_than: float, limit: int = 100) -> int:
        """Apply journals a crash left behind (recorded more than ``older_than`` s ago) and delete
        dormant children nobody will release; returns how many jobs it repaired."""
        docs = [doc async for doc in self.coll.find(repair_candidates(now - older_than), limit=limit)]
        for doc in docs:
            logger.warning(
                "applying the workflow effects of job %s left behind by an interrupted worker",
                doc["_id"],
                extra={"action": "mongo_journal_repair", "job_id": doc["_id"]},
            )
        await flush(self.coll, docs, now, session=None, ledger=True)
        return len(docs) + await self._sweep(now - older_than, limit)

    async def _sweep(self, before: float, limit: int) -> int:
        """Delete dormant children (spawned before ``before``) whose outcome can never apply.

        A dormant child is kept while its holder still runs with the token that spawned it (its
        outcome may yet commit) or has committed and still has to release it (its journal
        names it); otherwise its outcome was stale or the attempt died, and the child is garbage.
        """
        cursor = self.coll.find(
            {"hold": {"$exists": True}, "created_at": {"$lte": before}}, {"hold": 1}, limit=limit
        )
        dormant = [doc async for doc in cursor]
        if not dormant:
            return 0
        holders = list({doc["hold"]["j"] for doc in dormant})
        found = self.coll.find({"_id": {"$in": holders}}, {"token": 1, "status": 1, "journal": 1})
        state = {doc["_id"]: doc async for doc in found}
        swept = 0
        for doc in dormant:
            holder, token = state.get(doc["hold"]["j"]), doc["hold"]["t"]
            if holder is not None and holder["status"] == "running" and holder["token"] == token:
                continue
            entries = (holder or {}).get("journal") or ()
            if any((e.get("act") or {}).get("t") == token and doc["_id"] in e["act"]["ids"] for e in entries):
                continue
            result = await self.coll.delete_one(
                {"_id": doc["_id"], "hold.j": doc["hold"]["j"], "hold.t": token}
            )
            swept += result.deleted_count
        return swept
