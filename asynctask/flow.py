"""Flow control: limits that hold across the whole cluster, and the values that carry them.

Every limit here is enforced by the broker when a job is claimed (or, for unique jobs, when it is
published), so it holds however many workers run. See :mod:`asynctask.brokers.base` for the
rules each broker implements, and the README's "Flow control" section for the user's view.

* :class:`RateLimit`: a token bucket, parsed from ``"100/s"``, ``"30/m"`` or ``"1000/h"``;
* :class:`TaskLimit`: what a task declares (``global_concurrency``, ``rate_limit``); the worker
  passes its registry's :data:`TaskLimits` with each claim;
* :class:`QueueSettings`: what is stored in the broker for a queue (paused, its limits);
* :class:`Claimed`: what a claim returns when flow control held ready jobs back;
* :func:`unique_key`: the key of a ``unique="active"`` job.

>>> parse_rate("50/s")
RateLimit(count=50, per=1.0, burst=5)
>>> parse_rate("30/m").per_second
0.5
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from asynctask.errors import ConfigurationError
from asynctask.models import Job

__all__ = [
    "BURST_WINDOW",
    "CLOCK_SLACK",
    "Claimed",
    "QueueSettings",
    "Quota",
    "RateLimit",
    "TaskLimit",
    "TaskLimits",
    "Unique",
    "check_concurrency",
    "check_unique",
    "normalize_limits",
    "parse_rate",
    "refill",
    "tokens_due_at",
    "unique_key",
]

#: A rate's default bucket holds this many seconds' worth of tokens (at least one), so jobs start
#: evenly spread rather than in bursts of a whole period.
BURST_WINDOW = 0.1

#: Time slack added to a bucket's refill: clocks read as POSIX floats are rounded to about 0.2 µs,
#: so without it a token due at exactly ``t`` could read as 0.999999 of a token at ``t``.
CLOCK_SLACK = 1e-6

#: The one uniqueness policy: one job per key while one is scheduled, queued, running, waiting
#: or paused; a new one may be published once it has finished.
Unique = Literal["active"]

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_RATE = re.compile(r"\s*(\d+)\s*/\s*([a-z]+)\s*")
_MAX_COUNT = 10**9


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= _MAX_COUNT


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` job starts per ``per`` seconds, as a token bucket.

    The bucket holds up to ``burst`` tokens (default: :data:`BURST_WINDOW` seconds' worth, at
    least 1), starts full and refills continuously at ``count / per`` tokens a second; each
    claimed job takes one token. Over any window of ``T`` seconds at most
    ``burst + count * T / per`` jobs start. Give ``burst=count`` to allow a whole period at once
    (what a fixed "N per minute" API quota tolerates).
    """

    count: int
    per: float = 1.0
    burst: int = 0

    def __post_init__(self) -> None:
        if not _positive_int(self.count):
            raise ConfigurationError(
                f"a rate limit's count must be an integer from 1 to {_MAX_COUNT}, got {self.count!r}"
            )
        if (
            not isinstance(self.per, int | float)
            or isinstance(self.per, bool)
            or not math.isfinite(self.per)
            or self.per <= 0
        ):
            raise ConfigurationError(
                f"a rate limit's period must be a finite number of seconds > 0, got {self.per!r}"
            )
        object.__setattr__(self, "per", float(self.per))
        if self.burst == 0:
            object.__setattr__(self, "burst", max(1, math.floor(self.count * BURST_WINDOW / self.per)))
        elif not _positive_int(self.burst):
            raise ConfigurationError(
                f"a rate limit's burst must be an integer from 1 to {_MAX_COUNT}, got {self.burst!r}"
            )

    @property
    def per_second(self) -> float:
        """Tokens added per second."""
        return self.count / self.per

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}.get(self.per)
        text = f"{self.count}/{unit}" if unit else f"{self.count}/{self.per:g}s"
        default = max(1, math.floor(self.count * BURST_WINDOW / self.per))
        return text if self.burst == default else f"{text} (burst {self.burst})"


def parse_rate(value: str | RateLimit) -> RateLimit:
    """A :class:`RateLimit` from ``"N/s"``, ``"N/m"`` or ``"N/h"`` (or one given as is)."""
    if isinstance(value, RateLimit):
        return value
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match is None or match[2] not in _UNITS:
        raise ConfigurationError(
            f"invalid rate limit {value!r}: write it as 'N/s', 'N/m' or 'N/h' (N a whole number), "
            "or pass RateLimit(count, per=seconds, burst=...)"
        )
    return RateLimit(int(match[1]), _UNITS[match[2]])


def check_concurrency(value: object, what: str = "global_concurrency") -> int:
    """A cluster-wide concurrency limit: an integer >= 1."""
    if _positive_int(value):
        assert isinstance(value, int)
        return value
    raise ConfigurationError(f"{what} must be an integer from 1 to {_MAX_COUNT}, got {value!r}")


@dataclass(frozen=True, slots=True)
class TaskLimit:
    """What a task declares: at most ``concurrency`` of its jobs running in the whole cluster, and
    at most ``rate`` starts. The worker sends these with every claim (:data:`TaskLimits`)."""

    concurrency: int | None = None
    rate: RateLimit | None = None


#: Task name -> its limits: what a worker passes with each claim (``Broker.claim(..., limits=)``).
TaskLimits = Mapping[str, TaskLimit]


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """A queue's flow settings, stored in the broker so every worker sees the same ones."""

    paused: bool = False
    #: At most this many jobs of the queue running in the whole cluster.
    concurrency: int | None = None
    #: At most this many job starts in the queue.
    rate: RateLimit | None = None

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.rate is not None

    @property
    def is_default(self) -> bool:
        """Not paused and without limits: what a queue that was never configured has."""
        return not self.paused and not self.limited


class Claimed(list[Job]):
    """The jobs of a claim that flow control limited: a ``list`` with two more facts.

    ``held_back``: ready jobs were left in the queue (a pause, a concurrency limit reached, a
    bucket out of tokens). ``retry_at``: when the earliest bucket that held jobs back has tokens
    again (the broker's clock), or ``None``. The worker then waits for that time, a wake-up, or a
    job of its own to finish, instead of asking again at once.
    """

    __slots__ = ("held_back", "retry_at")

    def __init__(
        self, jobs: Iterable[Job] = (), *, held_back: bool = False, retry_at: float | None = None
    ) -> None:
        super().__init__(jobs)
        self.held_back = held_back
        self.retry_at = retry_at

    def __repr__(self) -> str:
        return f"Claimed({list.__repr__(self)}, held_back={self.held_back}, retry_at={self.retry_at})"


def refill(tokens: float | None, refilled_at: float | None, now: float, rate: RateLimit) -> float:
    """The tokens in a bucket at ``now``, last left with ``tokens`` at ``refilled_at`` (``None``: a
    bucket never used, which is full)."""
    if tokens is None or refilled_at is None:
        return float(rate.burst)
    return min(float(rate.burst), tokens + max(now - refilled_at + CLOCK_SLACK, 0.0) * rate.per_second)


def tokens_due_at(tokens: float, now: float, rate: RateLimit, want: float) -> float:
    """When a bucket holding ``tokens`` at ``now`` holds half of ``min(want, burst)`` (at least
    one token): a worker that wakes a little late then still finds room in the bucket, so no
    token is lost to a full bucket."""
    target = max(min(want, float(rate.burst)) / 2, 1.0)
    return now + max(target - tokens, 0.0) / rate.per_second


class Quota:
    """What one key (a queue, a task) still allows in this claim: running slots and tokens."""

    __slots__ = ("free", "rate", "tokens")

    def __init__(self, free: float, tokens: float, rate: RateLimit | None) -> None:
        self.free, self.tokens, self.rate = free, tokens, rate

    def allows(self) -> bool:
        return self.free >= 1 and self.tokens >= 1

    def take(self) -> None:
        self.free -= 1
        self.tokens -= 1

    def tokens_at(self, now: float, want: int) -> float | None:
        """When this key has tokens again, if tokens (not running slots) are what it lacks."""
        if self.rate is None or self.free < 1 or self.tokens >= 1:
            return None
        return tokens_due_at(self.tokens, now, self.rate, want)


def check_unique(value: object) -> Unique | None:
    """``"active"`` or ``None``: the one uniqueness policy there is."""
    if value is None or value == "active":
        return "active" if value is not None else None
    raise ConfigurationError(f"unique must be 'active' (or None), got {value!r}")


def unique_key(task: str, key: str | None, payload: bytes) -> str:
    """The key a ``unique="active"`` job holds: the task and the user's key, or else a digest of the
    encoded payload (one job per task and arguments, as Oban and Sidekiq do).

    ``|`` cannot appear in a task name, so two tasks never share a key.
    """
    if key is not None:
        return f"{task}|key:{key}"
    return f"{task}|payload:{hashlib.sha256(payload).hexdigest()[:32]}"


def normalize_limits(limits: TaskLimits | None) -> dict[str, TaskLimit]:
    """Only the entries that limit something."""
    if not limits:
        return {}
    return {
        name: limit
        for name, limit in limits.items()
        if limit.concurrency is not None or limit.rate is not None
    }
