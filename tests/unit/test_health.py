"""Health verdicts of a worker in this process, on a fake monotonic clock (memory broker)."""

from __future__ import annotations

import anyio
import pytest

from asynctask import App, JobCtx, Worker
from asynctask.runtime.health import Health
from asynctask.testing import FakeClock, wait_until
from asynctask.testing.severable import Severable

pytestmark = pytest.mark.anyio


async def test_verdicts_follow_the_loop_the_claims_and_the_broker() -> None:
    app = App("memory://")

    @app.task
    async def noop(ctx: JobCtx) -> None:
        pass

    host = Severable(app)
    worker = Worker(host, concurrency=2, poll_interval=0.02, broker_timeout=0.5, shutdown_grace=0)
    ticks = FakeClock(start=0.0)  # the monotonic clock the probes read
    health = Health(worker, threshold=1.0, clock=ticks)
    assert not health.ready() and health.ready().reason == "the worker has not started yet"
    async with anyio.create_task_group() as tg:
        tg.start_soon(health.run)
        await tg.start(worker.run)
        assert health.live() and health.ready(), health

        # No tick for longer than the threshold: the loop counts as blocked until it ticks again.
        ticks.advance(1.5)
        verdict = health.live()
        assert not verdict and verdict.reason == "the event loop has been blocked for 1.5s"
        assert not health.ready()
        await wait_until(lambda: health.live().ok)

        # The broker stops answering: not ready, still live (a restart would not help).
        host.sever()
        await wait_until(lambda: not health.ready().ok)
        assert "the broker does not answer" in health.ready().reason
        ticks.advance(5)  # long past threshold + poll interval + broker deadline
        await wait_until(lambda: ticks() - health.last_tick < 1)
        assert health.live(), health.live()
        host.broker.severed = False
        await wait_until(lambda: health.ready().ok)

        # Fetchers that stop asking for work while there is room: not live.
        health.last_claim_loop -= 10  # as if no claim or wait had ended for ten seconds
        verdict = health.live()
        assert not verdict and "has not claimed any" in verdict.reason
        await wait_until(lambda: health.live().ok)  # the next claim or wait ends

        worker.stop()
        await wait_until(lambda: not health.ready().ok)
        tg.cancel_scope.cancel()
    assert not health.live() and health.live().reason == "the worker has stopped"
