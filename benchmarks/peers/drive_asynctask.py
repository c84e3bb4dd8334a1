"""asynctask on Redis (``?prefix=``), Postgres (``?schema=``) or NATS (``?prefix=``, a bucket of
its own), run by the main interpreter::

python -m benchmarks.peers.drive_asynctask w1 --broker redis
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks import harness
from benchmarks.apps import asynctask_app
from benchmarks.apps.asynctask_app import app


class AsynctaskDriver(harness.Driver):
    has_bulk = True

    def __init__(self, run_id: str, concurrency: int, broker: str) -> None:
        super().__init__(run_id, concurrency)
        self.kind = broker
        self.name = f"asynctask-{broker}"
        self.namespace = f"bench_{run_id}"
        if broker == "redis":
            self.url = f"{harness.REDIS_URL}?prefix={self.namespace}"
        elif broker == "nats":
            self.url = f"{harness.NATS_URL}?prefix={self.namespace}"
        else:
            self.url = f"{harness.POSTGRES_URL}?schema={self.namespace}&auto_migrate=true"
        self.tasks = {harness.NOOP: asynctask_app.noop, harness.SLEEP: asynctask_app.sleep}

    async def setup(self) -> None:
        app.set_broker(self.url)
        await app.open()

    async def enqueue_one(self, index: int, kind: str) -> None:
        await self.tasks[kind].publish(index)

    async def enqueue_bulk(self, indices: Sequence[int], kind: str) -> None:
        task = self.tasks[kind]
        await app.publish_many([task.spec(i) for i in indices])

    def worker_command(self, kind: str) -> list[str]:
        exe = shutil.which("asynctask", path=str(Path(sys.executable).parent))
        return [
            exe or "asynctask",
            "worker",
            "benchmarks.apps.asynctask_app:app",
            "-c",
            str(self.concurrency),
            "--broker",
            self.url,
            "--log-level",
            "WARNING",
        ]

    async def teardown(self) -> None:
        await app.close()
        await wipe_namespace(self.kind, self.namespace)


async def wipe_namespace(kind: str, namespace: str) -> None:
    """Delete every key under the prefix, the bucket, or drop the schema."""
    if kind == "nats":
        from asynctask.brokers.nats import NatsBroker

        broker = NatsBroker(harness.NATS_URL, prefix=namespace)
        await broker.open()
        try:
            await broker.store.drop()
        finally:
            await broker.close()
    elif kind == "redis":
        import redis.asyncio as redis

        client = redis.Redis.from_url(harness.REDIS_URL)
        try:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await client.unlink(*batch)
                    batch.clear()
            if batch:
                await client.unlink(*batch)
        finally:
            await client.aclose()
    else:
        import asyncpg

        conn = await asyncpg.connect(harness.POSTGRES_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
        finally:
            await conn.close()


if __name__ == "__main__":
    harness.main(AsynctaskDriver)
