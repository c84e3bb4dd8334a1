"""Periodic tasks: every worker runs the scheduler, and each tick still runs exactly once.

Each tick is published ahead of time as a delayed job whose id is derived from the task and the
tick's instant (``periodic:<task>:<UTC tick>``). Every instance computes the same ticks (schedules
are pure and epoch-aligned) and publishes the same ids, so the broker's idempotent publish keeps
exactly one job per tick however many workers run the loop; the broker's delayed-job machinery
then fires it on time.

**Missed ticks** (no worker was running, or the loop stalled): with ``missed="latest"`` (the
default) the most recent missed tick runs once, not a burst of stale runs; ``missed="skip"``
runs none. Tick jobs are kept for at least two periods after they finish, so a restart can tell
a tick that already ran from one that was missed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import anyio

from asynctask.schedule import Schedule, format_tick, latest_due

if TYPE_CHECKING:
    from asynctask.app import App
    from asynctask.task import Task

__all__ = ["Periodic", "PeriodicScheduler", "tick_job_id"]

log = logging.getLogger("asynctask.periodic")

#: How far back a starting scheduler looks for the most recent missed tick.
_LOOKBACK = timedelta(days=400)
#: The loop re-checks at least this often, so a changed wall clock cannot strand it.
_MAX_SLEEP = 60.0

Missed = Literal["latest", "skip"]


def tick_job_id(task_name: str, tick: datetime) -> str:
    """The deterministic job id of one tick: the same in every process."""
    return f"periodic:{task_name}:{format_tick(tick)}"


class Periodic:
    """A task bound to a schedule (what ``@app.periodic`` registers)."""

    __slots__ = ("missed", "payload", "schedule", "task")

    def __init__(self, task: Task[Any, Any], schedule: Schedule, *, payload: Any, missed: Missed) -> None:
        if missed not in ("latest", "skip"):
            raise ValueError("missed must be 'latest' or 'skip'")
        self.task = task
        self.schedule = schedule
        self.payload = payload
        self.missed = missed

    def period(self, now: datetime) -> float:
        """The length in seconds of the schedule's next period (used for how long ticks are kept)."""
        first = self.schedule.next_after(now)
        # Same-zone datetime subtraction ignores DST shifts; compare instants in UTC.
        return (self.schedule.next_after(first).astimezone(UTC) - first.astimezone(UTC)).total_seconds()

    def __repr__(self) -> str:
        return f"<Periodic {self.task.name} {self.schedule}>"


class PeriodicScheduler:
    """Publishes the ticks of an app's periodic tasks; one per worker process.

    :meth:`run_once` is the whole decision for one instant, so tests drive it with a fake clock.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self._next: dict[str, datetime] = {}

    async def run_once(self, now: float) -> float:
        """Publish what is due at ``now``; return when to run again (POSIX seconds)."""
        at = datetime.fromtimestamp(now, UTC)
        for periodic in self.app.periodic_tasks.values():
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
        clock = self.app.clock
        while True:
            try:
                wake = await self.run_once(clock())
            except Exception as exc:
                log.warning("periodic scheduling failed: %s", exc, extra={"action": "periodic_error"})
                wake = clock() + 1.0
            await anyio.sleep(max(wake - clock(), 0.0) + 0.001)

    async def _publish(self, periodic: Periodic, tick: datetime) -> None:
        handle = await self.app.publish(
            periodic.task, periodic.payload, at=tick, job_id=tick_job_id(periodic.task.name, tick)
        )
        if handle.created:
            log.debug(
                "scheduled %s for %s",
                periodic.task.name,
                tick.isoformat(),
                extra={"action": "periodic_tick", "job_id": handle.id},
            )
