"""Tasks: a handler plus its options, and the typed handle used to publish it."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from asynctask.codec import Codec
from asynctask.ctx import JobCtx
from asynctask.names import validate_queue, validate_task_name
from asynctask.retry import RetryPolicy

if TYPE_CHECKING:
    from asynctask.app import App
    from asynctask.models import Job

__all__ = ["Hooks", "JobHandle", "JobSpec", "Task"]

P = TypeVar("P")
R = TypeVar("R")

Handler = Callable[[JobCtx, P], Awaitable[R]]
Hook = Callable[..., Awaitable[None]]


class Hooks(msgspec.Struct, frozen=True, kw_only=True):
    """Callbacks around each attempt (tasqueue's callbacks); errors in them are logged, not raised.

    ``on_processing(ctx)``, ``on_success(ctx, result)``, ``on_retrying(ctx, exc)``, ``on_failed(ctx, exc)``.
    """

    on_processing: Hook | None = None
    on_success: Hook | None = None
    on_retrying: Hook | None = None
    on_failed: Hook | None = None


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A job to publish, for :meth:`App.publish_many`: build one with :meth:`Task.spec`."""

    task: str
    payload: Any = None
    delay: float | timedelta | None = None
    at: datetime | None = None
    job_id: str | None = None
    queue: str | None = None
    max_retries: int | None = None
    timeout: float | None = None
    priority: int | None = None


class JobHandle(Generic[R]):
    """What :meth:`Task.publish` returns: the job's id and ways to follow it."""

    __slots__ = ("_app", "created", "id", "task")

    def __init__(self, app: App, job_id: str, task: str, *, created: bool) -> None:
        self._app = app
        self.id = job_id
        self.task = task
        #: ``False`` when a job with this id already existed (idempotent publish).
        self.created = created

    async def result(self, timeout: float | None = None) -> R:
        """Wait for the job to finish and return its result; see :meth:`App.result`."""
        result: R = await self._app.result(self.id, timeout=timeout)
        return result

    async def info(self) -> Job | None:
        return await self._app.get_job(self.id)

    async def cancel(self) -> Job:
        return await self._app.cancel(self.id)

    def __repr__(self) -> str:
        return f"<JobHandle {self.task} id={self.id}{'' if self.created else ' (existing)'}>"


class Task(Generic[P, R]):
    """A registered handler. ``await task.publish(payload)`` is type-checked against the handler."""

    def __init__(
        self,
        app: App,
        fn: Callable[..., Awaitable[Any]],
        *,
        name: str | None = None,
        queue: str = "default",
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        priority: int = 0,
        concurrency: int | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"task handler {fn!r} must be an async function")
        if concurrency is not None and concurrency < 1:
            raise ValueError("task concurrency must be at least 1")
        if max_retries is not None and max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.app = app
        self.fn = fn
        self.name = validate_task_name(name or fn.__name__)
        self.queue = validate_queue(queue)
        self.max_retries = max_retries
        self.retry = retry
        self.timeout = timeout
        self.priority = priority
        self.concurrency = concurrency
        self.hooks = hooks or Hooks()
        #: Keep finished jobs of this task at least this many seconds (periodic ticks need it).
        self.min_ttl: float | None = None
        #: Runs once all subtasks spawned by a job of this task have finished.
        self.finish_handler: Callable[[JobCtx, list[Job]], Awaitable[Any]] | None = None
        payload_type, result_type, self.takes_payload = _signature(fn)
        self.payload_codec = Codec(payload_type)
        self.result_codec = Codec(result_type)

    async def publish(
        self,
        payload: P,
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
        """Publish one job of this task; see :meth:`App.publish`."""
        handle: JobHandle[R] = await self.app.publish(
            self,
            payload,
            delay=delay,
            at=at,
            job_id=job_id,
            queue=queue,
            max_retries=max_retries,
            timeout=timeout,
            priority=priority,
            connection=connection,
        )
        return handle

    def spec(
        self,
        payload: P,
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        job_id: str | None = None,
        queue: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        priority: int | None = None,
    ) -> JobSpec:
        """A job of this task for :meth:`App.publish_many`."""
        return JobSpec(
            task=self.name,
            payload=payload,
            delay=delay,
            at=at,
            job_id=job_id,
            queue=queue,
            max_retries=max_retries,
            timeout=timeout,
            priority=priority,
        )

    def on_finish(
        self, fn: Callable[[JobCtx, list[Job]], Awaitable[Any]]
    ) -> Callable[[JobCtx, list[Job]], Awaitable[Any]]:
        """Register ``async def fn(ctx, children: list[Job])``: runs once, as its own attempt, after
        every subtask spawned by a job of this task has finished (failed ones included).

        Its return value becomes the parent job's result (``None`` keeps the first phase's).
        """
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("on_finish handler must be an async function (ctx, children)")
        self.finish_handler = fn
        # The job's final result is the finish handler's, so results decode as its return type.
        result_type = type_hints(fn).get("return", Any)
        self.result_codec = Codec(Any if result_type is type(None) else result_type)
        return fn

    def subtask(self, fn: Callable[[JobCtx, Any], Awaitable[Any]]) -> Task[Any, Any]:
        """Register ``fn`` as this task's own subtask handler (Stepper's ``SubtaskHandler``),
        named ``<task>.subtask``; spawn it with ``ctx.spawn_subtask(payload)``."""
        return self.app.task(name=f"{self.name}.subtask", queue=self.queue)(fn)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue}>"


def type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s resolved annotations; ``{}`` when they cannot be resolved (then: untyped, ``Any``)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # e.g. a name only imported under TYPE_CHECKING or in another scope
        return {}


def _signature(fn: Callable[..., Any]) -> tuple[Any, Any, bool]:
    """(payload type, result type, whether the handler takes a payload) from annotations."""
    params = list(inspect.signature(fn).parameters.values())
    if not 1 <= len(params) <= 2:
        raise TypeError(f"task handler {fn.__qualname__} must take (ctx) or (ctx, payload)")
    hints = type_hints(fn)
    payload_type: Any = hints.get(params[1].name, Any) if len(params) == 2 else type(None)
    result_type: Any = hints.get("return", Any)
    if result_type is type(None):
        result_type = Any
    return payload_type, result_type, len(params) == 2
