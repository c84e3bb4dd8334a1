"""Queue depth and the age of the oldest ready job, read from the broker when Prometheus scrapes.

State that lives in the broker is read from the broker, not summed from the counters of worker
processes (which would disagree as soon as a process restarts). One cheap call
(:meth:`App.queue_stats <asynctask.App.queue_stats>`) serves every queue; its answer is kept for
``max_age`` seconds, so several Prometheus servers, or a scrape interval shorter than that, do
not add load on the broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import anyio
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from asynctask.app import App
from asynctask.models import JobStatus, QueueStats

__all__ = ["QueueCollector"]

log = logging.getLogger("asynctask.metrics")


class QueueCollector(Collector):
    """A Prometheus collector of ``app``'s queues, as the broker last told (see the module docstring).

    :meth:`refresh` (async, on the app's event loop) reads the broker when the last read is older
    than ``max_age``; :meth:`collect` (any thread) reports the last read. A failed read keeps the
    previous numbers and sets ``asynctask_queue_stats_up`` to 0.
    """

    def __init__(self, app: App, *, max_age: float = 5.0, timeout: float = 5.0) -> None:
        self.app = app
        self.max_age = max_age
        self.timeout = timeout
        self._stats: list[QueueStats] = []
        self._read_at = -float("inf")  # monotonic time of the last read
        self._up = False
        self._lock: anyio.Lock | None = None

    async def refresh(self) -> None:
        """Read the broker unless the last read is younger than ``max_age``."""
        if time.monotonic() - self._read_at < self.max_age:
            return
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:  # one read at a time; a scrape arriving meanwhile shares it
            if time.monotonic() - self._read_at < self.max_age:
                return
            try:
                with anyio.fail_after(self.timeout):
                    stats = await self.app.queue_stats()
            except Exception as exc:
                if self._up:
                    log.warning(
                        "reading queue statistics failed: %s",
                        str(exc) or type(exc).__name__,
                        extra={"action": "queue_stats_error"},
                    )
                self._up = False
                # Retry at the next scrape, not max_age later.
                return
            self._stats, self._up, self._read_at = stats, True, time.monotonic()

    def refresh_from_thread(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """:meth:`refresh` on ``loop`` from another thread; gives up after ``timeout`` seconds (a
        blocked loop): the last read is reported then."""
        if time.monotonic() - self._read_at < self.max_age:
            return
        future = asyncio.run_coroutine_threadsafe(self.refresh(), loop)
        try:
            future.result(timeout)
        except Exception as exc:  # TimeoutError, or the loop is closed
            future.cancel()
            self._up = False
            log.debug("queue statistics not refreshed: %r", exc)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth, oldest, up = self._families()
        now = self.app.clock()
        for stats in self._stats:
            for status in JobStatus:
                depth.add_metric([stats.queue, status.value], stats.count(status))
            oldest.add_metric([stats.queue], stats.oldest_ready_age(now) or 0.0)
        up.add_metric([], 1.0 if self._up else 0.0)
        return iter((depth, oldest, up))

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "asynctask_queue_jobs",
                "Jobs in the broker by queue and status (read from the broker).",
                labels=["queue", "status"],
            ),
            GaugeMetricFamily(
                "asynctask_queue_oldest_ready_age_seconds",
                "How long the oldest ready job of the queue has waited since it was due (0: none ready).",
                labels=["queue"],
            ),
            GaugeMetricFamily(
                "asynctask_queue_stats_up", "1 if the last read of the queue statistics succeeded.", labels=[]
            ),
        )
