"""``create_app``: the dashboard as an ASGI application, and what every page shares.

The application is a plain Starlette app: serve it alone (``asynctask web``, or any ASGI server)
or mount it in FastAPI/Starlette (``api.mount("/tasks", create_app(app))``). Every link, form
and asset URL starts from the request's ``root_path``, so the mount prefix (or a proxy's
``--root-path``) is respected everywhere.

Served alone, its lifespan opens the App (counted opens: sharing is safe). Mounted, the parent
app's lifespan must keep the App open (``asynctask.contrib.fastapi.lifespan`` does), because
Starlette does not run a mounted app's lifespan.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from asynctask.app import App
from asynctask.errors import AsyncTaskError, InvalidName
from asynctask.web.actions import Actions
from asynctask.web.dashboard import Dashboard
from asynctask.web.pages import Pages
from asynctask.web.security import AuthHook, AuthMiddleware, Csrf

__all__ = ["create_app"]


def create_app(
    app: App,
    *,
    read_only: bool = False,
    auth: AuthHook | None = None,
    secret: str | bytes | None = None,
    poll_interval: float = 2.0,
    title: str = "asynctask",
    page_size: int = 50,
    counts_ttl: float = 1.0,
    debug: bool = False,
) -> Starlette:
    """The dashboard of ``app`` as an ASGI application.

    * ``read_only``: show everything, offer no action, refuse every action request (403).
    * ``auth``: ``auth(request) -> bool`` (or ``async``), called for every request; ``False``
      answers 401, a raised ``starlette.exceptions.HTTPException`` answers as it says.
    * ``secret``: signs the CSRF tokens (default ``$ASYNCTASK_WEB_SECRET``, else random per
      process: give the same one to every process behind a load balancer).
    * ``poll_interval``: seconds between the live refreshes of an open page (at most 2 s).
    * ``page_size``: jobs per page of the job list.
    * ``counts_ttl``: seconds the per-queue, per-status counts are reused across requests (on
      Postgres a count is a pass over the table: raise it for very large tables; 0 recounts on
      every request).

    >>> api.mount("/tasks", create_app(app, auth=check_user))     # doctest: +SKIP
    """
    if not 0.2 <= poll_interval <= 2.0:
        raise ValueError("poll_interval must be between 0.2 and 2 seconds")
    if not 1 <= page_size <= 500:
        raise ValueError("page_size must be between 1 and 500")
    if counts_ttl < 0:
        raise ValueError("counts_ttl must be >= 0")
    dashboard = Dashboard(
        app,
        read_only=read_only,
        csrf=Csrf(secret or os.environ.get("ASYNCTASK_WEB_SECRET")),
        poll_interval=poll_interval,
        title=title,
        page_size=page_size,
        counts_ttl=counts_ttl,
    )
    pages, actions = Pages(dashboard), Actions(dashboard)
    routes = [
        Route("/", pages.overview, name="overview"),
        Route("/jobs", pages.jobs, name="jobs"),
        Route("/jobs/{job_id:path}", pages.job, name="job"),
        Route("/workers", pages.workers, name="workers"),
        Route("/periodic", pages.periodic, name="periodic"),
        Route("/actions/job", actions.job, methods=["POST"]),
        Route("/actions/bulk", actions.bulk, methods=["POST"]),
        Route("/actions/queue", actions.queue, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("asynctask.web", "static")]), name="static"),
    ]

    async def unavailable(request: Request, exc: Exception) -> Response:
        # Bad input (a queue name no broker accepts) is the request's fault; anything else from
        # the library or the network means the broker is down, refused, or the App is not open:
        # say so on the page.
        if isinstance(exc, InvalidName):
            return dashboard.render(
                request, "error.html", status_code=400, heading="Bad request", message=str(exc), retry=False
            )
        heading = "The broker did not answer"
        return dashboard.render(
            request, "error.html", status_code=503, heading=heading, message=str(exc), retry=True
        )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with app:
            yield

    middleware = [Middleware(AuthMiddleware, hook=auth)] if auth is not None else []
    return Starlette(
        debug=debug,
        routes=routes,
        middleware=middleware,
        exception_handlers={AsyncTaskError: unavailable, OSError: unavailable},
        lifespan=lifespan,
    )
