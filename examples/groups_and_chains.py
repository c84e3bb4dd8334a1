"""Groups (all must succeed) and chains (each link sees the previous result).

python examples/groups_and_chains.py
"""

from __future__ import annotations

import anyio

from asynctask import App, JobCtx, JobFailed
from asynctask.testing import drain

app = App("memory://")


@app.task(max_retries=0)
async def check(ctx: JobCtx, url: str) -> str:
    if "broken" in url:
        raise ConnectionError(f"{url} is down")
    return f"{url} ok"


@app.task
async def double(ctx: JobCtx, n: int) -> int:
    return 2 * (ctx.prev_result if ctx.prev_result is not None else n)


async def main() -> None:
    async with app:
        gid = await app.group([check.spec(u) for u in ["https://a.example", "https://b.example"]])
        bad = await app.group([check.spec("https://a.example"), check.spec("https://broken.example")])
        cid = await app.chain([double.spec(3), double.spec(0), double.spec(0)])
        await drain(app)  # runs every member, link and finisher

        print("group:", await app.result(gid))
        try:
            await app.result(bad)
        except JobFailed as exc:
            info = await app.get_group(bad)
            print("group failed:", exc, "| statuses:", [j.status.value for j in info.jobs])
        print("chain:", await app.result(cid))  # 3 -> 6 -> 12 -> 24
        chain = await app.get_chain(cid)
        print("links:", [(link.task, link.status) for link in chain.links])


if __name__ == "__main__":
    anyio.run(main)
