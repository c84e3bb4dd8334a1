"""asynctask's own workloads, where no peer has the feature (issue #18):

* **W4** fan-out: a warmed-up worker (the W1 settings at C = 100) runs one parent that spawns N
  no-op subtasks; they are enqueued with the parent's completion, run, and the parent's
  ``on_finish`` runs once after the last one. ``wall_s`` = the parent's publish call to the end
  of ``on_finish``; the phases in between are reported too.
* **W5** recovery: worker A (``--prefetch 0``, consuming only W5's queue) holds N running jobs
  that never end; a second worker B is up and idle (it has run a warm-up job on a queue A does
  not consume). A is SIGKILLed; ``recovery_s`` = the kill to the last of the N jobs finished on
  B. Both use a short ``--lease`` and ``--maintenance-interval``: A's leases run out at most one
  lease after its last heartbeat, and B's maintenance rescues them within one interval, so the
  expected bound is ``lease + maintenance``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from benchmarks.apps import asynctask_app
from benchmarks.apps.asynctask_app import FINISH_INDEX, PARENT_INDEX, W5_QUEUE, WARM_QUEUE, app

if TYPE_CHECKING:
    from benchmarks.workloads import Run

__all__ = ["w4", "w5"]


@runtime_checkable
class _WorkerCli(Protocol):
    """What W5 needs of the driver (``drive_asynctask`` runs as ``__main__``: no isinstance)."""

    def cli(self, *options: str) -> list[str]: ...


def _driver(run: Run) -> _WorkerCli:
    if not isinstance(run.driver, _WorkerCli):
        raise TypeError(f"W5 needs asynctask's driver, not {type(run.driver).__name__}")
    return run.driver


async def w4(run: Run) -> dict[str, Any]:
    n = run.args.jobs
    children = range(n)
    records = run.records
    fleet = run.start_worker()
    await run.warm_up(fleet)
    published = time.time()
    handle = await asynctask_app.fanout.publish(n)
    # Spawning and enqueueing N children shows no record for a while: allow for it.
    stall = max(run.args.stall, 60.0)
    done = await records.wait(
        lambda: FINISH_INDEX in records.runs, fleet, timeout=run.args.timeout, stall=stall
    )
    result: dict[str, Any] = {"jobs": n, "complete": done, **run.describe()}
    if not done:
        run.give_up(fleet, f"{records.seen(children)} of {n} children ran, on_finish did not")
        result.update(records.tally(children, complete=False))
        return result
    await asyncio.sleep(run.args.settle)
    records.poll()
    # on_finish's return value is the parent's result: how many children it saw, and succeeded.
    summary: Any = await app.result(handle.id, timeout=30)
    parent_start, parent_end = records.runs[PARENT_INDEX][0]
    finish_start, finish_end = records.runs[FINISH_INDEX][0]
    starts = sorted(runs[0][0] for i, runs in records.runs.items() if i >= 0)
    assert parent_end is not None and finish_end is not None
    result.update(
        wall_s=finish_end - published,
        to_parent_s=parent_start - published,
        spawn_s=parent_end - parent_start,
        enqueue_children_s=starts[0] - parent_end,
        children_s=starts[-1] - starts[0],
        children_per_s=(len(starts) - 1) / (starts[-1] - starts[0]) if starts[-1] > starts[0] else None,
        to_on_finish_s=finish_start - starts[-1],
        on_finish_s=finish_end - finish_start,
        on_finish_saw=summary,
    )
    result.update(records.tally(children))
    # The parent and on_finish run once each, too.
    result["duplicates"] += len(records.runs[PARENT_INDEX]) - 1 + len(records.runs[FINISH_INDEX]) - 1
    return result


async def w5(run: Run) -> dict[str, Any]:
    driver = _driver(run)
    n, lease, maintenance = run.args.jobs, run.args.lease, run.args.maintenance
    jobs = range(n)
    records = run.records
    common = ["-c", str(n), "--lease", str(lease), "--maintenance-interval", str(maintenance)]
    victim = run.start_worker(
        command=driver.cli(*common, "--prefetch", "0", "-q", W5_QUEUE),
        env={"BENCH_W5_ROLE": "victim"},
        label="victim",
        copies=1,
    )
    await app.publish_many([asynctask_app.hold.spec(i) for i in jobs])
    result: dict[str, Any] = {"jobs": n, "complete": False, "lease_s": lease, "maintenance_s": maintenance}
    if not await records.wait_for(jobs, victim, timeout=run.args.timeout, stall=run.args.stall):
        run.give_up(victim, f"the victim started {records.seen(jobs)} of {n} jobs")
        return result
    rescuer = run.start_worker(
        command=driver.cli(*common, "-q", W5_QUEUE, "-q", WARM_QUEUE),
        env={"BENCH_W5_ROLE": "rescuer"},
        label="rescuer",
        copies=1,
    )
    await asynctask_app.warm.publish(-1)
    if not await records.wait_for(range(-1, 0), rescuer, timeout=60, stall=60):
        raise RuntimeError(f"the rescuer never ran its warm-up job:\n{rescuer.tail()}")
    killed = time.time()
    victim.kill()
    done = await records.wait(
        lambda: records.finished() >= n, rescuer, timeout=run.args.timeout, stall=run.args.stall
    )
    result["complete"] = done
    if done:
        await asyncio.sleep(run.args.settle)
    else:
        run.give_up(rescuer, f"{records.finished()} of {n} recovered")
    records.poll()
    rescued = [(s, e) for i in jobs for s, e in records.runs.get(i, []) if e is not None]
    if rescued:
        result.update(
            recovery_s=max(e for _, e in rescued) - killed,
            first_rescue_s=min(s for s, _ in rescued) - killed,
            bound_s=lease + maintenance,
        )
    missing = sum(1 for i in jobs if not any(e is not None for _, e in records.runs.get(i, [])))
    # Each job runs twice by design (the victim's attempt, then the rescue): more is a duplicate.
    duplicates = sum(max(0, len(records.runs.get(i, [])) - 2) for i in jobs)
    result.update(
        lost=missing if done else 0,
        unfinished=0 if done else missing,
        duplicates=duplicates,
        runs=records.total,
    )
    return result
