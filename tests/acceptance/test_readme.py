"""Every Python block of the README runs: here, or in the test that owns its section.

Blocks are read from the README itself (nothing is kept in a copy that could drift) and grouped by
their ``##`` section. Each section's blocks run in order in one namespace on the in-memory broker,
with stand-ins for what the README leaves to the reader (``smtp_send``, ``Image``, a database
pool ...); top-level ``await`` works as in an asyncio REPL. Sections that need more (a project on
disk, an HTTP server, a signal) are run by the tests named in :data:`OWNED`; a section with Python
blocks and neither a runner here nor an owner fails :func:`test_every_section_is_run`.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import re
import shlex
import sys
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import click
import msgspec
import pytest

import asynctask
from asynctask import App, Job, JobCtx, JobStatus
from asynctask.cli import main
from asynctask.testing import drain

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

#: Sections whose blocks another test runs as written.
OWNED = {
    "Testing your tasks": "tests/acceptance/test_readme_testing.py",
    "Web dashboard": "tests/web/test_readme.py",
    "Observability": "tests/observability/test_readme.py",
    "Lifecycle": "tests/acceptance/test_lifecycle.py (examples/lifecycle.py holds the block)",
}


def sections() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    title = ""
    for match in re.finditer(
        r"^## (?P<title>[^\n]+)$|^```python\n(?P<code>.*?)^```", README.read_text(), re.M | re.S
    ):
        if match["title"]:
            title = match["title"]
        else:
            found.setdefault(title, []).append(match["code"])
    return found


async def run(code: str, namespace: dict[str, Any]) -> None:
    """Run ``code`` like an asyncio REPL would: top-level ``await`` allowed."""
    compiled = compile(code, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)
    if result is not None:
        await result


def base_namespace(app: App) -> dict[str, Any]:
    namespace: dict[str, Any] = {name: getattr(asynctask, name) for name in asynctask.__all__}
    namespace.update(
        __name__="readme",
        app=app,
        msgspec=msgspec,
        anyio=anyio,
        time=time,
        datetime=datetime,
        timedelta=timedelta,
        UTC=UTC,
        dataclasses=dataclasses,
        AsyncIterator=AsyncIterator,
    )
    return namespace


@contextlib.asynccontextmanager
async def worker_running(app: App) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        worker = app.worker()
        await tg.start(worker.run)
        yield
        worker.stop()


class Email(msgspec.Struct):
    to: str
    subject: str


Runner = Callable[[list[str]], Awaitable[None]]


async def quick_start(code: list[str]) -> None:
    sent: list[tuple[str, str]] = []

    async def smtp_send(to: str, subject: str) -> None:
        sent.append((to, subject))

    namespace = base_namespace(App("memory://"))
    namespace["smtp_send"] = smtp_send
    printed: list[Any] = []
    namespace["print"] = printed.append
    await run(code[0].replace('"postgresql://app@db/app"', '"memory://"'), namespace)
    app = namespace["app"]
    async with worker_running(app):
        await run(code[1], namespace)
    assert sent == [("ada@example.com", "Hi")]
    assert printed == ["sent to ada@example.com"]


async def tasks_and_handlers(code: list[str]) -> None:
    app = App("memory://")
    namespace = base_namespace(app)
    observed: list[str] = []
    namespace.update(
        Image=type("Image", (msgspec.Struct,), {"__annotations__": {"url": str}}),
        Thumbnail=type("Thumbnail", (msgspec.Struct,), {"__annotations__": {"url": str}}),
        metrics=types.SimpleNamespace(observe=lambda task, seconds: observed.append(task)),
    )
    definitions, middleware = code
    await run(definitions.replace("=...,", "=None,"), namespace)
    assert {"resize", "billing.charge", "nightly_cleanup"} <= set(app.tasks)
    await run(middleware, namespace)
    async with app:
        await app.publish("nightly_cleanup")
        await drain(app)
    assert observed == ["nightly_cleanup"]


async def sync_handlers(code: list[str]) -> None:
    app = App("memory://")
    namespace = base_namespace(app)
    invoice_type = type("Invoice", (msgspec.Struct,), {"__annotations__": {"number": str}})
    renderer = types.SimpleNamespace(
        render=lambda invoice: types.SimpleNamespace(pages=3, data=invoice.number.encode())
    )
    namespace.update(Invoice=invoice_type, legacy_renderer=renderer)
    await run(code[0], namespace)
    async with app:
        handle = await namespace["render_pdf"].publish(invoice_type(number="A-1"))
        await drain(app)
        assert await handle.result() == b"A-1"
        job = await app.get_job(handle.id)
        assert job is not None and job.status is JobStatus.SUCCEEDED


async def pydantic_models(code: list[str]) -> None:
    pydantic = pytest.importorskip("pydantic")
    app = App("memory://")
    namespace = base_namespace(app)
    namespace.update(pydantic=pydantic, Receipt=pydantic.create_model("Receipt", id=(int, 0)))
    async with app:
        with pytest.raises(asynctask.PayloadDecodeError, match="quantity"):
            await run(code[0], namespace)
        assert [job.task for job in await app.list_jobs()] == ["fulfil"]


async def publishing(code: list[str]) -> None:
    app = App("memory://")
    namespace = base_namespace(app)

    @app.task(queue="emails")
    async def send_email(ctx: JobCtx, email: Email) -> None:
        return None

    namespace.update(
        send_email=send_email,
        email=Email(to="a@b.c", subject="x"),
        emails=[Email(to=f"{n}@b.c", subject="x") for n in range(3)],
        user=types.SimpleNamespace(id=7),
    )
    async with app:
        await run(code[0], namespace)
        assert len(namespace["handles"]) == 3
        jobs = await app.list_jobs(limit=20)
        assert await app.get_job("welcome-7") is not None
    assert len(jobs) == 6 + 3  # six publishes, then three in one publish_many
    assert [job.queue for job in jobs].count("bulk") == 1


async def the_job_context(code: list[str]) -> None:
    app = App("memory://")
    namespace = base_namespace(app)
    fetched: list[int] = []

    async def fetch(url: str, page: int) -> None:
        fetched.append(page)

    namespace.update(fetch=fetch, total_pages=3)
    await run(code[0], namespace)
    async with app:
        handle = await namespace["import_feed"].publish("https://example.com/feed")
        await drain(app)
        assert await handle.result() == 3
    assert fetched == [0, 1, 2]


async def workflows(code: list[str]) -> None:
    app = App("memory://")
    namespace = base_namespace(app)
    namespace["Job"] = Job

    async def list_pages(site: str) -> list[str]:
        return [f"{site}/{n}" for n in range(3)]

    @app.task
    async def fetch_page(ctx: JobCtx, url: str) -> str:
        return url

    @app.task
    async def resize(ctx: JobCtx, image: str) -> str:
        return image.upper()

    @app.task
    async def download(ctx: JobCtx, url: str) -> str:
        return url + "#video"

    @app.task
    async def transcode(ctx: JobCtx, _: None) -> str:
        return str(ctx.prev_result) + "#mp4"

    @app.task
    async def publish_video(ctx: JobCtx, _: None) -> str:
        return str(ctx.prev_result) + "#live"

    async def fetch(ctx: JobCtx, url: str) -> str:
        return url

    async def parse(ctx: JobCtx, text: str) -> int:
        return len(text)

    async def store(ctx: JobCtx, size: int) -> int:
        return size

    class Cursor(msgspec.Struct):
        after: int
        count: int

    batches = [[types.SimpleNamespace(id=n) for n in (1, 2)], []]

    async def fetch_batch(cursor: Cursor) -> list[Any]:
        return batches.pop(0)

    async def index(batch: list[Any]) -> None:
        return None

    namespace.update(
        list_pages=list_pages,
        fetch_page=fetch_page,
        resize=resize,
        images=["a", "b"],
        download=download,
        transcode=transcode,
        publish_video=publish_video,
        url="https://example.com/v",
        fetch=fetch,
        parse=parse,
        store=store,
        Cursor=Cursor,
        fetch_batch=fetch_batch,
        index=index,
    )
    subtasks, groups_and_chains, pipeline, incremental = code
    async with app, worker_running(app):
        await run(subtasks, namespace)
        crawl = await namespace["crawl"].publish("site")
        assert await crawl.result(timeout=30) == 3
        await run(groups_and_chains, namespace)
        assert await app.result(namespace["cid"], timeout=30) == "https://example.com/v#video#mp4#live"
    async with app:
        await run(pipeline, namespace)
        await drain(app)
        await run(incremental, namespace)
        await drain(app)
        assert await namespace["h"].result() == 2


async def periodic_tasks(code: list[str]) -> None:
    app = App("memory://")
    await run(code[0], base_namespace(app))
    assert {"refresh_rates", "nightly_report", "heartbeat", "hourly"} <= set(app.tasks)


async def inspecting(code: list[str]) -> None:
    app = App("memory://")
    namespace = base_namespace(app)

    @app.task(queue="emails", max_retries=0)
    async def send_email(ctx: JobCtx, to: str) -> str:
        if to.startswith("bad"):
            raise ValueError(to)
        return to

    async with app:
        handle = await send_email.publish("x@example.com")
        for n in range(3):
            await send_email.publish(f"bad-{n}@example.com")
        await drain(app)
        namespace["job_id"] = handle.id
        await run(code[0], namespace)
        assert namespace["value"] == "x@example.com"
        assert len(namespace["jobs"]) == 3 and len(namespace["older"]) == 0
        assert await app.get_job(handle.id) is None  # the block ends by deleting it


async def workers(code: list[str]) -> None:
    app = App("memory://")
    namespace = base_namespace(app)

    @app.task(queue="emails")
    async def send(ctx: JobCtx) -> None:
        return None

    stop = "\nworker.stop()\n"
    async with app, anyio.create_task_group() as tg:
        # The block ends with ``await worker.run()``: stop it once it claims.
        tg.start_soon(run, code[0], namespace)
        with anyio.fail_after(10):
            while "worker" not in namespace or not namespace["worker"].running:
                await anyio.sleep(0.01)
        await run(stop, namespace)


async def flow_control(code: list[str]) -> None:
    app = App("memory://")
    namespace = base_namespace(app)

    @app.task
    async def refresh_user(ctx: JobCtx, user_id: int) -> None:
        return None

    namespace.update(refresh_user=refresh_user, user_id=7)
    async with app:
        await run(code[0], namespace)
        settings = await app.queue_settings("billing")
        assert settings.concurrency == 5 and not settings.paused


async def lifespan_and_resources(code: list[str]) -> None:
    app = App("memory://")
    namespace = base_namespace(app)
    acquired: list[str] = []

    class Pool:
        @contextlib.asynccontextmanager
        async def acquire(self) -> AsyncIterator[str]:
            acquired.append("conn")
            yield "conn"

    @contextlib.asynccontextmanager
    async def create_pool(dsn: str) -> AsyncIterator[Pool]:
        yield Pool()

    class AsyncClient:
        async def __aenter__(self) -> AsyncClient:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

    namespace.update(
        asyncpg=types.SimpleNamespace(create_pool=create_pool, Pool=Pool),
        httpx=types.SimpleNamespace(AsyncClient=AsyncClient),
        DSN="postgresql://app@db/app",
    )
    await run(code[0], namespace)
    async with app:
        await app.publish("charge", 1)
        [job] = await drain(app)
    assert job.status is JobStatus.SUCCEEDED and acquired == ["conn"]


async def fastapi(code: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi")
    import httpx

    app = App("memory://")

    @app.task(queue="emails")
    async def send_email(ctx: JobCtx, email: Email) -> None:
        return None

    package, module = types.ModuleType("myapp"), types.ModuleType("myapp.jobs")
    module.__dict__.update(app=app, Email=Email, send_email=send_email)
    package.jobs = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "myapp", package)
    monkeypatch.setitem(sys.modules, "myapp.jobs", module)
    namespace: dict[str, Any] = {"__name__": "readme"}
    await run(code[0], namespace)
    api = namespace["api"]
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as web:
            answer = await web.post("/signup", params={"to": "ada@example.com"})
            assert answer.status_code == 202 and answer.json() == {"job": "welcome-ada@example.com"}
            with anyio.fail_after(10):
                while (await web.get("/jobs/welcome-ada@example.com")).json() != {"status": "succeeded"}:
                    await anyio.sleep(0.01)


async def brokers(code: list[str]) -> None:
    # A conftest for a broker of the reader's own: it must compile and import what it names.
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(code[0], str(README), "exec"), namespace)
    assert callable(namespace["broker_factory"])


RUNNERS: dict[str, Callable[..., Awaitable[None]]] = {
    "Quick start": quick_start,
    "Tasks and handlers": tasks_and_handlers,
    "Sync handlers": sync_handlers,
    "Pydantic models": pydantic_models,
    "Publishing": publishing,
    "The job context": the_job_context,
    "Workflows": workflows,
    "Periodic tasks": periodic_tasks,
    "Inspecting and managing jobs": inspecting,
    "Workers": workers,
    "Flow control": flow_control,
    "Worker lifespan and resources": lifespan_and_resources,
    "Using it from FastAPI": fastapi,
    "Brokers": brokers,
}


def test_every_section_is_run() -> None:
    found = set(sections())
    assert found - set(RUNNERS) - set(OWNED) == set()
    assert set(RUNNERS) | set(OWNED) <= found, "a runner for a section the README no longer has"


@pytest.mark.parametrize(
    ("title", "index", "code"),
    [(title, n, code) for title, codes in sections().items() for n, code in enumerate(codes)],
    ids=lambda value: value if isinstance(value, str) and "\n" not in value else None,
)
def test_every_block_compiles(title: str, index: int, code: str) -> None:
    compile(code, f"README.md ({title} #{index + 1})", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def command_lines() -> list[list[str]]:
    """Every ``asynctask ...`` line of the README's shell blocks, split like a shell would."""
    found = []
    for block in re.findall(r"^```bash\n(.*?)^```", README.read_text(), re.M | re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("asynctask "):
                found.append(shlex.split(line)[1:])
    return found


def options_of(command: click.Command) -> set[str]:
    found = {opt for param in command.params for opt in getattr(param, "opts", [])}
    for sub in getattr(command, "commands", {}).values():
        found |= options_of(sub)
    return found


def test_every_shell_command_exists() -> None:
    lines = command_lines()
    assert {args[0] for args in lines} >= {"worker", "migrate", "jobs", "queues", "workers", "check"}
    for args in lines:
        assert args[0] in main.commands, f"no command asynctask {args[0]}"
        command = main.commands[args[0]]
        options = options_of(command)
        for arg in args[1:]:
            if arg.startswith("-") and not arg.startswith("-" * 3):
                assert arg.split("=")[0] in options, f"asynctask {args[0]} has no option {arg}"
        subcommands = getattr(command, "commands", None)
        if subcommands:
            words = [a for a in args[2:] if not a.startswith("-") and a.isalpha()]
            assert not words or words[0] in subcommands, f"asynctask {args[0]} has no command {words[0]}"


def test_the_lifecycle_block_is_the_example() -> None:
    example = (ROOT / "examples" / "lifecycle.py").read_text()
    for line in sections()["Lifecycle"][0].splitlines():
        # Bodies are elided with "..."; the example reads its grace period from the environment.
        assert line.strip().removesuffix(" ...").split("shutdown_grace=")[0] in example, line


@pytest.mark.anyio
@pytest.mark.parametrize("title", sorted(RUNNERS))
async def test_the_section_runs(title: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = RUNNERS[title]
    code = sections()[title]
    with anyio.fail_after(60):
        if runner is fastapi:
            await fastapi(code, monkeypatch)
        else:
            await runner(code)
