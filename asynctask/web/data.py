"""What the pages show, read through the public App and broker APIs only (every broker works).

Each function returns plain values for the templates; none renders anything. Optional features
of other layers (the worker registry, queue pause) are looked up as optional methods, so the
dashboard degrades to "not available" instead of failing on a broker or version without them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from asynctask.app import App
from asynctask.errors import JobNotFound
from asynctask.models import Job, JobStatus, QueueStats
from asynctask.periodic import tick_job_id
from asynctask.schedule import latest_due
from asynctask.workflows.chains import CHAIN_TASK, ChainInfo
from asynctask.workflows.groups import GROUP_TASK, GroupInfo

__all__ = [
    "Periodic",
    "Throughput",
    "Workflow",
    "periodic_tasks",
    "queue_control",
    "throughput",
    "workers",
    "workflow",
]

#: Jobs read per page while counting the last hour's finished jobs.
_PAGE = 500
#: Most children / members shown on a job's page.
CHILDREN_SHOWN = 200
#: How far back the periodic page looks for a schedule's last tick.
_TICK_LOOKBACK = timedelta(days=400)


# --- throughput ----------------------------------------------------------------------------


@dataclass
class Throughput:
    """Jobs that finished in the window, per queue and per minute (oldest minute first)."""

    window: float
    succeeded: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    per_minute: list[int] = field(default_factory=list)
    #: The count stopped at the cap: the real numbers are higher.
    capped: bool = False

    @property
    def total(self) -> int:
        return sum(self.succeeded.values()) + sum(self.failed.values())


async def throughput(app: App, now: float, *, window: float = 3600.0, cap: int = 20_000) -> Throughput:
    """Succeeded and failed jobs whose ``finished_at`` falls in the last ``window`` seconds.

    Read from finished jobs' timestamps with the keyset listing, newest first, down to jobs
    created ``window`` seconds ago: a job created earlier that finished within the window is not
    counted (a long backlog makes the number low, never high). At most ``cap`` jobs per status are
    read; beyond that the result says ``capped``.
    """
    minutes = max(int(window // 60), 1)
    result = Throughput(window=window, per_minute=[0] * minutes)
    since = now - window
    for status, counts in ((JobStatus.SUCCEEDED, result.succeeded), (JobStatus.FAILED, result.failed)):
        before: tuple[float, str] | None = None
        seen = 0
        while True:
            page = await app.broker.list_jobs(status=status, limit=_PAGE, before=before)
            for job in page:
                if job.created_at < since:
                    break
                if job.finished_at is not None and since <= job.finished_at <= now:
                    counts[job.queue] = counts.get(job.queue, 0) + 1
                    slot = min(int((job.finished_at - since) // 60), minutes - 1)
                    result.per_minute[slot] += 1
            else:
                seen += len(page)
                if len(page) == _PAGE and seen < cap:
                    before = (page[-1].created_at, page[-1].id)
                    continue
                result.capped = len(page) == _PAGE
            break
    return result


# --- queues and workers ----------------------------------------------------------------------


def queue_control(app: App) -> tuple[Callable[[str], Awaitable[Any]], Callable[[str], Awaitable[Any]]] | None:
    """``(pause_queue, resume_queue)`` when the app offers queue pause, else ``None``."""
    pause = getattr(app, "pause_queue", None)
    resume = getattr(app, "resume_queue", None)
    return (pause, resume) if callable(pause) and callable(resume) else None


def paused(stats: QueueStats) -> bool | None:
    """Whether the broker reports the queue paused (``None``: it does not say)."""
    value = getattr(stats, "paused", None)
    return value if isinstance(value, bool) else None


async def workers(app: App) -> list[dict[str, Any]] | None:
    """The live workers as plain dicts, or ``None`` when the app keeps no worker registry."""
    list_workers = getattr(app, "list_workers", None)
    if not callable(list_workers):
        return None
    found = await list_workers()
    rows = []
    for worker in found:
        row = msgspec.to_builtins(worker)
        rows.append(row if isinstance(row, dict) else {"worker": row})
    return rows


# --- a job's workflow ---------------------------------------------------------------------------


@dataclass
class Workflow:
    """The jobs around one job, each shown as a link with its status."""

    parent: Job | None = None
    parent_id: str | None = None
    children: list[Job] = field(default_factory=list)
    group: GroupInfo | None = None
    chain: ChainInfo | None = None
    #: A pipeline's saved progress: the next step's index and the log of failed tries.
    pipeline: dict[str, Any] | None = None

    @property
    def empty(self) -> bool:
        return not (self.parent_id or self.children or self.group or self.chain or self.pipeline)


async def workflow(app: App, job: Job) -> Workflow:
    """Parent, children, group members, chain links and pipeline progress of ``job``."""
    found = Workflow(parent_id=job.parent_id, pipeline=pipeline_progress(job.state))
    if job.parent_id is not None:
        found.parent = await app.get_job(job.parent_id)
    # A group or chain container's members are its children: the group or chain view shows them.
    containers = (GROUP_TASK, CHAIN_TASK)
    owner = job if job.task in containers else None
    if owner is None and found.parent is not None and found.parent.task in containers:
        owner = found.parent
    if owner is not None:
        try:
            if owner.task == GROUP_TASK:
                found.group = await app.get_group(owner.id)
            else:
                found.chain = await app.get_chain(owner.id)
        except JobNotFound:
            pass  # the container expired in between: show what is left
    if owner is not job:
        found.children = await app.broker.list_jobs(parent_id=job.id, limit=CHILDREN_SHOWN)
    return found


def pipeline_progress(state: bytes | None) -> dict[str, Any] | None:
    """A pipeline's saved progress (``{"step": n, "log": [...]}``) read from a job's state."""
    if not state:
        return None
    try:
        value = msgspec.json.decode(state)
    except msgspec.DecodeError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("step", 0), int):
        return None
    if not set(value) <= {"step", "input", "log"} or not isinstance(value.get("log", []), list):
        return None
    return {"step": value.get("step", 0), "log": value.get("log", [])}


# --- periodic tasks ------------------------------------------------------------------------------


@dataclass
class Periodic:
    """One periodic task: its schedule, next tick, and the job of its last tick."""

    name: str
    schedule: str
    queue: str
    missed: str
    next_tick: float
    last_tick: float | None
    last_tick_id: str | None
    last_job: Job | None


async def periodic_tasks(app: App, now: float) -> list[Periodic]:
    """Every periodic task of the app with its last tick's job (ticks have deterministic ids)."""
    at = datetime.fromtimestamp(now, UTC)
    found = []
    for name, periodic in sorted(app.periodic_tasks.items()):
        last = latest_due(periodic.schedule, at - _TICK_LOOKBACK, at)
        last_id = tick_job_id(name, last) if last is not None else None
        found.append(
            Periodic(
                name=name,
                schedule=str(periodic.schedule),
                queue=periodic.task.queue,
                missed=periodic.missed,
                next_tick=periodic.schedule.next_after(at).timestamp(),
                last_tick=last.timestamp() if last is not None else None,
                last_tick_id=last_id,
                last_job=await app.get_job(last_id) if last_id is not None else None,
            )
        )
    return found
