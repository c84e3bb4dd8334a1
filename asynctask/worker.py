"""The worker: claims jobs from the broker and runs them, as one anyio task group.

Inside ``Worker.run``:

* a **fetcher** per queue claims batches sized to the free executor slots, then waits for the
  broker to signal new work (or the poll interval) when the queue runs dry;
* ``concurrency`` **executors** take claimed jobs from a bounded memory stream and run them;
* a **completer** sends outcomes back in batches (one broker round trip for many jobs);
* a **heartbeater** extends the leases of held jobs and learns of cancel requests and lost leases;
* a **maintainer** promotes due delayed jobs, rescues expired leases and prunes expired jobs.

Shutdown (``stop()``, SIGTERM or SIGINT): stop claiming, let running jobs finish within
``shutdown_grace`` seconds, then cancel them and hand their leases back (the attempt is not
counted). ``stop_now()`` or a second signal skips the grace period.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

import anyio
import msgspec
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asynctask.lifecycle import concurrence
from asynctask.models import Job, Lease, LeaseState, Outcome, OutcomeKind
from asynctask.names import validate_queue
from asynctask.outcome import Interruption
from asynctask.periodic import PeriodicScheduler
from asynctask.runner import Attempt

if TYPE_CHECKING:
    from asynctask.app import App

__all__ = ["Worker", "WorkerStats"]

log = logging.getLogger("asynctask.worker")

_MAX_BATCH = 256


class WorkerStats(msgspec.Struct, kw_only=True):
    """Counts of what this worker did, by outcome."""

    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    released: int = 0
    lost: int = 0


class Worker:
    """Runs the jobs of an :class:`~asynctask.App`.

    >>> worker = Worker(app, queues=["default"], concurrency=50)   # doctest: +SKIP
    >>> await worker.run()                                         # until stop() or a signal

    Options:

    * ``queues``: the queues to consume (default: every queue of the app's tasks);
    * ``concurrency``: handlers running at once;
    * ``prefetch``: jobs claimed ahead so a freed executor starts the next one at once (default
      ``concurrency // 4``); use 0 for long jobs spread over many workers, since a prefetched job
      waits here instead of on an idle worker;
    * ``queue_concurrency``: per-queue caps (prefetched jobs included);
    * ``lease``: seconds a claim lasts without a heartbeat; ``heartbeat`` (default ``lease / 3``);
    * ``poll_interval``: the longest wait between claims when the broker gives no wake-up;
    * ``batch_size``: most jobs per claim; ``shutdown_grace``; ``maintenance_interval``;
    * ``handle_signals``: install SIGINT/SIGTERM handlers (the CLI does);
    * ``scheduler``: publish the ticks of periodic tasks (safe to leave on in every worker).
    """

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        prefetch: int | None = None,
        queue_concurrency: Mapping[str, int] | None = None,
        lease: float = 30.0,
        heartbeat: float | None = None,
        poll_interval: float = 1.0,
        batch_size: int | None = None,
        shutdown_grace: float = 30.0,
        maintenance_interval: float = 5.0,
        handle_signals: bool = False,
        scheduler: bool = True,
        worker_id: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if prefetch is not None and prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        if lease <= 0 or poll_interval <= 0:
            raise ValueError("lease and poll_interval must be > 0")
        self.app = app
        self.queues = [validate_queue(q) for q in (queues or app.queues)]
        self.concurrency = concurrency
        self.prefetch = concurrency // 4 if prefetch is None else prefetch
        self.queue_limits = {validate_queue(q): n for q, n in (queue_concurrency or {}).items()}
        self.lease = lease
        self.heartbeat = heartbeat if heartbeat is not None else lease / 3
        self.poll_interval = poll_interval
        self.batch_size = min(batch_size or concurrency, _MAX_BATCH)
        self.shutdown_grace = shutdown_grace
        self.maintenance_interval = maintenance_interval
        self.handle_signals = handle_signals
        self.scheduler = scheduler
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stats = WorkerStats()
        self._free = concurrency + self.prefetch
        self._queue_free = {q: self.queue_limits.get(q, math.inf) for q in self.queues}
        self._attempts: dict[str, Attempt] = {}
        self._held: dict[str, Lease] = {}
        self._wait_scopes: set[anyio.CancelScope] = set()
        self._stopping = False
        self._immediate = False
        self._stop_event: anyio.Event | None = None
        self._capacity: anyio.Event | None = None
        self._watch: anyio.Event | None = None
        self._limiters: dict[str, anyio.CapacityLimiter] = {}

    def __repr__(self) -> str:
        state = "stopping" if self._stopping else "running" if self._stop_event else "idle"
        return (
            f"<Worker {self.id} {state} queues={','.join(self.queues)} "
            f"running={len(self._attempts)}/{self.concurrency}>"
        )

    # --- control ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs get ``shutdown_grace`` seconds to finish."""
        self._stopping = True
        for scope in list(self._wait_scopes):
            scope.cancel()
        if self._stop_event is not None:
            self._stop_event.set()
        self._poke()

    def stop_now(self) -> None:
        """Stop at once: running jobs are cancelled and their leases handed back."""
        self._immediate = True
        self.stop()

    def _poke(self) -> None:
        if self._watch is not None:
            self._watch.set()
        if self._capacity is not None:
            self._capacity.set()

    # --- run -------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop`; ``await tg.start(worker.run)`` returns once it is claiming."""
        self._stop_event = anyio.Event()
        self._capacity = anyio.Event()
        self._watch = anyio.Event()
        self._limiters = {
            t.name: anyio.CapacityLimiter(t.concurrency)
            for t in self.app.tasks.values()
            if t.concurrency is not None
        }
        if self._stopping:
            self._stop_event.set()
        async with self.app:
            log.info(
                "worker %s started: broker %s, queues %s, concurrency %d",
                self.id,
                self.app.display_url,
                ", ".join(self.queues),
                self.concurrency,
                extra={"action": "worker_started"},
            )
            jobs_send, jobs_receive = anyio.create_memory_object_stream[Job](self.concurrency + self.prefetch)
            out_send, out_receive = anyio.create_memory_object_stream[Outcome](max(2 * self.concurrency, 64))
            # Every stream is closed on the way out, even when the worker is cancelled outright.
            with jobs_send, jobs_receive, out_send, out_receive:
                background = [self._heartbeat_loop, self._maintenance_loop]
                if self.scheduler and self.app.periodic_tasks:
                    background.append(PeriodicScheduler(self.app).run)
                async with anyio.create_task_group() as services:
                    # The background services run until the work is done, then are cancelled.
                    services.start_soon(concurrence(*background))
                    if self.handle_signals:
                        await services.start(self._signal_loop)
                    async with anyio.create_task_group() as core:
                        core.start_soon(self._complete_loop, out_receive.clone())
                        async with out_send.clone() as outcomes, anyio.create_task_group() as work:
                            async with jobs_send.clone() as jobs:
                                for queue in self.queues:
                                    work.start_soon(self._fetch_loop, queue, jobs.clone())
                            jobs_send.close()
                            for _ in range(self.concurrency):
                                work.start_soon(self._executor, jobs_receive, outcomes)
                            work.start_soon(self._shutdown_watch)
                            task_status.started()
                        out_send.close()
                    services.cancel_scope.cancel()
            log.info(
                "worker %s stopped: %s",
                self.id,
                msgspec.structs.asdict(self.stats),
                extra={"action": "worker_stopped"},
            )

    # --- fetching --------------------------------------------------------------------------

    def _reserve(self, queue: str) -> int:
        n = int(min(self.batch_size, self._free, self._queue_free[queue]))
        self._free -= n
        self._queue_free[queue] -= n
        return n

    def _unreserve(self, queue: str, n: int) -> None:
        if n:
            self._free += n
            self._queue_free[queue] += n
            assert self._capacity is not None
            self._capacity.set()

    async def _unless_stopping(self, wait: Callable[[], Awaitable[object]]) -> None:
        """Run ``wait()`` unless stopping; :meth:`stop` cuts it short."""
        with anyio.CancelScope() as scope:
            self._wait_scopes.add(scope)
            try:
                if not self._stopping:
                    await wait()
            finally:
                self._wait_scopes.discard(scope)

    async def _wait_capacity(self, queue: str) -> None:
        while self._free <= 0 or self._queue_free[queue] <= 0:
            assert self._capacity is not None
            event = self._capacity
            await event.wait()
            if self._capacity is event:
                self._capacity = anyio.Event()

    async def _fetch_loop(self, queue: str, send: MemoryObjectSendStream[Job]) -> None:
        backoff = 0.05
        async with send:
            while not self._stopping:
                n = self._reserve(queue)
                if n == 0:
                    await self._unless_stopping(partial(self._wait_capacity, queue))
                    continue
                try:
                    jobs = await self.app.broker.claim(queue, n, lease=self.lease, worker=self.id)
                except Exception as exc:
                    self._unreserve(queue, n)
                    log.warning(
                        "claiming from %s failed (%s); retrying in %.2fs",
                        queue,
                        exc,
                        backoff,
                        extra={"action": "claim_error"},
                    )
                    await self._unless_stopping(partial(anyio.sleep, backoff))
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.05
                self._unreserve(queue, n - len(jobs))
                self.stats.claimed += len(jobs)
                for job in jobs:
                    self._held[job.id] = Lease(job.id, job.token)
                    await send.send(job)
                if len(jobs) < n:
                    try:
                        await self._unless_stopping(
                            partial(self.app.broker.wait_for_jobs, queue, self.poll_interval)
                        )
                    except Exception as exc:
                        # The next claim will tell whether the broker is really gone.
                        log.warning(
                            "waiting for jobs on %s failed (%s)", queue, exc, extra={"action": "wait_error"}
                        )
                        await self._unless_stopping(partial(anyio.sleep, min(self.poll_interval, 1.0)))

    # --- executing -------------------------------------------------------------------------

    async def _executor(
        self, receive: MemoryObjectReceiveStream[Job], outcomes: MemoryObjectSendStream[Outcome]
    ) -> None:
        async for job in receive:
            try:
                if self._stopping:
                    outcome: Outcome | None = Outcome(
                        job_id=job.id, token=job.token, kind=OutcomeKind.RELEASE
                    )
                else:
                    attempt = Attempt(self.app, job, worker_id=self.id, limiter=self._limiters.get(job.task))
                    self._attempts[job.id] = attempt
                    try:
                        outcome = await attempt.run()
                    finally:
                        # A rescued job may have been claimed again by this very worker.
                        if self._attempts.get(job.id) is attempt:
                            del self._attempts[job.id]
                if outcome is None:
                    self._held.pop(job.id, None)
                    self.stats.lost += 1
                else:
                    await outcomes.send(outcome)
            finally:
                self._free += 1
                self._queue_free[job.queue] += 1
                self._poke()

    async def _shutdown_watch(self) -> None:
        assert self._stop_event is not None
        await self._stop_event.wait()
        log.info(
            "worker %s stopping: %d job(s) running, grace %.1fs",
            self.id,
            len(self._attempts),
            0 if self._immediate else self.shutdown_grace,
            extra={"action": "worker_stopping"},
        )
        with anyio.move_on_after(self.shutdown_grace):
            while self._attempts and not self._immediate:
                assert self._watch is not None
                await self._watch.wait()
                self._watch = anyio.Event()
        for attempt in list(self._attempts.values()):
            attempt.interrupt(Interruption.SHUTDOWN)

    # --- completing ------------------------------------------------------------------------

    async def _complete_loop(self, receive: MemoryObjectReceiveStream[Outcome]) -> None:
        async with receive:
            async for first in receive:
                batch = [first]
                while len(batch) < _MAX_BATCH:
                    try:
                        batch.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await self._flush(batch)

    async def _flush(self, batch: list[Outcome]) -> None:
        delay = 0.05
        while True:
            try:
                applied = await self.app.broker.complete(batch)
                break
            except Exception as exc:
                if self._immediate:
                    log.error(
                        "could not report %d outcome(s): %s",
                        len(batch),
                        exc,
                        extra={"action": "complete_error"},
                    )
                    return
                log.warning(
                    "reporting %d outcome(s) failed (%s); retrying in %.2fs",
                    len(batch),
                    exc,
                    delay,
                    extra={"action": "complete_error"},
                )
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
        stats = self.stats
        for outcome, ok in zip(batch, applied, strict=True):
            self._held.pop(outcome.job_id, None)
            if not ok:
                stats.lost += 1
                log.warning(
                    "outcome of job %s was rejected: its lease had passed to another worker",
                    outcome.job_id,
                    extra={"action": "outcome_rejected", "job_id": outcome.job_id},
                )
                continue
            kind = outcome.kind
            if kind is OutcomeKind.SUCCEEDED:
                stats.succeeded += 1
            elif kind is OutcomeKind.FAILED:
                stats.failed += 1
            elif kind is OutcomeKind.RETRY:
                stats.retried += 1
            elif kind is OutcomeKind.CANCELLED:
                stats.cancelled += 1
            else:
                stats.released += 1

    # --- background services ---------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self.heartbeat)
            leases = list(self._held.values())
            if not leases:
                continue
            try:
                states = await self.app.broker.extend_leases(leases, lease=self.lease)
            except Exception as exc:
                log.warning(
                    "extending %d lease(s) failed: %s", len(leases), exc, extra={"action": "heartbeat_error"}
                )
                continue
            for lease, state in zip(leases, states, strict=True):
                if state is LeaseState.OK:
                    continue
                attempt = self._attempts.get(lease.job_id)
                if attempt is None or attempt.job.token != lease.token:
                    continue
                if state is LeaseState.CANCEL:
                    attempt.interrupt(Interruption.CANCEL_REQUESTED)
                elif state is LeaseState.PAUSE:
                    attempt.request_pause()
                else:
                    attempt.interrupt(Interruption.LEASE_LOST)

    async def _maintenance_loop(self) -> None:
        broker = self.app.broker
        while True:
            # Jitter keeps many workers from hitting the broker in lockstep.
            await anyio.sleep(self.maintenance_interval * random.uniform(0.5, 1.0))
            try:
                promoted = await broker.promote_due(1000)
                rescued = await broker.rescue_expired(1000)
                pruned = await broker.prune(1000)
            except Exception as exc:
                log.warning("maintenance failed: %s", exc, extra={"action": "maintenance_error"})
                continue
            if rescued:
                log.warning(
                    "rescued %d job(s) whose lease expired", rescued, extra={"action": "leases_rescued"}
                )
            if promoted or pruned:
                log.debug("promoted %d, pruned %d", promoted, pruned, extra={"action": "maintenance"})

    async def _signal_loop(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if self._stopping:
                    log.warning("%s again: stopping now", name, extra={"action": "worker_stop_now"})
                    self.stop_now()
                else:
                    log.info("%s: shutting down gracefully", name, extra={"action": "worker_signal"})
                    self.stop()
