"""Publish options, declared once, and the job spec that carries them.

:class:`PublishOptions` is the one declaration of what a publish may say about its job; every
entry point takes it as ``**options: Unpack[PublishOptions]`` (``App.publish``, ``Task.publish``,
``Task.spec``, ``ctx.spawn``, ``JobSpec``), so the type checker sees the same names and types
everywhere. The values are checked once, when the job is built (``Registry.build_job``), with the
same limits on every broker.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol, TypedDict, Unpack

from asynctask.codec import Codec
from asynctask.errors import ConfigurationError
from asynctask.events import Events
from asynctask.flow import Unique
from asynctask.models import Job, NewJob

__all__ = [
    "MAX_PRIORITY",
    "MAX_RETRIES",
    "JobBuilder",
    "JobSpec",
    "PublishOptions",
    "check_delay",
    "check_headers",
    "check_max_retries",
    "check_priority",
    "check_timeout",
]

#: Priorities run from ``-MAX_PRIORITY`` to ``MAX_PRIORITY`` (a 32-bit integer on every broker).
MAX_PRIORITY = 2**31 - 1
#: The largest ``max_retries``: attempts (``max_retries + 1``) still fit in a 32-bit integer.
MAX_RETRIES = 2**31 - 2
#: The most headers one job may carry, and their largest total size (names and values, UTF-8).
MAX_HEADERS = 64
MAX_HEADERS_SIZE = 16 * 1024


class PublishOptions(TypedDict, total=False):
    """What a publish may set for its job; every key is optional (``None`` means "not given").

    * ``delay``: seconds (or a ``timedelta``) before the job may run; ``at``: an aware datetime
      instead (give one or the other);
    * ``job_id``: an idempotency key: if a job with this id exists, it is returned and nothing is
      enqueued (1-255 printable ASCII characters, no spaces);
    * ``queue``: overrides the task's queue; ``priority``: higher runs first (``±MAX_PRIORITY``);
    * ``max_retries``: attempts after the first (``0..MAX_RETRIES``); ``timeout``: seconds per
      attempt (finite, > 0);
    * ``headers``: string headers stored with the job, read by its handler as ``ctx.headers``
      (at most ``MAX_HEADERS`` of them, ``MAX_HEADERS_SIZE`` bytes in all). Tracing adds the W3C
      trace context here (``traceparent``, ``tracestate``), replacing headers of those names.
    * ``unique="active"``: do not enqueue while another job with the same key is unfinished
      (scheduled, queued, running, waiting or paused): the handle then follows that job. The key
      is the task and ``unique_key`` (which implies ``unique="active"``), or else the payload.
      Unlike ``job_id``, the key is free again as soon as the job finishes.
    """

    delay: float | timedelta | None
    at: datetime | None
    job_id: str | None
    queue: str | None
    max_retries: int | None
    timeout: float | None
    priority: int | None
    headers: Mapping[str, str] | None
    unique: Unique | None
    unique_key: str | None


class JobSpec:
    """A job to publish: a task name, a payload and its :class:`PublishOptions`.

    Build one with :meth:`Task.spec <asynctask.Task.spec>` for ``App.publish_many``, groups and
    chains, or directly: ``JobSpec("send_email", {"to": "a@b.c"}, delay=60)``.
    """

    __slots__ = ("options", "payload", "task")

    def __init__(self, task: str, payload: Any = None, **options: Unpack[PublishOptions]) -> None:
        self.task = task
        self.payload = payload
        self.options = options

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JobSpec):
            return NotImplemented
        return (self.task, self.payload, self.options) == (other.task, other.payload, other.options)

    __hash__ = None  # type: ignore[assignment]  # mutable payloads: not hashable

    def __repr__(self) -> str:
        options = "".join(f", {key}={value!r}" for key, value in self.options.items() if value is not None)
        return f"JobSpec({self.task!r}, {self.payload!r}{options})"


class JobBuilder(Protocol):
    """What turns a :class:`JobSpec` into a validated :class:`NewJob` (a registry does).

    The context, subtasks, groups and chains are typed against this, not against the App.
    """

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def events(self) -> Events:
        """Who observes publishes (tracing adds its context to the jobs' headers)."""
        ...

    def build_job(self, spec: JobSpec) -> NewJob:
        """Validate and encode one job; raises before anything is sent."""
        ...

    def result_codec(self, task_name: str) -> Codec:
        """The codec of the task's results (any JSON for an unknown task)."""
        ...

    def decode_result(self, job: Job) -> Any:
        """The decoded result of a job record (``None`` when it has none)."""
        ...


# --- the limits, checked the same way wherever an option is given --------------------------------


def check_priority(value: object) -> int:
    """A priority: an integer within ``±MAX_PRIORITY``."""
    # bool is an int subclass: priority=True is a bug, not 1.
    if isinstance(value, int) and not isinstance(value, bool) and -MAX_PRIORITY <= value <= MAX_PRIORITY:
        return value
    raise ConfigurationError(
        f"priority must be an integer from {-MAX_PRIORITY} to {MAX_PRIORITY}, got {value!r}"
    )


def check_max_retries(value: object) -> int:
    """Retries after the first attempt: an integer from 0 to ``MAX_RETRIES``."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_RETRIES:
        return value
    raise ConfigurationError(f"max_retries must be an integer from 0 to {MAX_RETRIES}, got {value!r}")


def check_timeout(value: object) -> float | None:
    """Seconds per attempt: finite and > 0, or ``None`` for no timeout."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    raise ConfigurationError(f"timeout must be a finite number of seconds > 0, got {value!r}")


def check_delay(value: object) -> float:
    """Seconds before a job may run: finite and >= 0 (a ``timedelta`` too)."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, int | float)
        and not isinstance(seconds, bool)
        and math.isfinite(seconds)
        and seconds >= 0
    ):
        return float(seconds)
    raise ConfigurationError(f"delay must be a finite number of seconds >= 0, got {value!r}")


def check_headers(value: object) -> dict[str, str]:
    """Job headers: a mapping of non-empty ``str`` names to ``str`` values, within the limits."""
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"headers must be a mapping of str to str, got {type(value).__name__}")
    headers = dict(value)
    if len(headers) > MAX_HEADERS:
        raise ConfigurationError(f"a job may carry at most {MAX_HEADERS} headers, got {len(headers)}")
    size = 0
    for name, text in headers.items():
        if not isinstance(name, str) or not name or not isinstance(text, str):
            raise ConfigurationError(
                f"headers must map non-empty str names to str values, got {name!r}: {text!r}"
            )
        try:
            # Every broker stores text: valid UTF-8 without NUL (Postgres refuses NUL in text).
            size += len(name.encode()) + len(text.encode())
        except UnicodeEncodeError:
            raise ConfigurationError(f"header {name!r} is not valid text (a lone surrogate?)") from None
        if "\x00" in name or "\x00" in text:
            raise ConfigurationError(f"header {name!r} contains a NUL character")
    if size > MAX_HEADERS_SIZE:
        raise ConfigurationError(f"headers take {size} bytes; the limit is {MAX_HEADERS_SIZE}")
    return headers
