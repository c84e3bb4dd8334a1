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

**Counters at their limit.** A claim never fails for a whole queue because one job's
``attempts`` cannot be incremented: on Postgres (an ``integer`` column) the count saturates at
:data:`ATTEMPTS_LIMIT`, which is above every valid ``max_retries``, so that attempt is the job's
last, and a negative count counts from 0; on Redis an ``attempts`` beyond 18 digits, or a
negative ``attempts``, ``max_retries``, ``token`` or ``pending``, is a corrupt record and is
quarantined.

**Lost workers.** A job whose lease expired while it ran (its worker crashed, was killed, or
lost its broker connection) is queued again, or with no retries left fails with
:data:`LEASE_EXPIRED`, which says so.
"""

from __future__ import annotations

__all__ = ["ATTEMPTS_LIMIT", "CORRUPT_RECORD", "LEASE_EXPIRED", "corrupt", "lease_expired"]

#: The error of a quarantined record; ``{reason}`` says which field is wrong and how.
CORRUPT_RECORD = "corrupt job record: {reason}"

#: Where the attempt count of a Postgres job stops (``max_retries`` is at most 2**31 - 2).
ATTEMPTS_LIMIT = 2**31 - 1

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
