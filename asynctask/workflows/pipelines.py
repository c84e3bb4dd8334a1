"""Pipelines (gotasks' chained handlers): one job of steps, each step's output the next one's input.

Progress (the next step, its input, and a log of failures: gotasks' ``result_log``) is saved with
``ctx.set_state`` after every step, so a retried or re-claimed job resumes at the step that failed.
A :func:`reentrant` step is retried in place before it fails the attempt.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import msgspec

from asynctask.calls import check_callable, invoke
from asynctask.codec import type_hints
from asynctask.ctx import JobCtx

__all__ = ["Progress", "Step", "pipeline_handler", "reentrant"]


class Step:
    """One step of a pipeline; :func:`reentrant` makes one that is retried in place.

    A step is ``async def step(ctx, value)`` or a plain ``def`` (run in the worker's threads).
    """

    __slots__ = ("fn", "input_type", "name", "sleep", "times")

    def __init__(self, fn: Callable[[JobCtx, Any], Any], *, times: int = 1, sleep: float = 0.0) -> None:
        check_callable(fn, "pipeline step")
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


def reentrant(fn: Callable[[JobCtx, Any], Any], *, times: int = 3, sleep: float = 0.1) -> Step:
    """A pipeline step retried in place up to ``times`` attempts, ``sleep`` seconds apart."""
    return Step(fn, times=times, sleep=sleep)


class Progress(msgspec.Struct, omit_defaults=True):
    """A pipeline's saved state: the next step, its input, and gotasks' ``result_log``."""

    step: int = 0
    #: The next step's input (meaningful once ``step > 0``).
    input: Any = None
    log: list[dict[str, Any]] = msgspec.field(default_factory=list)


def pipeline_handler(
    raw_steps: Sequence[Step | Callable[[JobCtx, Any], Any]],
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
                    value = await invoke(ctx.run_sync, step.fn, ctx, value)
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
