"""``asynctask check APP``: exit 0 if healthy, 1 if not; for exec probes (Kubernetes, Docker)."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

import anyio
import click

from asynctask.cli.common import friendly, load_app, run_async

__all__ = ["check"]


@click.command()
@click.argument("app_path", metavar="APP")
@click.option("--broker", envvar="ASYNCTASK_BROKER_URL", help="Broker URL (overrides the app's).")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Ask the worker serving this monitoring port (--metrics-port) instead of the broker.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Host of the monitoring port.")
@click.option(
    "--ready", is_flag=True, help="With --port: readiness (/readyz) instead of liveness (/healthz)."
)
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for an answer.")
@friendly
def check(
    app_path: str, broker: str | None, port: int | None, host: str, ready: bool, timeout: float
) -> None:
    """Exit 0 if healthy, 1 if not, printing why on one line.

    Without --port: connect to APP's broker and make one cheap read (is the broker reachable, with
    this configuration?). With --port: ask the local worker's monitoring port, which knows whether
    its event loop runs and it claims jobs (/healthz) and whether its broker answers (/readyz).
    """
    app = load_app(app_path, broker)
    if port is not None:
        ok, reason = _ask(f"http://{host}:{port}/{'readyz' if ready else 'healthz'}", timeout)
    else:

        async def probe() -> tuple[bool, str]:
            try:
                with anyio.fail_after(timeout):
                    async with app:
                        workers = await app.list_workers()
            except TimeoutError:
                return False, f"no answer from {app.display_url} within {timeout:g}s"
            except Exception as exc:
                return False, f"{app.display_url}: {str(exc) or type(exc).__name__}"
            return True, f"{app.display_url} answers; {len(workers)} live worker(s)"

        ok, reason = run_async(probe)
    click.echo(f"{'ok' if ok else 'fail'}: {reason}")
    sys.exit(0 if ok else 1)


def _ask(url: str, timeout: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http:// built above
            body = response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except (OSError, ValueError) as exc:
        return False, f"{url}: {exc}"
    try:
        answer = json.loads(body)
        return answer["status"] == "ok", str(answer["reason"])
    except (ValueError, KeyError, TypeError):
        return False, f"{url}: unexpected answer {body[:200]!r}"
