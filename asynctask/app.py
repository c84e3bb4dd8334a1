"""The App: a registry of tasks with a broker, and the client (publish, inspect, manage jobs).

The runtime that executes jobs is :class:`asynctask.Worker`; an ``App`` never runs handlers
itself, so a web service can import the same module and only publish.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Sequence
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, Unpack, overload

import anyio
import msgspec

from asynctask.brokers import Broker, broker_from_url
from asynctask.brokers.base import Clock
from asynctask.errors import ConfigurationError, JobFailed, JobNotFound, JobTimeout
from asynctask.flow import QueueSettings, RateLimit, check_concurrency, parse_rate
from asynctask.handle import JobHandle
from asynctask.models import Job, JobStatus, NewJob, QueueStats, WorkerInfo, zero_counts
from asynctask.names import validate_queue
from asynctask.options import JobSpec, PublishOptions
from asynctask.registry import BUILTIN_TASKS, Registry
from asynctask.retry import RetryPolicy
from asynctask.task import Task
from asynctask.workflows.chains import ChainInfo, chain_info, publish_chain
from asynctask.workflows.groups import GroupInfo, group_info, publish_group

if TYPE_CHECKING:
    from asynctask.runtime.options import WorkerOptions
    from asynctask.runtime.worker import Worker

__all__ = ["App"]

R = TypeVar("R")


class App(Registry):
    """A registry of tasks and a client of its broker.

    >>> app = App("memory://")
    >>> @app.task(queue="emails", max_retries=5)
    ... async def send_email(ctx: JobCtx, to: str) -> bool:
    ...     return True

    ``broker`` is a URL (``memory://``, ``postgresql://...``, ``redis://...``) or a broker object;
    it defaults to ``$ASYNCTASK_BROKER_URL``, else ``memory://``. The other settings are the
    :class:`~asynctask.registry.Registry`'s (TTLs, payload size limit, retry defaults, clock).

    The App talks to its broker only while it is open: ``async with app:`` (or ``await
    app.open()`` / ``await app.close()``, or the FastAPI lifespan). A call on a closed App raises
    :class:`~asynctask.errors.ConfigurationError` saying so, whatever the broker: nothing connects
    behind your back, and nothing is left connected.
    """

    def __init__(
        self,
        broker: str | Broker | None = None,
        *,
        clock: Clock = time.time,
        result_ttl: float | None = 3600.0,
        failed_ttl: float | None = 7 * 86400.0,
        max_payload_size: int = 1 << 20,
        max_retries: int = 3,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(
            clock=clock,
            result_ttl=result_ttl,
            failed_ttl=failed_ttl,
            max_payload_size=max_payload_size,
            max_retries=max_retries,
            retry=retry,
        )
        self.publisher = self
        self._broker: Broker
        self.set_broker(broker if broker is not None else os.environ.get("ASYNCTASK_BROKER_URL", "memory://"))

    # --- configuration ---------------------------------------------------------------------

    def set_broker(self, broker: str | Broker) -> None:
        """Choose the broker (a URL or an object); only while the app is closed."""
        if getattr(self, "_broker", None) is not None and self._broker.is_open:
            raise ConfigurationError("cannot change the broker of an open App")
        # Building a broker validates its URL; nothing connects before open().
        self._broker = broker_from_url(broker, clock=self.clock) if isinstance(broker, str) else broker

    @property
    def broker(self) -> Broker:
        return self._broker

    @property
    def registry(self) -> Registry:
        """The registry half of this App (itself): what a :class:`~asynctask.Worker` runs."""
        return self

    @property
    def display_url(self) -> str:
        """The broker's URL with any password redacted."""
        return self._broker.display_url

    # --- connection ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect to the broker. Opens are counted by the broker: an embedded worker, a test and
        the app can share one connection; each ``open`` needs its ``close``."""
        await self._broker.open()

    async def close(self) -> None:
        # Shielded: a cancelled caller must still close the broker, or its connections leak.
        with anyio.CancelScope(shield=True):
            await self._broker.close()

    async def __aenter__(self) -> App:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _open_broker(self) -> Broker:
        if not self._broker.is_open:
            raise ConfigurationError(
                f"the App is not open ({self._broker.display_url}): use `async with app:`, "
                "`await app.open()`, or the FastAPI lifespan (asynctask.contrib.fastapi)"
            )
        return self._broker

    # --- publishing --------------------------------------------------------------------------

    @overload
    async def publish(
        self,
        task: Task[Any, R],
        payload: Any = None,
        *,
        connection: Any = None,
        **options: Unpack[PublishOptions],
    ) -> JobHandle[R]: ...

    @overload
    async def publish(
        self, task: str, payload: Any = None, *, connection: Any = None, **options: Unpack[PublishOptions]
    ) -> JobHandle[Any]: ...

    async def publish(
        self,
        task: Task[Any, Any] | str,
        payload: Any = None,
        *,
        connection: Any = None,
        **options: Unpack[PublishOptions],
    ) -> JobHandle[Any]:
        """Publish one job and return its handle.

        ``delay`` (seconds or timedelta) or ``at`` (aware datetime) defer it; ``job_id`` makes the
        publish idempotent: if a job with that id exists, it is returned and nothing is enqueued.
        :class:`~asynctask.options.PublishOptions` lists every option. ``connection`` (a Postgres
        connection) enqueues inside the caller's transaction.
        """
        name = task if isinstance(task, str) else task.name
        [handle] = await self.publish_many([JobSpec(name, payload, **options)], connection=connection)
        return handle

    async def publish_many(self, specs: Iterable[JobSpec], *, connection: Any = None) -> list[JobHandle[Any]]:
        """Publish many jobs in one broker round trip where the broker allows it."""
        jobs = [self.build_job(spec) for spec in specs]
        if not jobs:
            return []
        broker = self._open_broker()
        if self.events:
            created = await self.events.publish(jobs, partial(broker.enqueue, connection=connection))
        else:
            created = await broker.enqueue(jobs, connection=connection)
        handles: list[JobHandle[Any]] = [
            JobHandle(self, job.id, job.task, created=c) for job, c in zip(jobs, created, strict=True)
        ]
        for i, (job, c) in enumerate(zip(jobs, created, strict=True)):
            if not c and job.unique_key is not None:
                handles[i] = await self._unique_handle(broker, job, connection)
        return handles

    async def _unique_handle(self, broker: Broker, job: NewJob, connection: Any) -> JobHandle[Any]:
        """The handle of a unique job that was not enqueued: it follows the job holding the key.

        The holder may finish between the enqueue and the look-up; the key is then free, and the
        job is enqueued again (a few times at most, then its own id is returned as not created).
        """
        assert job.unique_key is not None
        for _ in range(3):
            holder = await broker.find_unique(job.unique_key)
            if holder is not None:
                return JobHandle(self, holder.id, holder.task, created=False)
            [created] = await broker.enqueue([job], connection=connection)
            if created:
                return JobHandle(self, job.id, job.task, created=True)
        return JobHandle(self, job.id, job.task, created=False)

    # --- inspection and management ---------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        """The job's record (status, attempts, times, last error, result bytes), or ``None``."""
        return await self._open_broker().get(job_id)

    async def result(self, job_id: str, *, timeout: float | None = None) -> Any:
        """Wait until the job finishes and return its decoded result.

        Raises :class:`JobFailed` if it failed or was cancelled, :class:`JobTimeout` if it is not
        finished after ``timeout`` seconds, :class:`JobNotFound` if it does not exist.
        """
        broker = self._open_broker()
        interval = 0.002
        with anyio.move_on_after(timeout if timeout is not None else math.inf) as scope:
            while True:
                job = await broker.get(job_id)
                if job is None:
                    raise JobNotFound(f"no job with id {job_id!r}")
                if job.status is JobStatus.SUCCEEDED:
                    return self.decode_result(job)
                if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
                    raise JobFailed(job.id, job.status.value, job.error)
                await anyio.sleep(interval)
                interval = min(interval * 1.5, 0.1)
        assert scope.cancelled_caught
        raise JobTimeout(f"job {job_id} did not finish within {timeout} s")

    async def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
        before: tuple[float, str] | None = None,
    ) -> list[Job]:
        """Up to ``limit`` jobs matching every given filter, newest first.

        Pages follow a cursor (keyset pagination, as cheap deep in the list as at its start): pass
        the last job's ``(job.created_at, job.id)`` as ``before`` to get the next page.
        """
        return await self._open_broker().list_jobs(
            status=JobStatus(status) if status is not None else None,
            queue=queue,
            task=task,
            limit=limit,
            before=before,
        )

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: at once if it waits, at its next lease renewal if it runs."""
        ttl = self.result_ttl
        job = await self._open_broker().cancel(
            job_id, expires_at=self.clock() + ttl if ttl is not None else None
        )
        return _found(job, job_id)

    async def retry(self, job_id: str) -> Job:
        """Queue a failed (dead-lettered) or cancelled job again, with a fresh attempt count."""
        return _found(await self._open_broker().retry(job_id), job_id)

    async def delete(self, job_id: str) -> bool:
        """Delete a job in any status; ``False`` if there was none. Cancel an unfinished subtask
        instead of deleting it: its parent would wait for it for ever."""
        return await self._open_broker().delete(job_id)

    async def pause(self, job_id: str) -> Job:
        """Park a queued job, or stop a running incremental task after its current step."""
        return _found(await self._open_broker().pause(job_id), job_id)

    async def resume(self, job_id: str) -> Job:
        """Queue a paused job again (a delayed one keeps its time); it continues from its state."""
        return _found(await self._open_broker().resume(job_id), job_id)

    # --- queues: flow control ---------------------------------------------------------------------

    async def configure_queue(
        self, queue: str, *, global_concurrency: int | None = None, rate_limit: str | RateLimit | None = None
    ) -> QueueSettings:
        """Set the queue's cluster-wide limits, stored in the broker for every worker to obey.

        ``global_concurrency``: at most this many of its jobs running at once; ``rate_limit``: at
        most this many starts (``"100/s"``, ``"30/m"``, ``"1000/h"``, or a
        :class:`~asynctask.flow.RateLimit`). A limit not given is removed; a pause is kept.

        >>> await app.configure_queue("billing", global_concurrency=5, rate_limit="20/s")  # doctest: +SKIP
        """
        concurrency = None if global_concurrency is None else check_concurrency(global_concurrency)
        rate = None if rate_limit is None else parse_rate(rate_limit)
        return await self._open_broker().set_queue_limits(
            validate_queue(queue), concurrency=concurrency, rate=rate
        )

    async def pause_queue(self, queue: str) -> QueueSettings:
        """Stop every worker claiming from ``queue`` (at its next claim); running jobs finish and
        publishing still works. :meth:`resume_queue` undoes it."""
        return await self._open_broker().set_queue_paused(validate_queue(queue), True)

    async def resume_queue(self, queue: str) -> QueueSettings:
        """Let workers claim from ``queue`` again; idle workers are woken."""
        return await self._open_broker().set_queue_paused(validate_queue(queue), False)

    async def queue_settings(self, queue: str) -> QueueSettings:
        """The queue's stored settings: paused, global concurrency, rate limit."""
        return await self._open_broker().queue_settings(validate_queue(queue))

    async def queue_stats(self) -> list[QueueStats]:
        """Per queue, its live jobs counted by status and when its oldest ready job became ready.

        Every queue that holds jobs, plus this app's own queues (all zeros while empty), sorted
        by name, with whether each is paused; two broker calls (see :meth:`Broker.queue_stats
        <asynctask.Broker.queue_stats>` and :meth:`Broker.configured_queues`).
        """
        broker = self._open_broker()
        found = {stats.queue: stats for stats in await broker.queue_stats()}
        for queue in self.queues:
            found.setdefault(queue, QueueStats(queue=queue, counts=zero_counts()))
        # Paused queues (flow control) are few and their settings a second, small read.
        settings = await broker.configured_queues()
        for queue in settings:
            found.setdefault(queue, QueueStats(queue=queue, counts=zero_counts()))
        return [
            msgspec.structs.replace(found[queue], paused=queue in settings and settings[queue].paused)
            for queue in sorted(found)
        ]

    async def list_workers(self) -> list[WorkerInfo]:
        """The live workers of this broker (every app sharing it), as each last recorded itself:
        host, pid, queues, concurrency, running jobs, counts by outcome, last heartbeat.

        A worker records itself when it starts and at every heartbeat, and removes its record when
        it stops; one that dies is left out three heartbeats after its last one.
        """
        return await self._open_broker().list_workers()

    # --- groups and chains ---------------------------------------------------------------------

    async def group(self, specs: Sequence[JobSpec], *, group_id: str | None = None) -> str:
        """Publish jobs as a group (tasqueue's Group); returns the group id.

        The group succeeds only if every job does; :meth:`get_group` shows its progress.
        """
        return await publish_group(self, self._open_broker(), specs, group_id)

    async def chain(self, specs: Sequence[JobSpec], *, chain_id: str | None = None) -> str:
        """Publish jobs to run one after another (tasqueue's Chain); returns the chain id.

        Each link sees the previous link's result as ``ctx.prev_result``; a failed link stops the
        chain, and :meth:`get_chain` says which link failed and why.
        """
        return await publish_chain(self, self._open_broker(), specs, chain_id)

    async def get_group(self, group_id: str) -> GroupInfo:
        """The group's overall status and each member job."""
        return await group_info(self._open_broker(), group_id)

    async def get_chain(self, chain_id: str) -> ChainInfo:
        """The chain's overall status, each link's status, and which link failed."""
        return await chain_info(self._open_broker(), chain_id)

    # --- running -----------------------------------------------------------------------------

    def worker(self, **options: Unpack[WorkerOptions]) -> Worker:
        """A :class:`~asynctask.Worker` for this app; :class:`~asynctask.runtime.options.WorkerOptions`
        lists the options."""
        from asynctask.runtime.worker import Worker

        return Worker(self, **options)

    async def run_worker(self, **options: Unpack[WorkerOptions]) -> None:
        """Run a worker until it is stopped (shortcut for ``await app.worker(...).run()``)."""
        await self.worker(**options).run()

    def __repr__(self) -> str:
        return f"<App broker={self._broker.display_url} tasks={len(set(self.tasks) - BUILTIN_TASKS)}>"


def _found(job: Job | None, job_id: str) -> Job:
    if job is None:
        raise JobNotFound(f"no job with id {job_id!r}")
    return job
