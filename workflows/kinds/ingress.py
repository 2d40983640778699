"""The add-on's ingress gateways: ``/mesh ingress <cluster> enable|disable external|internal``.

plan (the mesh must be on with one revision, the gateway not already as asked) → approval
→ PUT ``istio.components.ingressGateways`` with the mode enabled or not (AKS doc
``istio-deploy-ingress.md``) → the operation followed → verified by the gateway's
Deployment in ``aks-istio-ingress``. An approved run like the others: exposure is worth
four eyes.
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
from workflows.kind import StartRun, StepResult, WorkflowKind
from workflows.model import Phase, Run
from workflows.ports import ClusterApi, ClusterPorts, MeshState
from workflows.syntax import cluster_name


def _mode(run: Run) -> str:
    return run.ingress_mode or "External"


def plan_ingress(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    mesh = ports.mesh.get_mesh(run.cluster)
    refused = refuse_unless_one_revision(run, mesh, now)
    if refused is not None:
        return StepResult(refused, None)
    on = _mode(run) in mesh.ingress
    if on == run.ingress_enabled:
        why = f"the {_mode(run).lower()} ingress gateway is already {'on' if on else 'off'}"
        return StepResult(run.to(Phase.REFUSED, now, f"refused: {why}", outcome=why), None)
    return StepResult(run.to(
        Phase.AWAITING_APPROVAL, now,
        f"plan: {'enable' if run.ingress_enabled else 'disable'} the {_mode(run).lower()} "
        f"ingress gateway of {run.cluster} ({mesh.revisions[0]})",
        stable_revision=mesh.revisions[0], canary_revision=mesh.revisions[0]), None)


def apply_ingress(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    mode = _mode(run)

    def reached(mesh: MeshState) -> bool:
        return (mode in mesh.ingress) == run.ingress_enabled

    def verified(capi: ClusterApi) -> bool:
        return capi.ingress_gateways().get(mode, False) == run.ingress_enabled

    def put() -> tuple[str | None, str]:
        url = ports.mesh.set_ingress(run.cluster, mode, run.ingress_enabled)
        return url, (f"PUT ingressGateways {mode} "
                     f"{'enabled' if run.ingress_enabled else 'disabled'}")

    run, wait = converge_change(run, ports, now, "changing the ingress gateway", reached,
                                verified, put)
    if wait is not None:
        return StepResult(run, wait)
    state = "enabled" if run.ingress_enabled else "disabled"
    return StepResult(run.to(
        Phase.COMPLETED, now, f"completed: the {mode.lower()} ingress gateway is {state} and "
        "verified in aks-istio-ingress", outcome=f"{mode.lower()} ingress gateway {state}"), None)


class Ingress(WorkflowKind):
    name = "ingress"
    verb = "ingress"
    usage = "ingress <cluster> enable|disable external|internal"
    steps = {Phase.PLANNING: plan_ingress, Phase.APPLYING: apply_ingress}
    decisions = CHANGE_DECISIONS
    buttons = CHANGE_BUTTONS

    def parse(self, args: list[str], wrong: Callable[[str], InvalidCommand]) -> StartRun:
        if len(args) != 3 or args[1].lower() not in ("enable", "disable") or \
                args[2].lower() not in ("external", "internal"):
            raise wrong("`ingress` takes a cluster, enable or disable, external or internal.")
        return StartRun(self.name, cluster_name(args[0]), fields={
            "ingress_mode": args[2].capitalize(), "ingress_enabled": args[1].lower() == "enable"})

    def _verb(self, run: Run) -> str:
        return "enable" if run.ingress_enabled else "disable"

    def describe(self, run: Run) -> str:
        return f"{self._verb(run)} the {_mode(run).lower()} ingress gateway of {run.cluster}"

    def title(self, run: Run) -> str:
        return (f"{self._verb(run).capitalize()} the {_mode(run).lower()} ingress gateway of "
                f"{run.cluster}")

    def subject(self, run: Run) -> str:
        return f"The ingress gateway change on `{run.cluster}`"

    def approve(self, run: Run, by: str, now: float) -> Run:
        return run.to(Phase.APPLYING, now, f"approved {by}")
