"""Running one attempt of one job: decode, hooks, middleware, timeout, cancel scope, outcome.

Nothing a handler, its result or a stored record can do escapes :meth:`Attempt.run`: an
exception, a ``BaseException`` such as ``SystemExit``, a result that cannot be encoded, corrupt
workflow data or a failing hook all become the job's outcome (see
:func:`~asynctask.runtime.outcome.decide`), so one poison job never takes down its worker or the
neighbours of its batch. Only a cancellation aimed at the worker itself propagates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, nullcontext
from typing import Any

import anyio

from asynctask.brokers.base import Broker
from asynctask.calls import invoke
from asynctask.ctx import NO_RESOURCES, JobCtx, RunSync, _current
from asynctask.errors import Cancel, Fail, UnknownTask
from asynctask.models import Job, Outcome, OutcomeKind
from asynctask.registry import Middleware, Registry
from asynctask.runtime.logs import job_fields
from asynctask.runtime.outcome import Decision, Interruption, decide
from asynctask.runtime.overlap import skip_reason
from asynctask.task import Task
from asynctask.workflows.hooks import after_success
from asynctask.workflows.meta import Meta, read_meta
from asynctask.workflows.subtasks import Spawned, finish

__all__ = ["Attempt"]

log = logging.getLogger("asynctask.worker")

_FINISHED_KINDS = frozenset({OutcomeKind.SUCCEEDED, OutcomeKind.FAILED, OutcomeKind.CANCELLED})


class Attempt:
    """One attempt of a claimed job; the worker may :meth:`interrupt` it from outside."""

    __slots__ = (
        "broker",
        "ctx",
        "error",
        "interruption",
        "job",
        "limiter",
        "registry",
        "resources",
        "run_sync",
        "scope",
        "worker_id",
    )

    def __init__(
        self,
        registry: Registry,
        broker: Broker,
        job: Job,
        *,
        worker_id: str,
        limiter: anyio.CapacityLimiter | None,
        resources: Any = NO_RESOURCES,
        run_sync: RunSync | None = None,
    ) -> None:
        self.registry = registry
        #: What the worker lifespan yielded (``ctx.resources``), and the worker's thread pool.
        self.resources = resources
        self.run_sync = run_sync
        self.broker = broker
        self.job = job
        self.worker_id = worker_id
        self.limiter = limiter
        self.scope = anyio.CancelScope()
        self.interruption: Interruption | None = None
        self.ctx: JobCtx | None = None
        #: What the handler (or the code around it) raised, if anything; for observers.
        self.error: BaseException | None = None

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
        try:
            return await self._run()
        except BaseException as exc:
            if _cancelling():
                raise
            self.error = exc
            # Something around the handler failed (a hook raising SystemExit, the broker failing
            # while the next chain link was read): the attempt fails like a handler error would.
            log.exception(
                "job %s: the attempt failed outside its handler",
                self.job.id,
                extra=job_fields(self.job, self.worker_id, "attempt_error"),
            )
            decision = decide_for(self.registry, self.job, None, exc)
            return None if decision.kind is None else self._outcome(None, decision, None)

    async def _run(self) -> Outcome | None:
        registry, job = self.registry, self.job
        task = registry.tasks.get(job.task)
        spawned = Spawned(job, registry)
        timeout = job.timeout
        ctx = self.ctx = JobCtx(
            job,
            broker=self.broker,
            builder=registry,
            spawn=spawned,
            worker_id=self.worker_id,
            deadline=registry.clock() + timeout if timeout else None,
            resources=self.resources,
            run_sync=self.run_sync,
        )
        meta: Meta | None = None
        exc: BaseException | None = None
        result: Any = None
        reset = _current.set(ctx)
        try:
            with self.scope:
                try:
                    meta = read_meta(job)
                    result = await self._call(task, ctx, timeout, finishing=meta.phase == "finish")
                except BaseException as error:
                    # A cancellation aimed at this task (a scope, shutdown) must propagate; a handler
                    # that raised CancelledError, SystemExit or anything else on its own failed.
                    if isinstance(error, asyncio.CancelledError) and _cancelling():
                        raise
                    exc = error
        finally:
            _current.reset(reset)
        interruption = self.interruption if self.scope.cancelled_caught else None
        encoded: bytes | None = None
        if exc is None and interruption is None and result is not None and task is not None:
            try:
                encoded = task.result_codec.encode(result)
            except Exception as error:  # TypeError, UnicodeEncodeError (a lone surrogate), RecursionError
                exc = Fail(f"the result could not be encoded: {type(error).__name__}: {error}")
        self.error = exc
        decision = decide_for(
            registry, job, task, exc, retry_after=ctx.retry_delay, interruption=interruption
        )
        if decision.kind is None:
            return None
        waits = bool(spawned.jobs) and decision.kind is OutcomeKind.SUCCEEDED
        if task is not None:
            await self._after(task, ctx, decision.kind, result, exc, waits=waits)
        outcome = self._outcome(task, decision, encoded)
        if decision.kind is OutcomeKind.SUCCEEDED and meta is not None:
            outcome = await after_success(self.broker, registry.clock(), ctx, meta, spawned, outcome)
        return outcome

    async def _call(
        self, task: Task[Any, Any] | None, ctx: JobCtx, timeout: float | None, *, finishing: bool
    ) -> Any:
        if task is None:
            raise UnknownTask(f"no task named {ctx.task!r} is registered in this worker")
        if finishing:
            with anyio.fail_after(timeout) if timeout else nullcontext():
                return await finish(task.finish_handler, ctx)
        periodic = self.registry.periodic_tasks.get(task.name)
        if periodic is not None and not periodic.overlap:
            reason = await skip_reason(periodic, self.job, self.broker, self.registry.clock())
            if reason is not None:
                log.info(
                    "job %s (%s) %s",
                    ctx.id,
                    ctx.task,
                    reason,
                    extra={"action": "tick_skipped", "job_id": ctx.id},
                )
                raise Cancel(reason)
        payload = task.payload_codec.decode(self.job.payload) if task.takes_payload else None
        middleware = self.registry.middleware
        if (
            task.is_async
            and self.limiter is None
            and not timeout
            and not middleware
            and task.hooks.on_processing is None
        ):
            # The hot path: no thread, limiter, timeout, middleware or hook to arrange.
            return await (task.fn(ctx, payload) if task.takes_payload else task.fn(ctx))
        async with AsyncExitStack() as stack:
            if self.limiter is not None:
                await stack.enter_async_context(self.limiter)
            if task.hooks.on_processing is not None:
                await _hook(task.hooks.on_processing, ctx)
            if timeout:
                stack.enter_context(anyio.fail_after(timeout))

            async def handler() -> Any:
                if not task.is_async:
                    # In the worker's threads; interrupted, the thread is abandoned (runtime.threads).
                    args = (ctx, payload) if task.takes_payload else (ctx,)
                    return await ctx.run_sync(task.fn, *args)
                return await (task.fn(ctx, payload) if task.takes_payload else task.fn(ctx))

            call: Callable[[], Awaitable[Any]] = handler
            for mw in reversed(middleware):
                call = _bind(mw, ctx, call)
            return await call()

    async def _after(
        self,
        task: Task[Any, Any],
        ctx: JobCtx,
        kind: OutcomeKind,
        result: Any,
        exc: BaseException | None,
        *,
        waits: bool,
    ) -> None:
        hooks = task.hooks
        hook: Callable[..., Any] | None = None
        arg: Any = None
        if kind is OutcomeKind.SUCCEEDED and not waits:
            # A parent that now waits for its subtasks has not succeeded yet: on_success fires
            # once, after its finish phase.
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
                extra=job_fields(ctx.job, ctx.worker_id, "job_retrying"),
            )
        elif kind is OutcomeKind.FAILED:
            log.error(
                "job %s (%s) failed after %d attempt(s): %s",
                ctx.id,
                ctx.task,
                ctx.attempt,
                _summary(exc),
                extra=job_fields(ctx.job, ctx.worker_id, "job_failed"),
            )

    def _outcome(self, task: Task[Any, Any] | None, decision: Decision, result: bytes | None) -> Outcome:
        registry, now, kind = self.registry, self.registry.clock(), decision.kind
        assert kind is not None, "a lost lease reports nothing"
        ttl = registry.failed_ttl if kind is OutcomeKind.FAILED else registry.result_ttl
        if ttl is not None and task is not None and task.min_ttl is not None:
            ttl = max(ttl, task.min_ttl)
        return Outcome(
            job_id=self.job.id,
            token=self.job.token,
            kind=kind,
            result=result,
            error=decision.error,
            run_at=now + decision.delay if kind is OutcomeKind.RETRY else None,
            expires_at=now + ttl if ttl is not None and kind in _FINISHED_KINDS else None,
        )


def decide_for(
    registry: Registry,
    job: Job,
    task: Task[Any, Any] | None,
    exc: BaseException | None,
    *,
    retry_after: float | None = None,
    interruption: Interruption | None = None,
) -> Decision:
    """:func:`decide` with the job's attempt count and its task's retry policy."""
    return decide(
        exc,
        attempt=job.attempts,
        max_retries=job.max_retries,
        policy=(task.retry if task and task.retry else registry.retry_policy),
        retry_after=retry_after,
        interruption=interruption,
        retry_on=task.retry_on if task else None,
        no_retry_on=task.no_retry_on if task else (),
    )


def _cancelling() -> bool:
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


def _bind(
    middleware: Middleware, ctx: JobCtx, call_next: Callable[[], Awaitable[Any]]
) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        return await middleware(ctx, call_next)

    return call


async def _hook(hook: Callable[..., Any], ctx: JobCtx, *args: Any) -> None:
    try:
        await invoke(ctx.run_sync, hook, ctx, *args)
    except Exception:
        log.exception(
            "hook %s raised",
            getattr(hook, "__qualname__", hook),
            extra=job_fields(ctx.job, ctx.worker_id, "hook_error"),
        )


def _summary(exc: BaseException | None) -> str:
    return "no exception" if exc is None else f"{type(exc).__name__}: {exc}"
