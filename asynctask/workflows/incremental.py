"""Incremental tasks (Stater's): a step function called until it returns :class:`Done`.

The payload is the first state; the state is saved after each step (fenced by the lease), so a
retry or another worker resumes from it. ``app.pause(id)`` asks a running one to stop after its
current step (it raises :class:`~asynctask.errors.Paused`, and the job is parked as ``paused``);
``app.resume(id)`` continues from the saved state.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import msgspec

from asynctask.calls import check_callable, invoke
from asynctask.codec import type_hints
from asynctask.ctx import JobCtx
from asynctask.errors import Paused

__all__ = ["Done", "incremental_handler"]

R = TypeVar("R")


class Done(msgspec.Struct, Generic[R], frozen=True):
    """Returned by an incremental task's step function to finish with ``value`` as the result."""

    value: R


def incremental_handler(
    step: Callable[[JobCtx, Any], Any],
) -> Callable[[JobCtx, Any], Awaitable[Any]]:
    """The handler of an incremental task: the payload (typed as the step's state) is the first state.

    The step is ``async def step(ctx, state)`` or a plain ``def`` (run in the worker's threads).
    """
    check_callable(step, "incremental step")
    params = list(inspect.signature(step).parameters.values())
    if len(params) != 2:
        raise TypeError(f"incremental step {step.__name__} must take (ctx, state)")
    state_type = type_hints(step).get(params[1].name, Any)

    async def run_incremental(ctx: JobCtx, initial: Any) -> Any:
        state = initial if ctx.job.state is None else msgspec.json.decode(ctx.job.state, type=state_type)
        while True:
            out = await invoke(ctx.run_sync, step, ctx, state)
            if isinstance(out, Done):
                return out.value
            state = out
            await ctx.set_state(state)
            if ctx.pause_requested:
                raise Paused()

    run_incremental.__name__ = step.__name__
    run_incremental.__annotations__ = {"ctx": JobCtx, "initial": state_type, "return": Any}
    return run_incremental
