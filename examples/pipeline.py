"""A pipeline: each step's output is the next step's input; progress survives retries.

python examples/pipeline.py
"""

from __future__ import annotations

import anyio
import msgspec

from asynctask import App, JobCtx, reentrant
from asynctask.testing import drain

app = App("memory://")
attempts = {"parse": 0}


async def download(ctx: JobCtx, url: str) -> str:
    return f"<html>{url}</html>"


async def parse(ctx: JobCtx, html: str) -> list[str]:
    attempts["parse"] += 1
    if attempts["parse"] < 3:  # flaky: retried in place by reentrant()
        raise TimeoutError("parser timed out")
    return html.removeprefix("<html>").removesuffix("</html>").split("/")


async def store(ctx: JobCtx, parts: list[str]) -> int:
    return len(parts)


etl = app.pipeline("etl", [download, reentrant(parse, times=3, sleep=0.01), store])


async def main() -> None:
    async with app:
        handle = await etl.publish("https://example.com/a/b")
        await drain(app)
        print("result:", await handle.result())
        job = await handle.info()
        assert job is not None and job.state is not None
        progress = msgspec.json.decode(job.state)
        print("steps done:", progress["step"], "| failures logged:", [e["error"] for e in progress["log"]])


if __name__ == "__main__":
    anyio.run(main)
