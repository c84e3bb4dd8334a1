"""The asynctask side of the benchmark: two tasks, started with the usual CLI::

asynctask worker benchmarks.apps.asynctask_app:app -c 100 --broker URL
"""

from __future__ import annotations

from asynctask import App, JobCtx
from benchmarks.apps.record import noop as record_noop
from benchmarks.apps.record import sleep_job

# The broker comes from --broker (worker) or set_broker (driver).
app = App()


@app.task(queue="bench")
async def noop(ctx: JobCtx, index: int) -> None:
    record_noop(index)


@app.task(queue="bench")
async def sleep(ctx: JobCtx, index: int) -> None:
    await sleep_job(index)
