from __future__ import annotations

import time

from asynctask.brokers.base import Clock
from asynctask.brokers.redis import RedisBroker
from asynctask.models import NewJob
from tests.backend_redis import REDIS_URL


def broker_for(prefix: str, *, url: str = REDIS_URL, clock: Clock = time.time) -> RedisBroker:
    return RedisBroker.from_url(f"{url}?prefix={prefix}", clock=clock)


def job(job_id: str, now: float, **kw: object) -> NewJob:
    fields: dict[str, object] = {"id": job_id, "task": "t", "queue": "q", "payload": b"{}", "run_at": now}
    fields.update(kw)
    return NewJob(**fields)  # type: ignore[arg-type]
