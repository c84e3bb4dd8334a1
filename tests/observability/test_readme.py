"""The README's "Observability" section: its examples run as written, its commands exist."""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from asynctask import App, JobCtx, JobStatus
from asynctask.cli import main
from asynctask.testing.contract.suite.helpers import running

README = Path(__file__).resolve().parents[2] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("\n## Observability\n")
    return text[start : text.index("\n## ", start + 1)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(), flags=re.DOTALL)


def commands() -> list[list[str]]:
    """Every ``asynctask ...`` command line of the section (shell, text and YAML blocks)."""
    found = []
    for block in blocks("bash") + blocks("text"):
        for line in block.splitlines():
            line = line.removeprefix("$ ").split("#")[0].strip()
            if line.startswith("asynctask "):
                found.append(shlex.split(line)[1:])
    for block in blocks("yaml"):
        for match in re.findall(r'command: \[("asynctask".*?)\]', block):
            found.append([part.strip().strip('"') for part in match.split(",")][1:])
    return found


def test_the_commands_exist() -> None:
    found = commands()
    assert {c[0] for c in found} >= {"worker", "workers", "queues", "check"}
    for args in found:
        command = main.commands[args[0]]
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        for arg in args[1:]:
            if arg.startswith("--"):
                assert arg in options, f"asynctask {args[0]} has no option {arg}"


@pytest.mark.anyio
async def test_the_python_examples_run() -> None:
    metrics_block, tracing_block, registry_block = blocks("python")
    from fastapi import FastAPI

    jobs = App("memory://")

    @jobs.task(queue="emails")
    async def send_email(ctx: JobCtx, to: str) -> str:
        return to

    namespace: dict[str, Any] = {"__name__": "readme", "api": FastAPI(), "jobs": jobs}
    exec(compile(metrics_block, str(README), "exec"), namespace)
    metrics = namespace["metrics"]
    try:
        async with running(jobs):
            await send_email.publish("a@b.c")
            transport = httpx.ASGITransport(app=namespace["api"])
            async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as web:
                with anyio.fail_after(10):
                    while True:
                        body = (await web.get("/metrics")).text
                        names = {f.name for f in text_string_to_metric_families(body)}
                        if "asynctask_job_outcomes" in names:
                            break
                        await anyio.sleep(0.01)
            assert {"asynctask_queue_jobs", "asynctask_jobs_started"} <= names
    finally:
        metrics.close()

    app = App("memory://")
    exec(compile(tracing_block, str(README), "exec"), {"app": app})
    assert app.events.observers

    body = "async def example():\n" + textwrap.indent(registry_block, "    ")
    scope: dict[str, Any] = {"app": jobs, "JobStatus": JobStatus}
    exec(compile(body, str(README), "exec"), scope)
    async with running(jobs):
        await scope["example"]()
