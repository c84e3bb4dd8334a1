"""The dashboard's actions over the ASGI interface: one job, bulk, queue pause."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from asynctask import App, JobCtx
from asynctask.models import JobStatus
from asynctask.testing import FakeClock
from asynctask.web import create_app
from asynctask.web.actions import bulk_apply
from tests.web.helpers import client, fail, token

pytestmark = pytest.mark.anyio

LIVE = {"X-Asynctask-Live": "1"}


async def act(
    web: httpx.AsyncClient, path: str, page: str = "/", live: bool = True, **form: str
) -> httpx.Response:
    """POST an action with the CSRF token of ``page`` (whose GET also sets the cookie)."""
    csrf = token((await web.get(page)).text)
    return await web.post(path, data={"csrf": csrf, **form}, headers=LIVE if live else {})


async def status(app: App, job_id: str) -> JobStatus | None:
    job = await app.get_job(job_id)
    return None if job is None else job.status


async def failed_job(app: App, to: str = "x@example.com") -> str:
    handle = await app.publish("send_email", to)
    [job] = await app.broker.claim("emails", 1, lease=30, worker="w")
    await fail(app.broker, job, "ValueError: boom")
    return handle.id


async def test_retry_a_failed_job(app: App, web: httpx.AsyncClient) -> None:
    job_id = await failed_job(app)
    answer = await act(web, "/actions/job", f"/jobs/{job_id}", action="retry", job_id=job_id)
    assert answer.status_code == 200
    assert answer.json() == {"message": f"Job {job_id} retried: now queued.", "redirect": f"/jobs/{job_id}"}
    assert await status(app, job_id) is JobStatus.QUEUED


async def test_without_the_page_script_an_action_redirects_with_a_notice(
    app: App, web: httpx.AsyncClient
) -> None:
    job_id = await failed_job(app)
    back = "/jobs?status=failed&queue=emails"
    answer = await act(web, "/actions/job", back, live=False, action="retry", job_id=job_id, next=back)
    assert answer.status_code == 303
    target = urlsplit(answer.headers["location"])
    assert target.path == "/jobs" and parse_qs(target.query)["notice"] == [
        f"Job {job_id} retried: now queued."
    ]
    assert "retried: now queued." in (await web.get(answer.headers["location"])).text
    # A "next" that leaves the dashboard is ignored.
    job_id = await failed_job(app)
    answer = await act(
        web, "/actions/job", "/", live=False, action="retry", job_id=job_id, next="//evil.test/x"
    )
    assert answer.headers["location"].startswith(f"/jobs/{job_id}?")


async def test_cancel_pause_resume_delete(app: App, web: httpx.AsyncClient) -> None:
    a = (await app.publish("build_report", 1)).id
    b = (await app.publish("build_report", 2)).id
    assert (await act(web, "/actions/job", action="pause", job_id=a)).json()[
        "message"
    ] == f"Job {a} paused: now paused."
    assert await status(app, a) is JobStatus.PAUSED
    assert (await act(web, "/actions/job", action="resume", job_id=a)).status_code == 200
    assert await status(app, a) is JobStatus.QUEUED
    assert (await act(web, "/actions/job", action="cancel", job_id=b)).status_code == 200
    assert await status(app, b) is JobStatus.CANCELLED
    again = await act(web, "/actions/job", action="resume", job_id=b)
    assert again.json()["message"] == f"Job {b} is cancelled: nothing to resume."
    deleted = await act(web, "/actions/job", action="delete", job_id=a)
    assert deleted.json() == {"message": f"Job {a} deleted.", "redirect": "/jobs"}
    assert await status(app, a) is None
    assert (await act(web, "/actions/job", action="delete", job_id=a)).status_code == 404
    assert (await act(web, "/actions/job", action="retry", job_id="nope")).status_code == 404
    assert (await act(web, "/actions/job", action="explode", job_id=b)).status_code == 400


async def test_cancel_of_a_running_job_is_a_request(app: App, web: httpx.AsyncClient) -> None:
    job_id = (await app.publish("build_report", 1)).id
    await app.broker.claim("reports", 1, lease=30, worker="w")
    answer = await act(web, "/actions/job", action="cancel", job_id=job_id)
    assert "cancel requested" in answer.json()["message"]
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.RUNNING and job.cancel_requested
    page = (await web.get(f"/jobs/{job_id}")).text
    assert "cancel requested" in page and 'data-testid="cancel"' not in page


async def test_bulk_retry_and_delete_follow_the_filter(app: App, web: httpx.AsyncClient) -> None:
    emails = [await failed_job(app, f"{i}@example.com") for i in range(3)]
    handle = await app.publish("build_report", 1)
    [report] = await app.broker.claim("reports", 1, lease=30, worker="w")
    await fail(app.broker, report, "boom")
    answer = await act(
        web, "/actions/bulk", "/jobs?status=failed", action="retry", status="failed", queue="emails", task=""
    )
    assert answer.json()["message"] == "3 failed jobs retried."
    assert [await status(app, i) for i in emails] == [JobStatus.QUEUED] * 3
    assert await status(app, handle.id) is JobStatus.FAILED
    answer = await act(web, "/actions/bulk", action="delete", status="failed", task="build_report")
    assert answer.json()["message"] == "1 failed job deleted."
    assert await status(app, handle.id) is None
    refused = await act(web, "/actions/bulk", action="delete", status="queued")
    assert refused.status_code == 400 and [await status(app, i) for i in emails] == [JobStatus.QUEUED] * 3


async def test_bulk_works_in_bounded_batches(app: App) -> None:
    ids = [await failed_job(app, f"{i}@example.com") for i in range(7)]
    assert await bulk_apply(
        app, "retry", status=JobStatus.FAILED, queue=None, task=None, limit=5, batch=2
    ) == (
        5,
        True,
    )
    assert await bulk_apply(app, "delete", status=JobStatus.FAILED, queue=None, task=None, batch=2) == (
        2,
        False,
    )
    assert sorted([str(await status(app, i)) for i in ids]) == ["None", "None"] + ["queued"] * 5


async def test_queue_pause_and_resume(app: App) -> None:
    async with client(create_app(app, counts_ttl=0)) as web:  # counts read afresh on each page
        await _pause_and_resume(app, web)


async def _pause_and_resume(app: App, web: httpx.AsyncClient) -> None:
    async def row() -> str:
        page = (await web.get("/")).text
        return page.split('<tr data-queue="emails">', 1)[1].split("</tr>", 1)[0]

    await app.publish("send_email", "x@example.com")
    emails = await row()
    assert 'data-testid="queue-pause"' in emails and 'data-testid="queue-resume"' not in emails
    answer = await act(web, "/actions/queue", action="pause", queue="emails")
    assert answer.json()["message"] == "Queue emails paused."
    assert (await app.queue_settings("emails")).paused, "paused in the broker, for every worker"
    emails = await row()
    assert '<span class="tag">paused</span>' in emails
    assert 'data-testid="queue-resume"' in emails and 'data-testid="queue-pause"' not in emails
    assert (await act(web, "/actions/queue", action="resume", queue="emails")).status_code == 200
    assert not (await app.queue_settings("emails")).paused
    assert (await act(web, "/actions/queue", action="pause", queue="bad{name}")).status_code == 400


async def test_queue_pause_only_where_the_app_offers_it(clock: FakeClock) -> None:
    class Unpausable(App):
        pause_queue = None  # type: ignore[assignment]
        resume_queue = None  # type: ignore[assignment]

    unpausable = Unpausable("memory://", clock=clock)

    @unpausable.task(queue="emails")
    async def send(ctx: JobCtx) -> None:
        return None

    async with unpausable, client(create_app(unpausable)) as web:
        await send.publish(None)
        assert "/actions/queue" not in (await web.get("/")).text
        assert (await act(web, "/actions/queue", action="pause", queue="emails")).status_code == 404
