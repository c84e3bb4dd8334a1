"""FastAPI (and any Starlette-style) lifespan: open the App, optionally run a worker in-process.

>>> from fastapi import FastAPI                                  # doctest: +SKIP
>>> from asynctask.contrib.fastapi import lifespan
>>> api = FastAPI(lifespan=lifespan(app, worker=True, concurrency=20))

With ``worker=True`` the worker runs in the same event loop as the web server and shuts down
gracefully with it (stop claiming, let running jobs finish within ``shutdown_grace``, hand the
rest back). The server owns signal handling, so the embedded worker installs no signal handlers.
The embedded worker enters the app's worker lifespan (``@app.lifespan``) like any worker: once,
before it claims a job, and exits it after its drain, when the server stops; if it fails to
start, the server's startup fails with :class:`~asynctask.errors.LifespanFailed`.
Nothing here imports FastAPI: the lifespan is a plain async context manager factory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Unpack

import anyio

from asynctask.app import App
from asynctask.runtime.options import WorkerOptions
from asynctask.runtime.worker import Worker

__all__ = ["lifespan"]


def lifespan(
    app: App, *, worker: bool = False, **worker_options: Unpack[WorkerOptions]
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan that keeps ``app`` open while the server runs; ``worker=True`` embeds a worker.

    ``worker_options`` go to :class:`~asynctask.Worker` (``queues``, ``concurrency``,
    ``shutdown_grace``, ...). The running worker is available as ``server_app.state.asynctask_worker``
    when the server app has a ``state`` attribute (FastAPI and Starlette do).
    """

    @asynccontextmanager
    async def _lifespan(server_app: Any) -> AsyncIterator[None]:
        async with app:
            if not worker:
                yield
                return
            options: WorkerOptions = {**worker_options, "handle_signals": False}
            embedded = Worker(app, **options)
            state = getattr(server_app, "state", None)
            if state is not None:
                state.asynctask_worker = embedded
            async with anyio.create_task_group() as tg:
                await tg.start(embedded.run)
                try:
                    yield
                finally:
                    embedded.stop()

    return _lifespan
