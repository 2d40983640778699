"""The workers' waves judged by the canary gate (issue 12): who is compared with whom, the
baseline a wave waits for, the weather left out, the canary ingress gateway judged against
the stable one (issue 10, B5), verdicts that name the signal, both sides and the confidence.
No I/O: the in-memory world of ``tests.core.fakes``."""

from __future__ import annotations

from tests.core.fakes import FakeWorld
from tests.core.test_workflow import POLICY, drive, new_run
from workflows.canary import CanaryJudgement, judge_canary
from workflows.lifecycle import decide, tick
from workflows.model import NamespaceMetrics, Phase, Run, UpgradeOptions, Verdict, Wave, WaveStep
from workflows.operations import POLL_S
from workflows.traffic import TrafficWindow
from workflows.waves import (
    WATCHED_PAIRS,
    baseline_needed,
    canary_wave,
    control_namespaces,
    on_latest_revision,
    settled_at,
    watched,
)


def approved(world: FakeWorld, wave_size: int = 2) -> tuple[Run, float]:
    run = new_run().evolve(options=UpgradeOptions(bake_s=60, interval_s=10, wave_size=wave_size))
    run, now = drive(run, world, 1_000_000.0)
    return decide(run, "approve", "UAPPROVER", POLICY, now), now


def test_the_control_is_the_namespaces_not_yet_migrated_then_those_moved_before() -> None:
    world = FakeWorld.seeded([f"ns-{i:02d}" for i in range(30)], per_ns=1)
    run, now = approved(world, wave_size=3)
    # each wave baked an hour after the one before: every earlier wave is a whole baseline old
    run = run.evolve(waves=[w.evolve(bake_started_at=now + 3600 * w.index) for w in run.waves])

    def control(index: int) -> list[str]:
        return control_namespaces(run, run.waves[index], now + 3600 * index - 60)

    first = control(0)
    later = [ns for w in run.waves[1:] for ns in w.namespaces]
    assert len(first) == run.thresholds.canary.max_control == 20
    assert set(first) <= set(later) and first[0] == later[0]  # spread over the later waves
    last = control(len(run.waves) - 1)  # the migrated ones, read on the canary
    earlier = [ns for w in run.waves[:-1] for ns in w.namespaces]
    assert len(last) == 20 and set(last) <= set(earlier) and last[0] == earlier[0]
    middle = control(7)  # the later ones, then earlier ones
    after = [ns for w in run.waves[8:] for ns in w.namespaces]
    assert 0 < len(after) < 20 and middle[:len(after)] == after
    assert len(middle) == 20 and set(middle[len(after):]) <= set(earlier)


def test_a_namespace_moved_less_than_a_baseline_ago_is_no_control_yet() -> None:
    """Wave 1 moves 30 s after wave 0's rollout ended; a baseline must hold the longest bake
    (60 s × 2): wave 0's namespaces are left out of wave 1's control, not read from a
    "normal" of three windows. Wave 2, moved two minutes after wave 1 baked and ten after
    wave 0, has wave 0's namespaces and not wave 1's."""
    world = FakeWorld.seeded([f"ns-{i}" for i in range(8)], per_ns=1)
    run, now = approved(world, wave_size=2)
    assert baseline_needed(run) == 120
    run = run.evolve(waves=[
        run.waves[0].evolve(bake_started_at=now), run.waves[1].evolve(bake_started_at=now + 500),
        *run.waves[2:]])
    wave0, wave1 = run.waves[0].namespaces, run.waves[1].namespaces
    later = [ns for w in run.waves[2:] for ns in w.namespaces]
    assert control_namespaces(run, run.waves[1], now + 30) == later
    wave2 = control_namespaces(run, run.waves[2], now + 600)
    assert set(wave0) <= set(wave2) and not set(wave1) & set(wave2)
    assert control_namespaces(run, run.waves[1], now + 120) == later + wave0  # a whole one


def test_the_last_wave_waits_for_the_earlier_waves_namespaces_to_become_its_control() -> None:
    """Two waves, a bake of 60 s (the longest 120 s): wave 0 passes a minute into its bake,
    and wave 1, the last, has no later wave to compare with. It waits until wave 0's
    namespaces have been on the canary a whole baseline, then bakes with them as its
    control — a fleet-wide incident in its bake is then told from the canary."""
    world = FakeWorld.seeded(["a", "b", "c"])
    run, now = approved(world)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    wave0, wave1 = run.waves  # a, then b and c
    assert wave0.bake_started_at is not None and wave1.restarted_at is not None
    waited = next(e for e in run.history if "wave 1" in e.text and "for a control" in e.text)
    assert "no later wave is left to compare with" in waited.text
    assert wave1.restarted_at - wave0.bake_started_at >= 120
    assert wave1.control == wave0.namespaces


def test_a_healthy_upgrade_passes_each_wave_with_its_control_and_says_why() -> None:
    world = FakeWorld.seeded(["a", "b", "c", "d"])
    run, now = approved(world)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    wave0 = run.waves[0]
    assert wave0.control == ["b", "c", "d"] and wave0.verdict == Verdict.PASS
    decided = [e for e in run.history if e.kind == "gate" and e.data["decided"]]
    assert len(decided) == len(run.waves)
    assert "no regression of the detection size" in decided[0].text
    checks = decided[0].data["checks"]
    errors = next(c for c in checks if c["metric"] == "errors:destination")
    assert (errors["namespace"], errors["status"], errors["unit"]) == ("a", "ok", "%")
    assert errors["control"] == 0.0 and errors["confidence"] > 0.99


def test_a_wave_without_history_waits_up_to_the_longest_bake_for_its_baseline() -> None:
    world = FakeWorld.seeded(["a", "b"])
    run, now = approved(world)
    world.history_from = now  # a fresh Prometheus: nothing before the approval
    run, now = drive(run, world, now)
    waited = next(e for e in run.history if "waiting up to 120s for a baseline" in e.text)
    labelled = next(e for e in run.history if "labelled" in e.text and "wave 0" in e.text)
    assert labelled.at - waited.at >= 120  # the longest bake's worth of history
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text


def test_a_young_baseline_no_bake_could_decide_on_waits_for_more_of_it() -> None:
    """A Prometheus started with the approval, and ``a`` serving 30 requests a 10-s
    window: after the longest bake's worth of history (120 s), its 360 requests without
    an error still leave its error rate anywhere up to ~0.8 %: no bake could tell a
    0.5-point rise apart, so the wave waits on, until the baseline can decide (four
    longest bakes from the first wait at most). With an hour of history the same traffic
    is low traffic, which waiting does not change: no wait."""
    quiet = NamespaceMetrics(requests=30, success_rate=100.0, p99_ms=50.0)
    world = FakeWorld.seeded(["a", "b"])
    world.metrics_by_rev[("a", "asm-1-25")] = quiet
    run, now = approved(world)
    world.history_from = now
    run, now = drive(run, world, now)
    first = next(e for e in run.history if "waiting up to 120s for a baseline" in e.text)
    more = next(e for e in run.history if "for a baseline the gate can decide on" in e.text)
    assert more.at - first.at >= 120
    assert "waiting up to 360s more" in more.text and "a (5xx and gRPC errors)" in more.text
    labelled = next(e for e in run.history if "labelled" in e.text and "wave 0" in e.text)
    assert more.at < labelled.at < first.at + 480
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text

    world = FakeWorld.seeded(["a", "b"])
    world.metrics_by_rev[("a", "asm-1-25")] = quiet
    run, now = approved(world)
    run, now = drive(run, world, now)
    assert not any("waiting up to" in e.text for e in run.history)

    # Prometheus' first scrapes come 50 s after the wave began to wait: the history is
    # still short when that wait is over, and the wave goes on waiting for a baseline that
    # can decide (the same four longest bakes from the first wait at most)
    world = FakeWorld.seeded(["a", "b"])
    world.metrics_by_rev[("a", "asm-1-25")] = quiet
    run, now = approved(world)
    world.history_from = now + 50
    run, now = drive(run, world, now)
    first = next(e for e in run.history if "waiting up to 120s for a baseline" in e.text)
    more = next(e for e in run.history if "for a baseline the gate can decide on" in e.text)
    labelled = next(e for e in run.history if "labelled" in e.text and "wave 0" in e.text)
    assert first.at + 120 <= more.at < labelled.at <= first.at + 480 + 10


def test_a_regression_rolls_back_naming_signal_both_sides_and_confidence() -> None:
    world = FakeWorld.seeded(["a", "b", "c"])
    world.metrics_by_rev[("a", "asm-1-26")] = NamespaceMetrics(
        requests=50000, success_rate=98.0, p99_ms=50)
    run, now = approved(world)
    lists = len(world.namespace_lists)
    run, now = drive(run, world, now)
    assert run.phase == Phase.ROLLED_BACK
    assert world.namespace_lists[lists:] == []  # no tag moved: the rollback read by name
    assert "metric gate FAIL in wave 0 (a)" in run.outcome
    assert "a 5xx and gRPC errors (destination): 2.00% of" in run.outcome
    assert "before 0.000%; control 0.000% → 0.000% in 2" in run.outcome
    assert "regression (confidence >99.99%)" in run.outcome


def test_a_fleet_wide_incident_during_the_bake_is_not_blamed_on_the_canary() -> None:
    world = FakeWorld.seeded(["a", "b", "c", "d"])
    run, now = approved(world)
    # errors everywhere, migrated or not, for two windows of the first bake
    world.incident = (now + 20, now + 40, 95.0)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    looks = [e for e in run.history if e.kind == "gate" and e.data["wave"] == 0]
    assert all(e.data["verdict"] != "FAIL" for e in looks)
    # its two windows; the one on either side, as usual for the canary, is kept (where an
    # incident's first or last moments fall into it, it is not: workflows.canary._struck)
    assert "2 windows of fleet-wide weather (the control moved as much) left out" \
        in looks[-1].text and looks[-1].data["verdict"] == "PASS"


def test_the_canary_ingress_gateway_is_judged_against_the_stable_one() -> None:
    world = FakeWorld.seeded(["a", "b"])
    world.ingress = {"External"}
    world.gateway_metrics["aks-istio-ingressgateway-external-asm-1-26"] = NamespaceMetrics(
        requests=50000, success_rate=97.0, p99_ms=50)
    run, now = approved(world)
    run, now = drive(run, world, now)
    assert run.waves[0].gateways == ["aks-istio-ingressgateway-external-asm-1-25",
                                     "aks-istio-ingressgateway-external-asm-1-26"]
    assert canary_wave(run, run.waves[0]).gateways == [
        "gateway/aks-istio-ingressgateway-external-asm-1-26"]
    assert run.phase == Phase.ROLLED_BACK
    assert "gateway/aks-istio-ingressgateway-external-asm-1-26 5xx and gRPC errors (source)" \
        in run.outcome and "stable gateway 0.000%" in run.outcome


def test_a_waves_baseline_read_is_the_one_its_first_look_repeats() -> None:
    """A wave's baseline is read ahead, while the run waits anyway (the canary's ARM
    operation for wave 0, the bake of the wave before for the others), as the bake's first
    look will read it (the wave, its control and gateways, through the window cache): that
    look reads only the windows after it, so a wave reads its hour once, and its move reads
    none (issue 13)."""
    world = FakeWorld.seeded([f"ns-{i:02d}" for i in range(9)], per_ns=1)
    world.ingress = {"External"}
    run, now = approved(world, wave_size=3)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION
    assert len(run.waves) == 4 and {w.baseline_ahead for w in run.waves} == {"ready"}
    reads = world.window_reads
    deployed = next(e.at for e in run.history if "deployed beside" in e.text)
    approved_at = next(e.at for e in run.history if "approved by" in e.text)
    # a control that differs by the bake's start (an earlier wave's namespaces qualified
    # meanwhile: this world's baseline is short) costs that look the whole read; wave 0's
    # control (the later waves) cannot change
    same = []
    for wave in run.waves:
        assert wave.bake_started_at is not None and wave.restarted_at is not None
        before = run.waves[wave.index - 1].bake_started_at if wave.index else None
        ahead = next(r for r in reads if set(wave.namespaces) <= r[0]
                     and r[3] > (approved_at if before is None else before))
        # read ahead: during the canary's operation, or the bake of the wave before
        assert ahead[4] and ahead[3] < (deployed if before is None else wave.restarted_at)
        subjects = frozenset([*wave.namespaces, *wave.control])
        if ahead[0] == subjects and ahead[1] == frozenset(wave.gateways):
            look = next(r for r in reads if r[0] == subjects and r[3] >= wave.bake_started_at)
            assert ahead[2] <= look[2]  # the look's hour starts within what was read
            same.append(wave.index)
    assert same[:1] == [0]



def test_a_move_whose_baseline_was_read_ahead_reads_none_itself() -> None:
    world = FakeWorld.seeded(["a", "b", "c", "d"])
    run, now = approved(world)
    for _ in range(50):  # to wave 0's BASELINE step, its baseline read ahead
        wave = run.current_wave
        if run.phase == Phase.MIGRATING and wave is not None and wave.step == WaveStep.BASELINE:
            break
        result = tick(run, world, now)
        run, now = result.run, now + (result.recheck_after or 0.0)
    assert wave is not None and wave.baseline_ahead == "ready"
    reads = len(world.window_reads)
    moved = tick(run, world, now).run
    assert moved.current_wave is not None and moved.current_wave.step == WaveStep.LABEL
    assert len(world.window_reads) == reads
    # not read ahead (or found short): the step reads, as it always did
    again = tick(run.with_wave(wave.evolve(baseline_ahead=None)), world, now).run
    assert again.current_wave is not None and again.current_wave.step == WaveStep.LABEL
    assert len(world.window_reads) == reads + 1


def test_a_read_ahead_refused_for_want_of_a_slot_is_made_by_the_step() -> None:
    """Reads ahead of need are background reads (``background=True``): while every slot
    is taken by other runs' (the adapter raises ``MetricsBusy``), the run goes on without
    one, and the wave's BASELINE step reads its baseline itself, as without read-ahead."""
    world = FakeWorld.seeded(["a", "b", "c", "d"])
    world.background_busy = True
    run, now = approved(world)
    for _ in range(50):  # to wave 0's BASELINE step
        wave = run.current_wave
        if run.phase == Phase.MIGRATING and wave is not None and wave.step == WaveStep.BASELINE:
            break
        result = tick(run, world, now)
        run, now = result.run, now + (result.recheck_after or 0.0)
    assert wave is not None and wave.baseline_ahead is None
    tried = [r for r in world.window_reads if r[0] >= set(wave.namespaces)]
    assert tried  # asked for, while ARM worked, and refused
    reads = len(world.window_reads)
    moved = tick(run, world, now).run
    assert moved.current_wave is not None and moved.current_wave.step == WaveStep.LABEL
    assert len(world.window_reads) == reads + 1  # the step's own read


def test_the_waves_read_their_own_namespaces_never_the_whole_clusters() -> None:
    """Kubernetes reads proportional to the wave (issue 13): after the plan, no step of a
    wave lists every namespace of the cluster."""
    world = FakeWorld.seeded([f"ns-{i:02d}" for i in range(9)], per_ns=1)
    run, now = approved(world, wave_size=3)

    def whole_cluster() -> None:
        raise AssertionError("a wave listed every namespace of the cluster")

    world.list_namespaces = whole_cluster  # type: ignore[method-assign,assignment]
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION
    assert all(w.labelled for w in run.waves)


def test_a_healthy_canary_gateway_passes_beside_the_stable_one() -> None:
    world = FakeWorld.seeded(["a", "b"])
    world.ingress = {"External"}
    run, now = approved(world)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    checks = next(e for e in run.history if e.kind == "gate" and e.data["decided"]
                  ).data["checks"]
    gw = [c for c in checks if c["namespace"].startswith("gateway/")]
    assert gw and all(c["status"] == "ok" for c in gw)


def test_an_incident_over_the_whole_bake_extends_it_until_calm_windows_come() -> None:
    world = FakeWorld.seeded(["a", "b", "c", "d"])
    run, now = approved(world)
    world.incident = (now, now + 75, 90.0)  # the whole first bake (60 s from ~now + 9)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    looks = [e for e in run.history if e.kind == "gate" and e.data["wave"] == 0]
    assert any("were fleet-wide weather (the control moved as much), left out; waiting for "
               "calm ones" in e.text for e in looks)
    assert looks[-1].data["look"] > 6 and looks[-1].data["verdict"] == "PASS"  # extended


def rollover_into_the_mesh(world: FakeWorld) -> Run:
    world.outside_mesh = {"a", "b"}
    world.versions["asm-1-25"] = "1.25.7"
    run = new_run().evolve(kind="rollover", canary_revision="asm-1-25",
                           target_version="1.25.7",
                           options=UpgradeOptions(bake_s=60, interval_s=10, wave_size=2))
    run, now = drive(run, world, 1_000_000.0)
    run, _ = drive(decide(run, "approve", "UAPPROVER", POLICY, now), world, now)
    return run


def test_a_namespace_first_in_the_mesh_is_judged_on_errors_against_zero() -> None:
    """``inject --restart``: Istio has no history of a namespace before its first sidecar;
    its 5xx are judged against zero (0.5 points must be ruled out), latency only reported."""
    run = rollover_into_the_mesh(FakeWorld.seeded(["a", "b"]))
    assert run.phase == Phase.COMPLETED, run.history[-1].text
    gate = next(e for e in run.history if e.kind == "gate" and e.data["decided"])
    errors = next(c for c in gate.data["checks"] if c["metric"] == "errors:destination")
    assert errors["status"] == "ok" and errors["expected"] == 0.0
    world = FakeWorld.seeded(["a", "b"])
    world.metrics_by_rev[("a", "asm-1-25")] = NamespaceMetrics(
        requests=50000, success_rate=97.0, p99_ms=50)
    run = rollover_into_the_mesh(world)
    assert run.phase == Phase.PAUSED and "a 5xx and gRPC errors (destination): 3.00%" \
        in run.pause_reason  # a rollover that fails pauses (it cannot be rolled back)


def test_the_plan_names_namespaces_too_quiet_for_the_gate_to_decide() -> None:
    """The plan reads the last hour: ``c`` served 60 requests per 5 min (0.2 req/s), which
    the longest bake cannot turn into a verdict; the others serve 50,000 per 5 min."""
    world = FakeWorld.seeded(["a", "b", "c", "d"])
    world.metrics_by_rev[("c", "asm-1-25")] = NamespaceMetrics(
        requests=60, success_rate=100.0, p99_ms=50.0)
    run = new_run().evolve(options=UpgradeOptions(bake_s=600, interval_s=60, wave_size=2))
    run, _ = drive(run, world, 1_000_000.0)
    plan = run.history[-1].text
    assert run.phase == Phase.AWAITING_APPROVAL
    assert "low traffic over the last 60 min: c (0.2 req/s): the longest bake (1200s) would " \
           "see fewer than the ~3,890 requests the gate needs" in plan, plan
    assert " a (" not in plan and "d (" not in plan


def test_a_plan_without_prometheus_has_no_traffic_line_and_is_still_posted() -> None:
    world = FakeWorld.seeded(["a", "b"])
    world.metrics_down = True
    run, _ = drive(new_run(), world, 1_000_000.0)
    assert run.phase == Phase.AWAITING_APPROVAL
    assert "low traffic" not in run.history[-1].text


def test_a_prometheus_younger_than_two_windows_says_nothing_of_low_traffic() -> None:
    """Just started (or just told to scrape the proxies), Prometheus holds one 5-min window
    at most: a quiet namespace cannot be told from a new one, so the plan does not guess."""
    world = FakeWorld.seeded(["a", "b", "c", "d"])
    world.metrics_by_rev[("c", "asm-1-25")] = NamespaceMetrics(
        requests=60, success_rate=100.0, p99_ms=50.0)
    world.history_from = 1_000_000.0 - 200
    run = new_run().evolve(options=UpgradeOptions(bake_s=600, interval_s=60, wave_size=2))
    run, _ = drive(run, world, 1_000_000.0)
    assert run.phase == Phase.AWAITING_APPROVAL
    assert "low traffic" not in run.history[-1].text


def _windows(subject: str, revision: str, start: int, end: int, slow: float
             ) -> list[TrafficWindow]:
    """3-s destination windows of 30,000 requests, ``slow`` of them over 100 ms (an eighth
    of those over 250 ms), all 200s."""
    n, out = 30_000, []
    for t in range(start, end, 3):
        buckets = {25.0: round(n * 0.8), 50.0: round(n * 0.9), 100.0: round(n * (1 - slow)),
                   250.0: round(n * (1 - slow / 8)), 500.0: n, 1000.0: n}
        out.append(TrafficWindow.of_counts(subject, revision, "destination", t, t + 3,
                                           {"200": n}, buckets, 0, 0))
    return out


def test_a_control_migrated_by_an_earlier_wave_counts_from_the_end_of_its_rollout() -> None:
    """While wave 0's rollout replaced bookinfo's workloads one after the other, its
    windows on the canary held only the pods already replaced (a slow fraction half the
    namespace's); wave 1 moved right after. Taken as the control's baseline, those windows
    read every window since as fleet-wide weather and left wave 1 undecided (seen on the
    batch-and-stateful world); counted from wave 0's bake start, the control is whole."""
    t = 1_000_002  # a multiple of the 3-s step
    windows = (_windows("bookinfo", "asm-1-25", t - 600, t, 0.01)
               + _windows("bookinfo", "asm-1-27", t, t + 6, 0.005)  # the rollout
               + _windows("bookinfo", "asm-1-27", t + 6, t + 18, 0.01)
               + _windows("payments", "asm-1-25", t - 600, t + 6, 0.01)
               + _windows("payments", "asm-1-27", t + 6, t + 18, 0.01))
    run = new_run().evolve(options=UpgradeOptions(bake_s=6, interval_s=3, wave_size=1))
    run = run.evolve(canary_revision="asm-1-27", waves=[
        Wave(index=0, namespaces=["bookinfo"], bake_started_at=t + 6),
        Wave(index=1, namespaces=["payments"], bake_started_at=t + 6, restarted_at=t + 6,
             control=["bookinfo"])])
    wave = run.waves[1]
    assert settled_at(run, wave) == {"bookinfo": t + 6}
    cw = canary_wave(run, wave)
    now = t + 6 + 6  # the bake's second look

    def judged(settled: dict[str, float] | None) -> CanaryJudgement:
        return judge_canary(on_latest_revision(windows, wave.control, settled), cw, now,
                            6, 3, run.thresholds.canary)

    before = judged(None)  # the rollout's windows as the control's baseline
    assert "fleet-wide weather" in before.reason and before.verdict != Verdict.PASS
    after = judged(settled_at(run, wave))
    assert after.verdict == Verdict.PASS, after.reason
    assert "weather" not in after.reason


def test_a_wave_names_the_workloads_whose_rollout_it_waits_for() -> None:
    """The restart and each look at an unfinished rollout name the workloads the run waits
    for (``StepResult.wake``: a worker watches them); a look that finds it done, none."""
    from dataclasses import replace

    world = FakeWorld.seeded(["a", "b", "c", "d"], per_ns=2)
    run, now = approved(world)
    for _ in range(50):
        result = tick(run, world, now)
        run = result.run
        if "restarted" in run.history[-1].text:
            break
        assert result.wake == ()
        now += result.recheck_after or 0.0
    wave = run.current_wave
    assert wave is not None and wave.step == WaveStep.VERIFY
    assert sorted(w.key for w in result.wake) == sorted(
        w.key for w in world.list_workloads(wave.namespaces))
    assert len(result.wake) == 2
    # a worker watches them: the next look is a fallback, not a guess at the pace
    assert result.recheck_after == POLL_S
    # one of them still rolling (its controller has not observed the restart yet)
    listed = world.list_workloads
    rolling = result.wake[0].key

    def one_rolling(namespaces: list[str]):  # type: ignore[no-untyped-def]
        return [replace(w, observed_generation=w.generation - 1) if w.key == rolling else w
                for w in listed(namespaces)]

    world.list_workloads = one_rolling  # type: ignore[method-assign]
    looked = tick(run, world, now + 1)
    assert not looked.changed and [w.key for w in looked.wake] == [rolling]
    assert looked.recheck_after == POLL_S
    # more (namespace, kind) pairs than a worker watches: looks at the pods' pace
    many = tuple(replace(result.wake[0], namespace=f"ns-{i}") for i in range(WATCHED_PAIRS + 1))
    assert watched(list(many[:WATCHED_PAIRS])) and not watched(list(many)) and not watched([])
    world.list_workloads = listed  # type: ignore[method-assign]
    done = tick(run, world, now + 2)
    assert done.run.current_wave is not None and done.run.current_wave.step == WaveStep.BAKE
    assert done.wake == ()
