"""Revision tags and Gateway API gateways in the core (AKS upgrade guide: "overwrite the
prod-stable tag itself to change its mapping"; Istio doc "Gateway API"). No I/O: the
in-memory world of tests/core/fakes.py."""

from __future__ import annotations

from tests.core.fakes import FakeWorld
from tests.core.test_real_clusters import approved, plan_text
from tests.core.test_workflow import POLICY, drive, new_run
from workflows.lifecycle import decide, tick
from workflows.model import Phase


def tagged_world() -> FakeWorld:
    """a and c labelled with the tag prod-stable (→ asm-1-25), b with the revision."""
    world = FakeWorld.seeded(["a", "b", "c"])
    world.tags = {"prod-stable": "asm-1-25", "unused": "asm-1-25"}
    world.namespaces["a"]["istio.io/rev"] = "prod-stable"
    world.namespaces["c"]["istio.io/rev"] = "prod-stable"
    return world


def test_tagged_namespaces_are_planned_and_the_plan_says_how_they_move() -> None:
    run, _ = drive(new_run(), tagged_world(), 0)
    assert sorted(ns for w in run.waves for ns in w.namespaces) == ["a", "b", "c"]
    text = plan_text(run)
    assert ("revision tag prod-stable (asm-1-25; namespaces a, c): wave 0 points it at "
            "asm-1-26, as `istioctl tag set prod-stable --revision asm-1-26 --overwrite`"
            in text), text
    assert "label no namespace meshops moves: unused" in text


def test_the_tag_moves_once_and_tagged_namespaces_are_never_relabelled() -> None:
    world = tagged_world()
    run, now = approved(world)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    assert world.writes["tag:prod-stable:asm-1-26"] == 1
    assert world.tags["prod-stable"] == "asm-1-26"
    assert world.namespaces["a"]["istio.io/rev"] == "prod-stable"  # the label stays
    assert world.namespaces["c"]["istio.io/rev"] == "prod-stable"
    assert world.writes["label:b:asm-1-26"] == 1 and not world.writes["label:a:asm-1-26"]
    # every workload of the tagged namespaces restarted once, onto the canary
    assert world.writes["restart:a/app0:asm-1-26"] == 1
    assert world.writes["restart:c/app1:asm-1-26"] == 1
    assert "revision tag prod-stable points at asm-1-26 (a)" in " ".join(
        e.text for e in run.history)
    run = decide(run, "complete", "UAPPROVER", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.COMPLETED, run.history[-1].text


def test_a_rollback_points_the_tag_back_and_restarts_what_it_moved() -> None:
    world = tagged_world()
    run, now = approved(world)
    for _ in range(40):  # until wave 0 (namespace a) verifies on the canary
        r = tick(run, world, now)
        run, now = r.run, now + (r.recheck_after or 0)
        if run.waves[0].step.value == "verify":
            break
    assert world.tags["prod-stable"] == "asm-1-26"
    world.canary_crash.add(("a", "app0"))
    lists = len(world.namespace_lists)
    run, now = drive(run, world, now)
    assert run.phase == Phase.ROLLED_BACK, run.history[-1].text
    # the rollback listed only the namespaces labelled with the tag it moved back (a label
    # selector), never every namespace of the cluster
    assert world.namespace_lists[lists:] == [["prod-stable"]]
    assert world.tags["prod-stable"] == "asm-1-25"
    assert world.writes["tag:prod-stable:asm-1-25"] == 1
    assert world.writes["restart:a/app0:asm-1-25"] == 1
    assert world.revisions == ["asm-1-25"]


def test_a_gateway_pinned_to_the_stable_revision_moves_with_its_namespace() -> None:
    world = FakeWorld.seeded(["a"])
    world.gateways = {("a", "shop"): "asm-1-25", ("a", "follows-ns"): None}
    run, now = approved(world)
    assert ("Gateway API gateways (deployed by istiod as <name>-istio; they move with their "
            "namespace and are verified like its workloads): a/shop, a/follows-ns"
            in plan_text(run))
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    assert world.gateways == {("a", "shop"): "asm-1-26", ("a", "follows-ns"): None}
    assert world.writes["gateway:a/shop:asm-1-26"] == 1
    run = decide(run, "rollback", "UAPPROVER", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.ROLLED_BACK
    assert world.gateways[("a", "shop")] == "asm-1-25"


def test_completion_waits_for_namespaces_labelled_since_with_the_stable_revision_or_its_tag(
) -> None:
    """A namespace labelled with the stable revision, or with a tag still pointing at it,
    after the plan was made: completing would leave its pods without a control plane, so
    the run pauses and names them. Only those labels are listed (a label selector)."""
    world = tagged_world()
    run, now = approved(world)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    world.namespaces["d"] = {"istio.io/rev": "unused"}  # the tag → asm-1-25
    world.namespaces["e"] = {"istio.io/rev": "asm-1-25"}
    world.namespaces["f"] = {"istio.io/rev": "asm-1-25", "istio-injection": "disabled"}
    lists = len(world.namespace_lists)
    run = decide(run, "complete", "UAPPROVER", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.PAUSED, run.history[-1].text
    assert run.pause_reason.startswith(
        "namespaces still labelled asm-1-25 (or with a revision tag pointing at it): d, e;")
    assert world.namespace_lists[lists:] == [["asm-1-25", "unused"]]
    assert world.revisions == ["asm-1-25", "asm-1-26"]  # the stable revision stays
