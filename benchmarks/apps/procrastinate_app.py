"""procrastinate: ``procrastinate --app benchmarks.apps.procrastinate_app.app worker -c N``."""

from __future__ import annotations

import procrastinate

from benchmarks.apps import record
from benchmarks.apps.settings import POSTGRES_URL

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=POSTGRES_URL))


@app.task(name="noop", queue="bench")
async def noop(index: int) -> None:
    record.noop(index)


@app.task(name="sleep", queue="bench")
async def sleep(index: int) -> None:
    await record.sleep_job(index)
