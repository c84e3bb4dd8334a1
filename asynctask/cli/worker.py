"""``asynctask worker APP``: run a worker until SIGTERM/SIGINT (``--burst``: until the queues are empty).

``--workers N`` supervises N worker processes (:mod:`asynctask.cli.supervisor`); ``--reload``
restarts one on code changes (:mod:`asynctask.cli.reload`); ``--metrics-port`` serves the worker's
metrics and health probes (:mod:`asynctask.monitoring`). Every option can also come from an
environment variable, ``ASYNCTASK_WORKER_<OPTION>`` (``--broker``: ``ASYNCTASK_BROKER_URL``), as
``--help`` shows.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable

import click

from asynctask import log as log_setup
from asynctask.brokers import MemoryBroker
from asynctask.cli.common import LOG_LEVELS, CliError, friendly, load_app, run_async
from asynctask.cli.supervisor import SLOT_ENV
from asynctask.errors import BrokerUnavailable
from asynctask.lifecycle import with_signal_notify
from asynctask.runtime.logs import JobContextFilter

__all__ = ["worker"]

log = logging.getLogger("asynctask.worker")


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
    "--wait-for-broker",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to keep trying an unreachable broker at start-up (0: exit at once).",
)
@click.option("--burst", is_flag=True, help="Run until no job is left to claim, then exit 0.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes to run, supervised: signals forwarded, crashed ones restarted.",
)
@click.option(
    "--reload", is_flag=True, help="Restart on code changes (development; pip install 'asynctask[reload]')."
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve /metrics (Prometheus), /healthz and /readyz on this port (extra 'metrics'); with "
    "--workers N, process i serves PORT + i - 1.",
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
@click.option(
    "--log-level", default="INFO", show_default=True, type=LOG_LEVELS, help="Least severe level logged."
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per line (time, level, logger, message, action, job_id, task, queue, ...).",
)
@click.option(
    "--configure-logging/--no-configure-logging",
    "configure_logging",
    default=True,
    show_default=True,
    help="Install a stderr log handler; --no-configure-logging if the app configures logging itself.",
)
@click.pass_context
@friendly
def worker(
    ctx: click.Context,
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
    wait_for_broker: float,
    burst: bool,
    workers: int,
    reload: bool,
    metrics_port: int | None,
    metrics_host: str,
    health_threshold: float,
    log_level: str,
    log_format: str,
    configure_logging: bool,
) -> None:
    """Run a worker for APP (module:attribute) until SIGTERM/SIGINT (twice: at once)."""
    if configure_logging:
        handler = log_setup.configure_logging(log_level, fmt="json" if log_format == "json" else "text")
        handler.addFilter(JobContextFilter())
    if reload and workers > 1:
        raise CliError("--reload runs one worker process; drop --workers (or --reload)")
    if health_threshold <= 0:
        raise CliError("--health-threshold must be > 0 seconds")
    app = load_app(app_path, broker)  # in a supervisor too: a bad APP is one line, not a crash loop
    if reload:
        from asynctask.cli.reload import run_reloading
        from asynctask.cli.supervisor import child_env, worker_command

        # watchfiles starts the worker with this process's environment: it must not reload too.
        os.environ.clear()
        os.environ.update(child_env())
        sys.exit(run_reloading(worker_command(ctx)))
    if workers > 1:
        if isinstance(app.broker, MemoryBroker):
            raise CliError(
                f"--workers {workers} needs a broker the processes share; {app.broker.display_url} "
                "lives in one process (give --broker or set ASYNCTASK_BROKER_URL)"
            )
        from asynctask.cli.supervisor import Supervisor, child_env, worker_command

        sys.exit(run_async(Supervisor(worker_command(ctx), workers, env=child_env()).run))
    w = app.worker(
        queues=list(queues) or None,
        concurrency=concurrency,
        prefetch=prefetch,
        shutdown_grace=shutdown_grace,
        lease=lease,
        poll_interval=poll_interval,
        maintenance_interval=maintenance_interval,
        broker_timeout=broker_timeout,
        wait_for_broker=wait_for_broker,
        burst=burst,
    )
    run: Callable[[], Awaitable[None]] = w.run
    if metrics_port is not None:
        # Under --workers N, process i (1..N) serves port + i - 1: one port per process.
        slot = int(os.environ.get(SLOT_ENV, "1"))
        metrics_port = metrics_port + slot - 1 if metrics_port else 0
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
    try:
        run_async(with_signal_notify(run))
    except BrokerUnavailable as exc:
        if wait_for_broker:
            raise
        raise CliError(f"{exc} (--wait-for-broker SECONDS keeps trying at start-up)") from None
    _exit_past_abandoned_threads()


def _exit_past_abandoned_threads() -> None:
    """Exit now if ``def`` handlers abandoned after a timeout or a shutdown still run.

    A thread cannot be killed, and Python waits for every (non-daemon) thread before it exits:
    a stuck handler would keep a stopped worker alive until SIGKILL. The jobs are already
    reported (failed, or handed back), so the process leaves without waiting.
    """
    # Idle pool threads are told to exit when the loop ends: give them a moment to.
    deadline = time.monotonic() + 1.0
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(deadline - time.monotonic(), 0.0))
    stuck = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if not stuck:
        return
    try:
        log.warning(
            "%d sync handler thread(s) still running after the worker stopped (abandoned: a thread "
            "cannot be killed); exiting without waiting for them",
            len(stuck),
            extra={"action": "threads_abandoned"},
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:  # even if stderr is gone (a closed pipe): exit anyway
        os._exit(0)
