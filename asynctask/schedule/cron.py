"""Cron expressions, parsed and matched by cronsim (the ``cron`` extra)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

from asynctask.errors import MissingExtra
from asynctask.schedule.base import (
    InvalidSchedule,
    Schedule,
    _require_aware,
    _resolve_wall,
    _utc,
    _zone,
    _zone_key,
)

__all__ = ["Cron"]


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
