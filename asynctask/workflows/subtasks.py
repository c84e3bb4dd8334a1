"""Subtasks (Stepper's): a handler spawns children, its job waits, ``on_finish`` runs once after.

Everything about them lives here:

* **Spawning.** ``ctx.spawn(task, payload)`` validates the child like a publish and records it in
  the attempt's :class:`Spawned` under the id ``<parent>:<n>``. Nothing is sent yet.
* **Waiting.** A successful attempt that spawned children reports them with its outcome
  (:func:`wait_for_children`): the broker enqueues them atomically with the completion, only if
  it applies, so a parent that fails and retries leaves no children behind and a retried parent
  cannot duplicate them (the ids are deterministic). The parent is then ``waiting``.
* **Finishing.** When the last child finishes, the broker queues the parent again in its finish
  phase; that attempt calls the task's ``on_finish(ctx, children)`` (:func:`finish`), which sees
  every child's status, result and error: failed children do not stop it. Its return value is the
  parent's result.

Hooks: ``on_processing`` runs at the start of a handler attempt, not of the finish phase;
``on_success`` runs once, when the job succeeds as a whole (after ``on_finish``), with its final
result; ``on_retrying`` and ``on_failed`` follow the attempt that failed, in either phase.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from asynctask.calls import invoke
from asynctask.ctx import JobCtx
from asynctask.errors import ConfigurationError
from asynctask.models import Job, NewJob, Outcome
from asynctask.options import JobBuilder, JobSpec, PublishOptions
from asynctask.workflows.meta import Meta

__all__ = ["FinishHandler", "Spawned", "finish", "wait_for_children"]

#: ``async def on_finish(ctx, children) -> result`` (a plain ``def`` runs in the worker's threads).
FinishHandler = Callable[[JobCtx, list[Job]], Any]


class Spawned:
    """The subtasks one attempt spawned; called as ``ctx.spawn``'s back end."""

    __slots__ = ("_builder", "jobs", "parent")

    def __init__(self, parent: Job, builder: JobBuilder) -> None:
        self.parent = parent
        self._builder = builder
        self.jobs: list[NewJob] = []

    def __call__(self, task: str, payload: Any, options: PublishOptions) -> str:
        if options.get("job_id") is not None:
            raise ConfigurationError("a subtask's id is '<parent id>:<n>'; do not pass job_id= to spawn")
        child_id = f"{self.parent.id}:{len(self.jobs)}"
        child: PublishOptions = {**options, "job_id": child_id}
        job = self._builder.build_job(JobSpec(task, payload, **child))
        self.jobs.append(msgspec.structs.replace(job, parent_id=self.parent.id))
        return child_id


def wait_for_children(outcome: Outcome, spawned: Spawned, meta: Meta) -> Outcome:
    """The successful outcome that enqueues the children and leaves the parent waiting for them."""
    finish_phase = msgspec.structs.replace(meta, phase="finish").encode()
    return msgspec.structs.replace(outcome, spawn=tuple(spawned.jobs), meta=finish_phase, expires_at=None)


async def finish(handler: FinishHandler | None, ctx: JobCtx) -> Any:
    """The finish phase: every child is done; run ``on_finish`` (a task without one just succeeds)."""
    if handler is None:
        return None
    return await invoke(ctx.run_sync, handler, ctx, await ctx.children())
