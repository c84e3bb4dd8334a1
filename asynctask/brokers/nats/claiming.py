"""Claiming and promoting: the index picks, a compare-and-set per job takes.

A claim asks the index for the best ready jobs of the queue (due scheduled jobs included) and
writes each one as running under the revision the index saw, all writes in flight together.
A write that fails means another worker (or a client) got there first: that job is skipped and
the next best is tried, until ``limit`` jobs are held or none is left. Due jobs that are not
claimed are promoted to ``queued`` in the same round, as the memory broker does at each claim.
"""

from __future__ import annotations

from collections.abc import Sequence

from asynctask.brokers import transitions
from asynctask.brokers.nats.client import Conflict
from asynctask.brokers.nats.index import Entry, Index
from asynctask.brokers.nats.store import Store, Write
from asynctask.models import Job

__all__ = ["claim", "promote_due"]


async def _swap_all(store: Store, index: Index, pairs: Sequence[tuple[Entry, Job]]) -> list[bool]:
    """Write each ``new`` over its entry if that record is still at the entry's revision."""
    answers = await store.write_each([Write(new.id, new, entry.rev) for entry, new in pairs])
    done = []
    for (entry, new), answer in zip(pairs, answers, strict=True):
        if isinstance(answer, Conflict):
            index.conflicted[new.id] = entry.rev
            done.append(False)
        elif isinstance(answer, BaseException):
            raise answer
        else:
            index.apply(new.id, new, answer)
            done.append(True)
    return done


async def claim(store: Store, index: Index, queue: str, limit: int, *, lease: float, now: float) -> list[Job]:
    """Claim up to ``limit`` ready jobs of ``queue`` in priority order.

    Each job is its own compare-and-set, all in flight together (one wait for all the acks):
    one lost race costs one job, never the round (and an atomic batch takes a few milliseconds
    longer to commit).
    """
    claimed: list[Job] = []
    tried: set[str] = set()
    promote = True
    while len(claimed) < limit:
        selected, leftover = index.select(queue, now, limit - len(claimed), tried)
        if not promote:
            leftover = []
        promote = False
        if not selected and not leftover:
            break
        news = [transitions.claim(_job(entry), now, lease) for entry in selected]
        tried.update(new.id for new in news)
        pairs = list(zip(selected, news, strict=True))
        pairs += [(entry, transitions.promote(_job(entry))) for entry in leftover]
        done = await _swap_all(store, index, pairs)
        claimed += [new for new, ok in zip(news, done, strict=False) if ok]
        if all(done[: len(news)]):
            break
    return claimed


def _job(entry: Entry) -> Job:
    assert entry.job is not None
    return entry.job


async def promote_due(store: Store, index: Index, limit: int, now: float) -> int:
    """Move scheduled jobs whose time has come to ``queued``, oldest records first."""
    due = index.due(now)[:limit]
    return sum(await _swap_all(store, index, [(e, transitions.promote(_job(e))) for e in due]))
