"""The ``campaign`` workflow kind (workflows/kinds/campaign.py), driven through the real
lifecycle (``tick``/``decide``) with a fake CampaignApi that stands for the worker: it holds
the cluster runs the campaign starts as ``Run`` values the tests advance by hand, and takes
decisions on them with the real ``lifecycle.decide`` under each cluster's policy."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, cast

import pytest

from workflows import lifecycle
from workflows.campaign import ClusterFacts, StageSpec
from workflows.commands import parse
from workflows.errors import (
    ClusterBusy,
    DecisionRefused,
    MetricsUnavailable,
    RunBusy,
    RunNotFound,
    TemporaryError,
)
from workflows.kind import StartRun, StepResult, kind_of
from workflows.maintenance import MaintenanceWindow, parse_config_window
from workflows.model import FLEET_SCOPE, Phase, Run, Wave
from workflows.policy import ClusterPolicy
from workflows.ports import ClusterPorts, MeshState, RevisionProfile

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC).timestamp()  # a Thursday, noon
REGION = (
    RevisionProfile("asm-1-25", ("asm-1-26",), ("1.30", "1.31")),
    RevisionProfile("asm-1-26", ("asm-1-27",), ("1.30", "1.31")),
    RevisionProfile("asm-1-27", ("asm-1-28",), ("1.30", "1.31")),
    RevisionProfile("asm-1-28", (), ("1.30", "1.31")),
)
#: the fleet's campaign approvers; the requester is not one of them (four eyes)
POLICY = ClusterPolicy(approvers=frozenset({"UAPP", "UAPP2"}))
#: every daily window in these tests: 03:00–07:00 UTC
DAILY_3AM = parse_config_window({"schedule": {"daily": {"interval_days": 1}},
                                 "duration_hours": 4, "start_time": "03:00",
                                 "start_date": "2026-11-01"})


def at(hour: int, minute: int = 0, second: int = 0, day: int = 3) -> float:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=UTC).timestamp()


def facts(name: str, revision: str | None = "asm-1-26", k8s: str = "1.30.4",
          window: MaintenanceWindow | None = None) -> ClusterFacts:
    mesh = (MeshState("Istio", [revision], "Succeeded", k8s, "westus2") if revision
            else MeshState("Disabled", [], "Succeeded", k8s, "westus2"))
    upgrades = next((p.upgrades for p in REGION if p.revision == revision), ())
    return ClusterFacts(name=name, location="westus2", labels={}, mesh=mesh,
                        upgrades=upgrades, profiles=REGION, window=window,
                        window_source="AKS aksManagedAutoUpgradeSchedule" if window else "")


class FakeCampaignApi:
    """The worker's side of a campaign, in memory (see the module docstring)."""

    def __init__(self, fleet: list[ClusterFacts], stages: list[StageSpec]) -> None:
        self.fleet = fleet
        self.rings = stages
        self.children: dict[str, Run] = {}
        self.started: list[tuple[str, str]] = []
        self.decided: list[tuple[str, str, str]] = []
        self.busy: set[str] = set()
        self.refuse_start: set[str] = set()
        self.run_busy = False
        self.cluster_approvers: dict[str, frozenset[str]] = {}
        self.regressions: dict[str, str] = {}
        self.soak_calls: list[tuple[str, list[str], float, float]] = []
        self.metrics_down = False
        self.windows_down: set[str] = set()
        self.now = T0

    def facts(self) -> list[ClusterFacts]:
        return list(self.fleet)

    def stages(self) -> list[StageSpec]:
        return list(self.rings)

    def end_of_support(self) -> dict[str, date | None]:
        return {}

    def window(self, cluster: str) -> tuple[MaintenanceWindow | None, str]:
        if cluster in self.windows_down:
            raise TemporaryError("ARM answered 503")
        f = next(f for f in self.fleet if f.name == cluster)
        return f.window, f.window_source

    def find_child(self, campaign_id: str, cluster: str, revision: str) -> Run | None:
        mine = [r for r in self.children.values() if r.params.get("campaign") == campaign_id
                and r.cluster == cluster and r.canary_revision == revision]
        return mine[-1] if mine else None

    def start_child(self, campaign: Run, cluster: str, revision: str) -> Run:
        if cluster in self.busy:
            raise ClusterBusy(cluster, "r-0ther0")
        if cluster in self.refuse_start:
            raise DecisionRefused(f"<@{campaign.requester}> may not request runs on {cluster}")
        rid = f"r-{len(self.children) + 1:06x}"
        child = Run(id=rid, kind="upgrade", cluster=cluster, requester=campaign.requester,
                    channel=f"C-{cluster}", canary_revision=revision, created_at=self.now,
                    updated_at=self.now, params={"campaign": campaign.id})
        self.children[rid] = child
        self.started.append((cluster, revision))
        return child

    def get_run(self, run_id: str) -> Run:
        if run_id not in self.children:
            raise RunNotFound(run_id)
        return self.children[run_id]

    def decide(self, run_id: str, action: str, user: str) -> Run:
        if self.run_busy:
            raise RunBusy("a step is running")
        child = self.children[run_id]
        self.decided.append((child.cluster, action, user))
        policy = ClusterPolicy(approvers=self.cluster_approvers.get(
            child.cluster, frozenset({"UAPP", "UAPP2"})))
        child = lifecycle.decide(child, action, user, policy, self.now)
        self.children[run_id] = child
        return child

    def soak_check(self, cluster: str, namespaces: list[str], start: float, end: float
                   ) -> str | None:
        self.soak_calls.append((cluster, namespaces, start, end))
        if self.metrics_down:
            raise MetricsUnavailable("Prometheus answered 503")
        return self.regressions.get(cluster)

    # -- what happens in a cluster, by hand --------------------------------------------

    def child_of(self, cluster: str) -> Run:
        return [r for r in self.children.values() if r.cluster == cluster][-1]

    def move(self, cluster: str, phase: Phase, outcome: str = "",
             namespaces: tuple[str, ...] = ("shop",)) -> None:
        child = self.child_of(cluster)
        if phase == Phase.COMPLETED:
            child = child.evolve(waves=[Wave(index=0, namespaces=list(namespaces),
                                             labelled=True)])
        self.children[child.id] = child.to(phase, self.now, outcome=outcome or phase.value)


class Ports:
    def __init__(self, api: FakeCampaignApi) -> None:
        self.campaign = api


class World:
    def __init__(self, fleet: list[ClusterFacts], stages: list[StageSpec],
                 revision: str = "asm-1-27") -> None:
        self.api = FakeCampaignApi(fleet, stages)
        self.ports = cast(ClusterPorts, Ports(self.api))
        self.run = Run(id="r-ca3a16", kind="campaign", cluster=FLEET_SCOPE, requester="UREQ",
                       channel="CFLEET", canary_revision=revision, created_at=T0,
                       updated_at=T0)
        self.last: StepResult | None = None

    def tick(self, now: float | None = None) -> StepResult:
        if now is not None:
            self.api.now = now
        self.last = lifecycle.tick(self.run, self.ports, self.api.now)
        self.run = self.last.run
        return self.last

    def decide(self, action: str, user: str = "UAPP") -> Run:
        self.run = lifecycle.decide(self.run, action, user, POLICY, self.api.now)
        return self.run

    def entry(self, cluster: str) -> dict[str, Any]:
        return next(e for s in self.run.params["stages"] for e in s["clusters"]
                    if e["cluster"] == cluster)

    def stage(self, name: str) -> dict[str, Any]:
        return next(s for s in self.run.params["stages"] if s["name"] == name)

    def history(self) -> str:
        return "\n".join(e.text for e in self.run.history)


def two_rings(dev: dict[str, Any] | None = None, prod: dict[str, Any] | None = None,
              prod_window: MaintenanceWindow | None = None) -> World:
    """dev: dev-a (one hop), dev-b (two hops); prod: prod-a (one hop), prod-b (blocked by
    its Kubernetes); lonely in no stage."""
    fleet = [facts("dev-a"), facts("dev-b", "asm-1-25"),
             facts("prod-a", window=prod_window), facts("prod-b", k8s="1.29.9"),
             facts("lonely")]
    stages = [StageSpec("dev", clusters=("dev-a", "dev-b"), **(dev or {})),
              StageSpec("prod", clusters=("prod-a", "prod-b"), **(prod or {}))]
    return World(fleet, stages)


def approved(w: World) -> World:
    w.tick()
    assert w.run.phase == Phase.AWAITING_APPROVAL
    w.decide("approve")
    return w


# ------------------------------------------------------------------ planning


def test_planning_stores_the_plan_and_waits_for_approval() -> None:
    w = two_rings(dev={"max_concurrency": 2})
    result = w.tick()
    assert w.run.phase == Phase.AWAITING_APPROVAL and result.recheck_after is None
    p = w.run.params
    assert p["revision"] == "asm-1-27" and "asked for" in p["why"] and p["stage"] == 0
    assert [s["name"] for s in p["stages"]] == ["dev", "prod"]
    dev = w.stage("dev")
    assert (dev["max_concurrency"], dev["state"], dev["failures"]) == (2, "pending", 0)
    assert w.entry("dev-a")["status"] == "pending" and w.entry("dev-a")["hops"] == ["asm-1-27"]
    assert w.entry("dev-b")["hops"] == ["asm-1-26", "asm-1-27"]
    assert w.entry("prod-b")["status"] == "blocked"
    assert "Kubernetes" in w.entry("prod-b")["reason"]
    assert p["unstaged"] == [{"cluster": "lonely", "status": "upgrade", "reason": ""}]
    assert w.api.started == []  # nothing moves before the approval
    assert "asm-1-27 was asked for" in w.history()


def test_no_revision_asked_the_plan_proposes_one() -> None:
    w = two_rings()
    w.run = w.run.evolve(canary_revision="")
    kind = kind_of(w.run)
    assert kind.title(w.run) == "Fleet campaign"
    w.tick()
    # the region offers 25..28: AKS's default is n-1, asm-1-27
    assert w.run.canary_revision == "asm-1-27" == w.run.params["revision"]
    assert "default" in w.run.params["why"]
    assert kind.title(w.run) == "Campaign to asm-1-27"


def test_nothing_to_upgrade_completes_at_once() -> None:
    w = World([facts("dev-a", "asm-1-27"), facts("dev-b", None)],
              [StageSpec("dev", clusters=("dev-a", "dev-b"))])
    w.tick()
    assert w.run.phase == Phase.COMPLETED
    assert w.run.outcome.startswith("nothing to upgrade: ")
    assert "1 already on asm-1-27" in w.run.outcome and "1 without a mesh" in w.run.outcome


def test_a_planner_error_fails_the_run_with_its_reason() -> None:
    w = World([facts("dev-a")], [StageSpec("dev", clusters=("dev-a", "ghost"))])
    w.tick()
    assert w.run.phase == Phase.FAILED and "`ghost`" in w.run.outcome
    w = World([facts("dev-a")], [StageSpec("dev", clusters=("dev-a",))], revision="1.27")
    w.tick()
    assert w.run.phase == Phase.FAILED and "asm-1-27" in w.run.outcome


def test_a_policy_campaign_plans_only_the_clusters_it_names() -> None:
    """``params.only`` (a campaign the ``auto: minor`` policy started): the other clusters
    are left out of the plan, stages keep the names of the named ones; a stage naming a
    cluster not in the fleet still fails the plan."""
    w = two_rings()
    w.run = w.run.evolve(params={"only": ["dev-b", "prod-a", "lonely"]})
    w.tick()
    assert w.run.phase == Phase.AWAITING_APPROVAL
    planned = {e["cluster"]: s["name"] for s in w.run.params["stages"] for e in s["clusters"]}
    assert planned == {"dev-b": "dev", "prod-a": "prod"}
    assert w.run.params["unstaged"] == [{"cluster": "lonely", "status": "upgrade",
                                         "reason": ""}]
    assert w.run.params["only"] == ["dev-b", "prod-a", "lonely"]
    assert "2 clusters to upgrade" in w.history()
    w = World([facts("dev-a"), facts("dev-b")], [StageSpec("dev", clusters=("dev-a", "ghost"))])
    w.run = w.run.evolve(params={"only": ["dev-b"]})
    w.tick()
    assert w.run.phase == Phase.FAILED and "`ghost`" in w.run.outcome


# ------------------------------------------------------------------ migrating


def test_approve_starts_at_most_max_concurrency_of_the_first_stage_only() -> None:
    w = approved(two_rings())
    assert w.run.phase == Phase.MIGRATING and w.run.params["approver"] == "UAPP"
    w.tick()
    assert w.api.started == [("dev-a", "asm-1-27")]
    assert w.entry("dev-a")["status"] == "running"
    assert w.entry("dev-a")["run"] == w.api.child_of("dev-a").id
    assert w.entry("dev-b")["status"] == "pending"
    assert f"started run {w.entry('dev-a')['run']} on dev-a (asm-1-26 → asm-1-27)" \
        in w.history()
    again = w.tick()  # only observed: nothing new, nothing written
    assert w.api.started == [("dev-a", "asm-1-27")]
    assert again.changed is False and again.recheck_after == 3.0


def test_the_campaign_approves_its_children_and_a_two_hop_cluster_goes_hop_by_hop() -> None:
    w = approved(two_rings(dev={"max_concurrency": 2}))
    w.tick()
    assert sorted(w.api.started) == [("dev-a", "asm-1-27"), ("dev-b", "asm-1-26")]
    w.api.move("dev-b", Phase.AWAITING_APPROVAL)
    w.tick()
    assert ("dev-b", "approve", "UAPP") in w.api.decided
    assert w.api.child_of("dev-b").phase == Phase.STARTING_CANARY
    first = w.api.child_of("dev-b").id
    w.api.move("dev-b", Phase.COMPLETED, namespaces=("shop", "cart"))
    w.tick()  # the first hop is observed done and the second starts in the same tick
    e = w.entry("dev-b")
    assert e["hop"] == 1
    assert w.api.started[-1] == ("dev-b", "asm-1-27")
    assert e["runs"] == [first, w.api.child_of("dev-b").id] and e["status"] == "running"
    w.api.now = T0 + 600
    w.api.move("dev-b", Phase.COMPLETED, namespaces=("cart", "pay"))
    w.tick()
    e = w.entry("dev-b")
    assert e["status"] == "done" and e["done_at"] == T0 + 600
    assert e["namespaces"] == ["shop", "cart", "pay"]
    assert not any(c == "prod-a" for c, _ in w.api.started)  # dev-a still runs


def test_failures_over_the_budget_halt_and_the_next_stage_never_starts() -> None:
    w = approved(two_rings(dev={"max_concurrency": 2, "max_failures": 0}))
    w.tick()
    w.api.move("dev-a", Phase.ROLLED_BACK, outcome="gate FAIL: errors 3% in shop")
    w.tick()
    assert w.run.phase == Phase.HALTED and w.last is not None
    assert w.last.recheck_after is None
    e = w.entry("dev-a")
    assert e["status"] == "failed" and "rolled back: gate FAIL" in e["reason"]
    assert w.stage("dev")["state"] == "halted" and w.stage("dev")["failures"] == 1
    assert "halted: 1 cluster of stage dev failed (budget 0); later stages untouched" \
        in w.run.pause_reason
    w.api.move("dev-b", Phase.COMPLETED)  # a finished sibling moves nothing while halted
    for _ in range(3):
        w.tick()
    assert w.run.phase == Phase.HALTED
    assert not any(c.startswith("prod") for c, _ in w.api.started)


def test_resume_after_a_halt_accepts_the_failures_and_goes_on() -> None:
    w = approved(two_rings(dev={"max_failures": 0}))
    w.tick()
    w.api.move("dev-a", Phase.FAILED, outcome="istiod-asm-1-27 not available")
    w.tick()
    assert w.run.phase == Phase.HALTED
    with pytest.raises(DecisionRefused, match="Only approvers"):
        w.decide("resume", user="UREQ")
    w.decide("resume", user="UAPP2")
    assert w.run.phase == Phase.MIGRATING
    assert w.stage("dev")["failures"] == 0 and w.stage("dev")["state"] == "running"
    assert "the 1 failure of stage dev accepted" in w.history()
    w.tick()
    assert w.api.started[-1] == ("dev-b", "asm-1-26")


def test_a_stage_approval_parks_the_campaign_and_approving_it_goes_on() -> None:
    w = approved(two_rings(dev={"max_concurrency": 2}, prod={"approval": True}))
    w.tick()
    w.api.move("dev-a", Phase.COMPLETED)
    w.api.move("dev-b", Phase.COMPLETED)
    w.tick()  # dev-b's second hop
    w.api.move("dev-b", Phase.COMPLETED)
    w.tick()  # dev done → next stage
    w.tick()  # prod awaits its approval
    assert w.run.phase == Phase.AWAITING_WAVE_APPROVAL
    assert "stage prod awaits approval" in w.history()
    assert not any(c.startswith("prod") for c, _ in w.api.started)
    assert kind_of(w.run).gate(w.run) == "stage-prod"
    assert "awaiting approval" in kind_of(w.run).body(w.run)
    w.decide("approve", user="UAPP2")
    assert w.run.phase == Phase.MIGRATING
    assert w.run.approvals[-1].gate == "stage-prod"
    assert w.stage("prod")["approved_by"] == "UAPP2"
    w.tick()
    assert w.api.started[-1] == ("prod-a", "asm-1-27")
    w.api.move("prod-a", Phase.AWAITING_APPROVAL)
    w.tick()  # the stage's approver approves its children
    assert w.api.decided[-1] == ("prod-a", "approve", "UAPP2")


def test_outside_its_window_a_cluster_waits_and_starts_when_it_opens() -> None:
    w = World([facts("prod-a", window=DAILY_3AM)], [StageSpec("prod", clusters=("prod-a",))])
    w.api.now = at(2, 59, 30)
    approved(w)
    result = w.tick()
    e = w.entry("prod-a")
    assert w.api.started == [] and e["status"] == "pending"
    assert e["window_opens"] == at(3)
    assert result.recheck_after == pytest.approx(30.0)
    assert "prod-a waits for its maintenance window, opening 2026-12-03 03:00Z" in w.history()
    assert "prod-a: waiting for its window (opens 2026-12-03 03:00Z)" \
        in kind_of(w.run).body(w.run)
    lines = len(w.run.history)
    w.tick(at(2, 59, 45))
    assert len(w.run.history) == lines  # said once
    w.tick(at(3, 0, 10))
    assert w.api.started == [("prod-a", "asm-1-27")]
    assert w.entry("prod-a")["window_opens"] is None


def test_a_window_changed_after_the_plan_counts_from_then_on() -> None:
    w = World([facts("prod-a", window=DAILY_3AM)], [StageSpec("prod", clusters=("prod-a",))])
    w.api.now = at(12)
    approved(w)
    w.tick()
    assert w.api.started == [] and w.entry("prod-a")["window_opens"] == at(3, day=4)
    # ARM does not answer: the planned window holds, nothing starts
    w.api.windows_down.add("prod-a")
    w.tick(at(12, 1))
    assert w.api.started == []
    # the team moved the cluster's window to noon in ARM: it opens now
    w.api.windows_down.clear()
    noon = parse_config_window({"schedule": {"daily": {"interval_days": 1}},
                                "duration_hours": 4, "start_time": "12:00",
                                "start_date": "2026-11-01"})
    w.api.fleet = [facts("prod-a", window=noon)]
    w.tick(at(12, 2))
    assert w.api.started == [("prod-a", "asm-1-27")]
    assert "prod-a's maintenance window changed since the plan: AKS " \
           "aksManagedAutoUpgradeSchedule: " in w.history()
    lines = len(w.run.history)
    w.tick(at(12, 3))
    assert len(w.run.history) == lines  # said once
    # removed altogether: any time will do
    w.api.fleet = [facts("prod-a", window=None)]
    w.api.move("prod-a", Phase.AWAITING_COMPLETION)
    w.tick(at(20))
    assert "none now, any time will do" in w.history()
    assert ("prod-a", "complete", "UAPP") in w.api.decided


def test_a_window_far_ahead_rechecks_every_minute() -> None:
    w = World([facts("prod-a", window=DAILY_3AM)], [StageSpec("prod", clusters=("prod-a",))])
    w.api.now = at(12)
    approved(w)
    assert w.tick().recheck_after == 60.0


def test_completion_waits_for_the_window() -> None:
    w = World([facts("prod-a", window=DAILY_3AM)], [StageSpec("prod", clusters=("prod-a",))])
    w.api.now = at(3, 0, 5)
    approved(w)
    w.tick()
    w.api.move("prod-a", Phase.AWAITING_COMPLETION)
    w.tick(at(8))  # the window closed at 07:00
    assert not any(a == "complete" for _, a, _ in w.api.decided)
    assert "completion waits for its window (opens 2026-12-04 03:00Z)" \
        in w.entry("prod-a")["reason"]
    w.tick(at(3, 0, 5, day=4))
    assert ("prod-a", "complete", "UAPP") in w.api.decided
    assert w.api.child_of("prod-a").phase == Phase.COMPLETING


def test_a_run_started_before_a_crash_is_adopted_not_started_twice() -> None:
    w = approved(two_rings())
    before = w.run
    w.tick()  # started dev-a's run ...
    w.run = before  # ... but the worker died before saving the campaign
    w.tick()
    assert w.api.started == [("dev-a", "asm-1-27")]
    assert w.entry("dev-a")["run"] == w.api.child_of("dev-a").id
    assert "adopted run" in w.history()


def test_a_busy_cluster_stays_pending_and_is_tried_again() -> None:
    w = approved(World([facts("dev-a")], [StageSpec("dev", clusters=("dev-a",))]))
    w.api.busy.add("dev-a")
    result = w.tick()
    e = w.entry("dev-a")
    assert e["status"] == "pending" and "another run holds the cluster" in e["reason"]
    assert result.recheck_after == 30.0 and w.api.started == []
    w.api.busy.clear()
    w.tick()
    assert w.api.started == [("dev-a", "asm-1-27")] and w.entry("dev-a")["reason"] == ""


def test_a_busy_cluster_does_not_hold_up_the_others() -> None:
    w = approved(two_rings())
    w.api.busy.add("dev-a")
    w.tick()
    assert w.entry("dev-a")["status"] == "pending"
    assert w.api.started == [("dev-b", "asm-1-26")]


def test_a_refused_start_fails_the_cluster_against_the_budget() -> None:
    w = approved(two_rings(dev={"max_failures": 0}))
    w.api.refuse_start.add("dev-a")
    w.tick()
    assert w.entry("dev-a")["status"] == "failed"
    assert "could not start its run" in w.entry("dev-a")["reason"]
    assert w.run.phase == Phase.HALTED


def test_a_refused_child_approval_waits_for_a_person_of_that_cluster() -> None:
    w = approved(two_rings())
    w.api.cluster_approvers["dev-a"] = frozenset({"UDEVLEAD"})
    w.tick()
    w.api.move("dev-a", Phase.AWAITING_APPROVAL)
    w.tick()
    e = w.entry("dev-a")
    assert e["status"] == "awaiting_person" and "Only approvers of `dev-a`" in e["reason"]
    w.tick()
    assert len(w.api.decided) == 1  # not asked again for the same wait
    assert ":raising_hand: dev-a" in kind_of(w.run).body(w.run)
    child = w.api.child_of("dev-a")
    w.api.children[child.id] = lifecycle.decide(
        child, "approve", "UDEVLEAD", ClusterPolicy(approvers=frozenset({"UDEVLEAD"})), T0)
    w.tick()
    assert w.entry("dev-a")["status"] == "running" and w.entry("dev-a")["reason"] == ""


def test_a_busy_child_is_asked_again_on_the_next_tick() -> None:
    w = approved(two_rings())
    w.tick()
    w.api.move("dev-a", Phase.AWAITING_APPROVAL)
    w.api.run_busy = True
    w.tick()
    assert w.entry("dev-a")["status"] == "running"
    w.api.run_busy = False
    w.tick()
    assert w.api.child_of("dev-a").phase == Phase.STARTING_CANARY


def test_a_child_parked_for_its_people_is_awaiting_person() -> None:
    w = approved(two_rings())
    w.tick()
    w.api.move("dev-a", Phase.AWAITING_WAVE_APPROVAL)
    w.tick()
    e = w.entry("dev-a")
    assert e["status"] == "awaiting_person" and "awaiting wave approval" in e["reason"]
    assert w.api.decided == []


# ------------------------------------------------------------------ soak


def soaking(max_failures: int = 0) -> World:
    w = World([facts("dev-a"), facts("prod-a")],
              [StageSpec("dev", clusters=("dev-a",), soak_s=600, max_failures=max_failures),
               StageSpec("prod", clusters=("prod-a",))])
    approved(w)
    w.tick()
    w.api.now = T0 + 100
    w.api.move("dev-a", Phase.COMPLETED, namespaces=("shop",))
    result = w.tick()  # dev-a done: every cluster settled, the soak begins
    assert w.stage("dev")["state"] == "soaking"
    assert w.stage("dev")["soak_until"] == T0 + 700
    assert result.recheck_after == 5.0
    return w


def test_a_regression_during_the_soak_fails_the_cluster_and_halts() -> None:
    w = soaking()
    w.tick(T0 + 200)
    assert w.api.soak_calls[-1] == ("dev-a", ["shop"], T0 + 100, T0 + 200)
    assert w.run.phase == Phase.MIGRATING
    w.api.regressions["dev-a"] = "errors 2.1% against 0.4% before (tolerated 0.5 points)"
    w.tick(T0 + 300)
    e = w.entry("dev-a")
    assert e["status"] == "failed" and e["reason"].startswith("regressed during the soak:")
    assert w.run.phase == Phase.HALTED
    assert not any(c == "prod-a" for c, _ in w.api.started)


def test_after_the_soak_the_next_stage_starts() -> None:
    w = soaking()
    w.api.metrics_down = True
    w.tick(T0 + 200)
    w.tick(T0 + 300)
    assert w.history().count("metrics unavailable") == 1
    w.api.metrics_down = False
    w.tick(T0 + 699)
    assert w.stage("dev")["state"] == "soaking"
    w.tick(T0 + 700)
    assert w.stage("dev")["state"] == "done" and w.run.params["stage"] == 1
    w.tick(T0 + 701)
    assert w.api.started[-1] == ("prod-a", "asm-1-27")


def test_completion_counts_what_happened() -> None:
    fleet = [facts("dev-a"), facts("dev-b"), facts("prod-a"), facts("prod-b"),
             facts("prod-c", k8s="1.29.1"), facts("prod-d", "asm-1-27")]
    w = World(fleet, [StageSpec("dev", clusters=("dev-a", "dev-b"), max_concurrency=2),
                      StageSpec("prod", clusters=("prod-a", "prod-b", "prod-c", "prod-d"),
                                max_concurrency=2, max_failures=1)])
    approved(w)
    w.tick()
    w.api.move("dev-a", Phase.COMPLETED)
    w.api.move("dev-b", Phase.COMPLETED)
    w.tick()
    w.tick()
    w.api.move("prod-a", Phase.COMPLETED)
    w.api.move("prod-b", Phase.ROLLED_BACK, outcome="gate FAIL")
    w.tick()
    assert w.run.phase == Phase.COMPLETED
    assert w.run.outcome == ("asm-1-27 on 3 clusters; 1 failed; 1 blocked; "
                             "1 already on asm-1-27")


# ------------------------------------------------------------------ people and Slack


def test_pause_halt_and_cancel_by_people() -> None:
    w = approved(two_rings())
    w.tick()
    w.decide("pause", user="UREQ")
    assert w.run.phase == Phase.PAUSED
    w.api.move("dev-a", Phase.COMPLETED)
    w.tick()
    assert w.api.started == [("dev-a", "asm-1-27")]  # nothing new starts while paused
    with pytest.raises(DecisionRefused):
        w.decide("halt", user="UREQ")
    w.decide("halt")
    assert w.run.phase == Phase.HALTED and "halted by <@UAPP>" in w.run.pause_reason
    w.decide("cancel", user="UREQ")
    assert w.run.phase == Phase.CANCELLED
    assert w.run.outcome.startswith("cancelled by <@UREQ>")
    assert w.entry("dev-a")["run"] in w.run.outcome  # its run goes on by itself


def test_buttons_by_phase() -> None:
    kind = kind_of(two_rings().run)
    actions = {phase: [b.action for b in buttons] for phase, buttons in kind.buttons.items()}
    assert actions[Phase.AWAITING_APPROVAL] == ["approve", "reject"]
    assert actions[Phase.AWAITING_WAVE_APPROVAL] == ["approve", "pause", "halt", "cancel"]
    assert actions[Phase.MIGRATING] == ["pause", "halt"]
    assert actions[Phase.PAUSED] == ["resume", "halt"]
    assert actions[Phase.HALTED] == ["resume", "cancel"]
    halted_resume = kind.buttons[Phase.HALTED][0]
    assert halted_resume.confirm is not None
    assert halted_resume.confirm.title == "Resume despite the failures?"
    for phase, buttons in kind.buttons.items():
        for b in buttons:  # every button is a decision the kind allows in that phase
            assert phase in kind.decisions[b.action].phases


def test_the_body_mentions_every_cluster() -> None:
    w = approved(two_rings())
    w.tick()
    body = kind_of(w.run).body(w.run)
    for name in ("dev-a", "dev-b", "prod-a", "prod-b", "lonely"):
        assert name in body
    assert "*Stage dev* — running (0 of 2 clusters done, 0 failed, budget 0)" in body
    assert (f":arrows_counterclockwise: dev-a asm-1-26 → asm-1-27: upgrading "
            f"(run {w.entry('dev-a')['run']})") in body
    assert ":no_entry: prod-b blocked:" in body


def test_a_large_fleet_body_stays_under_the_limit() -> None:
    fleet = [facts(f"cluster-{i:03d}") for i in range(300)]
    w = World(fleet, [StageSpec("all", clusters=tuple(f.name for f in fleet))])
    w.tick()
    body = kind_of(w.run).body(w.run)
    assert len(body) <= 2900 and "more" in body.splitlines()[-1]


def test_campaign_start_parses_to_a_fleet_run() -> None:
    assert parse("campaign start asm-1-27") == StartRun("campaign", "@fleet", "asm-1-27")
    assert parse("campaign start") == StartRun("campaign", FLEET_SCOPE, "")
    run = two_rings().run
    assert "Planning a campaign" in kind_of(run).accepted(run)
