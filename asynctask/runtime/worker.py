"""The worker: claims jobs from the broker and runs them, as one anyio task group.

Inside ``Worker.run``:

* a **fetcher** per queue (:mod:`.fetcher`) claims batches sized to the free executor slots, then
  waits for the broker to signal new work (or the poll interval) when the queue runs dry;
* ``concurrency`` **executors** take claimed jobs from a hand-off (:mod:`.handoff`, bounded by
  the worker's slots) and run one :class:`~asynctask.runtime.attempt.Attempt` each;
* a **completer** (:mod:`.completer`) sends outcomes back in batches, from another hand-off;
* a **heartbeat** (:mod:`.heartbeat`) extends the leases of held jobs and learns of cancel
  requests and lost leases;
* a **maintainer** (:mod:`.maintenance`) promotes due delayed jobs, rescues expired leases and
  prunes expired jobs; the periodic **scheduler** (:mod:`.scheduler`) publishes ticks.

Around them: the app's worker **lifespan** (:mod:`.lifespan`) is entered before the first claim
and exited after the drain; ``def`` handlers run in the worker's **thread pool** (:mod:`.threads`);
with ``burst=True`` a watcher (:mod:`.burst`) stops the worker once nothing is left to claim.

**Stopping** is one procedure, however it is asked for: :meth:`Worker.stop`, a signal (with
``handle_signals``), or the worker's task being cancelled from outside (a task group, a
:mod:`asynctask.lifecycle` unit, a server's lifespan). The worker stops claiming; running jobs get
``shutdown_grace`` seconds to finish; then they are cancelled and their leases handed back (the
attempt is not counted); outcomes already computed are delivered. :meth:`Worker.stop_now`, a
second signal, or a second cancellation request from :func:`asynctask.lifecycle.with_signal_notify`
skips the grace period. Every broker call has a deadline (``broker_timeout``), so the whole stop
takes at most ``shutdown_grace + broker_timeout`` plus a second, even while the broker hangs.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Unpack

import anyio
import msgspec
from anyio.abc import TaskStatus

from asynctask.brokers.base import Broker
from asynctask.errors import BrokerUnavailable
from asynctask.events import BROKER_HOOKS, Events
from asynctask.lifecycle import concurrence, forced_stop, unwrap_single, watch_signals
from asynctask.models import Job, Outcome, OutcomeKind, WorkerInfo
from asynctask.names import validate_queue
from asynctask.registry import WorkerHost
from asynctask.runtime.attempt import Attempt
from asynctask.runtime.burst import stop_when_idle
from asynctask.runtime.completer import MAX_BATCH, Completer
from asynctask.runtime.control import Control, Slots, WorkerStats
from asynctask.runtime.fetcher import Fetcher
from asynctask.runtime.handoff import Handoff, Sender
from asynctask.runtime.heartbeat import Heartbeat
from asynctask.runtime.instrumented import instrumented
from asynctask.runtime.lifespan import WorkerLifespan
from asynctask.runtime.logs import bind_worker
from asynctask.runtime.maintenance import Maintainer
from asynctask.runtime.options import DEFAULTS, WorkerOptions
from asynctask.runtime.outcome import Interruption
from asynctask.runtime.presence import Presence
from asynctask.runtime.scheduler import PeriodicScheduler
from asynctask.runtime.threads import Threads

__all__ = ["Worker", "WorkerStats"]

log = logging.getLogger("asynctask.worker")

#: Beyond grace and one broker deadline, what a stop may take (closing the broker, bookkeeping).
_STOP_MARGIN = 1.0
#: The longest a stopping worker tries to take its record out of the registry.
_FAREWELL = 0.5
#: The worker registry needs no record fresher than this, however short the heartbeat.
_PRESENCE_MIN_INTERVAL = 1.0
#: Waiting for the broker at start-up (``wait_for_broker``): the first delay, and the longest.
_OPEN_BACKOFF = (0.1, 2.0)


class Worker:
    """Runs the jobs of an :class:`~asynctask.App` (any :class:`~asynctask.registry.WorkerHost`).

    >>> worker = Worker(app, queues=["default"], concurrency=50)   # doctest: +SKIP
    >>> await worker.run()                                         # until stop() or a signal

    :class:`~asynctask.runtime.options.WorkerOptions` lists the options.
    """

    def __init__(self, app: WorkerHost, **options: Unpack[WorkerOptions]) -> None:
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown worker option(s): {', '.join(sorted(unknown))}")
        opts: WorkerOptions = {**DEFAULTS, **options}
        concurrency, prefetch = opts["concurrency"], opts["prefetch"]
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if prefetch is not None and prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        if opts["lease"] <= 0 or opts["poll_interval"] <= 0 or opts["broker_timeout"] <= 0:
            raise ValueError("lease, poll_interval and broker_timeout must be > 0")
        if opts["wait_for_broker"] < 0:
            raise ValueError("wait_for_broker must be >= 0")
        if opts["shutdown_grace"] < 0:
            raise ValueError("shutdown_grace must be >= 0")
        self.host = app
        self.registry = app.registry
        self.queues = [validate_queue(q) for q in (opts["queues"] or self.registry.queues)]
        self.concurrency = concurrency
        self.prefetch = concurrency // 4 if prefetch is None else prefetch
        self.queue_limits = {validate_queue(q): n for q, n in (opts["queue_concurrency"] or {}).items()}
        self.lease = opts["lease"]
        heartbeat = opts["heartbeat"]
        self.heartbeat = heartbeat if heartbeat is not None else self.lease / 3
        self.poll_interval = opts["poll_interval"]
        self.batch_size = min(opts["batch_size"] or concurrency, MAX_BATCH)
        self.shutdown_grace = opts["shutdown_grace"]
        self.maintenance_interval = opts["maintenance_interval"]
        self.broker_timeout = opts["broker_timeout"]
        self.handle_signals = opts["handle_signals"]
        self.wait_for_broker = opts["wait_for_broker"]
        self.scheduler = opts["scheduler"]
        self.burst = opts["burst"]
        self.id = opts["worker_id"] or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stats = WorkerStats()
        #: Seconds between refreshes of this worker's record in the registry: its heartbeat, at
        #: least a second; the record lives three of them.
        self.presence_interval = max(self.heartbeat, _PRESENCE_MIN_INTERVAL)
        #: This worker's own observers, besides its app's (``app.events``); see :mod:`asynctask.events`.
        self.events = Events()
        self.started_at: float | None = None
        self._control = Control()
        self._broker: Broker = app.broker
        self._events = Events()
        self._observe_attempts = False
        self._slots: Slots | None = None
        self._attempts: dict[str, Attempt] = {}
        self._running = False
        self._changed: anyio.Event | None = None
        self._lifespan = WorkerLifespan(self.registry, timeout=self.broker_timeout)
        self._threads: Threads | None = None

    @property
    def broker(self) -> Broker:
        return self.host.broker

    def __repr__(self) -> str:
        state = "idle" if not self._running else "stopping" if self._control.stopping else "running"
        return (
            f"<Worker {self.id} {state} queues={','.join(self.queues)} "
            f"running={len(self._attempts)}/{self.concurrency}>"
        )

    # --- control ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs get ``shutdown_grace`` seconds to finish."""
        self._control.stop(self.shutdown_grace + self.broker_timeout)

    def stop_now(self) -> None:
        """Stop at once: running jobs are cancelled and their leases handed back."""
        self._control.immediate = True
        self._control.stop(self.broker_timeout)

    @property
    def running(self) -> bool:
        """Whether the worker runs and is not stopping."""
        return self._running and not self._control.stopping

    @property
    def wants_jobs(self) -> bool:
        """Whether the worker is running and has room for another job in one of its queues."""
        slots = self._slots
        return (
            self.running
            and slots is not None
            and slots.free > 0
            and any(free > 0 for free in slots.queue_free.values())
        )

    def info(self) -> WorkerInfo:
        """What this worker records about itself in the broker (see :meth:`App.list_workers`)."""
        return WorkerInfo(
            id=self.id,
            host=_hostname(),
            pid=os.getpid(),
            queues=list(self.queues),
            concurrency=self.concurrency,
            version=_version(),
            started_at=self.started_at if self.started_at is not None else self.registry.clock(),
            running=len(self._attempts),
            counts=msgspec.structs.asdict(self.stats),
        )

    def _signalled(self, _signal: object, count: int) -> None:
        self.stop() if count == 1 else self.stop_now()

    # --- run -------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until stopped; ``await tg.start(worker.run)`` returns once it is claiming.

        Cancelling the task that runs this is a graceful stop (see the module docstring): it
        returns (raising the cancellation) once the worker has drained.
        """
        done = anyio.Event()
        with unwrap_single():
            async with anyio.create_task_group() as guard:
                with anyio.CancelScope(shield=True) as shield:
                    guard.start_soon(self._stop_when_cancelled, shield, done)
                    try:
                        await self._serve(task_status)
                    finally:
                        done.set()
                        guard.cancel_scope.cancel()

    async def _stop_when_cancelled(self, shield: anyio.CancelScope, done: anyio.Event) -> None:
        """Turn a cancellation from outside into :meth:`stop`, then wait (bounded) for the drain."""
        try:
            await anyio.sleep_forever()
        finally:
            if not done.is_set():
                self.stop()
                with anyio.CancelScope(shield=True):
                    with anyio.move_on_after(self.shutdown_grace + self.broker_timeout + _STOP_MARGIN):
                        async with anyio.create_task_group() as tg:
                            forced = forced_stop()
                            if forced is not None:
                                tg.start_soon(_call_when_set, forced, self.stop_now)
                            await done.wait()
                            tg.cancel_scope.cancel()
                shield.cancel()  # the drain overran its bound: cut it short

    async def _serve(self, task_status: TaskStatus[None]) -> None:
        events = self._events = self.registry.events.joined(self.events)
        self._observe_attempts = events.wants("attempt_started", "attempt_finished")
        # Observed, the worker's broker reports every call; unobserved, it is the broker itself.
        observed = events.wants(*BROKER_HOOKS)
        broker = self._broker = instrumented(self.broker, events) if observed else self.broker
        control = self._control
        bind_worker(self.id)
        self.started_at = self.registry.clock()
        # Waits of idle queues hold slots out of the prefetch only, unless there is one queue.
        spare = self.prefetch if len(self.queues) > 1 else None
        slots = self._slots = Slots(
            self.concurrency + self.prefetch, self.queues, self.queue_limits, spare=spare
        )
        self._changed = None
        control.on_stop(slots.poke)
        control.on_stop(self._wake)
        limiters = {
            t.name: anyio.CapacityLimiter(t.concurrency)
            for t in self.registry.tasks.values()
            if t.concurrency is not None
        }
        announced = False
        # Cluster-wide limits travel with each claim; the broker enforces them (asynctask.flow).
        limits = self.registry.task_limits()
        if not await self._open_host(control):
            return  # stopped while it waited for the broker
        self._running = True
        try:
            # Before the first claim; a stop while it starts ends the run here (nothing claimed).
            await self._lifespan.enter(control)
            if control.stopping:
                return
            self._threads = Threads(self.concurrency)
            log.info(
                "worker %s started: broker %s, queues %s, concurrency %d",
                self.id,
                broker.display_url,
                ", ".join(self.queues),
                self.concurrency,
                extra={"action": "worker_started", "worker": self.id},
            )
            # Claimed jobs to the executors, outcomes to the completer (runtime.handoff).
            jobs: Handoff[Job] = Handoff()
            outcomes: Handoff[Outcome] = Handoff()
            completer = Completer(
                broker,
                slots=slots,
                control=control,
                stats=self.stats,
                timeout=self.broker_timeout,
                max_delay=self.heartbeat,
            )
            heartbeat = Heartbeat(
                broker,
                slots=slots,
                attempts=self._attempts,
                lease=self.lease,
                interval=self.heartbeat,
                timeout=self.broker_timeout,
            )
            maintainer = Maintainer(broker, interval=self.maintenance_interval, timeout=self.broker_timeout)
            presence = Presence(
                broker, self.info, interval=self.presence_interval, timeout=self.broker_timeout
            )
            background = [heartbeat.run, maintainer.run, presence.run]
            # Listed from the moment it runs; a slow broker delays the start by a second at most.
            await presence.run_once(deadline=1.0)
            if self.scheduler and self.registry.periodic_tasks:
                background.append(PeriodicScheduler(self.registry, broker, timeout=self.broker_timeout).run)
            # Every hand-off is closed on the way out, even when the worker is cancelled outright.
            with jobs.sender() as jobs_send, outcomes.sender() as outcomes_send:
                async with anyio.create_task_group() as services:
                    # The background services run until the work is done, then are cancelled.
                    services.start_soon(concurrence(*background))
                    if self.handle_signals:
                        await services.start(watch_signals, self._signalled)
                    async with anyio.create_task_group() as core:
                        core.start_soon(completer.run, outcomes)
                        # The completer ends once the executors are done and the outcomes sent.
                        with outcomes_send:
                            async with anyio.create_task_group() as work:
                                fetchers: list[Fetcher] = []
                                # The executors end once every fetcher has ended.
                                with jobs_send:
                                    for queue in self.queues:
                                        fetcher = Fetcher(
                                            broker,
                                            queue,
                                            slots=slots,
                                            control=control,
                                            stats=self.stats,
                                            worker_id=self.id,
                                            batch_size=self.batch_size,
                                            lease=self.lease,
                                            poll_interval=self.poll_interval,
                                            timeout=self.broker_timeout,
                                            limits=limits,
                                            clock=self.registry.clock,
                                        )
                                        work.start_soon(fetcher.run, jobs_send.clone())
                                        fetchers.append(fetcher)
                                if self.burst:
                                    interval = min(self.poll_interval, 0.02)
                                    work.start_soon(
                                        partial(
                                            stop_when_idle, fetchers, slots.held, self.stop, interval=interval
                                        )
                                    )
                                for _ in range(self.concurrency):
                                    work.start_soon(self._executor, slots, jobs, outcomes_send, limiters)
                                work.start_soon(self._shutdown_watch)
                                events.worker_started(self.id, self.concurrency)
                                announced = True
                                task_status.started()
                    services.cancel_scope.cancel()
            await presence.remove(min(self.broker_timeout, _FAREWELL))
            log.info(
                "worker %s stopped: %s",
                self.id,
                msgspec.structs.asdict(self.stats),
                extra={"action": "worker_stopped", "worker": self.id},
            )
        finally:
            if announced:
                events.worker_stopped(self.id, self.concurrency)
            self._running = False
            await self._lifespan.exit()  # after the drain: no handler sees a closed resource
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.broker_timeout):
                await self.host.close()

    async def _open_host(self, control: Control) -> bool:
        """Open the app's broker; ``False`` if the worker was stopped first.

        A broker that cannot be reached (:class:`~asynctask.errors.BrokerUnavailable`) is tried
        again for ``wait_for_broker`` seconds, backing off from 0.1 s to 2 s; anything else (an
        outdated schema, a bad URL) fails at once.
        """
        deadline = anyio.current_time() + self.wait_for_broker
        delay = _OPEN_BACKOFF[0]
        while True:
            try:
                await self.host.open()
                return True
            except BrokerUnavailable as exc:
                left = deadline - anyio.current_time()
                if left <= 0:
                    raise
                delay = min(delay, left)
                log.warning(
                    "worker %s waits for its broker (%s): trying again in %.1fs, for %.0fs more",
                    self.id,
                    exc,
                    delay,
                    left,
                    extra={"action": "broker_wait", "worker": self.id},
                )
            await control.unless_stopping(partial(anyio.sleep, delay))
            if control.stopping:
                return False
            delay = min(delay * 2, _OPEN_BACKOFF[1])

    # --- executing -------------------------------------------------------------------------

    async def _executor(
        self,
        slots: Slots,
        jobs: Handoff[Job],
        outcomes: Sender[Outcome],
        limiters: dict[str, anyio.CapacityLimiter],
    ) -> None:
        while True:
            # One plain asyncio turn per job keeps the other tasks (fetchers, heartbeat) running;
            # a waiting job is then taken without another.
            await asyncio.sleep(0)
            try:
                job = await jobs.get()
            except anyio.EndOfStream:
                return
            try:
                if self._control.stopping:
                    outcome: Outcome | None = Outcome(
                        job_id=job.id, token=job.token, kind=OutcomeKind.RELEASE
                    )
                else:
                    attempt = Attempt(
                        self.registry,
                        self._broker,
                        job,
                        worker_id=self.id,
                        limiter=limiters.get(job.task),
                        resources=self._lifespan.resources,
                        run_sync=self._threads.run if self._threads is not None else None,
                    )
                    self._attempts[job.id] = attempt
                    events = self._events if self._observe_attempts else None
                    if events is not None:
                        events.attempt_started(job)
                        started = time.perf_counter()
                    outcome = None
                    try:
                        outcome = await attempt.run()
                    finally:
                        if events is not None:
                            events.attempt_finished(
                                job, outcome, attempt.error, time.perf_counter() - started
                            )
                        # A rescued job may have been claimed again by this very worker.
                        if self._attempts.get(job.id) is attempt:
                            del self._attempts[job.id]
                        self._attempt_ended()
                if outcome is None:
                    slots.held.pop(job.id, None)
                    self.stats.lost += 1
                else:
                    outcomes.put(outcome)
            finally:
                slots.release(job.queue)

    def _attempt_ended(self) -> None:
        # Only a stopping worker's shutdown watch counts the attempts left: no wake-up per job.
        if self._control.stopping:
            self._wake()

    def _wake(self) -> None:
        """Something the shutdown watch waits for happened: an attempt ended, or a stop request."""
        # The event exists only while the watch waits: the hot path creates none per job.
        event, self._changed = self._changed, None
        if event is not None:
            event.set()

    async def _wait_change(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    async def _shutdown_watch(self) -> None:
        control = self._control
        while not control.stopping:
            await self._wait_change()
        log.info(
            "worker %s stopping: %d job(s) running, grace %.1fs",
            self.id,
            len(self._attempts),
            0 if control.immediate else self.shutdown_grace,
            extra={"action": "worker_stopping", "worker": self.id},
        )
        with anyio.move_on_after(self.shutdown_grace):
            while self._attempts and not control.immediate:
                await self._wait_change()
        for attempt in list(self._attempts.values()):
            attempt.interrupt(Interruption.SHUTDOWN)


@functools.cache
def _hostname() -> str:
    return socket.gethostname()


@functools.cache
def _version() -> str:
    try:
        return importlib.metadata.version("asynctask")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def _call_when_set(event: anyio.Event, fn: Callable[[], None]) -> None:
    await event.wait()
    fn()
