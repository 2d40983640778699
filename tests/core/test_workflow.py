"""The canary upgrade workflow against an in-memory world: no I/O, no sleeps."""

from __future__ import annotations

import pytest

from tests.core.fakes import FakeWorld
from workflows.errors import DecisionRefused, TemporaryError
from workflows.kind import RetryPolicy
from workflows.lifecycle import decide, tick
from workflows.model import NamespaceMetrics, Phase, Run, UpgradeOptions, Verdict
from workflows.policy import ClusterPolicy
from workflows.ports import MeshState

POLICY = ClusterPolicy(approvers=frozenset({"UAPPROVER", "UREQ"}))


def new_run(**options: object) -> Run:
    opts = UpgradeOptions(bake_s=20, interval_s=10, wave_size=2, **options)
    return Run(id="r-abc123", cluster="dev", requester="UREQ", channel="C1",
               canary_revision="asm-1-26", options=opts, created_at=0, updated_at=0)


def drive(run: Run, world: FakeWorld, now: float, limit: int = 200) -> tuple[Run, float]:
    """Tick until the run waits for a person or ends; time jumps by each recheck."""
    for _ in range(limit):
        result = tick(run, world, now)
        run = result.run
        if result.recheck_after is None:
            return run, now
        now += result.recheck_after
    raise AssertionError(f"run did not settle: {run.phase} {run.history[-3:]}")


def test_happy_path_upgrades_every_namespace_once() -> None:
    world = FakeWorld.seeded(["a", "b", "c", "d"])
    run, now = drive(new_run(), world, 0)
    assert run.phase == Phase.AWAITING_APPROVAL
    assert [w.namespaces for w in run.waves] == [["a"], ["b", "c"], ["d"]]
    assert run.stable_revision == "asm-1-25"
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION
    assert world.revisions == ["asm-1-25", "asm-1-26"]
    assert all(w.verdict == Verdict.PASS for w in run.waves)
    run = decide(run, "complete", "UAPPROVER", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.COMPLETED
    assert world.revisions == ["asm-1-26"]
    assert {lbl["istio.io/rev"] for n, lbl in world.namespaces.items() if lbl} == {"asm-1-26"}
    # every namespace relabelled once, every workload restarted once
    assert all(v == 1 for v in world.writes.values()), world.writes
    assert world.writes["label:a:asm-1-26"] == 1
    assert sum(1 for k in world.writes if k.startswith("restart:")) == 8
    assert "kube-system" not in [ns for w in run.waves for ns in w.namespaces]


def test_each_step_twice_writes_nothing_the_second_time() -> None:
    world = FakeWorld.seeded(["a", "b"])
    run, now = drive(new_run(), world, 0)
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    for _ in range(60):
        before = world.writes.copy()
        result = tick(run, world, now)
        # replay the same step from the same stored run, as after a crash before the save
        tick(run, world, now)
        extra = world.writes - before
        assert all(v == 1 for v in extra.values()), f"{run.phase}: {extra}"
        run = result.run
        if result.recheck_after is None:
            break
        now += result.recheck_after
    assert run.phase == Phase.AWAITING_COMPLETION


def test_failing_canary_rolls_back_by_itself_and_names_the_namespace() -> None:
    world = FakeWorld.seeded(["a", "b", "c"])
    world.metrics_by_rev[("c", "asm-1-26")] = NamespaceMetrics(
        requests=1000, success_rate=80.0, p99_ms=50)
    run, now = drive(new_run(), world, 0)
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.ROLLED_BACK
    assert world.revisions == ["asm-1-25"]
    assert {lbl.get("istio.io/rev") for lbl in world.namespaces.values() if lbl} == {"asm-1-25"}
    gate = [e for e in run.history if e.kind == "gate" and e.data["verdict"] == "FAIL"]
    # the signal, both sides' numbers and the confidence
    assert "c 5xx and gRPC errors (destination): 20.000% of" in gate[-1].text.replace(
        "20.00%", "20.000%") or "c 5xx and gRPC errors (destination): 20.00% of" in gate[-1].text
    assert "before 0.000%" in gate[-1].text and "regression (confidence" in gate[-1].text
    assert gate[-1].data["decided"] is True
    assert world.writes["label:b:asm-1-25"] == 1 and world.writes["label:c:asm-1-25"] == 1
    assert world.writes["restart:c/app0:asm-1-25"] == 1


def test_too_little_traffic_pauses_and_a_person_continues() -> None:
    world = FakeWorld.seeded(["a", "b"])
    world.metrics_by_rev[("a", "asm-1-26")] = NamespaceMetrics(
        requests=12, success_rate=100.0, p99_ms=50)
    run, now = drive(new_run(), world, 0)
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.PAUSED
    assert "INCONCLUSIVE" in run.pause_reason and "a" in run.pause_reason
    run = decide(run, "resume", "UAPPROVER", POLICY, now)
    assert run.phase == Phase.MIGRATING and run.wave_index == 1
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION


def test_prometheus_down_errors_then_pauses_never_rolls_back() -> None:
    world = FakeWorld.seeded(["a"])
    run, now = drive(new_run(), world, 0)
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    world.metrics_down = True
    run, now = drive(run, world, now)
    assert run.phase == Phase.PAUSED
    assert "could not measure" in run.pause_reason
    assert world.revisions == ["asm-1-25", "asm-1-26"]


def test_arm_409_is_retried_not_failed() -> None:
    world = FakeWorld.seeded(["a"])
    world.conflict_once = True
    run, now = drive(new_run(), world, 0)
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION
    assert any("409" in e.text for e in run.history)
    assert world.writes["put:asm-1-25,asm-1-26"] == 1


@pytest.mark.parametrize(
    ("revisions", "targets", "canary", "needle"),
    [
        (["asm-1-25", "asm-1-26"], ["asm-1-26"], "asm-1-26", "already in progress"),
        (["asm-1-25"], ["asm-1-26"], "asm-1-28", "Valid targets: `asm-1-26`"),
        ([], [], "asm-1-26", "not enabled"),
    ],
)
def test_plan_refuses_with_reason(revisions, targets, canary, needle) -> None:
    world = FakeWorld.seeded(["a"])
    world.revisions, world.targets = revisions, targets
    if not revisions:
        world.mode = "Disabled"
    run = new_run().evolve(canary_revision=canary)
    run, _ = drive(run, world, 0)
    assert run.phase == Phase.REFUSED
    assert needle in run.outcome
    assert not world.writes


def test_decisions_enforce_four_eyes_and_state() -> None:
    world = FakeWorld.seeded(["a"])
    run, now = drive(new_run(), world, 0)
    with pytest.raises(DecisionRefused, match="four eyes"):
        decide(run, "approve", "UREQ", POLICY, now)
    with pytest.raises(DecisionRefused, match="Only approvers"):
        decide(run, "approve", "USTRANGER", POLICY, now)
    with pytest.raises(DecisionRefused, match="not possible now"):
        decide(run, "complete", "UAPPROVER", POLICY, now)
    approved = decide(run, "approve", "UAPPROVER", POLICY, now)
    with pytest.raises(DecisionRefused, match="approved by <@UAPPROVER>"):
        decide(approved, "approve", "UAPPROVER", POLICY, now)
    cancelled = decide(run, "cancel", "UREQ", POLICY, now)
    assert cancelled.phase == Phase.CANCELLED
    with pytest.raises(DecisionRefused, match="already ended"):
        decide(cancelled, "approve", "UAPPROVER", POLICY, now)
    self_ok = ClusterPolicy(approvers=frozenset({"UREQ"}), allow_self_approval=True)
    assert decide(run, "approve", "UREQ", self_ok, now).phase == Phase.STARTING_CANARY


def test_wave_approval_gate_parks_between_waves() -> None:
    world = FakeWorld.seeded(["a", "b"])
    run, now = drive(new_run(approve_waves=True), world, 0)
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_WAVE_APPROVAL and run.wave_index == 0
    assert world.namespaces["b"]["istio.io/rev"] == "asm-1-25"
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION


def test_manual_rollback_during_migration() -> None:
    world = FakeWorld.seeded(["a", "b"])
    run, now = drive(new_run(), world, 0)
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    for _ in range(8):  # into wave 0
        r = tick(run, world, now)
        run, now = r.run, now + (r.recheck_after or 0)
    assert run.phase == Phase.MIGRATING
    run = decide(run, "rollback", "UREQ", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.ROLLED_BACK and world.revisions == ["asm-1-25"]


def test_plan_approval_expires_into_a_cancelled_run() -> None:
    from workflows.lifecycle import expire

    world = FakeWorld.seeded(["a"])
    run, now = drive(new_run(approval_timeout_s=3600), world, 0)
    assert run.parked_at == now
    assert expire(run, now + 3599) is None
    expired = expire(run, now + 3600)
    assert expired is not None and expired.phase == Phase.CANCELLED
    assert "nobody approved the plan within 1 h" in expired.history[-1].text
    assert not world.writes


@pytest.mark.parametrize(("on_timeout", "phase"), [("hold", Phase.AWAITING_COMPLETION),
                                                  ("rollback", Phase.ROLLING_BACK)])
def test_completion_request_expires_per_policy(on_timeout: str, phase: Phase) -> None:
    from workflows.lifecycle import expire

    world = FakeWorld.seeded(["a"])
    run, now = drive(new_run(approval_timeout_s=600, on_timeout=on_timeout), world, 0)
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION and run.parked_at == now
    expired = expire(run, now + 601)
    assert expired is not None and expired.phase == phase
    assert "the completion decision expired after 10 min" in " ".join(
        e.text for e in expired.history[-2:])
    assert expire(expired, now + 5000) is None  # expires once per wait
    if on_timeout == "hold":
        assert decide(expired, "complete", "UAPPROVER", POLICY, now + 700).phase == \
            Phase.COMPLETING  # a person can still decide
    else:
        rolled, _ = drive(expired, world, now + 601)
        assert rolled.phase == Phase.ROLLED_BACK and world.revisions == ["asm-1-25"]


def test_patch_rollover_restarts_every_workload_onto_the_new_patch() -> None:
    world = FakeWorld.seeded(["a", "b", "c"])
    world.versions["asm-1-25"] = "1.25.7"  # AKS rolled the control plane to the new patch
    run = new_run().evolve(kind="rollover", canary_revision="asm-1-25",
                           target_version="1.25.7")
    run, now = drive(run, world, 0)
    assert run.phase == Phase.AWAITING_APPROVAL and run.stable_revision == "asm-1-25"
    assert "restart workloads onto asm-1-25 1.25.7" in run.history[-1].text
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    assert run.phase == Phase.MIGRATING
    run, now = drive(run, world, now)
    assert run.phase == Phase.COMPLETED and run.outcome == "rolled over to 1.25.7"
    assert {p.proxy_version for p in world.list_pods(["a", "b", "c"])} == {"1.25.7"}
    assert not [k for k in world.writes if k.startswith(("put:", "label:"))]
    assert set(world.writes.values()) == {1}


def test_failing_patch_rollover_pauses_instead_of_rolling_back() -> None:
    world = FakeWorld.seeded(["a", "b"])
    world.versions["asm-1-25"] = "1.25.7"
    world.metrics_by_rev[("b", "asm-1-25")] = NamespaceMetrics(
        requests=1000, success_rate=100.0, p99_ms=50)
    run = new_run().evolve(kind="rollover", canary_revision="asm-1-25",
                                      target_version="1.25.7")
    run, now = drive(run, world, 0)
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    world.metrics_by_rev[("b", "asm-1-25")] = NamespaceMetrics(
        requests=1000, success_rate=90.0, p99_ms=50)
    run, now = drive(run, world, now)
    assert run.phase == Phase.PAUSED and "cannot be rolled back" in run.pause_reason
    assert world.revisions == ["asm-1-25"]


def test_temporary_errors_back_off_then_pause_one_line_per_episode() -> None:
    world = FakeWorld.seeded(["a"])
    world.conflicts_left, world.retry_after = 100, 0.0
    run, now = drive(new_run(), world, 0)
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    delays = []
    for _ in range(20):
        result = tick(run, world, now)
        run = result.run
        if result.recheck_after is None:
            break
        delays.append(result.recheck_after)
        now += result.recheck_after
    policy = RetryPolicy()
    assert run.phase == Phase.PAUSED and run.paused_from == Phase.STARTING_CANARY
    assert f"still failing after {policy.maximum_attempts} tries" in run.pause_reason
    assert "409" in run.pause_reason
    assert len(delays) == policy.maximum_attempts
    assert delays[0] >= policy.initial_interval_s and delays[-1] <= policy.maximum_interval_s
    assert delays[4] > delays[0] * 4  # exponential, not fixed
    assert [e.kind for e in run.history].count("retry") == 1  # one line for the episode
    assert run.retry is None and not world.writes
    # the person resumes once ARM is free; the episode starts afresh
    world.conflicts_left = 0
    run = decide(run, "resume", "UREQ", POLICY, now)
    assert run.phase == Phase.STARTING_CANARY
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION and run.retry is None
    assert world.writes["put:asm-1-25,asm-1-26"] == 1


def test_retry_after_is_honoured_and_a_success_ends_the_episode() -> None:
    world = FakeWorld.seeded(["a"])
    world.conflicts_left, world.retry_after = 2, 30.0
    run, now = drive(new_run(), world, 0)
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    first = tick(run, world, now)
    assert first.recheck_after is not None and first.recheck_after >= 30.0
    assert first.run.retry is not None and first.run.retry.attempts == 1
    second = tick(first.run, world, now + first.recheck_after)
    assert second.run.retry is not None and second.run.retry.attempts == 2
    third = tick(second.run, world, now + 100)
    assert third.run.retry is None and world.writes["put:asm-1-25,asm-1-26"] == 1


def test_planning_that_keeps_failing_ends_without_changing_anything() -> None:
    class Unreachable(FakeWorld):
        def get_mesh(self, cluster: str) -> MeshState:
            raise TemporaryError("ARM is unreachable: connection refused")

    world = Unreachable.seeded(["a"])
    run, _ = drive(new_run(), world, 0)
    assert run.phase == Phase.FAILED
    assert "nothing was changed" in run.outcome and "connection refused" in run.outcome


def test_kinds_declare_their_decisions_and_buttons() -> None:
    from workflows.kind import KINDS

    world = FakeWorld.seeded(["a"])
    run = new_run().evolve(kind="rollover", canary_revision="asm-1-25")
    run, now = drive(run, world, 0)
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    with pytest.raises(DecisionRefused, match=r"\(rollover\) has no `rollback`"):
        decide(run, "rollback", "UAPPROVER", POLICY, now)
    assert [b.action for b in KINDS.get("rollover").buttons[Phase.MIGRATING]] == ["pause"]
    assert [b.action for b in KINDS.get("upgrade").buttons[Phase.MIGRATING]] == [
        "pause", "rollback"]
    assert {k.name for k in KINDS} >= {"upgrade", "rollover", "enable", "ingress", "disable"}


def test_a_run_of_a_kind_nobody_registered_fails_with_the_reason() -> None:
    world = FakeWorld.seeded(["a"])
    result = tick(new_run().evolve(kind="teleport"), world, 0)
    assert result.run.phase == Phase.FAILED and result.recheck_after is None
    assert "no workflow kind 'teleport' is registered" in result.run.outcome
    with pytest.raises(DecisionRefused, match="not a decision"):
        decide(new_run(), "teleport", "UREQ", POLICY, 0)
