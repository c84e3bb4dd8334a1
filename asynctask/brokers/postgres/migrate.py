"""Applying the numbered migrations, and checking that a schema is up to date.

Migrations are forward-only and run in one transaction under a transaction-scoped advisory lock
keyed on the schema name, so any number of processes may call :func:`apply_migrations` at once:
the first applies what is missing, the others wait and then find nothing to do.
"""

from __future__ import annotations

import hashlib
from typing import Any

from asynctask.brokers.base import Clock, Migration
from asynctask.brokers.postgres import sql

__all__ = ["advisory_key", "apply_migrations", "schema_version"]


def advisory_key(schema: str) -> int:
    """A stable signed 64-bit advisory lock key for migrating ``schema``."""
    digest = hashlib.blake2b(f"asynctask.migrate.{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def apply_migrations(conn: Any, schema: str, clock: Clock) -> Migration:
    """Apply every migration ``schema`` lacks, on asyncpg connection ``conn``; says what it did."""
    q = sql.queries(schema)
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute(q["migration_lock"], advisory_key(schema))
        await conn.execute(q["create_schema"])
        await conn.execute(q["create_migrations_table"])
        done = {row["version"] for row in await conn.fetch(q["applied_migrations"])}
        for migration in sql.migrations(schema):
            if migration.version in done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(q["record_migration"], migration.version, migration.name, clock())
            applied.append(migration.version)
    before = max(done) if done else None
    return Migration(before=before, after=max([*done, *applied]))


async def schema_version(conn: Any, schema: str) -> int | None:
    """The version ``schema`` is at, or ``None`` when it was never migrated."""
    version: int | None = await conn.fetchval(sql.queries(schema)["schema_version"])
    return version
