"""Durable workflows built on the broker's one primitive: a parent that waits for its children.

* **Subtasks** (Stepper): ``await ctx.spawn(task, payload)`` inside a handler. The children are
  enqueued atomically with the parent's successful completion (a parent that fails and retries
  leaves no children behind); the parent then ``waits``; when the last child finishes, the
  parent runs again in its *finish phase*, where the task's ``on_finish`` handler sees every
  child's result and error. Failed children do not stop ``on_finish``: it runs and sees them.
* **Groups** (tasqueue): a container job ``asynctask.group`` waits for its members; it succeeds
  only if they all do.
* **Chains** (tasqueue): a container ``asynctask.chain`` whose links run one after another; each
  link's success enqueues the next, which sees ``ctx.prev_result``; a failed link stops the chain
  and the chain's failure names it.
* **Pipelines** (gotasks): one job of steps, progress (next step, its input, a log of failures)
  persisted after every step so a retry resumes at the failed step.
* **Incremental tasks** (Stater): a step function called until it returns :class:`Done`, its
  state persisted after each step; ``app.pause(id)`` parks it after the current step.

Everything lives in the broker, so it survives a worker crash and works on every broker. One
module per concept: :mod:`.subtasks`, :mod:`.groups`, :mod:`.chains`, :mod:`.pipelines`,
:mod:`.incremental`; :mod:`.meta` is what they keep in a job's ``meta``, and :mod:`.hooks` is
the one place the worker calls into them. This package imports none of them itself, so the
context (which reads ``meta``) can sit below the rest.
"""
