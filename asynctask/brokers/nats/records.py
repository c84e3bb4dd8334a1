"""Job records as stored in the bucket: one MessagePack map per job, and what a read returns.

A record is the whole :class:`~asynctask.models.Job` (payload, state and result included), so a
claim or a completion is a single write and a reader never joins two keys. Fields are encoded by
name: a later version may add fields with defaults and still read older records.
"""

from __future__ import annotations

import msgspec

from asynctask.models import Job

__all__ = ["Versioned", "decode", "encode"]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Job)


def encode(job: Job) -> bytes:
    """The stored form of ``job``."""
    return _encoder.encode(job)


def decode(data: bytes) -> Job:
    """A record back as a :class:`Job`; raises :class:`msgspec.DecodeError` if it is not one."""
    return _decoder.decode(data)


class Versioned(msgspec.Struct, frozen=True):
    """A record read at a revision: ``job`` is ``None`` when the key holds no job.

    ``revision`` is the stream sequence of the key's last message (0 when the key never held
    one, or its delete marker has gone): a write that expects it fails if anything wrote the key
    since. That is the fence of every state change.
    """

    job: Job | None
    revision: int
