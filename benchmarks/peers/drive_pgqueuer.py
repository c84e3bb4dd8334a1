"""PgQueuer (Postgres; bulk ``Queries.enqueue`` with lists), in a throw-away database per run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks import harness
from benchmarks.driver import PeerDriver
from benchmarks.services import venv_bin


class PgqueuerDriver(PeerDriver):
    name = "pgqueuer"
    database = True
    has_bulk = True

    async def setup(self) -> None:
        await super().setup()
        import asyncpg
        from pgqueuer import AsyncpgDriver, Queries

        self.conn: Any = await asyncpg.connect(self.env["BENCH_PG_URL"])
        self.queries: Any = Queries(AsyncpgDriver(self.conn))
        await self.queries.install()
        if self.settings["autovac"]:
            # `pgq autovac`: the autovacuum settings PgQueuer recommends for its high-churn tables.
            await self.queries.optimize_autovacuum()

    async def enqueue_one(self, index: int, kind: str) -> None:
        await self.queries.enqueue(kind, str(index).encode())

    async def enqueue_bulk(self, indices: Sequence[int], kind: str) -> None:
        n = len(indices)
        await self.queries.enqueue([kind] * n, [str(i).encode() for i in indices], [0] * n)

    def worker_command(self, kind: str) -> list[str]:
        return [
            venv_bin("pgq"),
            "run",
            "benchmarks.apps.pgqueuer_app:create_pgqueuer",
            "--log-level",
            "WARNING",
            "--batch-size",
            str(self.settings["batch_size"]),
            "--max-concurrent-tasks",
            str(self.settings["max_concurrent_tasks"]),
        ]

    async def teardown(self) -> None:
        await self.conn.close()
        await super().teardown()


if __name__ == "__main__":
    harness.main(PgqueuerDriver)
