"""A worker whose broker connection stalls is back at work within its deadlines (issue #11)."""

from __future__ import annotations

import anyio

from asynctask import App, JobCtx, Worker
from asynctask.brokers import Broker
from asynctask.testing import wait_until
from tests.proxy import Proxy

GRACE, TIMEOUT = 0.2, 0.5
#: The lease of check_worker_recovers's worker (see there).
LEASE = 3.0


async def check_worker_recovers(proxied: Broker, direct: Broker, proxy: Proxy, *, bound: float) -> None:
    """Run a worker on ``proxied``, stall every connection it has, publish through ``direct``
    (the same jobs, another route): the job must run within ``bound`` seconds, and the worker
    must then stop within ``shutdown_grace + broker_timeout`` plus slack.

    The lease is short: on Redis an idle worker's claim waits in the server behind its wake-up
    (claim on wake), so a publish landing while that connection is stalled can be claimed for a
    reply that never arrives; the job then comes back when the lease lapses (README, Delivery
    guarantees), and ``bound`` must cover that."""
    ran: list[int] = []
    worker_app, publisher = App(proxied), App(direct)
    for app in (worker_app, publisher):

        @app.task(name="note")
        async def note(ctx: JobCtx, n: int) -> None:
            ran.append(n)

    worker = Worker(
        worker_app,
        poll_interval=0.05,
        shutdown_grace=GRACE,
        broker_timeout=TIMEOUT,
        lease=LEASE,
        maintenance_interval=0.5,
    )
    async with worker_app, publisher, anyio.create_task_group() as tg:
        await tg.start(worker.run)
        await publisher.publish("note", 1)
        await wait_until(lambda: ran == [1], timeout=10)
        proxy.stall()  # every connection open now stops answering, without an error
        await publisher.publish("note", 2)
        await wait_until(lambda: ran == [1, 2], timeout=bound)
        worker.stop()
        with anyio.fail_after(GRACE + TIMEOUT + 5):
            await wait_until(lambda: "idle" in repr(worker), timeout=GRACE + TIMEOUT + 5)
    release_stalled(proxy)


async def check_worker_stops_while_stalled(proxied: Broker, direct: Broker, proxy: Proxy) -> float:
    """Stop a worker holding a running job while its connections are stalled; returns how long
    the stop and the close of its broker took (the caller compares it with the documented bound)."""
    started = anyio.Event()
    worker_app, publisher = App(proxied), App(direct)
    for app in (worker_app, publisher):

        @app.task(name="endless")
        async def endless(ctx: JobCtx) -> None:
            started.set()
            await anyio.sleep_forever()

    worker = Worker(worker_app, poll_interval=0.05, shutdown_grace=GRACE, broker_timeout=TIMEOUT)
    async with worker_app, publisher, anyio.create_task_group() as tg:
        await tg.start(worker.run)
        await publisher.publish("endless")
        with anyio.fail_after(10):
            await started.wait()
        proxy.stall()
        begun = anyio.current_time()
        worker.stop()
        await wait_until(lambda: "idle" in repr(worker), timeout=60)
    took = anyio.current_time() - begun  # closing the worker's broker included
    release_stalled(proxy)
    return took


def release_stalled(proxy: Proxy) -> None:
    """Close the stalled connections, server sides included: a statement that reached the server
    before the stall may have left its transaction open (the commit never arrived), holding
    locks that would block the caller's clean-up (a Postgres ``DROP SCHEMA`` waits for them)."""
    proxy.cut()
