"""Flow-control records in the job bucket: a queue's settings and bucket, a task's bucket, a
unique key's holder.

* ``q.<queue>``: a :class:`FlowRecord` with the queue's :class:`~asynctask.flow.QueueSettings`
  and its token bucket. Once written it is never deleted (setting a queue back to the defaults
  rewrites it), so a claim that finds it in the index always checks it under compare-and-set.
* ``t.<task>``: a :class:`FlowRecord` holding only the task's token bucket; the task's limits
  travel with each claim.
* ``u.<key>``: a :class:`UniqueRecord` naming the job that took the key last. It is not deleted
  when that job finishes: whoever wants the key reads the named job and finds it finished,
  expired or gone (a lazy release). Every write that makes a keyed job unfinished (a publish, a
  spawn, a retry) writes this record under its revision in the same atomic batch, so two of them
  can never both take the key.

Queue and task records are kept in the broker's index (:meth:`Index.apply_record
<asynctask.brokers.nats.index.Index.apply_record>`, fed by the watch) because every limited claim
reads them; unique records are read from the server when needed and never indexed.
"""

from __future__ import annotations

import msgspec

from asynctask.brokers.nats.layout import QUEUE_PREFIX, TASK_PREFIX
from asynctask.flow import QueueSettings, RateLimit

__all__ = ["FlowRecord", "UniqueRecord", "decode_flow", "decode_unique", "encode", "indexed"]

_encoder = msgspec.msgpack.Encoder()


class FlowRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A queue's settings and token bucket (a task's record uses the bucket only).

    ``tokens``/``refilled_at`` are ``None`` for a bucket never used (a full one).
    """

    paused: bool = False
    concurrency: int | None = None
    rate_count: int | None = None
    rate_per: float | None = None
    rate_burst: int | None = None
    tokens: float | None = None
    refilled_at: float | None = None

    @property
    def rate(self) -> RateLimit | None:
        if self.rate_count is None or self.rate_per is None or self.rate_burst is None:
            return None
        return RateLimit(self.rate_count, per=self.rate_per, burst=self.rate_burst)

    @property
    def settings(self) -> QueueSettings:
        return QueueSettings(paused=self.paused, concurrency=self.concurrency, rate=self.rate)

    def with_settings(self, settings: QueueSettings) -> FlowRecord:
        """This record with ``settings``; a changed rate starts with a full bucket."""
        rate = settings.rate
        changed = rate != self.rate
        return FlowRecord(
            paused=settings.paused,
            concurrency=settings.concurrency,
            rate_count=None if rate is None else rate.count,
            rate_per=None if rate is None else rate.per,
            rate_burst=None if rate is None else rate.burst,
            tokens=None if changed else self.tokens,
            refilled_at=None if changed else self.refilled_at,
        )

    def spent(self, tokens: float, now: float) -> FlowRecord:
        """This record with its bucket left holding ``tokens`` at ``now``."""
        return msgspec.structs.replace(self, tokens=tokens, refilled_at=now)


class UniqueRecord(msgspec.Struct, frozen=True):
    """The job that took a unique key last (it holds the key while it is unfinished)."""

    job_id: str


_flow = msgspec.msgpack.Decoder(FlowRecord)
_unique_decoder = msgspec.msgpack.Decoder(UniqueRecord)


def encode(record: FlowRecord | UniqueRecord) -> bytes:
    return _encoder.encode(record)


def decode_flow(data: bytes) -> FlowRecord | None:
    """A flow record, or ``None`` for one this version cannot read (treated as absent)."""
    try:
        return _flow.decode(data)
    except msgspec.DecodeError:
        return None


def decode_unique(data: bytes) -> UniqueRecord | None:
    try:
        return _unique_decoder.decode(data)
    except msgspec.DecodeError:
        return None


def indexed(key: str) -> bool:
    """Whether the index keeps the record of ``key`` (queue and task records)."""
    return key.startswith((QUEUE_PREFIX, TASK_PREFIX))
