"""Enabling the Istio add-on (DESIGN.md §5.3): ``/mesh enable <cluster> [revision]``.

preflight (posted as the plan before anything changes) → approval → PUT ``mode: Istio``
with the revision (or none: AKS installs its default) → the long-running operation followed
→ ``istiod-<revision>`` verified. Each failing preflight check says why and what to do (AKS
doc ``istio-deploy-addon.md``: no Open Service Mesh add-on, no Istio installed outside the
add-on, a revision offered in the region and compatible with the cluster's Kubernetes
version). A failed operation is reported with ARM's error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workflows.changes import CHANGE_BUTTONS, CHANGE_DECISIONS
from workflows.errors import InvalidCommand, PermanentError
from workflows.kind import StartRun, StepResult, WorkflowKind
from workflows.model import Operation, Phase, Run, parse_revision
from workflows.operations import OPERATION_FIRST_LOOK_S, POLL_S, answered, operation_wait_s
from workflows.ports import ClusterPorts, MeshState, RevisionProfile
from workflows.syntax import cluster_name

CONTROL_PLANE_DEADLINE_S = 900.0


@dataclass(frozen=True)
class PreflightCheck:
    name: str
    ok: bool
    detail: str


def preflight(mesh: MeshState, outside: list[str], region: list[RevisionProfile],
              revision: str | None) -> list[PreflightCheck]:
    """The checks of an enable, in the order they are shown. Pure."""
    k8s = ".".join(mesh.kubernetes_version.split(".")[:2])
    checks = [
        PreflightCheck("mesh off", mesh.mode != "Istio",
                       "the Istio add-on is off" if mesh.mode != "Istio" else
                       f"the Istio add-on is already enabled ({', '.join(mesh.revisions)}); "
                       "upgrade it with `/mesh upgrade` instead"),
        PreflightCheck("no Open Service Mesh", not mesh.osm_enabled,
                       "the OSM add-on is not enabled" if not mesh.osm_enabled else
                       "the Open Service Mesh add-on is enabled and cannot coexist with the "
                       "Istio add-on: disable it first (`az aks disable-addons -a "
                       "open-service-mesh`)"),
        PreflightCheck("no Istio outside the add-on", not outside,
                       "no self-installed Istio found" if not outside else
                       "Istio installed outside the add-on: " + "; ".join(outside)
                       + ". Uninstall it (and its CRDs and webhooks) first"),
    ]
    offered = {r.revision: r for r in region}
    if revision is None:
        checks.append(PreflightCheck("revision", True,
                                     "the default revision AKS chooses for this cluster"))
    elif revision not in offered:
        checks.append(PreflightCheck(
            "revision", False, f"{revision} is not offered in {mesh.location}; offered: "
            + ", ".join(sorted(offered))))
    else:
        versions = list(offered[revision].kubernetes)
        ok = k8s in versions
        checks.append(PreflightCheck(
            "revision", ok, f"{revision} supports Kubernetes {k8s}" if ok else
            f"{revision} does not support Kubernetes {k8s} (it supports "
            f"{', '.join(versions)}); pick another revision or upgrade the cluster"))
    return checks


def plan_enable(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """Run the preflight; post it as the plan, or refuse with every failing check."""
    revision = run.canary_revision or None
    mesh = ports.mesh.get_mesh(run.cluster)
    outside = ports.cluster_api(run.cluster).istio_outside_addon()
    region = ports.mesh.revision_profiles(run.cluster)
    checks = preflight(mesh, outside, region, revision)
    lines = [("✓ " if c.ok else "✗ ") + f"{c.name}: {c.detail}" for c in checks]
    run = run.log(now, "step", "preflight:\n" + "\n".join(lines))
    failed = [c for c in checks if not c.ok]
    if failed:
        reason = "; ".join(c.detail for c in failed)
        return StepResult(run.to(Phase.REFUSED, now, f"refused: {reason}", outcome=reason), None)
    return StepResult(run.to(Phase.AWAITING_APPROVAL, now,
                             f"plan: enable the Istio add-on on {run.cluster} with "
                             f"{revision or 'the default revision'}; nothing changes before "
                             "the approval"), None)


def enable_mesh(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """PUT mode Istio and follow the operation. Raises ArmError when it failed."""
    if (anchored := answered(run, now)) is not None:
        return StepResult(anchored, OPERATION_FIRST_LOOK_S)
    wait = operation_wait_s(run, ports, "enabling the mesh", now)
    if wait is not None:
        return StepResult(run, wait)
    mesh = ports.mesh.get_mesh(run.cluster)
    if mesh.mode == "Istio" and mesh.revisions:
        if mesh.provisioning_state != "Succeeded":
            return StepResult(run, POLL_S)
        if not run.canary_revision:
            run = run.evolve(canary_revision=mesh.revisions[0])
        return StepResult(run.to(Phase.CONTROL_PLANE, now,
                                 f"the add-on is on with {run.canary_revision}"), 0.0)
    if mesh.provisioning_state not in ("Succeeded", "Failed", "Canceled"):
        return StepResult(run, POLL_S)  # another operation runs
    if run.operation is not None:
        raise PermanentError("the operation succeeded but the mesh is still off")
    token = ports.mesh.set_mesh(run.cluster, "Istio", run.canary_revision or None)
    run = run.evolve(operation=Operation(revisions=[run.canary_revision] if
                                         run.canary_revision else [], token=token, started_at=now,
                                         answered=False))
    return StepResult(run.log(now, "arm", "PUT serviceMeshProfile mode Istio"
                              + (f" revisions ['{run.canary_revision}']" if run.canary_revision
                                 else " (default revision)")), 0.0)  # then :func:`answered`


def wait_istiod(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """Done when ``istiod-<revision>`` is available."""
    if ports.cluster_api(run.cluster).control_plane_revisions().get(run.canary_revision):
        return StepResult(run.to(Phase.COMPLETED, now,
                                 f"completed: istiod-{run.canary_revision} is available; label "
                                 f"namespaces istio.io/rev={run.canary_revision} to inject "
                                 "sidecars", outcome=f"mesh enabled with {run.canary_revision}"),
                          None)
    started = run.operation.started_at if run.operation else run.updated_at
    if now - started > CONTROL_PLANE_DEADLINE_S:
        raise PermanentError(f"istiod-{run.canary_revision} not available after "
                             f"{CONTROL_PLANE_DEADLINE_S / 60:.0f} minutes")
    return StepResult(run, POLL_S)


class Enable(WorkflowKind):
    """``/mesh enable <cluster> [revision]``: turn the Istio add-on on."""

    name = "enable"
    verb = "enable"
    usage = "enable <cluster> [revision]"
    steps = {Phase.PLANNING: plan_enable, Phase.ENABLING: enable_mesh,
             Phase.CONTROL_PLANE: wait_istiod}
    decisions = CHANGE_DECISIONS
    buttons = CHANGE_BUTTONS

    def parse(self, args: list[str], wrong: Callable[[str], InvalidCommand]) -> StartRun:
        if not 1 <= len(args) <= 2:
            raise wrong("`enable` takes a cluster and, optionally, a revision.")
        return StartRun(self.name, cluster_name(args[0]),
                        parse_revision(args[1]) if len(args) > 1 else "")

    def describe(self, run: Run) -> str:
        return (f"enable the Istio add-on on {run.cluster} with "
                f"{run.canary_revision or 'the default revision'}")

    def title(self, run: Run) -> str:
        return (f"Enable the Istio add-on on {run.cluster}: "
                f"{run.canary_revision or 'the default revision'}")

    def subject(self, run: Run) -> str:
        return f"Enabling the mesh on `{run.cluster}`"

    def accepted(self, run: Run) -> str:
        return (f"Checking `{run.cluster}` before enabling the mesh (run `{run.id}`); the "
                f"preflight will be posted in <#{run.channel}>.")

    def approve(self, run: Run, by: str, now: float) -> Run:
        return run.to(Phase.ENABLING, now, f"approved {by}")
