"""Every message meshops renders is valid Block Kit within Slack's limits."""

from __future__ import annotations

import functools
import re

import pytest
from slack_sdk.models.blocks import Block

from tests.core.fakes import FakeWorld
from tests.core.test_canary_gate import decide, look, wave_of
from tests.core.test_workflow import POLICY, drive, new_run
from workers.slack.render import fmt_check, render_event, render_root
from workflows import gates, lifecycle
from workflows.model import (
    Check,
    Event,
    GateSample,
    GateThresholds,
    NamespaceMetrics,
    Phase,
    Run,
    Verdict,
    Wave,
    WaveStep,
)


def valid(blocks: list[dict]) -> None:
    assert len(blocks) <= 50
    for raw in blocks:
        block = Block.parse(raw)
        assert block is not None, raw
        block.validate_json()
        text = raw.get("text", {}).get("text", "") if isinstance(raw.get("text"), dict) else ""
        assert len(text) <= 3000


@functools.cache
def runs_in_every_phase() -> list[Run]:
    """Runs driven through the fake world (cached: runs are immutable)."""
    world = FakeWorld.seeded([f"ns-{i:03d}" for i in range(120)])
    world.metrics_by_rev[("ns-005", "asm-1-26")] = NamespaceMetrics(
        requests=1000, success_rate=50.0, p99_ms=900)
    run, now = drive(new_run(), world, 0)
    out = [run]
    approved = lifecycle.decide(run, "approve", "UAPPROVER", POLICY, now)
    out.append(approved)
    rolled, _ = drive(approved, world, now)
    out.append(rolled)
    out.append(approved.evolve(phase=Phase.MIGRATING))
    out.append(approved.evolve(phase=Phase.AWAITING_COMPLETION))
    return out


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4])
def test_root_message_is_valid_block_kit(index: int) -> None:
    run = runs_in_every_phase()[index]
    text, blocks = render_root(run, ["U0BEN", "U0ANA"])
    valid(blocks)
    assert run.id in text
    actions = [b for b in blocks if b["type"] == "actions"]
    if run.phase == Phase.AWAITING_APPROVAL:
        assert [e["action_id"] for e in actions[0]["elements"]] == ["meshops_approve",
                                                                    "meshops_cancel"]
        assert all(e["value"] == run.id for e in actions[0]["elements"])
    if run.phase in (Phase.MIGRATING, Phase.AWAITING_COMPLETION):
        buttons = {e["action_id"]: e for e in actions[0]["elements"]}
        rollback = buttons["meshops_rollback"]
        assert rollback["confirm"]["title"]["text"] == "Roll back?"
        assert "back to *asm-1-25*" in rollback["confirm"]["text"]["text"]
        if run.phase == Phase.AWAITING_COMPLETION:
            assert "only *asm-1-26* remains" in buttons["meshops_complete"]["confirm"]["text"][
                "text"]
    if run.phase.terminal:
        assert not actions


def test_thread_lines_of_a_rolled_back_run_show_the_regression() -> None:
    run = runs_in_every_phase()[2]
    assert run.phase == Phase.ROLLED_BACK
    lines = [render_event(run, i) for i in range(len(run.history))]
    assert all(len(line) <= 3000 for line in lines)
    gates = [(e, line) for e, line in zip(run.history, lines, strict=True) if e.kind == "gate"]
    fail = next(line for e, line in gates if e.data["decided"] and e.data["verdict"] == "FAIL")
    # the look that fails depends on where the bake's windows fall: any look of wave 3
    assert re.match(r"\*wave 3 \(ns-005, ns-006\): gate look \d+[^*]*: FAIL\*\n", fail), fail
    assert ("\n✗ ns-005 5xx/gRPC errors (destination) 50.00% — expected 0.000%, control "
            "0.000%, tolerated ≤ 0.050%, regressed at >99.99% confidence\n") in fail
    assert "\n✗ ns-005 slower than 50 ms (destination) 100.00% — " in fail
    intermediate = [line for e, line in gates if not e.data["decided"]]
    assert intermediate
    assert all("✓" not in line and len(line) <= 1400 for line in intermediate)


def test_a_former_gate_event_shows_values_against_thresholds() -> None:
    current = {"ns-005": NamespaceMetrics(requests=1000, success_rate=50.0, p99_ms=900)}
    baseline = {"ns-005": NamespaceMetrics(requests=1000, success_rate=100.0, p99_ms=50)}
    sample = gates.judge(["ns-005"], current, baseline, GateThresholds(), now=100)
    line = render_event(gate_run(sample, None, "gate sample: FAIL"), 0)
    assert line.startswith("*gate sample: FAIL*\n")
    assert "✗ ns-005 success 50.00% ≥ 99.50%" in line  # baseline 100 % − 0.5 points
    assert "✗ ns-005 p99 900 ms ≤ 60 ms" in line  # 1.2 × the 50 ms baseline


def test_gate_chart_is_a_readable_png_of_the_right_size(tmp_path) -> None:
    from tests.adapters.test_slack_charts import assert_readable_png
    from workers.slack.charts import gate_chart

    run = runs_in_every_phase()[2]  # rolled back after a failing wave: several samples
    assert_readable_png(gate_chart(run), tmp_path)


def test_user_groups_among_approvers_are_mentioned_as_groups() -> None:
    run = Run(id="r-abc123", cluster="dev", requester="UREQ", channel="C1",
              canary_revision="asm-1-26", created_at=0, updated_at=0)
    _, blocks = render_root(run, ["U0AAAAAAA", "S0MESHLEADS"])
    assert "<@U0AAAAAAA>, <!subteam^S0MESHLEADS>" in str(blocks)


# The canary gate's records (workflows/canary.py) on the benchmark's seeded traffic model:
# real checks as the worker writes them into gate events and samples.


def canary_failure() -> tuple[str, GateSample, GateSample]:
    """(the regressed subject, an intermediate look, the FAIL look) of a wave whose first
    namespace serves 1 point more 5xx on the canary."""
    world, windows = wave_of("5xx +1 pt", 1)
    first = look(windows, 1)
    assert first.verdict is None
    failed = decide(windows)
    assert failed.verdict == Verdict.FAIL
    return world.target, first.sample, failed.sample


def gate_run(sample: GateSample, decided: bool | None, text: str) -> Run:
    data = {"wave": 0, "verdict": sample.verdict.value, "look": 3,
            "checks": [c.model_dump() for c in sample.checks]}
    if decided is not None:
        data["decided"] = decided
    wave = Wave(index=0, namespaces=["ns-00", "ns-01", "ns-02"], step=WaveStep.BAKE,
                labelled=True, bake_started_at=sample.at - 180, samples=[sample])
    return Run(id="r-gate01", cluster="dev", requester="UREQ", channel="C1",
               canary_revision="asm-1-26", stable_revision="asm-1-25", created_at=0,
               updated_at=0, phase=Phase.MIGRATING, waves=[wave],
               history=[Event(at=sample.at, kind="gate", text=text, data=data)])


def test_a_decided_gate_event_shows_the_regression_with_both_sides_and_confidence() -> None:
    target, _, failed = canary_failure()
    text = f"Wave 0, look 3: FAIL — {failed.reason}\nRolling back."
    line = render_event(gate_run(failed, True, text), 0)
    head, second, *checks = line.split("\n")
    assert head.startswith("*Wave 0, look 3: FAIL — ") and head.endswith("*")
    assert second == "Rolling back."
    (bad,) = [c for c in failed.checks if c.status == "regressed"]
    assert bad.value is not None and bad.expected is not None and bad.control is not None
    assert checks[0] == (
        f"✗ {target} 5xx/gRPC errors (destination) {bad.value:.3f}% — expected "
        f"{bad.expected:.3f}%, control {bad.control:.3f}%, tolerated ≤ "
        f"{bad.threshold:.3f}%, regressed at >99.99% confidence")
    assert len(failed.checks) > 12
    assert len(checks) == 12 and checks[-1] == f"… and {len(failed.checks) - 11} more signals"
    marks = [c[0] for c in checks[:-1]]
    assert "✓" in marks and "✓" not in marks[: marks.index("✓")] and \
        all(m == "✓" for m in marks[marks.index("✓"):])  # not-ok first, then the ok ones
    assert len(line) <= 3000


def test_an_intermediate_look_lists_only_its_open_signals_and_stays_short() -> None:
    _, first, _ = canary_failure()
    look_line = "wave 0 (ns-00, ns-01, ns-02): gate look 1 of 10 (up to 20): INCONCLUSIVE so far"
    text = f"{look_line} — {first.reason}"
    assert len(text) > 1000  # every signal is still open at the first look
    line = render_event(gate_run(first, False, text), 0)
    head, reason, *checks = line.split("\n")
    assert head == f"*{look_line}*"
    assert first.reason.startswith(reason[:-1]) and reason.endswith("…")
    open_ = [c for c in first.checks if c.status in ("regressed", "undecided")]
    assert len(open_) > 6
    assert len(checks) == 6 and checks[-1] == f"… and {len(open_) - 5} more open signals"
    assert all(c.startswith(("✗ ", "… ")) and "—" in c for c in checks[:-1])
    assert len(line) <= 1400


def test_the_3000_character_cap_keeps_the_check_lines_and_closes_the_bold() -> None:
    _, _, failed = canary_failure()
    line = render_event(gate_run(failed, True, "FAIL: " + "x; " * 2000), 0)
    assert len(line) <= 3000
    head, *checks = line.split("\n")
    assert head.startswith("*FAIL: ") and head.endswith("…*")
    assert checks[0].startswith("✗ ") and checks[-1].endswith("more signals")


def test_every_kind_of_check_has_a_line() -> None:
    def canary(metric: str, **kw: object) -> Check:
        fields: dict[str, object] = dict(namespace="shop", metric=metric, value=0.012,
                                         threshold=0.06, op="<=", ok=True, expected=0.01,
                                         control=0.011, unit="%", status="ok",
                                         confidence=0.995)
        fields.update(kw)
        return Check(**fields)  # type: ignore[arg-type]

    assert fmt_check(canary("errors:destination")) == (
        "✓ shop 5xx/gRPC errors (destination) 0.012% — expected 0.010%, control 0.011%, "
        "tolerated ≤ 0.060%, ok at 99.50% confidence")
    assert fmt_check(canary("latency:destination>250ms", value=2.5, threshold=1.1,
                            ok=False, status="regressed", confidence=0.99999)).startswith(
        "✗ shop slower than 250 ms (destination) 2.50% — ")
    assert fmt_check(canary("tcp:source", status="undecided")).startswith(
        "… shop TCP connection failures (source) 0.012% — ")
    assert fmt_check(canary("tcp:source", status="undecided")).endswith(", undecided")
    assert fmt_check(canary("restarts:pods", value=7.2, threshold=1.0, unit="/h",
                            expected=0.0, control=0.1, ok=False, status="regressed",
                            confidence=0.9995)) == (
        "✗ shop container restarts 7.2/h — expected 0.0/h, control 0.1/h, tolerated ≤ "
        "1.0/h, regressed at 99.95% confidence")
    assert fmt_check(canary("errors:source", value=None, threshold=0.0, expected=None,
                            status="thin", confidence=0.0)) == (
        "? shop 5xx/gRPC errors (source) no data — control 0.011%, too little data to judge")
    # a team's metric template: its name as the metric
    assert fmt_check(Check(namespace="shop", metric="queue_depth", value=0.3, threshold=1,
                           op="<=", ok=True)) == "✓ shop queue_depth 0.3 ≤ 1"
    assert fmt_check(Check(namespace="shop", metric="orders (dry run)", value=None,
                           threshold=5, op=">=", ok=False)) == \
        "✗ shop orders (dry run) no data ≥ 5"
    # the former gate's, as before
    assert fmt_check(Check(namespace="shop", metric="success_rate", value=98.5,
                           threshold=99.0, op=">=", ok=False)) == "✗ shop success 98.50% ≥ 99.00%"


def test_a_former_gate_event_with_a_template_check_renders_as_before() -> None:
    sample = GateSample(at=100, verdict=Verdict.PASS, checks=[
        Check(namespace="shop", metric="p99_ms", value=40, threshold=60, op="<=", ok=True),
        Check(namespace="shop", metric="queue_depth", value=0.3, threshold=1, op="<=",
              ok=True)])
    line = render_event(gate_run(sample, None, "gate sample: PASS"), 0)
    assert line == "*gate sample: PASS*\n✓ shop p99 40 ms ≤ 60 ms\n✓ shop queue_depth 0.3 ≤ 1"


def test_the_root_message_shows_the_last_verdict_its_reason_and_eight_checks() -> None:
    target, _, failed = canary_failure()
    run = gate_run(failed, True, "FAIL")
    _, blocks = render_root(run, ["U0BEN"])
    valid(blocks)
    (gate,) = [b["text"]["text"] for b in blocks
               if b["type"] == "section" and "text" in b
               and b["text"]["text"].startswith("*Gate, wave 0*")]
    head, reason, *checks = gate.split("\n")
    assert head == "*Gate, wave 0*: FAIL"
    assert reason.startswith(f"{target} 5xx and gRPC errors (destination)")
    assert len(reason) <= 600
    assert len(checks) == 8 and checks[-1] == f"… and {len(failed.checks) - 7} more signals"
    assert checks[0].startswith(f"✗ {target} 5xx/gRPC errors (destination) ")
