"""The worker's broker as its observers see it: every call timed, claims and completions told.

A worker with observers (:mod:`asynctask.events`) talks to its broker through
:func:`instrumented`; one without talks to the broker itself, so an unobserved worker pays
nothing. The fetcher, completer, heartbeat, maintainer and scheduler are unchanged either way.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, cast

import anyio

from asynctask.brokers.base import Broker
from asynctask.events import Events
from asynctask.models import Job, NewJob, Outcome

__all__ = ["instrumented"]


def instrumented(broker: Broker, events: Events) -> Broker:
    """``broker``, reporting each call to ``events`` (:meth:`~asynctask.events.Observer.broker_call`)."""
    return cast(Broker, _Instrumented(broker, events))


class _Instrumented:
    """Forwards everything to the broker; coroutine methods are timed (and cached once wrapped).

    ``claim`` and ``complete``, once or more per job, are written out without an extra coroutine
    in between; the other calls go through :meth:`_timed`.
    """

    def __init__(self, broker: Broker, events: Events) -> None:
        self._broker = broker
        self._events = events

    def __repr__(self) -> str:
        return f"<instrumented {self._broker!r}>"

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._broker, name)
        if name in ("open", "close") or not inspect.iscoroutinefunction(attr):
            return attr
        timed = self._timed(name, attr)
        setattr(self, name, timed)  # found without __getattr__ from now on
        return timed

    def _timed(self, operation: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        events = self._events

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = await call(*args, **kwargs)
            except BaseException as exc:
                _report_failure(events, operation, started, exc)
                raise
            events.broker_call(operation, time.perf_counter() - started, None)
            return result

        return timed

    async def claim(self, queue: str, limit: int, **options: Any) -> list[Job]:
        return await self._claiming("claim", queue, partial(self._broker.claim, queue, limit, **options))

    async def wait_and_claim(self, queue: str, timeout: float, limit: int, **options: Any) -> list[Job]:
        call = partial(self._broker.wait_and_claim, queue, timeout, limit, **options)  # type: ignore[attr-defined]
        return await self._claiming("wait_and_claim", queue, call)

    async def _claiming(
        self, operation: str, queue: str, call: Callable[[], Awaitable[list[Job]]]
    ) -> list[Job]:
        """A claim's call, timed and reported, with the jobs it claimed."""
        events = self._events
        started = time.perf_counter()
        try:
            jobs = await call()
        except BaseException as exc:
            _report_failure(events, operation, started, exc)
            raise
        events.broker_call(operation, time.perf_counter() - started, None)
        if jobs:
            events.jobs_claimed(queue, jobs)
        return jobs

    async def complete(self, outcomes: Sequence[Outcome]) -> list[bool]:
        events = self._events
        started = time.perf_counter()
        try:
            applied = await self._broker.complete(outcomes)
        except BaseException as exc:
            _report_failure(events, "complete", started, exc)
            raise
        events.broker_call("complete", time.perf_counter() - started, None)
        events.outcomes_reported(outcomes, applied)
        # What an applied outcome enqueues with it: subtasks, the next link of a chain.
        spawned = [job for outcome, ok in zip(outcomes, applied, strict=True) if ok for job in outcome.spawn]
        if spawned:
            events.published(spawned, [True] * len(spawned))
        return applied

    async def enqueue(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[bool]:
        events = self._events
        started = time.perf_counter()
        try:
            created = await self._broker.enqueue(jobs, connection=connection)
        except BaseException as exc:
            _report_failure(events, "enqueue", started, exc)
            raise
        events.broker_call("enqueue", time.perf_counter() - started, None)
        events.published(jobs, created)
        return created


def _report_failure(events: Events, operation: str, started: float, exc: BaseException) -> None:
    seconds = time.perf_counter() - started
    if isinstance(exc, Exception):
        events.broker_call(operation, seconds, exc)
    elif anyio.current_time() >= anyio.current_effective_deadline():
        # Cancelled by the caller's deadline: the broker did not answer, an error. (Cancelled
        # because the worker stops: nothing to report.)
        events.broker_call(operation, seconds, TimeoutError(f"no answer within {seconds:.3g}s"))
