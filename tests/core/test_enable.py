"""Enabling the add-on: preflight refusals, the happy path, an ARM failure. No I/O."""

from __future__ import annotations

import pytest

from tests.core.fakes import FakeWorld
from tests.core.test_workflow import POLICY, drive
from workflows.errors import DecisionRefused
from workflows.lifecycle import decide
from workflows.model import Phase, Run
from workflows.ports import RevisionProfile


def enable_run(revision: str = "") -> Run:
    return Run(id="r-e0e0e0", kind="enable", cluster="edge", requester="UREQ", channel="C1",
               canary_revision=revision, created_at=0, updated_at=0)


def mesh_off() -> FakeWorld:
    w = FakeWorld.seeded(["shop"])
    w.mode, w.revisions = "Disabled", []
    w.namespaces["shop"] = {}
    return w


def test_enable_with_the_default_revision() -> None:
    world = mesh_off()
    run, now = drive(enable_run(), world, 0)
    assert run.phase == Phase.AWAITING_APPROVAL
    assert "✓ revision: the default revision AKS chooses" in run.history[-2].text
    assert not world.writes
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    assert run.phase == Phase.ENABLING
    run, now = drive(run, world, now)
    assert run.phase == Phase.COMPLETED and run.canary_revision == "asm-1-25"
    assert world.writes == {"mesh:Istio:None": 1}
    with pytest.raises(DecisionRefused):
        decide(run, "rollback", "UAPPROVER", POLICY, now)


@pytest.mark.parametrize(("setup", "revision", "needle"), [
    (lambda w: setattr(w, "mode", "Istio") or setattr(w, "revisions", ["asm-1-25"]), "",
     "already enabled (asm-1-25); upgrade it with `/mesh upgrade`"),
    (lambda w: setattr(w, "osm", True), "", "Open Service Mesh add-on is enabled"),
    (lambda w: setattr(w, "outside", ["namespace istio-system runs Deployment istiod"]), "",
     "Istio installed outside the add-on: namespace istio-system runs Deployment istiod"),
    (lambda w: None, "asm-1-22", "asm-1-22 is not offered in westus2; offered: asm-1-25"),
    (lambda w: w.region.append(RevisionProfile("asm-1-27", (), ("1.32",))), "asm-1-27",
     "asm-1-27 does not support Kubernetes 1.30"),
])
def test_preflight_refusals_change_nothing(setup, revision: str, needle: str) -> None:
    world = mesh_off()
    setup(world)
    run, _ = drive(enable_run(revision), world, 0)
    assert run.phase == Phase.REFUSED
    assert needle in run.outcome
    assert not world.writes


def test_a_failed_operation_is_reported_with_arms_error() -> None:
    world = mesh_off()
    world.op_fails = True
    run, now = drive(enable_run("asm-1-26"), world, 0)
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    run, _ = drive(run, world, now)
    assert run.phase == Phase.FAILED
    assert "MeshInstallFailed: istiod did not start" in run.outcome
    assert world.mode == "Disabled"


def change_run(kind: str, **kw: object) -> Run:
    return Run(id="r-c0c0c0", kind=kind, cluster="dev", requester="UREQ", channel="C1",
               canary_revision="", created_at=0, updated_at=0, **kw)


def test_ingress_gateway_on_and_off() -> None:
    world = FakeWorld.seeded(["a"])
    run, now = drive(change_run("ingress", ingress_mode="External"), world, 0)
    assert run.phase == Phase.AWAITING_APPROVAL
    run = decide(run, "approve", "UAPPROVER", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.COMPLETED and world.ingress == {"External"}
    assert run.outcome == "external ingress gateway enabled"
    again, _ = drive(change_run("ingress", ingress_mode="External"), world, now)
    assert again.phase == Phase.REFUSED and "already on" in again.outcome
    off, now = drive(change_run("ingress", ingress_mode="External", ingress_enabled=False),
                     world, now)
    off, now = drive(decide(off, "approve", "UAPPROVER", POLICY, now), world, now)
    assert off.phase == Phase.COMPLETED and world.ingress == set()
    assert world.writes["ingress:External:True"] == 1


def test_disable_refused_while_namespaces_are_labelled_then_done() -> None:
    world = FakeWorld.seeded(["a", "b"])
    run, _ = drive(change_run("disable"), world, 0)
    assert run.phase == Phase.REFUSED
    assert "namespaces still carry an istio.io/rev label: a, b" in run.outcome
    for ns in ("a", "b"):
        world.namespaces[ns] = {}
    run, now = drive(change_run("disable"), world, 0)
    assert run.phase == Phase.AWAITING_APPROVAL
    run, now = drive(decide(run, "approve", "UAPPROVER", POLICY, now), world, now)
    assert run.phase == Phase.COMPLETED and world.mode == "Disabled"
    assert world.writes == {"mesh:Disabled:None": 1}
