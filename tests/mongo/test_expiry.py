"""Expiry on MongoDB: reads hide a job at ``expires_at``; the TTL index deletes it later."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from asynctask.brokers.mongo import MongoBroker
from asynctask.models import OutcomeKind
from asynctask.testing import FakeClock, wait_until
from tests.backend_mongo import mongo_broker
from tests.mongo.helpers import job, outcome

pytestmark = pytest.mark.anyio


async def test_an_expired_job_reads_as_gone_before_anything_deletes_it(
    notx: MongoBroker, clock: FakeClock
) -> None:
    await notx.enqueue([job("a", clock())])
    [held] = await notx.claim("q", 1, lease=30, worker="w")
    await notx.complete([outcome(held, result=b"1", expires_at=clock() + 10)])
    raw = await notx.collection.find_one({"_id": "a"})
    margin = raw["expire_on"].replace(tzinfo=UTC).timestamp() - time.time()
    assert 10 + notx.ttl_margin - 5 < margin <= 10 + notx.ttl_margin, (
        "expire_on: the remaining life plus the margin"
    )
    clock.advance(11)
    assert await notx.get("a") is None
    assert await notx.list_jobs() == []
    assert await notx.collection.count_documents({"_id": "a"}) == 1, "still stored until pruned"
    assert await notx.prune(10) == 1
    assert await notx.collection.count_documents({"_id": "a"}) == 0


async def test_the_ttl_index_deletes_expired_jobs_nobody_pruned() -> None:
    # A real clock and no margin: the server's TTL monitor (every 60 s on MongoDB; at once on
    # mongoeco) deletes the job on its own.
    async with mongo_broker(time.time, ttl_margin=0.0) as broker:
        await broker.enqueue([job("a", time.time()), job("b", time.time())])
        claimed = await broker.claim("q", 2, lease=30, worker="w")
        expiring = next(j for j in claimed if j.id == "a")
        kept = next(j for j in claimed if j.id == "b")
        await broker.complete(
            [outcome(expiring, result=b"1", expires_at=time.time() + 0.2), outcome(kept, OutcomeKind.FAILED)]
        )
        await wait_until(lambda: _count(broker, "a", 0), timeout=90, interval=0.1)
        assert await broker.collection.count_documents({"_id": "b"}) == 1, "no expiry, no deletion"
        index = (await broker.collection.index_information())["ttl"]
        assert index["expireAfterSeconds"] == 0 and index["key"] == [("expire_on", 1)]


async def _count(broker: MongoBroker, job_id: str, expected: int) -> bool:
    return await broker.collection.count_documents({"_id": job_id}) == expected


def test_expire_on_is_a_utc_date() -> None:
    from asynctask.brokers.mongo.documents import expire_on

    when = expire_on(2_000.0, 1_000.0, 60.0)
    assert when.tzinfo is UTC
    assert abs(when.timestamp() - (time.time() + 1_060.0)) < 5
    assert expire_on(0.0, 1e12, 0.0) == datetime.fromtimestamp(0, UTC), "never before the epoch"
