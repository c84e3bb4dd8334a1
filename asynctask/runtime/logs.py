"""The job fields of log records: what the runtime attaches, and a filter for the app's own logs.

The runtime's records about a job carry ``job_id``, ``task``, ``queue``, ``attempt`` and
``worker`` (:func:`job_fields`); :class:`JobContextFilter`, on a handler, adds the same fields to
any record logged while a job runs (a handler's ``log.info(...)``, in a ``def`` handler's thread
too), so the JSON logs of ``asynctask worker --log-format json`` tie every line to its job.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from asynctask.ctx import current_ctx
from asynctask.models import Job

__all__ = ["JobContextFilter", "bind_worker", "job_fields"]

# The worker whose tasks log: set by Worker.run, inherited by every task it starts.
_worker: ContextVar[str | None] = ContextVar("asynctask_log_worker", default=None)


def bind_worker(worker_id: str) -> None:
    """Records logged from this task (and the tasks it starts) belong to ``worker_id``."""
    _worker.set(worker_id)


def job_fields(job: Job, worker_id: str, action: str | None = None) -> dict[str, Any]:
    """The ``extra=`` of a record about ``job``'s current attempt."""
    fields: dict[str, Any] = {
        "job_id": job.id,
        "task": job.task,
        "queue": job.queue,
        "attempt": job.attempts,
        "worker": worker_id,
    }
    if action is not None:
        fields["action"] = action
    return fields


class JobContextFilter(logging.Filter):
    """Adds the running job's fields (or, outside a job, the worker's id) to records that lack
    them; lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            ctx = current_ctx()
        except LookupError:
            worker = _worker.get()
            if worker is not None and not hasattr(record, "worker"):
                record.worker = worker
            return True
        for key, value in job_fields(ctx.job, ctx.worker_id).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True
