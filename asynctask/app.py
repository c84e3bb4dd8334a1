"""The App: the task registry and the client (publish, inspect, manage jobs).

The runtime that executes jobs is :class:`asynctask.worker.Worker`; an ``App`` never runs
handlers itself, so a web service can import the same module and only publish.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

import anyio

from asynctask.brokers import Broker, broker_from_url
from asynctask.brokers.base import Clock
from asynctask.codec import Codec
from asynctask.ctx import JobCtx
from asynctask.errors import (
    ConfigurationError,
    JobFailed,
    JobNotFound,
    JobTimeout,
    PayloadTooLarge,
    UnknownTask,
)
from asynctask.models import Job, JobStatus, NewJob, QueueStats, zero_counts
from asynctask.names import validate_job_id, validate_queue
from asynctask.periodic import Missed, Periodic
from asynctask.retry import Backoff, RetryPolicy
from asynctask.schedule import Schedule
from asynctask.task import Hook, Hooks, JobHandle, JobSpec, Task
from asynctask.workflows import (
    CHAIN_TASK,
    GROUP_TASK,
    ChainInfo,
    Done,
    GroupInfo,
    Step,
    chain_finisher,
    chain_info,
    group_finisher,
    group_info,
    incremental_handler,
    pipeline_handler,
    publish_chain,
    publish_group,
)

if TYPE_CHECKING:
    from asynctask.worker import Worker

__all__ = ["App", "Middleware"]

P = TypeVar("P")
R = TypeVar("R")
S = TypeVar("S")

_BUILTIN = frozenset({GROUP_TASK, CHAIN_TASK})


class TaskDecorator(Protocol):
    """What ``@app.task(...)`` returns: registers a ``(ctx)`` or ``(ctx, payload)`` handler."""

    @overload
    def __call__(self, fn: Callable[[JobCtx], Awaitable[R]], /) -> Task[None, R]: ...

    @overload
    def __call__(self, fn: Callable[[JobCtx, P], Awaitable[R]], /) -> Task[P, R]: ...


#: ``async def mw(ctx, call_next) -> result``: wraps every handler call in the worker.
Middleware = Callable[[JobCtx, Callable[[], Awaitable[Any]]], Awaitable[Any]]

_ANY = Codec()


class App:
    """Registry of tasks and client of a broker.

    >>> app = App("memory://")
    >>> @app.task(queue="emails", max_retries=5)
    ... async def send_email(ctx: JobCtx, to: str) -> bool:
    ...     return True

    Configuration:

    * ``broker``: a URL (``memory://``, ``postgresql://...``, ``redis://...``) or a broker object;
      defaults to ``$ASYNCTASK_BROKER_URL``, else ``memory://``.
    * ``result_ttl``: seconds a succeeded or cancelled job (and its result) is kept (1 hour).
    * ``failed_ttl``: seconds a failed job is kept in the dead-letter (7 days; ``None`` = forever).
    * ``max_payload_size``: largest encoded payload accepted by ``publish`` (1 MiB).
    * ``max_retries`` / ``retry``: defaults for tasks that do not set their own (3, exponential backoff).
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
        self.clock = clock
        self.result_ttl = result_ttl
        self.failed_ttl = failed_ttl
        self.max_payload_size = max_payload_size
        self.max_retries = max_retries
        self.retry_policy: RetryPolicy = retry or Backoff()
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.periodic_tasks: dict[str, Periodic] = {}
        # The containers of groups and chains run these in their finish phase.
        self.task(name=GROUP_TASK, max_retries=3)(group_finisher)
        self.task(name=CHAIN_TASK, max_retries=3)(chain_finisher)
        self.middleware: list[Middleware] = []
        self._opened = 0
        self._open_lock: anyio.Lock | None = None
        self._broker: Broker
        self.set_broker(broker if broker is not None else os.environ.get("ASYNCTASK_BROKER_URL", "memory://"))

    # --- configuration ---------------------------------------------------------------------

    def set_broker(self, broker: str | Broker) -> None:
        """Choose the broker (a URL or an object); only while the app is closed."""
        if self._opened:
            raise ConfigurationError("cannot change the broker of an open App")
        # Building a broker validates its URL; nothing connects before open().
        self._broker = broker_from_url(broker, clock=self.clock) if isinstance(broker, str) else broker

    @property
    def broker(self) -> Broker:
        return self._broker

    @property
    def display_url(self) -> str:
        return self.broker.display_url

    @overload
    def task(self, fn: Callable[[JobCtx], Awaitable[R]], /) -> Task[None, R]: ...

    @overload
    def task(self, fn: Callable[[JobCtx, P], Awaitable[R]], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        priority: int = 0,
        concurrency: int | None = None,
        on_processing: Hook | None = None,
        on_success: Hook | None = None,
        on_retrying: Hook | None = None,
        on_failed: Hook | None = None,
    ) -> TaskDecorator: ...

    def task(
        self,
        fn: Any = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        priority: int = 0,
        concurrency: int | None = None,
        on_processing: Hook | None = None,
        on_success: Hook | None = None,
        on_retrying: Hook | None = None,
        on_failed: Hook | None = None,
    ) -> Any:
        """Register an async handler ``(ctx, payload) -> result`` as a task.

        ``concurrency`` caps how many jobs of this task one worker runs at once; ``timeout``
        cancels an attempt after that many seconds (a failed attempt).
        """
        hooks = Hooks(
            on_processing=on_processing, on_success=on_success, on_retrying=on_retrying, on_failed=on_failed
        )

        def register(handler: Callable[[JobCtx, Any], Awaitable[Any]]) -> Task[Any, Any]:
            task: Task[Any, Any] = Task(
                self,
                handler,
                name=name,
                queue=queue,
                max_retries=max_retries,
                retry=retry,
                timeout=timeout,
                priority=priority,
                concurrency=concurrency,
                hooks=hooks,
            )
            if task.name in self.tasks:
                raise ConfigurationError(f"a task named {task.name!r} is already registered")
            self.tasks[task.name] = task
            return task

        return register(fn) if fn is not None else register

    def periodic(
        self,
        schedule: Schedule,
        *,
        payload: Any = None,
        missed: Missed = "latest",
        name: str | None = None,
        queue: str = "default",
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        priority: int = 0,
    ) -> Callable[[Callable[[JobCtx, Any], Awaitable[R]]], Task[Any, R]]:
        """Register a task that runs on ``schedule`` (``Cron``, ``Interval``, ``Daily``, ``Monthly``).

        Every worker process runs the scheduler; each tick still runs exactly once (see
        :mod:`asynctask.periodic`). ``missed="latest"`` runs the most recent missed tick once
        after downtime, ``"skip"`` runs none. The handler takes ``(ctx)`` or ``(ctx, payload)``.

        >>> @app.periodic(Cron("*/5 * * * *"))          # doctest: +SKIP
        ... async def refresh(ctx: JobCtx) -> None: ...
        """

        def register(handler: Callable[[JobCtx, Any], Awaitable[R]]) -> Task[Any, R]:
            task: Task[Any, R] = self.task(
                name=name,
                queue=queue,
                max_retries=max_retries,
                retry=retry,
                timeout=timeout,
                priority=priority,
            )(handler)
            periodic = Periodic(task, schedule, payload=payload, missed=missed)
            # Keep finished ticks for two periods, so a restart can tell a tick that ran from one
            # that was missed (the id is deterministic, so a kept record blocks a re-run).
            task.min_ttl = 2 * periodic.period(datetime.now(UTC)) + 60
            self.periodic_tasks[task.name] = periodic
            return task

        return register

    def pipeline(
        self,
        name: str,
        steps: Sequence[Step | Callable[[JobCtx, Any], Awaitable[Any]]],
        *,
        queue: str = "default",
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        priority: int = 0,
    ) -> Task[Any, Any]:
        """A task made of steps, each one's output the next one's input (gotasks' chained handlers).

        Wrap a step in :func:`~asynctask.reentrant` to retry it in place; a plain step's failure
        fails the attempt. Progress is saved after every step, so a retried or re-claimed job
        resumes at the step that failed; ``job.state`` holds the step index and a log of failures.

        >>> resize = app.pipeline("resize", [download, reentrant(convert, times=3, sleep=0.1), upload])
        ...                                                           # doctest: +SKIP
        """
        return self.task(
            name=name, queue=queue, max_retries=max_retries, retry=retry, timeout=timeout, priority=priority
        )(pipeline_handler(steps))

    def incremental(
        self,
        *,
        name: str | None = None,
        queue: str = "default",
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        priority: int = 0,
    ) -> Callable[[Callable[[JobCtx, S], Awaitable[S | Done[R]]]], Task[S, R]]:
        """A task whose handler is a step function ``(ctx, state) -> state | Done(result)`` (Stater).

        The payload is the first state. The step is called again and again; the state is saved
        after each call (fenced by the lease), so a retry or another worker resumes from it.
        ``await app.pause(id)`` stops it after the current step; ``await app.resume(id)``
        continues from the saved state. ``timeout`` applies to each attempt.
        """

        def register(step: Callable[[JobCtx, S], Awaitable[S | Done[R]]]) -> Task[S, R]:
            task: Task[S, R] = self.task(
                name=name or step.__name__,
                queue=queue,
                max_retries=max_retries,
                retry=retry,
                timeout=timeout,
                priority=priority,
            )(incremental_handler(step))
            return task

        return register

    def add_middleware(self, middleware: Middleware) -> Middleware:
        """Wrap every handler call: ``async def mw(ctx, call_next): ... return await call_next()``."""
        self.middleware.append(middleware)
        return middleware

    def get_task(self, name: str) -> Task[Any, Any]:
        try:
            return self.tasks[name]
        except KeyError:
            known = ", ".join(sorted(set(self.tasks) - _BUILTIN)) or "none"
            raise UnknownTask(f"no task named {name!r} is registered (known: {known})") from None

    def result_codec(self, task_name: str) -> Codec:
        task = self.tasks.get(task_name)
        return task.result_codec if task is not None else _ANY

    @property
    def queues(self) -> list[str]:
        """The queues of the registered tasks, in registration order."""
        user = [t.queue for name, t in self.tasks.items() if name not in _BUILTIN]
        return list(dict.fromkeys(user)) or ["default"]

    # --- connection ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect to the broker; nested opens are counted, so an embedded worker can share it."""
        if self._open_lock is None:
            self._open_lock = anyio.Lock()
        async with self._open_lock:
            if self._opened == 0:
                await self.broker.open()
            self._opened += 1

    async def close(self) -> None:
        if self._opened == 0:
            return
        assert self._open_lock is not None
        # Shielded whole: a cancelled caller must still count down and close the broker,
        # or its connections leak.
        with anyio.CancelScope(shield=True):
            async with self._open_lock:
                self._opened -= 1
                if self._opened == 0:
                    await self.broker.close()

    async def __aenter__(self) -> App:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- publishing --------------------------------------------------------------------------

    def build_job(self, spec: JobSpec) -> NewJob:
        """Validate and encode one job; raises before anything is sent."""
        task = self.get_task(spec.task)
        payload = task.payload_codec.encode(spec.payload)
        if len(payload) > self.max_payload_size:
            raise PayloadTooLarge(
                f"payload of task {task.name!r} is {len(payload)} bytes; the limit is {self.max_payload_size}"
            )
        if task.takes_payload:
            task.payload_codec.decode(payload)  # fail at publish, not three retries later
        now = self.clock()
        if spec.at is not None and spec.delay is not None:
            raise ConfigurationError("give either delay= or at=, not both")
        if spec.at is not None:
            if spec.at.tzinfo is None:
                raise ConfigurationError("at= must be a timezone-aware datetime")
            run_at = spec.at.timestamp()
        elif spec.delay is not None:
            delay = spec.delay.total_seconds() if isinstance(spec.delay, timedelta) else float(spec.delay)
            if delay < 0 or not math.isfinite(delay):
                raise ConfigurationError(f"delay must be a finite number of seconds >= 0, got {spec.delay!r}")
            run_at = now + delay
        else:
            run_at = now
        max_retries = spec.max_retries
        if max_retries is None:
            max_retries = task.max_retries if task.max_retries is not None else self.max_retries
        if max_retries < 0:
            raise ConfigurationError("max_retries must be >= 0")
        return NewJob(
            id=validate_job_id(spec.job_id) if spec.job_id is not None else uuid.uuid4().hex,
            task=task.name,
            queue=validate_queue(spec.queue) if spec.queue is not None else task.queue,
            payload=payload,
            priority=spec.priority if spec.priority is not None else task.priority,
            max_retries=max_retries,
            timeout=spec.timeout if spec.timeout is not None else task.timeout,
            run_at=run_at,
        )

    async def publish(
        self,
        task: Task[Any, R] | str,
        payload: Any = None,
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        job_id: str | None = None,
        queue: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        priority: int | None = None,
        connection: Any = None,
    ) -> JobHandle[R]:
        """Publish one job and return its handle.

        ``delay`` (seconds or timedelta) or ``at`` (aware datetime) defer it; ``job_id`` makes the
        publish idempotent: if a job with that id exists, it is returned and nothing is enqueued.
        ``connection`` (Postgres) enqueues inside the caller's transaction.
        """
        name = task if isinstance(task, str) else task.name
        spec = JobSpec(
            task=name,
            payload=payload,
            delay=delay,
            at=at,
            job_id=job_id,
            queue=queue,
            max_retries=max_retries,
            timeout=timeout,
            priority=priority,
        )
        [handle] = await self.publish_many([spec], connection=connection)
        return handle

    async def publish_many(self, specs: Iterable[JobSpec], *, connection: Any = None) -> list[JobHandle[Any]]:
        """Publish many jobs in one broker round trip where the broker allows it."""
        jobs = [self.build_job(spec) for spec in specs]
        if not jobs:
            return []
        created = await self.broker.enqueue(jobs, connection=connection)
        return [JobHandle(self, job.id, job.task, created=c) for job, c in zip(jobs, created, strict=True)]

    # --- inspection and management ---------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        """The job's record (status, attempts, times, last error, result bytes), or ``None``."""
        return await self.broker.get(job_id)

    def decode_result(self, job: Job) -> Any:
        """The decoded result of a job record (``None`` when it has none)."""
        if job.result is None:
            return None
        # A waiting parent holds its first phase's result; the task's codec is its on_finish's.
        codec = _ANY if job.status is JobStatus.WAITING else self.result_codec(job.task)
        return codec.decode(job.result)

    async def result(self, job_id: str, *, timeout: float | None = None) -> Any:
        """Wait until the job finishes and return its decoded result.

        Raises :class:`JobFailed` if it failed or was cancelled, :class:`JobTimeout` if it is not
        finished after ``timeout`` seconds, :class:`JobNotFound` if it does not exist.
        """
        interval = 0.002
        with anyio.move_on_after(timeout if timeout is not None else math.inf) as scope:
            while True:
                job = await self.broker.get(job_id)
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
    ) -> list[Job]:
        """Jobs matching every given filter, newest first."""
        return await self.broker.list_jobs(
            status=JobStatus(status) if status is not None else None, queue=queue, task=task, limit=limit
        )

    async def queue_stats(self) -> list[QueueStats]:
        """Per queue, its live jobs counted by status and when its oldest ready job became ready.

        Every queue that holds jobs, plus this app's own queues (all zeros while empty), sorted
        by name; one broker call (see :meth:`Broker.queue_stats <asynctask.Broker.queue_stats>`).
        """
        found = {stats.queue: stats for stats in await self.broker.queue_stats()}
        for queue in self.queues:
            found.setdefault(queue, QueueStats(queue=queue, counts=zero_counts()))
        return [found[queue] for queue in sorted(found)]

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: at once if it waits, at its next lease renewal if it runs."""
        ttl = self.result_ttl
        job = await self.broker.cancel(job_id, expires_at=self.clock() + ttl if ttl is not None else None)
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return job

    async def retry(self, job_id: str) -> Job:
        """Queue a failed (dead-lettered) or cancelled job again, with a fresh attempt count."""
        job = await self.broker.retry(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return job

    async def delete(self, job_id: str) -> bool:
        return await self.broker.delete(job_id)

    async def pause(self, job_id: str) -> Job:
        """Park a queued job, or stop a running incremental task after its current step."""
        job = await self.broker.pause(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return job

    async def resume(self, job_id: str) -> Job:
        """Queue a paused job again; it continues from its saved state."""
        job = await self.broker.resume(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return job

    # --- groups and chains ---------------------------------------------------------------------

    async def group(self, specs: Sequence[JobSpec], *, group_id: str | None = None) -> str:
        """Publish jobs as a group (tasqueue's Group); returns the group id.

        The group succeeds only if every job does; :meth:`get_group` shows its progress.
        """
        return await publish_group(self, specs, group_id)

    async def chain(self, specs: Sequence[JobSpec], *, chain_id: str | None = None) -> str:
        """Publish jobs to run one after another (tasqueue's Chain); returns the chain id.

        Each link sees the previous link's result as ``ctx.prev_result``; a failed link stops the
        chain, and :meth:`get_chain` says which link failed and why.
        """
        return await publish_chain(self, specs, chain_id)

    async def get_group(self, group_id: str) -> GroupInfo:
        """The group's overall status and each member job."""
        return await group_info(self, group_id)

    async def get_chain(self, chain_id: str) -> ChainInfo:
        """The chain's overall status, each link's status, and which link failed."""
        return await chain_info(self, chain_id)

    # --- running -----------------------------------------------------------------------------

    def worker(self, **options: Any) -> Worker:
        """A :class:`~asynctask.worker.Worker` for this app; see its options."""
        from asynctask.worker import Worker

        return Worker(self, **options)

    async def run_worker(self, **options: Any) -> None:
        """Run a worker until it is stopped (shortcut for ``await app.worker(...).run()``)."""
        await self.worker(**options).run()

    def __repr__(self) -> str:
        return f"<App broker={self._broker.display_url} tasks={len(set(self.tasks) - _BUILTIN)}>"
