"""CSRF, read-only mode, the auth hook and mounting under a prefix."""

from __future__ import annotations

import base64
import binascii

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Mount

from asynctask import App
from asynctask.models import JobStatus
from asynctask.web import create_app
from tests.web.helpers import client, fail, links, token

pytestmark = pytest.mark.anyio


async def failed(app: App) -> str:
    handle = await app.publish("send_email", "x@example.com")
    [job] = await app.broker.claim("emails", 1, lease=30, worker="w")
    await fail(app.broker, job, "boom")
    return handle.id


async def test_the_csrf_cookie_is_same_site_and_http_only(web: httpx.AsyncClient) -> None:
    cookie = (await web.get("/")).headers["set-cookie"]
    assert cookie.startswith("asynctask_csrf=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    again = await web.get("/")
    assert "set-cookie" not in again.headers, "the nonce is kept while the cookie lives"


async def test_actions_without_a_valid_csrf_token_are_refused(app: App) -> None:
    job_id = await failed(app)
    asgi = create_app(app)
    async with client(asgi) as web, client(asgi) as other:
        await refused_without_token(app, job_id, web, other)


async def refused_without_token(
    app: App, job_id: str, web: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    page = (await web.get(f"/jobs/{job_id}")).text
    good = token(page)
    nonce, _, signature = good.partition(".")
    for form in (
        {},
        {"csrf": ""},
        {"csrf": nonce},
        {"csrf": f"{nonce}.{'0' * len(signature)}"},
        {"csrf": good.upper()},
    ):
        answer = await web.post("/actions/job", data={"action": "retry", "job_id": job_id, **form})
        assert answer.status_code == 403, form
        assert "CSRF" in answer.text
    # A token is bound to its cookie: another browser's cookie does not match it.
    await other.get("/")
    answer = await other.post("/actions/job", data={"action": "retry", "job_id": job_id, "csrf": good})
    assert answer.status_code == 403
    assert (await app.get_job(job_id)).status is JobStatus.FAILED  # type: ignore[union-attr]
    answer = await web.post("/actions/job", data={"action": "retry", "job_id": job_id, "csrf": good})
    assert answer.status_code == 303
    assert (await app.get_job(job_id)).status is JobStatus.QUEUED  # type: ignore[union-attr]


async def test_a_token_signed_by_another_secret_is_refused(app: App) -> None:
    job_id = await failed(app)
    async with client(create_app(app, secret="one")) as first:
        forged = token((await first.get("/")).text)
        cookie = first.cookies["asynctask_csrf"]
    async with client(create_app(app, secret="two")) as second:
        second.cookies.set("asynctask_csrf", cookie)
        answer = await second.post("/actions/job", data={"action": "retry", "job_id": job_id, "csrf": forged})
    assert answer.status_code == 403


async def test_read_only_hides_and_refuses_every_action(app: App) -> None:
    job_id = await failed(app)
    async with client(create_app(app, read_only=True)) as web:
        pages = [(await web.get(p)).text for p in ("/", f"/jobs/{job_id}", "/jobs?status=failed")]
        for page in pages:
            assert '<form method="post"' not in page and "/actions/" not in page
            assert 'data-testid="read-only"' in page
        async with client(create_app(app)) as writable:
            csrf = token((await writable.get("/")).text)
            web.cookies.set("asynctask_csrf", writable.cookies["asynctask_csrf"])
        for path, form in [
            ("/actions/job", {"action": "retry", "job_id": job_id}),
            ("/actions/bulk", {"action": "delete", "status": "failed"}),
            ("/actions/queue", {"action": "pause", "queue": "emails"}),
        ]:
            answer = await web.post(path, data={"csrf": csrf, **form})
            assert answer.status_code == 403 and "read-only" in answer.text
    assert (await app.get_job(job_id)).status is JobStatus.FAILED  # type: ignore[union-attr]


async def test_the_auth_hook_guards_pages_actions_and_assets(app: App) -> None:
    seen: list[str] = []

    def allow_admins(request: Request) -> bool:
        seen.append(request.url.path)
        return request.headers.get("x-user") == "admin"

    async with client(create_app(app, auth=allow_admins)) as web:
        for path in ("/", "/jobs", "/static/dashboard.css"):
            assert (await web.get(path)).status_code == 401
        assert (await web.post("/actions/job", data={})).status_code == 401
        assert (await web.get("/", headers={"x-user": "admin"})).status_code == 200
    assert seen[:3] == ["/", "/jobs", "/static/dashboard.css"]


async def test_an_async_auth_hook_may_raise_to_answer(app: App) -> None:
    async def basic(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        if scheme.lower() != "basic" or (user, password) != ("ops", "pw"):
            raise HTTPException(401, headers={"WWW-Authenticate": 'Basic realm="asynctask"'})
        if request.method == "POST":
            raise HTTPException(403, "look, don't touch")
        return True

    async with client(create_app(app, auth=basic)) as web:
        refused = await web.get("/")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == 'Basic realm="asynctask"'
        assert (await web.get("/", auth=("ops", "wrong"))).status_code == 401
        assert (await web.get("/", auth=("ops", "pw"))).status_code == 200
        forbidden = await web.post("/actions/job", auth=("ops", "pw"), data={})
        assert forbidden.status_code == 403 and forbidden.text == "look, don't touch"


async def test_mounted_under_a_prefix_every_url_keeps_it(app: App) -> None:
    job_id = await failed(app)
    parent = Starlette(routes=[Mount("/tasks", create_app(app))])
    async with client(parent) as web:
        page = await web.get(f"/tasks/jobs/{job_id}")
        assert page.status_code == 200
        assert "Path=/tasks" in page.headers["set-cookie"]
        hrefs = [h for h in links(page.text) if not h.startswith("#")]
        assert hrefs and all(h.startswith("/tasks/") for h in hrefs), hrefs
        assert 'action="/tasks/actions/job"' in page.text and 'src="/tasks/static/dashboard.js"' in page.text
        assert (await web.get("/tasks/static/dashboard.js")).status_code == 200
        answer = await web.post(
            "/tasks/actions/job", data={"csrf": token(page.text), "action": "retry", "job_id": job_id}
        )
        assert answer.status_code == 303 and answer.headers["location"].startswith(f"/tasks/jobs/{job_id}?")
        found = await web.get("/tasks/jobs", params={"id": job_id})
        assert found.headers["location"] == f"/tasks/jobs/{job_id}"
