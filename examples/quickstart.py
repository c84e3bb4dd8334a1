"""Publish a few jobs and run a worker in one process, on the in-memory broker.

python examples/quickstart.py
"""

from __future__ import annotations

import anyio
import msgspec

from asynctask import App, JobCtx, Retry

app = App("memory://")


class Email(msgspec.Struct):
    to: str
    subject: str


@app.task(queue="emails", max_retries=3)
async def send_email(ctx: JobCtx, email: Email) -> str:
    if ctx.attempt == 1 and email.to.endswith("@flaky.example"):
        raise Retry(delay=0.1)  # try again in 100 ms
    return f"sent {email.subject!r} to {email.to}"


async def main() -> None:
    async with app:
        first = await send_email.publish(Email(to="ada@example.com", subject="Welcome"))
        second = await send_email.publish(Email(to="bob@flaky.example", subject="Hello"))
        worker = app.worker(concurrency=4)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            print(await first.result(timeout=5))
            print(await second.result(timeout=5))
            worker.stop()


if __name__ == "__main__":
    anyio.run(main)
