"""A process built with asynctask.lifecycle, a worker as one of its units (the README's Lifecycle
example, runnable):

    ASYNCTASK_BROKER_URL=memory:///tmp/jobs.json python examples/lifecycle.py

It warms a cache first, then runs a metrics reporter and the worker side by side. SIGTERM or
Ctrl-C stops it gracefully: the worker stops claiming, its running jobs get ``shutdown_grace``
seconds to finish, and any still running then are handed back to the queue without their attempt
counting. A second signal stops it at once.
"""

from __future__ import annotations

import os

import anyio

from asynctask import App, Interval, JobCtx
from asynctask.lifecycle import concurrence, repeat, run_main, sequence

app = App()  # the broker comes from $ASYNCTASK_BROKER_URL, else memory://


@app.task
async def render(ctx: JobCtx, seconds: float) -> str:
    print(f"rendering {ctx.id}", flush=True)
    await anyio.sleep(seconds)
    return "rendered"


async def warm_cache() -> None:
    print("cache warm", flush=True)


async def report_metrics() -> None:
    print("metrics reported", flush=True)


if __name__ == "__main__":
    worker = app.worker(concurrency=20, shutdown_grace=float(os.environ.get("SHUTDOWN_GRACE", "5")))
    run_main(
        sequence(
            warm_cache,  # first; a failure here stops everything
            concurrence(repeat(Interval(60), report_metrics), worker.run),
        )
    )
