"""The job context handed to every handler, and the one ambient value: the current context."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from asynctask.errors import LeaseLost

if TYPE_CHECKING:
    from asynctask.app import App
    from asynctask.models import Job, NewJob
    from asynctask.task import Task

__all__ = ["JobCtx", "current_ctx"]

T = TypeVar("T")

_current: ContextVar[JobCtx] = ContextVar("asynctask_current_job")


def current_ctx() -> JobCtx:
    """The :class:`JobCtx` of the job running in this task; ``LookupError`` outside a job."""
    return _current.get()


class JobCtx:
    """What a handler knows about its job, and how it talks back to the broker.

    >>> @app.task                                          # doctest: +SKIP
    ... async def crawl(ctx: JobCtx, url: str) -> int:
    ...     page = ctx.state or 0                         # resume where the last attempt stopped
    ...     for page in range(page, 10):
    ...         await fetch(url, page)
    ...         await ctx.set_state(page + 1)             # fenced by the lease
    ...     return page
    """

    __slots__ = (
        "_retry_after",
        "_spawned",
        "_state",
        "app",
        "deadline",
        "job",
        "pause_requested",
        "worker_id",
    )

    def __init__(self, app: App, job: Job, *, worker_id: str, deadline: float | None) -> None:
        self.app = app
        self.job = job
        self.worker_id = worker_id
        #: When the attempt times out (the app clock's time), or ``None``.
        self.deadline = deadline
        self._retry_after: float | None = None
        self._state: Any = _UNSET
        self._spawned: list[NewJob] = []
        #: Set when ``app.pause(id)`` asked this job to stop after its current step.
        self.pause_requested = False

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
        from asynctask.workflows import read_meta

        return read_meta(self.job).prev

    # --- subtasks ----------------------------------------------------------------------------

    async def spawn(self, task: Task[T, Any] | str, payload: Any = None, **options: Any) -> str:
        """Run ``task`` as a subtask of this job; returns the child's id.

        Children are enqueued only when this attempt succeeds, atomically with its completion;
        this job then waits for them and, when the last one finishes, runs its ``on_finish``
        handler. ``options`` are those of ``publish`` (``queue``, ``priority``, ``delay``, ...).
        """
        from asynctask.task import JobSpec

        name = task if isinstance(task, str) else task.name
        child_id = f"{self.job.id}:{len(self._spawned)}"
        spec = JobSpec(task=name, payload=payload, job_id=child_id, **options)
        job = self.app.build_job(spec)
        self._spawned.append(msgspec.structs.replace(job, parent_id=self.job.id))
        return child_id

    async def spawn_subtask(self, payload: Any = None, **options: Any) -> str:
        """Spawn this task's own ``.subtask`` handler (see :meth:`Task.subtask`)."""
        return await self.spawn(f"{self.job.task}.subtask", payload, **options)

    async def children(self) -> list[Job]:
        """This job's subtasks (in the finish phase: all finished), oldest first."""
        from asynctask.workflows import child_order

        found = await self.app.broker.list_jobs(parent_id=self.job.id, limit=100_000)
        return sorted(found, key=child_order)

    # --- talking back ------------------------------------------------------------------------

    def retry_after(self, seconds: float) -> None:
        """If this attempt fails, wait ``seconds`` before the next one (instead of the policy's delay)."""
        self._retry_after = float(seconds)

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
        if not await self.app.broker.save(self.job.id, self.job.token, state=data):
            raise LeaseLost(f"job {self.job.id}: lease lost, state not saved")
        self._state = msgspec.json.decode(data)

    async def save(self, value: Any) -> None:
        """Store ``value`` as the job's result now (a later non-``None`` return value replaces it)."""
        codec = self.app.result_codec(self.job.task)
        if not await self.app.broker.save(self.job.id, self.job.token, result=codec.encode(value)):
            raise LeaseLost(f"job {self.job.id}: lease lost, result not saved")

    def __repr__(self) -> str:
        return f"<JobCtx {self.task} id={self.id} attempt={self.attempt}/{self.max_retries + 1}>"


class _Unset:
    pass


_UNSET: Any = _Unset()
