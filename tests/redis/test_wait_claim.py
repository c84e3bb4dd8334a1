"""wait_and_claim: the claim queued behind the wake-up's BLPOP (asynctask.brokers.redis.waiting).

Each test runs its own server, so "the wait is blocked" can be read from ``INFO clients``.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence

import anyio
import pytest
from redis.asyncio import Redis

from asynctask import App, JobCtx, Worker
from asynctask.brokers.redis import RedisBroker, waiting
from asynctask.events import Observer
from asynctask.models import Job, JobStatus
from asynctask.testing.clock import wait_until
from tests.redis.helpers import broker_for, job
from tests.redis.server import RedisServer

pytestmark = pytest.mark.anyio

LEASE = 30.0


async def _blocked(raw: Redis, clients: int = 1) -> bool:
    info = await raw.info("clients")
    return int(info["blocked_clients"]) >= clients


async def _waiting(
    broker: RedisBroker, raw: Redis, got: list[Job], stop: anyio.Event | None = None, timeout: float = 60
) -> Callable[[], object]:
    async def wait() -> None:
        got.extend(await broker.wait_and_claim("q", timeout, 10, lease=LEASE, worker="w", stop=stop))

    return wait


@contextlib.asynccontextmanager
async def _known_stop_key(
    own_server: Callable[..., RedisServer], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[RedisBroker, RedisBroker, Redis, str]]:
    """A waiting broker, a publisher and a raw client on a private server, and the stop key
    the broker's next wait will use (its uuid fixed)."""
    server = own_server()
    broker, publisher = broker_for("p", url=server.url), broker_for("p", url=server.url)
    raw = Redis.from_url(server.url)
    fixed = uuid.uuid4()
    monkeypatch.setattr(waiting.uuid, "uuid4", lambda: fixed)
    await broker.open()
    await publisher.open()
    try:
        yield broker, publisher, raw, f"{broker.keys.queue('q').wake}:{fixed.hex}"
    finally:
        await raw.aclose()
        await broker.close()
        await publisher.close()


async def test_a_job_published_while_the_worker_waits_is_claimed_by_the_wait(
    own_server: Callable[..., RedisServer],
) -> None:
    server = own_server()
    broker, publisher = broker_for("p", url=server.url), broker_for("p", url=server.url)
    raw = Redis.from_url(server.url)
    await broker.open()
    await publisher.open()
    try:
        assert broker.capabilities.claim_on_wake
        got: list[Job] = []
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(await _waiting(broker, raw, got))
                await wait_until(lambda: _blocked(raw))
                published = time.time()
                await publisher.enqueue([job("a", published)])
        [claimed] = got
        assert claimed.id == "a" and claimed.status is JobStatus.RUNNING and claimed.attempts == 1
        # Time moved on by the wait: the claim is dated after the publish, the lease runs from it.
        assert claimed.started_at is not None and claimed.started_at >= published
        assert claimed.lease_expires_at is not None and claimed.lease_expires_at >= published + LEASE
        stored = await publisher.get("a")
        assert stored is not None and stored.token == claimed.token and stored.status is JobStatus.RUNNING
        # The claim cache knows the job: its completion needs no index look-up.
        assert broker._queue_of["a"] == "q"
    finally:
        await raw.aclose()
        await broker.close()
        await publisher.close()


async def test_a_ready_job_is_claimed_without_waiting(prefix: str) -> None:
    broker = broker_for(prefix)
    await broker.open()
    try:
        await broker.enqueue([job("a", time.time())])
        with anyio.fail_after(5):
            jobs = await broker.wait_and_claim("q", 60, 5, lease=LEASE, worker="w")
        assert [j.id for j in jobs] == ["a"]
    finally:
        await broker.close()


async def test_the_wait_ends_by_its_timeout_claiming_nothing(prefix: str) -> None:
    broker = broker_for(prefix)
    await broker.open()
    try:
        with anyio.fail_after(5):
            assert await broker.wait_and_claim("q", 0.05, 5, lease=LEASE, worker="w") == []
    finally:
        await broker.close()


async def test_a_stopped_wait_claims_nothing_even_with_a_job_ready(
    own_server: Callable[..., RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop and a wake-up reach the waiting worker at once (one transaction): the pop takes
    the wake-up, and the claim behind it sees the stop and leaves the job queued, not leased to
    a worker that would never see it."""
    async with _known_stop_key(own_server, monkeypatch) as (broker, publisher, raw, stop_key):
        got: list[Job] = []
        stop = anyio.Event()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(await _waiting(broker, raw, got, stop))
                await wait_until(lambda: _blocked(raw))
                now = time.time()
                async with publisher._client.pipeline(transaction=True) as pipe:
                    await publisher._scripts.enqueue("q", now, [job("a", now)], client=pipe)
                    pipe.lpush(stop_key, "1", "1")
                    await pipe.execute()
                stop.set()
        assert got == []
        stored = await publisher.get("a")
        assert stored is not None and stored.status is JobStatus.QUEUED and stored.attempts == 0
        assert await raw.exists(stop_key) in (0, 1)  # the late stop's entries expire
        assert 0 < await raw.pttl(stop_key) <= 60_000 or not await raw.exists(stop_key)


async def test_setting_stop_ends_a_blocked_wait(own_server: Callable[..., RedisServer]) -> None:
    server = own_server()
    broker = broker_for("p", url=server.url)
    raw = Redis.from_url(server.url)
    await broker.open()
    try:
        got: list[Job] = []
        stop = anyio.Event()
        with anyio.fail_after(10):  # the wait's own timeout is 60 s
            async with anyio.create_task_group() as tg:
                tg.start_soon(await _waiting(broker, raw, got, stop))
                await wait_until(lambda: _blocked(raw))
                stop.set()
        assert got == []
        assert not await _blocked(raw)
        await broker.enqueue([job("a", time.time())])
        assert [j.id for j in await broker.claim("q", 5, lease=LEASE, worker="w")] == ["a"]
    finally:
        await raw.aclose()
        await broker.close()


async def test_a_waits_stop_watcher_ends_with_the_wait(
    own_server: Callable[..., RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher that would push the stop is cancelled when the wait returns (not awaited:
    the jobs go to their handlers first), and is gone by the next turn of the loop: a stop set
    after the wait ended pushes nothing, and watchers do not pile up wait after wait."""
    async with _known_stop_key(own_server, monkeypatch) as (broker, publisher, raw, stop_key):
        stop = anyio.Event()
        for i in range(3):
            got: list[Job] = []
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(await _waiting(broker, raw, got, stop))
                    await wait_until(lambda: _blocked(raw))
                    await publisher.enqueue([job(f"j{i}", time.time())])
            assert [j.id for j in got] == [f"j{i}"]
            await anyio.sleep(0)
            assert not waiting._WATCHERS
        stop.set()
        await anyio.sleep(0)
        assert not await raw.exists(stop_key)


async def test_an_injected_clock_does_not_move_during_the_wait(
    own_server: Callable[..., RedisServer],
) -> None:
    server = own_server()
    now = 1_800_000_000.0
    broker = broker_for("p", url=server.url, clock=lambda: now)
    publisher = broker_for("p", url=server.url, clock=lambda: now)
    raw = Redis.from_url(server.url)
    await broker.open()
    await publisher.open()
    try:
        got: list[Job] = []
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(await _waiting(broker, raw, got))
                await wait_until(lambda: _blocked(raw))
                await publisher.enqueue([job("a", now)])
        [claimed] = got
        assert claimed.started_at == now and claimed.lease_expires_at == now + LEASE
    finally:
        await raw.aclose()
        await broker.close()
        await publisher.close()


class _Seen(Observer):
    def __init__(self) -> None:
        self.claimed: list[str] = []
        self.operations: set[str] = set()

    def jobs_claimed(self, queue: str, jobs: Sequence[Job]) -> None:
        self.claimed += [j.id for j in jobs]

    def broker_call(self, operation: str, seconds: float, error: BaseException | None) -> None:
        self.operations.add(operation)


async def test_an_idle_worker_claims_on_wake_and_stops_without_waiting_out_its_poll(
    own_server: Callable[..., RedisServer],
) -> None:
    """poll_interval and broker_timeout are long: only the stop key can end the idle wait soon,
    and the job published while the worker waits reaches it through the wait's claim."""
    server = own_server()
    raw = Redis.from_url(server.url)
    app = App(broker=f"{server.url}?prefix=p")
    ran: list[int] = []

    @app.task(queue="q")
    async def note(ctx: JobCtx, n: int) -> None:
        ran.append(n)

    worker = Worker(app, concurrency=2, poll_interval=60.0, broker_timeout=30.0, shutdown_grace=0)
    seen = _Seen()
    worker.events.subscribe(seen)
    try:
        with anyio.fail_after(10):
            async with app, anyio.create_task_group() as tg:
                await tg.start(worker.run)
                await wait_until(lambda: _blocked(raw))
                handle = await note.publish(1)
                await wait_until(lambda: ran == [1])
                assert (await handle.result(timeout=5)) is None
                await wait_until(lambda: _blocked(raw))
                worker.stop()
        assert handle.id in seen.claimed and "wait_and_claim" in seen.operations
        assert await raw.zcard(app.broker.keys.queue("q").leased) == 0  # type: ignore[attr-defined]
    finally:
        await raw.aclose()


async def test_a_library_gone_from_the_server_falls_back_to_a_plain_claim(
    own_server: Callable[..., RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipelined FCALL names a function the server does not have (as after FUNCTION FLUSH
    between the peek and the pop): the library is loaded again and the job claimed plainly."""
    server = own_server()
    broker, publisher = broker_for("p", url=server.url), broker_for("p", url=server.url)
    raw = Redis.from_url(server.url)
    await broker.open()
    await publisher.open()
    reloads: list[None] = []
    real_reload = broker._scripts.reload

    async def gone() -> str:
        return "asynctask_gone"

    async def reload() -> None:
        reloads.append(None)
        await real_reload()

    monkeypatch.setattr(broker._scripts, "function", gone)
    monkeypatch.setattr(broker._scripts, "reload", reload)
    try:
        got: list[Job] = []
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(await _waiting(broker, raw, got))
                await wait_until(lambda: _blocked(raw))
                await publisher.enqueue([job("a", time.time())])
        assert [j.id for j in got] == ["a"] and reloads == [None]
    finally:
        await raw.aclose()
        await broker.close()
        await publisher.close()


async def test_idle_queues_waits_leave_a_busy_queue_all_its_executors(
    own_server: Callable[..., RedisServer],
) -> None:
    """Waits that claim as they wake hold their slots: together no more than the prefetch (1
    here), so three idle queues cannot keep the busy one below its concurrency of 4."""
    server = own_server()
    raw = Redis.from_url(server.url)
    app = App(broker=f"{server.url}?prefix=p")
    running = 0
    all_in = anyio.Event()

    @app.task(queue="busy")
    async def hold(ctx: JobCtx, n: int) -> None:
        nonlocal running
        running += 1
        if running == 4:
            all_in.set()
        await all_in.wait()

    for name in ("i1", "i2", "i3"):
        app.task(queue=name, name=f"idle_{name}")(_idle)

    worker = Worker(app, concurrency=4, prefetch=1, poll_interval=60.0, shutdown_grace=0)
    try:
        with anyio.fail_after(15):
            async with app, anyio.create_task_group() as tg:
                await tg.start(worker.run)
                await wait_until(lambda: _blocked(raw, 4))  # every queue's fetcher waits
                await app.publish_many([hold.spec(i) for i in range(4)])
                await all_in.wait()
                worker.stop()
    finally:
        await raw.aclose()


async def _idle(ctx: JobCtx) -> None:
    pass
