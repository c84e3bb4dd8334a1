"""Periodic tasks: a task bound to a schedule, and the deterministic id of each tick.

Every worker runs the scheduler (:mod:`asynctask.runtime.scheduler`), and each tick still runs
exactly once: each tick is published ahead of time as a delayed job whose id is derived from the
task and the tick's instant (``periodic:<task>:<UTC tick>``). Every instance computes the same
ticks (schedules are pure and epoch-aligned) and publishes the same ids, so the broker's
idempotent publish keeps one job per tick however many workers run the loop; the broker's
delayed-job machinery then fires it on time.

**Missed ticks** (no worker was running, or the loop stalled): with ``missed="latest"`` (the
default) the most recent missed tick runs once, not a burst of stale runs; ``missed="skip"``
runs none. Tick jobs are kept for at least two periods after they finish, so a restart can tell
a tick that already ran from one that was missed.

**Overlap.** ``@app.periodic(..., overlap=False)`` (the default) runs one tick at a time across
the cluster: the task gets ``global_concurrency=1``, so a due tick stays queued while the previous
one runs, and when it may start, :mod:`asynctask.runtime.overlap` skips it if it is stale (see
there). It is the default because a periodic task is usually *the* job that refreshes, cleans up
or reports: two runs of it at once race each other, and a tick that takes longer than its period
would otherwise pile up runs without bound (the seed's tasker and APScheduler's
``max_instances=1`` make the same choice). Ticks that may run side by side say ``overlap=True``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from asynctask.schedule import Cron, InvalidSchedule, Schedule, format_tick
from asynctask.task import Task

__all__ = ["Missed", "Periodic", "as_schedule", "tick_job_id"]

Missed = Literal["latest", "skip"]


def tick_job_id(task_name: str, tick: datetime) -> str:
    """The deterministic job id of one tick: the same in every process."""
    return f"periodic:{task_name}:{format_tick(tick)}"


def as_schedule(schedule: Schedule | str) -> Schedule:
    """A schedule, or a cron expression (``"*/5 * * * *"``) read as :class:`Cron` in UTC."""
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, str):
        return Cron(schedule)
    raise InvalidSchedule(
        "a periodic task needs a Schedule (Cron, Interval, Daily, Monthly) or a cron string, "
        f"got {schedule!r}"
    )


class Periodic:
    """A task bound to a schedule (what ``@app.periodic`` registers)."""

    __slots__ = ("missed", "overlap", "payload", "schedule", "task")

    def __init__(
        self, task: Task[Any, Any], schedule: Schedule, *, payload: Any, missed: Missed, overlap: bool = True
    ) -> None:
        if missed not in ("latest", "skip"):
            raise ValueError("missed must be 'latest' or 'skip'")
        self.task = task
        self.schedule = schedule
        self.payload = payload
        self.missed = missed
        #: ``False``: one tick at a time across the cluster (see :mod:`asynctask.runtime.overlap`).
        self.overlap = overlap

    def period(self, now: datetime) -> float:
        """The length in seconds of the schedule's next period (used for how long ticks are kept)."""
        first = self.schedule.next_after(now)
        # Same-zone datetime subtraction ignores DST shifts; compare instants in UTC.
        return (self.schedule.next_after(first).astimezone(UTC) - first.astimezone(UTC)).total_seconds()

    def __repr__(self) -> str:
        return f"<Periodic {self.task.name} {self.schedule}>"
