"""App-level behaviour that needs no worker: registration, validation, bad input at publish."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from asynctask import (
    App,
    ConfigurationError,
    InvalidName,
    JobCtx,
    JobNotFound,
    JobTimeout,
    MemoryBroker,
    MissingExtra,
    PayloadDecodeError,
    PayloadTooLarge,
    UnknownTask,
)
from asynctask.testing import FakeClock

pytestmark = pytest.mark.anyio


class Point(msgspec.Struct):
    x: int
    y: int


def make_app(**kw: object) -> App:
    clock = FakeClock(start=1000.0)
    return App(MemoryBroker(clock=clock), clock=clock, **kw)  # type: ignore[arg-type]


def test_default_broker_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("ASYNCTASK_BROKER_URL", "memory:///tmp/asynctask-env-test.json")
    assert App().display_url == "memory:///tmp/asynctask-env-test.json"
    monkeypatch.delenv("ASYNCTASK_BROKER_URL")
    assert App().display_url == "memory://"


def test_bad_broker_urls_are_rejected_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="unknown broker URL scheme 'amqp'"):
        App("amqp://localhost")
    with pytest.raises(ConfigurationError, match="no scheme"):
        App("localhost:6379")


def test_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # makes "import asyncpg" fail
    with pytest.raises(MissingExtra, match=r"pip install 'asynctask\[postgres\]'"):
        App("postgresql://localhost/db")


def test_task_registration_and_names() -> None:
    app = make_app()

    @app.task
    async def plain(ctx: JobCtx, p: Point) -> int:
        return p.x

    @app.task(name="billing.charge:v2", queue="billing")
    async def charge(ctx: JobCtx) -> None:
        return None

    assert set(app.tasks) == {"plain", "billing.charge:v2", "asynctask.group", "asynctask.chain"}
    assert app.queues == ["default", "billing"]
    assert repr(plain) == "<Task plain queue=default>"
    with pytest.raises(ConfigurationError, match="already registered"):

        @app.task(name="plain")
        async def again(ctx: JobCtx) -> None:
            return None

    for bad_queue in ["", "has space", "{tag}", "a.b", "x" * 65]:
        with pytest.raises(InvalidName, match="invalid queue name"):
            app.task(queue=bad_queue)(charge.fn)
    with pytest.raises(InvalidName, match="invalid task name"):
        app.task(name="no spaces allowed")(charge.fn)
    with pytest.raises(TypeError, match="not a generator"):

        @app.task
        async def generator(ctx: JobCtx) -> AsyncIterator[int]:
            yield 1

    with pytest.raises(TypeError, match="must be a function"):
        app.task(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"must take \(ctx\) or \(ctx, payload\)"):

        @app.task
        async def too_many(ctx: JobCtx, a: int, b: int) -> None:  # type: ignore[misc]
            return None


async def test_publish_rejects_bad_input_before_sending() -> None:
    app = make_app(max_payload_size=100)

    @app.task
    async def draw(ctx: JobCtx, p: Point) -> int:
        return p.x + p.y

    async with app:
        with pytest.raises(UnknownTask, match=r"no task named .nope. is registered .known: draw."):
            await app.publish("nope", {})
        with pytest.raises(PayloadDecodeError, match=r"Expected `int`, got `str` - at `\$.y`"):
            await app.publish("draw", {"x": 1, "y": "two"})
        with pytest.raises(PayloadDecodeError, match="missing required field `y`"):
            await app.publish("draw", {"x": 1})
        with pytest.raises(PayloadTooLarge, match=r"is 1[0-9]{3} bytes; the limit is 100"):
            await app.publish("draw", {"x": 1, "y": 2, "pad": "z" * 1000})
        with pytest.raises(InvalidName, match="invalid queue name"):
            await draw.publish(Point(1, 2), queue="bad queue")
        with pytest.raises(InvalidName, match="invalid job id"):
            await draw.publish(Point(1, 2), job_id="has space")
        with pytest.raises(ConfigurationError, match="timezone-aware"):
            await draw.publish(Point(1, 2), at=datetime(2030, 1, 1))
        with pytest.raises(ConfigurationError, match="either delay= or at="):
            await draw.publish(Point(1, 2), delay=1, at=datetime(2030, 1, 1, tzinfo=UTC))
        with pytest.raises(ConfigurationError, match="delay must be"):
            await draw.publish(Point(1, 2), delay=-1)
        with pytest.raises(TypeError, match="cannot encode"):
            await app.publish("draw", object())
        assert await app.list_jobs() == [], "nothing was enqueued by the failed publishes"


async def test_publish_options_reach_the_job() -> None:
    app = make_app(max_retries=7)

    @app.task(queue="q1", priority=2, timeout=9, max_retries=1)
    async def opts(ctx: JobCtx, n: int) -> int:
        return n

    @app.task
    async def defaults(ctx: JobCtx) -> None:
        return None

    async with app:
        a = await opts.publish(1)
        b = await opts.publish(
            2, queue="q2", priority=5, timeout=3, max_retries=4, delay=timedelta(seconds=30)
        )
        at = datetime.fromtimestamp(5000, UTC)
        c = await opts.publish(3, at=at, job_id="fixed-id")
        d = await defaults.publish(None)
        ja, jb, jc, jd = [await app.get_job(h.id) for h in (a, b, c, d)]
    assert ja and (ja.queue, ja.priority, ja.timeout, ja.max_retries, ja.run_at) == ("q1", 2, 9, 1, 1000.0)
    assert jb and (jb.queue, jb.priority, jb.timeout, jb.max_retries, jb.run_at) == ("q2", 5, 3, 4, 1030.0)
    assert jc and jc.id == "fixed-id" and jc.run_at == 5000.0
    assert jd and jd.max_retries == 7 and jd.payload == b"null"


async def test_publish_many_is_one_batch_and_idempotent() -> None:
    app = make_app()

    @app.task
    async def n(ctx: JobCtx, i: int) -> int:
        return i

    async with app:
        handles = await app.publish_many([n.spec(i, job_id=f"n-{i % 5}") for i in range(10)])
        assert [h.created for h in handles] == [True] * 5 + [False] * 5
        assert await app.publish_many([]) == []
        assert len(await app.list_jobs()) == 5


async def test_inspection_errors() -> None:
    app = make_app()

    @app.task
    async def idle(ctx: JobCtx) -> None:
        return None

    async with app:
        with pytest.raises(JobNotFound):
            await app.result("missing", timeout=1)
        with pytest.raises(JobNotFound):
            await app.cancel("missing")
        with pytest.raises(JobNotFound):
            await app.retry("missing")
        assert await app.delete("missing") is False
        handle = await idle.publish(None)
        with pytest.raises(JobTimeout, match=r"did not finish within 0\.05 s"):
            await handle.result(timeout=0.05)


async def test_app_open_is_reference_counted_by_its_broker() -> None:
    app = make_app()
    async with app:
        async with app:
            pass
        assert app.broker.is_open
    assert not app.broker.is_open
    with pytest.raises(ConfigurationError, match="open App"):
        async with app:
            app.set_broker("memory://")


@pytest.mark.parametrize("url", ["memory://", "postgresql://app@127.0.0.1:1/db", "redis://127.0.0.1:1/0"])
async def test_a_closed_app_says_so_whatever_the_broker(url: str) -> None:
    app = App(url)

    @app.task
    async def noop(ctx: JobCtx) -> None: ...

    with pytest.raises(ConfigurationError, match=r"the App is not open .*async with app"):
        await noop.publish(None)
    with pytest.raises(ConfigurationError, match="not open"):
        await app.list_jobs()


async def test_an_opened_app_publishes() -> None:
    app = make_app()

    @app.task
    async def noop(ctx: JobCtx) -> None: ...

    async with app:
        assert (await noop.publish(None)).created


def test_reprs() -> None:
    app = make_app()
    assert repr(app) == "<App broker=memory:// tasks=0>"
    assert repr(app.worker(queues=["a"], concurrency=3)).startswith("<Worker ")
    assert "queues=a running=0/3>" in repr(app.worker(queues=["a"], concurrency=3))
