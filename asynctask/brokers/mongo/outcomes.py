"""The single-document update that applies one :class:`Outcome` to its job.

It is fenced (``{_id, token, status: running}``) and written as an update pipeline, so the
decisions that depend on the stored job (a success with children pending waits; a success
without a result keeps the one saved during the run; an attempt handed back is uncounted) are
taken by the server in the same atomic write. The workflow effects of the outcome are appended
to the job's journal in that write (see :mod:`asynctask.brokers.mongo.journal`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bson import ObjectId

from asynctask.brokers.mongo.documents import PHASE_QUEUED, PHASE_SCHEDULED, expire_on, lit
from asynctask.brokers.mongo.expressions import REMOVE, add, cond, has_parent, keep, or_default
from asynctask.brokers.mongo.journal import record
from asynctask.models import Outcome, OutcomeKind

__all__ = ["held", "outcome_update"]


def held(job_id: str, token: int) -> dict[str, Any]:
    """The filter of a write that applies only while ``token`` holds the job."""
    return {"_id": job_id, "token": token, "status": "running"}


def outcome_update(
    outcome: Outcome,
    now: float,
    *,
    mark: ObjectId,
    ttl_margin: float,
    own_children: int = 0,
    activate: Sequence[str] = (),
    counts: Sequence[tuple[str, int]] = (),
) -> list[dict[str, Any]]:
    """The pipeline applying ``outcome``.

    ``own_children`` were spawned with this job as their parent (counted in here, atomically);
    ``activate`` are dormant children to release and ``counts`` the children counted into other
    parents, both recorded in the journal for :func:`~asynctask.brokers.mongo.journal.flush`.
    """
    kind = outcome.kind
    fields: dict[str, Any] = {"lease_expires_at": REMOVE, "done": mark}
    pending = add(or_default("pending", 0), own_children)
    if own_children:
        fields["pending"] = pending
    finishing: Any = False
    if kind is OutcomeKind.SUCCEEDED:
        # Children still to finish (spawned now or before): wait for them instead.
        finishing = {"$lte": [pending, 0]}
        fields["status"] = cond(finishing, "succeeded", "waiting")
        if outcome.result is not None:
            fields["result"] = lit(outcome.result)
    elif kind in (OutcomeKind.FAILED, OutcomeKind.CANCELLED):
        finishing = True
        fields["status"] = kind.value
        fields["error"] = REMOVE if outcome.error is None else lit(outcome.error)
    elif kind is OutcomeKind.RETRY:
        run_at = now if outcome.run_at is None else outcome.run_at
        later = run_at > now
        fields.update(
            status="scheduled" if later else "queued",
            phase=PHASE_SCHEDULED if later else PHASE_QUEUED,
            run_at=run_at,
            error=REMOVE if outcome.error is None else lit(outcome.error),
            seq=ObjectId(),
            seq2=REMOVE,
        )
    elif kind is OutcomeKind.PAUSE:
        fields.update(status="paused", attempts=add("$attempts", -1), pause_requested=False)
    else:  # RELEASE: back to the queue, the attempt uncounted
        fields.update(
            status="queued", phase=PHASE_QUEUED, attempts=add("$attempts", -1), seq=ObjectId(), seq2=REMOVE
        )
    if finishing is not False:
        fields["finished_at"] = cond(finishing, now, keep("finished_at"))
        fields["ukey"] = cond(finishing, REMOVE, keep("ukey"))  # a finished job releases its key
        if outcome.expires_at is None:
            fields["expires_at"] = cond(finishing, REMOVE, keep("expires_at"))
            fields["expire_on"] = cond(finishing, REMOVE, keep("expire_on"))
        else:
            fields["expires_at"] = cond(finishing, outcome.expires_at, keep("expires_at"))
            fields["expire_on"] = cond(
                finishing, expire_on(outcome.expires_at, now, ttl_margin), keep("expire_on")
            )
    if outcome.meta is not None:
        fields["meta"] = lit(outcome.meta)
    out = cond({"$and": [finishing, has_parent()]}, "$parent_id", None)
    entry: dict[str, Any] = {"out": out}
    if activate:
        entry["act"] = {"ids": lit(list(activate)), "t": outcome.token}
    if counts:
        entry["cnt"] = lit([{"t": parent, "d": n} for parent, n in counts])
    present: Any = True if (activate or counts) else {"$ne": [out, None]}
    # The journal expressions read the job as it was before this stage, like every field here.
    fields.update(record(entry, present, now))
    return [{"$set": fields}]
