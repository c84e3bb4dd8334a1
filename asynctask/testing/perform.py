"""``await perform(task, payload)``: call one handler with a real :class:`~asynctask.JobCtx`.

Oban's ``perform_job``: no broker round trip, no worker. The payload goes through the task's codec
as a publish would (so a dict becomes the handler's Struct or model, and a bad payload raises
:class:`~asynctask.errors.PayloadDecodeError`); the result must be encodable as the worker would
store it. ``ctx.set_state``, ``ctx.save`` and ``ctx.spawn`` work and are recorded in a
:class:`Recorder`; nothing is enqueued.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, TypeVar, cast, overload

import anyio
import msgspec

from asynctask.brokers.base import Broker
from asynctask.ctx import NO_RESOURCES, JobCtx, _current
from asynctask.models import Job, JobStatus
from asynctask.options import JobSpec, PublishOptions
from asynctask.registry import Registry
from asynctask.task import Task
from asynctask.workflows.subtasks import Spawned

__all__ = ["Recorder", "perform"]

R = TypeVar("R")
P = TypeVar("P")


class Recorder:
    """What a handler did during :func:`perform`, in order.

    * ``states``: every value saved with ``ctx.set_state`` (decoded JSON);
    * ``saved``: every result stored with ``ctx.save`` (decoded as the task's result type);
    * ``spawned``: every subtask, as a :class:`~asynctask.JobSpec` (not enqueued);
    * ``retry_after``: what the handler passed to ``ctx.retry_after``, if anything;
    * ``ctx``: the context the handler got.
    """

    def __init__(self) -> None:
        self.states: list[Any] = []
        self.saved: list[Any] = []
        self.spawned: list[JobSpec] = []
        self.retry_after: float | None = None
        self.ctx: JobCtx | None = None

    def __repr__(self) -> str:
        return f"<Recorder states={len(self.states)} saved={len(self.saved)} spawned={len(self.spawned)}>"


@overload
async def perform(
    task: Task[None, R],
    *,
    state: Any = None,
    attempt: int = 1,
    resources: Any = NO_RESOURCES,
    job_id: str | None = None,
    record: Recorder | None = None,
) -> R: ...


@overload
async def perform(
    task: Task[P, R],
    payload: P,
    *,
    state: Any = None,
    attempt: int = 1,
    resources: Any = NO_RESOURCES,
    job_id: str | None = None,
    record: Recorder | None = None,
) -> R: ...


async def perform(
    task: Task[Any, Any],
    payload: Any = None,
    *,
    state: Any = None,
    attempt: int = 1,
    resources: Any = NO_RESOURCES,
    job_id: str | None = None,
    record: Recorder | None = None,
) -> Any:
    """Call ``task``'s handler once with ``payload``; return its result or raise what it raised.

    * ``state``: the state an earlier attempt saved (what ``ctx.state`` returns at first);
    * ``attempt``: the attempt number the handler sees (``ctx.attempt``);
    * ``resources``: what ``ctx.resources`` returns (the worker lifespan is not entered);
    * ``record``: a :class:`Recorder` that collects states, saved results and spawned subtasks;
    * the task's ``timeout`` applies (``TimeoutError``); hooks and middleware do not run.

    A ``def`` handler runs in a thread, as in a worker. ``Retry``, ``Fail`` and any other
    exception propagate: assert on them with ``pytest.raises``.
    """
    registry = task.owner
    if not isinstance(registry, Registry):
        raise TypeError(f"task {task.name!r} belongs to no App or Registry")
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    options: PublishOptions = {"job_id": job_id} if job_id is not None else {}
    new = registry.build_job(JobSpec(task.name, payload, **options))  # validates like a publish
    now = registry.clock()
    job = Job(
        id=new.id,
        task=new.task,
        queue=new.queue,
        payload=new.payload,
        status=JobStatus.RUNNING,
        priority=new.priority,
        attempts=attempt,
        max_retries=new.max_retries,
        timeout=new.timeout,
        run_at=now,
        created_at=now,
        started_at=now,
        token=1,
        state=None if state is None else msgspec.json.encode(state),
    )
    record = record if record is not None else Recorder()
    spawned = Spawned(job, registry)

    def spawn(name: str, value: Any, spawn_options: PublishOptions) -> str:
        child_id = spawned(name, value, spawn_options)
        record.spawned.append(JobSpec(name, value, **spawn_options))
        return child_id

    ctx = JobCtx(
        job,
        broker=cast(Broker, _Saves(task, record)),  # the two calls a JobCtx makes
        builder=registry,
        spawn=spawn,
        worker_id="asynctask.testing.perform",
        deadline=now + job.timeout if job.timeout else None,
        resources=resources,
    )
    record.ctx = ctx
    value = task.payload_codec.decode(job.payload) if task.takes_payload else None
    args = (ctx, value) if task.takes_payload else (ctx,)
    reset = _current.set(ctx)
    try:
        with anyio.fail_after(job.timeout) if job.timeout else nullcontext():
            result = await task.fn(*args) if task.is_async else await ctx.run_sync(task.fn, *args)
    finally:
        _current.reset(reset)
        record.retry_after = ctx.retry_delay
    if result is not None:
        try:
            task.result_codec.encode(result)
        except Exception as exc:
            raise TypeError(f"the result of task {task.name!r} could not be encoded: {exc}") from exc
    return result


class _Saves:
    """What a :class:`JobCtx` asks of its broker (``save``, and ``list_jobs`` for its children),
    for one performed job: saves are recorded and always accepted; there are no children."""

    def __init__(self, task: Task[Any, Any], record: Recorder) -> None:
        self._task = task
        self._record = record

    async def save(
        self, job_id: str, token: int, *, state: bytes | None = None, result: bytes | None = None
    ) -> bool:
        if state is not None:
            self._record.states.append(msgspec.json.decode(state))
        if result is not None:
            self._record.saved.append(self._task.result_codec.decode(result))
        return True

    async def list_jobs(self, **filters: Any) -> list[Job]:
        return []
