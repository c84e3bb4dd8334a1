"""Checked by ``mypy --strict``, never run: sync handlers, resources and the testing kit are typed.

Every ``type: ignore`` below must be needed (``warn_unused_ignores``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pydantic

from asynctask import App, JobCtx, JobHandle, MemoryBroker
from asynctask.testing import drain, perform

app = App("memory://")


@dataclasses.dataclass
class Resources:
    dsn: str


@app.lifespan
async def resources() -> AsyncIterator[Resources]:
    yield Resources(dsn="db://")


class Order(pydantic.BaseModel):
    sku: str


@app.task
def count_sync(ctx: JobCtx, words: list[str]) -> int:  # a def handler keeps its types
    dsn: str = ctx.resources_as(Resources).dsn
    return len(words) + len(dsn)


@app.task(retry_on=(TimeoutError,), no_retry_on=ValueError)
async def fulfil(ctx: JobCtx, order: Order) -> Order:
    return order


async def typed() -> None:
    handle: JobHandle[int] = await count_sync.publish(["a", "b"])
    n: int = await handle.result()
    performed: int = await perform(count_sync, ["a"], resources=Resources(dsn="x"))
    same: Order = await perform(fulfil, Order(sku="x"))
    done = await drain(app, concurrency=2)
    del n, performed, same, done


async def wrong() -> None:
    await count_sync.publish("not a list")  # type: ignore[arg-type]
    text: str = await perform(count_sync, ["a"])  # type: ignore[arg-type]
    await perform(fulfil, {"sku": "x"})  # type: ignore[misc]
    await drain(app, concurrency="2")  # type: ignore[arg-type]
    del text


# A subclass of a broker (a test double) is still a Broker: every from_url returns Self.
class CountingBroker(MemoryBroker):
    claims = 0


counted = App(CountingBroker())
same_kind: CountingBroker = CountingBroker.from_url("memory://")
