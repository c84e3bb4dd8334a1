"""Schedules: when a periodic task is due.

A schedule is an immutable value with one pure method, :meth:`Schedule.next_after`, which maps an
aware datetime to the first tick strictly after it. No clock is read here, so the same schedule
gives the same ticks in every process; that is what lets several workers derive one deterministic
job id per tick (see :func:`format_tick`) and enqueue each tick exactly once.

>>> from datetime import datetime, timezone
>>> Interval(300).next_after(datetime(2026, 1, 1, 12, 3, tzinfo=timezone.utc)).isoformat()
'2026-01-01T12:05:00+00:00'
>>> str(Daily(hour=2, minute=30, tz="Europe/London"))
'daily:02:30:00@Europe/London'

Decisions shared by every schedule:

* **Aware in, aware out.** A naive datetime raises :class:`InvalidSchedule` (it names no instant).
  The answer depends only on the input *instant*, never on the zone it was written in:
  :class:`Interval` answers in UTC, the others in their own ``tz``.
* **Default zone is UTC**, not the host's local zone, so that workers on differently configured
  hosts agree.
* **Wall-clock schedules** (:class:`Daily`, :class:`Monthly`, and :class:`Cron` expressions whose
  minute and hour fields are both fixed) follow the wall clock of ``tz`` through DST changes:

  - *spring forward*: a time that does not exist that day (02:30 in Europe/London's or
    America/New_York's gap) runs once, at the first instant after the gap (03:00 local);
  - *fall back*: a time that occurs twice (01:30 in New York on the first Sunday of November) runs
    once, at its first occurrence.

  Other cron expressions (``*/5 * * * *``, ``0 * * * *``) are matched against real instants, so
  they keep firing through the repeated hour and skip times that do not exist. This is Debian
  cron's rule, and cronsim's.

* **Compare ticks as instants.** A tick in a repeated hour is, by PEP 495, never ``==`` to a
  datetime in another zone, even for the same instant; convert with ``.astimezone(UTC)`` before
  comparing, and use :func:`format_tick` to put a tick in a job id.
"""

from asynctask.schedule.base import InvalidSchedule, Schedule, format_tick, latest_due, ticks_between
from asynctask.schedule.cron import Cron
from asynctask.schedule.simple import Daily, Interval, Monthly

__all__ = [
    "Cron",
    "Daily",
    "Interval",
    "InvalidSchedule",
    "Monthly",
    "Schedule",
    "format_tick",
    "latest_due",
    "ticks_between",
]
