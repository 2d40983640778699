"""The canary upgrade workflow (DESIGN.md §5.1) as step functions, and people's decisions.

``tick(run, ports, now)`` runs the one step the run's phase calls for. Each step observes the
world through the ports, decides in pure code (``planning``, ``gates``), then converges the
world to an absolute state — a namespace label, a ``restartedAt`` value stored in the run
before it is written, a revision list — so that running a step twice writes nothing the
second time. A step never sleeps: it returns how long to wait before the next tick
(``StepResult.recheck_after``), or ``None`` when the run waits for a person or has ended.

``decide(run, action, user, policy, now)`` applies a person's decision (a click or a typed
command) as one state change, or raises :class:`DecisionRefused` saying what happened
instead (StackStorm's inquiry failure modes: already responded, unauthorized, timed out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from workflows.errors import (
    ArmError,
    DecisionRefused,
    InvalidRevision,
    MetricsUnavailable,
    PermanentError,
    TemporaryError,
)
from workflows.gates import decide_bake, error_sample, judge
from workflows.model import (
    Approval,
    Operation,
    Phase,
    Rollback,
    RollbackStep,
    Run,
    Verdict,
    Wave,
    WaveStep,
)
from workflows.planning import check_upgrade, plan_waves
from workflows.ports import ClusterApi, ClusterPorts, Pod, Workload

POLL_S = 3.0  # seconds between polls of an ARM operation or a rollout
CONTROL_PLANE_DEADLINE_S = 900.0


@dataclass(frozen=True)
class StepResult:
    run: Run
    recheck_after: float | None  # seconds; None: parked (waits for a person) or terminal
    changed: bool = True


@dataclass(frozen=True)
class ClusterPolicy:
    """Who may act on one cluster (DESIGN.md §6 Access). Slack user ids."""

    requesters: frozenset[str] = field(default_factory=frozenset)  # empty: anyone
    approvers: frozenset[str] = field(default_factory=frozenset)
    allow_self_approval: bool = False

    def may_request(self, user: str) -> bool:
        return not self.requesters or user in self.requesters or user in self.approvers


def restart_token(now: float) -> str:
    """The ``restartedAt`` value: RFC 3339 like ``kubectl rollout restart`` writes, with
    microseconds so a rollback right after a wave's restart still changes the template."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- tick


def tick(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """Advance ``run`` by one step.

    Errors of the ports are handled here: a ``TemporaryError`` retries after its delay with
    a history line; a ``PermanentError`` fails the run (or, once the canary control plane
    exists, rolls back).
    """
    if run.phase.terminal or run.phase.waiting_for_person:
        return StepResult(run, None, changed=False)
    try:
        if run.kind in ("enable", "ingress", "disable") and run.phase in (
                Phase.PLANNING, Phase.ENABLING, Phase.APPLYING):
            from workflows.enable import step

            return step(run, ports, now)
        return _STEPS[run.phase](run, ports, now)
    except TemporaryError as exc:
        return StepResult(run.log(now, "retry", f"{exc} — retrying in {exc.delay_s:.0f}s"),
                          exc.delay_s)
    except PermanentError as exc:
        if run.phase in (Phase.MIGRATING, Phase.CONTROL_PLANE) and run.kind in ("upgrade",
                                                                                "rollover"):
            return StepResult(begin_rollback(run, str(exc), now), 0.0)
        return StepResult(
            run.to(Phase.FAILED, now, f"failed: {exc}", outcome=str(exc)), None
        )


def plan_rollover(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """A patch rollover: the same waves and gate, restarting onto the revision's new patch."""
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
    except (PermanentError, InvalidRevision) as exc:
        return StepResult(run.to(Phase.REFUSED, now, f"refused: {exc}", outcome=str(exc)), None)
    run = run.evolve(stable_revision=revision, waves=plan.waves)
    text = (f"plan: restart workloads onto {revision} {run.target_version or 'its latest patch'}"
            f", {len(plan.waves)} waves, {sum(len(w.namespaces) for w in plan.waves)} "
            f"namespaces, {sum(w.workloads for w in plan.waves)} workloads")
    return StepResult(run.to(Phase.AWAITING_APPROVAL, now, text), None)


def plan_upgrade(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """Read the cluster and its namespaces; refuse with a reason, or post the plan."""
    if run.kind == "rollover":
        return plan_rollover(run, ports, now)
    try:
        mesh = ports.mesh.get_mesh(run.cluster)
        targets = ports.mesh.upgrade_targets(run.cluster) if mesh.mode == "Istio" else []
        stable = check_upgrade(mesh, run.canary_revision, targets)
        capi = ports.cluster_api(run.cluster)
        namespaces = capi.list_namespaces()
        names = [ns.name for ns in namespaces if ns.revision == stable]
        workloads = capi.list_workloads(names)
        plan = plan_waves(namespaces, workloads, stable, run.canary_revision, run.options)
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
    return StepResult(run.to(Phase.AWAITING_APPROVAL, now, text), None)


def _converge_revisions(
    run: Run, ports: ClusterPorts, desired: list[str], now: float
) -> tuple[Run, bool]:
    """Bring the cluster's revisions to ``desired``; returns (run, done).

    Observes the cluster first, so a PUT that was sent before a crash is not sent again.
    Raises ``ArmError`` (permanent) when the operation failed.
    """
    mesh = ports.mesh.get_mesh(run.cluster)
    op = run.operation if run.operation and run.operation.revisions == desired else None
    if op is not None and op.url:
        status = ports.mesh.operation_status(run.cluster, op.url)
        if status.status == "Failed" or status.status == "Canceled":
            raise ArmError(
                f"ARM operation to set revisions {desired} ended {status.status}: "
                f"{status.error_code}: {status.error_message}",
                status.error_code,
            )
        if not status.done:
            return run, False
    if mesh.revisions == desired:
        if mesh.provisioning_state == "Succeeded":
            return run, True
        if mesh.provisioning_state == "Failed" and op is None:
            raise ArmError(f"The cluster's last operation failed with revisions {desired}.")
        return run, False
    if mesh.provisioning_state not in ("Succeeded", "Failed", "Canceled"):
        # Another operation runs on the cluster: ARM would answer 409. Wait for it.
        return run, False
    url = ports.mesh.set_revisions(run.cluster, desired)
    run = run.evolve(operation=Operation(revisions=desired, url=url, started_at=now))
    return run.log(now, "arm", f"PUT serviceMeshProfile revisions {desired}"), False


def start_canary(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    assert run.stable_revision
    desired = [run.stable_revision, run.canary_revision]
    run, done = _converge_revisions(run, ports, desired, now)
    if not done:
        return StepResult(run, POLL_S)
    return StepResult(
        run.to(Phase.CONTROL_PLANE, now,
               f"canary control plane {run.canary_revision} deployed beside "
               f"{run.stable_revision}"),
        0.0,
    )


def wait_control_plane(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    ready = ports.cluster_api(run.cluster).control_plane_revisions()
    if ready.get(run.canary_revision) and run.kind == "enable":
        return StepResult(run.to(Phase.COMPLETED, now,
                                 f"completed: istiod-{run.canary_revision} is available; label "
                                 f"namespaces istio.io/rev={run.canary_revision} to inject "
                                 "sidecars", outcome=f"mesh enabled with {run.canary_revision}"),
                          None)
    if ready.get(run.canary_revision):
        run = run.to(Phase.MIGRATING, now,
                      f"istiod-{run.canary_revision} is available; migrating wave 0",
                      wave_index=0)
        return StepResult(run, 0.0)
    started = run.operation.started_at if run.operation else run.updated_at
    if now - started > CONTROL_PLANE_DEADLINE_S:
        raise PermanentError(
            f"istiod-{run.canary_revision} not available after "
            f"{CONTROL_PLANE_DEADLINE_S / 60:.0f} minutes"
        )
    return StepResult(run, POLL_S)


def _wave_label(w: Wave) -> str:
    return f"wave {w.index} ({', '.join(w.namespaces)})"


def _pods_not_on(pods: list[Pod], revision: str) -> list[Pod]:
    return [p for p in pods if p.revision is not None and p.revision != revision]


def _restart(capi: ClusterApi, namespaces: list[str], token: str) -> int:
    """Restart every workload whose restartedAt is not ``token``; returns how many."""
    n = 0
    for w in capi.list_workloads(namespaces):
        if w.restarted_at != token:
            capi.restart_workload(w, token)
            n += 1
    return n


def _rollout_state(
    capi: ClusterApi, namespaces: list[str], revision: str
) -> tuple[list[Workload], list[Pod], list[Pod], list[Pod]]:
    """(pending workloads, pods on another revision, crash-looping pods, all pods)."""
    workloads = capi.list_workloads(namespaces)
    pods = capi.list_pods(namespaces)
    pending = [w for w in workloads if not w.rolled_out]
    crashing = [p for p in pods if p.waiting_reason == "CrashLoopBackOff"]
    return pending, _pods_not_on(pods, revision), crashing, pods


def migrate_wave(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """One step of the current wave: baseline → label → restart → verify → bake."""
    wave = run.current_wave
    assert wave is not None and run.stable_revision
    canary = run.canary_revision
    capi = ports.cluster_api(run.cluster)
    opts, th = run.options, run.thresholds

    if wave.step == WaveStep.BASELINE:
        try:
            baseline = ports.metrics(run.cluster).sample(wave.namespaces, opts.interval_s)
            text = f"{_wave_label(wave)}: baseline measured"
        except MetricsUnavailable as exc:
            baseline = {}
            text = f"{_wave_label(wave)}: no baseline ({exc}); absolute thresholds only"
        wave = wave.evolve(baseline=baseline, step=WaveStep.LABEL)
        return StepResult(run.with_wave(wave).log(now, "step", text), 0.0)

    if wave.step == WaveStep.LABEL:
        current = {ns.name: ns for ns in capi.list_namespaces()}
        missing = [ns for ns in wave.namespaces if ns not in current]
        if missing:
            raise PermanentError(f"namespaces vanished during the upgrade: {', '.join(missing)}")
        for ns in wave.namespaces:
            if current[ns].revision != canary:
                capi.set_namespace_revision(ns, canary)
        wave = wave.evolve(labelled=True, step=WaveStep.RESTART,
                           restart_token=restart_token(now))
        text = f"{_wave_label(wave)}: labelled istio.io/rev={canary}"
        return StepResult(run.with_wave(wave).log(now, "step", text), 0.0)

    if wave.step == WaveStep.RESTART:
        assert wave.restart_token
        n = _restart(capi, wave.namespaces, wave.restart_token)
        wave = wave.evolve(step=WaveStep.VERIFY, restarted_at=now)
        text = f"{_wave_label(wave)}: restarted {n} workloads"
        return StepResult(run.with_wave(wave).log(now, "step", text), POLL_S)

    if wave.step == WaveStep.VERIFY:
        pending, stale, crashing, pods = _rollout_state(capi, wave.namespaces, canary)
        if run.target_version:  # a rollover: the sidecars must also be on the new patch
            stale += [p for p in pods if p.revision is not None
                      and p.proxy_version != run.target_version]
        if crashing:
            names = ", ".join(f"{p.namespace}/{p.name}" for p in crashing[:5])
            return StepResult(begin_rollback(run, f"pods crash-looping on {canary}: {names}",
                                             now), 0.0)
        if pending or stale:
            started = wave.restarted_at or now
            if now - started > th.rollout_deadline_s:
                what = ", ".join(f"{w.namespace}/{w.name}" for w in pending[:5]) or ", ".join(
                    f"{p.namespace}/{p.name}" for p in stale[:5])
                return StepResult(begin_rollback(
                    run, f"rollout not complete after {th.rollout_deadline_s:.0f}s: {what}",
                    now), 0.0)
            return StepResult(run, POLL_S, changed=False)
        versions = sorted({p.proxy_version for p in pods if p.proxy_version})
        wave = wave.evolve(step=WaveStep.BAKE, bake_started_at=now)
        text = (f"{_wave_label(wave)}: {len(pods)} pods on {canary}"
                f" ({', '.join(versions) or 'no sidecar'}); baking {opts.bake_s:.0f}s")
        return StepResult(run.with_wave(wave).log(now, "step", text), opts.interval_s)

    if wave.step == WaveStep.BAKE:
        return _bake(run, wave, ports, now)
    raise PermanentError(f"wave {wave.index} is in an unknown step {wave.step}")


def _bake(run: Run, wave: Wave, ports: ClusterPorts, now: float) -> StepResult:
    opts, th = run.options, run.thresholds
    try:
        current = ports.metrics(run.cluster).sample(wave.namespaces, opts.interval_s)
        sample = judge(wave.namespaces, current, wave.baseline, th, now)
    except MetricsUnavailable as exc:
        sample = error_sample(now, str(exc))
    wave = wave.evolve(samples=[*wave.samples, sample])
    run = run.with_wave(wave).log(
        now, "gate", f"{_wave_label(wave)}: gate sample {len(wave.samples)}: "
        f"{sample.verdict.value}"
        + (f" — {sample.reason}" if sample.reason else ""),
        wave=wave.index, verdict=sample.verdict.value,
        checks=[c.model_dump() for c in sample.checks],
    )
    assert wave.bake_started_at is not None
    decision = decide_bake(wave.samples, wave.bake_started_at, now, opts.bake_s,
                           opts.interval_s, th)
    if decision.verdict is None:
        return StepResult(run, decision.after_s)
    wave = wave.evolve(verdict=decision.verdict)
    run = run.with_wave(wave)
    if decision.verdict == Verdict.PASS:
        return StepResult(_next_wave(run.with_wave(wave.evolve(step=WaveStep.DONE)), now), 0.0)
    if decision.verdict == Verdict.FAIL:
        return StepResult(
            begin_rollback(run, f"metric gate FAIL in {_wave_label(wave)}: {decision.reason}",
                           now), 0.0)
    why = ("metric gate INCONCLUSIVE: " if decision.verdict == Verdict.INCONCLUSIVE
           else "could not measure the metric gate: ") + decision.reason
    return StepResult(
        run.to(Phase.PAUSED, now, f"paused: {why}", paused_from=Phase.MIGRATING,
               pause_reason=why), None)


def _next_wave(run: Run, now: float) -> Run:
    wave = run.current_wave
    assert wave is not None
    text = f"{_wave_label(wave)}: gate PASS"
    if run.wave_index + 1 >= len(run.waves) and run.kind == "rollover":
        return run.to(Phase.COMPLETED, now, text + f"; every workload restarted onto "
                      f"{run.canary_revision} {run.target_version or ''}".rstrip(),
                      outcome=f"rolled over to {run.target_version or run.canary_revision}")
    if run.wave_index + 1 >= len(run.waves):
        return run.to(Phase.AWAITING_COMPLETION, now,
                      text + f"; every wave is on {run.canary_revision}: complete or roll back?")
    run = run.log(now, "step", text)
    if run.options.approve_waves:
        return run.to(Phase.AWAITING_WAVE_APPROVAL, now,
                      f"wave {run.wave_index + 1} waits for an approval")
    return run.evolve(wave_index=run.wave_index + 1)  # type: ignore[no-any-return]


def complete_upgrade(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """PUT ``[canary]``, follow the operation, verify ``istiod-<stable>`` is gone."""
    assert run.stable_revision
    if run.operation is None or run.operation.revisions != [run.canary_revision]:
        left = [ns.name for ns in ports.cluster_api(run.cluster).list_namespaces()
                if ns.revision == run.stable_revision]
        if left:
            why = (f"namespaces still labelled {run.stable_revision}: {', '.join(left)}; "
                   "completing would leave them without a control plane")
            return StepResult(run.to(Phase.PAUSED, now, f"paused: {why}",
                                     paused_from=Phase.AWAITING_COMPLETION, pause_reason=why),
                              None)
    run, done = _converge_revisions(run, ports, [run.canary_revision], now)
    if not done:
        return StepResult(run, POLL_S)
    cp = ports.cluster_api(run.cluster).control_plane_revisions()
    if run.stable_revision in cp:
        return StepResult(run, POLL_S, changed=False)
    return StepResult(
        run.to(Phase.COMPLETED, now,
               f"completed: {run.cluster} runs {run.canary_revision} only; "
               f"istiod-{run.stable_revision} removed",
               outcome=f"upgraded to {run.canary_revision}"),
        None,
    )


def begin_rollback(run: Run, reason: str, now: float) -> Run:
    """Move the run to ROLLING_BACK over every namespace it migrated.

    A patch rollover cannot go back (AKS has already replaced the control plane's patch):
    it pauses and asks instead.
    """
    if run.kind == "rollover":
        why = (f"{reason}; a patch cannot be rolled back by meshops, so the rollover waits "
               "for a person (resume to continue, cancel is not possible)")
        return run.to(Phase.PAUSED, now, f"paused: {why}", paused_from=Phase.MIGRATING,
                      pause_reason=why, outcome=reason)
    namespaces = run.migrated_namespaces
    wave = run.current_wave
    if run.phase == Phase.MIGRATING and wave is not None and wave.step == WaveStep.LABEL:
        # A crash inside the label step may have relabelled part of this wave unrecorded.
        namespaces += [ns for ns in wave.namespaces if ns not in namespaces]
    rb = Rollback(reason=reason, namespaces=namespaces)
    return run.to(Phase.ROLLING_BACK, now, f"rolling back: {reason}", rollback=rb,
                  outcome=reason)


def roll_back(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """Relabel the migrated namespaces to stable, restart, verify, PUT ``[stable]``."""
    rb = run.rollback
    assert rb is not None and run.stable_revision
    stable = run.stable_revision
    capi = ports.cluster_api(run.cluster)
    if rb.step == RollbackStep.RELABEL:
        current = {ns.name: ns for ns in capi.list_namespaces()}
        for ns in rb.namespaces:
            if ns in current and current[ns].revision != stable:
                capi.set_namespace_revision(ns, stable)
        rb = rb.evolve(step=RollbackStep.RESTART, restart_token=restart_token(now))
        text = (f"rollback: labelled istio.io/rev={stable} on {', '.join(rb.namespaces)}"
                if rb.namespaces else "rollback: no namespace was migrated")
        return StepResult(run.evolve(rollback=rb).log(now, "step", text), 0.0)
    if rb.step == RollbackStep.RESTART:
        assert rb.restart_token
        n = _restart(capi, rb.namespaces, rb.restart_token) if rb.namespaces else 0
        rb = rb.evolve(step=RollbackStep.VERIFY, restarted_at=now)
        return StepResult(run.evolve(rollback=rb).log(
            now, "step", f"rollback: restarted {n} workloads"), POLL_S if n else 0.0)
    if rb.step == RollbackStep.VERIFY:
        if rb.namespaces:
            pending, stale, _, pods = _rollout_state(capi, rb.namespaces, stable)
            if pending or stale:
                if now - (rb.restarted_at or now) > run.thresholds.rollout_deadline_s:
                    why = "rollback rollout not complete: " + ", ".join(
                        f"{w.namespace}/{w.name}" for w in pending[:5])
                    return StepResult(run.to(Phase.PAUSED, now, f"paused: {why}",
                                             paused_from=Phase.ROLLING_BACK,
                                             pause_reason=why), None)
                return StepResult(run, POLL_S, changed=False)
            text = f"rollback: {len(pods)} pods back on {stable}"
        else:
            text = "rollback: nothing to verify in the data plane"
        rb = rb.evolve(step=RollbackStep.REVERT)
        return StepResult(run.evolve(rollback=rb).log(now, "step", text), 0.0)
    if rb.step == RollbackStep.REVERT:
        run, done = _converge_revisions(run, ports, [stable], now)
        if not done:
            return StepResult(run, POLL_S)
        if run.canary_revision in capi.control_plane_revisions():
            return StepResult(run, POLL_S, changed=False)
        return StepResult(
            run.to(Phase.ROLLED_BACK, now,
                   f"rolled back: {run.cluster} runs {stable} only; reason: {rb.reason}",
                   rollback=rb.evolve(step=RollbackStep.DONE)),
            None,
        )
    raise PermanentError(f"rollback is in an unknown step {rb.step}")


_STEPS = {
    Phase.PLANNING: plan_upgrade,
    Phase.STARTING_CANARY: start_canary,
    Phase.CONTROL_PLANE: wait_control_plane,
    Phase.MIGRATING: migrate_wave,
    Phase.COMPLETING: complete_upgrade,
    Phase.ROLLING_BACK: roll_back,
}


# --------------------------------------------------------------------------- expiry


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def expire(run: Run, now: float) -> Run | None:
    """Expire the run's pending approval request if it has waited too long.

    The plan's approval expiring cancels the run (nothing has changed yet). Later requests
    (wave approval, completion, a pause) follow ``options.on_timeout``: ``hold`` leaves the
    run waiting, once noted in its history; ``rollback`` rolls it back.

    Returns:
        The changed run, or None when nothing expired (no wait, no timeout, not yet, or
        this wait already expired).
    """
    timeout = run.options.approval_timeout_s
    if (not run.phase.waiting_for_person or run.parked_at is None or run.expired_at is not None
            or timeout <= 0 or now - run.parked_at < timeout):
        return None
    waited = _duration(timeout)
    if run.phase == Phase.AWAITING_APPROVAL:
        return run.to(Phase.CANCELLED, now,
                      f"expired: nobody approved the plan within {waited}; nothing was changed",
                      outcome=f"the plan's approval request expired after {waited}")
    what = {Phase.AWAITING_WAVE_APPROVAL: f"the approval of wave {run.wave_index + 1}",
            Phase.AWAITING_COMPLETION: "the completion decision",
            Phase.PAUSED: "the decision on the paused run"}[run.phase]
    run = run.evolve(expired_at=now)
    if run.options.on_timeout == "rollback":
        return begin_rollback(run, f"{what} expired after {waited}; the cluster's policy rolls "
                                   "back", now)
    return run.log(now, "expiry", f"{what} expired after {waited}; holding: the run waits as it "
                                  "is until someone decides")


# --------------------------------------------------------------------------- decisions

#: action → phases in which it is allowed
ALLOWED = {
    "approve": {Phase.AWAITING_APPROVAL, Phase.AWAITING_WAVE_APPROVAL},
    "reject": {Phase.AWAITING_APPROVAL, Phase.AWAITING_WAVE_APPROVAL},
    "cancel": {Phase.PLANNING, Phase.AWAITING_APPROVAL},
    "complete": {Phase.AWAITING_COMPLETION},
    "rollback": {Phase.CONTROL_PLANE, Phase.MIGRATING, Phase.AWAITING_WAVE_APPROVAL,
                 Phase.AWAITING_COMPLETION, Phase.PAUSED, Phase.STARTING_CANARY},
    "pause": {Phase.CONTROL_PLANE, Phase.MIGRATING},
    "resume": {Phase.PAUSED},
}

_PAST = {"approve": "approved", "reject": "rejected", "cancel": "cancelled",
         "complete": "completion approved", "rollback": "roll back requested",
         "pause": "paused", "resume": "resumed"}

_APPROVER_ACTIONS = {"approve", "reject", "complete"}


def _already(run: Run, action: str) -> str:
    last = next((a for a in reversed(run.approvals)), None)
    by = f" ({_PAST[last.decision]} by <@{last.user}>)" if last else ""
    if run.phase.terminal:
        return f"Run `{run.id}` has already ended: {run.phase.value}{by}. Nothing to {action}."
    return (f"Run `{run.id}` is {run.phase.value.replace('_', ' ')}{by}; "
            f"`{action}` is not possible now.")


def decide(run: Run, action: str, user: str, policy: ClusterPolicy, now: float) -> Run:
    """Apply a person's decision to ``run``.

    Args:
        action: approve | reject | cancel | complete | rollback | pause | resume.
        user: the Slack user id of the person.
        policy: the cluster's access policy.
    Returns:
        The run after the decision (not yet saved).
    Raises:
        DecisionRefused: the run is not in a state that allows it (says what happened
            instead), or this person may not take it (says who may).
    """
    if action not in ALLOWED:
        raise DecisionRefused(f"`{action}` is not a decision meshops knows.")
    if run.phase not in ALLOWED[action]:
        raise DecisionRefused(_already(run, action))
    if run.kind in ("enable", "ingress", "disable") and action in ("rollback", "pause",
                                                                   "complete"):
        raise DecisionRefused(f"Run `{run.id}` ({run.kind}) has no `{action}`; it ends when "
                              "the change is verified in the cluster.")
    if action in _APPROVER_ACTIONS:
        if user not in policy.approvers:
            who = ", ".join(f"<@{u}>" for u in sorted(policy.approvers)) or "nobody"
            raise DecisionRefused(
                f"Only approvers of `{run.cluster}` may {action} run `{run.id}`: {who}.")
        if action == "approve" and user == run.requester and not policy.allow_self_approval:
            raise DecisionRefused(
                f"You requested run `{run.id}`; another approver must approve it (four eyes).")
    elif user not in policy.approvers and user != run.requester and not policy.may_request(user):
        raise DecisionRefused(
            f"Only the requester or an approver of `{run.cluster}` may {action} run `{run.id}`.")

    gate = {Phase.AWAITING_APPROVAL: "plan", Phase.AWAITING_COMPLETION: "completion",
            Phase.PAUSED: "pause"}.get(run.phase, f"wave-{run.wave_index + 1}")
    run = run.evolve(approvals=[*run.approvals,
                                Approval(gate=gate, decision=action, user=user, at=now)])
    by = f"by <@{user}>"
    if action == "approve":
        if run.phase == Phase.AWAITING_APPROVAL and run.kind == "enable":
            return run.to(Phase.ENABLING, now, f"approved {by}")
        if run.phase == Phase.AWAITING_APPROVAL and run.kind in ("ingress", "disable"):
            return run.to(Phase.APPLYING, now, f"approved {by}")
        if run.phase == Phase.AWAITING_APPROVAL and run.kind == "rollover":
            return run.to(Phase.MIGRATING, now, f"approved {by}", wave_index=0)
        if run.phase == Phase.AWAITING_APPROVAL:
            return run.to(Phase.STARTING_CANARY, now, f"approved {by}")
        return run.to(Phase.MIGRATING, now, f"wave {run.wave_index + 1} approved {by}",
                      wave_index=run.wave_index + 1)
    if action == "reject":
        if run.phase == Phase.AWAITING_WAVE_APPROVAL:
            return begin_rollback(run, f"wave {run.wave_index + 1} rejected {by}", now)
        return run.to(Phase.REJECTED, now, f"rejected {by}", outcome=f"rejected {by}")
    if action == "cancel":
        return run.to(Phase.CANCELLED, now, f"cancelled {by}", outcome=f"cancelled {by}")
    if action == "complete":
        return run.to(Phase.COMPLETING, now, f"completion approved {by}")
    if action == "rollback":
        return begin_rollback(run, f"roll back requested {by}", now)
    if action == "pause":
        return run.to(Phase.PAUSED, now, f"paused {by}", paused_from=run.phase,
                      pause_reason=f"paused {by}")
    # resume
    target = run.paused_from or Phase.MIGRATING
    wave = run.current_wave
    if target == Phase.MIGRATING and wave is not None and wave.step == WaveStep.BAKE:
        if wave.verdict == Verdict.INCONCLUSIVE:
            # The person looked at the inconclusive gate and accepts the wave.
            run = run.with_wave(wave.evolve(step=WaveStep.DONE)).log(
                now, "decision", f"inconclusive gate of wave {wave.index} accepted {by}")
            nxt = _next_wave(run, now)
            if nxt.phase == Phase.PAUSED:  # moved to the next wave, still marked paused
                nxt = nxt.to(Phase.MIGRATING, now, f"resumed {by}", paused_from=None,
                              pause_reason="")
            return nxt
        if wave.verdict == Verdict.ERROR:
            run = run.with_wave(wave.evolve(verdict=None, samples=[], bake_started_at=now))
    return run.to(target, now, f"resumed {by}", paused_from=None, pause_reason="")
