"""Feeding the index: an ordered pull consumer on the bucket, checked before each use.

The consumer is ephemeral and in memory (``deliver_policy=last_per_subject``, no acks): first the
latest record of every key (a snapshot), then every change as it is stored. Pull requests wait
on the server, so an idle worker is woken by the change itself, never by polling. Messages are
applied in nats-py's subscription callback; nothing of ours runs in the background.

Anything that breaks the sequence (a consumer sequence gap, a missing heartbeat after a server
restart or a leader change, a reconnect) marks the watch for a reset, done by the next caller of
:meth:`Watch.ensure`: a new consumer and a new snapshot, with the keys it no longer holds dropped
from the index. Until that snapshot is complete, :meth:`Watch.ensure` waits (bounded by the
request timeout), so no decision is ever made on an index that missed changes.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import suppress
from typing import Any

import anyio
import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from asynctask.brokers.nats import flowrecords, records
from asynctask.brokers.nats.client import Connection, translate
from asynctask.brokers.nats.index import Index
from asynctask.brokers.nats.layout import Layout
from asynctask.errors import BrokerError, BrokerUnavailable

__all__ = ["Watch"]

logger = logging.getLogger("asynctask.brokers.nats")

#: Seconds of silence after which the server sends a heartbeat on a waiting pull request.
HEARTBEAT = 1.0
#: Seconds without any message or heartbeat after which the consumer is presumed lost.
STALE_AFTER = 3 * HEARTBEAT + 1.0
_PULL_BATCH = 1000
_PULL_EXPIRES = 20.0
_NS = 1_000_000_000


class Watch:
    """Keeps an :class:`Index` in step with the bucket; see the module docstring."""

    def __init__(self, conn: Connection, layout: Layout, index: Index) -> None:
        self.conn = conn
        self.layout = layout
        self.index = index
        self._sub: Subscription | None = None
        self._consumer: str | None = None
        self._inbox = ""
        self._cseq = 0
        self._budget = 0
        self._seen_at = 0.0
        self._broken = True
        self._synced = anyio.Event()
        self._bound = 0
        self._lock: anyio.Lock | None = None
        self._closed = False
        #: How many times the consumer was rebuilt; for tests and logs.
        self.resets = 0

    def __repr__(self) -> str:
        state = "synced" if self._synced.is_set() and not self._broken else "catching up"
        return f"<Watch {self.layout.bucket} {state} consumer={self._consumer} resets={self.resets}>"

    @property
    def healthy(self) -> bool:
        """Whether changes are arriving (or heartbeats proving that none were stored)."""
        return not self._broken and time.monotonic() - self._seen_at < STALE_AFTER

    def invalidate(self) -> None:
        """Make the next :meth:`ensure` rebuild the consumer (after a reconnect, say)."""
        self._broken = True
        self.index.wake_all()

    async def ensure(self) -> None:
        """Return once the index holds every change stored before this call began, or about so.

        Raises :class:`~asynctask.errors.BrokerUnavailable` when that cannot be done within
        the request timeout (the server is down, the cluster has no leader yet).
        """
        if self._closed:
            raise BrokerError("the NATS broker is closed")
        deadline = time.monotonic() + self.conn.timeout
        while not (self.healthy and self._synced.is_set()):
            if not self.healthy:
                if self._lock is None:
                    self._lock = anyio.Lock()
                async with self._lock:
                    if not self.healthy:
                        await self._reset()
            left = deadline - time.monotonic()
            if left <= 0:
                self._broken = True
                raise BrokerUnavailable(f"NATS at {self.conn.where}: the job index did not catch up in time")
            with anyio.move_on_after(min(left, 0.25)):
                await self._synced.wait()

    async def close(self) -> None:
        """Stop the consumer; the index keeps what it has."""
        self._closed = True
        await self._drop()

    async def _drop(self) -> None:
        sub, self._sub = self._sub, None
        consumer, self._consumer = self._consumer, None
        if sub is not None:
            # The connection may be gone; the server drops the subscription with it then.
            with suppress(nats.errors.Error, OSError):
                await sub.unsubscribe()
        if consumer is not None:
            try:
                with anyio.move_on_after(1.0):
                    await self.conn.api(f"CONSUMER.DELETE.{self.layout.stream}.{consumer}")
            except BrokerError:  # already gone (it is ephemeral and expires by itself)
                pass

    async def _reset(self) -> None:
        await self._drop()
        self._synced = anyio.Event()
        self._broken = False
        self._seen_at = time.monotonic()
        self.resets += 1
        stream = self.layout.stream
        try:
            state = (await self.conn.api(f"STREAM.INFO.{stream}"))["state"]
            self._bound = int(state.get("last_seq", 0))
            self.index.begin_resync()
            self._inbox = self.conn.nc.new_inbox()
            with translate(self.conn.where):
                self._sub = await self.conn.nc.subscribe(self._inbox, cb=self._on_message)
            config: dict[str, Any] = {
                "deliver_policy": "last_per_subject",
                "ack_policy": "none",
                "filter_subject": self.layout.all_subjects,
                "mem_storage": True,
                "num_replicas": 1,
                "inactive_threshold": 60 * _NS,
            }
            info = await self.conn.api(f"CONSUMER.CREATE.{stream}", {"stream_name": stream, "config": config})
            self._consumer = str(info["name"])
            self._cseq = 0
            self._budget = 0
            if int(info.get("num_pending", 0)) == 0:
                self._caught_up(self._bound)
            await self._pull()
        except BaseException:
            self._broken = True
            raise

    async def _pull(self) -> None:
        """Keep a pull request of the consumer waiting on the server."""
        if self._consumer is None or self._budget > _PULL_BATCH // 2:
            return
        request = {
            "batch": _PULL_BATCH,
            "expires": int(_PULL_EXPIRES * _NS),
            "idle_heartbeat": int(HEARTBEAT * _NS),
        }
        self._budget += _PULL_BATCH
        with translate(self.conn.where):
            await self.conn.nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self.layout.stream}.{self._consumer}",
                json.dumps(request).encode(),
                reply=self._inbox,
            )

    def _caught_up(self, last_seq: int) -> None:
        if not self._synced.is_set():
            # Nothing is pending: the index holds every change up to the stream's end, which is
            # at least the last sequence seen (a snapshot skips superseded records).
            self.index.end_resync(max(last_seq, self._bound))
            self.index.advance(max(last_seq, self._bound))
            self._synced.set()

    async def _on_message(self, msg: Msg) -> None:
        self._seen_at = time.monotonic()
        try:
            status = msg.headers.get("Status") if msg.headers else None
            if status is None:
                self._apply(msg)
            elif status == "100":
                last = msg.headers.get("Nats-Last-Consumer") if msg.headers else None
                if last is not None and int(last) != self._cseq:
                    self._break("a heartbeat reported messages this watch did not receive")
            elif status == "408":
                self._budget -= int(msg.headers.get("Nats-Pending-Messages", "0")) if msg.headers else 0
            elif status == "409":
                description = str(msg.headers.get("Description", "")) if msg.headers else ""
                self._budget -= int(msg.headers.get("Nats-Pending-Messages", "0")) if msg.headers else 0
                if "Exceeded" not in description:
                    self._break(f"the consumer reported {description or 'a conflict'}")
            if not self._broken:
                await self._pull()
        except Exception as exc:  # nats-py would swallow it: start over instead
            self._break(f"handling a message failed ({type(exc).__name__}: {exc})")

    def _apply(self, msg: Msg) -> None:
        tokens = msg.reply.split(".")
        # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> (9 tokens), or
        # the 12-token form with a domain and an account hash after "$JS.ACK".
        offset = 2 if len(tokens) >= 12 else 0
        sseq, cseq, pending = (int(tokens[5 + offset]), int(tokens[6 + offset]), int(tokens[8 + offset]))
        if cseq != self._cseq + 1:
            self._break(f"consumer sequence jumped from {self._cseq} to {cseq}")
            return
        self._cseq = cseq
        self._budget -= 1
        key = self.layout.key_of(msg.subject)
        job_id = self.layout.job_id(key) if key is not None else None
        known = self.index.revision(job_id) if job_id is not None else None
        if job_id is not None and (known is None or known < sseq):  # not one of our own writes
            if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
                self.index.apply(job_id, None, sseq)
            else:
                # A record that cannot be decoded is indexed as a failed job (records.read):
                # out of the claimable sets, shown by listings, never blocking its queue.
                self.index.apply(job_id, records.read(msg.data, job_id), sseq)
        elif job_id is not None:
            self.index.seen(job_id)
        elif key is not None and flowrecords.indexed(key):
            deleted = msg.headers is not None and msg.headers.get("KV-Operation") in ("DEL", "PURGE")
            self.index.apply_record(key, None if deleted else flowrecords.decode_flow(msg.data), sseq)
        # Only now: whoever waits for this sequence finds it applied.
        self.index.advance(sseq)
        if pending == 0:
            self._caught_up(sseq)

    def _break(self, why: str) -> None:
        if not self._broken:
            logger.info("job index watch reset: %s", why, extra={"action": "nats_watch_reset"})
        self.invalidate()
