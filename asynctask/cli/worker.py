"""``asynctask worker APP``: run a worker until SIGTERM/SIGINT; ``--metrics-port`` serves its metrics
and health probes (:mod:`asynctask.monitoring`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import click

from asynctask.cli.common import LOG_LEVELS, CliError, friendly, load_app, run_async
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
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve /metrics (Prometheus), /healthz and /readyz on this port (extra 'metrics').",
)
@click.option(
    "--metrics-host",
    default="0.0.0.0",  # noqa: S104 - probes and scrapes come from outside the container
    show_default=True,
    help="Address the metrics port listens on.",
)
@click.option(
    "--health-threshold",
    default=30.0,
    show_default=True,
    help="Seconds of a blocked event loop (or of no claims with room for jobs) before /healthz fails.",
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
    metrics_port: int | None,
    metrics_host: str,
    health_threshold: float,
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
    run: Callable[[], Awaitable[None]] = w.run
    if metrics_port is not None:
        if health_threshold <= 0:
            raise CliError("--health-threshold must be > 0 seconds")
        from asynctask.metrics import Metrics
        from asynctask.monitoring import serve_monitoring

        # The default registry: metrics the app defines there are served too.
        metrics = Metrics(app)

        async def monitored() -> None:
            async with serve_monitoring(
                w, port=metrics_port, host=metrics_host, metrics=metrics, threshold=health_threshold
            ):
                await w.run()

        run = monitored

    # The process's one signal handling: the first SIGTERM/SIGINT cancels the worker's task, which
    # is its graceful stop; a second one stops it at once.
    run_async(with_signal_notify(run))
