"""``wait_for_broker``: a worker started before its broker keeps trying it, for so long.

Each test runs its own server and stops it first, so the worker meets a port nobody listens on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import pytest

from asynctask import App, BrokerUnavailable, JobCtx
from asynctask.testing.clock import wait_until
from tests.redis.server import RedisServer

pytestmark = pytest.mark.anyio


def _waits(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == "broker_wait"]


@pytest.fixture
def down(own_server: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture) -> RedisServer:
    """A private Redis server, stopped (``start()`` brings it back on its port); the worker's
    warnings captured."""
    caplog.set_level(logging.WARNING, logger="asynctask.worker")
    server = own_server()
    server.kill()
    return server


async def test_a_worker_started_before_its_broker_runs_once_the_broker_is_up(
    down: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(broker=down.url)
    ran = anyio.Event()

    @app.task(queue="q")
    async def hello(ctx: JobCtx) -> None:
        ran.set()

    worker = app.worker(wait_for_broker=60, concurrency=1)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await wait_until(lambda: len(_waits(caplog)) >= 2)  # tried, backed off, tried again
            down.start()
            async with app:
                await hello.publish(None)
                await ran.wait()
            worker.stop()
    first = _waits(caplog)[0]
    assert "cannot reach Redis" in first.getMessage() and "trying again in 0.1s" in first.getMessage()


async def test_a_worker_stopped_while_it_waits_for_its_broker_returns(
    down: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(broker=down.url)
    worker = app.worker(wait_for_broker=600)
    with anyio.fail_after(10):  # not the 600 s
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await wait_until(lambda: len(_waits(caplog)) >= 1)
            worker.stop()
    assert not worker.running and not app.broker.is_open


async def test_the_wait_for_the_broker_ends_with_the_error(down: RedisServer) -> None:
    app = App(broker=down.url)
    with anyio.fail_after(10), pytest.raises(BrokerUnavailable, match="cannot reach Redis"):
        await app.worker(wait_for_broker=0.3).run()
    with pytest.raises(ValueError, match="wait_for_broker"):
        app.worker(wait_for_broker=-1)
