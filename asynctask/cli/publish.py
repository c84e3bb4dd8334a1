"""``asynctask publish APP TASK [JSON]``: publish one job, print its id."""

from __future__ import annotations

import json
from typing import Any

import click

from asynctask.cli.common import CliError, friendly, load_app, run_async, warn_if_memory
from asynctask.handle import JobHandle

__all__ = ["publish"]


@click.command()
@click.argument("app_path", metavar="APP")
@click.argument("task")
@click.argument("payload", default="null")
@click.option("--delay", type=float, help="Seconds to wait before the job may run.")
@click.option("--job-id", help="Idempotency key: an existing job with this id is returned instead.")
@click.option("--queue", help="Queue (default: the task's).")
@click.option("--priority", type=int, help="Higher runs first.")
@click.option("--broker", envvar="ASYNCTASK_BROKER_URL", help="Broker URL (overrides the app's).")
@friendly
def publish(
    app_path: str,
    task: str,
    payload: str,
    delay: float | None,
    job_id: str | None,
    queue: str | None,
    priority: int | None,
    broker: str | None,
) -> None:
    """Publish one job of TASK with a JSON PAYLOAD; prints the job id."""
    app = load_app(app_path, broker)
    try:
        value = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise CliError(f"PAYLOAD is not valid JSON: {exc}") from exc
    if app.get_task(task).payload_codec.raw:
        value = value.encode() if isinstance(value, str) else json.dumps(value).encode()

    async def go() -> None:
        async with app:
            handle: JobHandle[Any] = await app.publish(
                task, value, delay=delay, job_id=job_id, queue=queue, priority=priority
            )
        click.echo(handle.id if handle.created else f"{handle.id} (already existed)")

    run_async(go)
    warn_if_memory(app)
