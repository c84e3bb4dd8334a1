"""The schedule protocol and what every schedule shares: validation, zones, DST resolution, ticks."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from asynctask.errors import ConfigurationError

__all__ = ["InvalidSchedule", "Schedule", "format_tick", "latest_due", "ticks_between"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


class InvalidSchedule(ConfigurationError):
    """The schedule is not valid."""


class Schedule(abc.ABC):
    """An immutable rule that says when something is due.

    Subclasses define :meth:`next_after` and :attr:`key`; equality, hashing, ``str()`` and
    immutability all derive from ``key``, which names every parameter of the schedule.
    """

    __slots__ = ()

    @abc.abstractmethod
    def next_after(self, dt: datetime) -> datetime:
        """Return the first tick strictly after ``dt`` (an aware datetime)."""

    @property
    @abc.abstractmethod
    def key(self) -> str:
        """A stable text form, the same in every process; usable in a deterministic job id."""

    def __str__(self) -> str:
        return self.key

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _init(self, **fields: Any) -> None:
        # The one way in: __setattr__ is closed so a schedule cannot change after construction.
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def _arguments(self) -> dict[str, Any] | None:
        """The constructor's keyword arguments that rebuild this schedule (None: cannot pickle)."""
        return None

    # Immutable, so a copy is the object itself; pickling goes through the constructor because
    # the default slot-by-slot restore would hit the closed __setattr__.
    def __copy__(self) -> Schedule:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Schedule:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        arguments = self._arguments()
        if arguments is None:
            raise TypeError(f"cannot pickle {type(self).__name__}: it does not define _arguments()")
        return (_rebuild, (type(self), arguments))


def _rebuild(cls: type[Schedule], arguments: dict[str, Any]) -> Schedule:
    return cls(**arguments)


# --- helpers over any schedule --------------------------------------------------------------


def ticks_between(schedule: Schedule, start: datetime, end: datetime) -> Iterator[datetime]:
    """Yield the ticks of ``schedule`` in ``(start, end]``, oldest first.

    The interval is open at ``start`` so that a loop which remembers the last instant it handled
    never sees a tick twice. It is a lazy iterator: a fine schedule over a long span is many ticks.
    Naive datetimes are rejected at the call, not at the first ``next()``.
    """
    return _ticks(schedule, _require_aware(start), _utc(end))


def _ticks(schedule: Schedule, start: datetime, end: datetime) -> Iterator[datetime]:
    tick = schedule.next_after(start)
    while _utc(tick) <= end:
        yield tick
        tick = schedule.next_after(tick)


def latest_due(schedule: Schedule, since: datetime, now: datetime) -> datetime | None:
    """The most recent tick in ``(since, now]``, or ``None`` if there is none: the catch-up policy.

    A scheduler that was down (or slow) and missed several ticks runs only the latest one, once,
    instead of a burst of stale runs. Found by bisection over ``next_after`` (about 45 calls for a
    year of downtime, at microsecond precision), so it is cheap even for a per-second cron.
    """
    since, now = _utc(since), _utc(now)
    if _utc(schedule.next_after(since)) > now:
        return None
    # Invariant: next_after(lo) <= now < next_after(hi) (hi = now holds trivially).
    lo, hi = since, now
    while hi - lo > _MICROSECOND:
        mid = lo + (hi - lo) // 2
        if _utc(schedule.next_after(mid)) <= now:
            lo = mid
        else:
            hi = mid
    return schedule.next_after(lo)


def format_tick(tick: datetime) -> str:
    """A tick as a zone-free UTC string, e.g. ``20261101T053000.000000Z``, for deterministic job ids.

    Two workers that computed the same instant in different zones, or on either side of a DST
    fold, get the same string.
    """
    return _utc(tick).strftime("%Y%m%dT%H%M%S.%fZ")


# --- validation ------------------------------------------------------------------------------


def _require_aware(dt: datetime) -> datetime:
    if not isinstance(dt, datetime):
        raise TypeError(f"expected a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise InvalidSchedule(
            f"naive datetime {dt.isoformat()}: schedules need an aware datetime "
            "(e.g. datetime.now(timezone.utc))"
        )
    return dt


def _utc(dt: datetime) -> datetime:
    # Compare and subtract in UTC only: two datetimes that share a tzinfo are compared by wall
    # time, fold ignored, which gets the repeated hour of a DST fall-back wrong.
    return _require_aware(dt).astimezone(UTC)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    # bool is an int subclass; Daily(hour=True) is a bug, not 01:00.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidSchedule(f"{name} must be an integer from {low} to {high}, got {value!r}")


def _wall_time(hour: int, minute: int, second: int) -> time:
    _check_int("hour", hour, 0, 23)
    _check_int("minute", minute, 0, 59)
    _check_int("second", second, 0, 59)
    return time(hour, minute, second)


def _period(seconds: float | timedelta) -> timedelta:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float | timedelta):
        raise InvalidSchedule(f"interval must be seconds or a timedelta, got {seconds!r}")
    try:
        period = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
    except (OverflowError, ValueError):  # inf, nan, absurdly large
        raise InvalidSchedule(f"interval must be a finite number of seconds, got {seconds!r}") from None
    if period < _MICROSECOND:
        raise InvalidSchedule(f"interval must be at least one microsecond, got {seconds!r}")
    return period


def _zone(tz: str | tzinfo) -> tzinfo:
    if isinstance(tz, str):
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidSchedule(f"unknown time zone {tz!r}") from None
    _zone_key(tz)  # reject zones without a stable name now, not at the first tick
    return tz


def _zone_key(tz: tzinfo) -> str:
    # Only zones with a name every process agrees on may appear in a key. pytz and dateutil zones
    # are refused too: pytz in particular gives wrong answers with datetime arithmetic.
    if isinstance(tz, ZoneInfo) and tz.key:
        return tz.key
    if isinstance(tz, timezone):
        # By offset, not by the name it was given: timezone(+1h, "X") and timezone(+2h, "X") differ.
        return timezone(tz.utcoffset(None)).tzname(None)
    raise InvalidSchedule(f"time zone {tz!r} must be a zoneinfo.ZoneInfo (by name) or a datetime.timezone")


# --- wall-clock resolution -------------------------------------------------------------------


def _resolve_wall(wall: datetime, tz: tzinfo) -> datetime:
    """The instant a naive wall time of ``tz`` stands for, by the DST rules in the module docstring."""
    first = wall.replace(tzinfo=tz, fold=0)  # fold=0: the first of two occurrences in an overlap
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
        return first
    return _end_of_gap(wall, tz)


def _end_of_gap(wall: datetime, tz: tzinfo) -> datetime:
    """The transition instant that skipped over ``wall`` (03:00 for 02:30 on a spring-forward day)."""
    # Per PEP 495, an imaginary time read with the old offset (fold=0) lands after the transition
    # and with the new one (fold=1) before it; bisect whole seconds in between. Real zones change
    # offset on whole seconds.
    lo = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    hi = int(wall.replace(tzinfo=tz, fold=0).timestamp())
    after = datetime.fromtimestamp(hi, tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, tz)
