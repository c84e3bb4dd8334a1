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

from __future__ import annotations

import abc
import calendar
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from asynctask.errors import ConfigurationError, MissingExtra

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


class Cron(Schedule):
    """A cron expression, evaluated on the wall clock of ``tz`` (default UTC).

    Five fields ``minute hour day-of-month month day-of-week``, or six with **seconds first**
    (``second minute hour …``), which is cronsim's order and Quartz's. Also accepted: names
    (``MON``, ``JAN``), ``L``/``LW`` in day-of-month, ``5L``/``MON#2`` in day-of-week, and the
    aliases ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``) and
    ``@hourly``. As in Debian cron, when both day fields are restricted a day matching *either*
    one fires. ``@reboot`` is rejected: it is not a schedule.

    An invalid expression, an out-of-range field, or an expression that can never fire
    (``0 0 30 2 *``) raises :class:`InvalidSchedule` here, naming the bad field.

    Needs the ``cron`` extra: ``pip install 'asynctask[cron]'``.

    >>> Cron("*/5 * * * *").key
    'cron:*/5 * * * *@UTC'
    """

    __slots__ = ("_expr", "_tz", "_wall")
    _expr: str
    _tz: tzinfo
    _wall: bool

    def __init__(self, expression: str, *, tz: str | tzinfo = "UTC") -> None:
        expr = _expand_alias(expression)
        fields = expr.split()
        if len(fields) not in (5, 6):
            raise InvalidSchedule(
                f"invalid cron expression {expression!r}: expected 5 fields "
                f"(minute hour day-of-month month day-of-week) or 6 with seconds first, got {len(fields)}"
            )
        _validate_cron(expression, expr)
        minute, hour = fields[-5], fields[-4]
        # Debian cron's rule (which cronsim follows): fixed minute *and* hour make a "wall-clock
        # job" that is moved out of a DST gap and run once in an overlap; anything else is matched
        # against real instants. We apply it ourselves, for 6-field expressions too, so that
        # Cron("30 2 * * *") and Daily(hour=2, minute=30) always agree.
        wall = not minute.startswith("*") and not hour.startswith("*")
        # Upper case, single spaces: "0 9 * * mon" and "0  9 * * MON" are one schedule, one key.
        self._init(_expr=" ".join(fields).upper(), _tz=_zone(tz), _wall=wall)

    def _arguments(self) -> dict[str, Any]:
        return {"expression": self._expr, "tz": self._tz}

    @property
    def expression(self) -> str:
        return self._expr

    @property
    def tz(self) -> tzinfo:
        return self._tz

    @property
    def key(self) -> str:
        return f"cron:{self._expr}@{_zone_key(self._tz)}"

    def next_after(self, dt: datetime) -> datetime:
        local = _require_aware(dt).astimezone(self._tz)
        if self._wall:
            # Walk naive wall times and resolve each one; a resolved tick can be <= dt only in a
            # repeated hour (its first occurrence already passed), and is then skipped.
            candidates = (
                _resolve_wall(w, self._tz) for w in _cronsim(self._expr, local.replace(tzinfo=None))
            )
        else:
            # Normalise: cronsim may hand back a wall time that does not exist (midnight in a gap).
            candidates = (c.astimezone(UTC).astimezone(self._tz) for c in _cronsim(self._expr, local))
        for tick in candidates:
            if _utc(tick) > _utc(dt):
                return tick
        raise InvalidSchedule(f"{self.key} has no tick within 50 years after {dt.isoformat()}")


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


# --- cron ------------------------------------------------------------------------------------

# Vixie cron's aliases; cronsim does not expand them itself.
_ALIASES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELD_NAMES: Final = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
# Fixed and in the past, so validation never depends on today's date.
_VALIDATION_START: Final = datetime(2000, 1, 1)


def _expand_alias(expression: str) -> str:
    if not isinstance(expression, str):
        raise InvalidSchedule(f"cron expression must be a string, got {expression!r}")
    expr = expression.strip()
    if expr.startswith("@"):
        try:
            return _ALIASES[expr.lower()]
        except KeyError:
            known = ", ".join(_ALIASES)
            raise InvalidSchedule(f"unknown cron alias {expr!r} (known: {known})") from None
    return expr


def _cronsim_module() -> Any:
    # why cronsim: it is small, typed, maintained (it runs healthchecks.io's cron checks), and
    # careful about DST; croniter's maintainers have declared it unmaintained more than once and
    # it has a history of DST bugs. Imported lazily so Interval/Daily/Monthly need no extra.
    try:
        import cronsim
    except ImportError:
        raise MissingExtra("Cron schedules need cronsim: pip install 'asynctask[cron]'") from None
    return cronsim


def _cronsim(expr: str, start: datetime) -> Iterator[datetime]:
    module = _cronsim_module()
    # CronSim stops by itself when nothing matches within 50 years.
    yield from module.CronSim(expr, start)


def _validate_cron(original: str, expr: str) -> None:
    module = _cronsim_module()
    try:
        sim = module.CronSim(expr, _VALIDATION_START)
        next(sim)
    except module.CronSimError as exc:
        raise InvalidSchedule(f"invalid cron expression {original!r}: {_describe(expr, str(exc))}") from None
    except StopIteration:
        raise InvalidSchedule(f"cron expression {original!r} never fires") from None


def _describe(expr: str, message: str) -> str:
    # cronsim says "Bad minute"; point at the text of that field too.
    fields = expr.split()
    if len(fields) == 5:
        fields.insert(0, "0")
    for index, name in enumerate(_FIELD_NAMES):
        if message == f"Bad {name}":
            return f"bad {name} field {fields[index]!r}"
    return message
