"""Many claimers, one queue: every job is claimed exactly once."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

from asynctask.brokers.redis import RedisBroker
from asynctask.testing import FakeClock
from tests.redis.helpers import broker_for, job

pytestmark = pytest.mark.anyio


async def test_twenty_claimers_claim_each_job_exactly_once(prefix: str) -> None:
    clock = FakeClock()
    publisher = broker_for(prefix, clock=clock)
    await publisher.open()
    try:
        now = clock()
        jobs = [job(f"j{i:04d}", now, priority=i % 3) for i in range(1000)]
        assert await publisher.enqueue(jobs) == [True] * 1000
    finally:
        await publisher.close()

    claims: Counter[str] = Counter()

    async def claimer(broker: RedisBroker) -> None:
        # Each claimer has its own client (and so its own connections).
        await broker.open()
        try:
            while batch := await broker.claim("q", 7, lease=60, worker=repr(broker)):
                claims.update(j.id for j in batch)
                await anyio.sleep(0)  # interleave with the other claimers
        finally:
            await broker.close()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(claimer, broker_for(prefix, clock=clock))
    assert len(claims) == 1000
    assert set(claims.values()) == {1}, [i for i, n in claims.items() if n > 1][:10]
