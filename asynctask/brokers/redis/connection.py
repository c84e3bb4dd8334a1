"""Connecting to Redis: URLs, redaction, the client pair, and translating driver errors.

This is the boundary: redis-py exceptions never leave the broker; they become
:class:`~asynctask.errors.BrokerUnavailable` (cannot connect, authentication refused) or
:class:`~asynctask.errors.BrokerError` (anything else the server rejects).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypedDict, Unpack
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis.exceptions as rexc
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from asynctask.errors import BrokerError, BrokerUnavailable, ConfigurationError
from asynctask.log import redact_url

__all__ = [
    "blocking_client",
    "check_eviction_policy",
    "client_from_url",
    "display_url",
    "endpoint",
    "split_prefix",
    "translate",
    "CONNECT_TIMEOUT",
    "SOCKET_TIMEOUT",
    "Timeouts",
]

logger = logging.getLogger("asynctask.brokers.redis")


def _retry() -> Retry:
    # A few quick reconnect attempts ride out a failover or restart without stalling a worker
    # for long; after that the caller sees BrokerUnavailable and decides. (redis-py mutates a
    # Retry's error list, so each client gets its own.)
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3)


def display_url(url: str | None, client: Redis, prefix: str | None) -> str:
    """The redacted URL of a broker, built from ``client`` when no URL was given."""
    if url is None:
        url = f"redis://{endpoint(client)}/{client.connection_pool.connection_kwargs.get('db', 0)}"
    url = redact_url(url)
    if prefix is not None:
        url += ("&" if "?" in url else "?") + urlencode({"prefix": prefix})
    return url


def split_prefix(url: str) -> tuple[str, str | None]:
    """Remove asynctask's own ``?prefix=`` from ``url``; returns ``(url, prefix or None)``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), None)
    if prefix is None:
        return url, None  # as given: re-encoding would hide a mistyped URL's '@' from redaction
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


#: Seconds a command may wait for its reply (``socket_timeout``) and a connect may take
#: (``socket_connect_timeout``) unless the URL or the caller says otherwise. Set here rather than
#: left to redis-py, whose defaults changed between versions (none before 6.x: a connection that
#: stopped answering froze its caller until the kernel gave up). A command that times out drops
#: its connection and is retried on a new one (see ``_retry``), so a stalled connection costs
#: about one timeout.
SOCKET_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0


class Timeouts(TypedDict, total=False):
    """The deadlines a Redis broker takes as keyword arguments (seconds; ``None``: URL or default)."""

    socket_timeout: float | None
    socket_connect_timeout: float | None


_TIMEOUTS = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT}


def _seconds(name: str, value: str | float, display: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"{name}={value!r} in {display} must be a positive number of seconds")
    return seconds


def _check_database(parts: SplitResult, display: str) -> None:
    # redis-py ignores a path that is not a number and connects to database 0: a typo would put
    # every job in the wrong database without a word.
    if parts.scheme.lower() not in ("redis", "rediss"):
        return
    path = unquote(parts.path).strip("/")
    if path and not (path.isdigit() and path.isascii()):
        raise ConfigurationError(
            f"invalid Redis URL {display!r}: the path must be a database number (redis://host:6379/0)"
        )


def client_from_url(url: str, **timeouts: Unpack[Timeouts]) -> Redis:
    """A client for ``url``; it connects lazily, on first use.

    ``socket_timeout`` and ``socket_connect_timeout`` (seconds) come from the keyword
    arguments, else from the URL's query, else from :data:`SOCKET_TIMEOUT` and
    :data:`CONNECT_TIMEOUT`.
    """
    display = redact_url(url)
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError as exc:
        raise ConfigurationError(f"invalid Redis URL {display!r}: {exc}") from None
    _check_database(parts, display)
    from_query = {k: v for k, v in query if k in _TIMEOUTS}
    options: dict[str, Any] = {}
    for name, default in _TIMEOUTS.items():
        given: float | None = timeouts.get(name)  # type: ignore[assignment]  # (a TypedDict key)
        value: str | float = given if given is not None else from_query.get(name, default)
        options[name] = _seconds(name, value, display)
    given_url = url
    if from_query:
        url = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k not in _TIMEOUTS])))
    try:
        # retry_on_error said explicitly: before redis-py 6 a timeout was not retried by default.
        errors = [rexc.ConnectionError, rexc.TimeoutError]
        client = Redis.from_url(url, retry=_retry(), retry_on_error=errors, **options)
    except ValueError as exc:
        # redis-py's messages may quote parts of the URL: name the redacted URL, not them.
        reason = str(exc)
        password = given_url.partition("://")[2].rpartition("@")[0].partition(":")[2]
        if any(piece in reason for piece in re.split(r"[/?#]", password) if piece):
            reason = "cannot parse it (percent-encode a '/', '?', '#' or '@' in the password)"
        raise ConfigurationError(f"invalid Redis URL {display!r}: {reason}") from None
    pool = client.connection_pool
    pool.connection_class = _WRITE_NOW.get(pool.connection_class, pool.connection_class)
    return client


class _WriteNow(AbstractConnection):
    """Sends a command the socket takes at once without redis-py's write deadline.

    redis-py bounds every write by ``socket_timeout`` with ``asyncio.wait_for``, which on Python
    3.11 runs the write as a task of its own: about 55 us of a single-job publish's ~290 us of
    client CPU. A write can only outlive a deadline when the kernel's socket buffer is full; so
    the bytes are handed to the transport, and only what the socket did not take at once (the
    transport buffers it) is drained under the deadline, with redis-py's errors. A connection
    that is not yet open, or checks its health, takes redis-py's own path.
    """

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        # getattr: should redis-py rename its private writer, its own path is taken.
        writer = getattr(self, "_writer", None)
        if (
            writer is None
            or not self.socket_timeout
            or self.health_check_interval
            or not isinstance(command, list)
            or writer.transport.is_closing()
            or writer.transport.get_write_buffer_size()
        ):
            await super().send_packed_command(command, check_health)
            return
        writer.writelines(command)
        if not writer.transport.get_write_buffer_size():
            return
        try:
            await asyncio.wait_for(writer.drain(), self.socket_timeout)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise rexc.TimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise rexc.ConnectionError(f"Error while writing to socket: {exc}") from exc
        except BaseException:
            await self.disconnect(nowait=True)
            raise


class _WriteNowTCP(_WriteNow, Connection):
    pass


class _WriteNowSSL(_WriteNow, SSLConnection):
    pass


class _WriteNowUnix(_WriteNow, UnixDomainSocketConnection):
    pass


_WRITE_NOW: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _WriteNowTCP,
    SSLConnection: _WriteNowSSL,
    UnixDomainSocketConnection: _WriteNowUnix,
}


def blocking_client(client: Redis) -> Redis:
    """A second client with its own pool for ``BLPOP``.

    A blocked pop holds its connection for the whole wait; a separate pool keeps waits from
    starving other commands, and drops the socket timeout, which would otherwise cut a long
    ``BLPOP`` short (the caller bounds the wait instead).
    """
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": None}
    return Redis.from_pool(ConnectionPool(connection_class=pool.connection_class, **kwargs))


def endpoint(client: Redis) -> str:
    """``host:port`` (or the socket path) of ``client``, for error messages."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    host = str(kwargs.get("host", "localhost"))
    return f"{host}:{kwargs.get('port', 6379)}"


@contextmanager
def translate(where: str, *, connecting: bool = False) -> Iterator[None]:
    """Turn redis-py exceptions into asynctask's; ``connecting`` makes every error "unavailable"."""
    try:
        yield
    except rexc.AuthenticationError as exc:
        raise BrokerUnavailable(
            f"cannot connect to Redis at {where}: authentication failed ({exc})"
        ) from None
    except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
        raise BrokerUnavailable(f"cannot reach Redis at {where}: {exc}") from None
    except rexc.RedisError as exc:
        if connecting:
            raise BrokerUnavailable(f"cannot connect to Redis at {where}: {exc}") from None
        raise BrokerError(f"Redis at {where} failed: {exc}") from exc


async def check_eviction_policy(client: Redis, display_url: str) -> None:
    """Warn if the server may evict keys: an evicted job is a lost job."""
    try:
        config: dict[Any, Any] = await client.config_get("maxmemory-policy")
    except rexc.ResponseError:
        # CONFIG is often disabled or renamed on managed Redis; the check is advisory.
        logger.debug(
            "cannot read maxmemory-policy of %s", display_url, extra={"action": "redis_config_unavailable"}
        )
        return
    policy = config.get(b"maxmemory-policy", config.get("maxmemory-policy"))
    if isinstance(policy, bytes):
        policy = policy.decode()
    if policy and policy != "noeviction":
        logger.warning(
            "Redis at %s has maxmemory-policy %r: it may evict keys under memory pressure, and an "
            "evicted key is a lost job; set maxmemory-policy to noeviction",
            display_url,
            policy,
            extra={"action": "redis_eviction_warning", "policy": policy},
        )
