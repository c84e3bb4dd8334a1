"""``asynctask jobs APP list|show|retry|cancel|pause|resume|delete``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
import msgspec

from asynctask.app import App
from asynctask.cli.common import AppGroup, CliError, app_command
from asynctask.errors import AsyncTaskError
from asynctask.models import Job, JobStatus

__all__ = ["jobs"]


@click.group(cls=AppGroup)
@click.argument("app_path", metavar="APP")
@click.option("--broker", envvar="ASYNCTASK_BROKER_URL", help="Broker URL (overrides the app's).")
@click.pass_context
def jobs(ctx: click.Context, app_path: str, broker: str | None) -> None:
    """Inspect and manage the jobs of APP: list, show, retry, cancel, pause, resume, delete."""
    ctx.obj = (app_path, broker)


@jobs.command("list")
@click.option("--status", type=click.Choice([s.value for s in JobStatus]))
@click.option("--queue")
@click.option("--task")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@app_command
async def jobs_list(
    app: App, status: str | None, queue: str | None, task: str | None, limit: int, as_json: bool
) -> None:
    """List jobs, newest first."""
    found = await app.list_jobs(status=status, queue=queue, task=task, limit=limit)
    for job in found:
        if as_json:
            click.echo(json.dumps(_job_dict(app, job)))
        else:
            click.echo(
                f"{job.id:34} {job.status.value:10} {job.task:24} {job.queue:12} "
                f"attempts={job.attempts}/{job.max_retries + 1} created={_when(job.created_at)}"
            )
    if not found and not as_json:
        click.echo("no jobs")


@jobs.command("show")
@click.argument("job_id")
@app_command
async def jobs_show(app: App, job_id: str) -> None:
    """Show everything known about one job."""
    job = await app.get_job(job_id)
    if job is None:
        raise CliError(f"no job with id {job_id!r}")
    info = _job_dict(app, job)
    error = info.pop("error")
    width = max(len(k) for k in info)
    for key, value in info.items():
        click.echo(f"{key:{width}}  {value}")
    if error:
        click.echo(f"{'error':{width}}  (last attempt)\n{error}")


@jobs.command("retry")
@click.argument("job_id")
@app_command
async def jobs_retry(app: App, job_id: str) -> None:
    """Queue a failed or cancelled job again."""
    job = await app.retry(job_id)
    click.echo(f"{job.id} {job.status.value}")


@jobs.command("cancel")
@click.argument("job_id")
@app_command
async def jobs_cancel(app: App, job_id: str) -> None:
    """Cancel a job (a running one at its next heartbeat)."""
    job = await app.cancel(job_id)
    note = " (cancel requested)" if job.cancel_requested and job.status is JobStatus.RUNNING else ""
    click.echo(f"{job.id} {job.status.value}{note}")


@jobs.command("pause")
@click.argument("job_id")
@app_command
async def jobs_pause(app: App, job_id: str) -> None:
    """Pause a queued job, or an incremental task after its current step."""
    job = await app.pause(job_id)
    note = " (pause requested)" if job.pause_requested and job.status is JobStatus.RUNNING else ""
    click.echo(f"{job.id} {job.status.value}{note}")


@jobs.command("resume")
@click.argument("job_id")
@app_command
async def jobs_resume(app: App, job_id: str) -> None:
    """Resume a paused job from its saved state."""
    job = await app.resume(job_id)
    click.echo(f"{job.id} {job.status.value}")


@jobs.command("delete")
@click.argument("job_id")
@app_command
async def jobs_delete(app: App, job_id: str) -> None:
    """Delete a job."""
    if not await app.delete(job_id):
        raise CliError(f"no job with id {job_id!r}")
    click.echo(f"{job_id} deleted")


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _job_dict(app: App, job: Job) -> dict[str, Any]:
    try:
        result = app.decode_result(job) if job.has_result else None
    except AsyncTaskError:
        result = job.result
    payload: Any
    try:
        payload = msgspec.json.decode(job.payload)
    except msgspec.DecodeError:
        payload = job.payload.hex()
    return {
        "id": job.id,
        "task": job.task,
        "queue": job.queue,
        "status": job.status.value,
        "priority": job.priority,
        "attempts": f"{job.attempts}/{job.max_retries + 1}",
        "payload": json.dumps(payload) if not isinstance(payload, str) else payload,
        "created": _when(job.created_at),
        "run_at": _when(job.run_at),
        "started": _when(job.started_at),
        "finished": _when(job.finished_at),
        "expires": _when(job.expires_at),
        "cancel_requested": job.cancel_requested,
        "parent": job.parent_id or "-",
        "pending_children": job.pending,
        "state": job.state.decode(errors="replace") if job.state is not None else "-",
        "result": json.dumps(msgspec.to_builtins(result)) if job.has_result else "-",
        "error": job.error,
    }
