"""What the workflow layer keeps in a job's opaque ``meta``, and how it reads a job's children.

Brokers store ``meta`` without reading it (see :mod:`asynctask.brokers.base`); only this package
gives it a meaning: the phase of a parent (run, or finish once its children are done) and, for a
chain link, the chain and the previous link's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from asynctask.brokers.base import Broker
from asynctask.errors import ConfigurationError, CorruptJob
from asynctask.models import Job, JobStatus, NewJob
from asynctask.options import JobBuilder, JobSpec

__all__ = [
    "MAX_CHILDREN",
    "Meta",
    "build_members",
    "child_order",
    "container",
    "list_children",
    "overall_status",
    "read_meta",
]

#: The most children (subtasks, group members, chain links) one job may have: every read of a
#: job's children asks for this many, so none is ever left out.
MAX_CHILDREN = 100_000


class Meta(msgspec.Struct, omit_defaults=True, frozen=True):
    """A job's workflow data."""

    #: ``finish``: the job's children are done; run its finish phase.
    phase: Literal["run", "finish"] = "run"
    #: For a chain link: the chain's id, its index, and the previous link's result.
    chain: str | None = None
    index: int = 0
    prev: Any = None

    def encode(self) -> bytes:
        return msgspec.json.encode(self)


def build_members(builder: JobBuilder, specs: Sequence[JobSpec], what: str) -> list[NewJob]:
    """The jobs of a group or chain. They are never unique: a member refused because its key is
    taken would leave its container waiting for ever. Asking for it is an error; a task's
    ``unique="active"`` default does not apply to members."""
    for spec in specs:
        if spec.options.get("unique") is not None or spec.options.get("unique_key") is not None:
            raise ConfigurationError(f"the jobs of a {what} cannot be unique (unique=, unique_key=)")
    return [msgspec.structs.replace(builder.build_job(spec), unique_key=None) for spec in specs]


_DECODER = msgspec.json.Decoder(Meta)
_RUN = Meta()


def read_meta(job: Job) -> Meta:
    """The job's workflow data; :class:`~asynctask.errors.CorruptJob` if it cannot be decoded."""
    if job.meta is None:
        return _RUN
    try:
        return _DECODER.decode(job.meta)
    except msgspec.DecodeError as exc:
        raise CorruptJob(f"job {job.id}: its workflow meta cannot be decoded: {exc}") from None


def child_order(job: Job) -> int:
    """Children, group members and chain links are ``<parent>:<n>``: order them by ``n``."""
    suffix = job.id.rsplit(":", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


async def list_children(broker: Broker, parent_id: str) -> list[Job]:
    """Every job whose parent is ``parent_id``, in spawn order."""
    found = await broker.list_jobs(parent_id=parent_id, limit=MAX_CHILDREN)
    return sorted(found, key=child_order)


def overall_status(container: Job) -> str:
    """A group's or chain's status as users see it: ``running`` until its container finished."""
    if container.status in (JobStatus.WAITING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SCHEDULED):
        return "running"
    return container.status.value


def container(task: str, job_id: str, queue: str, payload: bytes, *, run_at: float, pending: int) -> NewJob:
    """The job of a group or chain: it waits for its ``pending`` members, then runs its finisher."""
    return NewJob(
        id=job_id, task=task, queue=queue, payload=payload, max_retries=3, run_at=run_at, pending=pending
    )
