"""Durable workflows built on the broker's one primitive: a parent that waits for its children.

* **Subtasks** (Stepper): ``await ctx.spawn(task, payload)`` inside a handler. The children are
  enqueued atomically with the parent's successful completion (a parent that fails and retries
  leaves no children behind); the parent then ``waits``; when the last child finishes, the
  parent runs again in its *finish phase*, where the task's ``on_finish`` handler sees every
  child's result and error. Failed children do not stop ``on_finish``: it runs and sees them.
* **Groups** (tasqueue): a container job ``asynctask.group`` waits for its members; it succeeds
  only if they all do.
* **Chains** (tasqueue): a container ``asynctask.chain`` whose links run one after another; each
  link's success enqueues the next, which sees ``ctx.prev_result``; a failed link stops the chain
  and the chain's failure names it.
* **Pipelines** (gotasks): one job of steps, progress (next step, its input, a log of failures)
  persisted after every step so a retry resumes at the failed step.
* **Incremental tasks** (Stater): a step function called until it returns :class:`Done`, its
  state persisted after each step; ``app.pause(id)`` parks it after the current step.

Everything lives in the broker, so it survives a worker crash and works on every broker.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import anyio
import msgspec

from asynctask.ctx import JobCtx
from asynctask.errors import ConfigurationError, Fail, JobNotFound
from asynctask.models import Job, JobStatus, NewJob
from asynctask.names import validate_job_id
from asynctask.task import JobSpec, type_hints

if TYPE_CHECKING:
    from asynctask.app import App

__all__ = [
    "ChainInfo",
    "Done",
    "GroupInfo",
    "LinkInfo",
    "Meta",
    "Step",
    "reentrant",
]

R = TypeVar("R")

GROUP_TASK = "asynctask.group"
CHAIN_TASK = "asynctask.chain"


class Meta(msgspec.Struct, omit_defaults=True, frozen=True):
    """What the workflow layer keeps in a job's opaque ``meta``."""

    #: ``finish``: the job's children are done; run its finish phase.
    phase: Literal["run", "finish"] = "run"
    #: For a chain link: the chain's id, its index, and the previous link's result.
    chain: str | None = None
    index: int = 0
    prev: Any = None

    def encode(self) -> bytes:
        return msgspec.json.encode(self)


_META_DECODER = msgspec.json.Decoder(Meta)
_RUN = Meta()


def read_meta(job: Job) -> Meta:
    return _RUN if job.meta is None else _META_DECODER.decode(job.meta)


class Done(msgspec.Struct, Generic[R], frozen=True):
    """Returned by an incremental task's step function to finish with ``value`` as the result."""

    value: R


# --- groups and chains ---------------------------------------------------------------------


class GroupInfo(msgspec.Struct, frozen=True):
    """What :meth:`App.get_group` returns."""

    id: str
    #: ``running`` while members are unfinished, then ``succeeded`` or ``failed``.
    status: str
    jobs: list[Job]

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.status in (JobStatus.FAILED, JobStatus.CANCELLED)]


class LinkInfo(msgspec.Struct, frozen=True):
    index: int
    task: str
    #: ``pending`` for links not enqueued yet.
    status: str
    error: str | None = None


class ChainInfo(msgspec.Struct, frozen=True):
    """What :meth:`App.get_chain` returns."""

    id: str
    status: str
    links: list[LinkInfo]
    #: The index of the link that failed, if one did.
    failed_link: int | None = None


def child_order(job: Job) -> int:
    """Children, group members and chain links are ``<parent>:<n>``: order them by ``n``."""
    suffix = job.id.rsplit(":", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


def overall_status(container: Job) -> str:
    if container.status in (JobStatus.WAITING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SCHEDULED):
        return "running"
    return container.status.value


async def group_finisher(ctx: JobCtx) -> dict[str, int]:
    """The finish phase of a group: succeed only if every member did."""
    members = await ctx.app.broker.list_jobs(parent_id=ctx.id, limit=100_000)
    failed = [j for j in members if j.status is not JobStatus.SUCCEEDED]
    if failed:
        first = failed[0]
        summary = (first.error or first.status.value).strip().splitlines()[-1]
        raise Fail(
            f"{len(failed)} of {len(members)} jobs failed; first: {first.id} ({first.task}): {summary}"
        )
    return {"succeeded": len(members)}


async def chain_finisher(ctx: JobCtx) -> Any:
    """The finish phase of a chain: its result is the last link's; a failed link fails it."""
    links = sorted(
        await ctx.app.broker.list_jobs(parent_id=ctx.id, limit=100_000), key=lambda j: read_meta(j).index
    )
    total = len(msgspec.json.decode(ctx.job.payload, type=list[NewJob]))
    last = links[-1]
    if last.status is not JobStatus.SUCCEEDED:
        summary = (last.error or last.status.value).strip().splitlines()[-1]
        raise Fail(f"link {read_meta(last).index} ({last.task}) failed: {summary}")
    if len(links) != total:
        raise Fail(f"chain stopped after link {len(links) - 1} of {total}")
    return None if last.result is None else msgspec.json.decode(last.result)


async def next_link(app: App, link: Job, meta: Meta, result: bytes | None) -> NewJob | None:
    """The chain link after ``link``, carrying its result, or ``None`` at the end."""
    assert meta.chain is not None
    chain = await app.broker.get(meta.chain)
    if chain is None:
        return None
    links = msgspec.json.decode(chain.payload, type=list[NewJob])
    index = meta.index + 1
    if index >= len(links):
        return None
    prev = msgspec.json.decode(result) if result is not None else None
    return msgspec.structs.replace(
        links[index], run_at=app.clock(), meta=Meta(chain=chain.id, index=index, prev=prev).encode()
    )


def _container(app: App, task: str, job_id: str, queue: str, payload: bytes, *, pending: int) -> NewJob:
    return NewJob(
        id=job_id, task=task, queue=queue, payload=payload, max_retries=3, run_at=app.clock(), pending=pending
    )


async def publish_group(app: App, specs: Sequence[JobSpec], group_id: str | None) -> str:
    """Enqueue a group container waiting for its members, and the members, in one batch."""
    jobs = [app.build_job(spec) for spec in specs]
    if not jobs:
        raise ConfigurationError("a group needs at least one job")
    gid = validate_job_id(group_id) if group_id is not None else f"group-{uuid.uuid4().hex}"
    members = [msgspec.structs.replace(job, id=f"{gid}:{i}", parent_id=gid) for i, job in enumerate(jobs)]
    container = _container(app, GROUP_TASK, gid, jobs[0].queue, b"null", pending=len(members))
    await app.broker.enqueue([container, *members])
    return gid


async def publish_chain(app: App, specs: Sequence[JobSpec], chain_id: str | None) -> str:
    """Enqueue a chain container (its payload: every link) and the first link."""
    jobs = [app.build_job(spec) for spec in specs]
    if not jobs:
        raise ConfigurationError("a chain needs at least one job")
    cid = validate_job_id(chain_id) if chain_id is not None else f"chain-{uuid.uuid4().hex}"
    links = [msgspec.structs.replace(job, id=f"{cid}:{i}", parent_id=cid) for i, job in enumerate(jobs)]
    container = _container(app, CHAIN_TASK, cid, jobs[0].queue, msgspec.json.encode(links), pending=1)
    first = msgspec.structs.replace(links[0], meta=Meta(chain=cid, index=0).encode())
    await app.broker.enqueue([container, first])
    return cid


async def group_info(app: App, group_id: str) -> GroupInfo:
    container = await app.broker.get(group_id)
    if container is None or container.task != GROUP_TASK:
        raise JobNotFound(f"no group with id {group_id!r}")
    members = await app.broker.list_jobs(parent_id=group_id, limit=100_000)
    members.sort(key=child_order)
    return GroupInfo(id=group_id, status=overall_status(container), jobs=members)


async def chain_info(app: App, chain_id: str) -> ChainInfo:
    chain = await app.broker.get(chain_id)
    if chain is None or chain.task != CHAIN_TASK:
        raise JobNotFound(f"no chain with id {chain_id!r}")
    specs = msgspec.json.decode(chain.payload, type=list[NewJob])
    found = {read_meta(j).index: j for j in await app.broker.list_jobs(parent_id=chain.id, limit=100_000)}
    links = []
    failed_link = None
    for index, spec in enumerate(specs):
        job = found.get(index)
        if job is None:
            links.append(LinkInfo(index=index, task=spec.task, status="pending"))
            continue
        links.append(LinkInfo(index=index, task=job.task, status=job.status.value, error=job.error))
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            failed_link = index
    return ChainInfo(id=chain.id, status=overall_status(chain), links=links, failed_link=failed_link)


# --- pipelines --------------------------------------------------------------------------------


class Step:
    """One step of a pipeline; :func:`reentrant` makes one that is retried in place."""

    __slots__ = ("fn", "input_type", "name", "sleep", "times")

    def __init__(
        self, fn: Callable[[JobCtx, Any], Awaitable[Any]], *, times: int = 1, sleep: float = 0.0
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"pipeline step {fn!r} must be an async function (ctx, value)")
        if times < 1 or sleep < 0:
            raise ValueError("a step needs times >= 1 and sleep >= 0")
        self.fn = fn
        self.name: str = fn.__name__
        self.times = times
        self.sleep = sleep
        params = list(inspect.signature(fn).parameters.values())
        if len(params) != 2:
            raise TypeError(f"pipeline step {self.name} must take (ctx, value)")
        self.input_type: Any = type_hints(fn).get(params[1].name, Any)

    def __repr__(self) -> str:
        return f"<Step {self.name}{f' x{self.times}' if self.times > 1 else ''}>"


def reentrant(fn: Callable[[JobCtx, Any], Awaitable[Any]], *, times: int = 3, sleep: float = 0.1) -> Step:
    """A pipeline step retried in place up to ``times`` attempts, ``sleep`` seconds apart."""
    return Step(fn, times=times, sleep=sleep)


class Progress(msgspec.Struct, omit_defaults=True):
    """A pipeline's saved state: the next step, its input, and gotasks' ``result_log``."""

    step: int = 0
    #: The next step's input (meaningful once ``step > 0``).
    input: Any = None
    log: list[dict[str, Any]] = msgspec.field(default_factory=list)


def pipeline_handler(
    raw_steps: Sequence[Step | Callable[[JobCtx, Any], Awaitable[Any]]],
) -> Callable[[JobCtx, Any], Awaitable[Any]]:
    """The handler of a pipeline task; its payload type is the first step's input type."""
    if not raw_steps:
        raise ValueError("a pipeline needs at least one step")
    steps = [step if isinstance(step, Step) else Step(step) for step in raw_steps]

    async def run_pipeline(ctx: JobCtx, value: Any) -> Any:
        saved = ctx.job.state
        progress = msgspec.json.decode(saved, type=Progress) if saved else Progress()
        if progress.step > 0:
            value = progress.input
        for index in range(progress.step, len(steps)):
            step = steps[index]
            value = msgspec.convert(value, step.input_type) if step.input_type is not Any else value
            for attempt in range(1, step.times + 1):
                try:
                    value = await step.fn(ctx, value)
                    break
                except Exception as exc:
                    progress.log.append(
                        {
                            "step": step.name,
                            "index": index,
                            "attempt": ctx.attempt,
                            "try": attempt,
                            "error": repr(exc),
                        }
                    )
                    await ctx.set_state(progress)
                    if attempt == step.times:
                        raise
                    await anyio.sleep(step.sleep)
            progress.step = index + 1
            progress.input = msgspec.to_builtins(value)
            await ctx.set_state(progress)
        return value

    run_pipeline.__annotations__ = {"ctx": JobCtx, "value": steps[0].input_type, "return": Any}
    return run_pipeline


# --- incremental tasks -------------------------------------------------------------------------


class Paused(Exception):
    """Raised inside the worker when an incremental task stops after a step on request."""


def incremental_handler(
    step: Callable[[JobCtx, Any], Awaitable[Any]],
) -> Callable[[JobCtx, Any], Awaitable[Any]]:
    """The handler of an incremental task: the payload (typed as the step's state) is the first state."""
    params = list(inspect.signature(step).parameters.values())
    if len(params) != 2:
        raise TypeError(f"incremental step {step.__name__} must take (ctx, state)")
    state_type = type_hints(step).get(params[1].name, Any)

    async def run_incremental(ctx: JobCtx, initial: Any) -> Any:
        state = initial if ctx.job.state is None else msgspec.json.decode(ctx.job.state, type=state_type)
        while True:
            out = await step(ctx, state)
            if isinstance(out, Done):
                return out.value
            state = out
            await ctx.set_state(state)
            if ctx.pause_requested:
                raise Paused()

    run_incremental.__name__ = step.__name__
    run_incremental.__annotations__ = {"ctx": JobCtx, "initial": state_type, "return": Any}
    return run_incremental
