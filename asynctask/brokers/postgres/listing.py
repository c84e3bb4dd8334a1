"""Which query lists a page of jobs (see ``PostgresBroker.list_jobs``)."""

from __future__ import annotations

import math
from typing import Any

from asynctask.brokers.postgres.pool import Database
from asynctask.models import JobStatus

__all__ = ["list_rows"]

# The active statuses are listed by one query each (the status a literal: see queries.sql).
_ACTIVE = {
    JobStatus.QUEUED: "list_jobs_queued",
    JobStatus.SCHEDULED: "list_jobs_scheduled",
    JobStatus.RUNNING: "list_jobs_running",
}


async def list_rows(
    db: Database,
    status: JobStatus | None,
    queue: str | None,
    task: str | None,
    parent_id: str | None,
    limit: int,
    before: tuple[float, str] | None,
    now: float,
) -> list[Any]:
    """The rows of one page, newest first, from the ``before`` cursor on (planned for the
    filters given, not by the pool's generic plans: see :meth:`.Database.fetch_planned`)."""
    created_at, job_id = before if before is not None else (math.inf, "")
    if parent_id is not None:
        return await db.fetch_planned(
            "list_children",
            parent_id,
            None if status is None else status.value,
            now,
            limit,
            created_at,
            job_id,
            queue,
            task,
        )
    if status in _ACTIVE:
        return await db.fetch_planned(_ACTIVE[status], queue, task, now, limit, created_at, job_id)
    if status is not None:
        args = (queue, task, now, limit, created_at, job_id, status.value)
        return await db.fetch_planned("list_jobs_settled", *args)
    return await db.fetch_planned("list_jobs_page", queue, task, now, limit, created_at, job_id)
