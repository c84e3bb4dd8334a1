"""A worker's options, declared once: ``Worker(app, **options)``, ``app.worker(**options)`` and the
CLI's flags all take :class:`WorkerOptions`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict

__all__ = ["DEFAULTS", "WorkerOptions"]


class WorkerOptions(TypedDict, total=False):
    """Every key is optional; :data:`DEFAULTS` has the defaults.

    * ``queues``: the queues to consume (default: every queue of the app's tasks);
    * ``concurrency``: handlers running at once (10);
    * ``prefetch``: jobs claimed ahead so a freed executor starts the next one at once (default
      ``concurrency // 4``); use 0 for long jobs spread over many workers, since a prefetched job
      waits here instead of on an idle worker;
    * ``queue_concurrency``: per-queue caps (prefetched jobs included);
    * ``lease``: seconds a claim lasts without a heartbeat (30); ``heartbeat``: seconds between
      lease renewals (``lease / 3``);
    * ``poll_interval``: the longest wait between claims when the broker gives no wake-up (1);
    * ``batch_size``: most jobs per claim (``concurrency``, at most 256);
    * ``shutdown_grace``: seconds running jobs get to finish when the worker stops (30);
    * ``maintenance_interval``: seconds between rescues of expired leases, promotions of due jobs
      and pruning (5);
    * ``broker_timeout``: the deadline of each broker round trip (a claim, a completion, a
      heartbeat, maintenance) in seconds (10): a call that takes longer is abandoned and retried,
      so a stalled connection cannot freeze the worker; shutdown waits at most
      ``shutdown_grace + broker_timeout`` plus a second;
    * ``wait_for_broker``: seconds to keep trying, at start-up, a broker that cannot be reached
      (0: fail at once), for a worker that may start before its broker (containers, ``docker
      compose up``); arq's ``conn_retries``, Celery's ``broker_connection_retry_on_startup``.
      Only an unreachable broker is waited for: a schema to migrate or a bad URL fails at once;
    * ``handle_signals``: stop gracefully on SIGINT/SIGTERM, at once on a second one (the CLI
      does; an embedded worker leaves signals to its server);
    * ``scheduler``: publish the ticks of periodic tasks (safe to leave on in every worker);
    * ``worker_id``: how this worker names itself in the broker and in logs;
    * ``burst``: stop once no job is left to claim and none is running (:mod:`.burst`).
    """

    queues: Sequence[str] | None
    concurrency: int
    prefetch: int | None
    queue_concurrency: Mapping[str, int] | None
    lease: float
    heartbeat: float | None
    poll_interval: float
    batch_size: int | None
    shutdown_grace: float
    maintenance_interval: float
    broker_timeout: float
    wait_for_broker: float
    handle_signals: bool
    scheduler: bool
    worker_id: str | None
    burst: bool


DEFAULTS: WorkerOptions = {
    "queues": None,
    "concurrency": 10,
    "prefetch": None,
    "queue_concurrency": None,
    "lease": 30.0,
    "heartbeat": None,
    "poll_interval": 1.0,
    "batch_size": None,
    "shutdown_grace": 30.0,
    "maintenance_interval": 5.0,
    "broker_timeout": 10.0,
    "wait_for_broker": 0.0,
    "handle_signals": False,
    "scheduler": True,
    "worker_id": None,
    "burst": False,
}
