"""Worker processes started with a library's own CLI: start, kill, stop, and their peak memory.

Standard library only (Linux ``/proc``): this module runs in every peer's venv.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from benchmarks.services import PROJECT

__all__ = ["Fleet", "WorkerProcess", "peak_rss"]


class WorkerProcess:
    """One worker command in its own session; stopped with SIGTERM, then SIGKILL to the session."""

    def __init__(self, command: list[str], env: dict[str, str], logfile: Path) -> None:
        self.command = command
        self.logfile = logfile
        self._log = logfile.open("wb")
        full_env = {**os.environ, **env}
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), full_env.get("PYTHONPATH")]))
        self.started = time.time()
        self.proc = subprocess.Popen(
            command,
            cwd=PROJECT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole session at once: a worker dying without a word (W5)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, grace: float = 5.0) -> None:
        # SIGTERM to the main process only, as a supervisor would; it stops its own children.
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        # Children (dramatiq's forks) share the session; make sure none outlives the run.
        self.kill()
        self._log.close()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _session_of(pid: str) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[3]) if len(fields) > 3 else None


def _vm_hwm_kib(pid: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss(sessions: list[int]) -> dict[str, float | int] | None:
    """Peak resident memory (``VmHWM``) of every live process in the given sessions.

    ``rss_peak_mib`` is the largest single process (one worker), ``rss_total_mib`` the sum over
    the fleet (a forking CLI's supervisor included). ``None`` where ``/proc`` is unavailable.
    """
    wanted = set(sessions)
    peaks: list[int] = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        if _session_of(pid) in wanted and (kib := _vm_hwm_kib(pid)) is not None:
            peaks.append(kib)
    if not peaks:
        return None
    return {
        "rss_peak_mib": max(peaks) / 1024,
        "rss_total_mib": sum(peaks) / 1024,
        "worker_processes_seen": len(peaks),
    }


class Fleet:
    """The worker processes of one system: one forking CLI, or several copies of one command."""

    def __init__(self, members: list[WorkerProcess]) -> None:
        self.members = members
        self.started = min(m.started for m in members)

    @property
    def pid(self) -> int:
        """The first member's main process (what a profiler attaches to)."""
        return self.members[0].pid

    @property
    def sessions(self) -> list[int]:
        return [m.pid for m in self.members]

    def alive(self) -> bool:
        return all(m.alive() for m in self.members)

    def kill(self) -> None:
        for member in self.members:
            member.kill()

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def peak_rss(self) -> dict[str, float | int] | None:
        return peak_rss(self.sessions)

    def tail(self, lines: int = 15) -> str:
        return "\n".join(m.tail(lines) for m in self.members)
