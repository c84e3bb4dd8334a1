"""The README's "Web dashboard" section: its examples run as written.

The Python blocks run in order in one namespace, with ``myapp.jobs`` standing in for the user's
module; the FastAPI app they build is then driven over HTTP. The shell lines' flags must exist.
"""

from __future__ import annotations

import re
import shlex
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from asynctask import App, Fixed, JobCtx
from asynctask.cli import main
from asynctask.models import JobStatus
from tests.web.helpers import client, fail, token

README = Path(__file__).resolve().parents[2] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("\n## Web dashboard\n")
    return text[start : text.index("\n## ", start + 1)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(), flags=re.DOTALL)


@pytest.fixture
def myapp(monkeypatch: pytest.MonkeyPatch) -> App:
    app = App("memory://", retry=Fixed(0), failed_ttl=None)

    @app.task(queue="emails", max_retries=0)
    async def send_email(ctx: JobCtx, to: str) -> str:
        return to

    package, module = types.ModuleType("myapp"), types.ModuleType("myapp.jobs")
    module.app = app  # type: ignore[attr-defined]
    package.jobs = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "myapp", package)
    monkeypatch.setitem(sys.modules, "myapp.jobs", module)
    monkeypatch.setenv("DASHBOARD_PASSWORD", "correct horse")
    return app


@pytest.mark.anyio
async def test_the_python_examples_run(myapp: App) -> None:
    code = blocks("python")
    assert len(code) == 2
    namespace: dict[str, Any] = {"__name__": "readme"}
    for block in code:
        exec(compile(block, str(README), "exec"), namespace)
    api = namespace["api"]
    auth = ("ops", "correct horse")
    # The lifespan a server would run (it opens the App), around requests to the FastAPI app.
    async with api.router.lifespan_context(api), client(api) as web:
        handle = await myapp.publish("send_email", "x@example.com")
        [job] = await myapp.broker.claim("emails", 1, lease=30, worker="w")
        await fail(myapp.broker, job, "boom")
        refused = await web.get("/tasks/")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == 'Basic realm="asynctask"'
        assert (await web.get("/tasks/", auth=("ops", "wrong"))).status_code == 401
        page = await web.get(f"/tasks/jobs/{job.id}", auth=auth)
        assert page.status_code == 200 and 'action="/tasks/actions/job"' in page.text
        answer = await web.post(
            "/tasks/actions/job",
            auth=auth,
            data={"csrf": token(page.text), "action": "retry", "job_id": job.id},
        )
        assert answer.status_code == 303
        view = await web.get(f"/tasks-view/jobs/{job.id}")
        assert (
            view.status_code == 200 and "/actions/" not in view.text and 'href="/tasks-view/jobs' in view.text
        )
        retried = await myapp.get_job(handle.id)
    assert retried is not None and retried.status is JobStatus.QUEUED


def test_the_shell_examples_use_real_options() -> None:
    help_text = CliRunner().invoke(main, ["web", "--help"]).output
    lines = [line.split("#")[0] for block in blocks("bash") for line in block.splitlines() if line.strip()]
    assert lines
    for line in lines:
        words = shlex.split(line)
        assert words[:2] == ["asynctask", "web"]
        for word in words:
            if word.startswith("--"):
                assert word in help_text, f"{word} is not an option of asynctask web"
