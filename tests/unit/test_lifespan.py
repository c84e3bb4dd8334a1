"""The worker lifespan: registration, entering and exiting around a worker's run, and ctx.resources."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from asynctask import App, ConfigurationError, JobCtx, LifespanFailed, Worker
from asynctask.contrib.fastapi import lifespan
from asynctask.testing import perform, wait_until

pytestmark = pytest.mark.anyio


def test_registration_checks_what_it_is_given() -> None:
    app = App("memory://")

    async def coroutine() -> None:
        return None

    def generator() -> Iterator[int]:
        yield 1

    async def takes_args(app: App) -> AsyncIterator[None]:
        yield

    for bad, message in [
        (coroutine, "must be an async generator"),
        (generator, "must be an async generator"),
        (takes_args, "must take no arguments"),
        (42, "must be callable"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            app.lifespan(bad)  # type: ignore[type-var]

    @app.lifespan
    @asynccontextmanager
    async def first() -> AsyncIterator[int]:  # the factory form: already a context manager
        yield 1

    assert app.worker_lifespan is first
    with pytest.raises(ConfigurationError, match="already registered"):

        @app.lifespan
        async def second() -> AsyncIterator[int]:
            yield 2


async def test_ctx_resources_without_a_lifespan_says_how_to_add_one() -> None:
    app = App("memory://")

    @app.task
    async def uses(ctx: JobCtx) -> Any:
        return ctx.resources

    with pytest.raises(ConfigurationError, match=r"registers no worker lifespan; add one with @app.lifespan"):
        await perform(uses)


async def test_resources_as_checks_the_type() -> None:
    app = App("memory://")

    @app.task
    async def uses(ctx: JobCtx) -> int:
        return len(ctx.resources_as(dict))

    assert await perform(uses, resources={"a": 1}) == 1
    with pytest.raises(TypeError, match=r"ctx\.resources is a list, not a dict"):
        await perform(uses, resources=[1])


async def test_a_stop_while_the_lifespan_starts_ends_the_run_without_claiming() -> None:
    app = App("memory://")
    entered = anyio.Event()
    exits: list[str] = []

    @app.lifespan
    async def slow() -> AsyncIterator[None]:
        entered.set()
        try:
            await anyio.sleep_forever()  # a database that does not answer
            yield
        finally:
            exits.append("unwound")

    @app.task
    async def job(ctx: JobCtx) -> None:
        return None

    worker = Worker(app)
    async with app:
        handle = await job.publish(None)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await entered.wait()
            worker.stop()
        info = await handle.info()
        assert info.status.value == "queued" and info.attempts == 0
    assert exits == ["unwound"]


async def test_an_error_while_closing_is_logged_and_the_worker_still_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App("memory://")

    @app.lifespan
    async def resources() -> AsyncIterator[str]:
        yield "pool"
        raise RuntimeError("close failed")

    worker = Worker(app, poll_interval=0.01)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        worker.stop()
    assert any(
        r.getMessage() == "the worker lifespan failed while closing" and r.exc_info for r in caplog.records
    )
    assert not app.broker.is_open


async def test_a_context_manager_that_is_not_async_fails_while_starting() -> None:
    app = App("memory://")
    app.lifespan(lambda: "not a context manager")
    with pytest.raises(
        LifespanFailed, match="it returned 'not a context manager', not an async context manager"
    ):
        await Worker(app).run()


async def test_the_fastapi_embedded_worker_enters_the_lifespan(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app = App("memory://")
    events: list[str] = []

    @app.lifespan
    async def resources() -> AsyncIterator[str]:
        events.append("open")
        yield "client"
        events.append("close")

    @app.task
    async def hello(ctx: JobCtx) -> str:
        return f"hello from {ctx.resources}"

    class Server:  # any Starlette-style app: only its lifespan is used here
        state = type("State", (), {})()

    server = Server()
    async with lifespan(app, worker=True, concurrency=2, poll_interval=0.01)(server):
        handle = await hello.publish(None)
        assert await handle.result(timeout=10) == "hello from client"
        assert events == ["open"]
    assert events == ["open", "close"]
    await wait_until(lambda: not app.broker.is_open)
