"""How ``asynctask.lua`` reaches the server: a Redis Functions library, or a script.

Starting a script is not free: under ``EVALSHA`` Redis runs the file's top level (its tables,
its closures) at every call, ~25-40 us of server time before the command does anything, more
than a whole single-job publish spends in Redis commands. Loaded as a library, that top level
runs once (at ``FUNCTION LOAD``) and a call is a plain ``FCALL``.

The library and its one function are named after a hash of the source
(``asynctask_<sha1[:12]>``), so two asynctask versions sharing a server during a rolling upgrade
each keep their own code instead of replacing the other's (the reason the scripts once avoided
Functions). The price: a library per version on the server, and in its RDB/AOF (about 60 KB of
source and some 150 KB of compiled Lua each), until workers delete those of versions gone for a
day (:mod:`.libraries`).

:class:`Runner` falls back to ``EVALSHA`` (redis-py reloads the script on ``NOSCRIPT``) when the
server refuses ``FUNCTION LOAD``: Redis < 7 (unknown command), an ACL without ``@scripting``
function rights (``NOPERM``), or any other error reply. A function that disappears later (a
restart without persistence, ``FUNCTION FLUSH``) is loaded again and the call repeated: an
``FCALL`` of a missing function ran nothing, so repeating it is safe. Calls queued in a
pipeline use ``EVALSHA``, whose loading redis-py handles inside pipelines (checked before the
pipeline is sent); those are the rarer batch paths (a publish spanning several queues, stats).

Two headers turn the file into either form: the file defines ``main(keys, argv)`` and reads
``ONLY`` (the command to define under ``EVAL``, ``false`` in a library, which defines them all).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

__all__ = ["Runner", "library_source", "script_source"]

logger = logging.getLogger("asynctask.brokers.redis")


def library_source(source: str) -> tuple[str, str]:
    """The ``FUNCTION LOAD`` text of ``source`` and the name of its library and function."""
    name = "asynctask_" + hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()[:12]
    # One line of header, so error line numbers are the file's own plus one.
    code = f"#!lua name={name}\nlocal ONLY = false\n{source}\nredis.register_function('{name}', main)\n"
    return code, name


def script_source(source: str) -> str:
    """The ``EVAL`` text of ``source`` (its top level run at every call, defining only ARGV[1])."""
    # The file declares locals named KEYS and ARGV; the call's globals are captured first.
    header = "local ONLY, CALL_KEYS, CALL_ARGV = ARGV[1], KEYS, ARGV\n"
    return f"{header}{source}\nreturn main(CALL_KEYS, CALL_ARGV)\n"


def _missing(exc: ResponseError) -> bool:
    return "function not found" in str(exc).lower()


class Runner:
    """Runs the file on one client: ``FCALL`` once the library is loaded, else ``EVALSHA``."""

    def __init__(self, client: Redis, source: str, *, functions: bool = True) -> None:
        self._client = client
        self._library, self.function = library_source(source)
        self._script = client.register_script(script_source(source))
        #: Whether calls go by FCALL: None until the first call tries FUNCTION LOAD.
        self.functions: bool | None = None if functions else False

    async def load(self) -> bool:
        """Load the library (if it is not there yet); whether FCALL can be used from now on."""
        try:
            await self._client.function_load(self._library)
        except ResponseError as exc:
            if "already exists" not in str(exc):
                logger.info(
                    "Redis refused FUNCTION LOAD (%s); asynctask's commands run as a script (EVALSHA)",
                    exc,
                    extra={"action": "redis_functions_unavailable"},
                )
                self.functions = False
                return False
        self.functions = True
        return True

    async def __call__(
        self, keys: Sequence[str], args: Sequence[Any], *, client: Redis | Pipeline | None = None
    ) -> Any:
        """The reply of one call (or, on a pipeline, the call queued in it)."""
        if client is not None and client is not self._client:
            return await self._script(keys=keys, args=args, client=client)
        if self.functions is None:
            await self.load()
        if not self.functions:
            return await self._script(keys=keys, args=args)
        try:
            return await self._client.fcall(self.function, len(keys), *keys, *args)
        except ResponseError as exc:
            if not _missing(exc):
                raise
        # Gone since it was loaded (restart, FUNCTION FLUSH): nothing ran; load and call again.
        if not await self.load():
            return await self._script(keys=keys, args=args)
        return await self._client.fcall(self.function, len(keys), *keys, *args)
