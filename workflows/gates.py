"""The former metric gate (DESIGN.md §5.2) and its bake decision. Pure.

The workers judge waves with :mod:`workflows.canary` (issue 12); this per-window threshold
gate stays as the baseline ``benchmarks/gate.py`` measures the canary gate against.

Success rate and p99 latency per namespace come from Istio's standard metrics with
``reporter="destination"``, as Flagger's built-in Istio checks
(``pkg/metrics/observers/istio.go``). Unlike Flagger, too little traffic is INCONCLUSIVE,
never PASS and never an automatic rollback (fluxcd/flagger#1035); a measurement that could
not be made is ERROR, kept apart from a failing canary (Argo Rollouts'
``consecutiveErrorLimit``).
"""

from __future__ import annotations

from dataclasses import dataclass

from workflows.model import Check, GateSample, GateThresholds, NamespaceMetrics, Verdict


def judge(
    namespaces: list[str],
    current: dict[str, NamespaceMetrics],
    baseline: dict[str, NamespaceMetrics],
    th: GateThresholds,
    now: float,
) -> GateSample:
    """Judge one sample of a wave.

    Args:
        namespaces: the wave's namespaces; one missing from ``current`` had no traffic.
        current: metrics over the last window, per namespace.
        baseline: the same metrics before the wave moved (may lack a namespace).
        th: thresholds.
        now: the time of the sample (Unix s).
    Returns:
        A :class:`GateSample`: FAIL if any check fails, else INCONCLUSIVE if any namespace
        had fewer than ``min_requests`` requests, else PASS; with every check made.
    """
    checks: list[Check] = []
    failed: list[str] = []
    thin: list[str] = []
    for ns in namespaces:
        m = current.get(ns) or NamespaceMetrics(requests=0, success_rate=None, p99_ms=None)
        if m.requests < th.min_requests:
            checks.append(Check(namespace=ns, metric="requests", value=m.requests,
                                threshold=th.min_requests, op=">=", ok=False))
            thin.append(ns)
            continue
        base = baseline.get(ns)
        base_ok = base is not None and base.requests >= th.min_requests
        if m.success_rate is not None:
            floor = th.min_success_rate
            if base_ok and base is not None and base.success_rate is not None:
                floor = max(floor, base.success_rate - th.max_success_rate_drop)
            ok = m.success_rate >= floor
            checks.append(Check(namespace=ns, metric="success_rate", value=m.success_rate,
                                threshold=round(floor, 3), op=">=", ok=ok))
            if not ok:
                failed.append(f"{ns} success rate {m.success_rate:.2f}% < {floor:.2f}%")
        if m.p99_ms is None:
            thin.append(ns)
            checks.append(Check(namespace=ns, metric="p99_ms", value=None,
                                threshold=th.max_p99_ms, op="<=", ok=False))
        else:
            ceiling = th.max_p99_ms
            if base_ok and base is not None and base.p99_ms is not None:
                ceiling = min(ceiling, base.p99_ms * th.max_p99_ratio)
            ok = m.p99_ms <= ceiling
            checks.append(Check(namespace=ns, metric="p99_ms", value=m.p99_ms,
                                threshold=round(ceiling, 3), op="<=", ok=ok))
            if not ok:
                failed.append(f"{ns} p99 {m.p99_ms:.0f} ms > {ceiling:.0f} ms")
    if failed:
        return GateSample(at=now, verdict=Verdict.FAIL, checks=checks, reason="; ".join(failed))
    if thin:
        return GateSample(
            at=now, verdict=Verdict.INCONCLUSIVE, checks=checks,
            reason="too little traffic to judge in " + ", ".join(dict.fromkeys(thin))
            + f" (fewer than {th.min_requests} requests in the window)",
        )
    return GateSample(at=now, verdict=Verdict.PASS, checks=checks)


def error_sample(now: float, reason: str) -> GateSample:
    return GateSample(at=now, verdict=Verdict.ERROR, reason=reason)


@dataclass(frozen=True)
class BakeDecision:
    """What to do after a sample: ``sample`` again in ``after_s``, or end with ``verdict``."""

    verdict: Verdict | None  # None: keep baking
    after_s: float = 0.0
    reason: str = ""


def streak(samples: list[GateSample], verdict: Verdict) -> int:
    """How many of the last samples in a row have ``verdict``."""
    n = 0
    for s in reversed(samples):
        if s.verdict != verdict:
            break
        n += 1
    return n


def decide_bake(
    samples: list[GateSample],
    bake_started_at: float,
    now: float,
    bake_s: float,
    interval_s: float,
    th: GateThresholds,
) -> BakeDecision:
    """Decide the wave's gate from its samples so far.

    FAIL after ``failure_threshold`` failed samples in a row; ERROR after ``error_limit``
    errors in a row; at the end of the bake time the last sample decides (PASS, or
    INCONCLUSIVE for a person). Otherwise sample again after ``interval_s`` seconds.
    """
    last = samples[-1] if samples else None
    if last is not None:
        if last.verdict == Verdict.FAIL and streak(samples, Verdict.FAIL) >= th.failure_threshold:
            return BakeDecision(Verdict.FAIL, reason=last.reason)
        if last.verdict == Verdict.ERROR and streak(samples, Verdict.ERROR) >= th.error_limit:
            return BakeDecision(Verdict.ERROR, reason=last.reason)
        if now - bake_started_at >= bake_s:
            if last.verdict == Verdict.PASS:
                return BakeDecision(Verdict.PASS)
            if last.verdict == Verdict.INCONCLUSIVE:
                return BakeDecision(Verdict.INCONCLUSIVE, reason=last.reason)
    return BakeDecision(None, after_s=interval_s)
