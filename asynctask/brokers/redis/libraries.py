"""Removing the Functions libraries of asynctask versions no longer running.

Each asynctask version loads its own library, ``asynctask_<hash of the Lua>``
(:mod:`.loader`), so a server gains one (~60 KB of source, ~150 KB compiled, kept in RDB/AOF) per
deployed version. Workers tidy them up as part of maintenance, like Sidekiq's and Oban's
pruners, with nothing for an operator to run:

* every worker stamps its own library in ``<prefix>:libraries`` (library -> last seen, unix
  time), at most once a minute;
* at most once an hour, a worker lists the server's ``asynctask_*`` libraries and deletes each one
  not stamped for :data:`RETENTION` (a day). A library seen for the first time is stamped then,
  so one loaded by a version older than this rule gets a day too.

Deleting a library in use is harmless: a process that still calls it finds it missing and loads
it again (:class:`.loader.Runner`), costing that process one round trip. So the day is about
churn, not safety: a process that only publishes never stamps its library, nor does a worker
of an app under another prefix on the same server; theirs are reloaded at most once a day.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

__all__ = ["RETENTION", "Libraries"]

logger = logging.getLogger("asynctask.brokers.redis")

#: Seconds a library may go unstamped before a worker deletes it.
RETENTION = 24 * 3600.0
#: Seconds between one process's stamps of its own library, and between its sweeps.
STAMP_EVERY = 60.0
SWEEP_EVERY = 3600.0
_PREFIX = "asynctask_"


class Libraries:
    """The stamps and sweeps of one broker (one prefix); ``ours``: this version's library."""

    def __init__(self, client: Redis, key: str, ours: str) -> None:
        self._client = client
        self.key = key
        self.ours = ours
        self._stamped_at = float("-inf")
        self._swept_at = float("-inf")

    async def tend(self, now: float) -> list[str]:
        """Stamp and sweep when due; returns the libraries deleted."""
        if now - self._stamped_at >= STAMP_EVERY:
            await self._client.hset(self.key, self.ours, repr(now))
            self._stamped_at = now
        if now - self._swept_at < SWEEP_EVERY:
            return []
        self._swept_at = now
        return await self.sweep(now)

    async def sweep(self, now: float) -> list[str]:
        """Delete the libraries not stamped for :data:`RETENTION`; returns their names."""
        try:
            listed = await self._client.function_list(library=_PREFIX + "*")
        except ResponseError:  # Redis < 7, or an ACL without FUNCTION: nothing was loaded
            return []
        names = [n for n in map(_library_name, listed) if n and n.startswith(_PREFIX) and n != self.ours]
        if not names:
            return []
        stamps = await self._client.hmget(self.key, names)
        deleted: list[str] = []
        for name, stamp in zip(names, stamps, strict=True):
            seen = _seconds(stamp)
            if seen is None:
                # First sighting (or an unreadable stamp): its day starts now.
                await self._client.hset(self.key, name, repr(now))
            elif now - seen >= RETENTION:
                try:
                    await self._client.function_delete(name)
                except ResponseError as exc:
                    if "not exist" not in str(exc).lower():
                        # An ACL without FUNCTION DELETE: leave the libraries to the operator.
                        logger.info(
                            "Redis refused FUNCTION DELETE %s (%s); old asynctask libraries stay",
                            name,
                            exc,
                            extra={"action": "redis_library_delete_refused"},
                        )
                        return deleted
                await self._client.hdel(self.key, name)
                deleted.append(name)
        return deleted


def _library_name(entry: Any) -> str | None:
    """``library_name`` from one ``FUNCTION LIST`` entry (a flat list, or a map under RESP3)."""
    if isinstance(entry, dict):
        value = entry.get(b"library_name", entry.get("library_name"))
    else:
        items = list(entry)
        pairs = dict(zip(items[::2], items[1::2], strict=False))
        value = pairs.get(b"library_name", pairs.get("library_name"))
    if isinstance(value, bytes):
        return value.decode()
    return value if isinstance(value, str) else None


def _seconds(stamp: Any) -> float | None:
    try:
        return float(stamp) if stamp is not None else None
    except (TypeError, ValueError):
        return None
