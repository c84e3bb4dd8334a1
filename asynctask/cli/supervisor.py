"""``asynctask worker --workers N``: run N worker processes and keep them running.

The supervisor starts each worker as ``python -m asynctask worker ...`` with the same options
(``--workers`` aside) in a session of its own, so a Ctrl-C in a terminal reaches the supervisor
only, and it forwards SIGTERM/SIGINT to every worker: the first signal is each worker's graceful
stop, a second one its stop at once. A worker that exits with a failure or is killed is started
again after a short backoff (its jobs are not lost: their leases expire and any worker takes
them back). If workers keep crashing (:data:`MAX_CRASHES` failures within :data:`CRASH_WINDOW`
seconds, e.g. an app that cannot start), the supervisor stops the others and exits with status 1.
A worker that exits 0 (``--burst`` with nothing left) is not restarted; the supervisor exits 0
once every worker has. Gunicorn's and uvicorn's ``--workers``, for a job queue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import Sequence

import anyio
import click
from anyio.abc import Process
from click.core import ParameterSource

from asynctask.lifecycle import watch_signals

__all__ = ["CRASH_WINDOW", "DROP", "MAX_CRASHES", "Supervisor", "child_env", "worker_command"]

log = logging.getLogger("asynctask.supervisor")

#: Failures within :data:`CRASH_WINDOW` seconds after which the supervisor gives up.
MAX_CRASHES = 5
CRASH_WINDOW = 60.0
#: Restart backoff: doubles from the first value up to the second; a worker that ran this long
#: (the third) counts as healthy again.
_BACKOFF = (0.5, 10.0, 10.0)


class Supervisor:
    """Runs ``count`` copies of ``command``; :meth:`run` returns the exit status."""

    def __init__(self, command: Sequence[str], count: int, *, env: dict[str, str] | None = None) -> None:
        self.command = list(command)
        self.count = count
        self.env = env
        self.stopping = False
        self.gave_up: str | None = None
        self.failed = False
        self._children: dict[int, Process] = {}
        self._crashes: deque[float] = deque()
        self._stopped: anyio.Event | None = None

    async def run(self) -> int:
        log.info(
            "supervising %d worker processes (pid %d)",
            self.count,
            os.getpid(),
            extra={"action": "supervisor_started"},
        )
        self._stopped = anyio.Event()
        async with anyio.create_task_group() as signals:
            await signals.start(watch_signals, self._signalled)
            async with anyio.create_task_group() as tg:
                for slot in range(1, self.count + 1):
                    tg.start_soon(self._keep, slot)
            signals.cancel_scope.cancel()
        return 1 if self.failed or self.gave_up is not None else 0

    def _signalled(self, sig: signal.Signals, count: int) -> None:
        self._stop()
        for process in list(self._children.values()):
            _send(process, sig)

    def _stop(self) -> None:
        self.stopping = True
        if self._stopped is not None:
            self._stopped.set()

    def _stop_all(self) -> None:
        self._stop()
        for process in list(self._children.values()):
            _send(process, signal.SIGTERM)

    async def _keep(self, slot: int) -> None:
        backoff = _BACKOFF[0]
        while not self.stopping:
            process = await anyio.open_process(
                self.command, stdin=None, stdout=None, stderr=None, env=self.env, start_new_session=True
            )
            self._children[slot] = process
            started = anyio.current_time()
            log.info(
                "worker process %d started (pid %d)",
                slot,
                process.pid,
                extra={"action": "worker_process_started"},
            )
            try:
                with anyio.CancelScope(shield=True):
                    status = await process.wait()
            finally:
                del self._children[slot]
            what = _describe(status)
            if status == 0 or self.stopping:
                log.info(
                    "worker process %d (pid %d) %s",
                    slot,
                    process.pid,
                    what,
                    extra={"action": "worker_process_exited"},
                )
                # A worker still starting when the signal came dies of it (its handler is not
                # installed yet): that is a stop too, not a failure.
                if status not in (0, -signal.SIGTERM, -signal.SIGINT):
                    self.failed = True
                return
            now = anyio.current_time()
            self._crashes.append(now)
            while self._crashes and self._crashes[0] < now - CRASH_WINDOW:
                self._crashes.popleft()
            if len(self._crashes) >= MAX_CRASHES:
                self.gave_up = (
                    f"worker processes keep crashing ({len(self._crashes)} failures within "
                    f"{CRASH_WINDOW:g}s, the last one {what}); stopped the others"
                )
                log.error(self.gave_up, extra={"action": "supervisor_gave_up"})
                self._stop_all()
                return
            if now - started >= _BACKOFF[2]:
                backoff = _BACKOFF[0]
            log.warning(
                "worker process %d (pid %d) %s; restarting it in %.1fs",
                slot,
                process.pid,
                what,
                backoff,
                extra={"action": "worker_process_crashed"},
            )
            assert self._stopped is not None
            with anyio.move_on_after(backoff):
                await self._stopped.wait()
            backoff = min(backoff * 2, _BACKOFF[1])


#: The options a supervised (or reloaded) worker must not inherit, and their variables.
DROP = ("workers", "reload")


def child_env() -> dict[str, str]:
    """The environment of a worker process: the supervisor's, without the :data:`DROP` options."""
    dropped = {f"ASYNCTASK_WORKER_{name.upper()}" for name in DROP}
    return {k: v for k, v in os.environ.items() if k not in dropped}


def worker_command(ctx: click.Context, *, drop: Sequence[str] = DROP) -> list[str]:
    """``python -m asynctask worker ...`` with the options ``ctx`` was given, except ``drop``.

    Only options given on the command line are written out: the rest come to the worker the
    same way they came here (its environment, :func:`child_env`, and the defaults), so a broker
    URL with a password set through ``ASYNCTASK_BROKER_URL`` never shows in a process list.
    """
    assert ctx.command.name is not None
    args = [sys.executable, "-m", "asynctask", ctx.command.name]
    for param in ctx.command.params:
        name = param.name
        if name is None or name in drop or not param.expose_value:
            continue
        if ctx.get_parameter_source(name) is not ParameterSource.COMMANDLINE:
            continue
        value = ctx.params.get(name)
        if isinstance(param, click.Argument):
            args.extend(str(v) for v in (value if isinstance(value, tuple | list) else (value,)))
            continue
        if not isinstance(param, click.Option) or value is None:
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            if param.secondary_opts:
                args.append(flag if value else max(param.secondary_opts, key=len))
            elif value:
                args.append(flag)
        elif param.multiple:
            for item in value:
                args.extend([flag, str(item)])
        else:
            args.extend([flag, str(value)])
    return args


def _send(process: Process, sig: signal.Signals) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it just exited
            process.send_signal(sig)


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"
