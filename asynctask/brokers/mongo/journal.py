"""Workflow effects: recorded on the job that caused them, then applied to other documents.

An event on one job (its outcome, a cancel, a rescue that fails it, a manual retry) can change
other documents: its parent's ``pending`` counter, the children its outcome spawned. The event's
own update appends an *entry* to the job's ``journal`` in the same atomic write, so the effects
exist if and only if the event happened. :func:`flush` then applies the entry and removes it.

An entry is ``{ev, act, cnt, out, rin}``:

* ``ev``: the job's event number (its ``ev`` counter, which never goes down);
* ``act``: ``{ids, t}``, spawned children stored dormant, to release;
* ``cnt``: ``[{t: parent id, d: n}]``, children counted into parents other than this job;
* ``out``: the parent this job counts out of (it entered a finished status);
* ``rin``: the parent this job counts back into if it still waits (a manual retry).

Without transactions the entries are applied one write at a time, and a crash can stop
:func:`flush` anywhere; :func:`repair` applies what is left. Each write is idempotent: releasing
dormant children is, and a parent records the last event of each source job it applied in its
``ledger`` (``[{s: source id, n: ev}]``), in the same write as the count, so an entry applied
twice changes nothing the second time. Inside a transaction the ledger is not needed (the entry
is written and applied in one transaction) and not kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne

from asynctask.brokers.mongo.documents import PHASE_QUEUED, lit
from asynctask.brokers.mongo.expressions import REMOVE, absent, add, cond, keep, or_default

__all__ = ["flush", "record", "release_children", "repair_candidates"]


def record(entry: Mapping[str, Any], present: Any, now: float) -> dict[str, Any]:
    """``$set`` fields appending ``entry`` (expressions) to the journal when ``present`` holds."""
    ev_next = add(or_default("ev", 0), 1)
    full = {"ev": ev_next, **entry}
    return {
        "ev": cond(present, ev_next, keep("ev")),
        "journal": cond(present, {"$concatArrays": [or_default("journal", []), [full]]}, keep("journal")),
        "jat": cond(present, {"$ifNull": ["$jat", now]}, keep("jat")),
    }


def _count(delta: Any, now: float) -> dict[str, Any]:
    """``$set`` fields adding ``delta`` to ``pending``; a waiting job that reaches 0 is released."""
    reached = add(or_default("pending", 0), delta)
    release = {"$and": [{"$eq": ["$status", "waiting"]}, {"$lte": [reached, 0]}]}
    return {
        "pending": {"$max": [reached, 0]},
        # Released: queued for its on-finish phase, a fresh attempt count, at the back of the line.
        "status": cond(release, "queued", "$status"),
        "attempts": cond(release, 0, "$attempts"),
        "run_at": cond(release, now, "$run_at"),
        "phase": cond(release, PHASE_QUEUED, keep("phase")),
        "seq": cond(release, ObjectId(), "$seq"),
        "seq2": cond(release, REMOVE, keep("seq2")),
    }


def _counts(parent: str, items: list[dict[str, Any]], now: float, *, ledger: bool) -> UpdateOne:
    """One update applying every count of ``items`` (``{s: source, n: event, d: delta}``) to ``parent``.

    Counts into one parent commute but for the release, which is decided on their sum (counts
    in first, then out), as if each source's event had been applied in turn. With ``ledger``,
    only the items whose event the parent's ledger does not hold yet count, and the ledger
    records them, in the same write.
    """
    if not ledger:
        return UpdateOne({"_id": parent}, [{"$set": _count(sum(item["d"] for item in items), now)}])
    taken = {
        "$anyElementTrue": [
            {
                "$map": {
                    "input": or_default("ledger", []),
                    "as": "l",
                    "in": {"$and": [{"$eq": ["$$l.s", "$$c.s"]}, {"$gte": ["$$l.n", "$$c.n"]}]},
                }
            }
        ]
    }
    # ({"$eq": [x, False]} rather than {"$not": [x]}, which some servers lack.)
    fresh = {"$filter": {"input": lit(items), "as": "c", "cond": {"$eq": [taken, False]}}}
    kept = {
        "$filter": {
            "input": or_default("ledger", []),
            "cond": {"$eq": [{"$in": ["$$this.s", "$_fresh.s"]}, False]},
        }
    }
    recorded = {"$map": {"input": "$_fresh", "in": {"s": "$$this.s", "n": "$$this.n"}}}
    return UpdateOne(
        {"_id": parent},
        [
            {"$set": {"_fresh": fresh}},
            {"$set": {**_count({"$sum": "$_fresh.d"}, now), "ledger": {"$concatArrays": [kept, recorded]}}},
            {"$unset": "_fresh"},
        ],
    )


def _rin(parent: str, item: dict[str, Any], now: float, *, ledger: bool) -> UpdateOne:
    """A manual retry's count back into ``parent`` (``item["d"]`` is evaluated on the parent)."""
    if not ledger:
        return UpdateOne({"_id": parent}, [{"$set": _count(item["d"], now)}])
    source, ev = item["s"], item["n"]
    query = {"_id": parent, "ledger": {"$not": {"$elemMatch": {"s": source, "n": {"$gte": ev}}}}}
    others = {"$filter": {"input": or_default("ledger", []), "cond": {"$ne": ["$$this.s", lit(source)]}}}
    fields = {**_count(item["d"], now), "ledger": {"$concatArrays": [others, [{"s": lit(source), "n": ev}]]}}
    return UpdateOne(query, [{"$set": fields}])


async def release_children(coll: Any, holder: str, token: int, ids: list[str], session: Any) -> None:
    """Make dormant children held by ``(holder, token)`` visible and claimable."""
    await coll.update_many(
        {"_id": {"$in": ids}, "hold.j": holder, "hold.t": token},
        [{"$set": {"phase": cond(absent("hold.p"), REMOVE, "$hold.p")}}, {"$unset": "hold"}],
        session=session,
    )


async def flush(
    coll: Any,
    docs: Sequence[Mapping[str, Any]],
    now: float,
    *,
    session: Any,
    ledger: bool,
    step: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    """Apply every journal entry of ``docs`` (as read after their events), then drop them.

    Three writes at most, whatever the number of jobs: the dormant children each entry
    releases, one bulk write of the counts (one update per parent, however many children count
    into it), one bulk write dropping the applied entries. ``step`` is awaited in
    between (with ``"released"`` and ``"counted"``): the seam where tests inject crashes.
    """
    counts: dict[str, list[dict[str, Any]]] = {}
    back: list[UpdateOne] = []
    drops: list[UpdateOne] = []
    for doc in docs:
        entries = sorted(doc.get("journal") or (), key=lambda e: e["ev"])
        if not entries:
            continue
        source = doc["_id"]
        for entry in entries:
            ev = entry["ev"]
            act = entry.get("act")
            if act and act.get("ids"):
                await release_children(coll, source, act["t"], list(act["ids"]), session)
            deltas: dict[str, int] = {}
            for count in entry.get("cnt") or ():
                deltas[count["t"]] = deltas.get(count["t"], 0) + count["d"]
            if entry.get("out") is not None:
                deltas[entry["out"]] = deltas.get(entry["out"], 0) - 1
            for parent, delta in deltas.items():
                if delta:
                    counts.setdefault(parent, []).append({"s": source, "n": ev, "d": delta})
            if entry.get("rin") is not None:
                # A retried child counts back into a parent that still waits for its children.
                item = {"s": source, "n": ev, "d": cond({"$eq": ["$status", "waiting"]}, 1, 0)}
                back.append(_rin(entry["rin"], item, now, ledger=ledger))
        last = entries[-1]["ev"]
        remaining = {"$filter": {"input": or_default("journal", []), "cond": {"$gt": ["$$this.ev", last]}}}
        empty = {"$eq": [{"$size": remaining}, 0]}
        drops.append(
            UpdateOne(
                {"_id": source},
                [{"$set": {"journal": cond(empty, REMOVE, remaining), "jat": cond(empty, REMOVE, "$jat")}}],
            )
        )
    if not drops:
        return
    if step is not None:
        await step("released")
    writes = [_counts(parent, items, now, ledger=ledger) for parent, items in counts.items()] + back
    if writes:
        await coll.bulk_write(writes, ordered=True, session=session)
    if step is not None:
        await step("counted")
    await coll.bulk_write(drops, ordered=False, session=session)


def repair_candidates(before: float) -> dict[str, Any]:
    """Jobs whose journal was recorded before ``before`` and is still there (a flush was cut short)."""
    return {"jat": {"$lte": before}}
