"""Groups (all must succeed) and chains (each link sees the previous result).

python examples/groups_and_chains.py
"""

from __future__ import annotations

from _run import run_with_worker

from asynctask import App, JobCtx, JobFailed

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
    gid = await app.group([check.spec(u) for u in ["https://a.example", "https://b.example"]])
    print("group:", await app.result(gid, timeout=10))
    bad = await app.group([check.spec("https://a.example"), check.spec("https://broken.example")])
    try:
        await app.result(bad, timeout=10)
    except JobFailed as exc:
        info = await app.get_group(bad)
        print("group failed:", exc, "| statuses:", [j.status.value for j in info.jobs])

    cid = await app.chain([double.spec(3), double.spec(0), double.spec(0)])
    print("chain:", await app.result(cid, timeout=10))  # 3 -> 6 -> 12 -> 24
    info = await app.get_chain(cid)
    print("links:", [(link.task, link.status) for link in info.links])


if __name__ == "__main__":
    run_with_worker(app, main)
