"""Workers delete the Functions libraries of asynctask versions gone for a day (libraries.py),
through their maintenance pass (``prune``); a process whose library was deleted loads it again."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from asynctask.brokers.redis import RedisBroker
from asynctask.brokers.redis.libraries import RETENTION, SWEEP_EVERY, Libraries
from asynctask.testing import FakeClock
from tests.redis.helpers import broker_for
from tests.redis.server import RedisServer
from tests.redis.test_loading import publish_and_run

pytestmark = pytest.mark.anyio


def old_version(name: str) -> str:
    """The FUNCTION LOAD text of a stand-in for another asynctask version's library."""
    return f"#!lua name={name}\nredis.register_function('{name}', function() return 1 end)\n"


async def libraries(on: RedisBroker | Redis) -> set[str]:
    listed = await (on._client if isinstance(on, RedisBroker) else on).function_list()
    return {dict(zip(e[::2], e[1::2], strict=False))[b"library_name"].decode() for e in listed}


async def test_a_library_unused_for_a_day_is_deleted(own_server: Callable[..., RedisServer]) -> None:
    server = own_server()
    clock = FakeClock()
    broker = broker_for("libs", url=server.url, clock=clock)
    await broker.open()
    try:
        await publish_and_run(broker, clock, "a")
        ours = broker._scripts.libraries.ours
        await broker._client.function_load(old_version("asynctask_0ld000000001"))
        await broker._client.function_load(old_version("someone_elses"))
        await broker.prune(100)  # first sighting: the old library's day starts now
        assert await libraries(broker) == {ours, "asynctask_0ld000000001", "someone_elses"}

        clock.advance(RETENTION - SWEEP_EVERY)
        await broker.prune(100)  # a sweep, but the day is not over
        assert "asynctask_0ld000000001" in await libraries(broker)

        clock.advance(SWEEP_EVERY)
        await broker.prune(100)
        assert await libraries(broker) == {ours, "someone_elses"}, "only asynctask's old library goes"
        assert await broker._client.hkeys(broker.keys.libraries) == [ours.encode()]
        await publish_and_run(broker, clock, "b")
    finally:
        await broker.close()


async def test_a_library_a_worker_stamps_is_kept(own_server: Callable[..., RedisServer]) -> None:
    # Two versions side by side (a rolling upgrade that lasts days): each worker's maintenance
    # stamps its own library, so neither deletes the other's.
    server = own_server()
    clock = FakeClock()
    new = broker_for("libs", url=server.url, clock=clock)
    old = broker_for("libs", url=server.url, clock=clock)
    old._scripts.libraries.ours = "asynctask_0ld000000002"
    await new.open()
    await old.open()
    try:
        await new._client.function_load(old_version("asynctask_0ld000000002"))
        for _ in range(3):
            await old.prune(100)
            await new.prune(100)
            clock.advance(RETENTION / 2)
        assert "asynctask_0ld000000002" in await libraries(new)
        clock.advance(RETENTION)  # the old version's workers have stopped stamping
        await new.prune(100)
        assert "asynctask_0ld000000002" not in await libraries(new)
    finally:
        await old.close()
        await new.close()


async def test_a_deleted_library_in_use_is_loaded_again(own_server: Callable[..., RedisServer]) -> None:
    server = own_server()
    clock = FakeClock()
    publisher = broker_for("libs", url=server.url, clock=clock)
    await publisher.open()
    try:
        await publish_and_run(publisher, clock, "a")
        ours = publisher._scripts.libraries.ours
        # A worker of another version, whose maintenance never stamps the publisher's library.
        other = Libraries(publisher._client, publisher.keys.libraries, "asynctask_0ther0000000")
        assert await other.tend(clock()) == []
        clock.advance(RETENTION + SWEEP_EVERY)
        assert await other.tend(clock()) == [ours]
        assert ours not in await libraries(publisher)
        await publish_and_run(publisher, clock, "b")  # loads its library again
        assert ours in await libraries(publisher)
    finally:
        await publisher.close()


@pytest.mark.parametrize("denied", ["-function|delete", "-function"])
async def test_without_rights_to_delete_the_libraries_stay(
    own_server: Callable[..., RedisServer], denied: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="asynctask.brokers.redis")
    server = own_server()
    admin = Redis.from_url(server.url)
    await admin.execute_command("ACL", "SETUSER", "worker", "on", ">pw", "~*", "&*", "+@all", denied)
    await admin.function_load(old_version("asynctask_0ld000000003"))
    clock = FakeClock()
    broker = broker_for("acl", url=server.url.replace("redis://", "redis://worker:pw@"), clock=clock)
    await broker.open()
    try:
        await broker.prune(100)
        clock.advance(RETENTION + SWEEP_EVERY)
        assert await broker.prune(100) == 0  # maintenance goes on
        assert "asynctask_0ld000000003" in await libraries(admin)
        refused = [r for r in caplog.records if getattr(r, "action", None) == "redis_library_delete_refused"]
        assert len(refused) == (1 if denied == "-function|delete" else 0)
    finally:
        await broker.close()
        await admin.aclose()
