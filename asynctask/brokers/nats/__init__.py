"""The NATS JetStream broker: job records in a key-value bucket, every change compare-and-set.

``nats://host:4222`` (``tls://`` for TLS; options in :mod:`.config`). Needs nats-server 2.12.1+
with JetStream, and ``pip install 'asynctask[nats]'`` (nats-py).

Design
======

**One bucket of job records.** Each job is one record in the key-value bucket
``<prefix>_jobs`` (key ``j.<id>``, the whole :class:`~asynctask.models.Job` in MessagePack; see
:mod:`.layout`, :mod:`.store`). The key's revision (the stream sequence of its last write) fences
every state change: each write says which revision it expects and the server refuses it if the
record moved on (:mod:`.tx`). On top of that, the job's own fencing token, bumped by every claim,
makes a worker's outcome, heartbeat or save apply only while it still holds the job
(:mod:`asynctask.brokers.transitions`). Publishing is create-if-absent (expected revision 0); an
id whose job expired is taken over, its token still counting up.

**Atomic batches for what changes together** (nats-server 2.12's atomic publish). A group and
its members, an outcome with the children it spawns and the parent counters they move, a child
finishing and its parent's ``pending``: each is one batch, stored whole or not at all, so a
parent never waits for a child that was not created nor misses one that finished. A batch holds
up to 1,000 records; bigger publishes and spawns go in chunks (:mod:`.publishing`,
:mod:`.outcomes`).

**A local index, fed by a watch, decides; the server's revision checks arbitrate.** JetStream
orders nothing but by stream sequence, while the contract claims by priority, then ``run_at``,
then publish order, and judges delays, leases and expiry by the broker's injected clock (a fake
one in tests), never by the server's. So each broker that claims keeps an index of the bucket
(:mod:`.index`), fed by an ordered pull consumer (:mod:`.watch`: a snapshot, then every change)
and by its own writes at once. Claims, promotions of due jobs, lease rescue and pruning are
picked from the index and written under the revisions it saw (:mod:`.claiming`): a stale index
costs a failed compare-and-set, never a wrong write. Idle workers wait on the watch's pull
request, so a publish anywhere wakes them through the server (``push_wakeups``); nothing polls.

Why not a work-queue stream with ack-wait leases? Its messages come in publish order, not by
priority; ack-wait, redelivery delays and message schedules run on server time, where the
contract's delays, leases and expiry run on the app's clock; and a message acked or redelivered
is not a record that can be read, listed, paused, fenced and counted. The record bucket keeps
all of that in one place, and the watch still gives server-pushed wake-ups.

**Flow control and unique jobs live in the same bucket** (:mod:`.flow`, :mod:`.unique`,
:mod:`.flowrecords`). A queue's settings and token bucket are the record ``q.<queue>``, a task's
token bucket ``t.<task>``; both are kept in the index. A claim of a queue with settings, or with
task limits, decides from the index and writes its jobs together with the flow records it
spends in one atomic batch under the revisions it decided on: two workers claiming at once never
take more than a limit between them (the loser catches up and decides again). Running counts
come from the index, which is exact enough because every claim counted by a limit writes that
limit's record, and a claim first makes sure its index holds every change up to the record's
revision (the reasoning is in :mod:`.flow`). A queue never configured, claimed without limits,
costs what it always did. A unique key is the record ``u.<key>`` naming its holder, written in
the same batch as every publish, spawn or retry that takes the key; finishing releases the key
without a write (the holder is checked when the key is wanted).

Reads of one job (``get``) go to the stream leader, so a job is readable as soon as its publish
returns; listings come from the index. A delete writes a purge marker that expires by itself.

Failure cases
=============

* **A worker dies**: its leases lapse and any broker's maintenance re-queues its jobs (or fails
  them with no retries left); nothing is lost.
* **An answer is lost** (the server or the cluster leader dies after storing a write, before
  acknowledging it): a claim stored but never learned runs once its lease lapses; an outcome
  stored but reported as failed is retried, found already applied, and reported rejected.
  At-least-once either way.
* **The server restarts** (same store): requests fail with
  :class:`~asynctask.errors.BrokerUnavailable` until nats-py has reconnected by itself; the
  watch notices (a reconnect, a sequence gap, missing heartbeats) and rebuilds the index from a
  fresh snapshot before the next decision.
* **A cluster loses the bucket's leader**: writes stop for the few seconds an election takes,
  then resume on the new leader; jobs whose leases are shorter than the outage may run twice.
* **Workers race**: two claims for the same job both write; one wins, the other moves on to the
  next job. Children of one parent finishing in one process count out in one write; across
  processes their parent counter is retried on conflict.

Limits
======

* Every broker that claims (each worker process) holds the whole bucket in memory (every job,
  finished ones until pruned) and receives every change: memory and traffic grow with jobs x
  workers. Sized for up to some 10^5-10^6 unfinished-or-kept jobs, not for tens of millions.
* One bucket is one Raft group: its leader takes every write. Apps with separate prefixes use
  separate buckets, and so scale apart.
* Priorities are exact within one broker's view; workers racing take the best jobs each sees,
  as with ``SKIP LOCKED``.
* A record (payload, state, result and error together) must fit the server's ``max_payload``
  (1 MiB by default): a bigger one raises :class:`~asynctask.errors.PayloadTooLarge`.
* No transactional publish (``connection=``).
* Flow limits are enforced from the moment a worker's index holds the queue's settings (the
  watch delivers them within milliseconds of the change); claims already deciding may still
  take jobs under the old settings. A limited claim takes at most 499 jobs.
* Claims racing on one limited queue or task take turns through its record: each conflict costs
  the loser a catch-up and a new decision, so very many workers claiming one limited queue at
  once spend more round trips per job than on an unlimited one.
"""

from __future__ import annotations

from asynctask.brokers.nats.broker import NatsBroker

__all__ = ["NatsBroker"]
