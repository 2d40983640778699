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


def test_a_run_the_fleet_policy_started_is_steered_by_people_named_as_the_policy() -> None:
    """``POLICY_REQUESTER`` (``auto: patch|minor``) is no person: it is named as the fleet
    policy, any approver may approve its run (four eyes holds for each), and it steers
    nothing itself."""
    from workflows.model import POLICY_REQUESTER
    from workflows.policy import Role, authorise, mention

    assert mention(POLICY_REQUESTER) == "meshops (fleet policy)"
    assert mention("U0ALICE") == "<@U0ALICE>"
    strict = ClusterPolicy(approvers=frozenset({"UAPPROVER", "UAPPROVER2"}))
    for approver in sorted(strict.approvers):
        authorise(Role.APPROVER, "approve", approver, POLICY_REQUESTER, "dev", "r-1", strict)
    with pytest.raises(DecisionRefused) as refused:
        authorise(Role.PARTICIPANT, "pause", "USTRANGER", POLICY_REQUESTER, "dev", "r-1",
                  strict)
    assert "Only the requester (meshops (fleet policy))" in str(refused.value)


def test_a_requesters_group_with_no_members_restricts_to_its_approvers_not_to_anyone() -> None:
    from tests.conftest import ROOT
    from workers.config import load_fleet

    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    # prod-weu: requesters [S0PLATFORM], approvers [U0AAAAAAA, S0MESHLEADS]
    empty = fleet.policy("prod-weu", {"S0PLATFORM": frozenset(), "S0MESHLEADS": frozenset()})
    assert not empty.may_request("U0ZOE00001")
    assert empty.may_request("U0AAAAAAA")  # an approver may request
    member = fleet.policy("prod-weu", {"S0PLATFORM": frozenset({"U0ZOE00001"})})
    assert member.may_request("U0ZOE00001")
    assert fleet.policy("dev-weu", {}).may_request("U0ZOE00001")  # no requesters: anyone
