"""Enabling the Istio add-on on a cluster (DESIGN.md §5.3): preflight, approval, PUT, verify.

The preflight is posted as the plan before anything changes; each failing check says why
and what to do (AKS doc ``istio-deploy-addon.md``: no Open Service Mesh add-on, no Istio
installed outside the add-on, a revision offered in the region and compatible with the
cluster's Kubernetes version). After the approval the step PUTs ``mode: Istio`` with the
revision (or none: AKS installs its default), follows the long-running operation and waits
for ``istiod-<revision>``. A failed operation is reported with ARM's error.
"""

from __future__ import annotations

from dataclasses import dataclass

from workflows.errors import ArmError, PermanentError
from workflows.model import Phase, Run
from workflows.ports import ClusterPorts, MeshState


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
