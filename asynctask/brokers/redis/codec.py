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

import logging
import re
import struct
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from asynctask.brokers.rules import corrupt
from asynctask.errors import ConfigurationError
from asynctask.models import Job, JobStatus, NewJob

__all__ = [
    "decode_job",
    "decode_record",
    "new_job_row",
    "pack",
    "packed",
    "fmt",
    "initial_status",
    "pairs",
    "priority_key",
    "time_key",
]

_HEADERS = msgspec.json.Decoder(dict[str, str])
_STATUS_OF = {status.value.encode(): status for status in JobStatus}
logger = logging.getLogger("asynctask.brokers.redis")
_I64 = 1 << 63


def fmt(value: float) -> str:
    """A float as text that reads back to the same value (in Python, Lua and Redis)."""
    return repr(float(value))


def priority_key(priority: int) -> str:
    """16 hex digits that sort *descending* by priority."""
    key = _PRIORITY_KEYS.get(priority)
    if key is None:
        if not -_I64 < priority < _I64:
            raise ConfigurationError(f"priority must fit in a signed 64-bit integer, got {priority}")
        key = f"{_I64 - 1 - priority:016x}"
        if -_CACHED_PRIORITIES <= priority <= _CACHED_PRIORITIES:
            _PRIORITY_KEYS[priority] = key
    return key


#: Priorities whose keys are kept once made (a bulk publish mostly repeats one or two).
_CACHED_PRIORITIES = 1000
_PRIORITY_KEYS: dict[int, str] = {}
_DOUBLE = struct.Struct(">d")


def time_key(when: float) -> str:
    """16 hex digits that sort ascending by ``when`` (IEEE-754 bits made order-preserving)."""
    # Positive floats sort like their bits once the sign bit is set; negative ones reversed:
    # on the hex digits, the first one plus 8, or every one complemented (half the time of
    # the same on an int; a bulk publish makes one per job).
    digits = _DOUBLE.pack(when).hex()
    first = _SIGN_SET.get(digits[0])
    return digits.translate(_COMPLEMENT) if first is None else first + digits[1:]


_SIGN_SET = {digit: "89abcdef"[int(digit, 16)] for digit in "01234567"}
_COMPLEMENT = str.maketrans("0123456789abcdef", "fedcba9876543210")


def initial_status(job: NewJob, now: float) -> JobStatus:
    """``waiting`` with children pending, else ``scheduled`` or ``queued`` by ``run_at``."""
    if job.pending > 0:
        return JobStatus.WAITING
    return JobStatus.SCHEDULED if job.run_at > now else JobStatus.QUEUED


def _str_header(n: int) -> bytes:
    if n < 32:
        return bytes((0xA0 | n,))
    if n < 0x100:
        return b"\xd9" + bytes((n,))
    if n < 0x10000:
        return b"\xda" + struct.pack(">H", n)
    return b"\xdb" + struct.pack(">I", n)


_SHORT_HEADERS = [_str_header(n) for n in range(0x100)]


def packed(value: bytes) -> msgspec.Raw:
    """``value`` as a msgpack *str*, to embed in :data:`pack`'s output.

    Redis's Lua ``cmsgpack`` reads no msgpack ``bin`` type (what msgspec makes of bytes); it
    reads a ``str`` byte for byte without checking UTF-8, so arbitrary bytes go as one.
    """
    n = len(value)
    return msgspec.Raw((_SHORT_HEADERS[n] if n < 0x100 else _str_header(n)) + value)


#: Packs the compact arguments of the scripts (read in Lua with ``cmsgpack.unpack``).
pack = msgspec.msgpack.Encoder().encode


def new_job_row(job: NewJob, status: JobStatus) -> tuple[Any, ...]:
    """A freshly enqueued job as the Lua ``job_fields`` reads it (one msgpack array, ``None`` for
    an absent optional field); the script writes the hash fields from it, adding ``attempts``,
    ``token`` (``0``) and ``created_at`` (now)::

        id, status, run_at, task, queue, payload, priority, max_retries, pkey, tkey,
        timeout, parent_id, pending, meta, headers, unique_key

    ``pkey``/``tkey`` are kept in the hash so the scripts can rebuild the ready member without
    float formatting in Lua. A job without optional fields (the common one) leaves them out: the
    row ends at ``tkey``, and the Lua reads the missing ones as nil.
    """
    run_at = job.run_at
    head = (
        job.id,
        status,  # (msgspec writes a JobStatus as its value)
        repr(float(run_at)),  # fmt(), inlined
        job.task,
        job.queue,
        packed(job.payload),
        str(job.priority),
        str(job.max_retries),
        priority_key(job.priority),
        time_key(run_at),
    )
    if (
        job.timeout is None
        and job.parent_id is None
        and not job.pending
        and job.meta is None
        and not job.headers
        and job.unique_key is None
    ):
        return head
    return (
        *head,
        None if job.timeout is None else fmt(job.timeout),
        job.parent_id,
        str(job.pending) if job.pending else None,
        None if job.meta is None else packed(job.meta),
        msgspec.json.encode(job.headers).decode() if job.headers else None,
        job.unique_key,
    )


# The forms the Lua checks accept (`integer` and `number` in asynctask.lua): an integer that
# HINCRBY can still add to, and a decimal float that Lua and Python read alike.
_INTEGER = re.compile(rb"-?\d{1,18}")
_NUMBER = re.compile(rb"\s*[-+]?[\d.]+[eE]?[-+]?\d*\s*")


def _matching(pattern: re.Pattern[bytes], parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def check(value: bytes) -> Any:
        if not pattern.fullmatch(value):
            raise ValueError(value)
        return parse(value)

    return check


# What each stored field must be: a description for errors, and its parser.
_INT: tuple[str, Callable[[bytes], Any]] = ("an integer", _matching(_INTEGER, int))
_FLOAT: tuple[str, Callable[[bytes], Any]] = ("a number", _matching(_NUMBER, float))
_TEXT: tuple[str, Callable[[bytes], Any]] = ("UTF-8 text", bytes.decode)
_STATUS: tuple[str, Callable[[bytes], Any]] = ("a job status", lambda v: JobStatus(v.decode()))
_HEADER_MAP: tuple[str, Callable[[bytes], Any]] = ("a JSON object of strings", _HEADERS.decode)
_BYTES: tuple[str, Callable[[bytes], Any]] = ("bytes", bytes)


class _Reader:
    """Reads fields of one record, noting what is wrong instead of raising."""

    def __init__(self, raw: Mapping[bytes, bytes]) -> None:
        self.raw = raw
        self.problems: list[str] = []

    def __call__(self, name: str, kind: tuple[str, Callable[[bytes], Any]], default: Any = None) -> Any:
        value = self.raw.get(name.encode())
        if value is None:
            if default is not None:  # a required field
                self.problems.append(f"field {name} is missing")
            return default
        what, parse = kind
        try:
            return parse(value)
        except (ValueError, TypeError, msgspec.DecodeError):
            self.problems.append(f"field {name} is not {what}")
            return default


def decode_record(raw: Mapping[bytes, bytes], job_id: str = "") -> tuple[Job, str | None]:
    """A :class:`Job` from ``HGETALL`` output, and what is wrong with the record (or ``None``).

    A record that cannot be read whole (see :mod:`asynctask.brokers.rules`) is returned as a
    ``failed`` job carrying ``corrupt job record: <the first problem>`` (or the error it was
    quarantined with), with every field that could be read; ``job_id`` names it if its own
    ``id`` field cannot.
    """
    try:
        return _decode(raw), None
    except (KeyError, ValueError, TypeError):  # msgspec.DecodeError is a ValueError
        pass
    read = _Reader(raw)
    job = Job(
        id=read("id", _TEXT, job_id or "?"),
        task=read("task", _TEXT, "?"),
        queue=read("queue", _TEXT, "?"),
        payload=read("payload", _BYTES, b""),
        status=read("status", _STATUS, JobStatus.FAILED),
        priority=read("priority", _INT, 0),
        attempts=read("attempts", _INT, 0),
        max_retries=read("max_retries", _INT, 0),
        timeout=read("timeout", _FLOAT),
        run_at=read("run_at", _FLOAT, 0.0),
        created_at=read("created_at", _FLOAT, 0.0),
        started_at=read("started_at", _FLOAT),
        finished_at=read("finished_at", _FLOAT),
        lease_expires_at=read("lease_expires_at", _FLOAT),
        token=read("token", _INT, 0),
        error=read("error", _TEXT),
        state=raw.get(b"state"),
        result=raw.get(b"result"),
        expires_at=read("expires_at", _FLOAT),
        cancel_requested=raw.get(b"cancel_requested") == b"1",
        pause_requested=raw.get(b"pause_requested") == b"1",
        parent_id=read("parent_id", _TEXT),
        pending=read("pending", _INT) or 0,
        meta=raw.get(b"meta"),
        headers=read("headers", _HEADER_MAP) or {},
        unique_key=read("unique_key", _TEXT),
    )
    if not read.problems:
        return job, None
    reason = read.problems[0]
    error = job.error if job.error and job.error.startswith(corrupt("")) else corrupt(reason)
    failed = msgspec.structs.replace(job, status=JobStatus.FAILED, error=error, lease_expires_at=None)
    return failed, reason


def _float(raw: Mapping[bytes, bytes], name: bytes) -> float | None:
    value = raw.get(name)
    return None if value is None else float(value)


def _text(raw: Mapping[bytes, bytes], name: bytes) -> str | None:
    value = raw.get(name)
    return None if value is None else value.decode()


def _decode(raw: Mapping[bytes, bytes]) -> Job:
    # The fast path (every sound record): about five times cheaper than the field-by-field
    # reader, which runs only when this one raises. It reads what Python can (an attempts
    # count of 25 digits, say); the scripts quarantine such a record when they meet it.
    return Job(
        id=raw[b"id"].decode(),
        task=raw[b"task"].decode(),
        queue=raw[b"queue"].decode(),
        payload=raw[b"payload"],
        status=_STATUS_OF[raw[b"status"]],
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


def decode_job(raw: Mapping[bytes, bytes], job_id: str = "") -> Job:
    """A :class:`Job` from ``HGETALL`` output (bytes keys and values); a record that cannot be
    read is returned as a failed job (see :func:`decode_record`), and a warning is logged."""
    job, problem = decode_record(raw, job_id)
    if problem is not None:
        logger.warning(
            "job %s has a corrupt record (%s); it reads as failed",
            job.id,
            problem,
            extra={"action": "corrupt_job_record", "job_id": job.id},
        )
    return job


def pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    """``field, value, ...`` as returned by a Lua ``HGETALL`` into a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
