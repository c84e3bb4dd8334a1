"""Flow control on the in-memory broker: a singleton task, unique jobs and a paused queue.

python examples/flow_control.py

The same code holds across many worker processes on Postgres or Redis: the broker enforces each
limit when a worker claims jobs.
"""

from __future__ import annotations

import anyio

from asynctask import App, JobCtx
from asynctask.testing import drain

app = App("memory://")
running = peak = 0


@app.task(global_concurrency=1)  # one at a time in the whole cluster
async def rebuild_index(ctx: JobCtx, part: int) -> int:
    global running, peak
    running += 1
    peak = max(peak, running)
    await anyio.sleep(0.01)
    running -= 1
    return part


@app.task
async def refresh_user(ctx: JobCtx, user_id: int) -> int:
    return user_id


@app.task(queue="billing")
async def charge(ctx: JobCtx, cents: int) -> int:
    return cents


async def main() -> None:
    async with app:
        for part in range(5):
            await rebuild_index.publish(part)
        await drain(app, concurrency=8)
        print(f"rebuild_index: 5 jobs on 8 slots, at most {peak} at once")

        first = await refresh_user.publish(7, unique="active")
        again = await refresh_user.publish(7, unique="active")
        print(f"unique: the second publish follows the first job: {again.id == first.id}")
        await drain(app)
        after = await refresh_user.publish(7, unique="active")
        print(f"unique: once it finished, a new job: {after.created}")

        await app.pause_queue("billing")
        bill = await charge.publish(1250)
        await drain(app)  # leaves the paused queue's jobs waiting
        info = await bill.info()
        print(f"billing paused: the job is {info.status if info else None}")
        await app.resume_queue("billing")
        await drain(app)
        print(f"billing resumed: charged {await bill.result(timeout=10)}")


if __name__ == "__main__":
    anyio.run(main)
