"""``asynctask queues APP [--broker URL] [list]``: per queue, jobs by status and the oldest ready job."""

from __future__ import annotations

import json

import click

from asynctask.app import App
from asynctask.cli.common import AppGroup, app_command
from asynctask.models import JobStatus

__all__ = ["queues"]


@click.group(cls=AppGroup, invoke_without_command=True)
@click.argument("app_path", metavar="APP")
@click.option("--broker", envvar="ASYNCTASK_BROKER_URL", help="Broker URL (overrides the app's).")
@click.pass_context
def queues(ctx: click.Context, app_path: str, broker: str | None) -> None:
    """Inspect the queues of APP: list (the default)."""
    ctx.obj = (app_path, broker)
    if ctx.invoked_subcommand is None:
        ctx.invoke(queues_list, broker=None, as_json=False)


@queues.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per queue and line.")
@app_command
async def queues_list(app: App, as_json: bool) -> None:
    """Per queue: jobs by status, and how long the oldest ready job has waited (read from the broker)."""
    found = await app.queue_stats()
    now = app.clock()
    for stats in found:
        age = stats.oldest_ready_age(now)
        if as_json:
            counts = {status.value: stats.count(status) for status in JobStatus}
            click.echo(json.dumps({"queue": stats.queue, "counts": counts, "oldest_ready_age": age}))
            continue
        counts_text = " ".join(f"{status.value}={stats.count(status)}" for status in JobStatus)
        waited = "-" if age is None else f"{age:.1f}s"
        click.echo(f"{stats.queue:20} {counts_text} oldest_ready={waited}")
    if not found and not as_json:
        click.echo("no queues")
