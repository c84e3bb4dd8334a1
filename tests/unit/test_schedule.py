from __future__ import annotations

import builtins
import copy
import pickle
import sys
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from itertools import islice, pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from asynctask.errors import ConfigurationError, MissingExtra
from asynctask.schedule import (
    Cron,
    Daily,
    Interval,
    InvalidSchedule,
    Monthly,
    Schedule,
    format_tick,
    latest_due,
    ticks_between,
)

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # 30-minute DST shift


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def as_utc(ticks: list[datetime]) -> list[datetime]:
    # Needed to compare ticks in a repeated (fall-back) hour: by PEP 495 such a datetime is never
    # == to one in another zone, even for the same instant.
    return [t.astimezone(UTC) for t in ticks]


def ticks(schedule: Schedule, start: datetime, n: int) -> list[datetime]:
    out, t = [], start
    for _ in range(n):
        t = schedule.next_after(t)
        out.append(t)
    return out


# --- common contract ---------------------------------------------------------------------------

ALL = [
    Interval(60),
    Daily(hour=2, minute=30, tz="America/New_York"),
    Monthly(day=31, hour=12, tz="Europe/London"),
    Cron("*/5 * * * *", tz="Europe/London"),
    Cron("0 30 2 * * *", tz="America/New_York"),
]


@pytest.mark.parametrize("schedule", ALL, ids=str)
def test_next_after_is_strictly_after_and_aware(schedule: Schedule) -> None:
    start = utc(2026, 3, 1)
    previous = start
    for tick in ticks(schedule, start, 50):
        assert tick.tzinfo is not None
        assert tick.astimezone(UTC) > previous.astimezone(UTC)
        previous = tick


@pytest.mark.parametrize("schedule", ALL, ids=str)
def test_naive_datetime_is_rejected(schedule: Schedule) -> None:
    with pytest.raises(InvalidSchedule, match="naive datetime"):
        schedule.next_after(datetime(2026, 1, 1))


@pytest.mark.parametrize("schedule", ALL, ids=str)
def test_answer_depends_on_the_instant_not_the_zone_it_is_written_in(schedule: Schedule) -> None:
    instant = utc(2026, 7, 1, 10, 7, 3)
    answers = {
        schedule.next_after(instant.astimezone(tz)) for tz in (UTC, NY, LONDON, timezone(timedelta(hours=9)))
    }
    assert len(answers) == 1
    (answer,) = answers
    assert answer.utcoffset() == schedule.next_after(instant).utcoffset()


@pytest.mark.parametrize("schedule", ALL, ids=str)
def test_schedules_are_immutable_values(schedule: Schedule) -> None:
    with pytest.raises(AttributeError, match="immutable"):
        schedule.tz = UTC
    assert hash(schedule) == hash(schedule.key)
    assert str(schedule) == schedule.key
    assert repr(schedule) == f"<{type(schedule).__name__} {schedule.key}>"


@pytest.mark.parametrize("schedule", ALL, ids=str)
def test_schedules_copy_and_pickle_to_equal_values(schedule: Schedule) -> None:
    assert copy.copy(schedule) is schedule
    assert copy.deepcopy({"s": schedule})["s"] is schedule
    restored = pickle.loads(pickle.dumps(schedule))
    assert restored == schedule
    assert restored is not schedule
    start = utc(2026, 11, 1)
    assert restored.next_after(start) == schedule.next_after(start)


def test_keys_are_stable_and_name_every_parameter() -> None:
    assert Interval(300).key == "interval:300s"
    assert Interval(0.25).key == "interval:0.25s"
    assert Interval(timedelta(days=1, microseconds=5)).key == "interval:86400.000005s"
    assert Daily(hour=2, minute=30, tz="Europe/London").key == "daily:02:30:00@Europe/London"
    assert Daily(hour=12, second=5).key == "daily:12:00:05@UTC"
    assert Monthly(day=3, hour=12, tz=NY).key == "monthly:03T12:00:00@America/New_York"
    assert Cron("  */5  *   * * * ").key == "cron:*/5 * * * *@UTC"
    assert Cron("0 0 * * *", tz=timezone(timedelta(hours=2))).key == "cron:0 0 * * *@UTC+02:00"
    assert Cron("@daily").key == "cron:0 0 * * *@UTC"
    assert Cron("0 9 * * mon").key == "cron:0 9 * * MON@UTC"
    assert Daily(hour=1, tz=timezone(timedelta(hours=1), "X")).key == "daily:01:00:00@UTC+01:00"
    assert Daily(hour=1, tz=timezone(timedelta(hours=2), "X")).key == "daily:01:00:00@UTC+02:00"
    assert Daily(hour=1, tz=UTC).key == Daily(hour=1, tz="UTC").key == "daily:01:00:00@UTC"


def test_equal_parameters_make_equal_schedules() -> None:
    assert Interval(60) == Interval(timedelta(minutes=1))
    assert Daily(hour=1, tz="UTC") == Daily(hour=1, tz=UTC)
    assert Daily(hour=1) != Daily(hour=1, tz=NY)
    assert Cron("@hourly") == Cron("0 * * * *")
    assert len({Interval(60), Interval(60.0), Daily(hour=0)}) == 2
    assert Interval(60) != "interval:60s"


# --- Interval ----------------------------------------------------------------------------------


def test_interval_ticks_are_aligned_to_the_epoch() -> None:
    assert Interval(300).next_after(utc(2026, 1, 1, 12, 3, 7)) == utc(2026, 1, 1, 12, 5)
    assert Interval(300).next_after(utc(2026, 1, 1, 12, 5)) == utc(2026, 1, 1, 12, 10)
    assert Interval(timedelta(days=1)).next_after(utc(2026, 1, 1, 23, 59)) == utc(2026, 1, 2)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for tick in ticks(Interval(7), utc(2026, 5, 5, 5, 5, 5), 20):
        assert (tick - epoch).total_seconds() % 7 == 0


def test_interval_instances_agree_whenever_they_start() -> None:
    # Two workers that start at different times still compute the same tick times.
    end = utc(2026, 1, 1, 1)
    early = list(ticks_between(Interval(90), utc(2026, 1, 1, 0, 0, 1), end))
    late = list(ticks_between(Interval(90), utc(2026, 1, 1, 0, 7, 7), end))
    assert late == [t for t in early if t > utc(2026, 1, 1, 0, 7, 7)]
    assert late[0] == utc(2026, 1, 1, 0, 7, 30)


def test_interval_has_no_float_drift() -> None:
    schedule = Interval(0.1)
    start = utc(2026, 1, 1)
    tick = list(islice(ticks_between(schedule, start, utc(2026, 1, 2)), 100_000))[-1]
    assert tick == start + timedelta(seconds=10_000)
    assert Interval(0.1).next_after(utc(2026, 1, 1, 0, 0, 0)) == start + timedelta(microseconds=100_000)


def test_interval_answers_in_utc() -> None:
    tick = Interval(60).next_after(datetime(2026, 6, 1, 9, 0, 30, tzinfo=NY))
    assert tick.tzinfo is UTC
    assert tick == utc(2026, 6, 1, 13, 1)


def test_interval_is_unaffected_by_dst() -> None:
    # Across New York's fall-back, an hourly interval keeps exactly one hour between ticks.
    got = list(ticks_between(Interval(3600), datetime(2026, 11, 1, 0, 0, tzinfo=NY), utc(2026, 11, 1, 8)))
    assert [b - a for a, b in pairwise(got)] == [timedelta(hours=1)] * (len(got) - 1)
    assert len(got) == 4


@pytest.mark.parametrize("bad", [0, -1, 0.0000001, float("nan"), float("inf"), timedelta(0), True, "60"])
def test_interval_rejects_bad_periods(bad: Any) -> None:
    with pytest.raises(InvalidSchedule, match="interval"):
        Interval(bad)


# --- Daily -------------------------------------------------------------------------------------


def test_daily_runs_every_day_at_the_wall_time() -> None:
    daily = Daily(hour=12, minute=15, tz=LONDON)
    got = ticks(daily, utc(2026, 6, 1, 12, 0), 3)
    assert got == [datetime(2026, 6, d, 12, 15, tzinfo=LONDON) for d in (2, 3, 4)]
    assert daily.next_after(datetime(2026, 6, 1, 12, 14, 59, 999999, tzinfo=LONDON)).day == 1
    assert daily.next_after(datetime(2026, 6, 1, 12, 15, tzinfo=LONDON)).day == 2


def test_daily_on_spring_forward_runs_at_the_end_of_the_gap() -> None:
    # 2026-03-08 in New York: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist that day.
    got = ticks(Daily(hour=2, minute=30, tz=NY), datetime(2026, 3, 7, 12, tzinfo=NY), 3)
    assert got[0] == datetime(2026, 3, 8, 3, 0, tzinfo=NY)
    assert got[0] == utc(2026, 3, 8, 7, 0)
    assert got[1:] == [datetime(2026, 3, d, 2, 30, tzinfo=NY) for d in (9, 10)]


def test_daily_on_spring_forward_in_london() -> None:
    # 2026-03-29 in London: 01:00 GMT jumps to 02:00 BST.
    got = ticks(Daily(hour=1, minute=30, tz=LONDON), utc(2026, 3, 28, 12), 2)
    assert got == [utc(2026, 3, 29, 1, 0), datetime(2026, 3, 30, 1, 30, tzinfo=LONDON)]


def test_daily_on_spring_forward_with_a_half_hour_shift() -> None:
    # Lord Howe Island moves its clock by 30 minutes: 02:00 → 02:30 on 2026-10-04.
    tick = Daily(hour=2, minute=10, tz=LORD_HOWE).next_after(datetime(2026, 10, 3, 12, tzinfo=LORD_HOWE))
    assert (tick.hour, tick.minute, tick.day) == (2, 30, 4)


def test_daily_on_fall_back_runs_once_at_the_first_occurrence() -> None:
    # 2026-11-01 in New York: 01:00-02:00 happens twice (EDT, then EST).
    daily = Daily(hour=1, minute=30, tz=NY)
    got = list(
        ticks_between(daily, datetime(2026, 10, 31, 12, tzinfo=NY), datetime(2026, 11, 2, 12, tzinfo=NY))
    )
    assert as_utc(got) == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    # Asked during the second 01:15 (after the first 01:30 passed): nothing more that day.
    second_pass = datetime(2026, 11, 1, 1, 15, fold=1, tzinfo=NY)
    assert daily.next_after(second_pass) == utc(2026, 11, 2, 6, 30)
    # Asked during the first 01:15: the first 01:30.
    assert as_utc([daily.next_after(datetime(2026, 11, 1, 1, 15, tzinfo=NY))]) == [utc(2026, 11, 1, 5, 30)]


def test_daily_has_one_tick_per_day_through_a_year_of_dst() -> None:
    for tz in (NY, LONDON, LORD_HOWE):
        for hour, minute in ((0, 0), (1, 30), (2, 0), (2, 30), (23, 59)):
            year = list(
                ticks_between(Daily(hour=hour, minute=minute, tz=tz), utc(2026, 1, 1), utc(2027, 1, 1))
            )
            assert len(year) == 365, (tz, hour, minute)
            assert len({t.astimezone(tz).date() for t in year}) == 365


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hour": 24}, "hour must be an integer from 0 to 23, got 24"),
        ({"hour": -1}, "hour"),
        ({"hour": 1, "minute": 60}, "minute"),
        ({"hour": 1, "second": 60}, "second"),
        ({"hour": 1.5}, "hour"),
        ({"hour": True}, "hour"),
        ({"hour": 1, "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"hour": 1, "tz": "../etc/passwd"}, "unknown time zone"),
    ],
)
def test_daily_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidSchedule, match=match):
        Daily(**kwargs)


def test_zones_without_a_stable_name_are_rejected() -> None:
    class Custom(tzinfo):
        def utcoffset(self, dt: datetime | None) -> timedelta:
            return timedelta(0)

        def dst(self, dt: datetime | None) -> timedelta:
            return timedelta(0)

        def tzname(self, dt: datetime | None) -> str:
            return "custom"

    with pytest.raises(InvalidSchedule, match=r"zoneinfo\.ZoneInfo"):
        Daily(hour=1, tz=Custom())


def test_invalid_schedule_is_a_configuration_error() -> None:
    assert issubclass(InvalidSchedule, ConfigurationError)
    assert issubclass(InvalidSchedule, ValueError)


# --- Monthly -----------------------------------------------------------------------------------


def test_monthly_runs_on_the_day_at_the_time() -> None:
    got = ticks(Monthly(day=3, hour=12, tz=LONDON), utc(2026, 1, 5), 3)
    assert got == [datetime(2026, m, 3, 12, tzinfo=LONDON) for m in (2, 3, 4)]
    assert Monthly(day=3, hour=12).next_after(utc(2026, 12, 3, 12)) == utc(2027, 1, 3, 12)


def test_monthly_day_31_runs_on_the_last_day_of_shorter_months() -> None:
    got = list(ticks_between(Monthly(day=31), utc(2026, 1, 1), utc(2027, 1, 1)))
    assert [t.day for t in got] == [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def test_monthly_day_29_to_31_in_february_of_a_leap_year() -> None:
    for day in (29, 30, 31):
        assert Monthly(day=day).next_after(utc(2028, 2, 1)) == utc(2028, 2, 29)
        assert Monthly(day=day).next_after(utc(2027, 2, 1)) == utc(2027, 2, 28)
    # The clamp is per month: the next month is back to the real day.
    assert Monthly(day=30).next_after(utc(2028, 2, 29)) == utc(2028, 3, 30)


def test_monthly_on_a_dst_day() -> None:
    # 2026-03-08 is New York's spring-forward day; 02:30 runs at 03:00.
    assert Monthly(day=8, hour=2, minute=30, tz=NY).next_after(utc(2026, 3, 1)) == utc(2026, 3, 8, 7)
    # 2026-11-01 is fall-back; 01:30 runs once, at its first occurrence.
    monthly = Monthly(day=1, hour=1, minute=30, tz=NY)
    assert monthly.next_after(utc(2026, 10, 15)).astimezone(UTC) == utc(2026, 11, 1, 5, 30)
    assert monthly.next_after(utc(2026, 11, 1, 5, 30)) == datetime(2026, 12, 1, 1, 30, tzinfo=NY)


@pytest.mark.parametrize("day", [0, 32, -1])
def test_monthly_rejects_bad_days(day: int) -> None:
    with pytest.raises(InvalidSchedule, match="day must be an integer from 1 to 31"):
        Monthly(day=day)


# --- Cron --------------------------------------------------------------------------------------


def test_cron_every_five_minutes() -> None:
    got = ticks(Cron("*/5 * * * *"), utc(2026, 1, 1, 12, 3, 59), 3)
    assert got == [utc(2026, 1, 1, 12, 5), utc(2026, 1, 1, 12, 10), utc(2026, 1, 1, 12, 15)]
    assert Cron("*/5 * * * *").next_after(utc(2026, 1, 1, 12, 5)) == utc(2026, 1, 1, 12, 10)
    assert Cron("*/5 * * * *").next_after(utc(2026, 1, 1, 12, 4, 59, 999999)) == utc(2026, 1, 1, 12, 5)


def test_cron_six_fields_have_seconds_first() -> None:
    cron = Cron("*/15 * * * * *")
    assert ticks(cron, utc(2026, 1, 1, 0, 0, 1), 3) == [utc(2026, 1, 1, 0, 0, s) for s in (15, 30, 45)]
    assert Cron("30 0 12 * * *").next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 12, 0, 30)


def test_cron_names_last_day_and_nth_weekday() -> None:
    assert Cron("0 9 * * MON").next_after(utc(2026, 11, 23, 9)) == utc(2026, 11, 30, 9)
    assert Cron("0 0 L * *").next_after(utc(2028, 2, 1)) == utc(2028, 2, 29)
    assert Cron("0 0 * * MON#2").next_after(utc(2026, 11, 1)) == utc(2026, 11, 9)
    assert Cron("0 0 1 JAN *").next_after(utc(2026, 6, 1)) == utc(2027, 1, 1)


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_cron_aliases(alias: str, expected: str) -> None:
    assert Cron(alias) == Cron(expected)
    assert Cron(alias).expression == expected


def test_cron_wall_clock_job_on_spring_forward_runs_at_the_end_of_the_gap() -> None:
    for expr in ("30 2 * * *", "0 30 2 * * *"):
        got = ticks(Cron(expr, tz=NY), datetime(2026, 3, 7, 12, tzinfo=NY), 2)
        assert got == [utc(2026, 3, 8, 7, 0), datetime(2026, 3, 9, 2, 30, tzinfo=NY)], expr


def test_cron_wall_clock_job_on_fall_back_runs_once() -> None:
    for expr in ("30 1 * * *", "0 30 1 * * *"):
        cron = Cron(expr, tz=NY)
        got = list(ticks_between(cron, utc(2026, 10, 31, 12), utc(2026, 11, 2, 12)))
        assert as_utc(got) == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)], expr
        assert cron.next_after(datetime(2026, 11, 1, 1, 15, fold=1, tzinfo=NY)) == utc(2026, 11, 2, 6, 30)


def test_cron_frequent_job_follows_real_time_through_dst() -> None:
    # Not a wall-clock job: it fires at every real half hour, both passes of the repeated hour.
    fall = list(ticks_between(Cron("*/30 * * * *", tz=NY), utc(2026, 11, 1, 4, 59), utc(2026, 11, 1, 7)))
    assert as_utc(fall) == [
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 6),
        utc(2026, 11, 1, 6, 30),
        utc(2026, 11, 1, 7),
    ]
    assert [t.fold for t in fall] == [0, 0, 1, 1, 0]
    # ...and skips times that do not exist.
    spring = list(ticks_between(Cron("*/30 * * * *", tz=NY), utc(2026, 3, 8, 6, 29), utc(2026, 3, 8, 7, 30)))
    assert [(t.hour, t.minute) for t in spring] == [(1, 30), (3, 0), (3, 30)]


def test_cron_and_daily_agree_through_every_dst_change() -> None:
    for tz in (NY, LONDON, LORD_HOWE, ZoneInfo("Pacific/Apia")):  # Apia skipped 2011-12-30 entirely
        for hour, minute in ((0, 0), (1, 30), (2, 0), (2, 15), (2, 30), (23, 59)):
            daily = list(
                ticks_between(Daily(hour=hour, minute=minute, tz=tz), utc(2011, 1, 1), utc(2012, 1, 1))
            )
            cron = list(
                ticks_between(Cron(f"{minute} {hour} * * *", tz=tz), utc(2011, 1, 1), utc(2012, 1, 1))
            )
            assert as_utc(daily) == as_utc(cron), (tz, hour, minute)


@pytest.mark.parametrize(
    ("expression", "match"),
    [
        ("61 * * * *", r"bad minute field '61'"),
        ("* 24 * * *", r"bad hour field '24'"),
        ("* * 0 * *", r"bad day-of-month field '0'"),
        ("* * * 13 *", r"bad month field '13'"),
        ("* * * * 8", r"bad day-of-week field '8'"),
        ("60 * * * * *", r"bad second field '60'"),
        ("*/0 * * * *", r"bad minute field '\*/0'"),
        ("5-1 * * * *", r"bad minute field '5-1'"),
        ("a b c d e", r"bad minute field 'a'"),
        ("0 0 30 2 *", r"bad day-of-month field '30'"),
        ("* * * *", r"expected 5 fields .* got 4"),
        ("* * * * * * *", r"got 7"),
        ("", r"got 0"),
        ("@reboot", r"unknown cron alias '@reboot'"),
    ],
)
def test_cron_rejects_invalid_expressions_naming_the_bad_part(expression: str, match: str) -> None:
    with pytest.raises(InvalidSchedule, match=match):
        Cron(expression)


def test_cron_rejects_a_non_string() -> None:
    with pytest.raises(InvalidSchedule, match="must be a string"):
        Cron(5)  # type: ignore[arg-type]


def test_cron_needs_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_cronsim(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "cronsim":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "cronsim", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_cronsim)
    with pytest.raises(MissingExtra, match=r"pip install 'asynctask\[cron\]'"):
        Cron("* * * * *")
    # The other schedules do not need it.
    assert Daily(hour=1).next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 1)


# --- helpers -----------------------------------------------------------------------------------


def test_ticks_between_is_open_at_the_start_and_closed_at_the_end() -> None:
    got = list(ticks_between(Interval(60), utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 4)))
    assert got == [utc(2026, 1, 1, 0, m) for m in (2, 3, 4)]
    assert list(ticks_between(Interval(60), utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 1, 59))) == []


def test_ticks_between_rejects_naive_datetimes_at_the_call() -> None:
    with pytest.raises(InvalidSchedule, match="naive"):
        ticks_between(Interval(60), datetime(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(InvalidSchedule, match="naive"):
        ticks_between(Interval(60), utc(2026, 1, 1), datetime(2026, 1, 2))


def test_ticks_between_compares_instants_not_wall_times() -> None:
    # The end is the second 01:45 of New York's fall-back; both 01:30s are before it.
    end = datetime(2026, 11, 1, 1, 45, fold=1, tzinfo=NY)
    got = list(ticks_between(Cron("*/30 * * * *", tz=NY), datetime(2026, 11, 1, 1, 0, tzinfo=NY), end))
    assert as_utc(got) == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6), utc(2026, 11, 1, 6, 30)]


def test_latest_due_returns_only_the_most_recent_missed_tick() -> None:
    since = utc(2026, 1, 1, 0, 0)
    assert latest_due(Interval(60), since, utc(2026, 1, 1, 0, 10, 30)) == utc(2026, 1, 1, 0, 10)
    assert latest_due(Interval(60), since, utc(2026, 1, 1, 0, 10)) == utc(2026, 1, 1, 0, 10)
    assert latest_due(Interval(60), since, utc(2026, 1, 1, 0, 0, 59)) is None
    assert latest_due(Daily(hour=2, minute=30, tz=NY), utc(2026, 3, 1), utc(2026, 3, 8, 12)) == utc(
        2026, 3, 8, 7
    )


def test_latest_due_is_cheap_over_a_long_outage() -> None:
    calls = 0
    cron = Cron("* * * * * *")

    class Counting(Schedule):
        key = "counting"

        def next_after(self, dt: datetime) -> datetime:
            nonlocal calls
            calls += 1
            return cron.next_after(dt)

    now = utc(2026, 1, 1, 0, 0, 0) + timedelta(microseconds=500)
    assert latest_due(Counting(), utc(2025, 1, 1), now) == utc(2026, 1, 1)
    assert calls < 60


def test_latest_due_matches_the_last_of_ticks_between() -> None:
    for schedule in ALL:
        since, now = utc(2026, 10, 30), utc(2026, 11, 2, 7, 7)
        assert latest_due(schedule, since, now) == list(ticks_between(schedule, since, now))[-1]


def test_format_tick_is_zone_free() -> None:
    first = datetime(2026, 11, 1, 1, 30, tzinfo=NY)
    second = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NY)
    assert format_tick(first) == "20261101T053000.000000Z"
    assert format_tick(second) == "20261101T063000.000000Z"
    assert format_tick(first.astimezone(LONDON)) == format_tick(first)
    with pytest.raises(InvalidSchedule):
        format_tick(datetime(2026, 1, 1))


def test_wall_time_accessors() -> None:
    assert Daily(hour=2, minute=30, tz=NY).at == time(2, 30)
    assert Monthly(day=5, hour=1).day == 5
    assert Interval(timedelta(minutes=2)).seconds == 120.0
    assert Cron("0 0 * * *", tz=NY).tz is NY
