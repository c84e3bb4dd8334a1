"""The app the browser tests serve (``asynctask web``) and run (``asynctask worker``)."""

from __future__ import annotations

from asynctask import App, Fixed, Interval, JobCtx

app = App(retry=Fixed(0), failed_ttl=None)


@app.task(queue="emails", max_retries=0)
async def send_welcome(ctx: JobCtx, to: str) -> str:
    return f"sent to {to}"


@app.task(queue="billing", max_retries=0)
async def charge_card(ctx: JobCtx, amount: int) -> dict[str, int]:
    """Fails its first run; a retry (which keeps the saved state) succeeds."""
    if ctx.state != "tried":
        await ctx.set_state("tried")
        raise RuntimeError(f"card declined for amount {amount}")
    return {"charged": amount}


@app.periodic(Interval(3600), queue="reports")
async def nightly_report(ctx: JobCtx) -> None:
    return None
