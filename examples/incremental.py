"""An incremental task: a step function whose state is saved after every step; pause and resume.

python examples/incremental.py
"""

from __future__ import annotations

import anyio
import msgspec
from _run import run_with_worker

from asynctask import App, Done, JobCtx, JobStatus

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


async def main() -> None:
    handle = await reindex.publish(Cursor(page=0, seen=0))
    await anyio.sleep(0.3)
    await app.pause(handle.id)  # stops after the current step
    while (job := await handle.info()) is not None and job.status is not JobStatus.PAUSED:  # noqa: ASYNC110
        await anyio.sleep(0.05)
    print("paused at", msgspec.json.decode(job.state or b"null"))
    await app.resume(handle.id)  # continues from the saved state
    print("result:", await handle.result(timeout=10))


if __name__ == "__main__":
    run_with_worker(app, main, heartbeat=0.05)
