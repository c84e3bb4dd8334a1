"""Retry policies: pure functions from an attempt number to a delay.

>>> Backoff(base=1, factor=2, max_delay=60, jitter=0).delay(3)
4.0
"""

from __future__ import annotations

import random
from typing import Protocol

import msgspec

__all__ = ["Backoff", "Fixed", "RetryPolicy"]


class RetryPolicy(Protocol):
    """Decides how long to wait before attempt ``attempt + 1`` after attempt ``attempt`` failed."""

    def delay(self, attempt: int) -> float: ...


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """Exponential backoff: ``base * factor ** (attempt - 1)``, capped, with +/- ``jitter`` spread.

    ``jitter=0.1`` spreads each delay uniformly over +/-10% so that jobs failing together do not
    all come back at the same instant.
    """

    base: float = 1.0
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.base < 0 or self.factor < 1 or self.max_delay < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("Backoff needs base >= 0, factor >= 1, max_delay >= 0 and 0 <= jitter <= 1")

    def delay(self, attempt: int) -> float:
        raw = min(self.base * self.factor ** max(attempt - 1, 0), self.max_delay)
        if self.jitter:
            raw *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(raw, 0.0)


class Fixed(msgspec.Struct, frozen=True):
    """The same delay after every failed attempt (Stepper's default is ``Fixed(10)``)."""

    seconds: float

    def delay(self, attempt: int) -> float:
        return self.seconds
