"""Ticks of a periodic task that must not overlap: which one runs when the previous one is done.

With ``overlap=False`` the task has ``global_concurrency=1``, so the broker never lets two of its
ticks run at once: a tick that comes due while the previous one runs stays queued. When it may
finally start, the worker asks :func:`skip_reason` whether it should run at all:

* a **stale** tick (a later tick of the task is already due) is skipped, whatever ``missed``
  says: the later one runs next, once, instead of a backlog of ticks run back to back. This is
  ``missed="latest"``'s rule for downtime, applied to a tick that overran;
* with ``missed="skip"``, a tick that **had to wait** for the previous one (the previous tick
  finished after this tick's time, or still runs) is skipped too, so ticks only ever start on
  time.

Only a tick's first attempt is judged: a retry continues a tick that already started. A skipped
tick is finished as ``cancelled`` with the reason as its error, so it is visible, not silent.

Interval(1) with a 2.5 s handler, two workers: ``missed="latest"`` runs the ticks of 0 s, 2 s
(at 2.5 s; 1 s is stale), 5 s, 7 s, ...; ``missed="skip"`` runs 0 s, 3 s, 6 s, ...
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from asynctask.brokers.base import Broker
from asynctask.models import Job, JobStatus
from asynctask.periodic import Periodic, tick_job_id
from asynctask.schedule import latest_due

__all__ = ["skip_reason"]

#: How far back the previous tick is looked for (the scheduler's own look-back).
_LOOKBACK = timedelta(days=400)
_MICROSECOND = timedelta(microseconds=1)


async def skip_reason(periodic: Periodic, job: Job, broker: Broker, now: float) -> str | None:
    """Why this tick of a non-overlapping periodic task must not run now, or ``None`` to run it."""
    if periodic.overlap or job.attempts != 1:
        return None
    tick = datetime.fromtimestamp(job.run_at, UTC)
    following = periodic.schedule.next_after(tick)
    if following.timestamp() <= now:
        return (
            f"skipped: the tick of {_show(tick)} could only start once the tick of {_show(following)} "
            "was due (overlap=False runs the latest tick)"
        )
    if periodic.missed == "skip":
        previous = latest_due(periodic.schedule, tick - _LOOKBACK, tick - _MICROSECOND)
        if previous is not None:
            before = await broker.get(tick_job_id(periodic.task.name, previous))
            if before is not None and (
                before.status is JobStatus.RUNNING
                or (before.finished_at is not None and before.finished_at > job.run_at)
            ):
                return (
                    f"skipped: the tick of {_show(tick)} came due while the tick of {_show(previous)} "
                    "was still running (overlap=False, missed='skip')"
                )
    return None


def _show(tick: datetime) -> str:
    return tick.astimezone(UTC).isoformat(timespec="milliseconds")
