"""Enabling the Istio add-on (DESIGN.md §5.3), its ingress gateways, and disabling it.

Each is a run on the same engine: plan (checks posted before anything changes) → approval
→ one converging PUT of ``serviceMeshProfile`` followed through its long-running operation →
verified in the cluster.

Enabling: preflight, approval, PUT, verify.

The preflight is posted as the plan before anything changes; each failing check says why
and what to do (AKS doc ``istio-deploy-addon.md``: no Open Service Mesh add-on, no Istio
installed outside the add-on, a revision offered in the region and compatible with the
cluster's Kubernetes version). After the approval the step PUTs ``mode: Istio`` with the
revision (or none: AKS installs its default), follows the long-running operation and waits
for ``istiod-<revision>``. A failed operation is reported with ARM's error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from workflows.errors import ArmError, PermanentError
from workflows.model import Phase, Run
from workflows.ports import ClusterPorts, MeshState

if TYPE_CHECKING:
    from workflows.upgrade import StepResult


@dataclass(frozen=True)
class PreflightCheck:
    name: str
    ok: bool
    detail: str


def preflight(mesh: MeshState, outside: list[str], region: list[dict[str, object]],
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
    offered = {str(r["revision"]): r for r in region}
    if revision is None:
        checks.append(PreflightCheck("revision", True,
                                     "the default revision AKS chooses for this cluster"))
    elif revision not in offered:
        checks.append(PreflightCheck(
            "revision", False, f"{revision} is not offered in {mesh.location}; offered: "
            + ", ".join(sorted(offered))))
    else:
        versions = [str(v) for v in offered[revision].get("kubernetes") or []]  # type: ignore[attr-defined]
        ok = k8s in versions
        checks.append(PreflightCheck(
            "revision", ok, f"{revision} supports Kubernetes {k8s}" if ok else
            f"{revision} does not support Kubernetes {k8s} (it supports "
            f"{', '.join(versions)}); pick another revision or upgrade the cluster"))
    return checks


def plan_enable(run: Run, ports: ClusterPorts, now: float) -> tuple[Run, bool]:
    """Run the preflight; (run with its plan or refusal in the history, whether it passed)."""
    revision = run.canary_revision or None
    mesh = ports.mesh.get_mesh(run.cluster)
    outside = ports.cluster_api(run.cluster).istio_outside_addon()
    region = ports.mesh.revision_profiles(run.cluster)
    checks = preflight(mesh, outside, region, revision)
    lines = [("✓ " if c.ok else "✗ ") + f"{c.name}: {c.detail}" for c in checks]
    failed = [c for c in checks if not c.ok]
    if failed:
        reason = "; ".join(c.detail for c in failed)
        run = run.log(now, "step", "preflight:\n" + "\n".join(lines))
        return run.to(Phase.REFUSED, now, f"refused: {reason}", outcome=reason), False
    run = run.log(now, "step", "preflight:\n" + "\n".join(lines))
    return run.to(Phase.AWAITING_APPROVAL, now,
                  f"plan: enable the Istio add-on on {run.cluster} with "
                  f"{revision or 'the default revision'}; nothing changes before the "
                  "approval"), True


def enable_mesh(run: Run, ports: ClusterPorts, now: float) -> tuple[Run, bool]:
    """PUT mode Istio and follow the operation; (run, done). Raises ArmError on failure."""
    from workflows.model import Operation

    mesh = ports.mesh.get_mesh(run.cluster)
    op = run.operation
    if op is not None and op.url:
        status = ports.mesh.operation_status(run.cluster, op.url)
        if status.status in ("Failed", "Canceled"):
            raise ArmError(f"enabling the mesh ended {status.status}: {status.error_code}: "
                           f"{status.error_message}", status.error_code)
        if not status.done:
            return run, False
    if mesh.mode == "Istio" and mesh.revisions:
        if mesh.provisioning_state != "Succeeded":
            return run, False
        if not run.canary_revision:
            run = run.evolve(canary_revision=mesh.revisions[0])
        return run, True
    if mesh.provisioning_state not in ("Succeeded", "Failed", "Canceled"):
        return run, False  # another operation runs
    if op is not None:
        raise PermanentError("the operation succeeded but the mesh is still off")
    url = ports.mesh.set_mesh(run.cluster, "Istio", run.canary_revision or None)
    run = run.evolve(operation=Operation(revisions=[run.canary_revision] if
                                         run.canary_revision else [], url=url, started_at=now))
    return run.log(now, "arm", "PUT serviceMeshProfile mode Istio"
                   + (f" revisions ['{run.canary_revision}']" if run.canary_revision else
                      " (default revision)")), False


def _follow(run: Run, ports: ClusterPorts, now: float, what: str) -> bool | None:
    """Follow this run's operation: True done, False still running, None none started.
    Raises ArmError with ARM's error when it failed."""
    op = run.operation
    if op is None or not op.url:
        return None
    status = ports.mesh.operation_status(run.cluster, op.url)
    if status.status in ("Failed", "Canceled"):
        raise ArmError(f"{what} ended {status.status}: {status.error_code}: "
                       f"{status.error_message}", status.error_code)
    return status.done


def plan_change(run: Run, ports: ClusterPorts, now: float) -> Run:
    """Checks of an ingress or disable run; the run awaiting approval, or refused."""
    mesh = ports.mesh.get_mesh(run.cluster)
    if mesh.mode != "Istio" or not mesh.revisions:
        why = "the Istio add-on is off on this cluster; enable it with `/mesh enable`"
        return run.to(Phase.REFUSED, now, f"refused: {why}", outcome=why)
    if len(mesh.revisions) > 1:
        why = (f"an upgrade is in progress ({', '.join(mesh.revisions)}); complete or roll it "
               "back first")
        return run.to(Phase.REFUSED, now, f"refused: {why}", outcome=why)
    if run.kind == "disable":
        labelled = sorted(ns.name for ns in ports.cluster_api(run.cluster).list_namespaces()
                          if ns.revision)
        if labelled:
            why = ("namespaces still carry an istio.io/rev label: " + ", ".join(labelled)
                   + "; `/mesh uninject` them (and restart their workloads) first")
            return run.to(Phase.REFUSED, now, f"refused: {why}", outcome=why)
        return run.to(Phase.AWAITING_APPROVAL, now,
                      f"plan: disable the Istio add-on on {run.cluster} (removes "
                      f"istiod-{mesh.revisions[0]} and its gateways)",
                      stable_revision=mesh.revisions[0])
    mode = run.ingress_mode or "External"
    on = mode in mesh.ingress
    if on == run.ingress_enabled:
        why = f"the {mode.lower()} ingress gateway is already {'on' if on else 'off'}"
        return run.to(Phase.REFUSED, now, f"refused: {why}", outcome=why)
    return run.to(Phase.AWAITING_APPROVAL, now,
                  f"plan: {'enable' if run.ingress_enabled else 'disable'} the {mode.lower()} "
                  f"ingress gateway of {run.cluster} ({mesh.revisions[0]})",
                  stable_revision=mesh.revisions[0], canary_revision=mesh.revisions[0])


def apply_change(run: Run, ports: ClusterPorts, now: float) -> tuple[Run, bool]:
    """Converge the ingress gateway or the mesh mode; (run, verified in the cluster)."""
    from workflows.model import Operation

    what = "disabling the mesh" if run.kind == "disable" else "changing the ingress gateway"
    followed = _follow(run, ports, now, what)
    if followed is False:
        return run, False
    mesh = ports.mesh.get_mesh(run.cluster)
    if run.kind == "disable":
        reached = mesh.mode != "Istio"
    else:
        reached = ((run.ingress_mode or "External") in mesh.ingress) == run.ingress_enabled
    if reached:
        if mesh.provisioning_state != "Succeeded":
            return run, False
        capi = ports.cluster_api(run.cluster)
        if run.kind == "disable":
            return run, not capi.control_plane_revisions()
        ready = capi.ingress_gateways().get(run.ingress_mode or "External", False)
        return run, ready == run.ingress_enabled
    if mesh.provisioning_state not in ("Succeeded", "Failed", "Canceled"):
        return run, False
    if followed is True:
        raise PermanentError(f"the operation succeeded but {what} did not take effect")
    if run.kind == "disable":
        url = ports.mesh.set_mesh(run.cluster, "Disabled", None)
        text = "PUT serviceMeshProfile mode Disabled"
    else:
        url = ports.mesh.set_ingress(run.cluster, run.ingress_mode or "External",
                                     run.ingress_enabled)
        text = (f"PUT ingressGateways {run.ingress_mode} "
                f"{'enabled' if run.ingress_enabled else 'disabled'}")
    run = run.evolve(operation=Operation(revisions=[], url=url, started_at=now))
    return run.log(now, "arm", text), False


def step(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """The step of an enable, ingress or disable run in its current phase."""
    from workflows.upgrade import POLL_S, StepResult

    if run.phase == Phase.PLANNING:
        if run.kind == "enable":
            run, _ = plan_enable(run, ports, now)
        else:
            run = plan_change(run, ports, now)
        return StepResult(run, None)
    if run.kind == "enable":
        run, done = enable_mesh(run, ports, now)
        if not done:
            return StepResult(run, POLL_S)
        return StepResult(run.to(Phase.CONTROL_PLANE, now,
                                 f"the add-on is on with {run.canary_revision}"), 0.0)
    run, done = apply_change(run, ports, now)
    if not done:
        return StepResult(run, POLL_S)
    if run.kind == "disable":
        text = f"completed: the Istio add-on is off on {run.cluster}; istiod removed"
        outcome = "mesh disabled"
    else:
        state = "enabled" if run.ingress_enabled else "disabled"
        text = (f"completed: the {(run.ingress_mode or 'External').lower()} ingress gateway "
                f"is {state} and verified in aks-istio-ingress")
        outcome = f"{(run.ingress_mode or 'External').lower()} ingress gateway {state}"
    return StepResult(run.to(Phase.COMPLETED, now, text, outcome=outcome), None)
