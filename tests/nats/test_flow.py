"""Flow control on the NATS broker with several brokers racing on one bucket.

Each broker has its own connection and its own index, as separate worker processes would: the
limits hold only through the flow records' compare-and-set, never through shared memory. (The
rules themselves, one broker at a time, are the contract suite's ``suite/flow.py``.)
"""

from __future__ import annotations

import anyio
import pytest

from asynctask.brokers.nats import NatsBroker, flow, flowrecords
from asynctask.flow import Claimed, QueueSettings, RateLimit, TaskLimit
from asynctask.models import Job, JobStatus, NewJob, Outcome, OutcomeKind
from asynctask.testing import FakeClock, wait_until
from tests.nats.conftest import BrokerMaker

pytestmark = pytest.mark.anyio

LEASE = 30.0


def new(clock: FakeClock, job_id: str, **kw: object) -> NewJob:
    fields: dict[str, object] = {"id": job_id, "task": "t", "queue": "q", "payload": b"{}", "run_at": clock()}
    fields.update(kw)
    return NewJob(**fields)  # type: ignore[arg-type]


def done(job: Job) -> Outcome:
    return Outcome(job_id=job.id, token=job.token, kind=OutcomeKind.SUCCEEDED)


async def test_racing_brokers_never_exceed_the_concurrency_limits(
    brokers: BrokerMaker, clock: FakeClock
) -> None:
    """Task ``t`` limited to 3 in the whole cluster, queue ``q0`` to 2; three brokers, each
    claiming from its own queue (so they never race for the same jobs: only the flow records
    stand between them) and finishing as fast as they can. After every claim, the jobs claimed
    and not yet reported stay within both limits."""
    async with brokers(clock) as a, brokers(clock) as b, brokers(clock) as c:
        await a.set_queue_limits("q0", concurrency=2, rate=None)
        jobs = [new(clock, f"t{q}-{i:02d}", queue=f"q{q}") for q in range(3) for i in range(20)]
        await a.enqueue(jobs + [new(clock, f"u{i:02d}", task="u", queue="q0") for i in range(10)])
        limits = {"t": TaskLimit(concurrency=3)}
        running: dict[str, Job] = {}
        finished: list[str] = []
        peak = 0

        async def work(broker: NatsBroker, queue: str) -> None:
            nonlocal peak
            while len(finished) < 70:
                claimed = await broker.claim(queue, 3, lease=LEASE, worker=queue, limits=limits)
                for job in claimed:
                    assert job.id not in running, "a job was claimed twice"
                    running[job.id] = job
                of_t = sum(1 for j in running.values() if j.task == "t")
                of_q0 = sum(1 for j in running.values() if j.queue == "q0")
                assert of_t <= 3 and of_q0 <= 2, f"limits exceeded: {sorted(running)}"
                peak = max(peak, of_t)
                await anyio.sleep(0)
                for job in claimed:
                    del running[job.id]  # before the outcome is stored: never counted too few
                    assert await broker.complete([done(job)]) == [True]
                    finished.append(job.id)
                if not claimed:
                    held = isinstance(claimed, Claimed) and claimed.held_back
                    await broker.wait_for_jobs(queue, 0.02, held=held)

        for broker in (a, b, c):  # each one's watch has delivered the queue's settings
            await wait_until(broker.configured_queues, interval=0.01)
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for queue, broker in (("q0", a), ("q1", b), ("q2", c)):
                    tg.start_soon(work, broker, queue)
        assert len(finished) == 70 and len(set(finished)) == 70
        assert peak == 3, "the brokers did run jobs of t side by side"


async def test_racing_brokers_share_one_token_bucket(brokers: BrokerMaker, clock: FakeClock) -> None:
    async with brokers(clock) as a, brokers(clock) as b, brokers(clock) as c:
        await a.set_queue_limits("q", concurrency=None, rate=RateLimit(5, per=1.0, burst=5))
        await a.enqueue([new(clock, f"j{i:02d}") for i in range(30)])
        limits = {"t": TaskLimit(rate=RateLimit(100, per=1.0, burst=4))}  # the task's bucket is smaller
        for broker in (a, b, c):
            await wait_until(broker.configured_queues, interval=0.01)
        got: list[Job] = []

        async def grab(broker: NatsBroker, name: str) -> None:
            for _ in range(5):
                got.extend(await broker.claim("q", 2, lease=LEASE, worker=name, limits=limits))

        async with anyio.create_task_group() as tg:
            for name, broker in (("a", a), ("b", b), ("c", c)):
                tg.start_soon(grab, broker, name)
        assert len(got) == 4, "the task's burst of 4 tokens, handed out once across the brokers"
        clock.advance(1.0)
        got.clear()
        async with anyio.create_task_group() as tg:
            for name, broker in (("a", a), ("b", b), ("c", c)):
                tg.start_soon(grab, broker, name)
        assert len(got) == 4
        assert len({j.id for j in got}) == 4


async def test_racing_publishes_store_one_job_per_unique_key(brokers: BrokerMaker, clock: FakeClock) -> None:
    async with brokers(clock) as a, brokers(clock) as b, brokers(clock) as c:
        results: list[bool] = []

        async def publish(broker: NatsBroker, name: str) -> None:
            for i in range(5):
                results.extend(await broker.enqueue([new(clock, f"{name}{i}", unique_key="k")]))

        async with anyio.create_task_group() as tg:
            for name, broker in (("a", a), ("b", b), ("c", c)):
                tg.start_soon(publish, broker, name)
        assert results.count(True) == 1
        holder = await c.find_unique("k")
        assert holder is not None and holder.unique_key == "k"
        stored = [await a.get(f"{n}{i}") for n in "abc" for i in range(5)]
        assert [j.id for j in stored if j is not None] == [holder.id]


async def test_a_settings_change_wakes_another_brokers_held_wait(
    brokers: BrokerMaker, clock: FakeClock
) -> None:
    async with brokers(clock) as admin, brokers(clock) as worker:
        await admin.set_queue_paused("q", True)
        await admin.enqueue([new(clock, "a")])
        await wait_until(worker.configured_queues, interval=0.01)
        held = await worker.claim("q", 5, lease=LEASE, worker="w")
        assert held == [] and isinstance(held, Claimed) and held.held_back
        woken = anyio.Event()

        async def wait() -> None:
            await worker.wait_for_jobs("q", 60.0, held=True)
            woken.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.sleep(0.05)
                assert not woken.is_set(), "a held wait ignores the ready job"
                assert await admin.set_queue_paused("q", False) == QueueSettings()
                await woken.wait()
        assert [j.id for j in await worker.claim("q", 5, lease=LEASE, worker="w")] == ["a"]
        assert await worker.queue_settings("q") == QueueSettings()


async def test_a_claim_without_limits_or_settings_takes_the_plain_path(
    brokers: BrokerMaker, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with brokers(clock) as broker:
        await broker.set_queue_limits("limited", concurrency=1, rate=None)
        await broker.enqueue([new(clock, "a"), new(clock, "b", queue="limited")])

        async def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("the flow path was taken")

        monkeypatch.setattr(flow, "claim", refuse)
        assert [j.id for j in await broker.claim("q", 5, lease=LEASE, worker="w")] == ["a"]
        with pytest.raises(AssertionError, match="flow path"):
            await broker.claim("limited", 5, lease=LEASE, worker="w")


async def test_a_finished_holder_releases_its_key_to_another_broker(
    brokers: BrokerMaker, clock: FakeClock
) -> None:
    async with brokers(clock) as a, brokers(clock) as b:
        assert await a.enqueue([new(clock, "first", unique_key="k")]) == [True]
        assert await b.enqueue([new(clock, "second", unique_key="k")]) == [False]
        [job] = await a.claim("q", 1, lease=LEASE, worker="a")
        assert await a.complete([done(job)]) == [True]
        assert await b.enqueue([new(clock, "second", unique_key="k")]) == [True]
        second = await a.get("second")
        assert second is not None and second.status is JobStatus.QUEUED and second.unique_key == "k"


async def test_deleting_or_pruning_the_holder_removes_its_key_record(
    brokers: BrokerMaker, clock: FakeClock
) -> None:
    async with brokers(clock) as broker:
        store, layout = broker.store, broker.layout

        async def names() -> str | None:
            data, _ = await store.read_record(layout.unique_key("k"))
            record = flowrecords.decode_unique(data) if data else None
            return None if record is None else record.job_id

        await broker.enqueue([new(clock, "a", unique_key="k")])
        assert await names() == "a"
        assert await broker.delete("a")
        assert await names() is None, "the deleted holder's record went with it"
        await broker.enqueue([new(clock, "b", unique_key="k")])
        [job] = await broker.claim("q", 1, lease=LEASE, worker="w")
        expired = Outcome(job_id=job.id, token=job.token, kind=OutcomeKind.SUCCEEDED, expires_at=clock() + 1)
        assert await broker.complete([expired]) == [True]
        await broker.enqueue([new(clock, "c", unique_key="k")])
        clock.advance(2)
        assert await broker.prune(10) == 1
        assert await names() == "c", "a record naming a newer holder stays"
        await broker.cancel("c", expires_at=clock() + 1)
        clock.advance(2)
        assert await broker.prune(10) == 1
        assert await names() is None
        assert await broker.enqueue([new(clock, "d", unique_key="k")]) == [True]


async def test_racing_claims_with_limits_that_spend_nothing_take_each_job_once(
    brokers: BrokerMaker, clock: FakeClock
) -> None:
    """Workers pass their registry's limits with every claim (a periodic task's concurrency of 1,
    say) also where no job of the queue is limited: races then cost single jobs, not claims."""
    async with brokers(clock) as one, brokers(clock) as two:
        await one.enqueue([new(clock, f"j{i:03d}") for i in range(200)])
        limits = {"tick": TaskLimit(concurrency=1)}
        taken: dict[str, list[str]] = {"one": [], "two": []}

        async def drain(name: str, broker: NatsBroker) -> None:
            while sum(len(v) for v in taken.values()) < 200:
                batch = await broker.claim("q", 17, lease=LEASE, worker=name, limits=limits)
                assert not (isinstance(batch, Claimed) and batch.held_back), "nothing is held back"
                taken[name] += [j.id for j in batch]
                if not batch:
                    await broker.wait_for_jobs("q", 0.05)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain, "one", one)
                tg.start_soon(drain, "two", two)
        everything = taken["one"] + taken["two"]
        assert sorted(everything) == [f"j{i:03d}" for i in range(200)], "each job claimed once"
