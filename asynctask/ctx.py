"""The job context handed to every handler, and the one ambient value: the current context."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from functools import partial
from typing import Any, Protocol, TypeVar, Unpack

import anyio.to_thread
import msgspec

from asynctask.brokers.base import Broker
from asynctask.errors import ConfigurationError, LeaseLost
from asynctask.models import Job
from asynctask.options import JobBuilder, PublishOptions
from asynctask.workflows.meta import list_children, read_meta

__all__ = ["NO_RESOURCES", "JobCtx", "RunSync", "SpawnFn", "current_ctx"]

T = TypeVar("T")

#: ``await run_sync(fn, *args)``: runs blocking ``fn(*args)`` in a thread.
RunSync = Callable[..., Awaitable[Any]]

#: ``spawn(task_name, payload, options) -> child id``: records a subtask of the running attempt.
SpawnFn = Callable[[str, Any, PublishOptions], str]

_current: ContextVar[JobCtx] = ContextVar("asynctask_current_job")


class _NoResources:
    def __repr__(self) -> str:
        return "NO_RESOURCES"


#: ``ctx.resources`` when the app has no worker lifespan (reading it then raises).
NO_RESOURCES: Any = _NoResources()

# Outside a worker (a bare JobCtx): anyio's threads, abandoned when the caller is cancelled.
_to_thread: RunSync = partial(anyio.to_thread.run_sync, abandon_on_cancel=True)


def current_ctx() -> JobCtx:
    """The :class:`JobCtx` of the job running in this task; ``LookupError`` outside a job."""
    return _current.get()


class _Named(Protocol):
    """Anything with a task name (a :class:`~asynctask.Task`): what ``spawn`` accepts besides a str."""

    @property
    def name(self) -> str: ...


class JobCtx:
    """What a handler knows about its job, and how it talks back to the broker.

    >>> @app.task                                          # doctest: +SKIP
    ... async def crawl(ctx: JobCtx, url: str) -> int:
    ...     page = ctx.state or 0                         # resume where the last attempt stopped
    ...     for page in range(page, 10):
    ...         await fetch(url, page)
    ...         await ctx.set_state(page + 1)             # fenced by the lease
    ...     return page

    The worker builds one per attempt; :func:`asynctask.testing.perform` builds one for a test.
    """

    __slots__ = (
        "_broker",
        "_builder",
        "_resources",
        "_run_sync",
        "_spawn",
        "_state",
        "deadline",
        "job",
        "pause_requested",
        "retry_delay",
        "worker_id",
    )

    def __init__(
        self,
        job: Job,
        *,
        broker: Broker,
        builder: JobBuilder,
        spawn: SpawnFn,
        worker_id: str,
        deadline: float | None = None,
        resources: Any = NO_RESOURCES,
        run_sync: RunSync | None = None,
    ) -> None:
        self.job = job
        self.worker_id = worker_id
        #: When the attempt times out (the app clock's time), or ``None``.
        self.deadline = deadline
        #: Set by :meth:`retry_after`: the delay before the next attempt if this one fails.
        self.retry_delay: float | None = None
        #: Set when ``app.pause(id)`` asked this job to stop after its current step.
        self.pause_requested = False
        self._broker = broker
        self._builder = builder
        self._spawn = spawn
        self._state: Any = _UNSET
        self._resources = resources
        self._run_sync = run_sync or _to_thread

    # --- facts about the job ---------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def task(self) -> str:
        return self.job.task

    @property
    def queue(self) -> str:
        return self.job.queue

    @property
    def attempt(self) -> int:
        """The number of this attempt, starting at 1."""
        return self.job.attempts

    @property
    def max_retries(self) -> int:
        return self.job.max_retries

    @property
    def enqueued_at(self) -> float:
        return self.job.created_at

    @property
    def started_at(self) -> float:
        return self.job.started_at or self.job.created_at

    @property
    def previous_error(self) -> str | None:
        """The error of the previous attempt, if it failed."""
        return self.job.error

    @property
    def parent_id(self) -> str | None:
        """The job waiting for this one: a subtask's parent, or the group or chain it belongs to."""
        return self.job.parent_id

    @property
    def prev_result(self) -> Any:
        """In a chain: the previous link's result (decoded JSON); ``None`` for the first link."""
        return read_meta(self.job).prev

    @property
    def resources(self) -> Any:
        """What the app's worker lifespan yielded (``@app.lifespan``): a pool, a client, ...

        The worker enters the lifespan once, before it claims a job, and every attempt it runs
        shares the value. Typed ``Any``; :meth:`resources_as` gives it a type.
        :class:`~asynctask.errors.ConfigurationError` when the app has no lifespan.
        """
        resources = self._resources
        if resources is NO_RESOURCES:
            raise ConfigurationError(
                f"job {self.id} ({self.task}): ctx.resources is empty because the app registers no "
                "worker lifespan; add one with @app.lifespan (see 'Worker lifespan and resources')"
            )
        return resources

    def resources_as(self, type_: type[T]) -> T:
        """:attr:`resources`, typed: ``pool = ctx.resources_as(Resources).pool`` is checked by mypy.

        Raises :class:`TypeError` if the lifespan yielded something else (checked with
        ``isinstance`` when ``type_`` allows it: a class, not a Protocol or a ``TypedDict``).
        """
        resources = self.resources
        try:
            ok = isinstance(resources, type_)
        except TypeError:  # not checkable at run time: trust the annotation
            ok = True
        if not ok:
            raise TypeError(
                f"ctx.resources is a {type(resources).__name__}, not a {getattr(type_, '__name__', type_)}: "
                "check what the worker lifespan yields"
            )
        return resources  # type: ignore[no-any-return]

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn(*args)`` in the worker's thread pool and return its result.

        The pool is bounded by the worker's concurrency; ``def`` handlers run there too. If the
        attempt is interrupted (timeout, cancel, shutdown) the thread runs on and its result is
        discarded: a thread cannot be killed.
        """
        result: T = await self._run_sync(fn, *args)
        return result

    # --- subtasks ----------------------------------------------------------------------------

    async def spawn(self, task: _Named | str, payload: Any = None, **options: Unpack[PublishOptions]) -> str:
        """Run ``task`` as a subtask of this job; returns the child's id (``<this id>:<n>``).

        The child is validated now (like a publish) but enqueued only when this attempt
        succeeds, atomically with its completion; this job then waits for its children and, when
        the last one finishes, runs its ``on_finish`` handler. ``options`` are those of
        ``publish`` (``queue``, ``priority``, ``delay``, ...; ``job_id`` is set for you).
        """
        return self._spawn(task if isinstance(task, str) else task.name, payload, options)

    async def spawn_subtask(self, payload: Any = None, **options: Unpack[PublishOptions]) -> str:
        """Spawn this task's own ``.subtask`` handler (see :meth:`Task.subtask`)."""
        return self._spawn(f"{self.job.task}.subtask", payload, options)

    async def children(self) -> list[Job]:
        """This job's subtasks (in the finish phase: all finished), in spawn order."""
        return await list_children(self._broker, self.job.id)

    def decode_result(self, job: Job) -> Any:
        """The decoded result of another job's record, e.g. a child's in ``on_finish``."""
        return self._builder.decode_result(job)

    # --- talking back ------------------------------------------------------------------------

    def retry_after(self, seconds: float) -> None:
        """If this attempt fails, wait ``seconds`` before the next one (instead of the policy's delay)."""
        self.retry_delay = float(seconds)

    @property
    def state(self) -> Any:
        """The last state saved with :meth:`set_state` (by this attempt or an earlier one), or ``None``."""
        if self._state is _UNSET:
            self._state = None if self.job.state is None else msgspec.json.decode(self.job.state)
        return self._state

    def state_as(self, type_: type[T]) -> T | None:
        """The saved state decoded as ``type_`` (a Struct, dataclass, ...)."""
        if self.job.state is None and self._state is _UNSET:
            return None
        return msgspec.convert(self.state, type_)

    async def set_state(self, value: Any) -> None:
        """Persist ``value`` now, so a retry or another worker resumes from it.

        Raises :class:`~asynctask.errors.LeaseLost` if this worker no longer owns the job.
        """
        data = msgspec.json.encode(value)
        if not await self._broker.save(self.job.id, self.job.token, state=data):
            raise LeaseLost(f"job {self.job.id}: lease lost, state not saved")
        self._state = msgspec.json.decode(data)

    async def save(self, value: Any) -> None:
        """Store ``value`` as the job's result now; the handler's return value replaces it unless
        that is ``None``. The next link of a chain sees it as ``ctx.prev_result`` either way."""
        data = self._builder.result_codec(self.job.task).encode(value)
        if not await self._broker.save(self.job.id, self.job.token, result=data):
            raise LeaseLost(f"job {self.job.id}: lease lost, result not saved")
        self.job = msgspec.structs.replace(self.job, result=data)

    def __repr__(self) -> str:
        return f"<JobCtx {self.task} id={self.id} attempt={self.attempt}/{self.max_retries + 1}>"


class _Unset:
    pass


_UNSET: Any = _Unset()
