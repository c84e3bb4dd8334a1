"""asynctask.testing: perform, published / assert_published, drain (the fake-clock drain runs on every
broker in the contract suite)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import anyio
import msgspec
import pytest

from asynctask import App, Fail, JobCtx, JobSpec, JobStatus, PayloadDecodeError, Retry
from asynctask.testing import Recorder, assert_published, drain, perform, published

pytestmark = pytest.mark.anyio


class Email(msgspec.Struct):
    to: str
    subject: str = "hi"


def make_app() -> App:
    app = App("memory://")

    @app.task(timeout=0.2)
    async def send(ctx: JobCtx, email: Email) -> str:
        if email.to == "fail@x":
            raise Fail("bounced")
        if email.to == "slow@x":
            await anyio.sleep(5)
        await ctx.set_state({"step": 1})
        await ctx.save("draft")
        ctx.retry_after(30)
        await ctx.spawn("log", {"line": email.to}, delay=5)
        return f"sent to {email.to} on attempt {ctx.attempt}, state {ctx.state}"

    @app.task
    def log(ctx: JobCtx, line: dict[str, str]) -> None:
        return None

    return app


async def test_perform_calls_the_handler_with_a_real_ctx_and_records_it() -> None:
    app = make_app()
    record = Recorder()
    result = await perform(app.tasks["send"], {"to": "a@b"}, attempt=2, state={"step": 0}, record=record)
    assert result == "sent to a@b on attempt 2, state {'step': 1}"
    assert record.states == [{"step": 1}]
    assert record.saved == ["draft"]
    assert record.spawned == [JobSpec("log", {"line": "a@b"}, delay=5)]
    assert record.retry_after == 30
    assert record.ctx is not None and record.ctx.id and record.ctx.worker_id == "asynctask.testing.perform"
    async with app:
        assert await published(app) == [], "perform enqueues nothing"


async def test_perform_raises_what_the_handler_raises() -> None:
    app = make_app()
    with pytest.raises(Fail, match="bounced"):
        await perform(app.tasks["send"], Email(to="fail@x"))
    with pytest.raises(TimeoutError):
        await perform(app.tasks["send"], Email(to="slow@x"))  # the task's timeout applies
    with pytest.raises(PayloadDecodeError, match="Expected `str`, got `int`"):
        await perform(app.tasks["send"], {"to": 1})


async def test_perform_runs_a_sync_handler_in_a_thread_and_checks_the_result() -> None:
    app = App("memory://")

    @app.task
    def where(ctx: JobCtx) -> object:
        return threading.current_thread() is threading.main_thread() or threading.Lock()

    with pytest.raises(TypeError, match="the result of task 'where' could not be encoded"):
        await perform(where)


async def test_published_matches_payloads_through_the_codec() -> None:
    app = make_app()
    send = app.tasks["send"]
    async with app:
        await send.publish(Email(to="a@b"))
        await app.publish("send", {"to": "c@d", "subject": "yo"}, delay=60)
        assert [j.payload for j in await published(app, send)] == [
            b'{"to":"a@b","subject":"hi"}',
            b'{"to":"c@d","subject":"yo"}',
        ]
        assert len(await published(app, "send", {"to": "a@b"})) == 1  # the default subject filled in
        assert len(await published(app, send, Email(to="c@d", subject="yo"), status="scheduled")) == 1
        assert await published(app, send, {"to": "nobody"}) == []
        assert await published(app, send, {"wrong": "shape"}) == []
        await assert_published(app, send, count=2)
        with pytest.raises(AssertionError) as failure:
            await assert_published(app, send, {"to": "x@y"})
    assert str(failure.value) == (
        "expected at least one job of task send with payload {'to': 'x@y'}, found 0; published (send):\n"
        "  send queued Email(to='a@b', subject='hi')\n"
        "  send scheduled Email(to='c@d', subject='yo')"
    )


async def test_drain_on_the_real_clock_waits_for_a_near_job_and_leaves_a_far_one() -> None:
    app = make_app()
    runs: list[int] = []

    @app.task
    async def tick(ctx: JobCtx, n: int) -> int:
        runs.append(n)
        if n == 1 and ctx.attempt == 1:
            raise Retry(delay=0.05)
        return n

    async with app:
        await tick.publish(1)
        far = await tick.publish(2, delay=3600)
        done = await drain(app, timeout=5)
        assert [(j.status, app.decode_result(j)) for j in done] == [(JobStatus.SUCCEEDED, 1)]
        assert runs == [1, 1]
        assert (await far.info()).status is JobStatus.SCHEDULED


async def test_drain_can_replace_the_lifespan_resources_and_restores_it() -> None:
    app = App("memory://")
    opened: list[str] = []

    @app.lifespan
    async def real() -> AsyncIterator[str]:
        opened.append("real pool")
        yield "real pool"

    @app.task
    async def which(ctx: JobCtx) -> str:
        return str(ctx.resources)

    async with app:
        await which.publish(None)
        [done] = await drain(app, resources="fake pool")
        assert app.decode_result(done) == "fake pool" and opened == []
        await which.publish(None)
        [done] = await drain(app)
        assert app.decode_result(done) == "real pool" and opened == ["real pool"]


async def test_drain_says_what_is_still_going_when_it_times_out() -> None:
    app = App("memory://")

    @app.task
    async def forever(ctx: JobCtx) -> None:
        await anyio.sleep_forever()

    async with app:
        await forever.publish(None)
        with pytest.raises(TimeoutError, match=r"drain: work still going after 0.2s \(1 running\)"):
            await drain(app, timeout=0.2)
