"""Converging the managed cluster through ARM's long-running operations.

Every change meshops makes to a managedCluster is a PUT that ARM answers with an operation to
follow (ARM's asynchronous operations: ``Azure-AsyncOperation``; provisioningState Updating →
Succeeded; a second PUT while one runs is refused with 409). The PUT returns a handle to the
operation (for AKS, azure-core's continuation token), the run keeps it in
:class:`~workflows.model.Operation`, and each tick polls the operation once through
:meth:`~workflows.ports.MeshApi.operation_status`, in whichever worker runs it, then returns
how long to wait: ARM's ``Retry-After`` when it gives one, else a pace set by how long the
operation has run (:func:`operation_recheck_s`). Nothing here waits. These helpers
observe first, so a PUT sent before a crash is never sent twice, and report a failed operation
with ARM's own code and message.
"""

from __future__ import annotations

from workflows.errors import ArmBusy, ArmError
from workflows.model import Operation, Run
from workflows.ports import ClusterPorts, OperationStatus

POLL_S = 3.0  # the longest between polls of an ARM operation or a rollout, seconds
#: the first poll of an operation after its PUT, seconds (the PUT's answer is its first look)
OPERATION_FIRST_LOOK_S = 1.0
#: the soonest an operation without ``Retry-After`` is polled again, seconds
OPERATION_LEAST_S = 0.5
#: without ``Retry-After``, the next poll comes after this share of the time the operation
#: has run: it is then seen done at most that share late. A doubling (1.0) found the
#: sandbox's 2 s operation up to 2 s late, every run; a quarter keeps 30 clusters polled at
#: once within ARM's read budget (a subscription's token bucket refills 25 reads a second,
#: ARM doc "Understand how Azure Resource Manager throttles requests")
OPERATION_POLL_SHARE = 0.25
BUSY_POLL_S = 15.0  # seconds between looks at a cluster busy with another operation
# (ARM reads are cheap: 15 s finds the cluster free soon after a node pool operation ends)


def answered(run: Run, now: float) -> Run | None:
    """The step chained right after a PUT: the run with its operation's poll schedule
    counting from ``now``, which follows ARM's answer; None for any other step.

    Why: the PUT's step starts before ARM's answer (a GET of the cluster, then the PUT), so
    a schedule counted from that start runs ahead of ARM's: a 2 s operation was polled at
    2 s from the step's start, some milliseconds before it had run 2 s, and seen done a
    whole interval later, on every upgrade (issue 13). azure-core's pollers count from the
    answer too. No poll here: the PUT's answer was the operation's first look.
    """
    op = run.operation
    if op is None or op.answered:
        return None
    anchored: Run = run.evolve(operation=op.evolve(started_at=now, answered=True))
    return anchored


def operation_wait_s(run: Run, ports: ClusterPorts, what: str, now: float) -> float | None:
    """One poll of this run's operation: seconds to wait before the next while it runs
    (:func:`operation_recheck_s`: ARM's ``Retry-After``, else the poll schedule); None once
    it is done, or when the run follows none (the caller then reads the cluster).

    Raises:
        ArmError: the operation ended Failed or Canceled, with ARM's error code and message.
    """
    status = _poll(run, ports, what)
    if status is None or status.done:
        return None
    assert run.operation is not None
    return operation_recheck_s(status, run.operation, now)


def _poll(run: Run, ports: ClusterPorts, what: str) -> OperationStatus | None:
    """One poll of this run's operation; None when the run follows none."""
    op = run.operation
    if op is None or not op.handle:
        return None
    status = ports.mesh.operation_status(run.cluster, op.handle)
    if status.status in ("Failed", "Canceled"):
        raise ArmError(f"{what} ended {status.status}: {status.error_code}: "
                       f"{status.error_message}", status.error_code)
    return status


def operation_recheck_s(status: OperationStatus, op: Operation, now: float) -> float:
    """Seconds until the next poll of an operation still running.

    ARM's ``Retry-After`` when the poll carried one: the client waits that long (ARM RPC,
    "Asynchronous operations"; azure-core's pollers do). Else the next point of a schedule
    fixed from ARM's answer to the PUT (``op.started_at``, :func:`answered`): the first look
    :data:`OPERATION_FIRST_LOOK_S` after it, then each point as long again as the operation
    had run by the one before times :data:`OPERATION_POLL_SHARE`, between
    :data:`OPERATION_LEAST_S` and :data:`POLL_S` (:func:`next_poll_at`). A short operation
    is seen done soon after it is, a long one (an AKS control-plane change takes minutes)
    is polled every :data:`POLL_S`. The schedule is fixed-rate, as a ticker is: a poll
    that ran late (a busy worker) does not push the later ones back, where "a share of the
    time run, from now" would add every poll's lateness to when the end is seen (issue 13:
    30 upgrades at once saw their 2 s operations done 0.85 s late on average)."""
    if status.retry_after_s > 0:
        return status.retry_after_s
    elapsed = now - op.started_at
    return next_poll_at(elapsed) - elapsed


def next_poll_at(elapsed: float) -> float:
    """The first point of the poll schedule after ``elapsed`` seconds from ARM's answer to
    the PUT, in seconds from it (see :func:`operation_recheck_s`): 1, 1.5, 2, 2.5, 3.125,
    … then every :data:`POLL_S` once the share reaches it. Arithmetic past that point, so
    an operation of hours costs no loop."""
    due = OPERATION_FIRST_LOOK_S
    while due <= elapsed:
        step = OPERATION_POLL_SHARE * due
        if step >= POLL_S:  # from here on every POLL_S
            return due + (int((elapsed - due) // POLL_S) + 1) * POLL_S
        due += max(OPERATION_LEAST_S, step)
    return due


def converge_revisions(run: Run, ports: ClusterPorts, desired: list[str],
                       now: float) -> tuple[Run, float | None]:
    """Bring the cluster's add-on revisions to ``desired``.

    Observes first, so a PUT that was sent before a crash is not sent again: this run's own
    operation while it runs (polled once a tick, the next tick no sooner than the poll's
    ``Retry-After``, else at the next point of :func:`operation_recheck_s`'s schedule), else
    the cluster. While another operation runs on the cluster (provisioningState not final,
    or ARM's 409) it waits, saying so once. A cluster left Failed by an earlier
    operation is PUT again (AKS's reconcile).

    Returns:
        (run, seconds to wait before looking again), or (run, None) once the cluster runs
        ``desired`` and its provisioningState is Succeeded.
    Raises:
        ArmError: the operation this run started failed (ARM's code and message); the
            cluster stays as AKS left it, for the kind to read and decide.
    """
    mine = run.operation is not None and run.operation.revisions == desired
    if mine and (anchored := answered(run, now)) is not None:
        return anchored, OPERATION_FIRST_LOOK_S
    if mine:
        # the operation's own answer first: while it runs, that is all there is to know,
        # and the cluster's GET would double the ARM reads of every poll
        wait = operation_wait_s(run, ports, f"ARM operation to set revisions {desired}", now)
        if wait is not None:
            return run, wait
    mesh = ports.mesh.get_mesh(run.cluster)
    if mesh.revisions == desired:
        if mesh.provisioning_state == "Succeeded":
            return run, None
        if mesh.provisioning_state != "Failed" or mine:
            # done as ARM's operation says, the resource not Succeeded yet: soon
            return run, OPERATION_LEAST_S if mine else POLL_S
        # A failed operation left the cluster Failed with these revisions: PUT them again,
        # which is how AKS reconciles a failed cluster (the same body, a new operation).
    elif mesh.provisioning_state not in ("Succeeded", "Failed", "Canceled"):
        return _busy(run, now, f"the cluster is {mesh.provisioning_state} (another "
                               "operation runs on it)"), BUSY_POLL_S
    try:
        token = ports.mesh.set_revisions(run.cluster, desired)
    except ArmBusy as exc:
        return _busy(run, now, str(exc)), max(BUSY_POLL_S, exc.retry_after)
    run = run.evolve(operation=Operation(revisions=desired, token=token, started_at=now,
                                         answered=False))
    # at once, the step chained after this one sets when the poll schedule counts from
    return run.log(now, "arm", f"PUT serviceMeshProfile revisions {desired}"), 0.0


def _busy(run: Run, now: float, why: str) -> Run:
    """The run waiting for another operation on the cluster: one history line a wait."""
    last = run.history[-1] if run.history else None
    if last is not None and last.kind == "wait":
        return run
    return run.log(now, "wait", f"waiting: {why}; meshops looks again every "
                                f"{BUSY_POLL_S:.0f}s and goes on when it has finished")
