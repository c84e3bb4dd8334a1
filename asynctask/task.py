"""Tasks: a handler plus its options, and its typed ``publish``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypedDict, TypeVar, Unpack

import msgspec

from asynctask.calls import check_callable, is_async_callable
from asynctask.codec import Codec, type_hints
from asynctask.ctx import JobCtx
from asynctask.errors import ConfigurationError
from asynctask.flow import RateLimit, TaskLimit, Unique, check_concurrency, check_unique, parse_rate
from asynctask.handle import JobHandle, Publisher
from asynctask.names import validate_queue, validate_task_name
from asynctask.options import JobSpec, PublishOptions, check_max_retries, check_priority, check_timeout
from asynctask.retry import RetryPolicy
from asynctask.workflows.subtasks import FinishHandler

__all__ = ["Hook", "Hooks", "Task", "TaskOptions", "TaskOwner"]

P = TypeVar("P")
R = TypeVar("R")

#: ``async def hook(ctx[, result | exc])``, or a plain ``def`` (run in the worker's threads).
Hook = Callable[..., Any]


class TaskOptions(TypedDict, total=False):
    """The options of a task, declared once for ``@app.task``, ``@app.periodic``, ``app.pipeline``
    and ``@app.incremental``.

    * ``queue`` (``"default"``); ``priority`` (0; higher runs first);
    * ``max_retries`` (the App's, 3: attempts after the first) and ``retry`` (the App's policy);
    * ``retry_on`` / ``no_retry_on``: exception classes (one or a tuple) that are / are not
      retried; any other exception fails the job at once when ``retry_on`` is given (see
      :func:`~asynctask.runtime.outcome.decide`);
    * ``timeout``: seconds per attempt, after which the handler is cancelled (a failed attempt);
    * ``concurrency``: at most this many jobs of the task at once per worker;
    * ``global_concurrency``: at most this many running at once in the whole cluster (1: a
      singleton); ``rate_limit``: at most this many starts, cluster-wide (``"100/s"``, ``"30/m"``,
      ``"1000/h"`` or a :class:`~asynctask.flow.RateLimit`); both enforced by the broker's claim;
    * ``unique="active"``: every publish of the task is unique (see
      :class:`~asynctask.options.PublishOptions`);
    * ``on_processing(ctx)``, ``on_success(ctx, result)``, ``on_retrying(ctx, exc)``,
      ``on_failed(ctx, exc)``: hooks (tasqueue's callbacks; ``async def``, or ``def`` run in the
      worker's threads); an error in one is logged.
    """

    queue: str
    max_retries: int | None
    retry: RetryPolicy | None
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None
    no_retry_on: type[BaseException] | tuple[type[BaseException], ...] | None
    timeout: float | None
    priority: int
    concurrency: int | None
    global_concurrency: int | None
    rate_limit: str | RateLimit | None
    unique: Unique | None
    on_processing: Hook | None
    on_success: Hook | None
    on_retrying: Hook | None
    on_failed: Hook | None


class Hooks(msgspec.Struct, frozen=True, kw_only=True):
    """A task's callbacks around its attempts; see :mod:`asynctask.workflows.subtasks` for when a
    parent's fire."""

    on_processing: Hook | None = None
    on_success: Hook | None = None
    on_retrying: Hook | None = None
    on_failed: Hook | None = None


class TaskOwner(Protocol):
    """What a task belongs to (a :class:`~asynctask.registry.Registry`): where it publishes, and
    where its ``.subtask`` handler is registered."""

    @property
    def publisher(self) -> Publisher | None: ...

    def register(
        self, fn: Callable[..., Any], *, name: str | None = None, **options: Unpack[TaskOptions]
    ) -> Task[Any, Any]: ...


class Task(Generic[P, R]):
    """A registered handler. ``await task.publish(payload)`` is type-checked against the handler."""

    def __init__(
        self,
        owner: TaskOwner,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        **options: Unpack[TaskOptions],
    ) -> None:
        check_callable(fn, "task handler")
        concurrency = options.get("concurrency")
        if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
            raise ConfigurationError(f"task concurrency must be an integer >= 1, got {concurrency!r}")
        max_retries = options.get("max_retries")
        self.owner = owner
        self.fn = fn
        #: ``async def`` handlers run on the event loop; plain ``def`` ones in the worker's threads.
        self.is_async = is_async_callable(fn)
        self.name = validate_task_name(name or str(getattr(fn, "__name__", type(fn).__name__)))
        self.queue = validate_queue(options.get("queue", "default"))
        self.max_retries = None if max_retries is None else check_max_retries(max_retries)
        self.retry = options.get("retry")
        retry_on = options.get("retry_on")
        self.retry_on = None if retry_on is None else _exception_types("retry_on", retry_on)
        self.no_retry_on = _exception_types("no_retry_on", options.get("no_retry_on") or ())
        self.timeout = check_timeout(options.get("timeout"))
        self.priority = check_priority(options.get("priority", 0))
        self.concurrency = concurrency
        self.limit = _limit(options.get("global_concurrency"), options.get("rate_limit"))
        self.unique = check_unique(options.get("unique"))
        self.hooks = Hooks(
            on_processing=options.get("on_processing"),
            on_success=options.get("on_success"),
            on_retrying=options.get("on_retrying"),
            on_failed=options.get("on_failed"),
        )
        #: Keep finished jobs of this task at least this many seconds (periodic ticks need it).
        self.min_ttl: float | None = None
        #: Runs once all subtasks spawned by a job of this task have finished.
        self.finish_handler: FinishHandler | None = None
        payload_type, result_type, self.takes_payload = _signature(fn)
        self.payload_codec = Codec(payload_type, what=f"the payload of task {self.name!r}")
        self.result_codec = Codec(result_type, what=f"the result of task {self.name!r}")

    async def publish(
        self, payload: P, *, connection: Any = None, **options: Unpack[PublishOptions]
    ) -> JobHandle[R]:
        """Publish one job of this task; see :meth:`App.publish`."""
        publisher = self.owner.publisher
        if publisher is None:
            raise ConfigurationError(f"task {self.name!r} belongs to no App: publish it through an App")
        [handle] = await publisher.publish_many([self.spec(payload, **options)], connection=connection)
        return handle

    def spec(self, payload: P, **options: Unpack[PublishOptions]) -> JobSpec:
        """A job of this task for :meth:`App.publish_many`, groups and chains."""
        return JobSpec(self.name, payload, **options)

    def on_finish(self, fn: FinishHandler) -> FinishHandler:
        """Register ``async def fn(ctx, children: list[Job])``: runs once, as its own attempt, after
        every subtask spawned by a job of this task has finished (failed ones included).

        Its return value becomes the parent job's result (``None`` keeps the first phase's).
        Type checkers still see the first handler's result type on this task's handles: read
        the final result with ``app.result(handle.id)`` (typed ``Any``).
        """
        check_callable(fn, "on_finish handler")
        # The job's final result is the finish handler's, so results decode as its return type.
        result_type = type_hints(fn).get("return", Any)
        what = f"the on_finish result of task {self.name!r}"
        self.result_codec = Codec(Any if result_type is type(None) else result_type, what=what)
        self.finish_handler = fn
        return fn

    def subtask(self, fn: Callable[[JobCtx, Any], Any]) -> Task[Any, Any]:
        """Register ``fn`` as this task's own subtask handler (Stepper's ``SubtaskHandler``),
        named ``<task>.subtask``; spawn it with ``ctx.spawn_subtask(payload)``."""
        return self.owner.register(fn, name=f"{self.name}.subtask", queue=self.queue)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue}>"


def _limit(concurrency: object, rate: str | RateLimit | None) -> TaskLimit | None:
    """The task's cluster-wide limits, or ``None`` when it has none."""
    if concurrency is None and rate is None:
        return None
    return TaskLimit(
        concurrency=None if concurrency is None else check_concurrency(concurrency),
        rate=None if rate is None else parse_rate(rate),
    )


def _exception_types(option: str, value: object) -> tuple[type[BaseException], ...]:
    """``retry_on=`` / ``no_retry_on=``: one exception class or a tuple of them."""
    types = value if isinstance(value, tuple) else (value,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise ConfigurationError(f"{option} must be an exception class or a tuple of them, got {t!r}")
    return types


def _signature(fn: Callable[..., Any]) -> tuple[Any, Any, bool]:
    """(payload type, result type, whether the handler takes a payload) from annotations."""
    params = list(inspect.signature(fn).parameters.values())
    if not 1 <= len(params) <= 2:
        name = getattr(fn, "__qualname__", repr(fn))
        raise TypeError(f"task handler {name} must take (ctx) or (ctx, payload)")
    hints = type_hints(fn)
    payload_type: Any = hints.get(params[1].name, Any) if len(params) == 2 else type(None)
    result_type: Any = hints.get("return", Any)
    if result_type is type(None):
        result_type = Any
    return payload_type, result_type, len(params) == 2
