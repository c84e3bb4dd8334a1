"""Workflows on every broker: subtasks + on_finish, groups, chains, pipelines, incremental tasks."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest

from asynctask import App, Done, JobCtx, JobFailed, JobStatus, Worker, reentrant
from asynctask.models import Job
from asynctask.testing import FakeClock, wait_until
from asynctask.testing.contract.suite.helpers import status_of, workers
from asynctask.testing.severable import Severable

# --- subtasks ------------------------------------------------------------------------------


async def test_subtasks_then_on_finish_once(app: App) -> None:
    finished: list[list[str]] = []
    release = anyio.Event()

    @app.task
    async def square(ctx: JobCtx, n: int) -> int:
        assert ctx.parent_id is not None
        await release.wait()
        return n * n

    @app.task
    async def fan_out(ctx: JobCtx, n: int) -> str:
        for i in range(n):
            await ctx.spawn(square, i)
        return "spawned"

    @fan_out.on_finish
    async def total(ctx: JobCtx, children: list[Job]) -> int:
        finished.append([c.id for c in children])
        return sum(ctx.decode_result(c) for c in children)

    async with workers(app):
        handle = await fan_out.publish(5)

        async def waiting() -> bool:
            return await status_of(app, handle.id) is JobStatus.WAITING

        await wait_until(waiting)
        parent = await handle.info()
        assert parent is not None and parent.pending == 5
        assert app.decode_result(parent) == "spawned"
        release.set()
        assert await app.result(handle.id, timeout=10) == 0 + 1 + 4 + 9 + 16
    assert finished == [[f"{handle.id}:{i}" for i in range(5)]]


async def test_a_parent_that_retries_after_spawning_does_not_duplicate_children(app: App) -> None:
    finishes = 0

    @app.task
    async def child(ctx: JobCtx, n: int) -> int:
        return n

    @app.task(max_retries=2)
    async def parent(ctx: JobCtx) -> None:
        for i in range(3):
            await ctx.spawn(child, i)
        if ctx.attempt == 1:
            raise RuntimeError("failed after spawning")

    @parent.on_finish
    async def done(ctx: JobCtx, children: list[Job]) -> int:
        nonlocal finishes
        finishes += 1
        return len(children)

    async with workers(app):
        handle = await parent.publish(None)
        assert await app.result(handle.id, timeout=10) == 3
    assert len(await app.list_jobs(task="child")) == 3
    assert finishes == 1


async def test_on_finish_runs_once_for_200_children_over_4_workers(app: App) -> None:
    finishes: list[int] = []

    @app.task
    async def leaf(ctx: JobCtx, n: int) -> int:
        await anyio.lowlevel.checkpoint()
        return n

    @app.task
    async def root(ctx: JobCtx, n: int) -> None:
        for i in range(n):
            await ctx.spawn(leaf, i)

    @root.on_finish
    async def gather(ctx: JobCtx, children: list[Job]) -> int:
        finishes.append(len(children))
        return sum(ctx.decode_result(c) for c in children)

    async with workers(app, count=4) as started:
        handle = await root.publish(200)
        assert await app.result(handle.id, timeout=30) == sum(range(200))
    assert finishes == [200]
    assert sum(w.stats.succeeded for w in started) == 202, "200 leaves, the root, and its finish phase"


async def test_failed_children_are_visible_to_on_finish(app: App) -> None:
    @app.task(max_retries=0)
    async def maybe(ctx: JobCtx, n: int) -> int:
        if n % 2:
            raise ValueError(f"odd {n}")
        return n

    @app.task
    async def batch(ctx: JobCtx) -> None:
        for i in range(4):
            await ctx.spawn(maybe, i)

    @batch.on_finish
    async def report(ctx: JobCtx, children: list[Job]) -> dict[str, list[int]]:
        return {
            "ok": [i for i, c in enumerate(children) if c.status is JobStatus.SUCCEEDED],
            "failed": [
                i for i, c in enumerate(children) if c.status is JobStatus.FAILED and "odd" in (c.error or "")
            ],
        }

    async with workers(app):
        assert await app.result((await batch.publish(None)).id, timeout=10) == {
            "ok": [0, 2],
            "failed": [1, 3],
        }


async def test_own_subtask_handler(app: App) -> None:
    @app.task(queue="crawl")
    async def crawl(ctx: JobCtx, pages: int) -> None:
        for page in range(pages):
            await ctx.spawn_subtask(page)

    @crawl.subtask
    async def crawl_page(ctx: JobCtx, page: int) -> str:
        return f"page {page}"

    @crawl.on_finish
    async def crawled(ctx: JobCtx, children: list[Job]) -> list[str]:
        return [ctx.decode_result(c) for c in children]

    assert crawl_page.name == "crawl.subtask"
    async with workers(app):
        assert await app.result((await crawl.publish(3)).id, timeout=10) == ["page 0", "page 1", "page 2"]


# --- groups and chains -----------------------------------------------------------------------


async def test_group_succeeds_only_if_all_succeed(app: App) -> None:
    @app.task(max_retries=0)
    async def check(ctx: JobCtx, n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return n

    async with workers(app):
        good = await app.group([check.spec(i) for i in range(3)])
        assert await app.result(good, timeout=10) == {"succeeded": 3}
        info = await app.get_group(good)
        assert info.status == "succeeded"
        assert [j.status for j in info.jobs] == [JobStatus.SUCCEEDED] * 3

        bad = await app.group([check.spec(1), check.spec(-1), check.spec(2)], group_id="nightly-checks")
        assert bad == "nightly-checks"
        with pytest.raises(JobFailed, match="1 of 3 jobs failed"):
            await app.result(bad, timeout=10)
        info = await app.get_group(bad)
        assert info.status == "failed"
        assert [j.id for j in info.failed] == ["nightly-checks:1"]


async def test_chain_passes_results_along(app: App) -> None:
    @app.task
    async def add(ctx: JobCtx, n: int) -> int:
        return (ctx.prev_result or 0) + n

    async with workers(app):
        chain = await app.chain([add.spec(1), add.spec(10), add.spec(100)])
        assert await app.result(chain, timeout=10) == 111
        info = await app.get_chain(chain)
        assert info.status == "succeeded" and info.failed_link is None
        assert [link.status for link in info.links] == ["succeeded"] * 3


async def test_a_link_that_saves_its_result_passes_it_on(app: App) -> None:
    seen: list[Any] = []

    @app.task
    async def save_then_return_none(ctx: JobCtx, n: int) -> None:
        seen.append(ctx.prev_result)
        await ctx.save((ctx.prev_result or 0) + n)

    async with workers(app):
        chain = await app.chain([save_then_return_none.spec(n) for n in (1, 10, 100)])
        assert await app.result(chain, timeout=10) == 111
    assert seen == [None, 1, 11], "each link saw the value its predecessor stored with ctx.save"


async def test_hooks_of_a_parent_fire_once_per_job(app: App) -> None:
    events: list[str] = []

    async def on_processing(ctx: JobCtx) -> None:
        events.append("processing")

    async def on_success(ctx: JobCtx, result: Any) -> None:
        events.append(f"success {result}")

    @app.task
    async def child(ctx: JobCtx, n: int) -> int:
        return n

    @app.task(on_processing=on_processing, on_success=on_success)
    async def parent(ctx: JobCtx) -> str:
        for n in range(3):
            await ctx.spawn(child, n)
        return "spawned"

    @parent.on_finish
    async def total(ctx: JobCtx, children: list[Job]) -> int:
        return sum(ctx.decode_result(c) for c in children)

    async with workers(app):
        assert await app.result((await parent.publish(None)).id, timeout=10) == 3
    assert events == ["processing", "success 3"], "one start, one success: after on_finish, with its result"


async def test_a_failed_link_stops_the_chain(app: App) -> None:
    @app.task(max_retries=0)
    async def step(ctx: JobCtx, n: int) -> int:
        if n == 2:
            raise RuntimeError("link two broke")
        return n

    async with workers(app):
        chain = await app.chain([step.spec(1), step.spec(2), step.spec(3)])
        with pytest.raises(JobFailed, match=r"link 1 \(step\) failed: RuntimeError: link two broke"):
            await app.result(chain, timeout=10)
        info = await app.get_chain(chain)
        assert info.status == "failed" and info.failed_link == 1
        assert [link.status for link in info.links] == ["succeeded", "failed", "pending"]
        assert info.links[1].error is not None and "link two broke" in info.links[1].error


# --- pipelines ---------------------------------------------------------------------------------


class Doc(msgspec.Struct):
    text: str


async def test_pipeline_resumes_at_the_failed_step(app: App) -> None:
    calls: list[str] = []

    async def fetch(ctx: JobCtx, url: str) -> Doc:
        calls.append("fetch")
        return Doc(text=f"<{url}>")

    async def parse(ctx: JobCtx, doc: Doc) -> list[str]:
        calls.append(f"parse@{ctx.attempt}")
        if ctx.attempt == 1:
            raise ValueError("parser crashed")
        return [doc.text]

    flaky_tries = 0

    async def store(ctx: JobCtx, words: list[str]) -> int:
        nonlocal flaky_tries
        flaky_tries += 1
        if flaky_tries < 3:
            raise ConnectionError("db blip")
        return len(words)

    etl = app.pipeline("etl", [fetch, parse, reentrant(store, times=3, sleep=0.001)], max_retries=2)
    async with workers(app):
        handle = await etl.publish("x")
        assert await handle.result(timeout=10) == 1
    assert calls == ["fetch", "parse@1", "parse@2"], "the retry resumed at step 2, not at the start"
    job = await app.get_job(handle.id)
    assert job is not None and job.attempts == 2
    progress = msgspec.json.decode(job.state or b"{}")
    assert progress["step"] == 3
    failures = [(e["step"], e["attempt"]) for e in progress["log"]]
    assert failures == [("parse", 1), ("store", 2), ("store", 2)]
    assert "parser crashed" in progress["log"][0]["error"]


async def test_pipeline_validates_its_input_type(app: App) -> None:
    async def first(ctx: JobCtx, n: int) -> int:
        return n

    p = app.pipeline("typed", [first])
    async with app:
        with pytest.raises(Exception, match="Expected `int`"):
            await app.publish(p, "not a number")


# --- incremental tasks ---------------------------------------------------------------------------


class Count(msgspec.Struct):
    n: int
    total: int


async def test_incremental_task_pause_and_resume(app: App) -> None:
    steps: list[int] = []
    at_three = anyio.Event()

    @app.incremental()
    async def count(ctx: JobCtx, state: Count) -> Count | Done[int]:
        steps.append(state.n)
        if state.n == 10:
            return Done(state.total)
        if state.n == 3:
            at_three.set()
            await wait_until(lambda: ctx.pause_requested)
        return Count(n=state.n + 1, total=state.total + state.n)

    async with workers(app):
        handle = await count.publish(Count(n=0, total=0))
        with anyio.fail_after(10):
            await at_three.wait()
        await app.pause(handle.id)

        async def paused() -> bool:
            return await status_of(app, handle.id) is JobStatus.PAUSED

        await wait_until(paused)
        parked = await handle.info()
        assert parked is not None and parked.attempts == 0
        assert msgspec.json.decode(parked.state or b"null") == {"n": 4, "total": 6}
        assert steps == [0, 1, 2, 3]
        await app.resume(handle.id)
        assert await handle.result(timeout=10) == sum(range(10))
    assert steps == list(range(11)), "resumed from the saved state, no step repeated"


async def test_incremental_task_survives_a_crashed_worker(app: App, clock: FakeClock) -> None:
    steps: list[int] = []
    crash = anyio.Event()

    @app.incremental(max_retries=3)
    async def walk(ctx: JobCtx, n: int) -> int | Done[int]:
        steps.append(n)
        if n == 5 and ctx.attempt == 1:
            crash.set()
            await anyio.sleep_forever()  # the worker dies here, mid-step
        return Done(n) if n == 8 else n + 1

    async with app:
        handle = await walk.publish(0)
        cut_off = Severable(app)
        doomed = Worker(
            cut_off, concurrency=2, poll_interval=0.02, lease=30, shutdown_grace=0, broker_timeout=0.2
        )
        async with anyio.create_task_group() as tg:
            await tg.start(doomed.run)
            with anyio.fail_after(10):
                await crash.wait()
            cut_off.sever()  # the worker can no longer reach the broker: as if it had died
            tg.cancel_scope.cancel()
        job = await handle.info()
        assert job is not None and job.status is JobStatus.RUNNING, "the dead worker still holds the lease"
        clock.advance(31)
        assert await app.broker.rescue_expired(10) == 1
        async with workers(app):
            assert await handle.result(timeout=10) == 8
    assert steps == [0, 1, 2, 3, 4, 5, 5, 6, 7, 8], "the new worker resumed at the last saved state"
