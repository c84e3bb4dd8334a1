"""Lifecycle combinators: build a process out of small units of work.

A *unit* is an async callable with no arguments, ``Callable[[], Awaitable[None]]``. Units run until
they return, raise, or are cancelled; cancellation (an anyio cancel scope) is the one way to ask a
unit to stop. The combinators take units and return units, so they nest::

    app_unit = sequence(
        concurrence(migrate_db, warm_cache),          # both must succeed first
        concurrence(
            with_shutdown(server.serve, server.shutdown, grace=20),
            repeat(Interval(60), report_metrics),
        ),
    )
    run_main(app_unit)  # SIGINT/SIGTERM: graceful stop; a second signal: stop now

Error reporting: :func:`concurrence` (and so :func:`main`) raises an :class:`ExceptionGroup`
holding every failure, like an anyio task group. The other combinators (:func:`sequence`,
:func:`repeat`, :func:`with_shutdown`, :func:`with_signal_notify`) are transparent: the error of
the unit that failed comes out as it is, not wrapped in a group.

Built on anyio task groups and cancel scopes, run on the asyncio backend.
"""

from __future__ import annotations

import functools
import logging
import math
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import anyio
from anyio.abc import TaskStatus

from asynctask.schedule import Interval, Schedule, latest_due

__all__ = [
    "DEFAULT_SIGNALS",
    "Unit",
    "UnitFn",
    "backend_options",
    "concurrence",
    "forced_stop",
    "main",
    "repeat",
    "run_main",
    "sequence",
    "unwrap_single",
    "watch_signals",
    "with_shutdown",
    "with_signal_notify",
]

log = logging.getLogger("asynctask.lifecycle")

Unit: TypeAlias = Callable[[], Awaitable[None]]
"""A unit of work: an async callable with no arguments that runs until done or cancelled."""

UnitFn: TypeAlias = Callable[[], Coroutine[Any, Any, None]]
"""What the combinators return: a unit that is also a coroutine function, so it can be passed
straight to ``TaskGroup.start_soon`` (which, typed strictly, accepts nothing less)."""

DEFAULT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)

# Set by with_signal_notify when a second signal arrives: every with_shutdown below it ends its
# grace period at once. A ContextVar because the two are composed independently and may be far
# apart in the tree; child tasks inherit it when they are spawned.
_FORCED: ContextVar[anyio.Event | None] = ContextVar("asynctask_lifecycle_forced", default=None)


def sequence(*units: Unit) -> UnitFn:
    """Run ``units`` one after the other; the first failure stops the sequence and is raised."""

    async def run_sequence() -> None:
        for unit in units:
            await unit()

    return _named(run_sequence, "sequence", units)


def concurrence(*units: Unit) -> UnitFn:
    """Run ``units`` together and return when all have returned.

    If one fails, the others are cancelled, and an :class:`ExceptionGroup` with every failure is
    raised (always a group, even for one failure, so ``except*`` works the same in every case).
    """

    async def run_concurrence() -> None:
        async with anyio.create_task_group() as tg:
            for unit in units:
                tg.start_soon(_run, unit)

    return _named(run_concurrence, "concurrence", units)


def repeat(
    every: Schedule | float | timedelta,
    fn: Unit,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> UnitFn:
    """Run ``fn`` at every tick of ``every`` until cancelled.

    ``every`` is a :class:`~asynctask.schedule.Schedule` or a number of seconds (an epoch-aligned
    :class:`~asynctask.schedule.Interval`). The first run is at the first tick after the start, not
    at the start: to run at once too, use ``sequence(fn, repeat(every, fn))``. If ``fn`` overruns
    one or more ticks, the latest missed tick runs once, straight away, and the rest are dropped
    (no burst of catch-up runs). An exception from ``fn`` ends the repeat and is raised.

    ``clock`` (POSIX seconds, like :class:`asynctask.testing.FakeClock`) and ``sleep`` are
    injectable so tests run on a fake clock instead of sleeping.
    """
    schedule = every if isinstance(every, Schedule) else Interval(every)

    async def run_repeat() -> None:
        tick = schedule.next_after(_now(clock))
        while True:
            await _sleep_until(tick, clock, sleep)
            await fn()
            tick = _following(schedule, tick, _now(clock))

    return _named(run_repeat, "repeat", (fn,), extra=str(schedule))


def with_shutdown(serve: Unit, shutdown: Unit, *, grace: float = 10.0) -> UnitFn:
    """Make one unit of a start/stop pair, like a server's ``serve()`` and ``shutdown()``.

    ``serve`` runs until it returns by itself (then the unit returns, and ``shutdown`` is not
    called) or the unit is cancelled. On cancellation, ``shutdown`` is called (shielded, so it can
    await), and ``serve`` gets ``grace`` seconds in all, counted from the cancellation, to return;
    then it is cancelled. The deadline also bounds ``shutdown`` itself, so a hung shutdown cannot
    hang the process. Use ``math.inf`` to wait without limit. A second signal seen by an enclosing
    :func:`with_signal_notify` ends the grace period at once.

    An exception from ``shutdown`` is raised, after ``serve`` has been cancelled.
    """
    if math.isnan(grace) or grace < 0:
        raise ValueError(f"grace must be zero or more seconds, got {grace!r}")

    async def run_with_shutdown() -> None:
        stopped = anyio.Event()
        # Outer cancellation must not reach serve directly: it is asked to stop with shutdown()
        # and is only cancelled, through this scope, once the grace period is over.
        serve_scope = anyio.CancelScope(shield=True)
        with unwrap_single():
            async with anyio.create_task_group() as tg:
                tg.start_soon(_serve_shielded, serve, serve_scope, stopped)
                try:
                    await stopped.wait()
                except anyio.get_cancelled_exc_class():
                    # Cancelled with serve still running: the enclosing scope wants us to stop.
                    # (If serve already ended, this is our task group reacting to serve's error.)
                    if not stopped.is_set():
                        try:
                            await _stop_gracefully(shutdown, stopped, grace)
                        finally:
                            serve_scope.cancel()
                    raise

    return _named(run_with_shutdown, "with_shutdown", (serve, shutdown))


def with_signal_notify(unit: Unit, signals: tuple[signal.Signals, ...] = DEFAULT_SIGNALS) -> UnitFn:
    """Run ``unit``; cancel it when one of ``signals`` arrives, and return normally once it stops.

    The first signal cancels the unit: a graceful stop, in which every :func:`with_shutdown`
    inside gets its grace period. A second signal forces the stop: grace periods end at once and
    the servers are cancelled (their ``finally`` blocks still run). Later signals are ignored;
    a unit that ignores cancellation needs SIGKILL.

    Use it once, at the top of the process (:func:`main` does): asyncio keeps one handler per
    signal, and restores the default handler, not the previous one, when the receiver closes.
    """

    async def run_with_signal_notify() -> None:
        if not signals:  # nothing to listen for; open_signal_receiver() would still need the main thread
            await unit()
            return
        forced = anyio.Event()
        reset = _FORCED.set(forced)
        unit_scope = anyio.CancelScope()

        def escalate(_signal: signal.Signals, count: int) -> None:
            if count == 1:
                unit_scope.cancel()
            else:
                forced.set()

        try:
            with unwrap_single():
                async with anyio.create_task_group() as tg:
                    # The receiver is installed before the unit starts, so a signal can never find
                    # the process without a handler while the unit runs.
                    await tg.start(watch_signals, escalate, signals)
                    try:
                        with unit_scope:
                            await unit()
                    finally:
                        tg.cancel_scope.cancel()  # the unit is over, for any reason: stop listening
        finally:
            _FORCED.reset(reset)

    return _named(run_with_signal_notify, "with_signal_notify", (unit,))


async def main(*units: Unit, signals: tuple[signal.Signals, ...] = DEFAULT_SIGNALS) -> None:
    """Run ``units`` together until all return, a signal arrives, or one fails.

    ``with_signal_notify(concurrence(*units), signals)``, run: failures come out as an
    :class:`ExceptionGroup`, and a signal makes it return normally after a graceful stop.
    """
    await with_signal_notify(concurrence(*units), signals)()


async def watch_signals(
    on_signal: Callable[[signal.Signals, int], None],
    signals: tuple[signal.Signals, ...] = DEFAULT_SIGNALS,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``on_signal(sig, n)`` for the ``n``-th signal received, until cancelled.

    The one signal handling of asynctask (:func:`with_signal_notify` and a worker run with
    ``handle_signals=True`` both use it): the first signal is logged as a graceful stop, the
    second as a stop at once. ``await tg.start(watch_signals, ...)`` returns once the handler is
    installed.
    """
    with anyio.open_signal_receiver(*signals) as received:
        task_status.started()
        count = 0
        async for signum in received:
            count += 1
            name = signal.Signals(signum).name
            if count == 1:
                log.info("%s: shutting down gracefully", name, extra={"action": "signal_stop"})
            elif count == 2:
                log.warning("%s again: stopping now", name, extra={"action": "signal_stop_now"})
            on_signal(signal.Signals(signum), count)


def forced_stop() -> anyio.Event | None:
    """The event an enclosing :func:`with_signal_notify` sets on its second signal (``None`` outside
    one): units that manage their own graceful stop watch it to stop at once."""
    return _FORCED.get()


def backend_options(use_uvloop: bool | None = None) -> dict[str, Any]:
    """``anyio.run`` options for the asyncio backend: uvloop when installed (``None``), or as told.

    The one uvloop detection: :func:`run_main` and the CLI both use it.
    """
    if use_uvloop is None:
        use_uvloop = _uvloop_installed()
    return {"use_uvloop": use_uvloop}


def run_main(
    *units: Unit, signals: tuple[signal.Signals, ...] = DEFAULT_SIGNALS, use_uvloop: bool | None = None
) -> None:
    """Blocking entry point for a process: :func:`main` under :func:`anyio.run` on asyncio.

    uvloop is used when it is installed (``use_uvloop=None``); pass ``False`` to opt out, or
    ``True`` to insist on it.
    """
    anyio.run(
        functools.partial(main, *units, signals=signals),
        backend="asyncio",
        backend_options=backend_options(use_uvloop),
    )


# --- helpers -----------------------------------------------------------------------------------


async def _run(unit: Unit) -> None:
    # start_soon wants a coroutine function; a unit only promises to return an awaitable.
    await unit()


def _now(clock: Callable[[], float]) -> datetime:
    return datetime.fromtimestamp(clock(), UTC)


async def _sleep_until(
    tick: datetime, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
) -> None:
    # Always sleep at least once (sleep(0) when already due) so that a repeat whose fn never
    # awaits still lets other tasks run and can be cancelled. Loop because the wall clock and
    # the sleep's monotonic clock may disagree by a little; never run before the tick.
    delay = max(tick.timestamp() - clock(), 0.0)
    while True:
        await sleep(delay)
        delay = tick.timestamp() - clock()
        if delay <= 0:
            return


def _following(schedule: Schedule, tick: datetime, now: datetime) -> datetime:
    """The tick to run after ``tick``: the latest missed one if ``fn`` overran, else the next."""
    missed = latest_due(schedule, tick, now)
    return missed if missed is not None else schedule.next_after(tick)


async def _serve_shielded(serve: Unit, scope: anyio.CancelScope, stopped: anyio.Event) -> None:
    try:
        with scope:
            await serve()
    finally:
        stopped.set()


async def _stop_gracefully(shutdown: Unit, stopped: anyio.Event, grace: float) -> None:
    """Ask serve to stop and wait for it, for at most ``grace`` seconds or until a forced stop."""
    forced = _FORCED.get()
    with anyio.CancelScope(shield=True), anyio.move_on_after(grace) as deadline:
        async with anyio.create_task_group() as tg:
            if forced is not None:
                tg.start_soon(_cancel_when_set, forced, deadline)
            await shutdown()
            await stopped.wait()
            tg.cancel_scope.cancel()  # stop watching for a forced stop


async def _cancel_when_set(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


@contextmanager
def unwrap_single() -> Iterator[None]:
    """Let the one exception of a task group out of its ExceptionGroup (several stay grouped).

    For wrappers that run one unit of work plus helpers in a task group: their caller should see
    the unit's error as it is.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        single = group.exceptions[0]
    else:
        return
    # Raised outside the except block so the group does not become its __context__.
    raise single


def _uvloop_installed() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _named(fn: UnitFn, kind: str, units: tuple[Unit, ...], extra: str = "") -> UnitFn:
    # A readable name in tracebacks and reprs: "sequence(migrate, serve)".
    parts = [extra] if extra else []
    parts += [getattr(u, "__qualname__", None) or repr(u) for u in units]
    name = f"{kind}({', '.join(parts)})"
    fn.__name__ = fn.__qualname__ = name
    return fn
