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

__all__ = ["Fleet", "WorkerProcess", "descendants", "peak_rss"]


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
        """SIGKILL the process and every descendant at once: a worker dying without a word (W5)."""
        family = self._family()
        self._kill_main()
        _kill(family)
        self.proc.wait()

    def stop(self, grace: float = 5.0) -> None:
        # Children may live in sessions of their own (asynctask's supervisor starts each worker
        # so): note them now, they are orphaned once the main process is gone.
        family = self._family()
        # SIGTERM to the main process only, as a supervisor would; it stops its own children.
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        # Make sure nothing outlives the run.
        family += self._family()
        self._kill_main()
        _kill(family)
        self.proc.wait()
        if not self._log.closed:
            self._log.close()

    def _family(self) -> list[Process]:
        # Only while the main process is not reaped: after that its pid may be someone else's.
        return descendants(self.proc.pid) if self.proc.poll() is None else []

    def _kill_main(self) -> None:
        # Only while not reaped: until then its pid cannot belong to anyone else.
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


#: A process as (pid, start time in clock ticks since boot): a pid alone may be reused.
Process = tuple[int, str]


def _stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, ..., starttime)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    return stat.rsplit(")", 1)[-1].split()


def _kill(family: list[Process]) -> None:
    """SIGKILL each process that is still the one noted (same pid, same start time)."""
    for pid, started in dict.fromkeys(family):
        fields = _stat(pid)
        if len(fields) > 19 and fields[19] == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def descendants(root: int) -> list[Process]:
    """Every live descendant of ``root`` (children, grandchildren...), whatever their session."""
    children: dict[int, list[Process]] = {}
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    for pid in pids:
        fields = _stat(pid)
        if len(fields) > 19:
            children.setdefault(int(fields[1]), []).append((int(pid), fields[19]))
    found: list[Process] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def _vm_hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss(roots: list[int]) -> dict[str, float | int] | None:
    """Peak resident memory (``VmHWM``) of the given processes and all their descendants.

    ``rss_peak_mib`` is the largest single process (one worker), ``rss_total_mib`` the sum over
    the fleet (a supervisor included). ``None`` where ``/proc`` is unavailable.
    """
    pids = [p for root in roots for p in (root, *(pid for pid, _ in descendants(root)))]
    peaks = [kib for pid in dict.fromkeys(pids) if (kib := _vm_hwm_kib(pid)) is not None]
    if not peaks:
        return None
    return {
        "rss_peak_mib": max(peaks) / 1024,
        "rss_total_mib": sum(peaks) / 1024,
        "worker_processes_seen": len(peaks),
    }


def cpu_seconds(roots: list[int]) -> float | None:
    """User + system CPU seconds so far of the given processes and all their descendants."""
    pids = [p for root in roots for p in (root, *(pid for pid, _ in descendants(root)))]
    total, seen = 0.0, False
    for pid in dict.fromkeys(pids):
        fields = _stat(pid)
        if len(fields) > 12:  # utime, stime: fields 14 and 15 of stat, 12 and 13 here (man proc)
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            seen = True
    return total if seen else None


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
    def roots(self) -> list[int]:
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
        return peak_rss(self.roots)

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.roots)

    def tail(self, lines: int = 15) -> str:
        return "\n".join(m.tail(lines) for m in self.members)
