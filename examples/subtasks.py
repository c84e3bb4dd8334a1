"""Subtasks: a parent fans out, its on_finish handler runs once when every child is done.

python examples/subtasks.py
"""

from __future__ import annotations

import anyio

from asynctask import App, Job, JobCtx, JobStatus
from asynctask.testing import drain

app = App("memory://")


@app.task(max_retries=0)
async def measure(ctx: JobCtx, word: str) -> int:
    if word == "boom":
        raise ValueError("cannot measure 'boom'")
    return len(word)


@app.task
async def measure_all(ctx: JobCtx, words: list[str]) -> None:
    for word in words:
        await ctx.spawn(measure, word)  # enqueued only if this attempt succeeds


@measure_all.on_finish
async def total(ctx: JobCtx, children: list[Job]) -> dict[str, int]:
    ok = [c for c in children if c.status is JobStatus.SUCCEEDED]
    return {"total": sum(ctx.decode_result(c) for c in ok), "failed": len(children) - len(ok)}


async def main() -> None:
    async with app:
        handle = await measure_all.publish(["durable", "workflows", "boom", "here"])
        await drain(app)  # a worker runs the parent, its children, then on_finish
        print(await handle.result())  # {'total': 20, 'failed': 1}


if __name__ == "__main__":
    anyio.run(main)
