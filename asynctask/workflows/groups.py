"""Groups (tasqueue's Group): jobs that succeed together or fail together.

A group is a container job ``asynctask.group`` published with its members in one batch; it waits
for them (its ``pending`` count) and, once every member finished, its finisher succeeds only if
they all did. The group's id is the container's, so ``app.result(group_id)`` waits for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import msgspec

from asynctask.brokers.base import Broker
from asynctask.ctx import JobCtx
from asynctask.errors import ConfigurationError, Fail, JobNotFound
from asynctask.models import Job, JobStatus
from asynctask.names import validate_job_id
from asynctask.options import JobBuilder, JobSpec
from asynctask.workflows.meta import build_members, container, list_children, overall_status

__all__ = ["GROUP_TASK", "GroupInfo", "group_finisher", "group_info", "publish_group"]

GROUP_TASK = "asynctask.group"


class GroupInfo(msgspec.Struct, frozen=True):
    """What :meth:`App.get_group` returns."""

    id: str
    #: ``running`` while members are unfinished, then ``succeeded`` or ``failed``.
    status: str
    jobs: list[Job]

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.status in (JobStatus.FAILED, JobStatus.CANCELLED)]


async def group_finisher(ctx: JobCtx) -> dict[str, int]:
    """The finish phase of a group: succeed only if every member did."""
    members = await ctx.children()
    failed = [j for j in members if j.status is not JobStatus.SUCCEEDED]
    if failed:
        first = failed[0]
        summary = (first.error or first.status.value).strip().splitlines()[-1]
        raise Fail(
            f"{len(failed)} of {len(members)} jobs failed; first: {first.id} ({first.task}): {summary}"
        )
    return {"succeeded": len(members)}


async def publish_group(
    builder: JobBuilder, broker: Broker, specs: Sequence[JobSpec], group_id: str | None
) -> str:
    """Enqueue a group container waiting for its members, and the members, in one batch."""
    jobs = build_members(builder, specs, "group")
    if not jobs:
        raise ConfigurationError("a group needs at least one job")
    gid = validate_job_id(group_id) if group_id is not None else f"group-{uuid.uuid4().hex}"
    members = [msgspec.structs.replace(job, id=f"{gid}:{i}", parent_id=gid) for i, job in enumerate(jobs)]
    box = container(GROUP_TASK, gid, jobs[0].queue, b"null", run_at=builder.clock(), pending=len(members))
    batch = [box, *members]
    if builder.events:
        await builder.events.publish(batch, broker.enqueue)
    else:
        await broker.enqueue(batch)
    return gid


async def group_info(broker: Broker, group_id: str) -> GroupInfo:
    """The group's overall status and each member, in order."""
    box = await broker.get(group_id)
    if box is None or box.task != GROUP_TASK:
        raise JobNotFound(f"no group with id {group_id!r}")
    members = await list_children(broker, group_id)
    return GroupInfo(id=group_id, status=overall_status(box), jobs=members)
