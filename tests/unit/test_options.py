"""Publish options are checked once, when the job is built, with the same limits whatever the broker."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pytest

from asynctask import App, ConfigurationError, Cron, InvalidSchedule, JobCtx, JobSpec, MemoryBroker
from asynctask.options import MAX_PRIORITY, MAX_RETRIES
from asynctask.testing import FakeClock


@pytest.fixture
def app() -> App:
    clock = FakeClock(start=1000.0)
    app = App(MemoryBroker(clock=clock), clock=clock)

    @app.task
    async def work(ctx: JobCtx, n: int) -> int:
        return n

    return app


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": math.nan}, "timeout must be a finite number of seconds > 0"),
        ({"timeout": -5}, "timeout must be a finite number"),
        ({"timeout": 0}, "timeout must be a finite number"),
        ({"timeout": math.inf}, "timeout must be a finite number"),
        ({"priority": MAX_PRIORITY + 1}, "priority must be an integer from"),
        ({"priority": -MAX_PRIORITY - 1}, "priority must be an integer from"),
        ({"priority": True}, "priority must be an integer"),
        ({"priority": 1.5}, "priority must be an integer"),
        ({"max_retries": MAX_RETRIES + 1}, "max_retries must be an integer from 0"),
        ({"max_retries": -1}, "max_retries must be an integer from 0"),
        ({"delay": math.nan}, "delay must be a finite number of seconds >= 0"),
        ({"delay": -1}, "delay must be a finite number"),
        ({"at": datetime(2030, 1, 1)}, "at= must be a timezone-aware datetime"),
        ({"delay": 1, "at": datetime(2030, 1, 1)}, "either delay= or at="),
        ({"colour": "red"}, "unknown publish option"),
    ],
)
def test_bad_options_are_refused_before_anything_is_sent(
    app: App, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        app.build_job(JobSpec("work", 1, **options))


def test_task_options_have_the_same_limits(app: App) -> None:
    async def handler(ctx: JobCtx) -> None: ...

    with pytest.raises(ConfigurationError, match="timeout must be"):
        app.task(name="a", timeout=math.nan)(handler)
    with pytest.raises(ConfigurationError, match="priority must be"):
        app.task(name="b", priority=2**31)(handler)
    with pytest.raises(ConfigurationError, match="max_retries must be"):
        app.task(name="c", max_retries=-1)(handler)
    with pytest.raises(ConfigurationError, match="concurrency must be"):
        app.task(name="d", concurrency=0)(handler)


def test_the_limits_themselves_are_accepted(app: App) -> None:
    job = app.build_job(JobSpec("work", 1, priority=MAX_PRIORITY, max_retries=MAX_RETRIES, timeout=1e-6))
    assert (job.priority, job.max_retries, job.timeout) == (MAX_PRIORITY, MAX_RETRIES, 1e-6)


def test_periodic_takes_a_cron_string_or_a_schedule(app: App) -> None:
    @app.periodic("*/5 * * * *")
    async def every_five(ctx: JobCtx) -> None: ...

    assert app.periodic_tasks["every_five"].schedule == Cron("*/5 * * * *")
    with pytest.raises(InvalidSchedule, match="bad minute field"):
        app.periodic("61 * * * *")
    with pytest.raises(InvalidSchedule, match="needs a Schedule"):
        app.periodic(300)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="missed must be"):
        app.periodic("* * * * *", missed="all")  # type: ignore[arg-type]
