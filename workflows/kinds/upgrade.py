"""The canary upgrade (DESIGN.md §5.1): ``/mesh upgrade <cluster> <revision>``.

plan → approval → start canary (PUT ``[stable, canary]``) → ``istiod-<canary>`` ready →
waves (:mod:`workflows.waves`) → completion decision → complete (PUT ``[canary]``, verify
``istiod-<stable>`` is gone). A failing wave, or any permanent error once the canary
control plane exists, rolls back (AKS's documented rollback: relabel, restart, PUT
``[stable]``).
"""

from __future__ import annotations

from collections.abc import Callable

from workflows.errors import InvalidCommand, InvalidRevision, PermanentError
from workflows.kind import Button, Confirm, Decision, StartRun, StepResult
from workflows.model import Phase, Run, parse_revision
from workflows.operations import POLL_S, converge_revisions
from workflows.planning import check_upgrade, plan_waves
from workflows.policy import Role
from workflows.ports import (
    INJECTION_LABEL,
    ISTIO_NAMESPACE,
    ClusterApi,
    ClusterPorts,
    Namespace,
)
from workflows.syntax import UPGRADE_FLAGS, cluster_revision_options
from workflows.waves import (
    WaveWorkflow,
    left_behind,
    low_traffic_note,
    migrate_wave,
    plan_notes,
    read_baseline_ahead,
    roll_back,
    sampling_note,
)

CONTROL_PLANE_DEADLINE_S = 900.0


def plan_upgrade(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """Read the cluster and its namespaces; refuse with a reason, or post the plan."""
    try:
        mesh = ports.mesh.get_mesh(run.cluster)
        targets = ports.mesh.upgrade_targets(run.cluster) if mesh.mode == "Istio" else []
        stable = check_upgrade(mesh, run.canary_revision, targets)
        capi = ports.cluster_api(run.cluster)
        namespaces = capi.list_namespaces()
        names = [ns.name for ns in namespaces if ns.revision == stable]
        workloads = capi.list_workloads(names)
        plan = plan_waves(namespaces, workloads, stable, run.canary_revision, run.options)
        notes = plan_notes(capi, namespaces, [n for w in plan.waves for n in w.namespaces])
        stable_cm = capi.get_config_map(ISTIO_NAMESPACE, shared_mesh_config(stable))
        canary_cm = capi.get_config_map(ISTIO_NAMESPACE,
                                        shared_mesh_config(run.canary_revision))
    except (PermanentError, InvalidRevision) as exc:
        return StepResult(run.to(Phase.REFUSED, now, f"refused: {exc}", outcome=str(exc)), None)
    run = run.evolve(stable_revision=stable, waves=plan.waves)
    text = (
        f"plan: {stable} → {run.canary_revision}, {len(plan.waves)} waves, "
        f"{sum(len(w.namespaces) for w in plan.waves)} namespaces, "
        f"{sum(w.workloads for w in plan.waves)} workloads"
    )
    if plan.skipped:
        text += f"; not migrated (istio-injection=enabled, ignored by the add-on): " \
                f"{', '.join(plan.skipped)}"
    if mesh.ingress:
        modes = ", ".join(m.lower() for m in mesh.ingress)
        text += (f"\ningress gateways ({modes}): {run.canary_revision}'s run beside "
                 f"{stable}'s from the canary's start; meshops waits for them before wave 0, "
                 f"and {stable}'s go with its control plane at completion")
    if canary_cm is not None:
        text += (f"\nMeshConfig: {shared_mesh_config(run.canary_revision)} exists already "
                 "and is kept as it is")
    elif stable_cm is not None:
        text += (f"\nMeshConfig: {shared_mesh_config(stable)} will be copied to "
                 f"{shared_mesh_config(run.canary_revision)} before the canary starts")
    text += "".join(f"\n{line}" for line in tag_and_gateway_lines(
        capi, namespaces, [w.namespaces for w in plan.waves], stable, run.canary_revision))
    if notes:
        text += "\nhandled other than by a rollout restart:\n" + "\n".join(
            f"• {n}" for n in notes)
    metrics = ports.metrics(run.cluster)
    sampling = sampling_note(run.options.bake_s, run.options.interval_s,
                             metrics.scrape_interval_s)
    if sampling:
        text += f"\n{sampling}"
    low = low_traffic_note(metrics, [w.namespaces for w in plan.waves], run.options,
                           run.thresholds, now)
    if low:
        text += f"\n{low}"
    return StepResult(run.to(Phase.AWAITING_APPROVAL, now, text), None)


def tag_and_gateway_lines(capi: ClusterApi, namespaces: list[Namespace],
                          waves: list[list[str]], stable: str, canary: str) -> list[str]:
    """The plan's lines on revision tags (AKS upgrade guide: "overwrite the prod-stable tag
    itself") and Gateway API gateways (istiod deploys them; Istio doc "Gateway API")."""
    lines = []
    wave_of = {ns: i for i, names in enumerate(waves) for ns in names}
    tagged: dict[str, list[str]] = {}
    for ns in namespaces:
        if ns.tag and ns.name in wave_of:
            tagged.setdefault(ns.tag, []).append(ns.name)
    for tag, names in sorted(tagged.items()):
        first = min(wave_of[n] for n in names)
        lines.append(
            f"revision tag {tag} ({stable}; namespaces {', '.join(names)}): wave {first} "
            f"points it at {canary}, as `istioctl tag set {tag} --revision {canary} "
            f"--overwrite` would; from then every new pod of these namespaces gets {canary}'s "
            "sidecar, and their workloads restart in their waves. A rollback points it back")
    idle = sorted(t for t, rev in capi.revision_tags().items()
                  if rev == stable and t not in tagged)
    if idle:
        lines.append(
            f"revision tags pointing at {stable} that label no namespace meshops moves: "
            f"{', '.join(idle)}; completion removes {stable}, so point them at {canary} "
            f"(`istioctl tag set <tag> --revision {canary} --overwrite`) or remove them")
    moving = [n for names in waves for n in names]
    gateways = capi.list_gateways(moving) if moving else []
    if gateways:
        lines.append(
            "Gateway API gateways (deployed by istiod as <name>-istio; they move with their "
            "namespace and are verified like its workloads): "
            + ", ".join(f"{g.namespace}/{g.name}" for g in gateways))
    return lines


def shared_mesh_config(revision: str) -> str:
    """The revision's MeshConfig overrides (AKS doc ``istio-meshconfig.md``)."""
    return f"istio-shared-configmap-{revision}"


def copy_mesh_config(run: Run, capi: ClusterApi, now: float) -> Run:
    """Copy ``istio-shared-configmap-<stable>`` to ``…-<canary>`` before the canary starts,
    as AKS asks ("create a separate ConfigMap for the new revision … before initiating the
    canary upgrade"), so the canary control plane starts with the same MeshConfig. One the
    team prepared already is kept; nothing to copy is fine."""
    assert run.stable_revision
    canary_name = shared_mesh_config(run.canary_revision)
    if capi.get_config_map(ISTIO_NAMESPACE, canary_name) is not None:
        return run
    data = capi.get_config_map(ISTIO_NAMESPACE, shared_mesh_config(run.stable_revision))
    if data is None:
        return run
    capi.create_config_map(ISTIO_NAMESPACE, canary_name, data)
    return run.log(now, "step", f"MeshConfig: copied {shared_mesh_config(run.stable_revision)} "
                                f"to {canary_name} in {ISTIO_NAMESPACE}")


def start_canary(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """Copy the shared MeshConfig, then PUT ``[stable, canary]`` and follow the operation."""
    assert run.stable_revision
    desired = [run.stable_revision, run.canary_revision]
    if run.operation is None or run.operation.revisions != desired:
        run = copy_mesh_config(run, ports.cluster_api(run.cluster), now)
    run, wait = converge_revisions(run, ports, desired, now)
    if wait is not None:
        if run.operation is not None and run.operation.started_at < now:
            # the first wave's baseline while ARM works (not in the PUT's own tick: the
            # operation starts sooner)
            run = read_baseline_ahead(run, ports, 0, now)
        return StepResult(run, wait)
    return StepResult(
        run.to(Phase.CONTROL_PLANE, now,
               f"canary control plane {run.canary_revision} deployed beside "
               f"{run.stable_revision}"),
        0.0,
    )


def wait_control_plane(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """Wait for ``istiod-<canary>`` and the canary's ingress gateways (one per enabled mode)
    to be available, then migrate wave 0."""
    capi = ports.cluster_api(run.cluster)
    gateways = capi.revision_gateways()
    modes = sorted({mode for mode, _ in gateways})
    waiting = [m for m in modes if not gateways.get((m, run.canary_revision))]
    if capi.control_plane_revisions().get(run.canary_revision) and not waiting:
        ready = (f" and its {', '.join(m.lower() for m in modes)} ingress gateway"
                 f"{'s' if len(modes) > 1 else ''}" if modes else "")
        run = run.to(Phase.MIGRATING, now,
                     f"istiod-{run.canary_revision}{ready} available; migrating wave 0",
                     wave_index=0)
        return StepResult(run, 0.0)
    started = run.operation.started_at if run.operation else run.updated_at
    if now - started > CONTROL_PLANE_DEADLINE_S:
        raise PermanentError(
            f"istiod-{run.canary_revision} not available after "
            f"{CONTROL_PLANE_DEADLINE_S / 60:.0f} minutes"
        )
    return StepResult(run, POLL_S)


def complete_upgrade(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """PUT ``[canary]``, follow the operation, verify ``istiod-<stable>`` is gone."""
    assert run.stable_revision
    if run.operation is None or run.operation.revisions != [run.canary_revision]:
        capi = ports.cluster_api(run.cluster)
        # only the namespaces labelled with the stable revision or a tag pointing at it
        # (a label selector): the check reads what it may find, not the whole cluster
        stable_labels = [run.stable_revision, *(t for t, rev in capi.revision_tags().items()
                                                if rev == run.stable_revision)]
        left = [ns.name for ns in capi.list_namespaces(labelled=stable_labels)
                if ns.revision == run.stable_revision
                and ns.labels.get(INJECTION_LABEL) != "disabled"]
        pods = left_behind(capi, run, run.stable_revision)
        why = ""
        if left:
            why = (f"namespaces still labelled {run.stable_revision} (or with a revision "
                   f"tag pointing at it): {', '.join(left)}; "
                   "completing would leave them without a control plane")
        elif pods:
            why = (f"pods still on {run.stable_revision} (a StatefulSet partition holds them, "
                   f"or no controller restarts them): {', '.join(pods[:10])}; completing "
                   "would cut them off from their control plane. Move them (lower the "
                   "partition, or delete the pods), then resume")
        if why:
            return StepResult(run.to(Phase.PAUSED, now, f"paused: {why}",
                                     paused_from=Phase.AWAITING_COMPLETION, pause_reason=why),
                              None)
    run, wait = converge_revisions(run, ports, [run.canary_revision], now)
    if wait is not None:
        return StepResult(run, wait)
    capi = ports.cluster_api(run.cluster)
    if run.stable_revision in capi.control_plane_revisions() or any(
            rev == run.stable_revision for _, rev in capi.revision_gateways()):
        return StepResult(run, POLL_S, changed=False)  # AKS is removing istiod and gateways
    return StepResult(
        run.to(Phase.COMPLETED, now,
               f"completed: {run.cluster} runs {run.canary_revision} only; "
               f"istiod-{run.stable_revision} removed",
               outcome=f"upgraded to {run.canary_revision}"),
        None,
    )


ROLL_BACK = Button("rollback", "Roll back", "danger", Confirm(
    "Roll back?", "Every migrated namespace goes back to *{stable}* and its workloads restart; "
    "then the *{canary}* control plane is removed.", "Roll back", danger=True))

_WORKING = frozenset({Phase.CONTROL_PLANE, Phase.MIGRATING})


class Upgrade(WaveWorkflow):
    """``/mesh upgrade <cluster> <revision> [options]``: a canary upgrade of the add-on."""

    name = "upgrade"
    verb = "upgrade"
    usage = f"upgrade <cluster> <revision> {UPGRADE_FLAGS}"
    steps = {
        Phase.PLANNING: plan_upgrade,
        Phase.STARTING_CANARY: start_canary,
        Phase.CONTROL_PLANE: wait_control_plane,
        Phase.MIGRATING: migrate_wave,
        Phase.COMPLETING: complete_upgrade,
        Phase.ROLLING_BACK: roll_back,
    }
    decisions = {
        "approve": Decision(frozenset({Phase.AWAITING_APPROVAL, Phase.AWAITING_WAVE_APPROVAL}),
                            Role.APPROVER),
        "reject": Decision(frozenset({Phase.AWAITING_APPROVAL, Phase.AWAITING_WAVE_APPROVAL}),
                           Role.APPROVER),
        "cancel": Decision(frozenset({Phase.PLANNING, Phase.AWAITING_APPROVAL})),
        "complete": Decision(frozenset({Phase.AWAITING_COMPLETION}), Role.APPROVER),
        "rollback": Decision(frozenset({Phase.STARTING_CANARY, Phase.CONTROL_PLANE,
                                        Phase.MIGRATING, Phase.AWAITING_WAVE_APPROVAL,
                                        Phase.AWAITING_COMPLETION, Phase.PAUSED})),
        "pause": Decision(_WORKING),
        "resume": Decision(frozenset({Phase.PAUSED})),
    }
    buttons = {
        Phase.AWAITING_APPROVAL: (Button("approve", "Approve", "primary"),
                                  Button("cancel", "Cancel")),
        Phase.AWAITING_WAVE_APPROVAL: (Button("approve", "Approve next wave", "primary"),
                                       ROLL_BACK),
        Phase.AWAITING_COMPLETION: (
            Button("complete", "Complete", "primary", Confirm(
                "Complete the upgrade?",
                "This removes the control plane of *{stable}*; only *{canary}* remains. "
                "Rolling back afterwards means a new upgrade.", "Complete")),
            ROLL_BACK),
        Phase.PAUSED: (Button("resume", "Resume", "primary"), ROLL_BACK),
        Phase.MIGRATING: (Button("pause", "Pause"), ROLL_BACK),
    }

    def parse(self, args: list[str], wrong: Callable[[str], InvalidCommand]) -> StartRun:
        cluster, revision, options = cluster_revision_options(args, "upgrade", wrong)
        return StartRun(self.name, cluster, parse_revision(revision), options)

    def describe(self, run: Run) -> str:
        return f"upgrade {run.cluster} to {run.canary_revision}"

    def title(self, run: Run) -> str:
        return (f"Mesh upgrade of {run.cluster}: {run.stable_revision or '?'} → "
                f"{run.canary_revision}")

    def subject(self, run: Run) -> str:
        return f"Upgrade of `{run.cluster}` to `{run.canary_revision}`"

    def accepted(self, run: Run) -> str:
        return (f"Planning the upgrade of `{run.cluster}` to `{run.canary_revision}` as run "
                f"`{run.id}`; the plan will be posted in <#{run.channel}>.")

    def approve(self, run: Run, by: str, now: float) -> Run:
        return run.to(Phase.STARTING_CANARY, now, f"approved {by}")

    def apply(self, run: Run, action: str, by: str, now: float) -> Run:
        if action == "complete":
            return run.to(Phase.COMPLETING, now, f"completion approved {by}")
        return super().apply(run, action, by, now)

    def after_last_wave(self, run: Run, text: str, now: float) -> Run:
        return run.to(Phase.AWAITING_COMPLETION, now,
                      text + f"; every wave is on {run.canary_revision}: complete or roll back?")
