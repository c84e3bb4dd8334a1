"""What a result must say about where it was measured: machine, load, servers, versions."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from benchmarks import nats_server, services, setup_peers
from benchmarks.systems import SYSTEMS

__all__ = ["loadavg", "machine", "servers", "versions"]


def loadavg() -> str:
    """The 1, 5 and 15-minute load averages."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    """CPU model and cores, memory, kernel, Python."""
    cpu = "unknown CPU"
    mem = "? GiB"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    kernel = f"{platform.system()} {platform.release()}"
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{os.cpu_count()} cores ({cpu}), {mem}, {kernel}, {python}"


def servers() -> str:
    """The Redis and PostgreSQL server versions, and NATS's when a NATS system runs."""
    parts = []
    try:
        info = asyncio.run(services.redis_call("INFO", "server")).decode()
        version = next(line.split(":")[1] for line in info.splitlines() if line.startswith("redis_version"))
        parts.append(f"Redis {version.strip()}")
    except Exception as exc:
        parts.append(f"Redis ? ({exc})")
    try:
        out = subprocess.run(
            ["psql", services.POSTGRES_ADMIN_URL, "-tAc", "show server_version"],
            capture_output=True,
            text=True,
            check=True,
        )
        parts.append(f"PostgreSQL {out.stdout.strip().split()[0]}")
    except Exception as exc:
        parts.append(f"PostgreSQL ? ({exc})")
    nats_url = os.environ.get("BENCH_NATS_URL")  # set when a NATS system runs
    if nats_url:
        try:
            parts.append(f"nats-server {nats_server.server_version(nats_url)}")
        except Exception as exc:
            parts.append(f"nats-server ? ({exc})")
    return ", ".join(parts)


def checkout() -> str:
    """The commit the run measured (short hash, ``+changes`` if the tree has changes)."""
    root = str(Path(__file__).resolve().parents[1])

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", root, *args], capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()

    try:
        head, dirty = (
            git("rev-parse", "--short=12", "HEAD"),
            git("status", "--porcelain", "--untracked-files=no"),
        )
    except (OSError, subprocess.SubprocessError):
        return "this checkout"
    return f"commit {head}{' +changes' if dirty else ''}"


def versions(selected: list[str], checked_out: str) -> str:
    """asynctask's version (``checked_out``: :func:`checkout` when the run started) and every
    selected peer's pinned requirements."""
    try:
        ours = metadata.version("asynctask")
    except metadata.PackageNotFoundError:
        ours = "?"
    parts = [f"asynctask {ours} ({checked_out})"]
    for name in selected:
        venv = SYSTEMS[name].venv
        if venv:
            parts.append(" ".join(setup_peers.PEERS[venv]))
    return "; ".join(dict.fromkeys(parts))
