"""Job records as stored in the bucket: one MessagePack map per job, and what a read returns.

A record is the whole :class:`~asynctask.models.Job` (payload, state and result included), so a
claim or a completion is a single write and a reader never joins two keys. Fields are encoded by
name: a later version may add fields with defaults and still read older records.

A record that cannot be decoded (written by hand, truncated, of another shape) is read by
:func:`read` as a ``failed`` job carrying ``corrupt job record: <what is wrong>`` (see
:mod:`asynctask.brokers.rules`), with every field that could be read: the index then holds it
as failed (out of every claimable set, its lease gone), and ``get`` and listings show it. The
stored bytes are left as they are, for inspection; deleting the job, or retrying it (which
stores the job as read), replaces them.
"""

from __future__ import annotations

import logging
import typing
from typing import Any

import msgspec

from asynctask.brokers.rules import corrupt
from asynctask.models import Job, JobStatus

__all__ = ["Versioned", "decode", "encode", "problem", "read"]

logger = logging.getLogger("asynctask.brokers.nats")
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Job)
_FIELDS = msgspec.structs.fields(Job)
# How an error names what a field must be, by its type.
_KINDS: dict[Any, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bytes: "bytes",
    bool: "a boolean",
    JobStatus: "a job status",
    dict[str, str]: "a map of strings",
}
_DEFAULTS: dict[str, Any] = {
    "id": "?",
    "task": "?",
    "queue": "?",
    "payload": b"",
    "status": JobStatus.FAILED,
    "run_at": 0.0,
    "created_at": 0.0,
}


def encode(job: Job) -> bytes:
    """The stored form of ``job``."""
    return _encoder.encode(job)


def decode(data: bytes) -> Job:
    """A record back as a :class:`Job`; raises :class:`msgspec.DecodeError` if it is not one."""
    return _decoder.decode(data)


def _kind(field: msgspec.structs.FieldInfo) -> str:
    kinds = [k for k in typing.get_args(field.type) if k is not type(None)] or [field.type]
    return _KINDS.get(kinds[0], str(field.type))


def problem(data: bytes) -> tuple[str, dict[str, Any]]:
    """What is wrong with a record :func:`decode` refuses, and the fields that could be read."""
    try:
        raw = msgspec.msgpack.decode(data)
    except msgspec.DecodeError:
        return "the record is not MessagePack", {}
    if not isinstance(raw, dict):
        return "the record is not a map", {}
    good: dict[str, Any] = {}
    reason = None
    for field in _FIELDS:
        if field.encode_name not in raw:
            if field.required and reason is None:
                reason = f"field {field.name} is missing"
            continue
        value = raw[field.encode_name]
        try:
            # convert() takes base64 text for bytes; the decoder (and so a record) does not.
            if isinstance(value, str) and _kind(field) == "bytes":
                raise msgspec.ValidationError
            good[field.name] = msgspec.convert(value, field.type)
        except msgspec.ValidationError:
            reason = reason or f"field {field.name} is not {_kind(field)}"
    return reason or "the record is not a job", good


def read(data: bytes, job_id: str) -> Job:
    """A record as a :class:`Job`; one that cannot be decoded, or a running job without a lease,
    reads as a failed job (see above), logged as a warning. ``job_id`` names it when its own
    ``id`` cannot."""
    try:
        job = _decoder.decode(data)
    except msgspec.DecodeError:
        reason, good = problem(data)
        job = msgspec.convert({**_DEFAULTS, **good, "id": job_id}, Job)
    else:
        if job.status is not JobStatus.RUNNING or job.lease_expires_at is not None:
            return job
        # Nothing would ever rescue it (the lease is what expires), so it would run nowhere.
        reason = "a running job without lease_expires_at"
    logger.warning(
        "job %s has a corrupt record (%s); it reads as failed",
        job_id,
        reason,
        extra={"action": "corrupt_job_record", "job_id": job_id},
    )
    error = job.error if job.error and job.error.startswith(corrupt("")) else corrupt(reason)
    return msgspec.structs.replace(job, status=JobStatus.FAILED, error=error, lease_expires_at=None)


class Versioned(msgspec.Struct, frozen=True):
    """A record read at a revision: ``job`` is ``None`` when the key holds no job.

    ``revision`` is the stream sequence of the key's last message (0 when the key never held
    one, or its delete marker has gone): a write that expects it fails if anything wrote the key
    since. That is the fence of every state change.
    """

    job: Job | None
    revision: int
