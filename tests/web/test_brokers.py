"""The dashboard on every broker: it reads and acts through the App and broker APIs only."""

from __future__ import annotations

import re

import pytest

from asynctask import App, Fixed, JobCtx, JobSpec
from asynctask.brokers import Broker
from asynctask.models import JobStatus
from asynctask.testing import FakeClock
from asynctask.testing.contract import BrokerFactory
from asynctask.web import create_app
from tests import backends
from tests.web.helpers import client, fail, links, token

pytestmark = pytest.mark.anyio


@pytest.fixture(params=backends.selected())
def broker_factory(request: pytest.FixtureRequest) -> BrokerFactory:
    """Every broker of this repository, for the plugin's ``broker`` fixture."""
    return backends.FACTORIES[request.param]


ROW = re.compile(r'data-job="([^"]+)"')


async def test_list_page_retry_and_counts_on_every_broker(broker: Broker, clock: FakeClock) -> None:
    app = App(broker, clock=clock, retry=Fixed(0), failed_ttl=None)

    @app.task(queue="mail", max_retries=0)
    async def send(ctx: JobCtx, n: int) -> int:
        return n

    for batch in range(3):
        await app.publish_many([JobSpec(task="send", payload=batch * 10 + i) for i in range(4)])
        clock.advance(1)
    expected = [j.id for j in await app.broker.list_jobs(limit=100)]
    [job] = await app.broker.claim("mail", 1, lease=30, worker="w")
    await fail(app.broker, job, "RuntimeError: <boom>")

    async with client(create_app(app, page_size=5)) as web:
        seen: list[str] = []
        url: str | None = "/jobs"
        while url is not None:
            page = (await web.get(url)).text
            seen += ROW.findall(page)
            url = next((h for h in links(page) if "before=" in h), None)
        assert seen == expected, "keyset pages cover every job once, newest first"

        overview = (await web.get("/")).text
        mail = overview.split('data-queue="mail"')[1].split("</tr>")[0]
        assert 'status=queued">11<' in mail and 'status=failed">1<' in mail

        failed = (await web.get("/jobs", params={"status": "failed"})).text
        assert ROW.findall(failed) == [job.id] and "RuntimeError: &lt;boom&gt;" in failed
        answer = await web.post(
            "/actions/job", data={"csrf": token(failed), "action": "retry", "job_id": job.id}
        )
        assert answer.status_code == 303
    retried = await app.get_job(job.id)
    assert retried is not None and retried.status is JobStatus.QUEUED
