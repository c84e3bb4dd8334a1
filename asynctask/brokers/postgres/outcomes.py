"""The ``complete`` statement's parameters, built from a batch of outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asynctask.models import Outcome, OutcomeKind

__all__ = ["complete_args"]

_SUCCEEDED = OutcomeKind.SUCCEEDED


def _column(values: list[Any]) -> list[Any] | None:
    """``values``, or ``None`` (a NULL array) when every one is ``None``.

    ``unnest`` pads a NULL array with NULLs up to the longest array of the call, so the server
    reads the same rows. A plain success has no error, retry time or (usually) result or meta:
    asyncpg then encodes one NULL instead of an array, rather than checking and encoding each
    element (a quarter of a completed job's client time went to encoding arrays of ``None``).
    """
    for value in values:
        if value is not None:
            return values
    return None


def _kinds(outcomes: Sequence[Outcome]) -> list[str] | None:
    """The outcomes' kinds, or ``None`` when every one is a success (the statement's default)."""
    for o in outcomes:
        if o.kind is not _SUCCEEDED:
            return [o.kind.value for o in outcomes]
    return None


def complete_args(outcomes: Sequence[Outcome], now: float, channel: str, notify: bool) -> tuple[Any, ...]:
    """``complete``'s ``$1..$11`` for ``outcomes`` (deduplicated, in id order)."""
    return (
        [o.job_id for o in outcomes],
        [o.token for o in outcomes],
        _kinds(outcomes),
        _column([o.result for o in outcomes]),
        _column([o.error for o in outcomes]),
        _column([o.run_at for o in outcomes]),
        _column([o.expires_at for o in outcomes]),
        now,
        channel,
        notify,
        _column([o.meta for o in outcomes]),
    )
