"""The periodic scheduler: every worker runs one, and each tick still runs once.

See :mod:`asynctask.periodic` for why: ticks are published ahead under deterministic job ids, so
the broker's idempotent publish keeps one job per tick whatever the number of schedulers.
:meth:`PeriodicScheduler.run_once` is the whole decision for one instant, so tests drive it with a
fake clock.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import anyio

from asynctask.brokers.base import Broker
from asynctask.options import JobSpec
from asynctask.periodic import Periodic, tick_job_id
from asynctask.registry import Registry
from asynctask.schedule import latest_due

__all__ = ["PeriodicScheduler"]

log = logging.getLogger("asynctask.periodic")

#: How far back a starting scheduler looks for the most recent missed tick.
_LOOKBACK = timedelta(days=400)
#: The loop re-checks at least this often, so a changed wall clock cannot strand it.
_MAX_SLEEP = 60.0


class PeriodicScheduler:
    """Publishes the ticks of a registry's periodic tasks into ``broker``; one per worker process."""

    def __init__(self, registry: Registry, broker: Broker, *, timeout: float = 10.0) -> None:
        self.registry = registry
        self.broker = broker
        self.timeout = timeout
        self._next: dict[str, datetime] = {}

    async def run_once(self, now: float) -> float:
        """Publish what is due at ``now``; return when to run again (POSIX seconds)."""
        at = datetime.fromtimestamp(now, UTC)
        for periodic in self.registry.periodic_tasks.values():
            name = periodic.task.name
            published = self._next.get(name)
            if published is not None and published > at:
                continue
            # First run, or the published tick is due now: that tick runs (the broker holds it);
            # any later ticks that have also passed were missed.
            since = published if published is not None else at - _LOOKBACK
            latest = latest_due(periodic.schedule, since, at)
            if latest is not None and periodic.missed == "latest":
                await self._publish(periodic, latest)
            upcoming = periodic.schedule.next_after(at)
            await self._publish(periodic, upcoming)
            self._next[name] = upcoming
        if not self._next:
            return now + _MAX_SLEEP
        return min(now + _MAX_SLEEP, min(t.timestamp() for t in self._next.values()))

    async def run(self) -> None:
        """Loop forever (until cancelled), publishing ticks as they come due."""
        clock = self.registry.clock
        while True:
            try:
                wake = await self.run_once(clock())
            except Exception as exc:
                log.warning("periodic scheduling failed: %s", exc, extra={"action": "periodic_error"})
                wake = clock() + 1.0
            await anyio.sleep(max(wake - clock(), 0.0) + 0.001)

    async def _publish(self, periodic: Periodic, tick: datetime) -> None:
        job_id = tick_job_id(periodic.task.name, tick)
        job = self.registry.build_job(JobSpec(periodic.task.name, periodic.payload, at=tick, job_id=job_id))
        with anyio.fail_after(self.timeout):
            [created] = await self.broker.enqueue([job])
        if created:
            log.debug(
                "scheduled %s for %s",
                periodic.task.name,
                tick.isoformat(),
                extra={"action": "periodic_tick", "job_id": job_id},
            )
