"""Shared helpers of the dashboard tests: an HTTP client on the ASGI app, and reading its pages."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx

from asynctask.models import Job, Outcome, OutcomeKind

_TOKEN = re.compile(r'name="csrf-token" content="([^"]+)"')
_HREF = re.compile(r'href="([^"]+)"')


def client(asgi: Any, base: str = "http://dash.test") -> httpx.AsyncClient:
    """A client talking to the ASGI app in-process (no server, no lifespan)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=base)


def token(page: str) -> str:
    """The CSRF token a page carries (in a meta tag, and in every form)."""
    match = _TOKEN.search(page)
    assert match, "the page has no CSRF token"
    return html.unescape(match.group(1))


def links(page: str) -> list[str]:
    return [html.unescape(h) for h in _HREF.findall(page)]


async def fail(broker: Any, job: Job, error: str) -> None:
    """Finish a claimed job as failed with ``error``."""
    assert await broker.complete(
        [Outcome(job_id=job.id, token=job.token, kind=OutcomeKind.FAILED, error=error)]
    ) == [True]
