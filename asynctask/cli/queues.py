"""``asynctask queues APP pause|resume|show QUEUE``: a queue's flow settings, cluster-wide.

The group is the home of every per-queue command; add one with ``@queues.command(...)`` and
:func:`~asynctask.cli.common.app_command`, as below.
"""

from __future__ import annotations

import click

from asynctask.app import App
from asynctask.cli.common import AppGroup, app_command
from asynctask.flow import QueueSettings

__all__ = ["describe", "queues"]


@click.group(cls=AppGroup)
@click.argument("app_path", metavar="APP")
@click.option("--broker", envvar="ASYNCTASK_BROKER_URL", help="Broker URL (overrides the app's).")
@click.pass_context
def queues(ctx: click.Context, app_path: str, broker: str | None) -> None:
    """Manage the queues of APP: pause, resume, show."""
    ctx.obj = (app_path, broker)


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
