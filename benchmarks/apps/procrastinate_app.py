"""procrastinate: ``procrastinate --app benchmarks.apps.procrastinate_app.app worker -c N``."""

from __future__ import annotations

import procrastinate

from benchmarks.apps import record
from benchmarks.apps.settings import POSTGRES_URL, SETTINGS

# The pool holds min_size=4 connections unless told otherwise; procrastinate's docs size it to the
# concurrency plus one for short jobs (benchmarks.tuning caps it below the server's limit).
app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=POSTGRES_URL, max_size=SETTINGS.get("pool_max_size", 4))
)


@app.task(name="noop", queue="bench")
async def noop(index: int) -> None:
    record.noop(index)


@app.task(name="sleep", queue="bench")
async def sleep(index: int) -> None:
    await record.sleep_job(index)
