"""Counted open/close: the one implementation every broker uses."""

from __future__ import annotations

import anyio
import pytest

from asynctask.brokers.refcount import OpenCount

pytestmark = pytest.mark.anyio


class Recorder:
    def __init__(self, fail_connect: bool = False) -> None:
        self.events: list[str] = []
        self.fail_connect = fail_connect

    async def connect(self) -> None:
        await anyio.sleep(0.01)  # a slow connect: a second open must wait for it, not repeat it
        if self.fail_connect:
            raise ConnectionError("refused")
        self.events.append("connect")

    async def disconnect(self) -> None:
        self.events.append("disconnect")


async def test_first_open_connects_last_close_disconnects() -> None:
    rec = Recorder()
    count = OpenCount(rec.connect, rec.disconnect)
    async with anyio.create_task_group() as tg:
        tg.start_soon(count.open)
        tg.start_soon(count.open)
    assert count.is_open and count.count == 2 and rec.events == ["connect"]
    await count.close()
    assert count.is_open and rec.events == ["connect"]
    await count.close()
    await count.close()  # extra closes are harmless
    assert not count.is_open and rec.events == ["connect", "disconnect"]


async def test_a_failed_connect_leaves_it_closed() -> None:
    rec = Recorder(fail_connect=True)
    count = OpenCount(rec.connect, rec.disconnect)
    with pytest.raises(ConnectionError):
        await count.open()
    assert not count.is_open
    await count.close()
    assert rec.events == []


async def test_a_cancelled_close_still_disconnects() -> None:
    rec = Recorder()
    count = OpenCount(rec.connect, rec.disconnect)
    await count.open()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await count.close()
    assert rec.events == ["connect", "disconnect"] and not count.is_open
