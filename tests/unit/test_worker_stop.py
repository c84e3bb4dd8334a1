"""Stopping is bounded: a worker ends within shutdown_grace + broker_timeout (+ a second), even
while its broker hangs, whether it is stopped or cancelled from outside."""

from __future__ import annotations

import anyio
import pytest

from asynctask import App, JobCtx, MemoryBroker, Worker
from asynctask.testing import wait_until
from asynctask.testing.severable import Severable

pytestmark = pytest.mark.anyio

GRACE, TIMEOUT = 0.2, 0.3
BOUND = GRACE + TIMEOUT + 1.0 + 1.0  # the documented bound, plus a second of slack for a busy machine


def make() -> tuple[App, anyio.Event]:
    app = App(MemoryBroker())
    started = anyio.Event()

    @app.task
    async def endless(ctx: JobCtx) -> None:
        started.set()
        await anyio.sleep_forever()

    return app, started


@pytest.mark.parametrize("how", ["stop()", "cancelled"])
async def test_a_stalled_broker_cannot_hold_a_stopping_worker(how: str) -> None:
    app, started = make()
    host = Severable(app)
    worker = Worker(host, poll_interval=0.02, shutdown_grace=GRACE, broker_timeout=TIMEOUT)
    async with app:
        await app.publish("endless")
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            with anyio.fail_after(10):
                await started.wait()
            host.stall()  # every broker call now hangs, like a half-open connection
            with anyio.fail_after(BOUND):
                if how == "stop()":
                    worker.stop()
                    await wait_until(lambda: "idle" in repr(worker), timeout=BOUND)
                else:
                    tg.cancel_scope.cancel()
                    await anyio.sleep_forever()


async def test_stop_now_during_the_grace_period_interrupts_at_once() -> None:
    app, started = make()
    worker = Worker(app, poll_interval=0.02, shutdown_grace=3600)
    async with app:
        handle = await app.publish("endless")
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            with anyio.fail_after(10):
                await started.wait()
            worker.stop()
            await wait_until(lambda: "stopping" in repr(worker))
            with anyio.fail_after(5):
                worker.stop_now()
                await wait_until(lambda: "idle" in repr(worker))
        back = await handle.info()
        assert back is not None and back.status.value == "queued" and back.attempts == 0
