"""SIGKILL the server mid-run: the broker reconnects and no job is lost."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from asynctask.brokers.redis import RedisBroker
from asynctask.errors import BrokerUnavailable
from asynctask.models import JobStatus, Outcome, OutcomeKind
from asynctask.testing import FakeClock, wait_until
from tests.redis.helpers import broker_for, job
from tests.redis.server import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

JOBS = 300
LEASE = 30.0


async def succeeded(broker: RedisBroker) -> int:
    try:
        return len(await broker.list_jobs(status=JobStatus.SUCCEEDED, limit=JOBS + 1))
    except BrokerUnavailable:
        return -1


async def test_jobs_survive_a_server_crash(own_server: Callable[..., RedisServer]) -> None:
    # fsync every write: the test is about the broker, not about AOF's one-second window.
    server = own_server("--appendonly", "yes", "--appendfsync", "always")
    clock = FakeClock()
    broker = broker_for("crash", url=server.url, clock=clock)
    await broker.open()
    errors = 0
    try:
        await broker.enqueue([job(f"j{i:03d}", clock(), max_retries=5) for i in range(JOBS)])

        async def worker() -> None:
            # A worker loop that survives outages: a claim or completion lost to the crash
            # leaves a lease behind, which rescue hands back once it expires.
            nonlocal errors
            while True:
                try:
                    await broker.rescue_expired(100)
                    batch = await broker.claim("q", 10, lease=LEASE, worker="w")
                    await broker.complete(
                        [
                            Outcome(job_id=j.id, token=j.token, kind=OutcomeKind.SUCCEEDED, result=b"ok")
                            for j in batch
                        ]
                    )
                except BrokerUnavailable:
                    errors += 1
                await anyio.sleep(0.005)

        async def outage_seen() -> bool:
            return errors > 0

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker)
            await wait_until(lambda: _at_least(broker, JOBS // 3), timeout=30)
            server.kill()
            await wait_until(outage_seen, timeout=30)
            server.start()
            # Leases taken just before the crash must expire before they are rescued.
            clock.advance(LEASE + 1)
            try:
                await wait_until(lambda: _at_least(broker, JOBS), timeout=30, interval=0.05)
            except TimeoutError:
                stuck = [
                    j for j in await broker.list_jobs(limit=JOBS + 1) if j.status is not JobStatus.SUCCEEDED
                ]
                pytest.fail(f"not finished after the restart (clock {clock()}): {stuck[:5]}")
            tg.cancel_scope.cancel()
        assert errors > 0, "the worker saw the outage"
        jobs = await broker.list_jobs(limit=JOBS + 1)
        assert len(jobs) == JOBS
        assert {j.status for j in jobs} == {JobStatus.SUCCEEDED}
        assert {j.result for j in jobs} == {b"ok"}
    finally:
        await broker.close()
        server.stop()


async def _at_least(broker: RedisBroker, n: int) -> bool:
    return await succeeded(broker) >= n
