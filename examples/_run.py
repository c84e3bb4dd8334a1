"""Shared by the examples: run a worker beside ``main`` until ``main`` returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from asynctask import App


def run_with_worker(app: App, main: Callable[[], Awaitable[None]], **worker_options: object) -> None:
    async def go() -> None:
        async with app:
            worker = app.worker(poll_interval=0.05, **worker_options)  # type: ignore[arg-type]
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                await main()
                worker.stop()

    anyio.run(go)
