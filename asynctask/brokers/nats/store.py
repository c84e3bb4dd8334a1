"""The job bucket on the server: creating it, reading records, and fenced writes.

The bucket is a JetStream key-value bucket (``KV_<prefix>_jobs``, one revision kept per key)
with two settings beyond the usual: ``allow_atomic`` (atomic batches, nats-server 2.12+) so one
change can span a job, its children and its parent, and ``allow_msg_ttl`` so delete markers
clean themselves up. Every write carries the revision it expects
(``Nats-Expected-Last-Subject-Sequence``); a batch is stored whole or not at all.

Reads go to the stream's leader (``STREAM.MSG.GET``), not to the ``DIRECT.GET`` replicas: a
follower may lag, and a job just published must be readable at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import anyio
import msgspec

from asynctask.brokers.nats import records
from asynctask.brokers.nats.client import MAX_BATCH, Answer, Connection, Message, StoredMessage
from asynctask.brokers.nats.layout import Layout
from asynctask.brokers.nats.records import Versioned
from asynctask.errors import BrokerError, PayloadTooLarge
from asynctask.models import Job

__all__ = ["MARKER_TTL", "Put", "Store", "Write", "decode_message"]

logger = logging.getLogger("asynctask.brokers.nats")

#: How long a delete marker stays: long enough for every watcher to see it.
MARKER_TTL = "10m"
#: Room kept for the subject and headers of a write within the server's max_payload.
_HEADROOM = 1024
#: Reads or single writes in flight at once for one call.
_CONCURRENCY = 256
_KV_OPERATION = "KV-Operation"
_REQUIRED = {"allow_atomic": True, "allow_msg_ttl": True, "allow_rollup_hdrs": True}


class Write(msgspec.Struct, frozen=True):
    """Store ``job`` (``None``: delete it) under its id, if the key is still at ``expected``."""

    job_id: str
    job: Job | None
    expected: int


class Put(msgspec.Struct, frozen=True):
    """Store ``data`` under the bucket key ``key`` (a flow record), if it is still at ``expected``.

    ``value`` is the decoded record, handed to the index once the write is stored.
    """

    key: str
    data: bytes
    expected: int
    value: Any = None


def decode_message(job_id: str, message: StoredMessage) -> Versioned:
    """A stored message as a record: a delete marker reads as no job, a record that cannot be
    decoded as a failed job (see :func:`~asynctask.brokers.nats.records.read`)."""
    if message.headers.get(_KV_OPERATION) in ("DEL", "PURGE"):
        return Versioned(None, message.seq)
    return Versioned(records.read(message.data, job_id), message.seq)


class Store:
    """Reads and fenced writes of job records in one bucket."""

    def __init__(self, conn: Connection, layout: Layout, *, replicas: int = 1) -> None:
        self.conn = conn
        self.layout = layout
        self.replicas = replicas

    def __repr__(self) -> str:
        return f"<Store {self.layout.bucket} on {self.conn.where}>"

    # --- the bucket ---------------------------------------------------------------------------

    def stream_config(self) -> dict[str, Any]:
        """The configuration of the bucket's stream, as JetStream's API takes it."""
        layout = self.layout
        return {
            "name": layout.stream,
            "description": f"asynctask job records ({layout.prefix})",
            "subjects": [layout.all_subjects],
            "retention": "limits",
            "max_msgs_per_subject": 1,
            "max_msgs": -1,
            "max_bytes": -1,
            "max_age": 0,
            "max_msg_size": -1,
            # A full bucket refuses new records rather than dropping old ones.
            "discard": "new",
            "storage": "file",
            "num_replicas": self.replicas,
            "duplicate_window": 120_000_000_000,
            "deny_delete": True,
            "deny_purge": False,
            "allow_direct": True,
            **_REQUIRED,
        }

    async def ensure(self) -> None:
        """Create the bucket if it is missing; turn on what the broker needs if it is not."""
        stream = self.layout.stream
        info = await self._info()
        if info is None:
            try:
                await self.conn.api(f"STREAM.CREATE.{stream}", self.stream_config())
            except BrokerError:
                # Several workers starting at once race to create it: one wins, the others
                # find it made. Any other failure stands.
                info = await self._info()
                if info is None:
                    raise
            else:
                logger.info(
                    "created the job bucket %s (%d replica(s))",
                    self.layout.bucket,
                    self.replicas,
                    extra={"action": "nats_bucket_created"},
                )
                return
        config = info["config"]
        if config.get("max_msgs_per_subject") != 1:
            raise BrokerError(
                f"the stream {stream} keeps {config.get('max_msgs_per_subject')} revisions per key; "
                "the asynctask job bucket keeps exactly 1"
            )
        missing = {k: v for k, v in _REQUIRED.items() if config.get(k) != v}
        if missing:
            await self.conn.api(f"STREAM.UPDATE.{stream}", {**config, **missing})
            logger.info(
                "enabled %s on the job bucket %s",
                ", ".join(sorted(missing)),
                self.layout.bucket,
                extra={"action": "nats_bucket_updated"},
            )

    async def _info(self) -> dict[str, Any] | None:
        try:
            return await self.conn.api(f"STREAM.INFO.{self.layout.stream}")
        except BrokerError as exc:
            if "stream not found" in str(exc):
                return None
            raise

    async def drop(self) -> None:
        """Delete the bucket and every record in it (tests, tear-down)."""
        try:
            await self.conn.api(f"STREAM.DELETE.{self.layout.stream}")
        except BrokerError as exc:
            if "stream not found" not in str(exc):
                raise

    # --- reads --------------------------------------------------------------------------------

    async def read(self, job_id: str) -> Versioned:
        """The record of ``job_id`` as stored now (``Versioned(None, 0)`` if there is none)."""
        message = await self.conn.last(self.layout.stream, self.layout.subject(job_id))
        return Versioned(None, 0) if message is None else decode_message(job_id, message)

    async def read_record(self, key: str) -> tuple[bytes | None, int]:
        """The data of a non-job key as stored now, and its revision (``(None, 0)``: none)."""
        message = await self.conn.last(self.layout.stream, self.layout.record_subject(key))
        if message is None:
            return None, 0
        if message.headers.get(_KV_OPERATION) in ("DEL", "PURGE"):
            return None, message.seq
        return message.data, message.seq

    async def read_many(self, job_ids: Sequence[str]) -> dict[str, Versioned]:
        """Several records, read concurrently."""
        found: dict[str, Versioned] = {}
        limiter = anyio.Semaphore(_CONCURRENCY)

        async def one(job_id: str) -> None:
            async with limiter:
                found[job_id] = await self.read(job_id)

        async with anyio.create_task_group() as tg:
            for job_id in dict.fromkeys(job_ids):
                tg.start_soon(one, job_id)
        return found

    # --- writes -------------------------------------------------------------------------------

    @property
    def record_limit(self) -> int:
        """The largest encoded record the server accepts, in bytes."""
        return self.conn.max_payload - _HEADROOM

    def message(self, write: Write | Put) -> Message:
        """The message that performs ``write``."""
        headers = {"Nats-Expected-Last-Subject-Sequence": str(write.expected)}
        if isinstance(write, Put):
            return self.layout.record_subject(write.key), write.data, headers
        subject = self.layout.subject(write.job_id)
        if write.job is None:
            headers.update({_KV_OPERATION: "PURGE", "Nats-Rollup": "sub", "Nats-TTL": MARKER_TTL})
            return subject, b"", headers
        data = records.encode(write.job)
        if len(data) > self.record_limit:
            raise PayloadTooLarge(
                f"the record of job {write.job_id!r} is {len(data)} bytes; the NATS server accepts "
                f"{self.conn.max_payload} (raise max_payload in the server's configuration)"
            )
        return subject, data, headers

    async def purge_record(self, key: str, expected: int) -> int:
        """Delete a non-job record if it is still at revision ``expected`` (a marker that expires)."""
        headers = {
            "Nats-Expected-Last-Subject-Sequence": str(expected),
            _KV_OPERATION: "PURGE",
            "Nats-Rollup": "sub",
            "Nats-TTL": MARKER_TTL,
        }
        return await self.conn.publish(self.layout.record_subject(key), b"", headers)

    async def write_each(self, writes: Sequence[Write | Put]) -> list[Answer]:
        """Apply ``writes`` independently, all in flight at once: for each, its revision, or the
        error that refused it (:class:`~asynctask.brokers.nats.client.Conflict` if its key moved)."""
        return await self.conn.publish_each([self.message(w) for w in writes])

    async def write(self, writes: Sequence[Write | Put]) -> list[int]:
        """Apply ``writes`` all together (one atomic batch) or not at all; returns their revisions.

        Raises :class:`~asynctask.brokers.nats.client.Conflict` if any key moved from its
        expected revision. A delete cannot share a batch with other writes.
        """
        if not writes:
            return []
        if len(writes) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} records change atomically, not {len(writes)}")
        messages = [self.message(w) for w in writes]
        if len(messages) > 1 and any(isinstance(w, Write) and w.job is None for w in writes):
            raise ValueError("a delete is written on its own, not in a batch")
        last = await self.conn.publish_batch(messages)
        first = last - len(messages) + 1
        return list(range(first, last + 1))
