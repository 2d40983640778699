"""Converging the managed cluster through ARM's long-running operations.

Every change meshops makes to a managedCluster is a PUT that ARM answers with an
``Azure-AsyncOperation`` to follow (provisioningState Updating → Succeeded; a second PUT
while one runs is refused with 409). These helpers observe first, so a PUT sent before a
crash is never sent twice, and report a failed operation with ARM's own code and message.
"""

from __future__ import annotations

from workflows.errors import ArmError
from workflows.model import Operation, Run
from workflows.ports import ClusterPorts

POLL_S = 3.0  # seconds between polls of an ARM operation or a rollout


def follow_operation(run: Run, ports: ClusterPorts, what: str) -> bool | None:
    """Follow this run's operation: True done, False still running, None none started.

    Raises:
        ArmError: the operation ended Failed or Canceled, with ARM's error code and message.
    """
    op = run.operation
    if op is None or not op.url:
        return None
    status = ports.mesh.operation_status(run.cluster, op.url)
    if status.status in ("Failed", "Canceled"):
        raise ArmError(f"{what} ended {status.status}: {status.error_code}: "
                       f"{status.error_message}", status.error_code)
    return status.done


def converge_revisions(run: Run, ports: ClusterPorts, desired: list[str],
                       now: float) -> tuple[Run, bool]:
    """Bring the cluster's add-on revisions to ``desired``; returns (run, done).

    Observes the cluster first, so a PUT that was sent before a crash is not sent again;
    while another operation runs on the cluster (ARM would answer 409) it waits. A cluster
    left Failed by an earlier operation is PUT again (AKS's reconcile).

    Raises:
        ArmError: the operation this run started failed (ARM's code and message); the
            cluster stays as AKS left it, for the kind to read and decide.
    """
    mesh = ports.mesh.get_mesh(run.cluster)
    mine = run.operation is not None and run.operation.revisions == desired
    if mine:
        followed = follow_operation(run, ports, f"ARM operation to set revisions {desired}")
        if followed is False:
            return run, False
    if mesh.revisions == desired:
        if mesh.provisioning_state == "Succeeded":
            return run, True
        if mesh.provisioning_state != "Failed" or mine:
            return run, False
        # A failed operation left the cluster Failed with these revisions: PUT them again,
        # which is how AKS reconciles a failed cluster (the same body, a new operation).
    elif mesh.provisioning_state not in ("Succeeded", "Failed", "Canceled"):
        # Another operation runs on the cluster: ARM would answer 409. Wait for it.
        return run, False
    url = ports.mesh.set_revisions(run.cluster, desired)
    run = run.evolve(operation=Operation(revisions=desired, url=url, started_at=now))
    return run.log(now, "arm", f"PUT serviceMeshProfile revisions {desired}"), False

