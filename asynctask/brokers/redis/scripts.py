"""Typed wrappers around the commands of ``asynctask.lua``.

The whole file is one Redis Functions library named after its content, called with ``FCALL``,
or one script called with ``EVALSHA`` where the server refuses Functions; :mod:`.loader` decides,
and reloads either when the server lost it. Named by content, two asynctask versions sharing a
server during a rolling upgrade each run their own code instead of replacing the other's.

Each wrapper knows the argument layout of its Lua command; nothing else does (but
:func:`~asynctask.brokers.redis.codec.new_job_row`, the layout of a new job). The batch commands
(``enqueue``, ``complete``) take their jobs and outcomes as one msgpack argument, which the Lua
reads with ``cmsgpack.unpack``: packing ~15-30 separate arguments per job was most of a
publish's client time. The stored records are hashes either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from asynctask.brokers.redis.codec import fmt, initial_status, new_job_row, pack, packed, pairs, time_key
from asynctask.brokers.redis.keys import Keys
from asynctask.brokers.redis.libraries import Libraries
from asynctask.brokers.redis.loader import Runner
from asynctask.flow import CLOCK_SLACK, RateLimit, TaskLimit
from asynctask.models import LeaseState, NewJob, Outcome, OutcomeKind

__all__ = ["SOURCE", "TTL_MARGIN", "Scripts", "claim_args", "claim_reply", "ttl_ms"]

#: The Lua source, shipped as package data.
SOURCE = files("asynctask.brokers.redis").joinpath("asynctask.lua").read_text(encoding="utf-8")

#: How many due scheduled jobs a claim (or wait) moves to ready first, so a claim sees them.
PROMOTE_CAP = 1000

#: Real TTLs on finished jobs fire this long after ``expires_at``. Readers stop seeing a job at
#: ``expires_at`` itself (the injected clock decides), so the TTL is only the janitor of last
#: resort, and the margin absorbs clock skew between the app's hosts and the server.
TTL_MARGIN = 3600.0

_Client = Redis | Pipeline

#: How many queues' keys a :class:`Scripts` keeps ready-made.
_SLOT_KEYS_CACHED = 1024


def ttl_ms(expires_at: float | None, now: float) -> int:
    """Milliseconds for ``PEXPIRE`` of a record expiring at ``expires_at`` (0: none)."""
    if expires_at is None:
        return 0
    return max(int((expires_at - now + TTL_MARGIN) * 1000), 1000)


def _flag(value: bytes | str | None) -> list[bytes | str]:
    """An optional value as ``has, value`` (``b""`` is a real value, so no sentinel string)."""
    return ["0", b""] if value is None else ["1", value]


def _new_job(job: NewJob, now: float) -> tuple[Any, ...]:
    return new_job_row(job, initial_status(job, now))


def _outcome(o: Outcome, now: float) -> tuple[Any, ...]:
    """One outcome as the Lua ``complete`` reads it (see there), ``None`` for absent values."""
    retry = o.kind is OutcomeKind.RETRY
    run_at = (now if o.run_at is None else o.run_at) if retry else None
    return (
        o.job_id,
        str(o.token),
        o.kind.value,
        None if o.result is None else packed(o.result),
        o.error,
        None if run_at is None else fmt(run_at),
        None if run_at is None else time_key(run_at),
        None if o.expires_at is None else fmt(o.expires_at),
        str(ttl_ms(o.expires_at, now)),
        None if o.meta is None else packed(o.meta),
        [(c.queue, c.parent_id or "", _new_job(c, now)) for c in o.spawn] if o.spawn else None,
    )


def claim_args(
    limit: int, lease_expires_at: float, worker: str, limits: Mapping[str, TaskLimit]
) -> list[Any]:
    """The arguments of ``claim`` (and the tail of ``wake_claim``'s)."""
    args: list[Any] = [limit, fmt(lease_expires_at), worker, PROMOTE_CAP, fmt(CLOCK_SLACK), len(limits)]
    for name, lim in limits.items():
        rate = lim.rate
        args += [name, "" if lim.concurrency is None else str(lim.concurrency)]
        args += ["", ""] if rate is None else [fmt(rate.per_second), str(rate.burst)]
    return args


def claim_reply(reply: Any) -> tuple[list[dict[bytes, bytes]], bool, float | None]:
    """``claim``'s reply: the claimed rows, whether flow control held jobs back, when tokens return."""
    rows, held, retry_at = reply
    return [pairs(row) for row in rows], bool(held), float(retry_at) if retry_at else None


class Scripts:
    """The Lua commands, bound to one client and key prefix."""

    def __init__(self, client: Redis, keys: Keys) -> None:
        self._run = Runner(client, SOURCE)
        self._keys = keys
        self.libraries = Libraries(client, keys.libraries, self._run.function)
        # queue -> [its ready key] (KEYS of a call; the name validated once).
        self._slot_keys: dict[str, list[str]] = {}

    def command(self, queue: str, command: str, now: float, *args: Any) -> tuple[list[str], list[Any]]:
        """The KEYS and ARGV of one command on ``queue``."""
        keys = self._slot_keys.get(queue)
        if keys is None:
            if len(self._slot_keys) >= _SLOT_KEYS_CACHED:
                self._slot_keys.clear()
            keys = self._slot_keys[queue] = [self._keys.queue(queue).ready]
        return keys, [command, self._keys.prefix, fmt(now), time_key(now), queue, *args]

    async def _call(
        self, queue: str, command: str, now: float, *args: Any, client: _Client | None = None
    ) -> Any:
        keys, argv = self.command(queue, command, now, *args)
        return await self._run(keys, argv, client=client)

    async def function(self) -> str | None:
        """The library's function name, loading it first if needed; ``None`` where calls go by
        ``EVALSHA`` (no Functions on the server)."""
        if self._run.functions is None:
            await self._run.load()
        return self._run.function if self._run.functions else None

    async def reload(self) -> None:
        """Load the library again (a pipelined ``FCALL`` found it gone)."""
        await self._run.load()

    async def enqueue(
        self, queue: str, now: float, jobs: Sequence[NewJob], *, client: _Client | None = None
    ) -> Any:
        """Create jobs whose id has no live job in the queue; ``[1|0, ...]`` (later, if pipelined)."""
        rows = pack([_new_job(job, now) for job in jobs])
        return await self._call(queue, "enqueue", now, rows, client=client)

    async def claim(
        self,
        queue: str,
        now: float,
        limit: int,
        lease_expires_at: float,
        worker: str,
        limits: Mapping[str, TaskLimit],
    ) -> tuple[list[dict[bytes, bytes]], bool, float | None]:
        """The claimed rows, whether flow control held jobs back, and when tokens return."""
        args = claim_args(limit, lease_expires_at, worker, limits)
        return claim_reply(await self._call(queue, "claim", now, *args))

    async def set_flow(
        self,
        queue: str,
        now: float,
        *,
        paused: bool | None = None,
        limits: tuple[int | None, RateLimit | None] | None = None,
    ) -> dict[bytes, bytes]:
        """Change a queue's pause (``paused``) or its limits (``limits``); its flow hash after."""
        if paused is not None:
            args: list[Any] = ["paused", "1" if paused else "0"]
        else:
            assert limits is not None
            concurrency, rate = limits
            args = ["limits", "" if concurrency is None else str(concurrency)]
            args += ["", "", ""] if rate is None else [str(rate.count), fmt(rate.per), str(rate.burst)]
        return pairs(await self._call(queue, "set_flow", now, *args))

    async def complete(self, queue: str, now: float, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply outcomes of this queue's jobs; ``False`` where the token was stale."""
        for o in outcomes:
            for child in o.spawn:
                self._keys.queue(child.queue)  # validate names before anything is written
        rows = pack([_outcome(o, now) for o in outcomes])
        return [bool(x) for x in await self._call(queue, "complete", now, rows)]

    async def extend(
        self, queue: str, now: float, lease_expires_at: float, leases: Sequence[tuple[str, int]]
    ) -> list[LeaseState]:
        args: list[Any] = [fmt(lease_expires_at), len(leases)]
        for job_id, token in leases:
            args += [job_id, str(token)]
        return [LeaseState(x.decode()) for x in await self._call(queue, "extend", now, *args)]

    async def save(
        self, queue: str, now: float, job_id: str, token: int, state: bytes | None, result: bytes | None
    ) -> bool:
        args = [job_id, str(token), *_flag(state), *_flag(result)]
        return bool(await self._call(queue, "save", now, *args))

    async def promote(self, queue: str, now: float, limit: int) -> int:
        return int(await self._call(queue, "promote", now, limit))

    async def quarantine(self, queue: str, now: float, job_id: bytes | str, reason: str) -> bool:
        """Fail a record the broker could not decode (see ``quarantine`` in the Lua file)."""
        return bool(await self._call(queue, "quarantine", now, job_id, reason))

    async def rescue(self, queue: str, now: float, limit: int) -> int:
        return int(await self._call(queue, "rescue", now, limit))

    async def prune(self, queue: str, now: float, limit: int) -> list[str]:
        return [x.decode() for x in await self._call(queue, "prune", now, limit)]

    async def peek(self, queue: str, now: float) -> tuple[bool, float | None, int]:
        """Whether a job is ready, else when the next scheduled one is due and the server's
        clock (microseconds; 0 when a job is ready)."""
        ready, next_run, *server = await self._call(queue, "peek", now, PROMOTE_CAP)
        return bool(ready), float(next_run) if next_run else None, int(server[0]) if server else 0

    async def cancel(
        self, queue: str, now: float, job_id: str, expires_at: float | None
    ) -> dict[bytes, bytes] | None:
        expires = "" if expires_at is None else fmt(expires_at)
        row = await self._call(queue, "cancel", now, job_id, expires, ttl_ms(expires_at, now))
        return pairs(row) if row else None

    async def change(self, queue: str, now: float, command: str, job_id: str) -> dict[bytes, bytes] | None:
        """``pause``, ``resume`` or ``retry`` one job; the job after, or ``None`` if gone."""
        assert command in ("pause", "resume", "retry")
        row = await self._call(queue, command, now, job_id)
        return pairs(row) if row else None

    async def delete(self, queue: str, now: float, job_id: str) -> bool:
        return bool(await self._call(queue, "delete", now, job_id))

    # --- inspection (see the inspection blocks of asynctask.lua) -----------------------------

    async def list_page(
        self,
        queue: str,
        now: float,
        *,
        source: str,
        after: tuple[str, str] | None,
        limit: int,
        budget: int,
        status: str | None,
        task: str | None,
        parent_id: str | None,
    ) -> tuple[list[tuple[float, str]], tuple[str, str] | None]:
        """Walk ``source`` (``created`` or a status index) newest first from ``after``.

        Returns up to ``limit`` live matching ``(created_at, id)`` and where the walk stopped
        (``None``: the index is exhausted); at most ``budget`` entries are read per call.
        """
        score, last = after if after is not None else ("", "")
        filters = [status or "", task or "", parent_id or ""]
        flat, end_score, end_id = await self._call(
            queue, "list_page", now, source, score, last, limit, budget, *filters
        )
        found = [(float(flat[i]), flat[i + 1].decode()) for i in range(0, len(flat), 2)]
        return found, (None if end_score == b"" else (end_score.decode(), end_id.decode()))

    async def stats(self, queue: str, now: float, *, client: _Client | None = None) -> Any:
        """``[status, count, ..., oldest ready run_at or b""]`` (later, if pipelined)."""
        return await self._call(queue, "stats", now, client=client)

    async def unindex(self, entries: Sequence[tuple[str, str]]) -> int:
        """Drop ``id -> queue`` mappings that still name that queue."""
        if not entries:
            return 0
        args: list[str] = ["unindex", self._keys.prefix, "0", "", ""]
        for job_id, queue in entries:
            args += [job_id, queue]
        return int(await self._run([self._keys.ids], args))

    # --- the worker registry (global commands, KEYS[1] = the workers hash) -------------------------

    async def _workers(self, command: str, now: float, *args: Any) -> Any:
        head = [command, self._keys.prefix, fmt(now), time_key(now), ""]
        return await self._run([self._keys.workers], [*head, *args])

    async def worker_record(self, now: float, worker_id: str, expires_at: float, record: bytes) -> None:
        await self._workers("worker_record", now, worker_id, fmt(expires_at), record)

    async def worker_remove(self, now: float, worker_id: str) -> None:
        await self._workers("worker_remove", now, worker_id)

    async def workers_list(self, now: float) -> list[bytes]:
        """The live workers' records (JSON), in id order."""
        return list(await self._workers("workers_list", now))
