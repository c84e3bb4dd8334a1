"""The FastAPI example end to end: publish over HTTP → embedded worker runs it → result over HTTP."""

from __future__ import annotations

import httpx
import pytest

from asynctask.testing import wait_until
from examples.fastapi_app import api, jobs

pytestmark = pytest.mark.anyio


async def test_publish_run_and_fetch_over_http() -> None:
    async with api.router.lifespan_context(api):
        worker = api.state.asynctask_worker
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            created = await client.post("/thumbnails", params={"url": "https://example.com/cat.png"})
            assert created.status_code == 202
            job_id = created.json()["job_id"]

            async def done() -> bool:
                response = await client.get(f"/jobs/{job_id}")
                return bool(response.json()["status"] == "succeeded")

            await wait_until(done)
            body = (await client.get(f"/jobs/{job_id}")).json()
            assert body["result"] == {"url": "https://example.com/cat.thumb.png", "width": 128}
            assert (await client.get("/jobs/nope")).status_code == 404
        assert worker.stats.succeeded == 1
    # The lifespan's exit stopped the worker and closed the app.
    assert not jobs.broker.is_open
