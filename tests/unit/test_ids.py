"""New job ids: well-formed, never repeated, and not shared with a forked child."""

from __future__ import annotations

import os
import re

from asynctask.ids import BATCH, new_job_id


def test_ids_are_32_hex_digits_and_never_repeat_across_refills() -> None:
    ids = [new_job_id() for _ in range(BATCH * 4 + 3)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_hand_out_its_parents_read_ahead_ids() -> None:
    new_job_id()  # the parent now holds ids read ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out without running the parent's cleanup
        os.close(read)
        os.write(write, "".join(new_job_id() for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    child_ids = {child[i : i + 32] for i in range(0, len(child), 32)}
    parent_ids = {new_job_id() for _ in range(BATCH)}
    assert len(child_ids) == 8
    assert not child_ids & parent_ids
