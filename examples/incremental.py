"""An incremental task: a step function whose state is saved after every step; pause and resume.

python examples/incremental.py
"""

from __future__ import annotations

import anyio
import msgspec

from asynctask import App, Done, JobCtx
from asynctask.testing import drain

app = App("memory://")


class Cursor(msgspec.Struct):
    page: int
    seen: int


@app.incremental()
async def reindex(ctx: JobCtx, cursor: Cursor) -> Cursor | Done[int]:
    await anyio.sleep(0.05)  # index one page
    if cursor.page == 20:
        return Done(cursor.seen)
    return Cursor(page=cursor.page + 1, seen=cursor.seen + 10)


async def pause_soon(job_id: str) -> None:
    await anyio.sleep(0.3)
    await app.pause(job_id)  # stops after the current step (seen at the next heartbeat)


async def main() -> None:
    async with app:
        handle = await reindex.publish(Cursor(page=0, seen=0))
        async with anyio.create_task_group() as tg:
            tg.start_soon(pause_soon, handle.id)
            await drain(app, heartbeat=0.05)  # returns once the job is parked: nothing left to run
        job = await handle.info()
        print(job.status.value, "at", msgspec.json.decode(job.state or b"null"))
        await app.resume(handle.id)  # continues from the saved state
        await drain(app)
        print("result:", await handle.result())


if __name__ == "__main__":
    anyio.run(main)
