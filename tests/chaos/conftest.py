"""Fixtures of the chaos suite: a broker URL per broker on the shared test servers, the report.

Every test appends its figures as one JSON line to ``ASYNCTASK_CHAOS_REPORT`` (default:
``chaos-report.jsonl`` in pytest's base temporary directory) and the summary lines are printed at
the end of the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from tests.chaos.harness import Figures

_SUMMARIES: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.chaos)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SUMMARIES:
        terminalreporter.section("chaos figures")
        for line in _SUMMARIES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def report_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("ASYNCTASK_CHAOS_REPORT")
    return Path(given) if given else tmp_path_factory.getbasetemp() / "chaos-report.jsonl"


@pytest.fixture
def report(report_path: Path) -> Callable[[Figures], None]:
    def write(figures: Figures) -> None:
        with report_path.open("a") as out:
            out.write(figures.line() + "\n")
        _SUMMARIES.append(figures.summary())
        print(figures.summary())

    return write


@pytest.fixture
def broker_name(request: pytest.FixtureRequest) -> str:
    """The broker the test runs on (its ``shared_url`` or ``own_url`` parameter)."""
    params = request.node.callspec.params
    return str(params.get("shared_url") or params["own_url"])


def migrate(url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "asynctask", "migrate", "--broker", url], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def shared_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace on the shared server of the broker named by the test's parameter."""
    name: str = request.param
    token = uuid.uuid4().hex[:16]
    if name == "postgres":
        from tests.backend_postgres import URL, drop_schema

        schema = f"chaos_{token}"
        url = f"{URL}?schema={schema}"
        migrate(url)
        try:
            yield url
        finally:
            anyio.run(drop_schema, schema)
    elif name == "redis":
        from redis import Redis

        from tests.backend_redis import REDIS_URL

        prefix = f"chaos{token}"
        yield f"{REDIS_URL}?prefix={prefix}"
        client = Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
        finally:
            client.close()
    elif name == "mongo":
        from tests.backend_mongo import drop_prefix
        from tests.mongo import server

        prefix = f"chaos{token}"
        yield server.broker_url(prefix)
        anyio.run(drop_prefix, prefix)
    elif name == "nats":
        from tests.backend_nats import server_url

        yield f"{server_url()}?prefix=chaos{token}"
    else:
        raise AssertionError(f"unknown broker {name}")
