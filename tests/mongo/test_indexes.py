"""The data model's indexes: created on open, idempotently, and by ``asynctask migrate``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asynctask.brokers.base import Migration
from asynctask.brokers.mongo import MongoBroker
from asynctask.brokers.mongo.indexes import INDEXES, SCHEMA_VERSION
from asynctask.testing import FakeClock
from tests.backend_mongo import DATABASE, drop_prefix, fresh_prefix
from tests.mongo import server

pytestmark = pytest.mark.anyio


async def test_open_creates_every_index_with_its_partial_filter(notx: MongoBroker) -> None:
    found = await notx.collection.index_information()
    for model in INDEXES:
        spec = model.document
        index = found[spec["name"]]
        assert index["key"] == list(spec["key"].items())
        if "partialFilterExpression" in spec:
            assert dict(index["partialFilterExpression"]) == spec["partialFilterExpression"]
    claim = found["claim_order"]
    assert [k for k, _ in claim["key"]] == ["queue", "priority", "run_at", "phase", "seq", "seq2"]
    assert claim["key"][1] == ("priority", -1), "highest priority first"
    assert dict(claim["partialFilterExpression"]) == {"phase": {"$exists": True}}, "ready jobs only"


async def test_opening_again_and_migrating_are_idempotent(clock: FakeClock) -> None:
    prefix = fresh_prefix()
    try:
        broker = MongoBroker(server.url(), database=DATABASE, prefix=prefix, clock=clock)
        assert await broker.migrate() == Migration(None, SCHEMA_VERSION), "works on an unopened broker"
        assert await broker.migrate() == Migration(SCHEMA_VERSION, SCHEMA_VERSION)
        for _ in range(2):
            await broker.open()
            await broker.close()
        assert not broker.is_open
        assert (await broker.migrate()).describe() == f"schema already current (version {SCHEMA_VERSION})"
    finally:
        await drop_prefix(prefix)


def test_the_migrate_command(tmp_path: object) -> None:
    prefix = fresh_prefix()
    url = server.broker_url(prefix, DATABASE)
    try:
        first = subprocess.run(
            [sys.executable, "-m", "asynctask", "migrate", "--broker", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert first.returncode == 0, first.stderr
        assert f"schema created (version {SCHEMA_VERSION})" in first.stdout
        assert prefix in first.stdout
    finally:
        import anyio

        anyio.run(drop_prefix, prefix)
