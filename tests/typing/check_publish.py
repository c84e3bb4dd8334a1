"""Checked by ``mypy --strict`` (``nox -s types``), never run: typed publish catches mistakes.

Every ``type: ignore`` below must be needed; ``warn_unused_ignores`` (part of --strict) fails the
check if typed publish ever stops rejecting the bad call.
"""

from __future__ import annotations

import msgspec

from asynctask import App, JobCtx, JobHandle

app = App("memory://")


class Email(msgspec.Struct):
    to: str


@app.task(queue="emails")
async def send_email(ctx: JobCtx, email: Email) -> bool:
    return True


async def publish_ok() -> bool:
    handle: JobHandle[bool] = await send_email.publish(Email(to="a@example.com"), delay=5)
    result: bool = await handle.result()
    return result


async def publish_wrong_payload() -> None:
    await send_email.publish("not an email")  # type: ignore[arg-type]


async def wrong_result_type() -> None:
    handle = await send_email.publish(Email(to="a@example.com"))
    text: str = await handle.result()  # type: ignore[assignment]
    del text


async def publish_headers() -> None:
    await send_email.publish(Email(to="a@example.com"), headers={"request-id": "r-1"})
    await app.publish("send_email", {"to": "a@example.com"}, headers={"attempt": 1})  # type: ignore[dict-item]


@app.task
async def read_headers(ctx: JobCtx) -> str:
    return ctx.headers.get("request-id", "")


@app.task(global_concurrency=3, rate_limit="50/s", unique="active")
async def limited(ctx: JobCtx, n: int) -> None:
    return None


async def unique_publish() -> None:
    await send_email.publish(Email(to="a@example.com"), unique="active")
    await send_email.publish(Email(to="a@example.com"), unique_key="welcome-1")
    await send_email.publish(Email(to="a@example.com"), unique="always")  # type: ignore[arg-type]


@app.task(global_concurrency="3")  # type: ignore[call-overload, untyped-decorator]
async def badly_limited(ctx: JobCtx) -> None:
    return None
