"""Many independent publishes in flight at once, their acks collected on one subscription.

A claim or a batch of outcomes writes dozens of records, each its own compare-and-set. Awaiting
one request per record costs a future, an inbox and a task each; here every message of a call is
published with a reply subject ``<inbox>.<call>.<n>`` under one wildcard subscription, and the
call waits once for all its acks (the way JetStream clients publish asynchronously).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import anyio
import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from asynctask.errors import BrokerError, BrokerUnavailable

__all__ = ["Acks", "Answer"]

Answer = int | BrokerError
"""A stored message's sequence, or the error that refused it."""


# Every stored write's confirmation is decoded here (two a job): msgspec, ~10x json.loads.
_json = msgspec.json.Decoder(dict[str, object]).decode


class _Call:
    __slots__ = ("answers", "done", "left")

    def __init__(self, size: int) -> None:
        self.answers: list[Answer | None] = [None] * size
        self.left = size
        self.done = anyio.Event()


class Acks:
    """Collects the acks of :meth:`publish_each` calls on one connection."""

    def __init__(self, nc: Client, where: str, parse: Callable[[dict[str, object]], Answer]) -> None:
        self._nc = nc
        self._where = where
        self._parse = parse
        self._prefix = nc.new_inbox()
        self._sub: Subscription | None = None
        self._calls: dict[int, _Call] = {}
        self._ids = itertools.count()

    async def publish_each(
        self, messages: Sequence[tuple[str, bytes, dict[str, str]]], timeout: float
    ) -> list[Answer]:
        """Publish every message; each one's sequence or error, in order.

        Raises :class:`~asynctask.errors.BrokerUnavailable` if some acks are missing after
        ``timeout`` seconds (those messages may or may not have been stored).
        """
        if self._sub is None:
            self._sub = await self._nc.subscribe(f"{self._prefix}.*.*", cb=self._on_ack)
        call_id = next(self._ids)
        call = self._calls[call_id] = _Call(len(messages))
        try:
            for n, (subject, data, headers) in enumerate(messages):
                await self._nc.publish(subject, data, reply=f"{self._prefix}.{call_id}.{n}", headers=headers)
            with anyio.move_on_after(timeout):
                await call.done.wait()
        finally:
            del self._calls[call_id]
        if call.left:
            raise BrokerUnavailable(f"NATS at {self._where} did not answer in time")
        return [a for a in call.answers if a is not None]

    async def _on_ack(self, msg: Msg) -> None:
        _, _, tail = msg.subject.rpartition(self._prefix + ".")
        call_id, _, n = tail.partition(".")
        call = self._calls.get(int(call_id))
        if call is None or call.answers[int(n)] is not None:
            return  # an ack after its call timed out, or a duplicate
        status = msg.headers.get("Status") if msg.headers else None
        if status == "503":
            answer: Answer = BrokerUnavailable(
                f"NATS at {self._where}: JetStream did not answer (not enabled, or no leader right now)"
            )
        else:
            try:
                answer = self._parse(_json(msg.data) if msg.data else {})
            except (ValueError, KeyError) as exc:
                answer = BrokerError(f"NATS at {self._where} sent an unreadable ack: {exc}")
        call.answers[int(n)] = answer
        call.left -= 1
        if not call.left:
            call.done.set()
