"""The hook the runtime calls after a successful attempt: what the success sets off."""

from __future__ import annotations

import msgspec

from asynctask.brokers.base import Broker
from asynctask.ctx import JobCtx
from asynctask.models import Outcome
from asynctask.workflows.chains import next_link
from asynctask.workflows.meta import Meta
from asynctask.workflows.subtasks import Spawned, wait_for_children

__all__ = ["after_success"]


async def after_success(
    broker: Broker, now: float, ctx: JobCtx, meta: Meta, spawned: Spawned, outcome: Outcome
) -> Outcome:
    """Attach what a successful attempt sets off: its subtasks, or the next link of its chain."""
    if spawned.jobs:
        # The children run first; this job waits, then runs its finish phase.
        return wait_for_children(outcome, spawned, meta)
    if meta.chain is not None:
        # The link's result: its return value, or what it stored with ctx.save (kept in ctx.job).
        result = outcome.result if outcome.result is not None else ctx.job.result
        link = await next_link(broker, now, ctx.job, meta, result)
        if link is not None:
            return msgspec.structs.replace(outcome, spawn=(link,))
    return outcome
