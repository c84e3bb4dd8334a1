"""How the workloads talk to one library: publish one, publish many, start its worker, clean up.

One driver per system lives in ``benchmarks/peers/drive_*.py``; :mod:`benchmarks.workloads`
runs the same workloads with each. Standard library only: this module runs in every peer's venv.
"""

from __future__ import annotations

import abc
import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from benchmarks import services, tuning

if TYPE_CHECKING:
    from benchmarks.workloads import Run

__all__ = ["NOOP", "SLEEP", "SLEEP_SECONDS", "Driver", "PeerDriver"]

NOOP = "noop"
SLEEP = "sleep"
SLEEP_SECONDS = 0.05

#: Publishes in flight at once when a library without a bulk API fills a queue (untimed).
FILL_CONCURRENCY = 32


class Driver(abc.ABC):
    """One library, one run. ``run_id`` names the run's namespace; ``concurrency`` is the total C."""

    name: str = "?"
    #: The key of this library's settings in :data:`benchmarks.tuning.TUNING`.
    library: str = "?"
    #: Whether :meth:`enqueue_bulk` is a real bulk API of the library.
    has_bulk: bool = False
    #: Whether the worker CLI forks its own processes (given ``settings["processes"]``); if not,
    #: the workload starts that many copies of :meth:`worker_command`.
    forks: bool = False

    def __init__(self, run_id: str, concurrency: int) -> None:
        self.run_id = run_id
        self.concurrency = concurrency
        self.settings = tuning.settings_for(self.library, concurrency)

    @property
    def processes(self) -> int:
        return int(self.settings["processes"])

    def extra_workloads(self) -> dict[str, Callable[[Run], Awaitable[dict[str, Any]]]]:
        """Workloads only this library can run (asynctask's W4 and W5), by name."""
        return {}

    async def setup(self) -> None:  # noqa: B027 (optional hook)
        """Create the namespace (key prefix, schema, database) and open clients."""

    @abc.abstractmethod
    async def enqueue_one(self, index: int, kind: str) -> None:
        """Publish one job of ``kind`` (``noop`` or ``sleep``) for ``index``, awaited."""

    async def enqueue_bulk(self, indices: Sequence[int], kind: str) -> None:
        raise NotImplementedError

    async def fill(self, indices: range, kind: str, *, chunk: int) -> None:
        """Publish ``indices`` as fast as the library allows (untimed set-up, not a measurement)."""
        if self.has_bulk:
            for lo in range(indices.start, indices.stop, chunk):
                await self.enqueue_bulk(range(lo, min(lo + chunk, indices.stop)), kind)
            return
        gate = asyncio.Semaphore(FILL_CONCURRENCY)

        async def one(index: int) -> None:
            async with gate:
                await self.enqueue_one(index, kind)

        for lo in range(indices.start, indices.stop, chunk):
            await asyncio.gather(*(one(i) for i in range(lo, min(lo + chunk, indices.stop))))

    @abc.abstractmethod
    def worker_command(self, kind: str) -> list[str]:
        """The CLI command a user would run to start the worker(s) for ``kind`` jobs."""

    def worker_env(self) -> dict[str, str]:
        """Extra environment for the worker process."""
        return {}

    async def wipe(self) -> None:
        """Remove every job of this run (between the bulk and the one-by-one phases)."""
        await self.teardown()
        await self.setup()

    @abc.abstractmethod
    async def teardown(self) -> None:
        """Remove everything this run created, and close clients."""


class PeerDriver(Driver):
    """A driver whose app module reads :mod:`benchmarks.apps.settings` from the environment.

    ``namespace`` (unique per run) is the queue name / key prefix on Redis, the stream name on
    NATS, or the name of a throw-away database on Postgres (``database = True``). The library
    defaults to ``name``.
    """

    database = False

    def __init__(self, run_id: str, concurrency: int, broker: str = "redis") -> None:
        if self.library == "?":
            self.library = self.name
        super().__init__(run_id, concurrency)
        self.namespace = f"bench_{self.name}_{run_id}".lower().replace("-", "_")
        self.env = {
            "BENCH_NAMESPACE": self.namespace,
            "BENCH_CONCURRENCY": str(concurrency),
            "BENCH_REDIS_URL": services.REDIS_URL,
            "BENCH_NATS_URL": services.NATS_URL,
            "BENCH_SETTINGS": json.dumps(self.settings),
        }
        if self.database:
            self.env["BENCH_PG_URL"] = services.postgres_url_for(self.namespace)
        # The driver imports the same app module as the worker: same settings.
        os.environ.update(self.env)

    def worker_env(self) -> dict[str, str]:
        return dict(self.env)

    async def setup(self) -> None:
        if self.database:
            services.create_database(self.namespace)

    async def teardown(self) -> None:
        if self.database:
            services.drop_database(self.namespace)
        else:
            await services.redis_delete_matching(f"*{self.namespace}*")
