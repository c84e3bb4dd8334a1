"""The ``asynctask`` command line: worker, publish, jobs, migrate, demo.

Bad input (an APP path that does not import, an unknown task, an unreachable broker) prints one
line to stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import anyio
import click
import msgspec

from asynctask.app import App
from asynctask.errors import AsyncTaskError
from asynctask.log import configure_logging
from asynctask.models import Job, JobStatus
from asynctask.task import JobHandle
from asynctask.web.cli import web_command

__all__ = ["main"]

P = ParamSpec("P")
T = TypeVar("T")

_LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)
_LOG_LEVELS_ALL = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False)


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` on asyncio, with uvloop when it is installed."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        options: dict[str, Any] = {}
    else:
        options = {"use_uvloop": True}
    return anyio.run(fn, backend_options=options)


def friendly(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn expected errors into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except (CliError, AsyncTaskError, OSError) as exc:
            click.echo(f"asynctask: error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def load_app(path: str, broker: str | None = None) -> App:
    """Import ``module.path:attribute`` (attribute defaults to ``app``)."""
    module_name, _, attr = path.partition(":")
    if not module_name:
        raise CliError(f"APP must look like 'package.module:app', got {path!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import {module_name!r} (from APP {path!r}): {exc}") from exc
    try:
        app = getattr(module, attr or "app")
    except AttributeError:
        raise CliError(f"module {module_name!r} has no attribute {attr or 'app'!r}") from None
    if not isinstance(app, App):
        raise CliError(f"{path!r} is a {type(app).__name__}, not an asynctask.App")
    if broker:
        app.set_broker(broker)
    return app


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="asynctask")
def main() -> None:
    """asynctask: an asyncio-native distributed job queue."""


@main.command()
@click.argument("app_path", metavar="APP")
@click.option("-q", "--queue", "queues", multiple=True, help="Queue to consume (repeatable; default: all).")
@click.option("-c", "--concurrency", default=10, show_default=True, help="Jobs run at once.")
@click.option("--prefetch", type=int, help="Jobs claimed ahead of free executors [default: concurrency/4].")
@click.option("--broker", envvar="ASYNCTASK_BROKER_URL", help="Broker URL (overrides the app's).")
@click.option(
    "--shutdown-grace", default=30.0, show_default=True, help="Seconds running jobs get on SIGTERM."
)
@click.option("--lease", default=30.0, show_default=True, help="Seconds a claim lasts without a heartbeat.")
@click.option("--poll-interval", default=1.0, show_default=True, help="Longest wait between claims.")
@click.option(
    "--maintenance-interval",
    default=5.0,
    show_default=True,
    help="Seconds between rescues of expired leases, promotions and pruning.",
)
@click.option("--log-level", default="INFO", show_default=True, type=_LOG_LEVELS)
@friendly
def worker(
    app_path: str,
    queues: tuple[str, ...],
    concurrency: int,
    prefetch: int | None,
    broker: str | None,
    shutdown_grace: float,
    lease: float,
    poll_interval: float,
    maintenance_interval: float,
    log_level: str,
) -> None:
    """Run a worker for APP (module:attribute) until SIGTERM/SIGINT (twice: at once)."""
    configure_logging(log_level)
    app = load_app(app_path, broker)
    w = app.worker(
        queues=list(queues) or None,
        concurrency=concurrency,
        prefetch=prefetch,
        shutdown_grace=shutdown_grace,
        lease=lease,
        poll_interval=poll_interval,
        maintenance_interval=maintenance_interval,
        handle_signals=True,
    )
    run_async(w.run)


@main.command()
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


@main.group()
@click.argument("app_path", metavar="APP")
@click.option("--broker", envvar="ASYNCTASK_BROKER_URL", help="Broker URL (overrides the app's).")
@click.pass_context
def jobs(ctx: click.Context, app_path: str, broker: str | None) -> None:
    """Inspect and manage the jobs of APP: list, show, retry, cancel, pause, resume, delete."""
    ctx.obj = (app_path, broker)


def _jobs_command(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """A ``jobs`` subcommand: load APP, open it, run ``fn(app, ...)``."""

    @click.option("--broker", help="Broker URL (overrides the app's).")
    @click.pass_obj
    @friendly
    @functools.wraps(fn)
    def command(obj: tuple[str, str | None], /, broker: str | None, **kwargs: Any) -> None:
        app_path, group_broker = obj
        app = load_app(app_path, broker or group_broker)

        async def go() -> None:
            async with app:
                await fn(app, **kwargs)

        run_async(go)

    return command


@jobs.command("list")
@click.option("--status", type=click.Choice([s.value for s in JobStatus]))
@click.option("--queue")
@click.option("--task")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_jobs_command
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
@_jobs_command
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
@_jobs_command
async def jobs_retry(app: App, job_id: str) -> None:
    """Queue a failed or cancelled job again."""
    job = await app.retry(job_id)
    click.echo(f"{job.id} {job.status.value}")


@jobs.command("cancel")
@click.argument("job_id")
@_jobs_command
async def jobs_cancel(app: App, job_id: str) -> None:
    """Cancel a job (a running one at its next heartbeat)."""
    job = await app.cancel(job_id)
    note = " (cancel requested)" if job.cancel_requested and job.status is JobStatus.RUNNING else ""
    click.echo(f"{job.id} {job.status.value}{note}")


@jobs.command("pause")
@click.argument("job_id")
@_jobs_command
async def jobs_pause(app: App, job_id: str) -> None:
    """Pause a queued job, or an incremental task after its current step."""
    job = await app.pause(job_id)
    note = " (pause requested)" if job.pause_requested and job.status is JobStatus.RUNNING else ""
    click.echo(f"{job.id} {job.status.value}{note}")


@jobs.command("resume")
@click.argument("job_id")
@_jobs_command
async def jobs_resume(app: App, job_id: str) -> None:
    """Resume a paused job from its saved state."""
    job = await app.resume(job_id)
    click.echo(f"{job.id} {job.status.value}")


@jobs.command("delete")
@click.argument("job_id")
@_jobs_command
async def jobs_delete(app: App, job_id: str) -> None:
    """Delete a job."""
    if not await app.delete(job_id):
        raise CliError(f"no job with id {job_id!r}")
    click.echo(f"{job_id} deleted")


@main.command()
@click.option("--broker", envvar="ASYNCTASK_BROKER_URL", required=True, help="Broker URL.")
@friendly
def migrate(broker: str) -> None:
    """Create or upgrade the broker's schema (PostgreSQL)."""
    app = App(broker)
    target = app.broker
    migrate_fn = getattr(target, "migrate", None)
    if migrate_fn is None:
        click.echo(f"{target.display_url}: nothing to migrate")
        return

    async def go() -> None:
        await migrate_fn()
        await target.close()

    run_async(go)
    click.echo(f"{target.display_url}: schema is up to date")


@main.command()
@click.option("--jobs", "count", default=300, show_default=True, help="How many jobs to publish.")
@click.option("-c", "--concurrency", default=10, show_default=True)
@click.option("--log-level", default="CRITICAL", show_default=True, type=_LOG_LEVELS_ALL)
@friendly
def demo(count: int, concurrency: int, log_level: str) -> None:
    """Run a self-contained demo on the in-memory broker (no server needed)."""
    from asynctask.demo import run_demo

    configure_logging(log_level)
    run_async(functools.partial(run_demo, count=count, concurrency=concurrency))


main.add_command(web_command(load_app, friendly))


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
