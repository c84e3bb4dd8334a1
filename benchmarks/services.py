"""The servers every workload talks to: addresses, a tiny Redis client, throw-away databases.

Standard library only: this module runs in every peer's venv.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent
PROJECT = ROOT.parent
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: Used to CREATE/DROP a throw-away database per run for peers that keep fixed table names.
POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
#: A nats-server 2.12.1+ with JetStream. ``python -m benchmarks`` starts one on a free loopback
#: port when a NATS system is selected and this is unset (:mod:`benchmarks.nats_server`), and
#: exports its URL here before any driver starts.
NATS_URL = os.environ.get("BENCH_NATS_URL", "nats://127.0.0.1:4222")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def postgres_url_for(database: str) -> str:
    """``POSTGRES_ADMIN_URL`` pointing at another database."""
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def venv_bin(exe: str) -> str:
    """An executable next to the running interpreter (the peer's venv, or the main env)."""
    path = Path(sys.executable).parent / exe
    return str(path) if path.exists() else exe


async def redis_call(*args: str | bytes) -> Any:
    """One Redis command over a fresh connection (a stdlib RESP client, so every venv can clean up)."""
    url = urlsplit(REDIS_URL)
    reader, writer = await asyncio.open_connection(url.hostname or "127.0.0.1", url.port or 6379)
    try:
        db = (url.path or "/0").lstrip("/") or "0"
        commands = [("SELECT", db), args] if db != "0" else [args]
        reply: Any = None
        for command in commands:
            parts = [a.encode() if isinstance(a, str) else a for a in command]
            payload = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
            writer.write(payload)
            await writer.drain()
            reply = await _read_reply(reader)
        return reply
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _read_reply(reader: asyncio.StreamReader) -> Any:
    line = (await reader.readline())[:-2]
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b":"):
        return int(rest) if kind == b":" else rest
    if kind == b"-":
        raise RuntimeError(rest.decode(errors="replace"))
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else (await reader.readexactly(size + 2))[:-2]
    if kind == b"*":
        return [await _read_reply(reader) for _ in range(max(int(rest), 0))]
    raise RuntimeError(f"unexpected Redis reply {line!r}")


async def redis_delete_matching(pattern: str) -> int:
    """Delete every key matching ``pattern`` (SCAN + UNLINK); returns how many."""
    cursor, deleted = b"0", 0
    while True:
        cursor, keys = await redis_call("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
        if keys:
            deleted += await redis_call("UNLINK", *keys)
        if cursor == b"0":
            return deleted


def psql(database: str, sql: str) -> None:
    """Run one statement with ``psql`` (admin work: CREATE/DROP DATABASE)."""
    subprocess.run(
        ["psql", postgres_url_for(database), "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"},
    )


def create_database(name: str) -> str:
    """Create a throw-away database; returns its URL."""
    admin_db = urlsplit(POSTGRES_ADMIN_URL).path.lstrip("/") or "postgres"
    psql(admin_db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(admin_db, f'CREATE DATABASE "{name}"')
    return postgres_url_for(name)


def drop_database(name: str) -> None:
    admin_db = urlsplit(POSTGRES_ADMIN_URL).path.lstrip("/") or "postgres"
    psql(admin_db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
