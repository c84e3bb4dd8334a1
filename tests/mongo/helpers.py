from __future__ import annotations

from typing import Any

from asynctask.models import Job, NewJob, Outcome, OutcomeKind


def job(job_id: str, now: float, **kw: Any) -> NewJob:
    fields: dict[str, Any] = {"id": job_id, "task": "t", "queue": "q", "payload": b"{}", "run_at": now}
    fields.update(kw)
    return NewJob(**fields)


def outcome(held: Job, kind: OutcomeKind = OutcomeKind.SUCCEEDED, **kw: Any) -> Outcome:
    return Outcome(job_id=held.id, token=held.token, kind=kind, **kw)
