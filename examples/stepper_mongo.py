"""Stepper's features on MongoDB: a delay, retry-after, a state that survives a failure, and
subtasks with an on_finish hook.

ASYNCTASK_MONGO_URL=mongodb://localhost:27017/stepper_example python examples/stepper_mongo.py

Prints, among other lines: subtasks are over: A-S-Y-N-C
"""

from __future__ import annotations

import os
import time

import anyio

from asynctask import App, Job, JobCtx
from asynctask.testing import drain

app = App(os.environ.get("ASYNCTASK_MONGO_URL", "mongodb://localhost:27017/stepper_example"))
started = time.monotonic()


def log(line: str) -> None:
    print(f"[{time.monotonic() - started:5.2f}s] {line}", flush=True)


# Publish with delay (Stepper's SetDelay / LaunchAt): publish(..., delay=) or at=.
@app.task
async def greet(ctx: JobCtx, name: str) -> str:
    log(f"hello, {name}")
    return f"hello, {name}"


# Error handling (Stepper's SetRetryAfter): the job goes back to the queue for 0.2 s.
@app.task(max_retries=3)
async def flaky(ctx: JobCtx, n: int) -> int:
    if ctx.attempt == 1:
        ctx.retry_after(0.2)
        raise ConnectionError("the upstream service is not ready yet")
    log(f"flaky succeeded on attempt {ctx.attempt}")
    return n


# Bind a state (Stepper's BindState / SetState): ctx.state is the last saved cursor.
@app.task(max_retries=3)
async def walk(ctx: JobCtx, total: int) -> int:
    cursor = ctx.state or 0
    log(f"walk resumes at {cursor}")
    while cursor < total:
        cursor += 1
        await ctx.set_state(cursor)
        if cursor == total // 2 and ctx.attempt == 1:
            ctx.retry_after(0.1)
            raise RuntimeError(f"crashed at {cursor}")
    return cursor


# Subtasks with an on_finish hook (Stepper's CreateSubtask / OnFinish).
@app.task
async def letter(ctx: JobCtx, symbol: str) -> str:
    return symbol.upper()


@app.task
async def split(ctx: JobCtx, word: str) -> None:
    log(f"have received the word for splitting: {word}")
    for symbol in word:
        await ctx.spawn(letter, symbol)


@split.on_finish
async def joined(ctx: JobCtx, children: list[Job]) -> str:
    return "-".join(ctx.decode_result(child) for child in children)


async def main() -> None:
    async with app:
        delayed = await greet.publish("stepper", delay=0.3)
        retried = await flaky.publish(7)
        walked = await walk.publish(10)
        word = await split.publish("async")
        await drain(app, timeout=120)  # a worker runs them all, the delays and retries included
        assert await delayed.result() == "hello, stepper"
        assert await retried.result() == 7
        log(f"walk finished at {await walked.result()}")
        log(f"subtasks are over: {await word.result()}")


if __name__ == "__main__":
    anyio.run(main)
