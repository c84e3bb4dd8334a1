"""The dashboard's pages (GET): overview, jobs, one job, workers, periodic tasks.

Each page has a live part (a template named ``_<page>_live.html``) that the page script fetches
again every ``poll_interval`` seconds and swaps in, so counts and statuses move without a reload.
"""

from __future__ import annotations

import math
import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from asynctask.models import JobStatus, QueueStats, zero_counts
from asynctask.web import data
from asynctask.web.dashboard import Dashboard, Urls

__all__ = ["Pages", "format_cursor", "parse_cursor"]

#: Seconds the overview reuses a throughput count (it reads up to thousands of jobs).
_THROUGHPUT_TTL = 15.0


def format_cursor(created_at: float, job_id: str) -> str:
    """A keyset cursor for a URL: ``created_at`` (exact float text), ``:``, the id."""
    return f"{created_at!r}:{job_id}"


def parse_cursor(text: str | None) -> tuple[float, str] | None:
    """The ``(created_at, id)`` of :func:`format_cursor` text, ``None`` if absent or malformed."""
    if not text:
        return None
    stamp, sep, job_id = text.partition(":")
    try:
        created_at = float(stamp)
    except ValueError:
        return None
    return (created_at, job_id) if sep and math.isfinite(created_at) else None


def _choice(value: str | None, allowed: list[str]) -> str | None:
    return value if value in allowed else None


class Pages:
    """The page handlers, bound to one dashboard."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.d = dashboard
        self.app = dashboard.app
        self._throughput: tuple[float, data.Throughput] | None = None
        self._stats: tuple[float, list[QueueStats]] | None = None

    async def _stats_now(self) -> list[QueueStats]:
        """``app.queue_stats()``, reused for ``counts_ttl`` seconds across requests.

        On Postgres the count is a pass over the table; reusing it for a second keeps the cost of
        many open, self-refreshing pages at one count per second, however many there are.
        """
        cached, ttl = self._stats, self.d.counts_ttl
        if cached is not None and time.monotonic() - cached[0] < ttl:
            return cached[1]
        found = await self.app.queue_stats()
        self._stats = (time.monotonic(), found)
        return found

    async def _throughput_now(self, now: float) -> data.Throughput:
        # Cached on the monotonic clock (the app's clock may be a test's fake one).
        cached = self._throughput
        if cached is not None and time.monotonic() - cached[0] < _THROUGHPUT_TTL:
            return cached[1]
        found = await data.throughput(self.app, now)
        self._throughput = (time.monotonic(), found)
        return found

    async def overview(self, request: Request) -> Response:
        now = self.app.clock()
        stats = await self._stats_now()
        totals = zero_counts()
        for queue in stats:
            for status, n in queue.counts.items():
                totals[status] += n
        return self.d.render(
            request,
            "overview.html",
            live="_overview_live.html",
            stats=stats,
            totals=totals,
            throughput=await self._throughput_now(now),
            workers=await data.workers(self.app),
            can_pause=data.queue_control(self.app) is not None,
            paused=data.paused,
            periodic=len(self.app.periodic_tasks),
        )

    async def jobs(self, request: Request) -> Response:
        params = request.query_params
        url = Urls(request.scope.get("root_path", ""))
        wanted = (params.get("id") or "").strip()
        if wanted:
            if await self.app.get_job(wanted) is not None:
                return RedirectResponse(url.job(wanted), status_code=303)
            notice = f"No job with id {wanted!r} (it may have expired)."
        else:
            notice = ""
        status = _choice(params.get("status"), [s.value for s in JobStatus])
        queue = params.get("queue") or None
        task = params.get("task") or None
        before = parse_cursor(params.get("before"))
        size = self.d.page_size
        found = await self.app.broker.list_jobs(
            status=JobStatus(status) if status else None,
            queue=queue,
            task=task,
            limit=size + 1,
            before=before,
        )
        more, page = len(found) > size, found[:size]
        stats = await self._stats_now()
        return self.d.render(
            request,
            "jobs.html",
            live="_jobs_live.html",
            jobs=page,
            status=status,
            queue=queue,
            task=task,
            before=params.get("before") if before else None,
            older=format_cursor(page[-1].created_at, page[-1].id) if more else None,
            counts=_counts(stats, queue),
            queues=[s.queue for s in stats],
            tasks=sorted(self.app.tasks),
            missing=notice,
        )

    async def job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        job = await self.app.get_job(job_id)
        if job is None:
            return self.d.render(
                request, "missing.html", status_code=404, live="_missing_live.html", job_id=job_id
            )
        return self.d.render(
            request,
            "job.html",
            live="_job_live.html",
            job=job,
            flow=await data.workflow(self.app, job),
            attempts_allowed=job.max_retries + 1,
        )

    async def workers(self, request: Request) -> Response:
        return self.d.render(
            request, "workers.html", live="_workers_live.html", workers=await data.workers(self.app)
        )

    async def periodic(self, request: Request) -> Response:
        return self.d.render(
            request,
            "periodic.html",
            live="_periodic_live.html",
            periodic=await data.periodic_tasks(self.app, self.app.clock()),
        )


def _counts(stats: list[QueueStats], queue: str | None) -> dict[JobStatus, int]:
    """Jobs by status over every queue, or over ``queue`` only."""
    totals = zero_counts()
    for entry in stats:
        if queue is None or entry.queue == queue:
            for status, n in entry.counts.items():
                totals[status] += n
    return totals
