"""Moving namespaces wave by wave behind the metric gate, and rolling them back.

The wave steps of DESIGN.md §5.1 (baseline → label → restart → verify → bake) and the
rollback of §5.1 (relabel → restart → verify → PUT ``[stable]``), shared by every kind
that moves a data plane in waves (:class:`WaveWorkflow`: the canary upgrade, the patch
rollover). Each step converges to an absolute state — a namespace label, a ``restartedAt``
value stored in the run before it is written — so running it twice writes nothing the
second time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, cast

from workflows.canary import (
    CanaryJudgement,
    CanaryWave,
    error_judgement,
    judge_canary,
    requests_to_decide,
    undecidable_baselines,
)
from workflows.errors import MetricsBusy, MetricsUnavailable, PermanentError
from workflows.gates import streak
from workflows.kind import StepResult, WorkflowKind, kind_of
from workflows.metric_templates import check as check_template
from workflows.metric_templates import render
from workflows.model import (
    GateSample,
    GateThresholds,
    Phase,
    Rollback,
    RollbackStep,
    Run,
    UpgradeOptions,
    Verdict,
    Wave,
    WaveStep,
)
from workflows.operations import POLL_S, converge_revisions
from workflows.ports import (
    REV_LABEL,
    ClusterApi,
    ClusterPorts,
    MetricsApi,
    Namespace,
    Pod,
    Workload,
)
from workflows.rollout import Rollout, assess, failing, special_handling
from workflows.syntax import duration_text
from workflows.traffic import TrafficWindow


class WaveWorkflow(WorkflowKind):
    """A kind whose runs move namespaces in waves; says what a failed wave and the end of
    the last wave mean for it."""

    def fail_wave(self, run: Run, reason: str, now: float) -> Run:
        """A wave failed (gate FAIL, crash loop, rollout deadline): roll back by default."""
        return begin_rollback(run, reason, now)

    def after_last_wave(self, run: Run, text: str, now: float) -> Run:
        """Every wave passed its gate; ``text`` says so."""
        raise NotImplementedError

    def plan_note(self, run: Run) -> str:
        """The bake and the gate every wave must pass."""
        return (f"{gate_summary(run.options, run.thresholds)} An approver other than the "
                "requester approves.")

    def on_permanent_error(self, run: Run, reason: str, now: float) -> Run:
        """A failing wave, or a failed start of the canary, rolls back; a failed
        completion or rollback pauses with ARM's error (*Resume* tries again, *Roll back*
        goes back), never a dead end."""
        if run.phase in (Phase.MIGRATING, Phase.CONTROL_PLANE):
            return self.fail_wave(run, reason, now)
        if run.phase == Phase.STARTING_CANARY:
            return begin_rollback(run, f"starting the canary failed: {reason}", now)
        if run.phase in (Phase.COMPLETING, Phase.ROLLING_BACK):
            what = "completing" if run.phase == Phase.COMPLETING else "rolling back"
            why = (f"{what} failed: {reason}. The cluster is as AKS left it; Resume tries "
                   "again" + (", Roll back goes back to the stable revision"
                              if run.phase == Phase.COMPLETING else ""))
            return run.to(Phase.PAUSED, now, f"paused: {why}", paused_from=run.phase,
                          pause_reason=why)
        return super().on_permanent_error(run, reason, now)

    def on_expired(self, run: Run, what: str, waited: str, now: float) -> Run:
        if run.options.on_timeout == "rollback":
            return self.fail_wave(run, f"{what} expired after {waited}; the cluster's policy "
                                       "rolls back", now)
        return super().on_expired(run, what, waited, now)

    def resume(self, run: Run, by: str, now: float) -> Run:
        """Resume a paused run; an INCONCLUSIVE wave the person resumes is accepted; a
        failed ARM operation is tried again (observed afresh, then PUT again)."""
        target = run.paused_from or Phase.MIGRATING
        if target in (Phase.STARTING_CANARY, Phase.COMPLETING, Phase.ROLLING_BACK):
            run = run.evolve(operation=None)
        wave = run.current_wave
        if target == Phase.MIGRATING and wave is not None and wave.step == WaveStep.BAKE:
            if wave.verdict == Verdict.INCONCLUSIVE:
                # The person looked at the inconclusive gate and accepts the wave.
                run = run.with_wave(wave.evolve(step=WaveStep.DONE)).log(
                    now, "decision", f"inconclusive gate of wave {wave.index} accepted {by}")
                nxt = next_wave(run, now)
                if nxt.phase == Phase.PAUSED:  # moved to the next wave, still marked paused
                    nxt = nxt.to(Phase.MIGRATING, now, f"resumed {by}", paused_from=None,
                                 pause_reason="")
                return nxt
            if wave.verdict == Verdict.ERROR:
                run = run.with_wave(wave.evolve(verdict=None, samples=[], bake_started_at=now))
        return run.to(target, now, f"resumed {by}", paused_from=None, pause_reason="")

    def apply(self, run: Run, action: str, by: str, now: float) -> Run:
        if action == "resume":
            return self.resume(run, by, now)
        if action == "rollback":
            return begin_rollback(run, f"roll back requested {by}", now)
        if action == "reject" and run.phase == Phase.AWAITING_WAVE_APPROVAL:
            return self.fail_wave(run, f"wave {run.wave_index + 1} rejected {by}", now)
        if action == "approve" and run.phase == Phase.AWAITING_WAVE_APPROVAL:
            return run.to(Phase.MIGRATING, now, f"wave {run.wave_index + 1} approved {by}",
                          wave_index=run.wave_index + 1)
        return super().apply(run, action, by, now)


def _kind(run: Run) -> WaveWorkflow:
    return cast(WaveWorkflow, kind_of(run))


def restart_token(now: float) -> str:
    """The ``restartedAt`` value: RFC 3339 like ``kubectl rollout restart`` writes, with
    microseconds so a rollback right after a wave's restart still changes the template."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def wave_label(w: Wave) -> str:
    return f"wave {w.index} ({', '.join(w.namespaces)})"


def point_namespaces(capi: ClusterApi, namespaces: list[Namespace], revision: str) -> str:
    """Make new pods of ``namespaces`` get ``revision``'s sidecar: relabel
    ``istio.io/rev=<revision>``, or, for a namespace labelled with a revision tag, point the
    tag at ``revision`` (AKS upgrade guide: "overwrite the prod-stable tag itself to change
    its mapping"; once per tag). Gateway API gateways pinned by their own ``istio.io/rev``
    label to another revision are relabelled too (their namespace's label alone would not
    move them). Converges: what is already right is not written. Returns what was done."""
    relabelled: list[str] = []
    tags: dict[str, list[str]] = {}
    gateways: list[str] = []
    for ns in namespaces:
        if ns.tag:
            if ns.revision != revision and ns.tag not in tags:
                capi.set_revision_tag(ns.tag, revision)
            tags.setdefault(ns.tag, []).append(ns.name)
        elif ns.labels.get(REV_LABEL) != revision:
            capi.set_namespace_revision(ns.name, revision)
            relabelled.append(ns.name)
        else:
            relabelled.append(ns.name)
    pinned = [g for g in capi.list_gateways([ns.name for ns in namespaces])
              if g.revision_label and g.revision_label != revision]
    known = capi.revision_tags() if pinned else {}
    for gw in pinned:
        label = gw.revision_label or ""
        if label in known:  # pinned to a tag: the tag moves, not the label
            if known[label] != revision and label not in tags:
                capi.set_revision_tag(label, revision)
            tags.setdefault(label, []).append(f"gateway {gw.namespace}/{gw.name}")
        else:
            capi.set_gateway_revision(gw.namespace, gw.name, revision)
            gateways.append(f"{gw.namespace}/{gw.name}")
    parts = []
    if relabelled:
        parts.append(f"labelled istio.io/rev={revision} on {', '.join(relabelled)}")
    parts += [f"revision tag {tag} points at {revision} ({', '.join(names)})"
              for tag, names in tags.items()]
    if gateways:
        parts.append(f"Gateway API gateways relabelled istio.io/rev={revision}: "
                     f"{', '.join(gateways)}")
    return "; ".join(parts) or "nothing to relabel"


def _restart(capi: ClusterApi, namespaces: list[str], token: str
             ) -> tuple[list[Workload], int]:
    """Restart (``kubectl rollout restart``) every workload whose restartedAt is not
    ``token``, except OnDelete ones (their pods are deleted one by one while verifying) and
    ones that will not be injected; ones already failing are restarted too (their namespace
    moved) but not waited for. Returns (the workloads restarted, how many are OnDelete)."""
    restarted: list[Workload] = []
    on_delete = 0
    for w in capi.list_workloads(namespaces):
        if w.injection_disabled:
            continue
        if w.restarts_by_deletion:
            on_delete += 1
        elif w.restarted_at != token:
            capi.restart_workload(w, token)
            restarted.append(w)
    return restarted, on_delete


def plan_notes(capi: ClusterApi, namespaces: list[Namespace], moving: list[str]) -> list[str]:
    """The plan's lines on workloads of the ``moving`` namespaces handled other than by a
    rollout restart (:func:`workflows.rollout.special_handling`)."""
    workloads, pods = capi.list_workloads(moving), capi.list_pods(moving)
    return special_handling([n for n in namespaces if n.name in moving or n.revision],
                            workloads, pods, capi.list_batch(moving), failing(workloads, pods))


def left_behind(capi: ClusterApi, run: Run, revision: str) -> list[str]:
    """Running pods of the run's migrated namespaces still on ``revision`` that no
    controller will move (held by a StatefulSet partition, or bare): completing would cut
    them off. Pods of Jobs and of workloads already failing before the move are not
    counted."""
    failing_before = {k for w in run.waves for k in w.preexisting}
    return sorted(f"{p.namespace}/{p.name}" for p in capi.list_pods(run.migrated_namespaces)
                  if p.revision == revision and not p.finished and p.owner_kind != "Job"
                  and not p.terminating and p.workload_key not in failing_before)


def _observe(capi: ClusterApi, namespaces: list[str], revision: str, preexisting: list[str],
             started_at: float, deleted_at: float | None, now: float, deadline_s: float,
             version: str | None = None, pods: list[Pod] | None = None) -> Rollout:
    """The rollover of ``namespaces`` as listed now (``pods``: already listed)."""
    return assess(capi.list_workloads(namespaces),
                  capi.list_pods(namespaces) if pods is None else pods, revision,
                  preexisting=preexisting, started_at=started_at, deleted_at=deleted_at,
                  now=now, default_deadline_s=deadline_s, version=version)


#: a wave whose young baseline no bake could decide on waits this many longest bakes at
#: most for more of it (then moves: the gate says what it could not decide)
THIN_BASELINE_WAITS = 4
#: the first look at a rollout after the restart, seconds: what it shows sets the next
ROLLOUT_FIRST_LOOK_S = 1.0
#: the soonest a rollout is looked at again, seconds (each look lists the wave's pods and
#: workloads)
ROLLOUT_LEAST_S = 0.5
#: a step waiting on the rollouts of workloads in at most this many (namespace, kind)
#: pairs names them (``StepResult.wake``) and looks again only after
#: :data:`workflows.operations.POLL_S`: a worker watches them (a watch each) and ticks the
#: run the moment they are rolled out, so a look sooner would find what the watch tells
#: anyway, at the cost of listing the wave's pods and workloads. Beyond it, a look at the
#: pace the pods move at (:func:`rollout_recheck_s`): a wave that large rolls out long
#: next to a look's delay.
WATCHED_PAIRS = 8


def watched(workloads: list[Workload]) -> bool:
    """Whether a worker follows these workloads' rollouts with watches (:data:`WATCHED_PAIRS`)."""
    return 0 < len({(w.namespace, w.kind) for w in workloads}) <= WATCHED_PAIRS


def rollout_recheck_s(state: Rollout, since: float, now: float) -> float:
    """Seconds until the next look at a rollout that is not done, from its progress so far.

    A fixed poll finds a rollout done up to a whole poll late, every wave. The pace the
    pods have moved at since the restart (``since``, Unix s) tells when the rest will have:
    ``stale`` pods left at ``moved`` pods per elapsed second. Before any pod has moved,
    as long again as it has run (a doubling). Bounded by :data:`ROLLOUT_LEAST_S` and
    :data:`workflows.operations.POLL_S`; kubectl's ``rollout status`` watches instead,
    which a worker that never waits cannot do."""
    elapsed = max(0.0, now - since)
    if state.moved:
        eta = max(1, len(state.stale)) * elapsed / len(state.moved)
    else:
        eta = elapsed
    return min(POLL_S, max(ROLLOUT_LEAST_S, eta))


def _names(items: list[Any], limit: int = 5) -> str:
    keys = [getattr(i, "key", None) or f"{i.namespace}/{i.name}" for i in items]
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit
                                      else "")


def migrate_wave(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """One step of the current wave: baseline → label → restart → verify → bake."""
    wave = run.current_wave
    assert wave is not None and run.stable_revision
    canary = run.canary_revision
    capi = ports.cluster_api(run.cluster)
    opts, th = run.options, run.thresholds

    if wave.step == WaveStep.BASELINE:
        # The gate's baseline is the Prometheus history before the move, read at each look.
        # A wave whose history is younger than the longest bake (a fresh Prometheus, a
        # namespace just given traffic) waits for it, that long at most: a shorter baseline
        # leaves the gate undecided on the rare slow requests of the tail. While Prometheus
        # is younger than the whole baseline, it also waits (THIN_BASELINE_WAITS × that at
        # most) until the baseline holds enough for a bake to decide every blocking signal:
        # moving sooner would end the wave INCONCLUSIVE. A wave left without a control (no
        # later wave, the earlier ones' namespaces moved less than a baseline ago) waits
        # until an earlier wave's can be one. What is recorded here: workloads already
        # failing.
        need = baseline_needed(run)
        waited = 0.0 if wave.baseline_wait_from is None else now - wave.baseline_wait_from
        # read ahead and found enough: more time only lengthens a baseline and adds requests
        short, thin = ([], {}) if wave.baseline_ahead == "ready" else _baseline_gaps(
            ports, run, wave, now, need, past_short=waited >= need)
        due = _control_due(run, wave, now)
        reason: Literal["history", "decidable", "control"] | None = (
            "history" if short and waited < need
            else "decidable" if thin and waited < THIN_BASELINE_WAITS * need
            else "control" if due is not None and now < due else None)
        if reason:
            again = min(opts.interval_s, due - now) if reason == "control" and due else \
                opts.interval_s
            if wave.baseline_wait_reason == reason:
                return StepResult(run, again, changed=False)
            # both limits count from the first wait: a line when what it waits for changes
            wave = wave.evolve(baseline_wait_from=now if wave.baseline_wait_from is None
                               else wave.baseline_wait_from, baseline_wait_reason=reason)
            if reason == "history":
                text = (f"{wave_label(wave)}: waiting up to {need:.0f}s for a baseline: "
                        f"Prometheus holds less than the longest bake ({need:.0f}s) of "
                        f"traffic of {', '.join(short)}")
            elif reason == "control":
                assert due is not None
                text = (f"{wave_label(wave)}: waiting {due - now:.0f}s for a control: no "
                        f"later wave is left to compare with, and the namespaces of earlier "
                        f"waves have been on {canary} less than a baseline ({need:.0f}s); "
                        "without a control, a fleet-wide incident would read as the "
                        "canary's fault")
            else:
                text = (f"{wave_label(wave)}: waiting up to "
                        f"{THIN_BASELINE_WAITS * need - waited:.0f}s more for a baseline the "
                        "gate can decide on: Prometheus is younger than the baseline and holds too "
                        "few requests for the longest bake to tell a regression of "
                        + ", ".join(f"{ns} ({what})" for ns, what in sorted(thin.items()))
                        + " apart")
            return StepResult(run.with_wave(wave).log(now, "step", text), again)
        before = failing(capi.list_workloads(wave.namespaces), capi.list_pods(wave.namespaces))
        text = (f"{wave_label(wave)}: baseline: the gate reads up to "
                f"{th.canary.baseline_s / 60:.0f} min of traffic before the move")
        if before:
            text += (f"; already failing before the move (not waited for, only new failures "
                     f"count): {', '.join(before)}")
        wave = wave.evolve(preexisting=before, step=WaveStep.LABEL)
        return StepResult(run.with_wave(wave).log(now, "step", text), 0.0)

    if wave.step == WaveStep.LABEL:
        current = {ns.name: ns for ns in capi.get_namespaces(wave.namespaces)}
        missing = [ns for ns in wave.namespaces if ns not in current]
        if missing:
            raise PermanentError(f"namespaces vanished during the upgrade: {', '.join(missing)}")
        done = point_namespaces(capi, [current[ns] for ns in wave.namespaces], canary)
        wave = wave.evolve(labelled=True, step=WaveStep.RESTART,
                           restart_token=restart_token(now))
        text = f"{wave_label(wave)}: {done}"
        return StepResult(run.with_wave(wave).log(now, "step", text), 0.0)

    if wave.step == WaveStep.RESTART:
        assert wave.restart_token
        restarted, on_delete = _restart(capi, wave.namespaces, wave.restart_token)
        wave = wave.evolve(step=WaveStep.VERIFY, restarted_at=now)
        text = f"{wave_label(wave)}: restarted {len(restarted)} workloads" + (
            f"; {on_delete} OnDelete workloads follow pod by pod" if on_delete else "")
        return StepResult(run.with_wave(wave).log(now, "step", text),
                          POLL_S if watched(restarted) else ROLLOUT_FIRST_LOOK_S,
                          wake=tuple(restarted))

    if wave.step == WaveStep.VERIFY:
        state = _observe(capi, wave.namespaces, canary, wave.preexisting,
                         wave.restarted_at or now, wave.deleted_at, now, th.rollout_deadline_s,
                         run.target_version)
        if state.crashing:
            return StepResult(_kind(run).fail_wave(
                run, f"pods crash-looping on {canary}: {_names(state.crashing)}", now), 0.0)
        if state.late:
            return StepResult(_kind(run).fail_wave(
                run, f"rollout not complete within its deadline: {_names(state.late)}", now),
                0.0)
        if state.delete:
            for pod in state.delete:
                capi.delete_pod(pod.namespace, pod.name)
            wave = wave.evolve(deleted_at=now)
            text = (f"{wave_label(wave)}: deleted {_names(state.delete)} (OnDelete: one pod at "
                    "a time, each replacement ready before the next)")
            return StepResult(run.with_wave(wave).log(now, "step", text), POLL_S)
        if not state.done:
            return StepResult(run, POLL_S if watched(state.pending) else
                              rollout_recheck_s(state, wave.restarted_at or now, now),
                              changed=False, wake=tuple(state.pending))
        versions = sorted({p.proxy_version for p in state.moved if p.proxy_version})
        control = control_namespaces(run, wave, wave.restarted_at or now)
        gateways = _gateways(capi, run)
        wave = wave.evolve(step=WaveStep.BAKE, bake_started_at=now, control=control,
                           gateways=gateways)
        text = (f"{wave_label(wave)}: {len(state.moved)} pods on {canary}"
                f" ({', '.join(versions) or 'no sidecar'}); baking {opts.bake_s:.0f}s, "
                + f"compared with its own baseline and {len(control)} other namespaces")
        if state.held:
            text += (f"; held on {run.stable_revision} by a StatefulSet partition: "
                     f"{_names(state.held, 10)}")
        return StepResult(run.with_wave(wave).log(now, "step", text), opts.interval_s)

    if wave.step == WaveStep.BAKE:
        return _bake(run, wave, ports, now)
    raise PermanentError(f"wave {wave.index} is in an unknown step {wave.step}")


def _bake(run: Run, wave: Wave, ports: ClusterPorts, now: float) -> StepResult:
    """One look at the wave (:func:`workflows.canary.judge_canary` on the windows from
    the baseline's start to now), the team's metric templates, and a crash check; then
    act on the verdict: look again, next wave, roll back, or pause for a person."""
    opts, th = run.options, run.thresholds
    assert wave.bake_started_at is not None
    capi = ports.cluster_api(run.cluster)
    # a look needs the crash loops only: the pods tell whether there is any, and the
    # workloads (which of them count) are listed only then — a quarter of the calls
    pods = capi.list_pods(wave.namespaces)
    state = _observe(capi, wave.namespaces, run.canary_revision, wave.preexisting,
                     wave.restarted_at or wave.bake_started_at, wave.deleted_at, now,
                     th.rollout_deadline_s, run.target_version, pods=pods
                     ) if any(p.crash_looping for p in pods) else None
    if state is not None and state.crashing:
        return StepResult(_kind(run).fail_wave(
            run, f"pods crash-looping on {run.canary_revision} during the bake: "
                 f"{_names(state.crashing)}", now), 0.0)
    cw = canary_wave(run, wave)
    try:
        metrics = ports.metrics(run.cluster)
        windows = metrics.windows([*wave.namespaces, *wave.control], wave.gateways,
                                  cw.baseline_from, now, opts.interval_s, repeat=True)
        windows = on_latest_revision(_by_time(windows, run, wave), wave.control,
                                     settled_at(run, wave))
        judgement = judge_canary(windows, cw, now, opts.bake_s, opts.interval_s, th.canary)
        sample = with_templates(judgement.sample, metrics, wave.namespaces, th,
                                opts.interval_s)
    except MetricsUnavailable as exc:
        judgement = error_judgement(wave.samples, now, str(exc), opts.interval_s, th.canary)
        sample = judgement.sample
    verdict, reason = judgement.verdict, judgement.reason
    if sample.verdict == Verdict.FAIL and judgement.sample.verdict != Verdict.FAIL:
        # a team metric failed: Argo's failureLimit — that many looks in a row roll back
        if 1 + streak(wave.samples, Verdict.FAIL) >= th.failure_threshold:
            verdict, reason = Verdict.FAIL, sample.reason
        elif verdict is not None:
            verdict = None  # never pass or pause while a team metric fails: look again
    wave = wave.evolve(samples=[*wave.samples, sample])
    run = run.with_wave(wave).log(
        now, "gate", _look_text(wave, judgement, sample, verdict, reason),
        wave=wave.index, verdict=sample.verdict.value, look=judgement.look,
        decided=verdict is not None, checks=[c.model_dump() for c in sample.checks],
    )
    if verdict is None:
        # the next wave's baseline, while this one bakes (its move then reads none); this
        # look's windows let go first, so the two hours are never held at once (the
        # worker's peak at 2,000 namespaces)
        after = judgement.after_s or opts.interval_s
        windows = judgement = None  # type: ignore[assignment]
        return StepResult(read_baseline_ahead(run, ports, wave.index + 1, now), after)
    wave = wave.evolve(verdict=verdict)
    run = run.with_wave(wave)
    if verdict == Verdict.PASS:
        return StepResult(next_wave(run.with_wave(wave.evolve(step=WaveStep.DONE)), now), 0.0)
    if verdict == Verdict.FAIL:
        return StepResult(_kind(run).fail_wave(
            run, f"metric gate FAIL in {wave_label(wave)}: {reason}", now), 0.0)
    why = ("metric gate INCONCLUSIVE: " if verdict == Verdict.INCONCLUSIVE
           else "could not measure the metric gate: ") + reason
    return StepResult(
        run.to(Phase.PAUSED, now, f"paused: {why}", paused_from=Phase.MIGRATING,
               pause_reason=why), None)


def _look_text(wave: Wave, j: CanaryJudgement, sample: GateSample, verdict: Verdict | None,
               reason: str) -> str:
    """The thread's line for one look: which look of how many, the state of the evidence,
    and why (the signals with both sides' numbers and the test's confidence)."""
    head = f"{wave_label(wave)}: gate look {j.look or len(wave.samples)}"
    if j.bake_looks:
        head += (f" of {j.bake_looks}" if j.look <= j.bake_looks else
                 f" (bake {j.bake_looks} looks, extended to at most {j.max_looks})")
    state = (verdict or sample.verdict).value
    if verdict is None:
        state = f"{sample.verdict.value} so far"
    return f"{head}: {state}" + (f" — {reason or sample.reason}"
                                 if (reason or sample.reason) else "")


def gate_summary(opts: UpgradeOptions, th: GateThresholds) -> str:
    """The gate in a few sentences, for the plan."""
    c = th.canary
    templates = [t.name + (" (dry run)" if t.dry_run else "") for t in th.metrics]
    return (f"Bake {opts.bake_s:.0f}s per wave (extended up to {1 + c.max_extension:g}× "
            f"while traffic is short), looked at every {opts.interval_s:.0f}s; the gate "
            f"compares each migrated namespace with its own last "
            f"{c.baseline_s / 60:.0f} min and with the namespaces not yet migrated over the "
            f"same windows, and rolls back when 5xx/gRPC errors rise "
            f"{c.error_tolerance_pts:g} points above that or the slow requests near the p99 "
            f"grow by more than {100 * c.latency_tolerance:.0f}% (at most "
            f"{100 * c.false_rollback:g}% false rollbacks); it passes when a rise of "
            f"{c.error_detect_pts:g} points or slow requests ×{1 + c.latency_detect:g} are "
            f"ruled out ({100 * (1 - c.missed):g}% confidence)."
            + (f" Team metrics: {', '.join(templates)} ({th.failure_threshold} failing looks "
               "in a row roll back)." if templates else ""))


#: the windows the plan reads the last hour of traffic in (s)
PLAN_STEP_S = 300.0


def sampling_note(bake_s: float, interval_s: float, scrape_interval_s: float) -> str | None:
    """The plan's line when the gate cannot sample as the run asks, or None.

    Each look of the gate reads a window of at least two scrapes of the cluster's
    Prometheus (a rate needs two samples; :meth:`MetricsApi.windows`), so:

    - a bake shorter than two such windows leaves the gate too few looks to tell the canary
      from its baseline: the line says the bake that would do (two windows);
    - an interval shorter than two scrapes makes the looks overlap (each reads the same
      last two scrapes): the gate decides no sooner than with an interval of two scrapes.

    Args:
        bake_s, interval_s: the run's ``--bake`` and ``--interval`` (s).
        scrape_interval_s: the cluster's Prometheus scrape interval (s).
    """
    window = max(interval_s, 2 * scrape_interval_s)
    scrapes = ("two scrapes of this cluster's Prometheus (scrape_interval "
               f"{duration_text(scrape_interval_s)})")
    if bake_s < 2 * window:
        return (f":warning: The bake ({duration_text(bake_s)}) holds fewer than two of the "
                f"gate's windows: each spans at least {scrapes}, {duration_text(window)}; "
                "the gate will have too little to decide and a person will. Bake at least "
                f"{duration_text(2 * window)}.")
    if interval_s < 2 * scrape_interval_s:
        return (f"The gate interval ({duration_text(interval_s)}) is shorter than {scrapes}: "
                f"each look reads the last {duration_text(window)}, so looks overlap and the "
                f"gate decides no sooner than with `--interval={duration_text(window)}`.")
    return None


def low_traffic_note(metrics: MetricsApi, waves: list[list[str]], opts: UpgradeOptions,
                     th: GateThresholds, now: float) -> str | None:
    """The plan's line on namespaces whose traffic of the last ``baseline_s`` (an hour)
    is too low for the gate to decide within the longest bake (:func:`workflows.canary.
    requests_to_decide` at the namespace's own error rate): their wave will likely end
    INCONCLUSIVE and a person decides. The requests are those the destination reports (the
    source's when the destination reports none: callers outside the mesh). None when every
    namespace has enough, or Prometheus cannot be read (the bake's looks say so then)."""
    names = [ns for wave in waves for ns in wave]
    if not names:
        return None
    c = th.canary
    try:
        windows = metrics.windows(names, [], now - c.baseline_s, now, PLAN_STEP_S)
    except MetricsUnavailable:
        return None
    seen: dict[tuple[str, str], list[float]] = {}
    spans: dict[str, int] = {}  # how many windows of each namespace hold traffic
    for w in windows:
        acc = seen.setdefault((w.subject, w.reporter), [0.0, 0.0, w.start, w.end])
        acc[0] += w.requests
        acc[1] += w.errors
        acc[2], acc[3] = min(acc[2], w.start), max(acc[3], w.end)
        if w.requests and w.reporter == "destination":
            spans[w.subject] = spans.get(w.subject, 0) + 1
    if not any(n >= 2 for n in spans.values()):
        # a Prometheus younger than two windows (just started, just given the proxies to
        # scrape) cannot tell a quiet namespace from a new one: the bake's looks will say
        return None
    longest = opts.bake_s * (1 + c.max_extension)
    low: list[tuple[str, float, float, float]] = []  # (ns, req/s, seen in a bake, needed)
    for wave in waves:
        for ns in wave:
            if spans.get(ns) == 1:
                continue  # traffic since less than a window: its rate cannot be told yet
            got = seen.get((ns, "destination")) or seen.get((ns, "source"))
            if got and got[0] > 0:
                rate = got[0] / max(got[3] - got[2], PLAN_STEP_S)
                error_rate = got[1] / got[0]
            else:
                rate, error_rate = 0.0, 0.0
            need = requests_to_decide(error_rate, len(wave), opts.bake_s, opts.interval_s, c)
            if need is None or rate * longest < need:
                low.append((ns, rate, rate * longest, need or float("inf")))
    if not low:
        return None
    shown = ", ".join(f"{ns} ({rate:.2g} req/s)" if rate > 0 else f"{ns} (no requests)"
                      for ns, rate, _, _ in low[:8]) + (
        f" and {len(low) - 8} more" if len(low) > 8 else "")
    need = min(n for _, _, _, n in low)
    return (f"low traffic over the last {c.baseline_s / 60:.0f} min: {shown}: the longest "
            f"bake ({longest:.0f}s) would see fewer than the ~{need:,.0f} requests the gate "
            f"needs to tell a {c.error_detect_pts:g}-point rise of 5xx apart, so their waves "
            f"will likely end undecided and a person decides; a longer --bake or more traffic "
            f"(a load test) lets the gate decide")


def baseline_needed(run: Run) -> float:
    """The history (s) a baseline must hold for the gate: the longest the bake may run
    (``bake_s`` × (1 + ``max_extension``)). A shorter one leaves the rare slow requests of
    the tail undecided, or makes a few odd windows read as normal."""
    return run.options.bake_s * (1 + run.thresholds.canary.max_extension)


def control_namespaces(run: Run, wave: Wave, moved: float) -> list[str]:
    """The namespaces read as the wave's control, ``max_control`` at most: those of later
    waves (not migrated), spread evenly over them, then those migrated before this wave
    (read on the canary only, :func:`on_latest_revision`) whose time on the canary before
    ``moved`` (this wave's restart, Unix s) is a whole baseline (:func:`baseline_needed`),
    as the wave's own must be. A namespace moved just before has a few windows on the
    canary, the first of them holding the pods Prometheus has scraped twice already: its
    "normal" would be whatever those few say, and its next windows would read as
    fleet-wide weather (seen: a control moved 6 s before, its baseline two windows long,
    left a wave undecided on a busy machine)."""
    cap = run.thresholds.canary.max_control

    def spread(pool: list[str], n: int) -> list[str]:
        return pool if len(pool) <= n else [pool[(i * len(pool)) // n] for i in range(n)]

    later = spread([ns for w in run.waves[wave.index + 1:] for ns in w.namespaces], cap)
    need = baseline_needed(run)
    earlier = [ns for w in run.waves[:wave.index] for ns in w.namespaces
               if w.bake_started_at is not None and moved - w.bake_started_at >= need]
    return later + spread(earlier, cap - len(later)) if len(later) < cap else later


def on_latest_revision(windows: list[TrafficWindow], control: list[str],
                       settled: Mapping[str, float] | None = None) -> list[TrafficWindow]:
    """The windows, those of each control namespace kept only on the revision it runs now:
    a namespace migrated by an earlier wave is a control from its move on (its move itself
    would read as weather). ``settled``: for a namespace an earlier wave migrated, when
    that wave's rollout was done (its bake's start, Unix s); its windows starting before
    are left out. While a rollout replaces a namespace's workloads one after the other,
    its windows on the new revision hold only the pods already replaced (in the sandbox's
    Bookinfo, the ``v2`` workloads' slow fraction is a quarter of the ``v3`` ones'): a
    baseline made of them reads the whole namespace's next windows as fleet-wide weather."""
    latest: dict[str, tuple[float, str | None]] = {}
    for w in windows:
        if w.subject in control and w.end >= latest.get(w.subject, (-1.0, None))[0]:
            latest[w.subject] = (w.end, w.revision)
    settled = settled or {}
    return [w for w in windows if w.subject not in latest
            or (w.revision is not None and w.revision == latest[w.subject][1]
                and w.start >= settled.get(w.subject, -math.inf))]


def settled_at(run: Run, wave: Wave) -> dict[str, float]:
    """When each namespace of an earlier wave was all on the canary: that wave's bake
    start (Unix s), for :func:`on_latest_revision`."""
    return {ns: w.bake_started_at for w in run.waves[:wave.index]
            if w.bake_started_at is not None for ns in w.namespaces}


def canary_wave(run: Run, wave: Wave) -> CanaryWave:
    """Who the gate compares with whom for this wave: its namespaces on the canary since
    the restart, against their windows before it and the control's over the same time."""
    assert wave.bake_started_at is not None
    moved = wave.restarted_at or wave.bake_started_at
    return CanaryWave(
        canary=list(wave.namespaces),
        gateways=[f"gateway/{g}" for g in wave.gateways
                  if g.endswith(f"-{run.canary_revision}")],
        control=list(wave.control), canary_revision=run.canary_revision,
        baseline_from=moved - run.thresholds.canary.baseline_s, baseline_until=moved,
        bake_started_at=wave.bake_started_at)


def _by_time(windows: list[TrafficWindow], run: Run, wave: Wave) -> list[TrafficWindow]:
    """A patch rollover keeps the revision (the canary is the new patch of the same
    revision): the wave's windows before its restart are its baseline, told apart from
    the bake's by time. An upgrade's windows are told apart by revision, untouched."""
    if run.canary_revision != run.stable_revision:
        return windows
    moved = wave.restarted_at or wave.bake_started_at or 0.0
    before = f"{run.stable_revision} (before the rollover)"
    return [w.model_copy(update={"revision": before})
            if w.subject in wave.namespaces and w.end <= moved + 1e-6 else w
            for w in windows]


def _control_due(run: Run, wave: Wave, now: float) -> float | None:
    """When the wave will have a control if it has none now (Unix s): no later wave is
    left, and no namespace of an earlier wave has been on the canary a whole baseline
    (:func:`control_namespaces`) — the soonest an earlier wave's will have. None when it
    has one, or none is coming (no earlier wave baked, or ``max_control`` is 0)."""
    if run.thresholds.canary.max_control <= 0 or any(
            w.namespaces for w in run.waves[wave.index + 1:]):
        return None
    need = baseline_needed(run)
    settled = [w.bake_started_at for w in run.waves[:wave.index]
               if w.bake_started_at is not None and w.namespaces]
    if not settled or any(now - at >= need for at in settled):
        return None
    return min(settled) + need


def read_baseline_ahead(run: Run, ports: ClusterPorts, index: int, now: float) -> Run:
    """Read wave ``index``'s baseline ahead of its BASELINE step, once, while the run waits
    anyway: for wave 0 the canary's ARM operation, for the others the bake of the wave
    before (after a look that did not decide). It is the read :func:`_baseline_gaps`
    makes, through the window cache the first look extends; at 2,000 namespaces it takes
    seconds of Prometheus (issue 13), which the step would add to every wave's move.
    Nothing short or thin: the wave records "ready" and its step does not read again
    (history only grows). Otherwise "short": the step reads, waits and says why, as
    without this. The run is returned unchanged when there is no such wave, it is past
    its BASELINE step, or it was read ahead already; and when the read is refused
    because as many reads ahead as allowed are under way (``MetricsBusy``: a background
    read, :meth:`workflows.ports.MetricsApi.windows`), to be tried at the next wait."""
    if index >= len(run.waves):
        return run
    wave = run.waves[index]
    if wave.step != WaveStep.BASELINE or wave.baseline_ahead is not None or \
            not wave.namespaces:
        return run
    try:
        short, thin = _baseline_gaps(ports, run, wave, now, baseline_needed(run),
                                     past_short=False, background=True)
    except MetricsBusy:  # others' reads ahead hold the slots: the next wait, or the step
        return run
    return run.with_wave(wave.evolve(baseline_ahead="short" if short or thin else "ready"))


def _baseline_gaps(ports: ClusterPorts, run: Run, wave: Wave, now: float, need: float,
                   past_short: bool, background: bool = False
                   ) -> tuple[list[str], dict[str, str]]:
    """What the wave's baseline lacks now: the namespaces whose traffic history began less
    than ``need`` seconds ago, or that have none; and, while Prometheus holds less than
    the whole baseline (``baseline_s``), those whose baseline no bake could decide on
    (:func:`workflows.canary.undecidable_baselines`: ``{namespace: signal}``) — looked for
    once none is short, or once the wait for them is over (``past_short``). Nothing
    when Prometheus cannot be read: the bake's looks say so. ``background``: a read ahead
    of need, which the adapter may refuse (``MetricsBusy``, raised)."""
    opts, c = run.options, run.thresholds.canary
    # the read the bake's first look will make (the wave with its control and gateways, at
    # the looks' step), through the window cache: that look then reads only what came
    # after this hour, so a wave reads its hour once, not twice (issue 13: at 2,000
    # namespaces each is seconds of Prometheus). A control or gateway that differs by the
    # bake's start (an earlier wave's namespaces qualify meanwhile) costs that look the
    # whole read, as before.
    control = control_namespaces(run, wave, now)
    gateways = _gateways(ports.cluster_api(run.cluster), run)
    try:
        windows = ports.metrics(run.cluster).windows(
            [*wave.namespaces, *control], gateways, now - c.baseline_s, now,
            opts.interval_s, repeat=True, background=background)
    except MetricsUnavailable:
        return [], {}
    own = set(wave.namespaces)
    windows = [w for w in windows if w.subject in own]
    first: dict[str, float] = {}
    for w in windows:
        if w.requests or w.tcp_opened:
            first[w.subject] = min(first.get(w.subject, w.start), w.start)
    # no window at all: no traffic yet, or a Prometheus that has not scraped twice yet
    short = [ns for ns in wave.namespaces if now - first.get(ns, now) < need]
    # Prometheus' age from its oldest window of any traffic (a quiet start of the hour is
    # not youth); windows are aligned to their step, so the first may start a step late.
    # A baseline of the whole hour that cannot decide is low traffic (the plan said so):
    # waiting would not change it.
    span = max((w.end - w.start for w in windows), default=opts.interval_s)
    young = not windows or min(w.start for w in windows) > now - c.baseline_s + 2 * span
    if not young or (short and not past_short):
        return short, {}
    if run.canary_revision == run.stable_revision:  # a rollover: all of it is "before"
        windows = [w.model_copy(update={"revision": f"{run.stable_revision} (before)"})
                   for w in windows]
    thin = undecidable_baselines(windows, wave.namespaces, run.canary_revision,
                                 now - c.baseline_s, now, opts.bake_s, opts.interval_s, c)
    return short, thin


def _gateways(capi: ClusterApi, run: Run) -> list[str]:
    """The add-on's ingress gateway Deployments of the canary and stable revisions: the
    canary's are judged against the stable's over the same windows (one load balancer
    spreads requests over both during a canary upgrade, AKS doc istio-deploy-ingress.md).
    None in a rollover (the canary is the stable revision: no gateway to compare with);
    the bake and the baseline read that prepares its first look both ask here."""
    if run.canary_revision == run.stable_revision:
        return []
    revisions = (run.canary_revision, run.stable_revision)
    return sorted(f"aks-istio-ingressgateway-{mode.lower()}-{rev}"
                  for mode, rev in capi.revision_gateways() if rev in revisions)


def with_templates(sample: GateSample, metrics: MetricsApi, namespaces: list[str],
                   th: GateThresholds, interval_s: float) -> GateSample:
    """The sample with the team's metric templates checked for each namespace: a failing
    one fails the sample (the bake then counts failing looks in a row, Argo Rollouts'
    ``failureLimit``); a dry-run one is reported only."""
    if not th.metrics:
        return sample
    checks, failed = list(sample.checks), []
    for template in th.metrics:
        for ns in namespaces:
            c = check_template(template, ns, metrics.value(render(template, ns, interval_s)))
            checks.append(c)
            if not c.ok and not template.dry_run:
                shown = "no data" if c.value is None else f"{c.value:g}"
                failed.append(f"{ns} {template.name} {shown} not {c.op} {c.threshold:g}")
    if failed and sample.verdict != Verdict.ERROR:
        reason = "; ".join(x for x in (*failed, sample.reason) if x)
        return sample.model_copy(update={"checks": checks, "verdict": Verdict.FAIL,
                                         "reason": reason})
    return sample.model_copy(update={"checks": checks})


def next_wave(run: Run, now: float) -> Run:
    """The current wave passed: the next wave, an approval between waves, or the end."""
    wave = run.current_wave
    assert wave is not None
    text = f"{wave_label(wave)}: gate PASS"
    if run.wave_index + 1 >= len(run.waves):
        return _kind(run).after_last_wave(run, text, now)
    run = run.log(now, "step", text)
    if run.options.approve_waves:
        return run.to(Phase.AWAITING_WAVE_APPROVAL, now,
                      f"wave {run.wave_index + 1} waits for an approval")
    return run.evolve(wave_index=run.wave_index + 1)  # type: ignore[no-any-return]


def begin_rollback(run: Run, reason: str, now: float) -> Run:
    """Move the run to ROLLING_BACK over every namespace it migrated."""
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
        # the migrated namespaces read by name: a rollback's reads grow with what it
        # moves back, not with the cluster (issue 13)
        current = {ns.name: ns for ns in capi.get_namespaces(rb.namespaces)}
        # A tag pointed at the canary moved every namespace it labels: those whose pods
        # started since (a later wave's, not restarted yet) go back too. Only those
        # labelled with such a tag are listed (a label selector).
        moved_tags = sorted({ns.tag for ns in current.values() if ns.tag})
        tagged = [ns for ns in capi.list_namespaces(labelled=moved_tags)
                  if ns.name not in rb.namespaces] if moved_tags else []
        current.update((ns.name, ns) for ns in tagged)
        spill = [ns.name for ns in tagged]
        if spill:
            on_canary = {p.namespace for p in capi.list_pods(spill)
                         if p.revision == run.canary_revision and not p.finished}
            rb = rb.evolve(namespaces=[*rb.namespaces,
                                       *(ns for ns in spill if ns in on_canary)])
        done = point_namespaces(capi, [current[ns] for ns in rb.namespaces if ns in current],
                                stable)
        rb = rb.evolve(step=RollbackStep.RESTART, restart_token=restart_token(now))
        text = f"rollback: {done}" if rb.namespaces else "rollback: no namespace was migrated"
        return StepResult(run.evolve(rollback=rb).log(now, "step", text), 0.0)
    if rb.step == RollbackStep.RESTART:
        assert rb.restart_token
        preexisting = sorted({k for w in run.waves for k in w.preexisting})
        restarted = _restart(capi, rb.namespaces, rb.restart_token)[0] if rb.namespaces \
            else []
        rb = rb.evolve(step=RollbackStep.VERIFY, restarted_at=now, preexisting=preexisting)
        return StepResult(run.evolve(rollback=rb).log(
            now, "step", f"rollback: restarted {len(restarted)} workloads"),
            (POLL_S if watched(restarted) else ROLLOUT_FIRST_LOOK_S) if restarted else 0.0,
            wake=tuple(restarted))
    if rb.step == RollbackStep.VERIFY:
        if rb.namespaces:
            state = _observe(capi, rb.namespaces, stable, rb.preexisting,
                             rb.restarted_at or now, rb.deleted_at, now,
                             run.thresholds.rollout_deadline_s)
            if state.late:
                why = f"rollback rollout not complete: {_names(state.late)}"
                return StepResult(run.to(Phase.PAUSED, now, f"paused: {why}",
                                         paused_from=Phase.ROLLING_BACK,
                                         pause_reason=why), None)
            if state.delete:
                for pod in state.delete:
                    capi.delete_pod(pod.namespace, pod.name)
                rb = rb.evolve(deleted_at=now)
                return StepResult(run.evolve(rollback=rb).log(
                    now, "step", f"rollback: deleted {_names(state.delete)} (OnDelete)"), POLL_S)
            if not state.done:
                return StepResult(run, POLL_S if watched(state.pending) else
                                  rollout_recheck_s(state, rb.restarted_at or now, now),
                                  changed=False, wake=tuple(state.pending))
            text = f"rollback: {len(state.moved)} pods back on {stable}"
        else:
            text = "rollback: nothing to verify in the data plane"
        rb = rb.evolve(step=RollbackStep.REVERT)
        return StepResult(run.evolve(rollback=rb).log(now, "step", text), 0.0)
    if rb.step == RollbackStep.REVERT:
        run, wait = converge_revisions(run, ports, [stable], now)
        if wait is not None:
            return StepResult(run, wait)
        if run.canary_revision in capi.control_plane_revisions():
            return StepResult(run, POLL_S, changed=False)
        return StepResult(
            run.to(Phase.ROLLED_BACK, now,
                   f"rolled back: {run.cluster} runs {stable} only; reason: {rb.reason}",
                   rollback=rb.evolve(step=RollbackStep.DONE)),
            None,
        )
    raise PermanentError(f"rollback is in an unknown step {rb.step}")
