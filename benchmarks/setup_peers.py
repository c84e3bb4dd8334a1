"""Create one virtualenv per peer library under ``benchmarks/.venvs/`` and install it from PyPI.

The peers conflict with each other (arq pins ``redis<6``, taskiq-redis wants ``redis>=8``), so
each gets its own venv; ``tools`` holds matplotlib (the chart) and py-spy (``--profile``).

    python -m benchmarks.setup_peers              # every peer + tools
    python -m benchmarks.setup_peers arq saq      # just these
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENVS = ROOT / ".venvs"

#: venv name -> requirements (pinned where the driver depends on API details).
PEERS: dict[str, list[str]] = {
    "arq": ["arq==0.28.0", "uvloop"],
    "saq": ["saq[hiredis]==0.26.4", "typing_extensions", "uvloop"],
    "taskiq": ["taskiq==0.13.0", "taskiq-redis==1.2.4", "uvloop"],
    "taskiq-nats": ["taskiq==0.13.0", "taskiq-nats==0.7.0", "uvloop"],
    "streaq": ["streaq==7.2.0", "uvloop"],
    "dramatiq": ["dramatiq[redis]==2.2.1", "redis[hiredis]"],
    "procrastinate": ["procrastinate==3.10.0", "uvloop"],
    # typer>=0.17 breaks `pgq run --log-level` in pgqueuer 1.6.0.
    "pgqueuer": ["pgqueuer==1.6.0", "typer<0.17", "asyncpg", "uvloop"],
    "tools": ["matplotlib>=3.8", "py-spy>=0.3.14"],
}


def python_of(name: str) -> Path:
    """The interpreter of venv ``name``."""
    return VENVS / name / "bin" / "python"


def bin_of(name: str, exe: str) -> Path:
    """An executable installed into venv ``name``."""
    return VENVS / name / "bin" / exe


def is_ready(name: str) -> bool:
    return (VENVS / name / ".ready").exists()


def install(name: str, *, force: bool = False) -> bool:
    """Create venv ``name`` and install its requirements; returns whether it worked."""
    target = VENVS / name
    if is_ready(name) and not force:
        print(f"[setup] {name}: ready")
        return True
    print(f"[setup] {name}: creating {target}", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    cmd = [str(python_of(name)), "-m", "pip", "install", "-q", *PEERS[name]]
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        print(f"[setup] {name}: pip failed ({proc.returncode})", file=sys.stderr)
        return False
    (target / ".ready").write_text(" ".join(PEERS[name]) + "\n")
    print(f"[setup] {name}: installed {' '.join(PEERS[name])}", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.setup_peers", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"venvs to build (default: all of {', '.join(PEERS)})")
    parser.add_argument("--force", action="store_true", help="rebuild even if ready")
    args = parser.parse_args(argv)
    names = args.names or list(PEERS)
    unknown = sorted(set(names) - set(PEERS))
    if unknown:
        parser.error(f"unknown venv(s): {', '.join(unknown)}")
    failed = [n for n in names if not install(n, force=args.force)]
    if failed:
        print(f"[setup] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
