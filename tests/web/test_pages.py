"""The dashboard's pages over the ASGI interface (no server, no browser)."""

from __future__ import annotations

import html

import httpx
import msgspec
import pytest

from asynctask import App, Interval, JobCtx, JobSpec
from asynctask.brokers.postgres import PostgresBroker
from asynctask.models import JobStatus, Outcome, OutcomeKind
from asynctask.periodic import tick_job_id
from asynctask.testing import FakeClock
from asynctask.web import create_app
from tests.backend_postgres import URL, drop_schema, fresh_schema
from tests.web.helpers import client, fail, links

pytestmark = pytest.mark.anyio


async def test_overview_counts_queues_and_the_last_hour(
    app: App, web: httpx.AsyncClient, clock: FakeClock
) -> None:
    await app.publish("send_email", "a@example.com")
    clock.advance(90)
    await app.publish("send_email", "b@example.com")
    await app.publish("build_report", 3, delay=600)
    [job] = await app.broker.claim("emails", 1, lease=30, worker="w")
    clock.advance(10)
    await app.broker.complete(
        [Outcome(job_id=job.id, token=job.token, kind=OutcomeKind.SUCCEEDED, result=b'"ok"', expires_at=None)]
    )
    page = (await web.get("/")).text
    assert 'data-queue="emails"' in page and 'data-queue="reports"' in page
    emails = page.split('data-queue="emails"')[1].split("</tr>")[0]
    # emails: 1 queued, 1 succeeded; its oldest ready job waits since the second publish.
    assert (
        "/jobs?queue=emails&amp;status=queued" in emails
        and "/jobs?queue=emails&amp;status=succeeded" in emails
    )
    assert "10.0 s" in emails, "age of the oldest ready job"
    assert '<strong data-testid="throughput">1</strong>' in page
    assert 'data-testid="workers-unavailable"' in page


async def test_live_part_alone_on_request(web: httpx.AsyncClient) -> None:
    full = await web.get("/jobs")
    live = await web.get("/jobs", headers={"X-Asynctask-Live": "1"})
    assert full.text.startswith("<!doctype html>") and "<html" not in live.text
    assert 'data-testid="jobs"' in live.text and 'data-testid="jobs"' in full.text


async def test_jobs_newest_first_with_filters(app: App, web: httpx.AsyncClient, clock: FakeClock) -> None:
    ids = []
    for i in range(4):
        ids.append((await app.publish("send_email", f"u{i}@example.com")).id)
        clock.advance(1)
    report = (await app.publish("build_report", 7)).id
    [first] = await app.broker.claim("emails", 1, lease=30, worker="w")
    await fail(app.broker, first, "Traceback ...\nValueError: no such mailbox")
    page = (await web.get("/jobs")).text
    rows = [line.split('data-job="')[1].split('"')[0] for line in page.splitlines() if 'data-job="' in line]
    assert rows == [report, *reversed(ids)]
    failed = (await web.get("/jobs", params={"status": "failed"})).text
    assert f'data-job="{first.id}"' in failed and f'data-job="{report}"' not in failed
    assert "ValueError: no such mailbox" in failed
    assert 'data-testid="bulk"' in failed
    by_task = (await web.get("/jobs", params={"task": "build_report"})).text
    assert f'data-job="{report}"' in by_task and ids[1] not in by_task
    by_queue = (await web.get("/jobs", params={"queue": "emails", "status": "queued"})).text
    assert sum(f'data-job="{i}"' in by_queue for i in ids) == 3
    nothing = (await web.get("/jobs", params={"status": "bogus"})).text
    assert f'data-job="{report}"' in nothing, "an unknown status is no filter"


async def test_pages_of_jobs_follow_keyset_cursors(app: App, clock: FakeClock) -> None:
    published = []
    for i in range(7):
        published += [h.id for h in await app.publish_many([JobSpec(task="build_report", payload=i)] * 2)]
        clock.advance(0.5)
    expected = [j.id for j in await app.broker.list_jobs(limit=100)]
    seen: list[str] = []
    async with client(create_app(app, page_size=3)) as web:
        url: str | None = "/jobs"
        while url:
            page = (await web.get(url)).text
            seen += [
                line.split('data-job="')[1].split('"')[0]
                for line in page.splitlines()
                if 'data-job="' in line
            ]
            url = next((h for h in links(page) if "before=" in h and h.startswith("/jobs?")), None)
            assert len(seen) <= 14
    assert seen == expected and sorted(seen) == sorted(published)


async def test_find_by_id(app: App, web: httpx.AsyncClient) -> None:
    handle = await app.publish("send_email", "x@example.com", job_id="signup/42?#%")
    found = await web.get("/jobs", params={"id": " signup/42?#% "})
    assert found.status_code == 303
    assert found.headers["location"] == "/jobs/signup%2F42%3F%23%25"
    page = await web.get(found.headers["location"])
    assert page.status_code == 200 and handle.id in html.unescape(page.text)
    missing = await web.get("/jobs", params={"id": "nope"})
    assert missing.status_code == 200 and "No job with id &#39;nope&#39;" in missing.text
    gone = await web.get("/jobs/nope")
    assert gone.status_code == 404 and "No job" in gone.text


async def test_job_detail_shows_everything_escaped(
    app: App, web: httpx.AsyncClient, clock: FakeClock
) -> None:
    handle = await app.publish("send_email", "<script>alert(1)</script>")
    [job] = await app.broker.claim("emails", 1, lease=30, worker="w")
    await app.broker.save(job.id, job.token, state=b'{"cursor": "<b>7</b>"}')
    clock.advance(2)
    trace = "\n".join(
        [
            "Traceback (most recent call last):",
            '  File "jobs.py", line 3',
            "RuntimeError: <img src=x onerror=alert(2)>",
        ]
    )
    await fail(app.broker, job, trace)
    page = (await web.get(f"/jobs/{handle.id}")).text
    assert (
        "<script>alert(1)</script>" not in page and "&#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in page
    )
    assert "<img src=x" not in page and "RuntimeError: &lt;img src=x onerror=alert(2)&gt;" in page
    assert "File &#34;jobs.py&#34;, line 3" in page, "the whole traceback"
    assert "&lt;b&gt;7&lt;/b&gt;" in page, "saved state"
    assert 'data-testid="attempts">1 of 2<' in page
    for label in ("created", "run at", "started", "finished", "lease expires", "expires"):
        assert f"<th>{label}</th>" in page
    assert "2027-01-15 08:00:00.000 UTC" in page, "timestamps in UTC"
    assert 'data-testid="retry"' in page and 'data-testid="cancel"' not in page


async def test_job_detail_shows_the_result(app: App, web: httpx.AsyncClient) -> None:
    handle = await app.publish("build_report", 5)
    [job] = await app.broker.claim("reports", 1, lease=30, worker="w")
    await app.broker.complete(
        [Outcome(job_id=job.id, token=job.token, kind=OutcomeKind.SUCCEEDED, result=b'{"day":5}')]
    )
    page = (await web.get(f"/jobs/{handle.id}")).text
    assert 'data-testid="result">{\n  &#34;day&#34;: 5\n}</pre>' in page


async def test_workflow_around_group_members_and_chain_links(app: App, web: httpx.AsyncClient) -> None:
    group = await app.group([JobSpec(task="build_report", payload=d) for d in (1, 2)], group_id="g1")
    chain = await app.chain(
        [JobSpec(task="build_report", payload=1), JobSpec(task="send_email", payload="x")]
    )
    container = (await web.get(f"/jobs/{group}")).text
    assert 'href="/jobs/g1%3A0"' in container and 'href="/jobs/g1%3A1"' in container
    member = (await web.get("/jobs/g1:1")).text
    assert "Parent: " in member and 'href="/jobs/g1"' in member and '<li class="here">' in member
    link = (await web.get(f"/jobs/{chain}:0")).text
    assert f'href="/jobs/{chain}%3A0"' in link
    assert f'<span class="mono muted">{chain}:1</span>' in link, "the next link is not enqueued yet"
    assert '<span class="status s-pending">pending</span>' in link


async def test_children_and_pipeline_progress(app: App, web: httpx.AsyncClient, clock: FakeClock) -> None:
    parent = await app.publish("build_report", 1)
    [job] = await app.broker.claim("reports", 1, lease=30, worker="w")
    child = app.build_job(JobSpec(task="send_email", payload="kid@example.com", job_id=f"{parent.id}:0"))
    progress = {
        "step": 2,
        "input": [1],
        "log": [{"step": "convert", "index": 1, "attempt": 1, "try": 1, "error": "E"}],
    }
    await app.broker.save(job.id, job.token, state=msgspec.json.encode(progress))
    await app.broker.complete(
        [
            Outcome(
                job_id=job.id,
                token=job.token,
                kind=OutcomeKind.SUCCEEDED,
                spawn=(msgspec.structs.replace(child, parent_id=job.id),),
            )
        ]
    )
    page = (await web.get(f"/jobs/{parent.id}")).text
    assert "Children (1)" in page and f'href="/jobs/{parent.id}%3A0"' in page
    assert 'data-testid="pipeline">2 steps done' in page and "convert" in page
    assert (await app.get_job(parent.id)).status is JobStatus.WAITING  # type: ignore[union-attr]


async def test_workers_page_degrades_without_a_registry(app: App, web: httpx.AsyncClient) -> None:
    page = (await web.get("/workers")).text
    assert 'data-testid="workers-unavailable"' in page


async def test_workers_page_lists_a_registry_when_the_app_has_one(clock: FakeClock) -> None:
    class WithWorkers(App):
        async def list_workers(self) -> list[dict[str, object]]:
            return [{"id": "w-1", "host": "box", "running": 3}]

    async with WithWorkers("memory://", clock=clock) as app, client(create_app(app)) as web:
        page = (await web.get("/workers")).text
        overview = (await web.get("/")).text
    assert "<td>w-1</td>" in page and "<td>box</td>" in page and "<th>running</th>" in page
    assert "<strong>1</strong> live worker<" in overview


async def test_periodic_page_shows_next_and_last_tick(clock: FakeClock) -> None:
    clock.now = 1_800_000_030.0  # 30 s past a minute boundary
    app = App("memory://", clock=clock)

    @app.periodic(Interval(60))
    async def heartbeat(ctx: JobCtx) -> None:
        return None

    from datetime import UTC, datetime

    last = datetime.fromtimestamp(1_800_000_000.0, UTC)
    async with app, client(create_app(app)) as web:
        await app.publish(heartbeat, None, job_id=tick_job_id("heartbeat", last))
        [job] = await app.broker.claim("default", 1, lease=30, worker="w")
        await fail(app.broker, job, "RuntimeError: tick broke")
        page = (await web.get("/periodic")).text
    row = page.split('data-task="heartbeat"')[1].split("</tr>")[0]
    assert "interval" in row.lower()
    assert "2027-01-15 08:01:00.000 UTC" in row and "(in 30.0 s)" in row, "next tick"
    assert "2027-01-15 08:00:00.000 UTC" in row, "last tick"
    assert "s-failed" in row and "RuntimeError: tick broke" in row and "periodic%3Aheartbeat%3A" in row


async def test_static_assets_ship_in_the_package(web: httpx.AsyncClient) -> None:
    page = (await web.get("/")).text
    assert 'src="/static/dashboard.js"' in page and 'href="/static/dashboard.css"' in page
    assert "http://" not in page.split("<main>")[0].replace("http://dash.test", ""), "no CDN"
    for name in ("dashboard.js", "dashboard.css", "favicon.svg"):
        assert (await web.get(f"/static/{name}")).status_code == 200


async def test_every_page_carries_a_strict_content_security_policy(web: httpx.AsyncClient) -> None:
    for path in ("/", "/jobs", "/workers", "/periodic", "/jobs/missing"):
        policy = (await web.get(path)).headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy


async def test_a_failing_broker_is_a_503_page_with_the_url_redacted(clock: FakeClock) -> None:
    schema = fresh_schema()
    await PostgresBroker(URL, schema=schema, clock=clock).migrate()
    url = URL.replace("postgres@", "postgres:s3cret@") + f"?schema={schema}"  # trust auth: any password
    try:
        async with App(url, clock=clock) as app, client(create_app(app)) as web:
            assert (await web.get("/")).status_code == 200
            await drop_schema(schema)  # the schema goes away under the running dashboard
            page = await web.get("/jobs")
    finally:
        await drop_schema(schema)
    assert page.status_code == 503
    assert "postgres:***@127.0.0.1" in page.text and "s3cret" not in page.text
    assert 'data-testid="broker-error"' in page.text and "asynctask migrate" in page.text


async def test_counts_are_reused_for_counts_ttl(app: App) -> None:
    await app.publish("send_email", "a@example.com")

    async def queued_tab(web: httpx.AsyncClient) -> str:
        page = (await web.get("/jobs")).text
        return page.split('data-testid="tab-queued"')[1].split("</a>")[0]

    async with (
        client(create_app(app, counts_ttl=3600)) as cached,
        client(create_app(app, counts_ttl=0)) as fresh,
    ):
        assert '<span class="n">1</span>' in await queued_tab(cached)
        assert '<span class="n">1</span>' in await queued_tab(fresh)
        await app.publish("send_email", "b@example.com")
        assert '<span class="n">1</span>' in await queued_tab(cached), "reused"
        assert '<span class="n">2</span>' in await queued_tab(fresh), "counted again"
    with pytest.raises(ValueError, match="counts_ttl"):
        create_app(app, counts_ttl=-1)


async def test_bad_input_is_a_400_page(clock: FakeClock) -> None:
    from tests.backend_redis import REDIS_URL

    async with App(f"{REDIS_URL}?prefix=t-web-bad", clock=clock) as app, client(create_app(app)) as web:
        page = await web.get("/jobs", params={"queue": "no{braces}"})
    assert page.status_code == 400 and "queue name must be non-empty and contain no braces" in page.text
