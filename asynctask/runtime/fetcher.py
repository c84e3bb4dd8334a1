"""The fetcher: one per queue, claims batches sized to the free slots, sleeps on the broker's wake-up.

Flow control (:mod:`asynctask.flow`): the fetcher passes the registry's task limits with each
claim. A claim that the limits held back (a :class:`~asynctask.flow.Claimed` with ``held_back``)
is not retried at once, which would spin on jobs that are ready but not claimable: the fetcher
waits for the first of a broker wake-up (a publish, a resume, a settings change), one of its own
worker's outcomes being written (a concurrency slot may be free), the time the broker said a
rate limit has tokens again, or ``poll_interval`` (another worker may have freed a slot).

On a broker with ``Capabilities.claim_on_wake``, a claim that found too few jobs is followed by
:meth:`~asynctask.brokers.base.ClaimsOnWake.wait_and_claim` instead of a wait and a claim: the
broker claims as the wake-up arrives. The slots it may fill stay reserved while it waits, so a
worker of several queues reserves at most ``batch_size`` / its number of queues per waiting
fetcher (at least one), and its waits together no more than its ``prefetch``: idle queues never
hold the slots a busy queue's jobs would run in (a fetcher finding that budget spent waits the
plain way). A wait that fills its slots is followed by a full claim at once. A stop does not
cancel it (a claim may be under way in the broker): it sets the event the broker watches, and
shortens the call's deadline to ``timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import anyio

from asynctask.brokers.base import Broker, ClaimsOnWake, Clock
from asynctask.flow import Claimed, TaskLimits
from asynctask.models import Job, Lease
from asynctask.runtime.control import Control, Slots, WorkerStats
from asynctask.runtime.handoff import Sender

__all__ = ["Fetcher"]

log = logging.getLogger("asynctask.worker")

_MIN_BACKOFF = 0.05
_MAX_BACKOFF = 5.0


class Fetcher:
    """Claims jobs of one queue into the executors' stream until the worker stops."""

    def __init__(
        self,
        broker: Broker,
        queue: str,
        *,
        slots: Slots,
        control: Control,
        stats: WorkerStats,
        worker_id: str,
        batch_size: int,
        lease: float,
        poll_interval: float,
        timeout: float,
        limits: TaskLimits | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.broker = broker
        self.queue = queue
        self.slots = slots
        self.control = control
        self.stats = stats
        self.worker_id = worker_id
        self.batch_size = batch_size
        self.lease = lease
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.limits = limits or None
        self.clock = clock
        self.claim_on_wake = broker.capabilities.claim_on_wake
        self._stop: anyio.Event | None = None
        self._wait_scope: anyio.CancelScope | None = None
        #: Claims sent and answered so far, and whether the last answer had fewer jobs than asked.
        self.claims_sent = 0
        self.claims = 0
        self.dry = False

    async def run(self, send: Sender[Job]) -> None:
        backoff = _MIN_BACKOFF
        control, slots, queue = self.control, self.slots, self.queue
        if self.claim_on_wake:
            self._stop = anyio.Event()
            control.on_stop(self._stopping)
        wait_claim = False  # the next claim waits for a wake-up first (claim_on_wake)
        wait_batch = max(1, self.batch_size // len(slots.queue_free))
        with send:
            while not control.stopping:
                waiting = 0
                if wait_claim:
                    wait_claim = False
                    n = waiting = slots.reserve_wait(queue, wait_batch)
                    if not waiting:  # other queues' waits hold the slots waits may: a plain wait
                        await self._wait_for_jobs(
                            partial(self.broker.wait_for_jobs, queue, self.poll_interval)
                        )
                        continue
                else:
                    n = slots.reserve(queue, self.batch_size)
                    if n == 0:
                        await control.unless_stopping(partial(slots.wait, queue))
                        continue
                self.claims_sent += 1
                try:
                    # A claim in flight is not cut short by stop(): it may already hold jobs.
                    if waiting:
                        try:
                            jobs = await self._wait_and_claim(n)
                        finally:
                            slots.end_wait(n)
                    else:
                        with anyio.fail_after(self.timeout):
                            jobs = await self._claim(n)
                except Exception as exc:
                    slots.release(queue, n)
                    log.warning(
                        "claiming from %s failed (%s); retrying in %.2fs",
                        queue,
                        _describe(exc, self._wait_deadline if waiting else self.timeout),
                        backoff,
                        extra={"action": "claim_error"},
                    )
                    await control.unless_stopping(partial(anyio.sleep, backoff))
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    continue
                backoff = _MIN_BACKOFF
                self.claims += 1
                # Jobs a rate limit holds back are claimable once their tokens are due: not dry.
                self.dry = len(jobs) < n and not (isinstance(jobs, Claimed) and jobs.retry_at is not None)
                slots.release(queue, n - len(jobs))
                self.stats.claimed += len(jobs)
                held = slots.held
                for job in jobs:
                    held[job.id] = Lease(job.id, job.token)
                    send.put(job)
                if len(jobs) < n:
                    if jobs:
                        # Let the executors start these jobs before the wait's own work (a
                        # look for ready jobs, for one): they were woken first, so one turn of
                        # the loop runs them up to their handlers' first awaits.
                        await asyncio.sleep(0)
                    if isinstance(jobs, Claimed) and jobs.held_back:
                        await self._wait_for_jobs(self._held_back(jobs.retry_at))
                    elif self.claim_on_wake:
                        wait_claim = True
                    else:
                        await self._wait_for_jobs(
                            partial(self.broker.wait_for_jobs, queue, self.poll_interval)
                        )

    @property
    def _wait_deadline(self) -> float:
        """How long a wait for jobs (or a wait-and-claim) may take: its own time, then a reply."""
        return self.poll_interval + self.timeout

    async def _claim(self, n: int) -> list[Job]:
        if self.limits is None:
            # Brokers see the limits argument only when there are limits to pass.
            return await self.broker.claim(self.queue, n, lease=self.lease, worker=self.worker_id)
        return await self.broker.claim(
            self.queue, n, lease=self.lease, worker=self.worker_id, limits=self.limits
        )

    async def _wait_and_claim(self, n: int) -> list[Job]:
        broker = cast(ClaimsOnWake, self.broker)
        options: dict[str, Any] = {"lease": self.lease, "worker": self.worker_id, "stop": self._stop}
        if self.limits is not None:
            options["limits"] = self.limits
        with anyio.fail_after(self._wait_deadline) as scope:
            self._wait_scope = scope
            try:
                return await broker.wait_and_claim(self.queue, self.poll_interval, n, **options)
            finally:
                self._wait_scope = None

    def _stopping(self) -> None:
        """stop(): end a wait_and_claim by its event, and within ``timeout`` at most."""
        if self._stop is not None:
            self._stop.set()
        scope = self._wait_scope
        if scope is not None:
            scope.deadline = min(scope.deadline, anyio.current_time() + self.timeout)

    def _held_back(self, retry_at: float | None) -> Callable[[], Awaitable[None]]:
        """The wait after a claim that flow control held back; see the module docstring."""
        timeout = self.poll_interval
        if retry_at is not None:
            timeout = min(timeout, max(retry_at - self.clock(), 0.0))

        async def wait() -> None:
            async with anyio.create_task_group() as tg:

                async def first(fn: Callable[[], Awaitable[None]]) -> None:
                    await fn()
                    tg.cancel_scope.cancel()

                tg.start_soon(first, partial(self.broker.wait_for_jobs, self.queue, timeout, held=True))
                tg.start_soon(first, self.slots.settled)

        return wait

    async def _wait_for_jobs(self, wait: Callable[[], Awaitable[None]]) -> None:
        try:
            with anyio.fail_after(self._wait_deadline):
                await self.control.unless_stopping(wait)
        except Exception as exc:
            # The next claim will tell whether the broker is really gone.
            log.warning(
                "waiting for jobs on %s failed (%s)",
                self.queue,
                _describe(exc, self._wait_deadline),
                extra={"action": "wait_error"},
            )
            await self.control.unless_stopping(partial(anyio.sleep, min(self.poll_interval, 1.0)))


def _describe(exc: Exception, deadline: float) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer within {deadline:g}s"
    return str(exc) or type(exc).__name__
