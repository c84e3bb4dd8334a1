"""Idle workers: waiting on a queue's wake list, and the claim that follows the wake-up.

:func:`wait_for_jobs` peeks (a job ready? the next scheduled one?), then blocks with ``BLPOP`` on
the queue's wake list, on the broker's second connection; the fetcher claims when it returns.

:func:`wait_and_claim` (``Capabilities.claim_on_wake``) sends the claim with the wait: one
pipeline ``[BLPOP wake stop, FCALL wake_claim]`` on the blocking connection. Redis runs a blocked
client's next command as soon as the pop returns, so a publish's wake-up is followed by the claim
inside the server, without a round trip back to the worker first (the publish -> handler latency
of an idle worker). The claim's arguments are fixed when the wait begins (the worker's slots are
reserved for it meanwhile); ``wake_claim`` moves its time and lease expiry on by the wait, as the
server's clock measured it since the peek (unless the broker reads an injected clock, which
stands still while nobody moves it).

A claim whose reply is never read would leave its jobs leased to a worker that does not know it
has them (until the lease expires and maintenance rescues them, with an attempt spent). So the
wait is not cancelled to stop it: ``stop`` (an event) pushes two entries onto the wait's own stop
key, the pop takes one and ``wake_claim``, seeing the other, claims nothing. What is left is the
case of any claim whose reply is lost: the connection failing, or no answer ``_WAIT_GRACE``
seconds after the pop's own timeout (the guard against a socket that silently died). Those jobs
come back when their lease expires, as after a worker crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any, Protocol

import anyio
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from asynctask.brokers.base import Clock
from asynctask.brokers.redis.codec import decode_record
from asynctask.brokers.redis.connection import translate
from asynctask.brokers.redis.keys import Keys
from asynctask.brokers.redis.scripts import Scripts, claim_args, claim_reply
from asynctask.flow import Claimed, TaskLimits, normalize_limits
from asynctask.models import Job

__all__ = ["claimed", "wait_and_claim", "wait_for_jobs"]

logger = logging.getLogger("asynctask.brokers.redis")

#: Extra time a wait may take beyond its timeout before we stop trusting the socket.
_WAIT_GRACE = 5.0
_MAX_BLOCK = 3600.0
#: How long a stop signal outlives a wait that had already returned (nobody pops it then).
_STOP_TTL_MS = 60_000


class RedisBroker(Protocol):
    """What these functions use of :class:`~asynctask.brokers.redis.broker.RedisBroker`."""

    keys: Keys
    clock: Clock
    _client: Redis
    _blocking: Redis | None
    _scripts: Scripts
    _where: str
    _queue_of: dict[str, str]

    async def _quarantine(self, queue: str, row: dict[bytes, bytes], problem: str) -> None: ...

    async def claim(
        self, queue: str, limit: int, *, lease: float, worker: str, limits: TaskLimits | None = None
    ) -> list[Job]: ...


async def claimed(
    broker: RedisBroker, queue: str, rows: list[dict[bytes, bytes]], held: bool, retry_at: float | None
) -> list[Job]:
    """The jobs of a claim's reply; a row Python cannot read is quarantined."""
    jobs = []
    for row in rows:
        job, problem = decode_record(row)
        if problem is None:
            jobs.append(job)
            broker._queue_of[job.id] = queue
        else:  # the script checked it, but Python could not read it: it runs no further
            await broker._quarantine(queue, row, problem)
    return Claimed(jobs, held_back=True, retry_at=retry_at) if held else jobs


def _block(timeout: float) -> float:
    # BLPOP takes seconds with millisecond resolution; 0 would mean "forever", and a waiter may
    # return early anyway ("a job *may* be ready"), so very long waits are cut.
    return min(max(timeout, 0.01), _MAX_BLOCK)


async def wait_for_jobs(broker: RedisBroker, queue: str, timeout: float, *, held: bool) -> None:
    """:meth:`RedisBroker.wait_for_jobs`."""
    qk = broker.keys.queue(queue)
    now = broker.clock()
    with translate(broker._where):
        if held:
            await broker._client.delete(qk.wake)
        else:
            ready, next_run, _ = await broker._scripts.peek(queue, now)
            if ready:
                return
            if next_run is not None:
                timeout = min(timeout, next_run - now)
    if timeout <= 0:
        return
    blocking = broker._blocking or broker._client
    block = _block(timeout)
    with anyio.move_on_after(block + _WAIT_GRACE), translate(broker._where):
        await blocking.blpop([qk.wake], timeout=block)


async def wait_and_claim(
    broker: RedisBroker,
    queue: str,
    timeout: float,
    limit: int,
    *,
    lease: float,
    worker: str,
    limits: TaskLimits | None = None,
    stop: anyio.Event | None = None,
) -> list[Job]:
    """:meth:`RedisBroker.wait_and_claim`."""
    if limit <= 0:
        return []
    if stop is not None and stop.is_set():
        return []
    qk = broker.keys.queue(queue)
    scripts = broker._scripts
    now = broker.clock()
    with translate(broker._where):
        function = await scripts.function()
        ready, next_run, server_now = await scripts.peek(queue, now)
    if next_run is not None:
        timeout = min(timeout, next_run - now)
    if ready or timeout <= 0 or function is None or broker._blocking is None:
        # Nothing to wait for (or no library to pipeline: a wait, then a claim of its own).
        if not ready and timeout > 0:
            await wait_for_jobs(broker, queue, timeout, held=False)
        return await broker.claim(queue, limit, lease=lease, worker=worker, limits=limits)
    block = _block(timeout)
    stop_key = f"{qk.wake}:{uuid.uuid4().hex}"
    # The claim's time: the client's clock read after the peek's reply (so at or after the
    # peek's server time), moved on by the server's clock from there. An injected clock (a
    # test's FakeClock) did not move during the wait: neither does the claim.
    since = server_now if broker.clock is time.time else 0
    now = broker.clock()
    args = [stop_key, since, *claim_args(limit, now + lease, worker, normalize_limits(limits))]
    keys, argv = scripts.command(queue, "wake_claim", now, *args)
    reply = None
    watcher = None if stop is None else _watch(_stop_on(broker, stop, stop_key))
    try:
        with anyio.move_on_after(block + _WAIT_GRACE), translate(broker._where):
            async with broker._blocking.pipeline(transaction=False) as pipe:
                pipe.blpop([qk.wake, stop_key], timeout=block)
                pipe.fcall(function, len(keys), *keys, *argv)
                _, reply = await pipe.execute(raise_on_error=False)
    finally:
        if watcher is not None:
            watcher.cancel()
    if reply is None:  # cut short by the guard: see the module docstring
        return []
    if isinstance(reply, ResponseError):
        if "function not found" not in str(reply).lower():
            with translate(broker._where):
                raise reply
        # The library is gone (a restart, FUNCTION FLUSH): nothing ran; load it, claim plainly.
        with translate(broker._where):
            await scripts.reload()
        return await broker.claim(queue, limit, lease=lease, worker=worker, limits=limits)
    rows, held, retry_at = claim_reply(reply)
    return await claimed(broker, queue, rows, held, retry_at)


#: The running stop watchers (the event loop itself keeps only weak references to tasks).
_WATCHERS: set[asyncio.Task[None]] = set()


def _watch(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run a wait's stop watcher (:func:`_stop_on`) as a task of its own, which the wait cancels
    when it ends without waiting for it: the claimed jobs go to their handlers at once. (In a
    task group, the group's exit waited for the cancelled watcher to finish: the pipeline's reply
    -> handler start took 150 us instead of 90, and the benchmark's W2 p50 0.90-0.98 ms instead of
    0.73-0.90.)"""
    task = asyncio.get_running_loop().create_task(coro)
    _WATCHERS.add(task)
    task.add_done_callback(_WATCHERS.discard)
    return task


async def _stop_on(broker: RedisBroker, stop: anyio.Event, stop_key: str) -> None:
    """Once ``stop`` is set, end the wait on ``stop_key`` without a claim (module docstring)."""
    await stop.wait()
    try:
        with translate(broker._where):
            async with broker._client.pipeline(transaction=True) as pipe:
                pipe.lpush(stop_key, "1", "1")
                pipe.pexpire(stop_key, _STOP_TTL_MS)
                await pipe.execute()
    except Exception as exc:  # the wait then ends by its own timeout
        logger.warning("could not stop a wait for jobs: %s", exc, extra={"action": "wait_stop_error"})
