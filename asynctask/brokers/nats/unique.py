"""Unique jobs on NATS: one record per key naming its holder, taken in the same atomic batch.

The rule (:mod:`asynctask.brokers.base`, "Unique jobs"): a job with a ``unique_key`` is not stored
while another unfinished job holds that key. The record ``u.<key>``
(:class:`~asynctask.brokers.nats.flowrecords.UniqueRecord`) names the job that took the key last;
that job holds it while it is live and unfinished, so finishing, expiring or being deleted
releases the key without touching the record (a lazy release: nothing has to be written when a
job finishes, and no completion path needs to know about keys).

Safety rests on one rule: every write that makes a keyed job unfinished (a publish, a spawned
child, a retry) reads the key's record and writes it again, naming that job, in the same atomic
batch, each under the revision it was read at. Two such writes racing for a key cannot both
commit; the loser runs again on fresh reads and finds the winner holding the key. A job can only
lose the key by finishing, which never needs the record. Records and holders are read from the
server, not from the index.

Deleting or pruning a job removes its key's record if it still names the job (best effort,
compare-and-set: a key taken again meanwhile keeps its record); a record naming a finished job
that is kept stays until then, a few dozen bytes.
"""

from __future__ import annotations

from contextlib import suppress

from asynctask.brokers import transitions
from asynctask.brokers.nats import flowrecords
from asynctask.brokers.nats.client import Conflict
from asynctask.brokers.nats.index import Index
from asynctask.brokers.nats.store import Store
from asynctask.brokers.nats.tx import Tx, run
from asynctask.models import Job

__all__ = ["find", "holder", "release", "take"]


async def holder(tx: Tx, key: str, now: float) -> Job | None:
    """The unfinished job holding ``key`` as this transaction sees it (a job taken earlier in the
    same transaction included), or ``None``."""
    record_key = tx.layout.unique_key(key)
    await tx.load_records([record_key])
    data = tx.record(record_key)
    record = flowrecords.decode_unique(data) if data else None
    if record is None:
        return None
    await tx.load([record.job_id], fresh=True)
    job = tx.get(record.job_id)
    return job if transitions.holds_key(job, key, now) else None


def take(tx: Tx, key: str, job_id: str) -> None:
    """Make ``job_id`` the holder of ``key`` at commit (after :func:`holder` found it free)."""
    tx.put_record(tx.layout.unique_key(key), flowrecords.encode(flowrecords.UniqueRecord(job_id)))


async def find(store: Store, index: Index | None, key: str, now: float) -> Job | None:
    """The unfinished job holding ``key``, read from the server."""

    async def look(tx: Tx) -> Job | None:
        return await holder(tx, key, now)

    return await run(store, index, look)


async def release(store: Store, key: str, job_id: str) -> None:
    """Remove the record of ``key`` if it still names ``job_id`` (just deleted): a tidy-up only,
    since a record naming a job that is gone frees the key already."""
    record_key = store.layout.unique_key(key)
    data, revision = await store.read_record(record_key)
    record = flowrecords.decode_unique(data) if data else None
    if record is None or record.job_id != job_id:
        return
    with suppress(Conflict):  # the key was taken again meanwhile: its record stays
        await store.purge_record(record_key, revision)
