"""What the kinds that make one change of the managed cluster share (enable, ingress,
disable): the plan's decisions and buttons, and converging one ``serviceMeshProfile`` change
through ARM's long-running operation until the cluster shows it."""

from __future__ import annotations

from collections.abc import Callable

from workflows.errors import PermanentError
from workflows.kind import Button, Decision
from workflows.model import Operation, Phase, Run
from workflows.operations import OPERATION_FIRST_LOOK_S, POLL_S, answered, operation_wait_s
from workflows.policy import Role
from workflows.ports import ClusterApi, ClusterPorts, MeshState

#: Decisions of the single-change kinds (enable, ingress, disable): approve the plan or not.
CHANGE_DECISIONS = {
    "approve": Decision(frozenset({Phase.AWAITING_APPROVAL}), Role.APPROVER),
    "reject": Decision(frozenset({Phase.AWAITING_APPROVAL}), Role.APPROVER),
    "cancel": Decision(frozenset({Phase.PLANNING, Phase.AWAITING_APPROVAL})),
    "resume": Decision(frozenset({Phase.PAUSED})),
}
CHANGE_BUTTONS = {
    Phase.AWAITING_APPROVAL: (Button("approve", "Approve", "primary"),
                              Button("cancel", "Cancel")),
    Phase.PAUSED: (Button("resume", "Resume", "primary"),),
}


def converge_change(run: Run, ports: ClusterPorts, now: float, what: str,
                    reached: Callable[[MeshState], bool],
                    verified: Callable[[ClusterApi], bool],
                    put: Callable[[], tuple[str | None, str]]) -> tuple[Run, float | None]:
    """Converge one change of ``serviceMeshProfile``; returns (run, seconds to wait before
    looking again), the wait None once the change is verified in the cluster. While the
    run's operation runs, its poll's ``Retry-After`` or the poll schedule
    (:func:`workflows.operations.operation_wait_s`); after the PUT, 0 (the step chained
    after it sets when the schedule counts from: :func:`workflows.operations.answered`),
    then the first look.

    Args:
        what: the change, for errors ("disabling the mesh").
        reached: whether ARM's mesh state already shows the change.
        verified: whether the cluster shows it (a gateway Deployment, istiod gone).
        put: sends the PUT; returns (the operation URL, a history line).
    Raises:
        ArmError: the operation failed (ARM's code and message).
        PermanentError: the operation succeeded but the change did not take effect.
    """
    if (anchored := answered(run, now)) is not None:
        return anchored, OPERATION_FIRST_LOOK_S
    wait = operation_wait_s(run, ports, what, now)
    if wait is not None:
        return run, wait
    mesh = ports.mesh.get_mesh(run.cluster)
    if reached(mesh):
        if mesh.provisioning_state != "Succeeded":
            return run, POLL_S
        return run, None if verified(ports.cluster_api(run.cluster)) else POLL_S
    if mesh.provisioning_state not in ("Succeeded", "Failed", "Canceled"):
        return run, POLL_S
    if run.operation is not None and run.operation.handle:  # it ran, and changed nothing
        raise PermanentError(f"the operation succeeded but {what} did not take effect")
    token, text = put()
    run = run.evolve(operation=Operation(revisions=[], token=token, started_at=now,
                                         answered=False))
    return run.log(now, "arm", text), 0.0  # the chained step: :func:`answered`


def refuse_unless_one_revision(run: Run, mesh: MeshState, now: float) -> Run | None:
    """The run refused when the mesh is off or an upgrade is in progress; else None."""
    if mesh.mode != "Istio" or not mesh.revisions:
        why = "the Istio add-on is off on this cluster; enable it with `/mesh enable`"
        return run.to(Phase.REFUSED, now, f"refused: {why}", outcome=why)
    if len(mesh.revisions) > 1:
        why = (f"an upgrade is in progress ({', '.join(mesh.revisions)}); complete or roll it "
               "back first")
        return run.to(Phase.REFUSED, now, f"refused: {why}", outcome=why)
    return None
