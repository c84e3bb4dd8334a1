"""``asynctask workers APP``: the live workers of APP's broker, from the worker registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
import msgspec

from asynctask.cli.common import friendly, load_app, run_async
from asynctask.models import WorkerInfo

__all__ = ["workers"]


@click.command()
@click.argument("app_path", metavar="APP")
@click.option("--broker", envvar="ASYNCTASK_BROKER_URL", help="Broker URL (overrides the app's).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per worker and line.")
@friendly
def workers(app_path: str, broker: str | None, as_json: bool) -> None:
    """List the live workers: host, pid, queues, jobs running, counts by outcome, last heartbeat.

    Every worker records itself in the broker and refreshes its record at each heartbeat; one that
    died is left out three heartbeats after its last one.
    """
    app = load_app(app_path, broker)

    async def read() -> tuple[list[WorkerInfo], float]:
        async with app:
            return await app.list_workers(), app.clock()

    found, now = run_async(read)
    if as_json:
        for worker in found:
            click.echo(json.dumps(msgspec.to_builtins(worker)))
        return
    if not found:
        click.echo("no live workers")
        return
    for worker in found:
        counts = worker.counts
        click.echo(
            f"{worker.id}  pid={worker.pid} host={worker.host} queues={','.join(worker.queues)} "
            f"running={worker.running}/{worker.concurrency} "
            f"succeeded={counts.get('succeeded', 0)} failed={counts.get('failed', 0)} "
            f"retried={counts.get('retried', 0)} "
            f"up={_ago(now - worker.started_at)} heartbeat={_ago(now - worker.heartbeat_at)} ago "
            f"v{worker.version} started={datetime.fromtimestamp(worker.started_at, UTC):%Y-%m-%d %H:%M:%S}Z"
        )


def _ago(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
