"""Who may pause, resume, cancel and roll back (issue 11, item 5): the run's requester and
the cluster's approvers, plus the operators the fleet file names — never anyone else, even
with no ``requesters`` configured (anyone may then *request* a run, not steer others')."""

from __future__ import annotations

import pytest

from tests.core.fakes import FakeWorld
from tests.core.test_real_clusters import approved
from workflows.errors import DecisionRefused
from workflows.lifecycle import decide
from workflows.model import Phase
from workflows.policy import ClusterPolicy

OPEN = ClusterPolicy(approvers=frozenset({"UAPPROVER"}))  # requesters empty: anyone requests
ONCALL = ClusterPolicy(approvers=frozenset({"UAPPROVER"}), operators=frozenset({"UONCALL"}))


@pytest.mark.parametrize("action", ["rollback", "pause"])
def test_a_bystander_may_not_steer_someone_elses_run(action: str) -> None:
    world = FakeWorld.seeded(["a"])
    run, now = approved(world)
    run = run.evolve(phase=Phase.MIGRATING)
    with pytest.raises(DecisionRefused) as refused:
        decide(run, action, "USTRANGER", OPEN, now)
    assert str(refused.value) == (
        f"Only the requester (<@UREQ>), an approver of `dev` (<@UAPPROVER>) may {action} run "
        f"`{run.id}`.")
    assert decide(run, action, "UREQ", OPEN, now).phase != run.phase  # the requester may
    assert decide(run, action, "UAPPROVER", OPEN, now).phase != run.phase


def test_operators_named_in_the_fleet_may_and_the_refusal_names_them() -> None:
    world = FakeWorld.seeded(["a"])
    run, now = approved(world)
    run = run.evolve(phase=Phase.MIGRATING)
    assert decide(run, "rollback", "UONCALL", ONCALL, now).phase == Phase.ROLLING_BACK
    with pytest.raises(DecisionRefused, match=r"or an operator \(<@UONCALL>\) may pause"):
        decide(run, "pause", "USTRANGER", ONCALL, now)
    with pytest.raises(DecisionRefused, match="Only approvers of `dev` may complete"):
        decide(run.evolve(phase=Phase.AWAITING_COMPLETION), "complete", "UONCALL", ONCALL,
               now)
