"""The worker registry on NATS: one record per worker in the job bucket, under ``w.<id>``.

A record is the :class:`~asynctask.models.WorkerInfo` as MessagePack, written without a fence
(a worker only ever writes its own) and with a per-message TTL (``Nats-TTL``, on the server's
clock) a minute past its expiry, so the server drops a dead worker's record by itself; reads
leave out records past ``expires_at`` (the injected clock) before that. Listing asks the stream
which worker subjects it holds, then reads each one's last record: a few workers, a few reads.
The job index ignores these keys (they are not ``j.`` keys).
"""

from __future__ import annotations

import msgspec

from asynctask.brokers.nats.client import Connection
from asynctask.brokers.nats.layout import Layout
from asynctask.brokers.nats.store import MARKER_TTL
from asynctask.models import WorkerInfo

__all__ = ["list_live", "record", "remove"]

#: How long past its expiry the server keeps a record (a janitor: reads stop at expires_at).
_TTL_MARGIN = 60
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(WorkerInfo)


async def record(conn: Connection, layout: Layout, info: WorkerInfo, now: float, ttl: float) -> None:
    stamped = msgspec.structs.replace(info, heartbeat_at=now, expires_at=now + ttl)
    headers = {"Nats-TTL": f"{int(ttl) + _TTL_MARGIN}s"}
    await conn.publish(layout.worker_subject(info.id), _encoder.encode(stamped), headers)


async def remove(conn: Connection, layout: Layout, worker_id: str) -> None:
    headers = {"KV-Operation": "PURGE", "Nats-Rollup": "sub", "Nats-TTL": MARKER_TTL}
    await conn.publish(layout.worker_subject(worker_id), b"", headers)


async def list_live(conn: Connection, layout: Layout, now: float) -> list[WorkerInfo]:
    info = await conn.api(f"STREAM.INFO.{layout.stream}", {"subjects_filter": layout.worker_subjects})
    found = []
    for subject in sorted(info.get("state", {}).get("subjects") or {}):
        message = await conn.last(layout.stream, subject)
        if message is None or not message.data or message.headers.get("KV-Operation") in ("DEL", "PURGE"):
            continue
        try:
            worker = _decoder.decode(message.data)
        except msgspec.DecodeError:
            continue  # not a record this version can read
        if worker.expires_at > now:
            found.append(worker)
    return sorted(found, key=lambda w: w.id)
