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
