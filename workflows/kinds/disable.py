"""Disabling the Istio add-on: ``/mesh disable <cluster>``.

Refused while any namespace still carries an ``istio.io/rev`` label (its pods would lose
their control plane); otherwise a confirmed, approved PUT of ``mode: Disabled``, followed,
and verified by every ``istiod-<revision>`` being gone.
"""

from __future__ import annotations

from collections.abc import Callable

from workflows.changes import (
    CHANGE_BUTTONS,
    CHANGE_DECISIONS,
    converge_change,
    refuse_unless_one_revision,
)
from workflows.errors import InvalidCommand
from workflows.kind import Button, Confirm, StartRun, StepResult, WorkflowKind
from workflows.model import Phase, Run
from workflows.ports import ClusterApi, ClusterPorts, MeshState
from workflows.syntax import cluster_name


def plan_disable(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    mesh = ports.mesh.get_mesh(run.cluster)
    refused = refuse_unless_one_revision(run, mesh, now)
    if refused is not None:
        return StepResult(refused, None)
    labelled = sorted(ns.name for ns in ports.cluster_api(run.cluster).list_namespaces()
                      if ns.revision)
    if labelled:
        why = ("namespaces still carry an istio.io/rev label: " + ", ".join(labelled)
               + "; `/mesh uninject` them (and restart their workloads) first")
        return StepResult(run.to(Phase.REFUSED, now, f"refused: {why}", outcome=why), None)
    return StepResult(run.to(Phase.AWAITING_APPROVAL, now,
                             f"plan: disable the Istio add-on on {run.cluster} (removes "
                             f"istiod-{mesh.revisions[0]} and its gateways)",
                             stable_revision=mesh.revisions[0]), None)


def apply_disable(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    def reached(mesh: MeshState) -> bool:
        return mesh.mode != "Istio"

    def verified(capi: ClusterApi) -> bool:
        return not capi.control_plane_revisions()

    def put() -> tuple[str | None, str]:
        return (ports.mesh.set_mesh(run.cluster, "Disabled", None),
                "PUT serviceMeshProfile mode Disabled")

    run, wait = converge_change(run, ports, now, "disabling the mesh", reached, verified, put)
    if wait is not None:
        return StepResult(run, wait)
    return StepResult(run.to(Phase.COMPLETED, now, f"completed: the Istio add-on is off on "
                             f"{run.cluster}; istiod removed", outcome="mesh disabled"), None)


class Disable(WorkflowKind):
    name = "disable"
    verb = "disable"
    usage = "disable <cluster>"
    steps = {Phase.PLANNING: plan_disable, Phase.APPLYING: apply_disable}
    decisions = CHANGE_DECISIONS
    buttons = {
        **CHANGE_BUTTONS,
        Phase.AWAITING_APPROVAL: (
            Button("approve", "Approve", "primary", Confirm(
                "Disable the mesh?", "This removes the Istio control plane *{stable}* and its "
                "gateways from the cluster.", "Disable")),
            Button("cancel", "Cancel")),
    }

    def parse(self, args: list[str], wrong: Callable[[str], InvalidCommand]) -> StartRun:
        if len(args) != 1:
            raise wrong("`disable` takes one cluster.")
        return StartRun(self.name, cluster_name(args[0]))

    def describe(self, run: Run) -> str:
        return f"disable the Istio add-on on {run.cluster}"

    def title(self, run: Run) -> str:
        return f"Disable the Istio add-on on {run.cluster}"

    def subject(self, run: Run) -> str:
        return f"Disabling the mesh on `{run.cluster}`"

    def approve(self, run: Run, by: str, now: float) -> Run:
        return run.to(Phase.APPLYING, now, f"approved {by}")
