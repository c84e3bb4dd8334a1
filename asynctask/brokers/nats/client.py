"""The boundary with nats-py: one connection, JetStream requests, and errors translated.

Nothing outside this module touches a nats-py exception: they become
:class:`~asynctask.errors.BrokerUnavailable` (no server, a timeout, a cluster without a leader
for a moment) or :class:`~asynctask.errors.BrokerError` (anything the server rejects), and a
failed compare-and-set becomes :class:`Conflict`, which callers handle by reading again.

Every round trip has a deadline (``request_timeout``). The connection reconnects by itself for
ever once it is up (nats-py keeps subscriptions across reconnects); the first connect gives up
after a few attempts so a wrong URL fails fast with the host in the message.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from asynctask.brokers import require
from asynctask.brokers.nats.acks import Acks, Answer
from asynctask.brokers.nats.config import NatsConfig
from asynctask.errors import BrokerError, BrokerUnavailable, ConfigurationError

__all__ = ["Answer", "Conflict", "Connection", "Message", "StoredMessage", "parse_headers"]

logger = logging.getLogger("asynctask.brokers.nats")

#: The server's error codes for a failed ``Nats-Expected-Last-Subject-Sequence`` check: a single
#: server names the sequence it found (10071), a clustered stream does not (10164).
_WRONG_LAST_SEQUENCE = frozenset({10071, 10164})
#: Atomic batches (the heart of multi-record changes) arrived in nats-server 2.12; 2.12.0 fails
#: every expected-sequence check inside a batch.
MIN_SERVER = (2, 12, 1)
#: Most messages one atomic batch may hold (a server limit).
MAX_BATCH = 1000

Message = tuple[str, bytes, dict[str, str]]
"""A message to publish: subject, data, headers."""


class Conflict(BrokerError):
    """A compare-and-set failed: the record changed since it was read."""


class StoredMessage:
    """A message read back from a stream: its sequence, headers and data."""

    __slots__ = ("data", "headers", "seq", "subject")

    def __init__(self, subject: str, seq: int, headers: dict[str, str], data: bytes) -> None:
        self.subject, self.seq, self.headers, self.data = subject, seq, headers, data


def parse_headers(raw: bytes) -> dict[str, str]:
    """Headers of a ``NATS/1.0`` header block (as stream message reads return it)."""
    headers: dict[str, str] = {}
    for line in raw.decode(errors="replace").split("\r\n")[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip()] = value.strip()
    return headers


@contextmanager
def translate(where: str) -> Iterator[None]:
    """Turn nats-py exceptions into asynctask's."""
    try:
        yield
    except nats.errors.NoRespondersError:
        raise BrokerUnavailable(
            f"NATS at {where}: JetStream did not answer (not enabled, or no leader right now)"
        ) from None
    except (TimeoutError, nats.errors.TimeoutError):
        raise BrokerUnavailable(f"NATS at {where} did not answer in time") from None
    except (nats.errors.Error, OSError) as exc:
        raise BrokerUnavailable(
            f"cannot reach NATS at {where}: {type(exc).__name__} {exc}".rstrip()
        ) from None


class Connection:
    """A nats-py client plus the JetStream calls the broker makes."""

    def __init__(self, config: NatsConfig) -> None:
        self.config = config
        self.where = config.where
        self.timeout = config.request_timeout
        self._nc: Client | None = None
        self._closing = False
        self._acks: Acks | None = None
        #: Called after every reconnect (the index's watch must start over).
        self.on_reconnect: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.where} {'open' if self._nc is not None else 'closed'}>"

    @property
    def nc(self) -> Client:
        """The nats-py client; raises when the broker is not open."""
        if self._nc is None:
            raise BrokerError(f"the NATS broker for {self.config.display_url} is not open")
        return self._nc

    @property
    def max_payload(self) -> int:
        """The largest message the server accepts, in bytes."""
        return int(self.nc.max_payload)

    async def connect(self) -> None:
        """Connect and check the server; raises :class:`BrokerUnavailable` naming the hosts."""
        config = self.config
        options: dict[str, Any] = {
            "servers": config.servers,
            "name": config.name,
            "connect_timeout": config.connect_timeout,
            "reconnect_time_wait": 0.5,
            # A few attempts at first, so a wrong URL fails fast; for ever once connected.
            "max_reconnect_attempts": 2,
            # A half-open connection is noticed within ~15 s instead of nats-py's 4 minutes.
            "ping_interval": 5,
            "max_outstanding_pings": 3,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnect,
            "reconnected_cb": self._on_reconnect,
        }
        if config.user is not None:
            options["user"], options["password"] = config.user, config.password
        if config.token is not None:
            options["token"] = config.token
        options.update(_credential_files(config))
        try:
            tls = config.ssl_context()
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot load the TLS files of {config.display_url}: {exc}") from None
        if tls is not None:
            options["tls"] = tls
        try:
            nc = await nats.connect(**options)
        except nats.errors.NoServersError:
            raise BrokerUnavailable(f"cannot connect to NATS at {self.where}") from None
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise BrokerUnavailable(f"cannot connect to NATS at {self.where}: {exc}") from None
        nc.options["max_reconnect_attempts"] = -1
        self._nc = nc
        self._acks = None
        self._closing = False
        version = _version(nc)
        if version < MIN_SERVER:
            await self.close()
            wanted = ".".join(map(str, MIN_SERVER))
            raise ConfigurationError(
                f"NATS server at {self.where} is {'.'.join(map(str, version))}; the NATS broker needs "
                f"{wanted} or later (atomic batches)"
            )
        if not nc._server_info.get("jetstream"):
            await self.close()
            raise ConfigurationError(
                f"NATS server at {self.where} has JetStream disabled (start it with -js)"
            )

    async def close(self) -> None:
        """Disconnect; safe to call twice."""
        nc, self._nc = self._nc, None
        self._closing = True
        if nc is not None:
            with suppress(nats.errors.Error, OSError):  # already gone: nothing to flush
                await nc.close()

    async def _on_error(self, exc: Exception) -> None:
        logger.debug("NATS connection error: %s", exc, extra={"action": "nats_error"})

    async def _on_disconnect(self) -> None:
        if self._closing:
            return
        logger.warning(
            "lost the connection to NATS at %s; reconnecting",
            self.where,
            extra={"action": "nats_disconnected"},
        )

    async def _on_reconnect(self) -> None:
        url = self._nc.connected_url if self._nc is not None else None
        # A ParseResult (older nats-py: a string); the user info is never shown.
        where = getattr(url, "netloc", None) or str(url or self.where)
        where = where.rpartition("@")[2]
        logger.warning("reconnected to NATS at %s", where, extra={"action": "nats_reconnected"})
        if self.on_reconnect is not None:
            self.on_reconnect()

    # --- requests -----------------------------------------------------------------------------

    async def api(self, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JetStream API request (``$JS.API.<subject>``); server errors raise."""
        with translate(self.where):
            reply = await self.nc.request(
                f"$JS.API.{subject}",
                json.dumps(body).encode() if body is not None else b"",
                timeout=self.timeout,
            )
        answer: dict[str, Any] = json.loads(reply.data)
        _raise_for(answer, f"JetStream {subject.split('.')[0].lower()} request", self.where)
        return answer

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> int:
        """Publish into a stream and wait for its ack; returns the message's sequence."""
        with translate(self.where):
            reply = await self.nc.request(subject, data, timeout=self.timeout, headers=headers)
        return _sequence(reply, self.where)

    async def publish_each(self, messages: Sequence[Message]) -> list[Answer]:
        """Publish messages independently, all in flight at once: each one's sequence, or the
        error that refused it (:class:`Conflict` for a failed expected-sequence check)."""
        if not messages:
            return []
        if self._acks is None:
            self._acks = Acks(self.nc, self.where, partial(_answer, self.where))
        with translate(self.where):
            return await self._acks.publish_each(messages, self.timeout)

    async def publish_batch(self, messages: Sequence[Message]) -> int:
        """Store ``messages`` atomically (all or none); returns the last one's sequence.

        Every message but the last is sent without waiting; the server holds them until the
        last one commits the batch, checking each message's expected sequence then.
        """
        if not 0 < len(messages) <= MAX_BATCH:
            raise ValueError(f"an atomic batch holds 1 to {MAX_BATCH} messages, not {len(messages)}")
        if len(messages) == 1:
            [(subject, data, headers)] = messages
            return await self.publish(subject, data, headers)
        batch = uuid.uuid4().hex
        nc = self.nc
        with translate(self.where):
            for n, (subject, data, headers) in enumerate(messages[:-1], start=1):
                await nc.publish(
                    subject, data, headers={**headers, "Nats-Batch-Id": batch, "Nats-Batch-Sequence": str(n)}
                )
            subject, data, headers = messages[-1]
            last = {
                **headers,
                "Nats-Batch-Id": batch,
                "Nats-Batch-Sequence": str(len(messages)),
                "Nats-Batch-Commit": "1",
            }
            reply = await nc.request(subject, data, timeout=self.timeout, headers=last)
        return _sequence(reply, self.where)

    async def last(self, stream: str, subject: str) -> StoredMessage | None:
        """The last message of ``subject`` in ``stream``, read from the stream's leader."""
        with translate(self.where):
            reply = await self.nc.request(
                f"$JS.API.STREAM.MSG.GET.{stream}",
                json.dumps({"last_by_subj": subject}).encode(),
                timeout=self.timeout,
            )
        answer = json.loads(reply.data)
        error = answer.get("error")
        if error is not None and error.get("code") == 404 and error.get("err_code") == 10037:
            return None  # no message on the subject
        _raise_for(answer, "reading a record", self.where)
        msg = answer["message"]
        raw_headers = msg.get("hdrs")
        return StoredMessage(
            msg["subject"],
            int(msg["seq"]),
            parse_headers(base64.b64decode(raw_headers)) if raw_headers else {},
            base64.b64decode(msg.get("data") or b""),
        )


def _credential_files(config: NatsConfig) -> dict[str, str]:
    """nats-py's options for a credentials file or an NKey seed file, checked to exist."""
    options = {}
    for path, option in ((config.creds, "user_credentials"), (config.nkey, "nkeys_seed")):
        if path is None:
            continue
        if not Path(path).is_file():
            raise ConfigurationError(f"the NATS credentials file {path!r} does not exist")
        require("nkeys", "nats")  # nats-py signs with it, and imports it only when connecting
        options[option] = path
    return options


def _version(nc: Client) -> tuple[int, ...]:
    raw = str(nc._server_info.get("version", "0.0.0"))
    numbers = []
    for part in raw.split("-")[0].split(".")[:3]:
        numbers.append(int(part) if part.isdigit() else 0)
    return tuple(numbers)


def _answer(where: str, ack: dict[str, Any]) -> Answer:
    try:
        _raise_for(ack, "publishing", where)
    except BrokerError as exc:
        return exc
    return int(ack["seq"])


def _sequence(reply: Msg, where: str) -> int:
    answer = json.loads(reply.data) if reply.data else {}
    _raise_for(answer, "publishing", where)
    return int(answer["seq"])


def _raise_for(answer: dict[str, Any], doing: str, where: str) -> None:
    error = answer.get("error")
    if error is None:
        return
    code, err_code, text = error.get("code"), error.get("err_code"), error.get("description", "")
    if err_code in _WRONG_LAST_SEQUENCE or text.startswith("wrong last sequence"):
        raise Conflict(text)
    if code == 503:
        raise BrokerUnavailable(f"NATS at {where} could not serve {doing} right now: {text}")
    raise BrokerError(f"NATS at {where} rejected {doing}: {text} (code {code}/{err_code})")
