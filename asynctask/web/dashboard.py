"""What the pages and the actions share: the configuration, URL building and rendering."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from asynctask.app import App
from asynctask.models import JobStatus
from asynctask.web import present
from asynctask.web.security import Csrf

__all__ = ["LIVE_HEADER", "Dashboard", "Urls"]

#: The header the page script sends to ask for the live part of a page only.
LIVE_HEADER = "x-asynctask-live"

# No inline script or style anywhere: the policy forbids them, so injected markup cannot run.
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
    ),
}


class Urls:
    """Builds the dashboard's URLs under the request's ``root_path`` (the mount prefix)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")

    def __call__(self, path: str = "/", **params: Any) -> str:
        query = urlencode({k: v for k, v in params.items() if v is not None and v != ""})
        return f"{self.prefix}{path}" + (f"?{query}" if query else "")

    def job(self, job_id: str) -> str:
        """A job's page; ids may hold any printable character, so it is quoted whole."""
        return self(f"/jobs/{quote(job_id, safe='')}")

    def static(self, name: str) -> str:
        return self(f"/static/{name}")


class Dashboard:
    """The configuration and rendering shared by the pages and the actions."""

    def __init__(
        self,
        app: App,
        *,
        read_only: bool,
        csrf: Csrf,
        poll_interval: float,
        title: str,
        page_size: int,
        counts_ttl: float = 1.0,
    ) -> None:
        self.app = app
        self.counts_ttl = counts_ttl
        self.read_only = read_only
        self.csrf = csrf
        self.poll_interval = poll_interval
        self.title = title
        self.page_size = page_size
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("asynctask.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(
            when=present.when,
            ago=present.ago,
            duration=present.duration,
            first_line=present.first_line,
            readable=present.readable,
            statuses=list(JobStatus),
        )

    def live_only(self, request: Request) -> bool:
        """Whether the page script asked for the live part of the page only."""
        return request.headers.get(LIVE_HEADER) == "1"

    def render(
        self,
        request: Request,
        template: str,
        *,
        live: str | None = None,
        status_code: int = 200,
        **context: Any,
    ) -> Response:
        """Render a page (or, for the page script's refresh, only its ``live`` part)."""
        nonce, fresh = self.csrf.nonce(request)
        context.update(
            url=Urls(request.scope.get("root_path", "")),
            csrf_token=self.csrf.token(nonce),
            read_only=self.read_only,
            broker=self.app.display_url,
            title=self.title,
            poll_ms=int(self.poll_interval * 1000),
            now=self.app.clock(),
            notice=request.query_params.get("notice", ""),
        )
        name = live if live is not None and self.live_only(request) else template
        response = HTMLResponse(self.env.get_template(name).render(context), status_code=status_code)
        response.headers.update(_HEADERS)
        if fresh:
            self.csrf.set_cookie(response, request, nonce)
        return response
