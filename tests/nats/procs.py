"""CLI worker processes on a NATS broker (tests.workerprocs), with a ledger of handler runs outside NATS."""

from __future__ import annotations

import textwrap
from collections import Counter
from contextlib import suppress
from pathlib import Path

import anyio

from asynctask import App, JobCtx, JobStatus
from asynctask.errors import BrokerUnavailable
from asynctask.testing import wait_until
from tests.workerprocs import WorkerProcesses

APP_MODULE = textwrap.dedent(
    """
    import os, time
    import anyio
    from asynctask import App, JobCtx

    app = App(os.environ["ASYNCTASK_BROKER_URL"])

    def log(line: str) -> None:
        with open(os.environ["JOB_LOG"], "a") as f:
            f.write(line + "\\n")

    @app.task(max_retries=10)
    async def work(ctx: JobCtx, n: int) -> int:
        log(f"start {n} {ctx.attempt} {time.time():.3f} {os.getpid()}")
        await anyio.sleep(float(os.environ.get("JOB_SECONDS", "0.01")))
        log(f"end {n} {ctx.attempt} {time.time():.3f} {os.getpid()}")
        return n
    """
)


class Ledger:
    """The handler runs written by the workers: ``start``/``end`` lines with job, attempt, time."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        return [line.split() for line in self.path.read_text().splitlines() if line.count(" ") == 4]

    def ended(self) -> set[int]:
        return {int(p[1]) for p in self.lines() if p[0] == "end"}

    def starts(self) -> Counter[int]:
        return Counter(int(p[1]) for p in self.lines() if p[0] == "start")

    def first_start(self) -> dict[int, float]:
        first: dict[int, float] = {}
        for p in self.lines():
            if p[0] == "start":
                first.setdefault(int(p[1]), float(p[3]))
        return first


class Workers(WorkerProcesses):
    """CLI workers (``asynctask worker``) of the app above; all stopped at the end."""

    def __init__(self, project: Path, url: str) -> None:
        super().__init__(project, "natsapp:app", url, options=["--log-level", "INFO"])
        (project / "natsapp.py").write_text(APP_MODULE)
        self.ledger = Ledger(self.log)


def client_app(url: str) -> App:
    """An app with the workers' task, to publish and inspect from the test."""
    app = App(url)

    @app.task(name="work", max_retries=10)
    async def work(ctx: JobCtx, n: int) -> int:
        return n

    return app


def publish(url: str, count: int) -> list[str]:
    async def go() -> list[str]:
        app = client_app(url)
        async with app:
            handles = await app.publish_many([app.tasks["work"].spec(n) for n in range(count)])
            return [h.id for h in handles]

    return anyio.run(go)


def final_statuses(url: str, ids: list[str], timeout: float = 60.0) -> list[JobStatus]:
    """The jobs' statuses once all are finished (an "end" line comes before the outcome is
    written), reading again while the cluster still settles after a kill."""

    async def go() -> list[JobStatus]:
        app = client_app(url)
        async with app:
            found: list[JobStatus] = []

            async def finished() -> bool:
                nonlocal found
                try:
                    jobs = [await app.get_job(i) for i in ids]
                except BrokerUnavailable:
                    return False
                found = [j.status for j in jobs if j is not None]
                return len(found) == len(ids) and all(status.finished for status in found)

            with suppress(TimeoutError):  # the caller's assertion shows what was found
                await wait_until(finished, timeout=timeout, interval=0.1)
            return found

    return anyio.run(go)
