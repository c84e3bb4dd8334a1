"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The dashboard and a worker run as the CLI runs them (``asynctask web``, ``asynctask worker``),
on a fresh Postgres schema. With ``ASYNCTASK_SCREENSHOTS=1`` the run also writes the README's
screenshots to ``tests/web/screenshots/`` (left alone otherwise, so CI keeps the tree clean).
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest

from asynctask import App
from asynctask.brokers.postgres import PostgresBroker
from asynctask.models import Job, JobStatus
from tests.backend_postgres import URL, drop_schema, fresh_schema
from tests.web.servers import dashboard, worker
from tests.workerprocs import wait_for

CHROMIUM = shutil.which("chromium")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
    ),
]

SHOTS = Path(__file__).parent / "screenshots"
# Without the background-networking flags Chromium keeps trying to reach Google's services.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = "<script>alert(1)</script>"


def screenshot(page: Any, name: str) -> None:
    if os.environ.get("ASYNCTASK_SCREENSHOTS") == "1":
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def broker_url() -> Iterator[str]:
    schema = fresh_schema()
    run_async(PostgresBroker(URL, schema=schema).migrate)
    try:
        yield f"{URL}?schema={schema}"
    finally:
        run_async(drop_schema, schema)


def run_async(fn: Any, *args: Any) -> Any:
    """``anyio.run`` in a thread of its own: Playwright's sync API holds this thread's loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, fn, *args).result()


def on_app(broker: str, fn: Any) -> Any:
    """Run ``fn(app)`` on an opened App of the browser tests' module, bound to ``broker``."""
    from tests.web.browser_app import app

    async def go() -> Any:
        app.set_broker(broker)
        async with app:
            return await fn(app)

    return run_async(go)


def job(broker: str, job_id: str) -> Job | None:
    return on_app(broker, lambda app: app.get_job(job_id))  # type: ignore[no-any-return]


def post(url: str, form: dict[str, str], cookie: str | None = None) -> tuple[int, str]:
    """A plain HTTP POST (no browser, no page script)."""
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), method="POST")
    if cookie:
        request.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_follow_a_failure_retry_it_and_watch_it_succeed(page: Any, broker_url: str) -> None:
    async def seed(app: App) -> str:
        for i in range(12):
            await app.publish("send_welcome", f"user{i}@example.com")
        await app.publish("send_welcome", "later@example.com", delay=3600)
        for amount in (1999, 350):
            await app.publish("charge_card", amount)
        handle = await app.publish("charge_card", 4200)
        return handle.id

    with worker(broker_url), dashboard(broker_url) as base:
        failing = on_app(broker_url, seed)
        wait_for(lambda: len(on_app(broker_url, lambda app: app.list_jobs(status="failed"))) == 3)

        page.goto(f"{base}/")
        page.get_by_test_id("total-failed").get_by_text("3", exact=True).wait_for()
        assert page.locator("tr[data-queue=billing]").is_visible()
        screenshot(page, "overview")

        page.get_by_role("link", name="Jobs", exact=True).click()
        page.get_by_test_id("tab-failed").click()
        page.wait_for_url("**/jobs?status=failed")
        rows = page.locator("table[data-testid=jobs] tbody tr")
        assert rows.count() == 3 and "card declined for amount 4200" in rows.first.inner_text(), (
            "newest first"
        )
        screenshot(page, "jobs-failed")

        page.get_by_role("link", name=failing).click()
        page.wait_for_url(f"**/jobs/{failing}")
        trace = page.get_by_test_id("error").inner_text()
        assert trace.startswith("Traceback (most recent call last):")
        assert "RuntimeError: card declined for amount 4200" in trace and "browser_app.py" in trace
        assert page.locator("[data-status]").first.inner_text() == "failed"
        screenshot(page, "job-failed")

        page.evaluate("window.notReloaded = true")
        page.get_by_test_id("actions").get_by_test_id("retry").click()
        # The page script refreshes the live part every 2 s at most: no reload, no click.
        page.locator(".job-head [data-status=succeeded]").wait_for(timeout=10_000)
        assert page.evaluate("window.notReloaded") is True, "the page was reloaded"
        assert page.get_by_test_id("result").inner_text() == '{\n  "charged": 4200\n}'
        assert "retried" in page.locator("#notice").inner_text()
        assert page.dialogs == []


def test_filter_by_status(page: Any, broker_url: str) -> None:
    async def seed(app: App) -> None:
        for i in range(3):
            await app.publish("send_welcome", f"later{i}@example.com", delay=3600)
        await app.publish("send_welcome", "now@example.com")

    on_app(broker_url, seed)
    with dashboard(broker_url) as base:
        page.goto(f"{base}/jobs")
        assert page.locator("table[data-testid=jobs] tbody tr").count() == 4
        page.get_by_test_id("filter-status").select_option("scheduled")
        page.get_by_test_id("apply-filters").click()
        page.wait_for_url("**/jobs?status=scheduled**")
        statuses = page.locator("table[data-testid=jobs] [data-status]").all_inner_texts()
        assert statuses == ["scheduled"] * 3
        assert page.get_by_test_id("tab-scheduled").get_attribute("aria-current") == "page"


def test_a_script_payload_renders_as_text(page: Any, broker_url: str) -> None:
    handle = on_app(broker_url, lambda app: app.publish("send_welcome", XSS))
    with dashboard(broker_url) as base:
        page.goto(f"{base}/jobs/{handle.id}")
        assert page.get_by_test_id("payload").inner_text() == f'"{XSS}"'
        assert page.evaluate("document.querySelectorAll('main script').length") == 0
        # Through a live refresh too (the fragment is swapped in by the page script).
        page.locator("body[data-refreshes]").wait_for(state="attached")
        assert page.get_by_test_id("payload").inner_text() == f'"{XSS}"'
        assert page.evaluate("document.querySelectorAll('main script').length") == 0
    assert page.dialogs == [], "a dialog opened: the payload ran as script"


def test_actions_need_the_csrf_token(page: Any, broker_url: str) -> None:
    handle = on_app(broker_url, lambda app: app.publish("send_welcome", "x@example.com", delay=3600))
    with dashboard(broker_url) as base:
        page.goto(f"{base}/jobs/{handle.id}")
        cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
        token = page.locator("meta[name=csrf-token]").get_attribute("content")
        action = {"action": "cancel", "job_id": handle.id}
        assert post(f"{base}/actions/job", action)[0] == 403
        assert post(f"{base}/actions/job", action, cookie)[0] == 403
        assert post(f"{base}/actions/job", {**action, "csrf": "forged.token"}, cookie)[0] == 403
        assert job(broker_url, handle.id).status is JobStatus.SCHEDULED  # type: ignore[union-attr]
        code, _ = post(f"{base}/actions/job", {**action, "csrf": token}, cookie)
        assert code == 200  # the redirect to the job's page, followed
        assert job(broker_url, handle.id).status is JobStatus.CANCELLED  # type: ignore[union-attr]


def test_read_only_hides_and_refuses_actions(page: Any, broker_url: str) -> None:
    handle = on_app(broker_url, lambda app: app.publish("send_welcome", "x@example.com", delay=3600))
    with dashboard(broker_url, "--read-only") as base:
        page.goto(f"{base}/jobs/{handle.id}")
        assert page.get_by_test_id("read-only").is_visible()
        assert page.locator("button").count() == 0 and page.locator("form[method=post]").count() == 0
        page.goto(f"{base}/jobs")
        assert page.locator("form[method=post]").count() == 0
        cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
        token = page.locator("meta[name=csrf-token]").get_attribute("content")
        code, text = post(
            f"{base}/actions/job", {"action": "cancel", "job_id": handle.id, "csrf": token}, cookie
        )
        assert code == 403 and "read-only" in text
    assert job(broker_url, handle.id).status is JobStatus.SCHEDULED  # type: ignore[union-attr]
