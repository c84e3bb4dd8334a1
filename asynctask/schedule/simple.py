"""Schedules of fixed shape: every N seconds, daily at a wall time, monthly on a day."""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from asynctask.schedule.base import (
    _EPOCH,
    _MICROSECOND,
    Schedule,
    _check_int,
    _period,
    _require_aware,
    _resolve_wall,
    _utc,
    _wall_time,
    _zone,
    _zone_key,
)

__all__ = ["Daily", "Interval", "Monthly"]


class Interval(Schedule):
    """Every ``seconds``, aligned to the Unix epoch.

    Ticks are the instants ``1970-01-01T00:00:00Z + k * seconds``: ``Interval(300)`` fires at
    :00, :05, :10 … of every hour (UTC), whenever the process started. Aligning to the epoch rather
    than to the start time is what lets independent workers agree on tick times without talking to
    each other. Ticks are computed in integer microseconds, so there is no float drift.

    >>> Interval(timedelta(hours=1)).key
    'interval:3600s'
    """

    __slots__ = ("_period",)
    _period: timedelta

    def __init__(self, seconds: float | timedelta) -> None:
        self._init(_period=_period(seconds))

    def _arguments(self) -> dict[str, Any]:
        return {"seconds": self._period}

    @property
    def seconds(self) -> float:
        return self._period.total_seconds()

    @property
    def key(self) -> str:
        # Exact decimal seconds from integer microseconds; "%g" would round long periods.
        whole, micros = divmod(self._period // _MICROSECOND, 1_000_000)
        frac = f".{micros:06d}".rstrip("0") if micros else ""
        return f"interval:{whole}{frac}s"

    def next_after(self, dt: datetime) -> datetime:
        since_epoch = (_require_aware(dt) - _EPOCH) // _MICROSECOND
        period = self._period // _MICROSECOND
        return _EPOCH + (since_epoch // period + 1) * period * _MICROSECOND


class Daily(Schedule):
    """Every day at ``hour:minute:second`` on the wall clock of ``tz`` (default UTC).

    DST: a time in the spring-forward gap runs at the end of the gap (02:30 → 03:00); a time that
    occurs twice in the autumn runs once, at its first occurrence.

    >>> Daily(hour=12).key
    'daily:12:00:00@UTC'
    """

    __slots__ = ("_at", "_tz")
    _at: time
    _tz: tzinfo

    def __init__(self, hour: int, minute: int = 0, second: int = 0, *, tz: str | tzinfo = "UTC") -> None:
        self._init(_at=_wall_time(hour, minute, second), _tz=_zone(tz))

    def _arguments(self) -> dict[str, Any]:
        at = self._at
        return {"hour": at.hour, "minute": at.minute, "second": at.second, "tz": self._tz}

    @property
    def at(self) -> time:
        return self._at

    @property
    def tz(self) -> tzinfo:
        return self._tz

    @property
    def key(self) -> str:
        return f"daily:{self._at.isoformat()}@{_zone_key(self._tz)}"

    def next_after(self, dt: datetime) -> datetime:
        day = _require_aware(dt).astimezone(self._tz).date()
        while True:  # at most three rounds: today, tomorrow, and one more after a DST gap
            tick = _resolve_wall(datetime.combine(day, self._at), self._tz)
            if _utc(tick) > _utc(dt):
                return tick
            day += timedelta(days=1)


class Monthly(Schedule):
    """Every month on ``day`` at ``hour:minute:second`` on the wall clock of ``tz`` (default UTC).

    A ``day`` the month does not have runs on the month's last day: ``Monthly(day=31)`` fires on
    Jan 31, Feb 28 (29 in leap years), Mar 31, Apr 30 …. Skipping those months would silently drop
    a monthly job for a third of the year, which is rarely what "day 31" means; the last-day rule is
    also what most schedulers (and ``L`` in cron) do. DST is handled as in :class:`Daily`.

    >>> Monthly(day=3, hour=12).key
    'monthly:03T12:00:00@UTC'
    """

    __slots__ = ("_at", "_day", "_tz")
    _day: int
    _at: time
    _tz: tzinfo

    def __init__(
        self, day: int, hour: int = 0, minute: int = 0, second: int = 0, *, tz: str | tzinfo = "UTC"
    ) -> None:
        _check_int("day", day, 1, 31)
        self._init(_day=day, _at=_wall_time(hour, minute, second), _tz=_zone(tz))

    def _arguments(self) -> dict[str, Any]:
        at = self._at
        return {"day": self._day, "hour": at.hour, "minute": at.minute, "second": at.second, "tz": self._tz}

    @property
    def day(self) -> int:
        return self._day

    @property
    def at(self) -> time:
        return self._at

    @property
    def tz(self) -> tzinfo:
        return self._tz

    @property
    def key(self) -> str:
        return f"monthly:{self._day:02d}T{self._at.isoformat()}@{_zone_key(self._tz)}"

    def next_after(self, dt: datetime) -> datetime:
        local = _require_aware(dt).astimezone(self._tz)
        year, month = local.year, local.month
        while True:  # at most three rounds, as in Daily
            day = min(self._day, calendar.monthrange(year, month)[1])
            tick = _resolve_wall(datetime.combine(date(year, month, day), self._at), self._tz)
            if _utc(tick) > _utc(dt):
                return tick
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
