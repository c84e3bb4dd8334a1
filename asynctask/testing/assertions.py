"""What was published: ``await published(app, task=..., payload=...)`` and ``assert_published``.

Oban's ``assert_enqueued``. They read the app's broker (any broker; in tests, usually
``memory://``), so they see jobs published by the test, by handlers and by spawned subtasks.
"""

from __future__ import annotations

from typing import Any

from asynctask.app import App
from asynctask.errors import PayloadDecodeError
from asynctask.models import Job, JobStatus
from asynctask.task import Task

__all__ = ["assert_published", "published"]

#: The most jobs read (``list_jobs`` is newest first; a test rarely has more).
_MOST = 100_000


class _Any:
    def __repr__(self) -> str:
        return "ANY"


_ANY: Any = _Any()


async def published(
    app: App,
    task: Task[Any, Any] | str | None = None,
    payload: Any = _ANY,
    *,
    queue: str | None = None,
    status: JobStatus | str | None = None,
) -> list[Job]:
    """The jobs of ``app`` matching every filter given, oldest first.

    ``payload`` is compared after decoding with the task's codec, so a dict matches the Struct or
    model it decodes to (``payload={"to": "a@b.c"}`` finds ``Email(to="a@b.c")``). ``status``
    narrows to one status (by default any: a drained job still counts as published).
    """
    name = task if isinstance(task, str) or task is None else task.name
    jobs = await app.list_jobs(
        task=name, queue=queue, status=JobStatus(status) if status is not None else None, limit=_MOST
    )
    jobs.reverse()
    if payload is _ANY:
        return jobs
    return [job for job in jobs if _same_payload(app, job, payload)]


async def assert_published(
    app: App,
    task: Task[Any, Any] | str | None = None,
    payload: Any = _ANY,
    *,
    queue: str | None = None,
    status: JobStatus | str | None = None,
    count: int | None = None,
) -> list[Job]:
    """Like :func:`published`, but raise :class:`AssertionError` when nothing matches (or not
    exactly ``count`` jobs), listing what was published instead; returns the matching jobs."""
    found = await published(app, task, payload, queue=queue, status=status)
    if (count is None and found) or (count is not None and len(found) == count):
        return found
    name = task if isinstance(task, str) or task is None else task.name
    others = await published(app, task)
    shown = "\n".join(f"  {job.task} {job.status.value} {_payload_text(app, job)}" for job in others[:20])
    wanted = "at least one job" if count is None else f"{count} job(s)"
    raise AssertionError(
        f"expected {wanted} of task {name or 'any'} with payload {payload!r}"
        f"{f' in queue {queue!r}' if queue else ''}{f' with status {status}' if status else ''}, "
        f"found {len(found)}; published{f' ({name})' if name else ''}:\n{shown or '  nothing'}"
    )


def _same_payload(app: App, job: Job, payload: Any) -> bool:
    try:
        codec = app.get_task(job.task).payload_codec
        return bool(codec.decode(job.payload) == codec.decode(codec.encode(payload)))
    except (PayloadDecodeError, TypeError, LookupError):
        return False


def _payload_text(app: App, job: Job) -> str:
    try:
        return repr(app.get_task(job.task).payload_codec.decode(job.payload))
    except Exception:
        return job.payload.decode(errors="replace")
