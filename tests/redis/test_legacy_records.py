"""Records and index entries written by earlier versions of the broker keep working.

Up to issue #18's bulk-enqueue work every new job also entered ``P:{q}:all`` (a zset nothing
reads; see ``keys.py``). Deployed Redis servers still hold such entries: the jobs behind them
must still be read, listed, claimed, completed, cancelled, deleted and pruned, and their
``all`` entries must go with them. No migration is needed: the job hash layout is unchanged.
"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from asynctask.brokers.redis import RedisBroker
from asynctask.brokers.redis.codec import fmt, priority_key, time_key
from asynctask.models import JobStatus, Outcome, OutcomeKind
from asynctask.testing import FakeClock
from tests.backend_redis import REDIS_URL
from tests.redis.helpers import broker_for, job

pytestmark = pytest.mark.anyio


async def _legacy_enqueue(client: Redis, broker: RedisBroker, job_id: str, now: float, cseq: int) -> None:
    """What the previous ``enqueue`` script stored for a queued job in queue ``q``."""
    qk = broker.keys.queue("q")
    pkey, tkey, seq = priority_key(0), time_key(now), f"{cseq:016x}"
    rmember = pkey + tkey + seq + job_id
    await client.hset(
        qk.job(job_id),
        mapping={
            "id": job_id,
            "status": "queued",
            "run_at": fmt(now),
            "task": "t",
            "queue": "q",
            "payload": b"{}",
            "priority": "0",
            "max_retries": "3",
            "pkey": pkey,
            "tkey": tkey,
            "attempts": "0",
            "token": "0",
            "created_at": fmt(now),
            "cseq": str(cseq),
            "rmember": rmember,
        },
    )
    await client.zadd(qk.all, {seq + job_id: now})
    await client.zadd(qk.created, {job_id: now})
    await client.zadd(qk.ready, {rmember: 0})
    await client.hset(broker.keys.ids, job_id, "q")
    await client.sadd(broker.keys.queues, "q")
    await client.set(qk.seq, cseq)


async def test_legacy_jobs_run_list_cancel_delete_and_prune(prefix: str) -> None:
    clock = FakeClock()
    broker = broker_for(prefix, clock=clock)
    await broker.open()
    client = Redis.from_url(REDIS_URL)
    qk = broker.keys.queue("q")
    try:
        for n, job_id in enumerate(["old1", "old2", "old3"], start=1):
            await _legacy_enqueue(client, broker, job_id, clock(), n)
        assert await broker.enqueue([job("new", clock())]) == [True]
        assert await client.zcard(qk.all) == 3

        old = await broker.get("old1")
        assert old is not None and old.status is JobStatus.QUEUED and old.max_retries == 3
        assert {j.id for j in await broker.list_jobs()} == {"old1", "old2", "old3", "new"}
        assert {j.id for j in await broker.list_jobs(status=JobStatus.QUEUED)} == {
            "old1",
            "old2",
            "old3",
            "new",
        }

        cancelled = await broker.cancel("old2", expires_at=None)
        assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
        assert await broker.delete("old2")
        assert await broker.get("old2") is None

        # Claim order still follows publish order: the legacy jobs, then the new one.
        claimed = await broker.claim("q", 10, lease=30, worker="w")
        assert [j.id for j in claimed] == ["old1", "old3", "new"]
        assert all(j.attempts == 1 and j.status is JobStatus.RUNNING for j in claimed)
        applied = await broker.complete(
            [
                Outcome(job_id=j.id, token=j.token, kind=OutcomeKind.SUCCEEDED, expires_at=clock() + 1)
                for j in claimed
            ]
        )
        assert applied == [True, True, True]
        done = await broker.get("old1")
        assert done is not None and done.status is JobStatus.SUCCEEDED
        assert {j.id for j in await broker.list_jobs(status=JobStatus.SUCCEEDED)} == {"old1", "old3", "new"}

        clock.advance(2)
        assert await broker.prune(100) == 3
        for key in (qk.all, qk.created, qk.ready, qk.leased, qk.finished):
            assert await client.zcard(key) == 0, key
        assert await client.hlen(broker.keys.ids) == 0
    finally:
        await client.aclose()
        await broker.close()
