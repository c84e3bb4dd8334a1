"""The pure decision at the end of an attempt: what happened, and what to do with the job.

Kept free of I/O so every branch is tested directly (``tests/unit/test_outcome.py``).
"""

from __future__ import annotations

import asyncio
import enum
import traceback

import msgspec

from asynctask.errors import Cancel, CorruptJob, Fail, Paused, PayloadDecodeError, Retry
from asynctask.models import OutcomeKind
from asynctask.retry import RetryPolicy

__all__ = ["Decision", "ExceptionTypes", "Interruption", "decide", "format_error"]

#: A task's ``retry_on`` / ``no_retry_on``: exception classes, matched with ``isinstance``.
ExceptionTypes = tuple[type[BaseException], ...]


class Interruption(enum.Enum):
    """Why the worker cancelled a running handler, if it did."""

    SHUTDOWN = "shutdown"
    CANCEL_REQUESTED = "cancel requested"
    LEASE_LOST = "lease lost"


class Decision(msgspec.Struct, frozen=True):
    kind: OutcomeKind | None  # None: write nothing (the lease is someone else's now)
    delay: float = 0.0
    error: str | None = None


def decide(
    exc: BaseException | None,
    *,
    attempt: int,
    max_retries: int,
    policy: RetryPolicy,
    retry_after: float | None = None,
    interruption: Interruption | None = None,
    retry_on: ExceptionTypes | None = None,
    no_retry_on: ExceptionTypes = (),
) -> Decision:
    """Classify one finished attempt.

    * interrupted by shutdown → hand the lease back; by a cancel request → cancelled;
      by a lost lease → write nothing.
    * no exception → succeeded; ``Paused`` → paused; ``Cancel`` → cancelled;
    * ``Fail``, an undecodable payload or a corrupt job record → failed now (no retry can fix it);
    * a ``BaseException`` that is not an ``Exception`` (``SystemExit`` from ``sys.exit()``,
      ``KeyboardInterrupt``, ...; a ``CancelledError`` the handler raised itself is retried like
      an exception) → failed now: it is a bug in the handler, the worker survives it,
      and running the job again would only hit it again;
    * the task's rules (``@app.task(retry_on=..., no_retry_on=...)``): an exception that is an
      instance of one of ``no_retry_on`` → failed now; with ``retry_on`` given, an exception that
      is an instance of none of them → failed now. ``no_retry_on`` is checked first, so it can
      carve an exception out of a broader ``retry_on`` (``retry_on=(OSError,),
      no_retry_on=(FileNotFoundError,)``). ``Retry`` is an explicit request and is never
      filtered; ``Fail``, ``Cancel`` and the cases above come first;
    * any other exception (``Retry`` and timeouts included) → retry after ``Retry.delay``,
      ``ctx.retry_after`` or the policy's delay, while attempts remain; failed after that.
    """
    if interruption is Interruption.SHUTDOWN:
        return Decision(OutcomeKind.RELEASE)
    if interruption is Interruption.LEASE_LOST:
        return Decision(None)
    if interruption is Interruption.CANCEL_REQUESTED:
        return Decision(OutcomeKind.CANCELLED, error="cancelled on request")
    if exc is None:
        return Decision(OutcomeKind.SUCCEEDED)
    if isinstance(exc, Paused):
        return Decision(OutcomeKind.PAUSE)
    error = format_error(exc)
    if isinstance(exc, Cancel):
        return Decision(OutcomeKind.CANCELLED, error=error)
    if isinstance(exc, Fail | PayloadDecodeError | CorruptJob):
        return Decision(OutcomeKind.FAILED, error=error)
    if not isinstance(exc, Exception | asyncio.CancelledError):
        return Decision(
            OutcomeKind.FAILED,
            error=f"the handler raised {type(exc).__name__}, which is not an Exception: failed without "
            f"retry (the worker kept running)\n{error}",
        )
    if not isinstance(exc, Retry):
        if no_retry_on and isinstance(exc, no_retry_on):
            note = f"{type(exc).__name__} is in the task's no_retry_on: not retried"
            return Decision(OutcomeKind.FAILED, error=f"{note}\n{error}")
        if retry_on is not None and not isinstance(exc, retry_on):
            note = f"{type(exc).__name__} is not in the task's retry_on: not retried"
            return Decision(OutcomeKind.FAILED, error=f"{note}\n{error}")
    if attempt > max_retries:
        return Decision(OutcomeKind.FAILED, error=error)
    if isinstance(exc, Retry) and exc.delay is not None:
        delay = exc.delay
    elif retry_after is not None:
        delay = retry_after
    else:
        delay = policy.delay(attempt)
    return Decision(OutcomeKind.RETRY, delay=max(delay, 0.0), error=error)


def format_error(exc: BaseException) -> str:
    """The traceback text kept with the job."""
    return "".join(traceback.format_exception(exc)).rstrip()
