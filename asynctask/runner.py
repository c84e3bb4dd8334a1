"""Running one attempt of one job: decode, hooks, middleware, timeout, cancel scope, outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from asynctask.ctx import JobCtx, _current
from asynctask.errors import Fail, UnknownTask
from asynctask.models import Job, Outcome, OutcomeKind
from asynctask.outcome import Interruption, decide
from asynctask.workflows import Meta, next_link, read_meta

if TYPE_CHECKING:
    from asynctask.app import App
    from asynctask.task import Task

__all__ = ["Attempt"]

log = logging.getLogger("asynctask.worker")


class Attempt:
    """One attempt of a claimed job; the worker may :meth:`interrupt` it from outside."""

    __slots__ = ("app", "ctx", "interruption", "job", "limiter", "scope", "worker_id")

    def __init__(self, app: App, job: Job, *, worker_id: str, limiter: anyio.CapacityLimiter | None) -> None:
        self.app = app
        self.job = job
        self.worker_id = worker_id
        self.limiter = limiter
        self.scope = anyio.CancelScope()
        self.interruption: Interruption | None = None
        self.ctx: JobCtx | None = None

    def request_pause(self) -> None:
        """Ask the handler to stop after its current step (incremental tasks check this)."""
        if self.ctx is not None:
            self.ctx.pause_requested = True

    def interrupt(self, why: Interruption) -> None:
        if self.interruption is None:
            self.interruption = why
        self.scope.cancel()

    async def run(self) -> Outcome | None:
        """Run the handler and return the outcome to report (``None``: report nothing)."""
        app, job = self.app, self.job
        task = app.tasks.get(job.task)
        now = app.clock()
        timeout = job.timeout
        ctx = self.ctx = JobCtx(
            app, job, worker_id=self.worker_id, deadline=now + timeout if timeout else None
        )
        meta = read_meta(job)
        exc: BaseException | None = None
        result: Any = None
        reset = _current.set(ctx)
        try:
            with self.scope:
                try:
                    result = await self._call(task, ctx, timeout, finishing=meta.phase == "finish")
                except asyncio.CancelledError as cancelled:
                    # A cancellation aimed at this task (a scope, shutdown) must propagate; a
                    # handler that raised CancelledError on its own merely failed.
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise
                    exc = cancelled
                except Exception as error:
                    exc = error
        finally:
            _current.reset(reset)
        interruption = self.interruption if self.scope.cancelled_caught else None
        encoded: bytes | None = None
        if exc is None and interruption is None and result is not None and task is not None:
            try:
                encoded = task.result_codec.encode(result)
            except TypeError as error:
                exc = Fail(f"the result could not be encoded: {error}")
        decision = decide(
            exc,
            attempt=job.attempts,
            max_retries=job.max_retries,
            policy=(task.retry if task and task.retry else app.retry_policy),
            retry_after=ctx._retry_after,
            interruption=interruption,
        )
        if decision.kind is None:
            log.warning(
                "job %s lost its lease; its outcome is discarded",
                job.id,
                extra={"action": "lease_lost", "job_id": job.id},
            )
            return None
        if task is not None:
            await self._after(task, ctx, decision.kind, result, exc)
        outcome = self._outcome(task, decision.kind, encoded, decision.error, decision.delay)
        if decision.kind is OutcomeKind.SUCCEEDED:
            outcome = await self._continue(outcome, ctx, meta)
        return outcome

    async def _continue(self, outcome: Outcome, ctx: JobCtx, meta: Meta) -> Outcome:
        """Attach what a success sets off: spawned subtasks, or the next link of a chain."""
        if ctx._spawned:
            # The children run first; this job waits, then runs its finish phase.
            finish = msgspec.structs.replace(meta, phase="finish").encode()
            return msgspec.structs.replace(outcome, spawn=tuple(ctx._spawned), meta=finish, expires_at=None)
        if meta.chain is not None:
            result = outcome.result if outcome.result is not None else self.job.result
            link = await next_link(self.app, self.job, meta, result)
            if link is not None:
                return msgspec.structs.replace(outcome, spawn=(link,))
        return outcome

    async def _call(
        self, task: Task[Any, Any] | None, ctx: JobCtx, timeout: float | None, *, finishing: bool
    ) -> Any:
        if task is None:
            raise UnknownTask(f"no task named {ctx.task!r} is registered in this worker")
        if finishing:
            return await self._finish(task, ctx, timeout)
        payload = task.payload_codec.decode(self.job.payload) if task.takes_payload else None
        plain = self.limiter is None and not timeout and not self.app.middleware
        if plain and task.hooks.on_processing is None:
            # The hot path: no limiter, timeout, middleware or hook to arrange.
            return await (task.fn(ctx, payload) if task.takes_payload else task.fn(ctx))
        async with AsyncExitStack() as stack:
            if self.limiter is not None:
                await stack.enter_async_context(self.limiter)
            if task.hooks.on_processing is not None:
                await _hook(task.hooks.on_processing, ctx)
            if timeout:
                stack.enter_context(anyio.fail_after(timeout))

            async def handler() -> Any:
                return await (task.fn(ctx, payload) if task.takes_payload else task.fn(ctx))

            call: Callable[[], Awaitable[Any]] = handler
            for middleware in reversed(self.app.middleware):
                call = _bind(middleware, ctx, call)
            return await call()

    async def _finish(self, task: Task[Any, Any], ctx: JobCtx, timeout: float | None) -> Any:
        """The finish phase: every subtask is done; run the task's ``on_finish`` handler."""
        if task.finish_handler is None:
            return None
        children = await ctx.children()
        with anyio.fail_after(timeout) if timeout else contextlib.nullcontext():
            return await task.finish_handler(ctx, children)

    async def _after(
        self, task: Task[Any, Any], ctx: JobCtx, kind: OutcomeKind, result: Any, exc: BaseException | None
    ) -> None:
        hooks = task.hooks
        hook: Callable[..., Awaitable[None]] | None = None
        arg: Any = None
        if kind is OutcomeKind.SUCCEEDED:
            hook, arg = hooks.on_success, result
        elif kind is OutcomeKind.RETRY:
            hook, arg = hooks.on_retrying, exc
        elif kind is OutcomeKind.FAILED:
            hook, arg = hooks.on_failed, exc
        if hook is not None:
            with anyio.CancelScope(shield=True):
                await _hook(hook, ctx, arg)
        if kind is OutcomeKind.RETRY:
            log.info(
                "job %s (%s) attempt %d failed, will retry: %s",
                ctx.id,
                ctx.task,
                ctx.attempt,
                _summary(exc),
                extra={"action": "job_retrying", "job_id": ctx.id},
            )
        elif kind is OutcomeKind.FAILED:
            log.error(
                "job %s (%s) failed after %d attempt(s): %s",
                ctx.id,
                ctx.task,
                ctx.attempt,
                _summary(exc),
                extra={"action": "job_failed", "job_id": ctx.id},
            )

    def _outcome(
        self,
        task: Task[Any, Any] | None,
        kind: OutcomeKind,
        result: bytes | None,
        error: str | None,
        delay: float,
    ) -> Outcome:
        app, now = self.app, self.app.clock()
        ttl = app.failed_ttl if kind is OutcomeKind.FAILED else app.result_ttl
        if ttl is not None and task is not None and task.min_ttl is not None:
            ttl = max(ttl, task.min_ttl)
        return Outcome(
            job_id=self.job.id,
            token=self.job.token,
            kind=kind,
            result=result,
            error=error,
            run_at=now + delay if kind is OutcomeKind.RETRY else None,
            expires_at=now + ttl if ttl is not None and kind in _FINISHED_KINDS else None,
        )


_FINISHED_KINDS = frozenset({OutcomeKind.SUCCEEDED, OutcomeKind.FAILED, OutcomeKind.CANCELLED})


def _bind(
    middleware: Callable[[JobCtx, Callable[[], Awaitable[Any]]], Awaitable[Any]],
    ctx: JobCtx,
    call_next: Callable[[], Awaitable[Any]],
) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        return await middleware(ctx, call_next)

    return call


async def _hook(hook: Callable[..., Awaitable[None]], *args: Any) -> None:
    try:
        await hook(*args)
    except Exception:
        log.exception("hook %s raised", getattr(hook, "__qualname__", hook), extra={"action": "hook_error"})


def _summary(exc: BaseException | None) -> str:
    return "no exception" if exc is None else f"{type(exc).__name__}: {exc}"
