"""Prometheus metrics (extra ``metrics``): jobs, workers and broker calls, and queue depth read
from the broker.

``asynctask worker APP --metrics-port 2121`` serves them (with the health probes) from the worker
process. In your own process, register the same collectors on your own registry and serve them
wherever you like, e.g. FastAPI's ``/metrics``::

    from fastapi import FastAPI, Response
    from prometheus_client import CONTENT_TYPE_LATEST
    from asynctask.metrics import Metrics

    metrics = Metrics(app)            # prometheus_client.REGISTRY unless registry= is given
    api = FastAPI(lifespan=lifespan(app))

    @api.get("/metrics")
    async def prometheus() -> Response:
        return Response(await metrics.scrape(), media_type=CONTENT_TYPE_LATEST)

:meth:`Metrics.scrape` reads the broker's queue statistics first (at most every ``max_age``
seconds); a plain ``generate_latest(registry)`` serves the last ones read. The README's
Observability section lists every metric.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from asynctask.app import App
from asynctask.brokers import require

require("prometheus_client", "metrics")

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest  # noqa: E402

from asynctask.metrics.observer import BROKER_BUCKETS, DURATION_BUCKETS, JobMetrics  # noqa: E402
from asynctask.metrics.queues import QueueCollector  # noqa: E402

__all__ = ["BROKER_BUCKETS", "DURATION_BUCKETS", "JobMetrics", "Metrics", "QueueCollector"]


class Metrics:
    """The metrics of ``app`` on ``registry``: what its publishes and its workers in this process
    do (subscribed to ``app.events``), and its queues as the broker tells.

    * ``max_age``: seconds a read of the queue statistics is reused (5);
    * ``timeout``: the deadline of that read (5 s);
    * ``buckets``, ``broker_buckets``: histogram buckets, in seconds, of run time and queue wait,
      and of broker round trips.

    Create one per app and registry (Prometheus refuses a metric name registered twice);
    :meth:`close` takes it out again.
    """

    def __init__(
        self,
        app: App,
        *,
        registry: CollectorRegistry | None = None,
        max_age: float = 5.0,
        timeout: float = 5.0,
        buckets: Sequence[float] = DURATION_BUCKETS,
        broker_buckets: Sequence[float] = BROKER_BUCKETS,
    ) -> None:
        self.app = app
        self.registry = registry if registry is not None else REGISTRY
        self.jobs = JobMetrics(clock=app.clock, buckets=buckets, broker_buckets=broker_buckets)
        self.queues = QueueCollector(app, max_age=max_age, timeout=timeout)
        self.registry.register(self.jobs)
        self.registry.register(self.queues)
        app.events.subscribe(self.jobs)

    def __repr__(self) -> str:
        return f"<Metrics of {self.app!r}>"

    async def refresh(self) -> None:
        """Read the queue statistics from the broker, unless the last read is recent enough."""
        await self.queues.refresh()

    async def scrape(self) -> bytes:
        """The registry in Prometheus' text format, queue statistics refreshed first."""
        await self.refresh()
        return generate_latest(self.registry)

    def refresh_from_thread(self, loop: asyncio.AbstractEventLoop, *, timeout: float = 2.0) -> None:
        """:meth:`refresh` run on ``loop`` from another thread (the probe server's), for at most
        ``timeout`` seconds: a blocked loop gets the last numbers served."""
        self.queues.refresh_from_thread(loop, timeout)

    def close(self) -> None:
        """Stop observing the app and take every metric out of the registry."""
        self.app.events.unsubscribe(self.jobs)
        self.registry.unregister(self.jobs)
        self.registry.unregister(self.queues)
