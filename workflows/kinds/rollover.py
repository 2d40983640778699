"""The patch rollover: restart the workloads onto a new patch of the revision they run.

AKS rolls a revision's control plane to a new patch by itself; sidecars follow only when
their workloads restart (DESIGN.md §1). A rollover is started from a patch notice's
*Restart workloads* button or by ``/mesh inject … --restart``; it uses the upgrade's waves
and metric gate with ``canary = stable = the revision`` and, when it pins a patch
(``target_version``), waits until every sidecar runs it. A patch cannot be rolled back by
meshops, so a failing wave pauses and asks instead of rolling back.
"""

from __future__ import annotations

from workflows.errors import InvalidRevision, PermanentError
from workflows.kind import Button, Decision, StepResult
from workflows.model import Phase, Run
from workflows.planning import plan_waves
from workflows.policy import Role
from workflows.ports import ClusterPorts
from workflows.waves import WaveWorkflow, migrate_wave, plan_notes


def plan_rollover(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """The same waves and gate as an upgrade, over the namespaces on the revision."""
    revision = run.canary_revision
    try:
        mesh = ports.mesh.get_mesh(run.cluster)
        if mesh.revisions != [revision]:
            raise PermanentError(
                f"the cluster runs {', '.join(mesh.revisions) or 'no mesh'}, not only "
                f"{revision}" + (": an upgrade is in progress" if len(mesh.revisions) > 1
                                  else ""))
        capi = ports.cluster_api(run.cluster)
        namespaces = capi.list_namespaces()
        names = [ns.name for ns in namespaces if ns.revision == revision]
        plan = plan_waves(namespaces, capi.list_workloads(names), revision, revision,
                          run.options)
        notes = plan_notes(capi, namespaces, [n for w in plan.waves for n in w.namespaces])
    except (PermanentError, InvalidRevision) as exc:
        return StepResult(run.to(Phase.REFUSED, now, f"refused: {exc}", outcome=str(exc)), None)
    run = run.evolve(stable_revision=revision, waves=plan.waves)
    text = (f"plan: restart workloads onto {revision} {run.target_version or 'its latest patch'}"
            f", {len(plan.waves)} waves, {sum(len(w.namespaces) for w in plan.waves)} "
            f"namespaces, {sum(w.workloads for w in plan.waves)} workloads")
    if notes:
        text += "\nhandled other than by a rollout restart:\n" + "\n".join(
            f"• {n}" for n in notes)
    return StepResult(run.to(Phase.AWAITING_APPROVAL, now, text), None)


class Rollover(WaveWorkflow):
    """Restart every workload on a revision onto its new patch, in gated waves."""

    name = "rollover"
    steps = {Phase.PLANNING: plan_rollover, Phase.MIGRATING: migrate_wave}
    decisions = {
        "approve": Decision(frozenset({Phase.AWAITING_APPROVAL, Phase.AWAITING_WAVE_APPROVAL}),
                            Role.APPROVER),
        "reject": Decision(frozenset({Phase.AWAITING_APPROVAL}), Role.APPROVER),
        "cancel": Decision(frozenset({Phase.PLANNING, Phase.AWAITING_APPROVAL})),
        "pause": Decision(frozenset({Phase.MIGRATING})),
        "resume": Decision(frozenset({Phase.PAUSED})),
    }
    buttons = {
        Phase.AWAITING_APPROVAL: (Button("approve", "Approve", "primary"),
                                  Button("cancel", "Cancel")),
        Phase.AWAITING_WAVE_APPROVAL: (Button("approve", "Approve next wave", "primary"),),
        Phase.PAUSED: (Button("resume", "Resume", "primary"),),
        Phase.MIGRATING: (Button("pause", "Pause"),),
    }

    def describe(self, run: Run) -> str:
        return (f"restart the workloads of {run.cluster} onto {run.canary_revision} "
                f"{run.target_version or ''}").rstrip()

    def title(self, run: Run) -> str:
        return (f"Patch rollover of {run.cluster}: {run.canary_revision} → "
                f"{run.target_version or 'latest patch'}")

    def subject(self, run: Run) -> str:
        return f"The patch rollover of `{run.cluster}`"

    def accepted(self, run: Run) -> str:
        return (f"Planning the patch rollover of `{run.cluster}` as run `{run.id}`; the plan "
                f"will be posted in <#{run.channel}>.")

    def approve(self, run: Run, by: str, now: float) -> Run:
        return run.to(Phase.MIGRATING, now, f"approved {by}", wave_index=0)

    def fail_wave(self, run: Run, reason: str, now: float) -> Run:
        why = (f"{reason}; a patch cannot be rolled back by meshops, so the rollover waits "
               "for a person (resume to continue, cancel is not possible)")
        return run.to(Phase.PAUSED, now, f"paused: {why}", paused_from=Phase.MIGRATING,
                      pause_reason=why, outcome=reason)

    def after_last_wave(self, run: Run, text: str, now: float) -> Run:
        return run.to(Phase.COMPLETED, now, text + f"; every workload restarted onto "
                      f"{run.canary_revision} {run.target_version or ''}".rstrip(),
                      outcome=f"rolled over to {run.target_version or run.canary_revision}")
