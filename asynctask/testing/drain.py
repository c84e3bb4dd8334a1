"""``await drain(app)``: run a worker until there is nothing left to do, then return what it did.

Oban's ``drain_queue`` and River's ``rivertest`` worker, for asynctask: a test publishes, drains,
and asserts on the finished jobs, without starting a server or sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Unpack

import anyio
import msgspec

from asynctask.app import App
from asynctask.brokers.base import Capabilities
from asynctask.models import Job, JobStatus
from asynctask.registry import Registry
from asynctask.runtime.options import WorkerOptions
from asynctask.runtime.worker import Worker
from asynctask.testing.clock import FakeClock

__all__ = ["drain"]

#: How often the drain looks at the broker while the worker runs (real seconds).
_LOOK_EVERY = 0.005
#: The most jobs of one status the drain reads from the broker at a time.
_MOST = 100_000


class _Unset:
    pass


_KEEP: Any = _Unset()


async def drain(
    app: App, *, timeout: float = 30.0, resources: Any = _KEEP, **options: Unpack[WorkerOptions]
) -> list[Job]:
    """Run a worker on ``app`` until nothing is ready, running or due; return the jobs it finished.

    * Jobs the handlers publish or spawn, retries and chain links run too, in the same drain.
    * With a :class:`FakeClock` as the app's clock, delayed jobs and retry backoffs do not wait:
      once the worker is idle the clock jumps to the next scheduled job, until none is left.
      With the real clock, the drain waits for scheduled jobs due within ``timeout``, and leaves
      later ones scheduled.
    * Returns every job the worker finished (succeeded, failed or cancelled), in the order they
      finished; a job that runs twice (a retry) appears once, in its final state. Failed jobs are
      returned, not raised: assert on ``job.status`` and ``job.error``.
    * ``resources`` replaces what the app's worker lifespan yields (``ctx.resources``) for this
      drain, so a test need not open a real pool; by default the lifespan runs as in production.
    * ``options`` are :class:`~asynctask.runtime.options.WorkerOptions` (``queues``,
      ``concurrency``, ...). The drain's worker does not publish periodic ticks.

    Raises :class:`TimeoutError` if work is still going after ``timeout`` real seconds.
    Opens and closes the app itself (opens are counted, so an open app stays open).
    """
    settings: WorkerOptions = {
        "poll_interval": 0.01,
        "maintenance_interval": 0.05,
        "scheduler": False,
        "shutdown_grace": 0.0,
        **options,
    }
    host = _Recording(app)
    worker = Worker(host, **settings)
    finished: dict[str, Job] = {}
    still_going: str | None = None
    async with _lifespan_replaced(app, resources), app, anyio.create_task_group() as tg:
        await tg.start(worker.run)
        try:
            with anyio.fail_after(timeout):
                await _run_until_idle(app, worker.queues, host, finished, deadline=timeout)
        except TimeoutError:
            still_going = await _counts(app, worker.queues)
        finally:
            worker.stop_now()
    if still_going is not None:
        raise TimeoutError(f"drain: work still going after {timeout:g}s ({still_going})")
    order = {job_id: n for n, job_id in enumerate(host.claimed)}
    return sorted(finished.values(), key=lambda j: (j.finished_at or 0.0, order.get(j.id, 0)))


async def _run_until_idle(
    app: App, queues: Sequence[str], host: _Recording, finished: dict[str, Job], *, deadline: float
) -> None:
    started = anyio.current_time()
    clock = app.clock
    while True:
        while not await _idle(app, queues, host):  # noqa: ASYNC110 - broker state, which has no event
            await anyio.sleep(_LOOK_EVERY)
        # Read the finished jobs before the clock moves: a jump past their TTL would hide them.
        for job_id in dict.fromkeys(host.claimed):
            if job_id not in finished or not finished[job_id].status.finished:
                job = await app.broker.get(job_id)
                if job is not None and job.status.finished:
                    finished[job_id] = job
        scheduled = [job for queue in queues for job in await _list(app, JobStatus.SCHEDULED, queue)]
        if not scheduled:
            return
        wait = min(job.run_at for job in scheduled) - clock()
        if isinstance(clock, FakeClock):
            clock.advance(max(wait, 0.0))
        elif anyio.current_time() + wait - started > deadline:
            return  # not due within the drain: left scheduled
        else:
            await anyio.sleep(max(wait, 0.0))


async def _idle(app: App, queues: Sequence[str], host: _Recording) -> bool:
    """Nothing to do, and nothing changed while the broker was asked (a look at several statuses
    is not atomic: a job claimed between two reads would be seen in neither)."""
    if host.in_flight:
        return False
    changes = host.changes
    return not await _busy(app, queues) and not host.in_flight and host.changes == changes


async def _busy(app: App, queues: Sequence[str]) -> bool:
    """Whether a job of ``queues`` is queued, running (or being reported), or scheduled and due.

    The waiting jobs of a paused queue (flow control) are left for later, as by ``--burst``.
    """
    now = app.clock()
    paused = {queue for queue, settings in (await app.broker.configured_queues()).items() if settings.paused}
    for queue in queues:
        if await app.broker.list_jobs(status=JobStatus.RUNNING, queue=queue, limit=1):
            return True
        if queue in paused:
            continue
        if await app.broker.list_jobs(status=JobStatus.QUEUED, queue=queue, limit=1):
            return True
        if any(job.run_at <= now for job in await _list(app, JobStatus.SCHEDULED, queue)):
            return True
    return False


async def _list(app: App, status: JobStatus, queue: str) -> list[Job]:
    return await app.broker.list_jobs(status=status, queue=queue, limit=_MOST)


async def _counts(app: App, queues: Sequence[str]) -> str:
    parts = []
    for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SCHEDULED):
        n = 0
        for queue in queues:
            n += len(await _list(app, status, queue))
        if n:
            parts.append(f"{n} {status.value}")
    return ", ".join(parts) or "nothing left"


@asynccontextmanager
async def _lifespan_replaced(registry: Registry, resources: Any) -> AsyncIterator[None]:
    """For the drain, a lifespan that yields ``resources`` instead of the app's own."""
    if resources is _KEEP:
        yield
        return

    @asynccontextmanager
    async def given() -> AsyncIterator[Any]:
        yield resources

    saved, registry.worker_lifespan = registry.worker_lifespan, given
    try:
        yield
    finally:
        registry.worker_lifespan = saved


class _Recording:
    """A :class:`~asynctask.registry.WorkerHost` over ``app`` that notes every job it claims, and
    counts the worker's calls that move jobs between statuses."""

    def __init__(self, app: App) -> None:
        self.registry: Registry = app
        self.broker: Any = _ClaimLog(app.broker, self)
        self.claimed: list[str] = []
        #: Calls that may move a job under way now, and those that did move one so far.
        self.in_flight = 0
        self.changes = 0

    async def open(self) -> None:
        await self.broker.open()

    async def close(self) -> None:
        await self.broker.close()


class _ClaimLog:
    """Forwards every call to the broker; notes claimed jobs and counts status changes."""

    def __init__(self, broker: Any, host: _Recording) -> None:
        self._broker = broker
        self._host = host

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    @property
    def capabilities(self) -> Capabilities:
        # A wait that claims would be a claim this log does not see: plain waits and claims.
        capabilities: Capabilities = self._broker.capabilities
        return msgspec.structs.replace(capabilities, claim_on_wake=False)

    async def claim(self, queue: str, limit: int, *, lease: float, worker: str, **flow: Any) -> list[Job]:
        # ``flow``: the task limits, passed on only when the worker gives them (asynctask.flow).
        jobs: list[Job] = await self._moving(
            self._broker.claim(queue, limit, lease=lease, worker=worker, **flow)
        )
        self._host.claimed.extend(job.id for job in jobs)
        return jobs

    async def complete(self, outcomes: Any) -> Any:
        return await self._moving(self._broker.complete(outcomes))

    async def promote_due(self, limit: int) -> int:
        promoted: int = await self._moving(self._broker.promote_due(limit))
        return promoted

    async def rescue_expired(self, limit: int) -> int:
        rescued: int = await self._moving(self._broker.rescue_expired(limit))
        return rescued

    async def _moving(self, call: Awaitable[Any]) -> Any:
        host = self._host
        host.in_flight += 1
        try:
            result = await call
        finally:
            host.in_flight -= 1
        if result:  # jobs claimed, outcomes applied, jobs promoted or rescued
            host.changes += 1
        return result
