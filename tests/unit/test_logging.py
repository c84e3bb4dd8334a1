"""The CLI's logging set-up: JSON lines with the job fields, and no logger's propagate touched."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from asynctask import App, JobCtx
from asynctask.log import FIELDS, JsonFormatter, configure_logging
from asynctask.runtime.logs import JobContextFilter
from asynctask.testing import drain

pytestmark = pytest.mark.anyio


@pytest.fixture
def restored_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_configure_logging_touches_no_logger_but_the_root(restored_root: None) -> None:
    mine = logging.getLogger("an.app.logger")
    mine.propagate = True
    ours = logging.getLogger("asynctask")
    first = configure_logging("warning")
    second = configure_logging("info", fmt="json")
    root = logging.getLogger()
    assert first not in root.handlers and second in root.handlers, "a second call replaces the first"
    assert root.level == logging.INFO
    assert isinstance(second.formatter, JsonFormatter)
    assert mine.propagate and ours.propagate and not ours.handlers


def test_json_lines_carry_every_field() -> None:
    record = logging.LogRecord("asynctask.worker", logging.ERROR, __file__, 1, "job %s failed", ("j1",), None)
    record.action, record.job_id, record.attempt = "job_failed", "j1", 2
    line = json.loads(JsonFormatter().format(record))
    assert list(line) == ["time", "level", "logger", "message", *FIELDS]
    assert line["message"] == "job j1 failed" and line["level"] == "ERROR" and line["attempt"] == 2
    assert line["task"] is None and line["time"].endswith("+00:00")


async def test_records_logged_in_a_job_get_its_fields(restored_root: None) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(JobContextFilter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    app = App("memory://")
    log = logging.getLogger("an.app")

    @app.task(queue="mail", max_retries=0)
    def send(ctx: JobCtx, to: str) -> None:  # a def handler: its thread sees the job too
        log.info("sending to %s", to)
        raise ValueError("smtp down")

    async with app:
        handle = await send.publish("a@b")
        await drain(app, worker_id="w-1")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = next(line for line in lines if line["logger"] == "an.app")
    expected = {"job_id": handle.id, "task": "send", "queue": "mail", "attempt": 1, "worker": "w-1"}
    assert {key: mine[key] for key in expected} == expected
    failed = next(line for line in lines if line["action"] == "job_failed")
    assert {key: failed[key] for key in expected} == expected
    started = next(line for line in lines if line["action"] == "worker_started")
    assert started["worker"] == "w-1" and started["job_id"] is None


def test_driver_tracebacks_become_one_line() -> None:
    from asynctask.brokers.postgres.errors import OneLine

    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        record = logging.LogRecord(
            "asyncpg.pool", logging.WARNING, __file__, 1, "Failed to %s", ("reconnect",), sys.exc_info()
        )
    assert OneLine().filter(record)
    assert record.exc_info is None
    assert (
        record.getMessage()
        == "Failed to reconnect (ConnectionResetError: [Errno 104] Connection reset by peer)"
    )
