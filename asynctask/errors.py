"""Exceptions.

Two families, kept apart on purpose:

* :class:`AsyncTaskError` and its subclasses are *library* errors: bad input, broker trouble,
  a failed job seen from the client. Each class's docstring is its default message.
* :class:`Retry`, :class:`Fail`, :class:`Cancel` and :class:`Paused` are *control flow* a handler
  raises to tell the worker what to do with the current job. They are not errors of the library.
"""

from __future__ import annotations

__all__ = [
    "AsyncTaskError",
    "BrokerError",
    "BrokerUnavailable",
    "Cancel",
    "ConfigurationError",
    "CorruptJob",
    "Fail",
    "InvalidName",
    "JobFailed",
    "JobNotFound",
    "JobTimeout",
    "LeaseLost",
    "LifespanFailed",
    "MissingExtra",
    "Paused",
    "PayloadDecodeError",
    "PayloadTooLarge",
    "Retry",
    "SchemaOutdated",
    "UnknownTask",
]


class AsyncTaskError(Exception):
    """An asynctask error occurred."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigurationError(AsyncTaskError, ValueError):
    """The configuration is invalid."""


class InvalidName(ConfigurationError):
    """The name is not valid."""


class UnknownTask(AsyncTaskError, LookupError):
    """No task is registered under this name."""


class PayloadTooLarge(AsyncTaskError, ValueError):
    """The encoded payload is larger than the configured limit."""


class PayloadDecodeError(AsyncTaskError, ValueError):
    """The payload does not match the handler's declared type."""


class CorruptJob(AsyncTaskError, ValueError):
    """The stored job record cannot be read (a field is missing or malformed); retrying cannot fix it."""


class MissingExtra(AsyncTaskError, ImportError):
    """An optional dependency is not installed."""


class BrokerError(AsyncTaskError):
    """The broker reported an error."""


class BrokerUnavailable(BrokerError, ConnectionError):
    """The broker cannot be reached."""


class SchemaOutdated(BrokerError):
    """The broker's schema is missing or older than this version of asynctask; run `asynctask migrate`."""


class LifespanFailed(AsyncTaskError):
    """The worker lifespan failed while starting: the worker stopped before claiming a job."""


class JobNotFound(AsyncTaskError, LookupError):
    """No job with this id exists (it may have expired and been pruned)."""


class JobTimeout(AsyncTaskError, TimeoutError):
    """The job did not finish within the time waited."""


class JobFailed(AsyncTaskError):
    """The job failed."""

    def __init__(self, job_id: str, status: str, error: str | None) -> None:
        first = (error or "").strip().splitlines()
        summary = first[-1] if first else "no error recorded"
        super().__init__(f"job {job_id} {status}: {summary}")
        self.job_id = job_id
        self.status = status
        #: The full error text recorded for the job, traceback included.
        self.error = error


# --- control flow raised by handlers -------------------------------------------------------


class Retry(Exception):
    """Raise from a handler to run the job again later.

    The attempt counts against ``max_retries``; once retries are exhausted the job fails.

    >>> raise Retry(delay=30)  # doctest: +SKIP
    """

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = delay


class Fail(Exception):
    """Raise from a handler to fail the job now, with no further attempts."""


class Cancel(Exception):
    """Raise from a handler to mark the job cancelled."""


class Paused(Exception):
    """Raise from a handler to park the job as ``paused`` after this step (the attempt does not count).

    Incremental tasks raise it for you when ``app.pause(id)`` asked them to stop; ``app.resume(id)``
    queues the job again, and it continues from its saved state.
    """


class LeaseLost(AsyncTaskError):
    """The job's lease was lost: another worker owns it now, so this attempt may write nothing."""
