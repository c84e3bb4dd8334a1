"""Wake-ups: NOTIFY ends an idle wait, the listener survives losing its connection, and
without NOTIFY (PgBouncer mode) waits still end by polling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from asynctask.brokers.postgres import PostgresBroker
from asynctask.brokers.postgres.listener import channel_for
from asynctask.testing import FakeClock, wait_until
from tests.backend_postgres import URL, postgres_broker
from tests.postgres.conftest import new_job

pytestmark = pytest.mark.anyio

# Far beyond a NOTIFY's latency, far below the waits' own timeouts: ending the wait within it
# proves a wake-up, not a timeout.
WITHIN = 5.0


@asynccontextmanager
async def publisher(broker: PostgresBroker) -> AsyncIterator[PostgresBroker]:
    """A second broker on the same schema, like another process publishing."""
    other = PostgresBroker(URL, schema=broker.schema, clock=broker.clock)
    await other.open()
    try:
        yield other
    finally:
        await other.close()


@asynccontextmanager
async def waiting(
    broker: PostgresBroker, queue: str = "q", timeout: float = 60
) -> AsyncIterator[anyio.Event]:
    """Run ``wait_for_jobs`` in the background; the yielded event is set when it returns."""
    woke = anyio.Event()

    async def wait() -> None:
        await broker.wait_for_jobs(queue, timeout=timeout)
        woke.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        yield woke
        tg.cancel_scope.cancel()


async def registered(broker: PostgresBroker, queue: str = "q") -> None:
    """Until the waiter listens for ``queue``: only then can a publish be missed by its look."""

    async def check() -> bool:
        return queue in broker.listener.waiting

    await wait_until(check, timeout=WITHIN)


async def test_only_a_wait_opens_the_listen_connection(pg: PostgresBroker, clock: FakeClock) -> None:
    # A broker that only publishes receives no NOTIFYs: its own would reach it at every publish.
    assert await pg.enqueue([new_job(clock, "a")]) == [True]
    assert not pg.listener.connected and pg.listener.backend_pid is None
    # The first wait connects whatever its own timeout (a worker's may be shorter than a connect).
    await pg.wait_for_jobs("q", timeout=0)
    assert pg.listener.connected and pg.listener.backend_pid is not None


async def test_an_idle_waiter_is_woken_by_notify(pg: PostgresBroker, clock: FakeClock) -> None:
    assert pg.capabilities.push_wakeups
    async with publisher(pg) as other, waiting(pg) as woke:
        await registered(pg)
        assert pg.listener.connected and not other.listener.connected
        assert await other.enqueue([new_job(clock, "a")]) == [True]
        with anyio.fail_after(WITHIN):
            await woke.wait()
    [job] = await pg.claim("q", 10, lease=30, worker="w")
    assert job.id == "a"


async def test_a_notify_for_another_queue_does_not_end_the_wait(pg: PostgresBroker, clock: FakeClock) -> None:
    async with waiting(pg, "q", timeout=60) as woke, waiting(pg, "other", timeout=60) as other_woke:
        await registered(pg, "q")
        await registered(pg, "other")
        await pg.enqueue([new_job(clock, "a", queue="other")])
        with anyio.fail_after(WITHIN):
            await other_woke.wait()
        assert not woke.is_set()


async def test_notify_is_sent_once_per_queue_per_batch(
    pg: PostgresBroker, admin: Any, clock: FakeClock
) -> None:
    payloads: list[str] = []
    got_both = anyio.Event()

    def on_notify(conn: Any, pid: int, channel: str, payload: str) -> None:
        payloads.append(payload)
        if len(set(payloads)) == 2:
            got_both.set()

    await admin.add_listener(channel_for(pg.schema), on_notify)
    jobs = [new_job(clock, f"j{i}", queue="q1" if i % 2 else "q2") for i in range(100)]
    await pg.enqueue(jobs)
    with anyio.fail_after(WITHIN):
        await got_both.wait()
    # A probe sent after the batch arrives after every notification of the batch.
    probe = anyio.Event()
    await admin.add_listener("probe", lambda *args: probe.set())
    await admin.execute("NOTIFY probe")
    with anyio.fail_after(WITHIN):
        await probe.wait()
    assert sorted(payloads) == ["q1", "q2"]


async def test_the_listener_reconnects_after_its_connection_is_killed(
    pg: PostgresBroker, admin: Any, clock: FakeClock
) -> None:
    async with waiting(pg) as woke:
        await registered(pg)
        first_pid = pg.listener.backend_pid
        assert first_pid is not None
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first_pid)
        # Losing the connection wakes the waiter so it can catch up on what it may have missed.
        with anyio.fail_after(WITHIN):
            await woke.wait()
    assert pg.listener.losses == 1
    async with publisher(pg) as other, waiting(pg) as woke:
        await registered(pg)
        assert pg.listener.connected and pg.listener.backend_pid not in (None, first_pid)
        await other.enqueue([new_job(clock, "after")])
        with anyio.fail_after(WITHIN):
            await woke.wait()


async def test_without_notify_waits_poll(clock: FakeClock) -> None:
    async with postgres_broker(clock, notify=False, poll_interval=0.05) as pg:
        assert not pg.capabilities.push_wakeups
        async with publisher(pg) as other, waiting(pg) as woke:
            await other.enqueue([new_job(clock, "a")])
            with anyio.fail_after(WITHIN):
                await woke.wait()
        assert not pg.listener.connected, "notify=False opens no LISTEN connection"
        [job] = await pg.claim("q", 10, lease=30, worker="w")
        assert job.id == "a"


async def test_notify_false_from_the_url(clock: FakeClock) -> None:
    async with postgres_broker(clock) as first:
        broker = PostgresBroker(f"{URL}?schema={first.schema}&notify=false&poll_interval=0.05", clock=clock)
        assert broker.poll_interval == 0.05
        assert not broker.capabilities.push_wakeups and broker.capabilities.transactional_publish


@pytest.mark.parametrize("notify", [True, False])
async def test_a_wait_ends_by_its_timeout(clock: FakeClock, notify: bool) -> None:
    async with postgres_broker(clock, notify=notify, poll_interval=0.05) as pg:
        with anyio.fail_after(WITHIN):
            await pg.wait_for_jobs("q", timeout=0.2)


async def test_a_wait_ends_when_the_next_scheduled_job_comes_due(
    pg: PostgresBroker, clock: FakeClock
) -> None:
    await pg.enqueue([new_job(clock, "soon", run_at=clock() + 0.2)])
    with anyio.fail_after(WITHIN):
        await pg.wait_for_jobs("q", timeout=60)


async def test_waits_fall_back_to_polling_while_the_listener_cannot_connect(clock: FakeClock) -> None:
    async with postgres_broker(clock, poll_interval=0.05) as pg:
        await pg.listener.close()  # as if the server refused every LISTEN connection from now on
        async with publisher(pg) as other, waiting(pg) as woke:
            await other.enqueue([new_job(clock, "a")])
            with anyio.fail_after(WITHIN):
                await woke.wait()


async def test_listener_connection_is_not_from_the_pool(pg: PostgresBroker, admin: Any) -> None:
    assert await pg.listener.ensure()
    pid = pg.listener.backend_pid
    row = await admin.fetchrow("SELECT application_name, query FROM pg_stat_activity WHERE pid = $1", pid)
    assert row["application_name"] == "asynctask-listener"
    assert row["query"].startswith("LISTEN")
    async with pg._db.require().acquire() as conn:
        assert conn.get_server_pid() != pid
