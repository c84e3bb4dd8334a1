"""Migrations: they build exactly schema.sql, run once under concurrency, and gate open()."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from asynctask.brokers.base import Migration
from asynctask.brokers.postgres import PostgresBroker
from asynctask.brokers.postgres import sql as pgsql
from asynctask.errors import InvalidName, SchemaOutdated
from asynctask.testing import FakeClock
from tests.backend_postgres import URL, drop_schema, fresh_schema

pytestmark = pytest.mark.anyio

# Introspection of one schema, with the schema's own name masked so two schemas compare equal.
COLUMNS = """
SELECT table_name, column_name, ordinal_position, data_type, is_nullable,
       replace(coalesce(column_default, ''), $1, 'S') AS column_default
FROM information_schema.columns WHERE table_schema = $1
ORDER BY table_name, ordinal_position
"""
CONSTRAINTS = """
SELECT rel.relname, con.conname, con.contype, pg_get_constraintdef(con.oid) AS def
FROM pg_constraint con
JOIN pg_class rel ON rel.oid = con.conrelid
JOIN pg_namespace ns ON ns.oid = rel.relnamespace
WHERE ns.nspname = $1
ORDER BY rel.relname, con.conname
"""
INDEXES = """
SELECT tablename, indexname, replace(indexdef, $1, 'S') AS def
FROM pg_indexes WHERE schemaname = $1 ORDER BY tablename, indexname
"""
RELATIONS = """
SELECT c.relname, c.relkind, coalesce(c.reloptions, '{}') AS reloptions
FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
WHERE ns.nspname = $1 ORDER BY c.relname
"""
ROUTINES = """
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args
FROM pg_proc p JOIN pg_namespace ns ON ns.oid = p.pronamespace
WHERE ns.nspname = $1 ORDER BY 1, 2
"""


async def describe(conn: Any, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    described = {}
    for name, query in [
        ("columns", COLUMNS),
        ("constraints", CONSTRAINTS),
        ("indexes", INDEXES),
        ("relations", RELATIONS),
        ("routines", ROUTINES),
    ]:
        rows = [tuple(r) for r in await conn.fetch(query, schema)]
        # The bookkeeping table belongs to the migrator, not to the schema it builds.
        described[name] = [r for r in rows if not str(r[0]).startswith("migrations")]
    return described


async def test_migrations_build_exactly_the_reference_schema(admin: Any, clock: FakeClock) -> None:
    migrated, reference = fresh_schema(), fresh_schema()
    try:
        done = await PostgresBroker(URL, schema=migrated, clock=clock).migrate()
        assert done == Migration(before=None, after=pgsql.latest_version())
        assert done.describe() == f"schema created (version {pgsql.latest_version()})"
        async with admin.transaction():
            await admin.execute(pgsql.queries(reference)["create_schema"])
            await admin.execute(pgsql.reference_schema(reference))
        got, want = await describe(admin, migrated), await describe(admin, reference)
        assert got["columns"], "introspection found nothing: wrong schema name?"
        assert got == want
    finally:
        await drop_schema(migrated)
        await drop_schema(reference)


async def test_migrate_is_idempotent_and_safe_to_run_concurrently(clock: FakeClock) -> None:
    schema = fresh_schema()
    results: list[Migration] = []

    async def migrate() -> None:
        results.append(await PostgresBroker(URL, schema=schema, clock=clock).migrate())

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(migrate)
        latest = pgsql.latest_version()
        created, current = Migration(before=None, after=latest), Migration(before=latest, after=latest)
        assert sorted(results, key=lambda m: m.before or 0) == [created, current, current, current]
        assert await PostgresBroker(URL, schema=schema, clock=clock).migrate() == current
    finally:
        await drop_schema(schema)


async def test_missing_schema_is_reported_as_outdated(clock: FakeClock) -> None:
    schema = fresh_schema()
    broker = PostgresBroker(URL, schema=schema, clock=clock)
    with pytest.raises(SchemaOutdated, match="asynctask migrate") as caught:
        await broker.open()
    assert schema in str(caught.value) and "does not exist" in str(caught.value)
    await broker.close()


async def test_older_schema_is_reported_as_outdated(admin: Any, clock: FakeClock) -> None:
    schema = fresh_schema()
    try:
        await PostgresBroker(URL, schema=schema, clock=clock).migrate()
        await admin.execute(f'DELETE FROM "{pgsql.validate_schema(schema)}".migrations')
        with pytest.raises(SchemaOutdated, match=r"version 0.*asynctask migrate"):
            await PostgresBroker(URL, schema=schema, clock=clock).open()
    finally:
        await drop_schema(schema)


async def test_auto_migrate_from_the_url(clock: FakeClock) -> None:
    schema = fresh_schema()
    broker = PostgresBroker(f"{URL}?schema={schema}&auto_migrate=true", clock=clock)
    try:
        await broker.open()
        assert await broker.enqueue([]) == []
        assert await broker.get("nothing") is None
        await broker.close()
    finally:
        await drop_schema(schema)


async def test_a_dropped_schema_is_reported_as_outdated(pg: PostgresBroker, admin: Any) -> None:
    await admin.execute(f'DROP SCHEMA "{pgsql.validate_schema(pg.schema)}" CASCADE')
    with pytest.raises(SchemaOutdated, match="asynctask migrate"):
        await pg.claim("q", 1, lease=30, worker="w")


@pytest.mark.parametrize("name", ["Jobs", "1jobs", "jobs;drop", 'a"b', "", "x" * 64, "jöbs"])
def test_invalid_schema_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidName):
        PostgresBroker(URL, schema=name)


def test_query_file_parses_into_named_queries() -> None:
    queries = pgsql.queries("asynctask")
    assert {"enqueue", "claim", "complete", "extend_leases", "readiness", "prune"} <= set(queries)
    assert all('"asynctask"' in q for n, q in queries.items() if n != "migration_lock")
    assert "__schema__" not in "".join(queries.values())
    with pytest.raises(ValueError, match="twice"):
        pgsql.parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_a_fragment_is_written_in_at_its_indent_and_left_out_of_its_variant() -> None:
    text = (
        "-- fragment: on_conflict\n-- what it does\nON CONFLICT (id)\nDO NOTHING\n\n"
        "-- name: enqueue\nINSERT INTO t\n    SELECT 1\n    __on_conflict__\n    RETURNING id;\n"
        "-- name: other\nSELECT 2;\n"
    )
    parsed = pgsql.parse_queries(text)
    assert parsed["enqueue"] == (
        "INSERT INTO t\n    SELECT 1\n    ON CONFLICT (id)\n    DO NOTHING\n    RETURNING id;"
    )
    assert parsed["enqueue_fresh"] == "INSERT INTO t\n    SELECT 1\n    RETURNING id;"
    assert pgsql.parse_queries("-- name: a\nSELECT 1;\n") == {"a": "SELECT 1;"}
    with pytest.raises(ValueError, match="no fragment 'missing'"):
        pgsql.parse_queries("-- name: enqueue\nSELECT 1\n__missing__\n")
