"""Validation of the names that end up in keys, subjects and SQL values.

Queue names are the strictest because they become Redis hash tags, NATS subjects and stream
names: letters, digits, ``_`` and ``-``. Task names may also hold ``.`` and ``:`` so that
``"billing.send_invoice"`` reads naturally. Job ids may be anything printable without spaces.
"""

from __future__ import annotations

import re

from asynctask.errors import InvalidName

__all__ = ["validate_job_id", "validate_queue", "validate_task_name"]

_QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_TASK = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,199}")
_JOB_ID = re.compile(r"[\x21-\x7e]{1,255}")


def validate_queue(name: str) -> str:
    if not isinstance(name, str) or not _QUEUE.fullmatch(name):
        raise InvalidName(
            f"invalid queue name {name!r}: "
            "use 1-64 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return name


def validate_task_name(name: str) -> str:
    if not isinstance(name, str) or not _TASK.fullmatch(name):
        raise InvalidName(
            f"invalid task name {name!r}: use 1-200 letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or '_'"
        )
    return name


def validate_job_id(job_id: str, *, what: str = "job id") -> str:
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise InvalidName(f"invalid {what} {job_id!r}: use 1-255 printable ASCII characters without spaces")
    return job_id
