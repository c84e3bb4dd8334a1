"""Chains (tasqueue's Chain): jobs that run one after another, each seeing the previous result.

A chain is a container job ``asynctask.chain`` whose payload lists every link; only the first link
is enqueued at publish. Each link's success enqueues the next (atomically with its completion),
carrying its result, which the next link reads as ``ctx.prev_result``: the handler's return
value, or the result it stored with ``ctx.save`` when it returned ``None``. A failed link stops
the chain; the container's finisher then fails naming it, or, after the last link, succeeds with
the last link's result.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from asynctask.brokers.base import Broker
from asynctask.ctx import JobCtx
from asynctask.errors import ConfigurationError, Fail, JobNotFound
from asynctask.models import Job, JobStatus, NewJob
from asynctask.names import validate_job_id
from asynctask.options import JobBuilder, JobSpec
from asynctask.workflows.meta import Meta, build_members, container, list_children, overall_status, read_meta

__all__ = [
    "CHAIN_TASK",
    "ChainInfo",
    "LinkInfo",
    "chain_finisher",
    "chain_info",
    "next_link",
    "publish_chain",
]

CHAIN_TASK = "asynctask.chain"

_LINKS = msgspec.json.Decoder(list[NewJob])


class LinkInfo(msgspec.Struct, frozen=True):
    index: int
    task: str
    #: ``pending`` for links not enqueued yet.
    status: str
    error: str | None = None


class ChainInfo(msgspec.Struct, frozen=True):
    """What :meth:`App.get_chain` returns."""

    id: str
    status: str
    links: list[LinkInfo]
    #: The index of the link that failed, if one did.
    failed_link: int | None = None


async def chain_finisher(ctx: JobCtx) -> Any:
    """The finish phase of a chain: its result is the last link's; a failed link fails it."""
    links = await ctx.children()
    total = len(_LINKS.decode(ctx.job.payload))
    last = links[-1]
    if last.status is not JobStatus.SUCCEEDED:
        summary = (last.error or last.status.value).strip().splitlines()[-1]
        raise Fail(f"link {read_meta(last).index} ({last.task}) failed: {summary}")
    if len(links) != total:
        raise Fail(f"chain stopped after link {len(links) - 1} of {total}")
    return None if last.result is None else msgspec.json.decode(last.result)


async def next_link(broker: Broker, now: float, link: Job, meta: Meta, result: bytes | None) -> NewJob | None:
    """The chain link after ``link``, carrying its result, or ``None`` at the end."""
    assert meta.chain is not None
    chain = await broker.get(meta.chain)
    if chain is None:
        return None
    links = _LINKS.decode(chain.payload)
    index = meta.index + 1
    if index >= len(links):
        return None
    prev = msgspec.json.decode(result) if result is not None else None
    return msgspec.structs.replace(
        links[index], run_at=now, meta=Meta(chain=chain.id, index=index, prev=prev).encode()
    )


async def publish_chain(
    builder: JobBuilder, broker: Broker, specs: Sequence[JobSpec], chain_id: str | None
) -> str:
    """Enqueue a chain container (its payload: every link) and the first link."""
    jobs = build_members(builder, specs, "chain")
    if not jobs:
        raise ConfigurationError("a chain needs at least one job")
    cid = validate_job_id(chain_id) if chain_id is not None else f"chain-{uuid.uuid4().hex}"
    links = [msgspec.structs.replace(job, id=f"{cid}:{i}", parent_id=cid) for i, job in enumerate(jobs)]
    events = builder.events
    # Observed before the container is built, so that every link it lists carries the trace
    # context of this publish (only the first link is sent now).
    finish_links = events.publishing(links) if events else None
    boxes = [
        container(
            CHAIN_TASK, cid, jobs[0].queue, msgspec.json.encode(links), run_at=builder.clock(), pending=1
        )
    ]
    finish_box = events.publishing(boxes) if events else None
    sent = [boxes[0], msgspec.structs.replace(links[0], meta=Meta(chain=cid, index=0).encode())]
    error: BaseException | None = None
    try:
        created = await broker.enqueue(sent)
    except BaseException as exc:
        error = exc
        raise
    finally:
        for finish in (finish_box, finish_links):
            if finish is not None:
                finish(error)
    if events:
        events.published(sent, created)
    return cid


async def chain_info(broker: Broker, chain_id: str) -> ChainInfo:
    """The chain's overall status, each link's status, and which link failed."""
    chain = await broker.get(chain_id)
    if chain is None or chain.task != CHAIN_TASK:
        raise JobNotFound(f"no chain with id {chain_id!r}")
    specs = _LINKS.decode(chain.payload)
    found = {read_meta(j).index: j for j in await list_children(broker, chain.id)}
    links = []
    failed_link = None
    for index, spec in enumerate(specs):
        job = found.get(index)
        if job is None:
            links.append(LinkInfo(index=index, task=spec.task, status="pending"))
            continue
        links.append(LinkInfo(index=index, task=job.task, status=job.status.value, error=job.error))
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            failed_link = index
    return ChainInfo(id=chain.id, status=overall_status(chain), links=links, failed_link=failed_link)
