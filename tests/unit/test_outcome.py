"""The pure end-of-attempt decision, every branch."""

from __future__ import annotations

import asyncio

import pytest

from asynctask import Cancel, Fail, Fixed, PayloadDecodeError, Retry
from asynctask.models import OutcomeKind
from asynctask.retry import Backoff
from asynctask.runtime.outcome import Interruption, decide

POLICY = Fixed(7)


def d(exc: BaseException | None, attempt: int = 1, max_retries: int = 3, **kw: object):  # type: ignore[no-untyped-def]
    return decide(exc, attempt=attempt, max_retries=max_retries, policy=POLICY, **kw)  # type: ignore[arg-type]


def test_success() -> None:
    assert d(None).kind is OutcomeKind.SUCCEEDED


def test_ordinary_error_retries_with_the_policy_delay() -> None:
    decision = d(ValueError("x"))
    assert decision.kind is OutcomeKind.RETRY
    assert decision.delay == 7
    assert decision.error and "ValueError: x" in decision.error


def test_retry_after_and_retry_exception_override_the_policy() -> None:
    assert d(ValueError("x"), retry_after=60).delay == 60
    assert d(Retry(delay=5), retry_after=60).delay == 5
    assert d(Retry(), retry_after=60).delay == 60


def test_last_attempt_fails() -> None:
    assert d(ValueError("x"), attempt=4, max_retries=3).kind is OutcomeKind.FAILED
    assert d(Retry(delay=1), attempt=4, max_retries=3).kind is OutcomeKind.FAILED
    assert d(ValueError("x"), attempt=3, max_retries=3).kind is OutcomeKind.RETRY


@pytest.mark.parametrize("exc", [Fail("no"), PayloadDecodeError("bad")])
def test_unfixable_errors_fail_at_once(exc: Exception) -> None:
    assert d(exc, attempt=1, max_retries=10).kind is OutcomeKind.FAILED


def test_cancel_exception_and_timeouts() -> None:
    assert d(Cancel("stop")).kind is OutcomeKind.CANCELLED
    assert d(TimeoutError()).kind is OutcomeKind.RETRY
    assert d(asyncio.CancelledError()).kind is OutcomeKind.RETRY


def test_interruptions_win_over_the_exception() -> None:
    assert d(ValueError(), interruption=Interruption.SHUTDOWN).kind is OutcomeKind.RELEASE
    assert d(None, interruption=Interruption.CANCEL_REQUESTED).kind is OutcomeKind.CANCELLED
    assert d(None, interruption=Interruption.LEASE_LOST).kind is None


def test_backoff_grows_and_is_capped() -> None:
    policy = Backoff(base=1, factor=2, max_delay=10, jitter=0)
    assert [policy.delay(a) for a in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    jittered = Backoff(base=100, factor=1, jitter=0.1)
    assert all(90 <= jittered.delay(1) <= 110 for _ in range(200))
    with pytest.raises(ValueError, match="Backoff needs"):
        Backoff(factor=0.5)


class Flaky(Exception):
    pass


def test_retry_on_retries_only_the_listed_exceptions() -> None:
    rules = {"retry_on": (TimeoutError, Flaky)}
    assert d(TimeoutError(), **rules).kind is OutcomeKind.RETRY
    assert d(Flaky(), **rules).kind is OutcomeKind.RETRY
    failed = d(ValueError("x"), **rules)
    assert failed.kind is OutcomeKind.FAILED
    assert failed.error and failed.error.startswith("ValueError is not in the task's retry_on: not retried\n")
    assert "ValueError: x" in failed.error
    # An empty retry_on retries nothing; None (the default) retries everything.
    assert d(ValueError(), retry_on=()).kind is OutcomeKind.FAILED
    assert d(ValueError(), retry_on=None).kind is OutcomeKind.RETRY


def test_no_retry_on_fails_at_once_and_wins_over_retry_on() -> None:
    failed = d(FileNotFoundError("gone"), retry_on=(OSError,), no_retry_on=(FileNotFoundError,))
    assert failed.kind is OutcomeKind.FAILED
    assert failed.error and failed.error.startswith("FileNotFoundError is in the task's no_retry_on")
    assert (
        d(PermissionError(), retry_on=(OSError,), no_retry_on=(FileNotFoundError,)).kind is OutcomeKind.RETRY
    )
    assert d(ValueError(), no_retry_on=(KeyError,)).kind is OutcomeKind.RETRY


def test_rules_compose_with_retry_fail_cancel_and_the_attempt_budget() -> None:
    # An explicit Retry is never filtered, keeps its delay, and still respects max_retries.
    assert d(Retry(delay=5), retry_on=(TimeoutError,)).delay == 5
    assert d(Retry(), no_retry_on=(Retry,)).kind is OutcomeKind.RETRY
    assert d(Retry(), retry_on=(), attempt=4, max_retries=3).kind is OutcomeKind.FAILED
    # Fail and Cancel mean what they say whatever the rules.
    assert d(Fail("no"), retry_on=(Fail,)).kind is OutcomeKind.FAILED
    assert d(Cancel("stop"), no_retry_on=(Cancel,)).kind is OutcomeKind.CANCELLED
    # A listed exception is retried with the policy's delay or ctx.retry_after, while attempts remain.
    assert d(TimeoutError(), retry_on=(TimeoutError,), retry_after=9).delay == 9
    assert d(TimeoutError(), retry_on=(TimeoutError,), attempt=4, max_retries=3).kind is OutcomeKind.FAILED
    # Interruptions come first.
    assert d(ValueError(), retry_on=(), interruption=Interruption.SHUTDOWN).kind is OutcomeKind.RELEASE
