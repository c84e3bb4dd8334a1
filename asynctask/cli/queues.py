"""``asynctask queues APP [list] | pause|resume|show QUEUE``: the queues, and their flow settings.

``list`` (the default) shows, per queue, jobs by status and the oldest ready job's age, read from
the broker; ``pause``, ``resume`` and ``show`` manage one queue's flow settings, cluster-wide.
The group is the home of every per-queue command; add one with ``@queues.command(...)`` and
:func:`~asynctask.cli.common.app_command`, as below.
"""

from __future__ import annotations

import json

import click

from asynctask.app import App
from asynctask.cli.common import AppGroup, app_command
from asynctask.flow import QueueSettings
from asynctask.models import JobStatus

__all__ = ["describe", "queues"]


@click.group(cls=AppGroup, invoke_without_command=True)
@click.argument("app_path", metavar="APP")
@click.option("--broker", envvar="ASYNCTASK_BROKER_URL", help="Broker URL (overrides the app's).")
@click.pass_context
def queues(ctx: click.Context, app_path: str, broker: str | None) -> None:
    """The queues of APP: list (the default), pause, resume, show."""
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
            line = {"queue": stats.queue, "counts": counts, "oldest_ready_age": age, "paused": stats.paused}
            click.echo(json.dumps(line))
            continue
        counts_text = " ".join(f"{status.value}={stats.count(status)}" for status in JobStatus)
        waited = "-" if age is None else f"{age:.1f}s"
        paused = " paused" if stats.paused else ""
        click.echo(f"{stats.queue:20} {counts_text} oldest_ready={waited}{paused}")
    if not found and not as_json:
        click.echo("no queues")


@queues.command("pause")
@click.argument("queue")
@app_command
async def queues_pause(app: App, queue: str) -> None:
    """Stop every worker claiming from QUEUE; running jobs finish, publishing still works."""
    click.echo(f"{queue} {describe(await app.pause_queue(queue))}")


@queues.command("resume")
@click.argument("queue")
@app_command
async def queues_resume(app: App, queue: str) -> None:
    """Let workers claim from QUEUE again."""
    click.echo(f"{queue} {describe(await app.resume_queue(queue))}")


@queues.command("show")
@click.argument("queue")
@app_command
async def queues_show(app: App, queue: str) -> None:
    """Show QUEUE's settings: paused or active, global concurrency, rate limit."""
    click.echo(f"{queue} {describe(await app.queue_settings(queue))}")


def describe(settings: QueueSettings) -> str:
    """One line: ``paused global_concurrency=3 rate_limit=50/s``."""
    parts = ["paused" if settings.paused else "active"]
    if settings.concurrency is not None:
        parts.append(f"global_concurrency={settings.concurrency}")
    if settings.rate is not None:
        parts.append(f"rate_limit={settings.rate}")
    return " ".join(parts)
