"""Following ARM's long-running operations (workflows/operations.py): when the poll schedule
counts from, and how often a running operation is read."""

from __future__ import annotations

import pytest

from workflows.model import Run
from workflows.operations import OPERATION_FIRST_LOOK_S, OPERATION_LEAST_S, converge_revisions

from .fakes import FakeWorld

BOTH = ["asm-1-25", "asm-1-26"]


class CountingWorld(FakeWorld):
    """The fake world, counting ARM's reads: the cluster's GETs and the operation's polls."""

    gets = 0
    polls = 0

    def get_mesh(self, cluster: str):  # type: ignore[no-untyped-def]
        self.gets += 1
        return super().get_mesh(cluster)

    def operation_status(self, cluster: str, url: str):  # type: ignore[no-untyped-def]
        self.polls += 1
        return super().operation_status(cluster, url)


def run() -> Run:
    return Run(id="r-1", cluster="dev", requester="U1", channel="C1",
               canary_revision="asm-1-26", stable_revision="asm-1-25", created_at=100.0,
               updated_at=100.0)


def test_the_poll_schedule_counts_from_the_step_after_the_puts_answer() -> None:
    world = CountingWorld()
    r, wait = converge_revisions(run(), world, BOTH, 100.0)  # GET, PUT
    world.op_polls_left = 2  # ARM answers InProgress twice, then Succeeded
    assert wait == 0.0 and r.operation is not None and not r.operation.answered
    assert (world.gets, world.polls, world.writes["put:" + ",".join(BOTH)]) == (1, 0, 1)
    # the step chained at once, its start after ARM's answer: the schedule counts from
    # there (a schedule from the PUT step's start ran ahead of ARM's clock), nothing read
    r, wait = converge_revisions(r, world, BOTH, 100.3)
    assert wait == OPERATION_FIRST_LOOK_S and r.operation is not None
    assert (r.operation.answered, r.operation.started_at) == (True, 100.3)
    assert (world.gets, world.polls) == (1, 0)
    # the polls: while the operation runs, its own answer is the only read
    r, wait = converge_revisions(r, world, BOTH, 101.3)
    assert wait == OPERATION_LEAST_S and (world.gets, world.polls) == (1, 1)
    r, wait = converge_revisions(r, world, BOTH, 101.8)
    assert wait == OPERATION_LEAST_S and (world.gets, world.polls) == (1, 2)
    # done: the cluster is read to see it Succeeded with the revisions
    r, wait = converge_revisions(r, world, BOTH, 102.3)
    assert wait is None and (world.gets, world.polls) == (2, 3)
    assert world.writes["put:" + ",".join(BOTH)] == 1


def test_a_run_stored_before_the_answer_was_marked_is_polled_as_it_was() -> None:
    """Runs stored before ``answered`` existed count from their ``started_at``."""
    world = CountingWorld()
    r, _ = converge_revisions(run(), world, BOTH, 100.0)
    stored = r.model_dump(mode="json")
    del stored["operation"]["answered"]
    old = Run.model_validate(stored)
    assert old.operation is not None and old.operation.answered
    world.op_polls_left = 5
    _, wait = converge_revisions(old, world, BOTH, 102.3)  # polled at once
    assert world.polls == 1 and wait == pytest.approx(2.5 - 2.3)
