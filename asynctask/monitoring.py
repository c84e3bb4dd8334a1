"""The worker's monitoring port: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz`` (probes).

``asynctask worker APP --metrics-port 2121`` runs it; an embedded worker can too::

    async with serve_monitoring(worker, port=2121, metrics=Metrics(app)):
        await worker.run()

The HTTP server runs in a thread of its own (the standard library's ``ThreadingHTTPServer``), not
on the event loop: a probe is answered even while a handler blocks the loop, and the answer says
the loop is blocked (see :mod:`asynctask.runtime.health`). ``/metrics`` reads the queue statistics
from the broker through the loop, waiting at most two seconds; a blocked loop gets the last ones.

The probes answer ``200`` or ``503`` with a one-line JSON body:
``{"status": "ok", "reason": "..."}`` / ``{"status": "fail", "reason": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import anyio

from asynctask.runtime.health import Health, Verdict
from asynctask.runtime.worker import Worker

if TYPE_CHECKING:
    from asynctask.metrics import Metrics

__all__ = ["MonitorServer", "serve_monitoring"]

log = logging.getLogger("asynctask.monitoring")

#: The longest a scrape waits for the event loop to read the queue statistics.
SCRAPE_TIMEOUT = 2.0


class MonitorServer:
    """The HTTP server of the monitoring port, serving from its own thread.

    ``port=0`` picks a free port (see :attr:`port`). ``metrics`` may be ``None``: ``/metrics`` is
    then 404 and the probes still work.
    """

    def __init__(
        self,
        health: Health,
        *,
        metrics: Metrics | None = None,
        host: str = "0.0.0.0",  # noqa: S104 - probes and scrapes come from outside the pod
        port: int = 2121,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.health = health
        self.metrics = metrics
        self.loop = loop
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.monitor = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"<MonitorServer {self.url} {'serving' if self._thread else 'stopped'}>"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"asynctask-monitor-{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket (blocks for up to half a second)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def respond(self, path: str, accept: str) -> tuple[int, str, bytes]:
        """``(status, content type, body)`` for a GET of ``path``."""
        if path == "/healthz":
            return _probe(self.health.live())
        if path == "/readyz":
            return _probe(self.health.ready())
        if path == "/metrics" and self.metrics is not None:
            from prometheus_client.exposition import choose_encoder

            if self.loop is not None:
                self.metrics.refresh_from_thread(self.loop, timeout=SCRAPE_TIMEOUT)
            encoder, content_type = choose_encoder(accept)
            return 200, content_type, encoder(self.metrics.registry)
        return 404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz or /readyz\n"


def _probe(verdict: Verdict) -> tuple[int, str, bytes]:
    body = json.dumps({"status": "ok" if verdict.ok else "fail", "reason": verdict.reason})
    return (200 if verdict.ok else 503), "application/json", body.encode() + b"\n"


class _Handler(BaseHTTPRequestHandler):
    server_version = "asynctask"

    def do_GET(self) -> None:
        monitor: MonitorServer = self.server.monitor  # type: ignore[attr-defined]
        try:
            status, content_type, body = monitor.respond(
                self.path.split("?", 1)[0], self.headers.get("Accept", "")
            )
        except Exception:
            log.exception(
                "the monitoring port failed to answer %s", self.path, extra={"action": "monitor_error"}
            )
            status, content_type, body = 500, "text/plain; charset=utf-8", b"internal error\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


@asynccontextmanager
async def serve_monitoring(
    worker: Worker,
    *,
    port: int,
    host: str = "0.0.0.0",  # noqa: S104
    metrics: Metrics | None = None,
    threshold: float = 30.0,
) -> AsyncIterator[MonitorServer]:
    """Serve ``worker``'s probes (and ``metrics``) on ``host:port`` while the block runs; enter it
    before the worker starts (its health observes the worker's events from its start).

    ``threshold``: seconds of a blocked event loop, or of a worker with room for jobs that does
    not claim, before ``/healthz`` fails (see :class:`~asynctask.runtime.health.Health`).
    """
    health = Health(worker, threshold=threshold)
    server = MonitorServer(health, metrics=metrics, host=host, port=port, loop=asyncio.get_running_loop())
    server.start()
    log.info(
        "monitoring on %s (%s/healthz, /readyz)",
        server.url,
        "/metrics, " if metrics is not None else "",
        extra={"action": "monitoring_started"},
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(health.run)
            try:
                yield server
            finally:
                tg.cancel_scope.cancel()
    finally:
        worker.events.unsubscribe(health)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.stop)
