"""The dashboard's actions (POST): one job, every failed job matching a filter, a queue.

Every action is refused in read-only mode (403) and without a valid CSRF token (403), before
anything is read from the broker. A form posted by a browser without the page script gets a
303 back to the page with a notice; the page script posts with ``X-Asynctask-Live: 1`` and gets
JSON (``{"message": ..., "redirect": ...}``), so the page updates without a reload.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from asynctask.app import App
from asynctask.errors import InvalidName, JobNotFound
from asynctask.models import Job, JobStatus
from asynctask.names import validate_queue
from asynctask.web import data
from asynctask.web.dashboard import Dashboard, Urls
from asynctask.web.security import FIELD

__all__ = ["BULK_BATCH", "BULK_MAX", "Actions", "bulk_apply"]

#: Jobs read per batch by a bulk action, and the most one request changes.
BULK_BATCH = 100
BULK_MAX = 10_000
#: The largest action form accepted.
_MAX_FORM = 16 * 1024

_JOB_ACTIONS: dict[str, Callable[[App, str], Awaitable[Any]]] = {
    "retry": App.retry,
    "cancel": App.cancel,
    "pause": App.pause,
    "resume": App.resume,
    "delete": App.delete,
}
_PAST = {
    "retry": "retried",
    "cancel": "cancelled",
    "pause": "paused",
    "resume": "resumed",
    "delete": "deleted",
}


class Refused(Exception):
    """An action request that is refused before it touches the broker."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def bulk_apply(
    app: App,
    action: str,
    *,
    status: JobStatus,
    queue: str | None,
    task: str | None,
    limit: int = BULK_MAX,
    batch: int = BULK_BATCH,
) -> tuple[int, bool]:
    """Retry or delete the jobs in ``status`` matching the filters, ``batch`` at a time.

    Walks the listing with a cursor, so a retried job that fails again during the walk is not
    met twice. Returns how many jobs were changed and whether more remain past ``limit``.
    """
    change = _JOB_ACTIONS[action]
    done = 0
    before: tuple[float, str] | None = None
    while done < limit:
        page = await app.broker.list_jobs(
            status=status, queue=queue, task=task, limit=min(batch, limit - done), before=before
        )
        if not page:
            return done, False
        for job in page:
            try:
                await change(app, job.id)
            except JobNotFound:
                continue  # gone since it was listed
            done += 1
        before = (page[-1].created_at, page[-1].id)
    rest = await app.broker.list_jobs(status=status, queue=queue, task=task, limit=1, before=before)
    return done, bool(rest)


class Actions:
    """The action handlers, bound to one dashboard."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.d = dashboard
        self.app = dashboard.app

    async def _form(self, request: Request) -> dict[str, str]:
        """The posted form, once the request is allowed to act at all."""
        if self.d.read_only:
            raise Refused(403, "this dashboard is read-only")
        body = await request.body()
        if len(body) > _MAX_FORM:
            raise Refused(413, "form too large")
        form = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        token = form.get(FIELD) or request.headers.get("x-csrf-token")
        if not self.d.csrf.valid(request, token):
            raise Refused(403, "missing or invalid CSRF token: reload the page and try again")
        return form

    def _done(self, request: Request, message: str, back: str, *, status: int = 200) -> Response:
        if self.d.live_only(request):
            return JSONResponse({"message": message, "redirect": back}, status_code=status)
        separator = "&" if "?" in back else "?"
        return RedirectResponse(back + separator + urlencode({"notice": message}), status_code=303)

    def _back(self, request: Request, form: dict[str, str], default: str) -> str:
        """Where to return: the form's ``next`` if it is a page of this dashboard."""
        prefix = request.scope.get("root_path", "").rstrip("/")
        target = form.get("next", "")
        if target.startswith(prefix + "/") and not target.startswith("//") and "\\" not in target:
            return target
        return default

    async def _guarded(
        self, request: Request, act: Callable[[dict[str, str]], Awaitable[Response]]
    ) -> Response:
        try:
            form = await self._form(request)
        except Refused as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        return await act(form)

    async def job(self, request: Request) -> Response:
        """Retry, cancel, pause, resume or delete one job."""

        async def act(form: dict[str, str]) -> Response:
            url = Urls(request.scope.get("root_path", ""))
            action, job_id = form.get("action", ""), form.get("job_id", "")
            if action not in _JOB_ACTIONS or not job_id:
                return PlainTextResponse("unknown action or missing job_id", status_code=400)
            try:
                result = await _JOB_ACTIONS[action](self.app, job_id)
            except JobNotFound:
                return PlainTextResponse(f"no job with id {job_id!r}", status_code=404)
            if action == "delete":
                if not result:
                    return PlainTextResponse(f"no job with id {job_id!r}", status_code=404)
                return self._done(request, f"Job {job_id} deleted.", url("/jobs"))
            return self._done(request, _describe(action, result), self._back(request, form, url.job(job_id)))

        return await self._guarded(request, act)

    async def bulk(self, request: Request) -> Response:
        """Retry or delete every failed job matching a queue and task filter."""

        async def act(form: dict[str, str]) -> Response:
            url = Urls(request.scope.get("root_path", ""))
            action = form.get("action", "")
            if action not in ("retry", "delete") or form.get("status") != JobStatus.FAILED.value:
                return PlainTextResponse("bulk actions are retry or delete, on failed jobs", status_code=400)
            queue, task = form.get("queue") or None, form.get("task") or None
            done, more = await bulk_apply(self.app, action, status=JobStatus.FAILED, queue=queue, task=task)
            message = f"{done} failed job{'s' if done != 1 else ''} {_PAST[action]}."
            if more:
                message += f" More remain (at most {BULK_MAX} per request): run it again."
            back = url("/jobs", status=JobStatus.FAILED.value, queue=queue, task=task)
            return self._done(request, message, back)

        return await self._guarded(request, act)

    async def queue(self, request: Request) -> Response:
        """Pause or resume a queue, where the app offers it."""

        async def act(form: dict[str, str]) -> Response:
            control = data.queue_control(self.app)
            if control is None:
                return PlainTextResponse("queue pause is not available with this app", status_code=404)
            action, queue = form.get("action", ""), form.get("queue", "")
            if action not in ("pause", "resume"):
                return PlainTextResponse("unknown queue action", status_code=400)
            try:
                validate_queue(queue)
            except InvalidName as exc:
                return PlainTextResponse(str(exc), status_code=400)
            await (control[0] if action == "pause" else control[1])(queue)
            url = Urls(request.scope.get("root_path", ""))
            return self._done(request, f"Queue {queue} {_PAST[action]}.", self._back(request, form, url("/")))

        return await self._guarded(request, act)


#: The status each action leads to (a running job's cancel or pause is a request).
_LEADS_TO = {
    "retry": JobStatus.QUEUED,
    "cancel": JobStatus.CANCELLED,
    "pause": JobStatus.PAUSED,
    "resume": JobStatus.QUEUED,
}


def _describe(action: str, job: Job) -> str:
    """What an action did, in the job's terms."""
    if job.status is JobStatus.RUNNING and action in ("cancel", "pause"):
        return f"Job {job.id}: {action} requested; it stops at its next heartbeat."
    if job.status is not _LEADS_TO[action]:
        return f"Job {job.id} is {job.status.value}: nothing to {action}."
    return f"Job {job.id} {_PAST[action]}: now {job.status.value}."
