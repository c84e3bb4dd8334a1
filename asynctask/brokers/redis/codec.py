"""Job records as Redis hashes, and the sortable encodings behind claim order.

A job is a hash so the Lua scripts can change single fields (status, token, lease) without
decoding a blob. Bytes fields (payload, state, result) are stored raw and round-trip exactly;
floats are written with :func:`repr`, which reads back to the identical value. An absent field
means ``None``.

Claim order (priority DESC, then ``run_at``, then publish order) is one lexicographic string:
``priority_key(priority) + time_key(run_at) + <16 hex digits of a per-queue sequence> + id``,
stored as a member of the ``ready`` zset with score 0. Redis orders equal-score members
bytewise, so no precision is lost to a combined float score (53-bit mantissa).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

import msgspec

from asynctask.errors import ConfigurationError
from asynctask.models import Job, JobStatus, NewJob

__all__ = ["decode_job", "encode_new_job", "fmt", "initial_status", "pairs", "priority_key", "time_key"]

_HEADERS = msgspec.json.Decoder(dict[str, str])
_I64 = 1 << 63
_U64_MASK = (1 << 64) - 1


def fmt(value: float) -> str:
    """A float as text that reads back to the same value (in Python, Lua and Redis)."""
    return repr(float(value))


def priority_key(priority: int) -> str:
    """16 hex digits that sort *descending* by priority."""
    if not -_I64 < priority < _I64:
        raise ConfigurationError(f"priority must fit in a signed 64-bit integer, got {priority}")
    return f"{_I64 - 1 - priority:016x}"


def time_key(when: float) -> str:
    """16 hex digits that sort ascending by ``when`` (IEEE-754 bits made order-preserving)."""
    (bits,) = struct.unpack(">Q", struct.pack(">d", when))
    # Positive floats sort like their bits once the sign bit is set; negative ones reversed.
    bits = bits ^ _U64_MASK if bits >> 63 else bits | _I64
    return f"{bits:016x}"


def initial_status(job: NewJob, now: float) -> JobStatus:
    """``waiting`` with children pending, else ``scheduled`` or ``queued`` by ``run_at``."""
    if job.pending > 0:
        return JobStatus.WAITING
    return JobStatus.SCHEDULED if job.run_at > now else JobStatus.QUEUED


def encode_new_job(job: NewJob, status: JobStatus, now: float) -> list[str | bytes]:
    """The hash fields of a freshly enqueued job, flattened as ``field, value, ...``."""
    fields: list[str | bytes] = [
        "id", job.id,
        "task", job.task,
        "queue", job.queue,
        "payload", job.payload,
        "status", status.value,
        "priority", str(job.priority),
        "attempts", "0",
        "max_retries", str(job.max_retries),
        "run_at", fmt(job.run_at),
        "created_at", fmt(now),
        "token", "0",
        # Kept so the scripts can rebuild the ready member without float formatting in Lua.
        "pkey", priority_key(job.priority),
        "tkey", time_key(job.run_at),
    ]  # fmt: skip
    if job.timeout is not None:
        fields += ["timeout", fmt(job.timeout)]
    if job.parent_id is not None:
        fields += ["parent_id", job.parent_id]
    if job.pending:
        fields += ["pending", str(job.pending)]
    if job.meta is not None:
        fields += ["meta", job.meta]
    if job.headers:
        fields += ["headers", msgspec.json.encode(job.headers)]
    if job.unique_key is not None:
        fields += ["unique_key", job.unique_key]
    return fields


def _float(raw: Mapping[bytes, bytes], name: bytes) -> float | None:
    value = raw.get(name)
    return None if value is None else float(value)


def _text(raw: Mapping[bytes, bytes], name: bytes) -> str | None:
    value = raw.get(name)
    return None if value is None else value.decode()


def decode_job(raw: Mapping[bytes, bytes]) -> Job:
    """A :class:`Job` from ``HGETALL`` output (bytes keys and values)."""
    return Job(
        id=raw[b"id"].decode(),
        task=raw[b"task"].decode(),
        queue=raw[b"queue"].decode(),
        payload=raw[b"payload"],
        status=JobStatus(raw[b"status"].decode()),
        priority=int(raw[b"priority"]),
        attempts=int(raw[b"attempts"]),
        max_retries=int(raw[b"max_retries"]),
        timeout=_float(raw, b"timeout"),
        run_at=float(raw[b"run_at"]),
        created_at=float(raw[b"created_at"]),
        started_at=_float(raw, b"started_at"),
        finished_at=_float(raw, b"finished_at"),
        lease_expires_at=_float(raw, b"lease_expires_at"),
        token=int(raw[b"token"]),
        error=_text(raw, b"error"),
        state=raw.get(b"state"),
        result=raw.get(b"result"),
        expires_at=_float(raw, b"expires_at"),
        cancel_requested=raw.get(b"cancel_requested") == b"1",
        pause_requested=raw.get(b"pause_requested") == b"1",
        parent_id=_text(raw, b"parent_id"),
        pending=int(raw.get(b"pending", b"0")),
        meta=raw.get(b"meta"),
        headers=_HEADERS.decode(raw[b"headers"]) if b"headers" in raw else {},
        unique_key=_text(raw, b"unique_key"),
    )


def pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    """``field, value, ...`` as returned by a Lua ``HGETALL`` into a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
