"""Rules every broker keeps about damaged records and lost workers (issue #11), in one place
for the brokers to cite; the Lua and SQL brokers restate the texts, and tests hold them to it.

**Corrupt records.** A stored job record a broker cannot read (a field edited by hand, a partial
write, a value out of range) must never vanish from every index, stay ``running`` unrescued, or
fail the calls that meet it for its neighbours. The broker checks a record before it changes
anything (a Redis script that errors halfway is not rolled back) and *quarantines* it: the job
ends ``failed`` with the error ``corrupt job record: <what is wrong>``, out of every queue index,
kept (without an expiry) so that it can be inspected, retried after a repair, or deleted; the
rest of its batch is claimed and run as usual. Reads (``get``, ``list_jobs``, the CLI and web
listings) return such a record as a ``failed`` job carrying that error, with every field that
could be read, and log a warning, rather than fail or silently skip it: like Sidekiq's dead set
and River's discarded jobs, a job that cannot run is shown, not hidden.

**Counters at their limit.** An ``attempts`` count that cannot be incremented any further (on
Postgres, 2**31 - 1 in an ``integer`` column) fails that one job with
:data:`ATTEMPTS_EXHAUSTED` when it is claimed; its queue keeps flowing.

**Lost workers.** A job whose lease expired while it ran (its worker crashed, was killed, or
lost its broker connection) is queued again, or with no retries left fails with
:data:`LEASE_EXPIRED`, which says so.
"""

from __future__ import annotations

__all__ = ["ATTEMPTS_EXHAUSTED", "CORRUPT_RECORD", "LEASE_EXPIRED", "corrupt", "lease_expired"]

#: The error of a quarantined record; ``{reason}`` says which field is wrong and how.
CORRUPT_RECORD = "corrupt job record: {reason}"

#: The error of a job whose attempt counter is at its limit.
ATTEMPTS_EXHAUSTED = (
    "corrupt job record: field attempts is at its limit ({attempts}); the job cannot be claimed again"
)

#: The error of a job whose lease expired while it ran.
LEASE_EXPIRED = (
    "lease expired at {at:.3f} while attempt {attempt} was running "
    "(the worker crashed, was killed, or lost its broker connection)"
)


def corrupt(reason: str) -> str:
    """The error text of a record quarantined for ``reason``.

    >>> corrupt("field attempts is not an integer")
    'corrupt job record: field attempts is not an integer'
    """
    return CORRUPT_RECORD.format(reason=reason)


def lease_expired(at: float, attempt: int) -> str:
    """The error text of a job whose lease expired at ``at`` during attempt ``attempt``.

    >>> lease_expired(12.5, 3)[:55]
    'lease expired at 12.500 while attempt 3 was running (th'
    """
    return LEASE_EXPIRED.format(at=at, attempt=attempt)
