"""Crash safety with real worker processes on NATS: the durable brokers' acceptance tests.

The tests of ``tests/acceptance/test_durable.py`` (a worker SIGKILLed mid-job, an incremental
task resuming after SIGKILL, three schedulers running each periodic tick once), run here with
their ``broker_url`` fixture pointing at a fresh bucket on the tests' NATS server.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from asynctask.brokers.nats import NatsBroker
from tests.acceptance.test_durable import (
    project,
    test_incremental_task_resumes_after_sigkill,
    test_sigkill_mid_job_loses_nothing,
    test_three_processes_run_each_periodic_tick_once,
    workers,
)
from tests.backend_nats import fresh_prefix, server_url

__all__ = [
    "project",
    "test_incremental_task_resumes_after_sigkill",
    "test_sigkill_mid_job_loses_nothing",
    "test_three_processes_run_each_periodic_tick_once",
    "workers",
]

pytestmark = pytest.mark.slow


async def _drop(url: str) -> None:
    broker = NatsBroker(url)
    await broker.open()
    try:
        await broker.store.drop()
    finally:
        await broker.close()


@pytest.fixture
def broker_url() -> Iterator[str]:
    url = f"{server_url()}?prefix={fresh_prefix()}"
    yield url
    anyio.run(_drop, url)
