from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import anyio
import anyio.lowlevel
import pytest

from asynctask.lifecycle import (
    Unit,
    UnitFn,
    concurrence,
    main,
    repeat,
    run_main,
    sequence,
    with_shutdown,
    with_signal_notify,
)
from asynctask.schedule import Daily, Interval
from asynctask.testing import FakeClock

pytestmark = pytest.mark.anyio

Cancelled = anyio.get_cancelled_exc_class


def recorder(log: list[str], name: str) -> Unit:
    async def unit() -> None:
        await anyio.lowlevel.checkpoint()
        log.append(name)

    return unit


def failing(exc: BaseException) -> Unit:
    async def unit() -> None:
        await anyio.lowlevel.checkpoint()
        raise exc

    return unit


# --- sequence ----------------------------------------------------------------------------------


async def test_sequence_runs_units_in_order() -> None:
    log: list[str] = []
    await sequence(recorder(log, "a"), recorder(log, "b"), recorder(log, "c"))()
    assert log == ["a", "b", "c"]


async def test_sequence_stops_at_the_first_failure_and_raises_it_unwrapped() -> None:
    log: list[str] = []
    unit = sequence(recorder(log, "a"), failing(ValueError("boom")), recorder(log, "never"))
    with pytest.raises(ValueError, match="boom"):
        await unit()
    assert log == ["a"]


async def test_empty_combinators_return_at_once() -> None:
    await sequence()()
    await concurrence()()


def test_combinators_have_readable_names() -> None:
    async def migrate() -> None: ...

    async def serve() -> None: ...

    assert sequence(migrate, serve).__name__ == (
        "sequence(test_combinators_have_readable_names.<locals>.migrate, "
        "test_combinators_have_readable_names.<locals>.serve)"
    )
    assert repeat(Interval(60), migrate).__name__.startswith("repeat(interval:60s, ")


# --- concurrence -------------------------------------------------------------------------------


async def test_concurrence_runs_units_together() -> None:
    # Each waits for the other: run one after the other, they would deadlock.
    a_started, b_started = anyio.Event(), anyio.Event()

    async def a() -> None:
        a_started.set()
        await b_started.wait()

    async def b() -> None:
        b_started.set()
        await a_started.wait()

    with anyio.fail_after(5):
        await concurrence(a, b)()


async def test_concurrence_cancels_siblings_when_one_fails() -> None:
    sibling_running = anyio.Event()
    log: list[str] = []

    async def sibling() -> None:
        sibling_running.set()
        try:
            await anyio.sleep_forever()
        except Cancelled():
            log.append("sibling cancelled")
            raise

    async def fails() -> None:
        await sibling_running.wait()
        raise ValueError("boom")

    with anyio.fail_after(5), pytest.raises(ExceptionGroup) as caught:
        await concurrence(sibling, fails)()
    assert log == ["sibling cancelled"]
    assert [type(e) for e in caught.value.exceptions] == [ValueError]


async def test_concurrence_reports_every_failure() -> None:
    second_running = anyio.Event()

    async def first() -> None:
        await second_running.wait()
        raise ValueError("first")

    async def second() -> None:
        second_running.set()
        try:
            await anyio.sleep_forever()
        finally:
            raise KeyError("second, while being cancelled")

    with anyio.fail_after(5), pytest.raises(ExceptionGroup) as caught:
        await concurrence(first, second)()
    assert sorted(type(e).__name__ for e in caught.value.exceptions) == ["KeyError", "ValueError"]


async def test_sequence_of_concurrences_stops_before_the_next_group() -> None:
    log: list[str] = []
    unit = sequence(
        concurrence(recorder(log, "migration 1"), failing(RuntimeError("migration 2 failed"))),
        concurrence(recorder(log, "needs both migrations")),
    )
    with pytest.raises(ExceptionGroup) as caught:
        await unit()
    assert caught.group_contains(RuntimeError, match="migration 2 failed")
    assert "needs both migrations" not in log


# --- repeat ------------------------------------------------------------------------------------


class FakeTime:
    """A FakeClock plus a sleep that moves it: repeat runs without real waiting."""

    def __init__(self, start: float) -> None:
        self.clock = FakeClock(start=start)
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)
        await anyio.lowlevel.checkpoint()


T0 = 1_800_000_000.0  # a multiple of 10 s since the epoch


async def run_repeat_until(count: int, every: object, ft: FakeTime, work: float = 0.0) -> list[float]:
    """Run a repeat until its fn has run ``count`` times; return the clock at each run."""
    runs: list[float] = []
    with anyio.fail_after(5), anyio.CancelScope() as scope:

        async def fn() -> None:
            runs.append(ft.clock())
            ft.clock.advance(work if len(runs) == 1 else 0.0)
            if len(runs) == count:
                scope.cancel()

        await repeat(every, fn, clock=ft.clock, sleep=ft.sleep)()  # type: ignore[arg-type]
    return runs


async def test_repeat_runs_at_each_epoch_aligned_tick() -> None:
    ft = FakeTime(T0 + 3.5)
    assert await run_repeat_until(3, 10, ft) == [T0 + 10, T0 + 20, T0 + 30]
    assert ft.slept[:3] == [6.5, 10.0, 10.0]


async def test_repeat_accepts_a_schedule_or_a_timedelta() -> None:
    assert await run_repeat_until(2, Interval(5), FakeTime(T0)) == [T0 + 5, T0 + 10]
    assert await run_repeat_until(2, timedelta(seconds=5), FakeTime(T0)) == [T0 + 5, T0 + 10]


async def test_repeat_runs_the_latest_missed_tick_once_after_an_overrun() -> None:
    # The first run takes 35 s: ticks at +20, +30 and +40 are missed; only +40 runs, at once.
    ft = FakeTime(T0 + 1)
    assert await run_repeat_until(3, 10, ft, work=35.0) == [T0 + 10, T0 + 45, T0 + 50]
    assert ft.slept[:3] == [9.0, 0.0, 5.0]


async def test_repeat_with_a_daily_schedule_across_spring_forward() -> None:
    ny = ZoneInfo("America/New_York")
    ft = FakeTime(datetime(2026, 3, 7, 12, tzinfo=ny).timestamp())
    runs = await run_repeat_until(2, Daily(hour=2, minute=30, tz=ny), ft)
    assert [datetime.fromtimestamp(r, UTC) for r in runs] == [
        datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # 03:00 EDT: 02:30 does not exist that day
        datetime(2026, 3, 9, 6, 30, tzinfo=UTC),  # 02:30 EDT
    ]


async def test_repeat_keeps_sleeping_if_woken_early() -> None:
    # A sleep that returns early (clock skew) must not make repeat run before the tick.
    ft = FakeTime(T0)

    async def short_sleep(seconds: float) -> None:
        await ft.sleep(seconds - 0.5 if seconds > 0.5 else seconds)

    runs: list[float] = []
    with anyio.fail_after(5), anyio.CancelScope() as scope:

        async def fn() -> None:
            runs.append(ft.clock())
            scope.cancel()

        await repeat(8, fn, clock=ft.clock, sleep=short_sleep)()
    assert runs == [T0 + 8]
    assert ft.slept[:2] == [7.5, 0.5]


async def test_repeat_stops_on_an_error_and_raises_it() -> None:
    ft = FakeTime(T0)
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ValueError("second run failed")

    with anyio.fail_after(5), pytest.raises(ValueError, match="second run failed"):
        await repeat(10, fn, clock=ft.clock, sleep=ft.sleep)()
    assert calls == 2


# --- with_shutdown -----------------------------------------------------------------------------


async def cancel_when(event: anyio.Event, unit: UnitFn) -> None:
    """Run ``unit`` and cancel it once ``event`` is set."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(unit)
        await event.wait()
        tg.cancel_scope.cancel()


async def test_with_shutdown_returns_when_serve_returns_without_calling_shutdown() -> None:
    log: list[str] = []
    with anyio.fail_after(5):
        await with_shutdown(recorder(log, "served"), recorder(log, "shutdown"))()
    assert log == ["served"]


async def test_with_shutdown_asks_serve_to_stop_and_lets_it_finish() -> None:
    serving, stop, stopped = anyio.Event(), anyio.Event(), anyio.Event()
    log: list[str] = []

    async def serve() -> None:
        serving.set()
        await stop.wait()
        await anyio.sleep(0.001)  # models closing connections; serve is not cancelled meanwhile
        log.append("serve returned")
        stopped.set()

    async def shutdown() -> None:
        log.append("shutdown called")
        stop.set()
        await stopped.wait()  # only possible because shutdown runs shielded
        log.append("shutdown returned")

    with anyio.fail_after(5):
        await cancel_when(serving, with_shutdown(serve, shutdown, grace=5))
    assert log == ["shutdown called", "serve returned", "shutdown returned"]


async def test_with_shutdown_cancels_serve_when_the_grace_period_ends() -> None:
    serving = anyio.Event()
    log: list[str] = []
    times: dict[str, float] = {}

    async def serve() -> None:
        serving.set()
        try:
            await anyio.sleep_forever()  # ignores shutdown
        except Cancelled():
            times["cancelled"] = anyio.current_time()
            log.append("serve cancelled")
            raise

    async def shutdown() -> None:
        times["shutdown"] = anyio.current_time()
        log.append("shutdown called")

    with anyio.fail_after(5):
        await cancel_when(serving, with_shutdown(serve, shutdown, grace=0.05))
    assert log == ["shutdown called", "serve cancelled"]
    assert times["cancelled"] - times["shutdown"] >= 0.04


async def test_with_shutdown_grace_also_bounds_a_hung_shutdown() -> None:
    serving = anyio.Event()
    log: list[str] = []

    async def serve() -> None:
        serving.set()
        try:
            await anyio.sleep_forever()
        finally:
            log.append("serve stopped")

    async def shutdown() -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(5):
        await cancel_when(serving, with_shutdown(serve, shutdown, grace=0.01))
    assert log == ["serve stopped"]


async def test_with_shutdown_raises_serve_errors_unwrapped() -> None:
    log: list[str] = []
    with pytest.raises(ValueError, match="bind failed"):
        await with_shutdown(failing(ValueError("bind failed")), recorder(log, "shutdown"))()
    assert log == []


async def test_with_shutdown_raises_a_shutdown_error_after_cancelling_serve() -> None:
    serving = anyio.Event()
    log: list[str] = []

    async def serve() -> None:
        serving.set()
        try:
            await anyio.sleep_forever()
        finally:
            log.append("serve stopped")

    with anyio.fail_after(5), pytest.raises(ExceptionGroup) as caught:
        await cancel_when(serving, with_shutdown(serve, failing(RuntimeError("shutdown failed")), grace=30))
    assert caught.group_contains(RuntimeError, match="shutdown failed")
    assert log == ["serve stopped"]


@pytest.mark.parametrize("grace", [-1.0, float("nan")])
def test_with_shutdown_rejects_a_bad_grace(grace: float) -> None:
    with pytest.raises(ValueError, match="grace"):
        with_shutdown(recorder([], "s"), recorder([], "t"), grace=grace)


# --- with_signal_notify ------------------------------------------------------------------------


@pytest.fixture
def no_stray_signals() -> Iterator[list[int]]:
    """Catch a signal that arrives with no receiver installed, instead of letting it kill pytest."""
    stray: list[int] = []
    watched = (signal.SIGTERM, signal.SIGUSR1)
    previous = {s: signal.signal(s, lambda signum, frame: stray.append(signum)) for s in watched}
    yield stray
    for s, handler in previous.items():
        signal.signal(s, handler)
    assert stray == []


def kill_self(signum: signal.Signals = signal.SIGTERM) -> None:
    os.kill(os.getpid(), signum)


async def test_a_signal_cancels_the_unit_and_returns_normally(no_stray_signals: list[int]) -> None:
    running = anyio.Event()
    log: list[str] = []

    async def unit() -> None:
        running.set()  # with_signal_notify installs its receiver before starting the unit
        try:
            await anyio.sleep_forever()
        except Cancelled():
            log.append("cancelled")
            raise

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(with_signal_notify(unit))
            await running.wait()
            kill_self()
    assert log == ["cancelled"]


async def test_signals_can_be_chosen(no_stray_signals: list[int]) -> None:
    running = anyio.Event()

    async def unit() -> None:
        running.set()
        await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(with_signal_notify(unit, signals=(signal.SIGUSR1,)))
            await running.wait()
            kill_self(signal.SIGUSR1)


async def test_first_signal_is_graceful_and_second_signal_forces(no_stray_signals: list[int]) -> None:
    serving, asked_to_stop = anyio.Event(), anyio.Event()
    log: list[str] = []

    async def serve() -> None:
        serving.set()
        try:
            await anyio.sleep_forever()  # a slow server that does not stop when asked
        except Cancelled():
            log.append("serve cancelled")
            raise

    async def shutdown() -> None:
        log.append("shutdown called")
        asked_to_stop.set()

    # fail_after cannot cut a shielded grace period short, so keep it short enough for a failing
    # test to end, and check the forced stop came well before it.
    grace = 10.0
    unit = with_signal_notify(with_shutdown(serve, shutdown, grace=grace))
    async with anyio.create_task_group() as tg:
        tg.start_soon(unit)
        await serving.wait()
        kill_self()
        await asked_to_stop.wait()  # the graceful stop has begun; serve still runs
        assert log == ["shutdown called"]
        forced_at = anyio.current_time()
        kill_self()
    assert log == ["shutdown called", "serve cancelled"]
    assert anyio.current_time() - forced_at < grace / 2


async def test_signal_notify_returns_when_the_unit_returns(no_stray_signals: list[int]) -> None:
    log: list[str] = []
    with anyio.fail_after(5):
        await with_signal_notify(recorder(log, "done"))()
    assert log == ["done"]


async def test_signal_notify_raises_unit_errors_unwrapped(no_stray_signals: list[int]) -> None:
    with pytest.raises(ValueError, match="boom"):
        await with_signal_notify(failing(ValueError("boom")))()


async def test_signal_notify_without_signals_just_runs_the_unit() -> None:
    log: list[str] = []
    await with_signal_notify(recorder(log, "ran"), signals=())()
    assert log == ["ran"]


# --- main --------------------------------------------------------------------------------------


async def test_main_runs_units_together(no_stray_signals: list[int]) -> None:
    log: list[str] = []
    with anyio.fail_after(5):
        await main(recorder(log, "a"), recorder(log, "b"))
    assert sorted(log) == ["a", "b"]


async def test_main_reports_failures_as_a_group(no_stray_signals: list[int]) -> None:
    with pytest.raises(ExceptionGroup) as caught:
        await main(failing(ValueError("boom")))
    assert caught.group_contains(ValueError, match="boom")


@pytest.mark.parametrize("use_uvloop", [None, False])
def test_run_main_runs_on_uvloop_when_installed(use_uvloop: bool | None) -> None:
    pytest.importorskip("uvloop")
    loops: list[str] = []

    async def unit() -> None:
        loops.append(type(asyncio.get_running_loop()).__module__)

    run_main(unit, use_uvloop=use_uvloop)
    assert loops[0].startswith("uvloop") is (use_uvloop is None)
