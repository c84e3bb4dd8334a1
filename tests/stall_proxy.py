"""A loopback TCP proxy whose open connections can be made to stop answering.

:meth:`StallProxy.stall` freezes every connection open at that moment: bytes sent into it are
swallowed, nothing comes back, and the sockets stay open (a half-open connection or a stalled
middlebox, which no error reveals). Connections opened afterwards work normally, so a client that
abandons its stuck connection and reconnects is back in business.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["StallProxy", "stall_proxy"]


class _Link:
    def __init__(self) -> None:
        self.stalled = False
        self.writers: list[asyncio.StreamWriter] = []


class StallProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._links: list[_Link] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0
        #: Connections accepted so far.
        self.accepted = 0
        #: While true, new connections are closed at once (see :meth:`cut`).
        self.down = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self, *, down: bool = True) -> None:
        """Close every open connection (a server restart); refuse new ones while ``down``."""
        self.down = down
        for link in self._links:
            for writer in link.writers:
                writer.close()
        self._links.clear()

    def stall(self) -> None:
        """Freeze every connection open now; ones still being opened, and later ones, work.

        (A connect caught by a stall would hang until its connect timeout: a case the brokers
        bound, but too slow for these tests.)
        """
        for link in self._links:
            link.stalled = True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links:
            for writer in link.writers:
                writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.down:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        link = _Link()
        link.writers = [writer, up_writer]
        self._links.append(link)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pump(link, source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if link.stalled:
                    continue  # swallowed: the peer never hears of it
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if not link.stalled:
                sink.close()


@asynccontextmanager
async def stall_proxy(target_host: str, target_port: int) -> AsyncIterator[StallProxy]:
    proxy = StallProxy(target_host, target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
