"""A TCP proxy for fault injection between clients and a broker server, all on loopback.

It runs its own asyncio loop in a daemon thread, so a synchronous test drives it while worker
processes talk through it, and an async test drives it from its own loop alike (each control call
blocks only until the proxy's loop has applied it, a few microseconds). Faults, applied to the
connections open at that moment:

* :meth:`Proxy.reset`: every connection is closed with a TCP RST (``SO_LINGER`` 0) on both sides,
  as a crashed middlebox or a server failover does;
* :meth:`Proxy.cut`: every connection is closed with a FIN on both sides, as a server shutting
  down does; with ``down=True`` (the default) connections are then accepted and closed at once
  (FIN) until :attr:`Proxy.down` is set false again: the server is down;
* :meth:`Proxy.stall`: every connection stops forwarding bytes in both directions but stays
  open, as a half-open connection or a frozen middlebox does: the client hears nothing, no FIN,
  no RST. Stalled connections are never resumed; they are closed by :meth:`Proxy.close`.
  Connections still being opened when the stall begins are not stalled: a connect caught by a
  stall would hang until its connect timeout, a case the brokers bound but too slow for tests.

New connections are forwarded normally after a reset or a stall (and after a cut once
:attr:`Proxy.down` is false), so a client that gives up on a dead connection and opens another
recovers. Used by the chaos suite (CLI workers in subprocesses) and by the broker deadline tests
(tests/redis/test_deadlines.py, tests/postgres/test_deadlines.py, tests/stalled_worker.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["Proxy"]

_CHUNK = 65536
T = TypeVar("T")


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Proxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``; ``with Proxy(...) as proxy``
    starts it and closes it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        #: Connections accepted so far, refused ones (while :attr:`down`) included.
        self.accepted = 0
        #: While true, new connections are closed at once (see :meth:`cut`). A plain attribute:
        #: the proxy's loop reads it on each accept, so the test's thread may set it directly.
        self.down = False
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    # --- control, from the test's thread ----------------------------------------------------------

    def start(self) -> Proxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def reset(self) -> int:
        """RST every open connection; returns how many there were."""
        return self._call(self._reset())

    def cut(self, *, down: bool = True) -> int:
        """Close every open connection with a FIN (a server shutting down); refuse new ones
        while ``down`` (sets :attr:`down`). Returns how many connections there were."""
        self.down = down
        return self._call(self._cut())

    def stall(self) -> int:
        """Stop forwarding on every open connection (kept open); returns how many there were."""
        return self._call(self._stall())

    @property
    def open_links(self) -> int:
        return len(self._links)

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    # --- the loop's side ------------------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refused(writer):
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(writer)
            return
        if self._refused(writer, up_writer):  # cut while it was being opened: refused too
            return
        link = _Link(writer, up_writer)
        link.flowing.set()
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pipe(link, reader, up_writer)),
            asyncio.create_task(self._pipe(link, up_reader, writer)),
        ]

    def _refused(self, *writers: asyncio.StreamWriter) -> bool:
        """While :attr:`down`, close ``writers`` with a FIN and say so."""
        if not self.down:
            return False
        for writer in writers:
            writer.close()
        return True

    async def _pipe(self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(_CHUNK):
                await link.flowing.wait()  # a stalled link holds the bytes for ever
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if link.flowing.is_set():  # either side closing a live link ends all of it
                self._drop(link)

    def _drop(self, link: _Link, *, rst: bool = True) -> None:
        """End ``link``: both sockets closed with a RST, or (``rst=False``) with a FIN once the
        bytes already written are flushed."""
        if link in self._links:
            self._links.discard(link)
            for writer in (link.client, link.server):
                if rst:
                    _abort(writer)
                else:
                    writer.close()
            for task in link.tasks:
                task.cancel()

    async def _reset(self) -> int:
        links = list(self._links)
        for link in links:
            self._drop(link)
        return len(links)

    async def _cut(self) -> int:
        links = list(self._links)
        for link in links:
            self._drop(link, rst=False)
        return len(links)

    async def _stall(self) -> int:
        for link in self._links:
            link.flowing.clear()
        return len(self._links)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        links = list(self._links)
        for link in links:
            self._drop(link)
        tasks = [task for link in links for task in link.tasks]
        await asyncio.gather(*tasks, return_exceptions=True)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
