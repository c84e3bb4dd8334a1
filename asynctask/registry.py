"""The registry: tasks, periodic tasks, middleware, codecs, and building a job from a publish.

It sits between the storage layer (:mod:`asynctask.brokers`) and the two things built on top of
it, side by side: the client (:class:`~asynctask.App`: publish, inspect, manage) and the runtime
(:class:`~asynctask.Worker`). Both use the registry; neither knows the other. The App *is* a
registry with a broker; the worker is typed against :class:`WorkerHost`, so anything with a
registry and a broker can be run.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, Unpack, overload

from asynctask.brokers.base import Broker, Clock
from asynctask.codec import Codec
from asynctask.ctx import JobCtx
from asynctask.errors import ConfigurationError, PayloadTooLarge, UnknownTask
from asynctask.events import Events
from asynctask.flow import TaskLimit, check_unique, unique_key
from asynctask.handle import Publisher
from asynctask.ids import new_job_id
from asynctask.lifespan import LifespanFactory, as_factory
from asynctask.models import Job, JobStatus, NewJob
from asynctask.names import validate_job_id, validate_queue
from asynctask.options import (
    JobSpec,
    PublishOptions,
    check_delay,
    check_headers,
    check_max_retries,
    check_priority,
    check_timeout,
)
from asynctask.periodic import Missed, Periodic, as_schedule
from asynctask.retry import Backoff, RetryPolicy
from asynctask.schedule import Schedule
from asynctask.task import Task, TaskOptions
from asynctask.workflows.chains import CHAIN_TASK, chain_finisher
from asynctask.workflows.groups import GROUP_TASK, group_finisher
from asynctask.workflows.incremental import Done, incremental_handler
from asynctask.workflows.pipelines import Step, pipeline_handler

__all__ = ["BUILTIN_TASKS", "IncrementalDecorator", "Middleware", "Registry", "TaskDecorator", "WorkerHost"]

P = TypeVar("P")
R = TypeVar("R")
S = TypeVar("S")
L = TypeVar("L", bound=Callable[[], Any])

#: The tasks every registry has: the finishers of group and chain containers.
BUILTIN_TASKS = frozenset({GROUP_TASK, CHAIN_TASK})

#: ``async def mw(ctx, call_next) -> result``: wraps every handler call in the worker.
Middleware = Callable[[JobCtx, Callable[[], Awaitable[Any]]], Awaitable[Any]]

_ANY = Codec()
_PUBLISH_OPTIONS = frozenset(PublishOptions.__annotations__)


class TaskDecorator(Protocol):
    """What ``@app.task(...)`` returns: registers a ``(ctx)`` or ``(ctx, payload)`` handler,
    ``async def`` or plain ``def`` (which runs in the worker's threads)."""

    @overload
    def __call__(self, fn: Callable[[JobCtx], Awaitable[R]], /) -> Task[None, R]: ...

    @overload
    def __call__(self, fn: Callable[[JobCtx, P], Awaitable[R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[[JobCtx], R], /) -> Task[None, R]: ...

    @overload
    def __call__(self, fn: Callable[[JobCtx, P], R], /) -> Task[P, R]: ...


class IncrementalDecorator(Protocol):
    """What ``@app.incremental(...)`` returns: registers a step ``(ctx, state) -> state | Done(result)``.

    The task's payload is typed (the state); its result is ``Any``: type checkers cannot yet pull
    ``R`` out of ``S | Done[R]``.
    """

    @overload
    def __call__(self, step: Callable[[JobCtx, S], Awaitable[S | Done[Any]]], /) -> Task[S, Any]: ...

    @overload
    def __call__(self, step: Callable[[JobCtx, S], S | Done[Any]], /) -> Task[S, Any]: ...


class Registry:
    """Tasks and the defaults they share; the base of :class:`~asynctask.App`.

    * ``clock``: POSIX seconds (``time.time``; tests pass a :class:`~asynctask.testing.FakeClock`);
    * ``result_ttl``: seconds a succeeded or cancelled job (and its result) is kept (1 hour);
    * ``failed_ttl``: seconds a failed job is kept in the dead-letter (7 days; ``None`` = forever);
    * ``max_payload_size``: largest encoded payload accepted by a publish (1 MiB);
    * ``max_retries`` / ``retry``: defaults for tasks that set none (3, exponential backoff).
    """

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        result_ttl: float | None = 3600.0,
        failed_ttl: float | None = 7 * 86400.0,
        max_payload_size: int = 1 << 20,
        max_retries: int = 3,
        retry: RetryPolicy | None = None,
    ) -> None:
        for name, ttl in (("result_ttl", result_ttl), ("failed_ttl", failed_ttl)):
            if ttl is not None and check_delay(ttl) <= 0:
                raise ConfigurationError(f"{name} must be > 0 seconds or None, got {ttl!r}")
        self.clock = clock
        self.result_ttl = result_ttl
        self.failed_ttl = failed_ttl
        self.max_payload_size = max_payload_size
        self.max_retries = check_max_retries(max_retries)
        self.retry_policy: RetryPolicy = retry or Backoff()
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.periodic_tasks: dict[str, Periodic] = {}
        self.middleware: list[Middleware] = []
        #: Who observes this registry's publishes and workers (metrics, tracing).
        self.events = Events()
        #: Where this registry's tasks publish (the App sets itself); ``None`` for a bare registry.
        self.publisher: Publisher | None = None
        #: Set by :meth:`lifespan`: what each worker enters before it claims a job.
        self.worker_lifespan: LifespanFactory | None = None
        self.register(group_finisher, name=GROUP_TASK, max_retries=3)
        self.register(chain_finisher, name=CHAIN_TASK, max_retries=3)

    # --- registering -----------------------------------------------------------------------

    def register(
        self, fn: Callable[..., Any], *, name: str | None = None, **options: Unpack[TaskOptions]
    ) -> Task[Any, Any]:
        """Register ``fn`` as a task (the plain form of :meth:`task`); returns the task."""
        task: Task[Any, Any] = Task(self, fn, name=name, **options)
        if task.name in self.tasks:
            raise ConfigurationError(f"a task named {task.name!r} is already registered")
        self.tasks[task.name] = task
        return task

    @overload
    def task(self, fn: Callable[[JobCtx], Awaitable[R]], /) -> Task[None, R]: ...

    @overload
    def task(self, fn: Callable[[JobCtx, P], Awaitable[R]], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[[JobCtx], R], /) -> Task[None, R]: ...

    @overload
    def task(self, fn: Callable[[JobCtx, P], R], /) -> Task[P, R]: ...

    @overload
    def task(
        self, fn: None = None, /, *, name: str | None = None, **options: Unpack[TaskOptions]
    ) -> TaskDecorator: ...

    def task(self, fn: Any = None, /, *, name: str | None = None, **options: Unpack[TaskOptions]) -> Any:
        """Register a handler ``(ctx, payload) -> result`` (or ``(ctx) -> result``) as a task.

        An ``async def`` handler runs on the worker's event loop; a plain ``def`` handler runs in
        the worker's thread pool (bounded by its concurrency; see "Sync handlers" in the README).
        The name defaults to the function's; :class:`~asynctask.task.TaskOptions` lists the options.
        """
        if fn is not None:
            return self.register(fn, name=name, **options)

        def register(handler: Callable[..., Any]) -> Task[Any, Any]:
            return self.register(handler, name=name, **options)

        return register

    def periodic(
        self,
        schedule: Schedule | str,
        *,
        payload: Any = None,
        missed: Missed = "latest",
        overlap: bool = False,
        name: str | None = None,
        **options: Unpack[TaskOptions],
    ) -> TaskDecorator:
        """Register a task that runs on ``schedule``: ``Cron``, ``Interval``, ``Daily``, ``Monthly``,
        or a cron string such as ``"*/5 * * * *"`` (UTC).

        Every worker process runs the scheduler; each tick still runs exactly once (see
        :mod:`asynctask.periodic`). ``missed="latest"`` runs the most recent missed tick once
        after downtime, ``"skip"`` runs none. The handler takes ``(ctx)`` or ``(ctx, payload)``.

        ``overlap=False`` (the default): a tick does not start while the previous tick of the task
        still runs anywhere in the cluster (the task gets ``global_concurrency=1``); a tick that
        waited until a later tick was due is skipped (the latest one runs), and with
        ``missed="skip"`` a tick that had to wait at all is skipped. Skipped ticks are recorded as
        ``cancelled`` with the reason. ``overlap=True`` lets ticks run side by side.

        >>> @app.periodic("*/5 * * * *")          # doctest: +SKIP
        ... async def refresh(ctx: JobCtx) -> None: ...
        """
        every = as_schedule(schedule)
        if missed not in ("latest", "skip"):
            raise ConfigurationError(f"missed must be 'latest' or 'skip', got {missed!r}")
        if not overlap:
            # One tick at a time, cluster-wide: a singleton, enforced by the broker's claim.
            if options.get("global_concurrency") not in (None, 1):
                raise ConfigurationError(
                    "a periodic task with overlap=False runs one tick at a time: "
                    "give global_concurrency=1 (or nothing), or overlap=True"
                )
            options["global_concurrency"] = 1

        def register(handler: Callable[..., Any]) -> Task[Any, Any]:
            task = self.register(handler, name=name, **options)
            periodic = Periodic(task, every, payload=payload, missed=missed, overlap=overlap)
            # Keep finished ticks for two periods, so a restart can tell a tick that ran from one
            # that was missed (the id is deterministic, so a kept record blocks a re-run).
            task.min_ttl = 2 * periodic.period(datetime.now(UTC)) + 60
            self.periodic_tasks[task.name] = periodic
            return task

        return register

    def pipeline(
        self,
        name: str,
        steps: Sequence[Step | Callable[[JobCtx, Any], Any]],
        /,
        **options: Unpack[TaskOptions],
    ) -> Task[Any, Any]:
        """A task made of steps, each one's output the next one's input (gotasks' chained handlers).

        Wrap a step in :func:`~asynctask.reentrant` to retry it in place; a plain step's failure
        fails the attempt. Progress is saved after every step, so a retried or re-claimed job
        resumes at the step that failed; ``job.state`` holds the step index and a log of failures.

        >>> resize = app.pipeline("resize", [download, reentrant(convert, times=3, sleep=0.1), upload])
        ...                                                           # doctest: +SKIP
        """
        return self.register(pipeline_handler(steps), name=name, **options)

    def incremental(self, *, name: str | None = None, **options: Unpack[TaskOptions]) -> IncrementalDecorator:
        """A task whose handler is a step function ``(ctx, state) -> state | Done(result)`` (Stater).

        The payload is the first state. The step is called again and again; the state is saved
        after each call (fenced by the lease), so a retry or another worker resumes from it.
        ``await app.pause(id)`` stops it after the current step; ``await app.resume(id)``
        continues from the saved state. ``timeout`` applies to each attempt.
        """

        def register(step: Callable[[JobCtx, Any], Any]) -> Task[Any, Any]:
            return self.register(incremental_handler(step), name=name or step.__name__, **options)

        return register

    def lifespan(self, fn: L) -> L:
        """Register the worker lifespan: what a worker sets up before its first job (a database
        pool, an HTTP client) and tears down after its last. Handlers get what it yields as
        ``ctx.resources``.

        >>> @app.lifespan                                          # doctest: +SKIP
        ... async def resources() -> AsyncIterator[Resources]:
        ...     async with asyncpg.create_pool(DSN) as pool:
        ...         yield Resources(pool=pool)

        ``fn`` is an async generator function (as above) or a callable returning an async context
        manager. Every worker (``asynctask worker``, ``worker.run()``, one embedded in a FastAPI
        lifespan) enters it once, after connecting to the broker and before claiming a job, and
        exits it after its drain. If entering fails, the worker stops without claiming anything.
        One per app: compose several resources inside it (``contextlib.AsyncExitStack``).
        """
        if self.worker_lifespan is not None:
            raise ConfigurationError(
                "a worker lifespan is already registered; an app has one: open every resource in it"
            )
        self.worker_lifespan = as_factory(fn)
        return fn

    def add_middleware(self, middleware: Middleware) -> Middleware:
        """Wrap every handler call: ``async def mw(ctx, call_next): ... return await call_next()``."""
        self.middleware.append(middleware)
        return middleware

    # --- looking up ----------------------------------------------------------------------------

    def get_task(self, name: str) -> Task[Any, Any]:
        try:
            return self.tasks[name]
        except KeyError:
            known = ", ".join(sorted(set(self.tasks) - BUILTIN_TASKS)) or "none"
            raise UnknownTask(f"no task named {name!r} is registered (known: {known})") from None

    def result_codec(self, task_name: str) -> Codec:
        """The codec of the task's results (any JSON for an unknown task)."""
        task = self.tasks.get(task_name)
        return task.result_codec if task is not None else _ANY

    def decode_result(self, job: Job) -> Any:
        """The decoded result of a job record (``None`` when it has none)."""
        if job.result is None:
            return None
        # A waiting parent holds its first phase's result; the task's codec is its on_finish's.
        codec = _ANY if job.status is JobStatus.WAITING else self.result_codec(job.task)
        return codec.decode(job.result)

    def task_limits(self) -> dict[str, TaskLimit]:
        """The cluster-wide limits of the tasks that declare some, by task name: what a worker
        passes with each claim."""
        return {name: task.limit for name, task in self.tasks.items() if task.limit is not None}

    @property
    def queues(self) -> list[str]:
        """The queues of the registered tasks, in registration order."""
        user = [t.queue for name, t in self.tasks.items() if name not in BUILTIN_TASKS]
        return list(dict.fromkeys(user)) or ["default"]

    # --- building jobs -------------------------------------------------------------------------

    def build_job(self, spec: JobSpec) -> NewJob:
        """Validate and encode one job; raises before anything is sent.

        Every option is checked here, once, with the same limits whatever the broker:
        :class:`~asynctask.options.PublishOptions` says which.
        """
        task = self.get_task(spec.task)
        options = spec.options
        unknown = set(options) - _PUBLISH_OPTIONS if options else None
        if unknown:
            raise ConfigurationError(
                f"unknown publish option(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(_PUBLISH_OPTIONS))}"
            )
        payload = task.payload_codec.encode(spec.payload)
        if len(payload) > self.max_payload_size:
            raise PayloadTooLarge(
                f"payload of task {task.name!r} is {len(payload)} bytes; the limit is {self.max_payload_size}"
            )
        if task.takes_payload:
            task.payload_codec.decode(payload)  # fail at publish, not three retries later
        if not options:
            # The common publish: every option from the task and the app.
            return NewJob(
                id=new_job_id(),
                task=task.name,
                queue=task.queue,
                payload=payload,
                priority=task.priority,
                max_retries=task.max_retries if task.max_retries is not None else self.max_retries,
                timeout=task.timeout,
                run_at=self.clock(),
                headers={},
                unique_key=unique_key(task.name, None, payload) if task.unique else None,
            )
        delay, at = options.get("delay"), options.get("at")
        if at is not None and delay is not None:
            raise ConfigurationError("give either delay= or at=, not both")
        now = self.clock()
        if at is not None:
            if not isinstance(at, datetime) or at.tzinfo is None:
                raise ConfigurationError(f"at= must be a timezone-aware datetime, got {at!r}")
            run_at = at.timestamp()
        else:
            run_at = now + (check_delay(delay) if delay is not None else 0.0)
        job_id = options.get("job_id")
        max_retries = options.get("max_retries")
        if max_retries is None:
            max_retries = task.max_retries if task.max_retries is not None else self.max_retries
        priority = options.get("priority")
        timeout = options.get("timeout")
        queue = options.get("queue")
        headers = options.get("headers")
        unique = check_unique(options.get("unique"))
        key = options.get("unique_key")
        if key is not None:
            validate_job_id(key, what="unique_key")
        elif unique is None:
            unique = task.unique
        return NewJob(
            id=validate_job_id(job_id) if job_id is not None else new_job_id(),
            task=task.name,
            queue=validate_queue(queue) if queue is not None else task.queue,
            payload=payload,
            priority=check_priority(priority) if priority is not None else task.priority,
            max_retries=check_max_retries(max_retries),
            timeout=check_timeout(timeout) if timeout is not None else task.timeout,
            run_at=run_at,
            headers=check_headers(headers) if headers is not None else {},
            unique_key=unique_key(task.name, key, payload) if key is not None or unique else None,
        )


class WorkerHost(Protocol):
    """What a worker runs: a registry and the broker its jobs live in (an :class:`~asynctask.App`).

    ``open``/``close`` are counted by the broker, so the worker can open what its host opened.
    """

    @property
    def registry(self) -> Registry: ...

    @property
    def broker(self) -> Broker: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...
