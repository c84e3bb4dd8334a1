"""``asynctask worker APP``: run a worker until SIGTERM/SIGINT."""

from __future__ import annotations

import click

from asynctask.cli.common import LOG_LEVELS, friendly, load_app, run_async
from asynctask.lifecycle import with_signal_notify
from asynctask.log import configure_logging

__all__ = ["worker"]


@click.command()
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
@click.option(
    "--broker-timeout", default=10.0, show_default=True, help="Deadline of each broker round trip, seconds."
)
@click.option("--log-level", default="INFO", show_default=True, type=LOG_LEVELS)
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
    broker_timeout: float,
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
        broker_timeout=broker_timeout,
    )
    # The process's one signal handling: the first SIGTERM/SIGINT cancels the worker's task, which
    # is its graceful stop; a second one stops it at once.
    run_async(with_signal_notify(w.run))
