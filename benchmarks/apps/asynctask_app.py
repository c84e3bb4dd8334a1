"""The asynctask side of the benchmark, started with the usual CLI::

asynctask worker benchmarks.apps.asynctask_app:app -c 100 --broker URL

W1-W3 use ``noop`` and ``sleep`` like every peer's app. W4 and W5 exercise what no peer has:
``fanout`` spawns subtasks and has an ``on_finish``; ``hold`` plays a job that a killed worker
was running (``$BENCH_W5_ROLE``: ``victim`` hangs, ``rescuer`` finishes).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from asynctask import App, Job, JobCtx, JobStatus
from benchmarks.apps.record import noop as record_noop
from benchmarks.apps.record import record, sleep_job

#: Record indices of W4's control jobs (negative: not counted as work).
PARENT_INDEX = -10
FINISH_INDEX = -11
#: W5's queues: the victim consumes only the first, so only the rescuer runs its warm-up job.
W5_QUEUE = "bench_w5"
WARM_QUEUE = "bench_warm"

# The broker comes from --broker (worker) or set_broker (driver).
app = App()

# Observability variants (benchmarks/systems.py): traced with the SDK but no exporter, or
# instrumented with no tracer provider at all.
if os.environ.get("BENCH_TRACING") in ("tracing", "tracing-unset"):
    from asynctask.tracing import instrument

    if os.environ["BENCH_TRACING"] == "tracing":
        from opentelemetry.sdk.trace import TracerProvider

        instrument(app, tracer_provider=TracerProvider())
    else:
        instrument(app)


@app.task(queue="bench")
async def noop(ctx: JobCtx, index: int) -> None:
    record_noop(index)


@app.task(queue="bench")
async def sleep(ctx: JobCtx, index: int) -> None:
    await sleep_job(index)


@app.task(queue="bench")
async def fanout(ctx: JobCtx, children: int) -> None:
    """W4's parent: spawn ``children`` no-op subtasks (enqueued with this attempt's completion)."""
    start = time.time()
    for index in range(children):
        await ctx.spawn(noop, index)
    record(PARENT_INDEX, start, time.time())


@fanout.on_finish
async def fanned_in(ctx: JobCtx, children: list[Job]) -> dict[str, Any]:
    start = time.time()
    succeeded = sum(1 for child in children if child.status is JobStatus.SUCCEEDED)
    record(FINISH_INDEX, start, time.time())
    return {"children": len(children), "succeeded": succeeded}


@app.task(queue=W5_QUEUE)
async def hold(ctx: JobCtx, index: int) -> None:
    """W5: the victim records the start and hangs until SIGKILL; the rescuer finishes at once."""
    start = time.time()
    if os.environ.get("BENCH_W5_ROLE") == "victim":
        record(index, start)
        await asyncio.sleep(3600)
    record(index, start, time.time())


@app.task(queue=WARM_QUEUE)
async def warm(ctx: JobCtx, index: int) -> None:
    record_noop(index)
