"""The asynctask side of the benchmark: two tasks, started with the usual CLI::

asynctask worker benchmarks.apps.asynctask_app:app -c 100 --broker URL
"""

from __future__ import annotations

import os

from asynctask import App, JobCtx
from benchmarks.apps.record import noop as record_noop
from benchmarks.apps.record import sleep_job

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
