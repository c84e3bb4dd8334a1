"""``asynctask demo``: a few hundred jobs of four kinds on the in-memory broker, with live progress.

* ``resize_image`` does some async "work";
* ``send_email`` fails on its first attempt one time in four and is retried with backoff;
* ``charge_card`` declines one card in ten with ``Fail``: no retry, kept as failed (dead-letter);
* ``crawl_site`` saves its cursor with ``ctx.set_state`` and resumes from it after a failure.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter

import anyio
import msgspec

from asynctask import App, Backoff, Fail, JobCtx, JobStatus

__all__ = ["build_demo_app", "run_demo"]


class Image(msgspec.Struct):
    path: str
    width: int


class Email(msgspec.Struct):
    to: str
    subject: str


def build_demo_app() -> App:
    app = App("memory://", retry=Backoff(base=0.05, factor=2, max_delay=0.5))
    rng = random.Random(42)

    @app.task(queue="media")
    async def resize_image(ctx: JobCtx, image: Image) -> str:
        await anyio.sleep(rng.uniform(0.05, 0.15))
        return f"{image.path} -> {image.width}px"

    @app.task(queue="email", max_retries=3)
    async def send_email(ctx: JobCtx, email: Email) -> str:
        await anyio.sleep(0.02)
        if ctx.attempt == 1 and rng.random() < 0.25:
            raise ConnectionError("SMTP server busy")
        return f"sent to {email.to}"

    @app.task(queue="billing")
    async def charge_card(ctx: JobCtx, cents: int) -> int:
        await anyio.sleep(0.03)
        if cents % 10 == 7:
            raise Fail(f"card declined for {cents} cents")
        return cents

    @app.task(max_retries=2)
    async def crawl_site(ctx: JobCtx, pages: int) -> int:
        start = ctx.state or 0
        for page in range(start, pages):
            await anyio.sleep(0.005)
            await ctx.set_state(page + 1)
            if page == pages // 2 and ctx.attempt == 1:
                raise TimeoutError("site stopped answering")
        return pages

    return app


async def run_demo(*, count: int = 300, concurrency: int = 10) -> None:
    app = build_demo_app()
    started = time.monotonic()
    async with app:
        specs = []
        for i in range(count):
            kind = i % 4
            if kind == 0:
                specs.append(app.tasks["resize_image"].spec(Image(path=f"img/{i}.png", width=256)))
            elif kind == 1:
                specs.append(app.tasks["send_email"].spec(Email(to=f"user{i}@example.com", subject="Hi")))
            elif kind == 2:
                specs.append(app.tasks["charge_card"].spec(i * 10 + (7 if i % 10 == 2 else 0)))
            else:
                specs.append(app.tasks["crawl_site"].spec(20))
        await app.publish_many(specs)
        print(f"asynctask demo: published {count} jobs on {app.display_url}; running a worker...")
        worker = app.worker(concurrency=concurrency, poll_interval=0.05, maintenance_interval=0.5)
        counts: Counter[str] = Counter()
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            while True:
                jobs = await app.list_jobs(limit=count)
                counts = Counter(j.status.value for j in jobs)
                _progress(counts, worker.stats.retried, count, final=False)
                if sum(counts[s] for s in ("succeeded", "failed", "cancelled")) == count:
                    break
                await anyio.sleep(0.1)
            worker.stop()
        _progress(counts, worker.stats.retried, count, final=True)
        print(f"done in {time.monotonic() - started:.2f}s")
        per_task: Counter[tuple[str, str]] = Counter((j.task, j.status.value) for j in jobs)
        for task in (t for t in app.tasks if not t.startswith("asynctask.")):
            ok, failed = per_task[(task, "succeeded")], per_task[(task, "failed")]
            print(f"  {task:14} succeeded {ok:4}   failed {failed:3}")
        failed_jobs = [j for j in jobs if j.status is JobStatus.FAILED]
        if failed_jobs:
            last = (failed_jobs[0].error or "").strip().splitlines()[-1]
            print(f"failed jobs are kept for inspection and `app.retry(id)`; {failed_jobs[0].id}: {last}")


def _progress(counts: Counter[str], retried: int, total: int, *, final: bool) -> None:
    done = counts["succeeded"] + counts["failed"] + counts["cancelled"]
    width = 30
    filled = width * done // max(total, 1)
    line = (
        f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}  "
        f"queued {counts['queued'] + counts['scheduled']:4}  running {counts['running']:3}  "
        f"succeeded {counts['succeeded']:4}  failed {counts['failed']:3}  retries {retried:3}"
    )
    if sys.stdout.isatty():
        print(f"\r{line}", end="\n" if final else "", flush=True)
    elif final or int(time.monotonic() * 10) % 5 == 0:
        print(line, flush=True)
