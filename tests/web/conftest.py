from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from asynctask import App, Fixed, JobCtx
from asynctask.testing import FakeClock
from asynctask.web import create_app
from tests.web.helpers import client


@pytest.fixture
async def app(clock: FakeClock) -> AsyncIterator[App]:
    app = App("memory://", clock=clock, retry=Fixed(0), failed_ttl=None)

    @app.task(queue="emails", max_retries=1)
    async def send_email(ctx: JobCtx, to: str) -> str:
        return f"sent to {to}"

    @app.task(queue="reports")
    async def build_report(ctx: JobCtx, day: int) -> dict[str, int]:
        return {"day": day}

    async with app:
        yield app


@pytest.fixture
async def web(app: App) -> AsyncIterator[httpx.AsyncClient]:
    async with client(create_app(app)) as c:
        yield c
