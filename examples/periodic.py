"""Periodic tasks: run this in several terminals against one shared broker; each tick runs once.

ASYNCTASK_BROKER_URL=redis://127.0.0.1:6379/0 asynctask worker examples.periodic:app
"""

from __future__ import annotations

from asynctask import App, Cron, Interval, JobCtx

app = App()


@app.periodic(Interval(seconds=5))
async def heartbeat(ctx: JobCtx) -> None:
    print("tick", ctx.id)


@app.periodic(Cron("0 * * * *"))
async def hourly_report(ctx: JobCtx) -> None:
    print("hourly report", ctx.id)
