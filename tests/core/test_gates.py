from workflows.gates import decide_bake, judge
from workflows.model import GateSample, GateThresholds, NamespaceMetrics, Verdict

TH = GateThresholds()


def m(requests: float, sr: float | None, p99: float | None) -> NamespaceMetrics:
    return NamespaceMetrics(requests=requests, success_rate=sr, p99_ms=p99)


def test_pass_when_all_within_thresholds() -> None:
    s = judge(["a"], {"a": m(500, 99.9, 120)}, {}, TH, 1.0)
    assert s.verdict == Verdict.PASS
    assert {(c.metric, c.threshold, c.ok) for c in s.checks} == {
        ("success_rate", 99.0, True), ("p99_ms", 500.0, True)}


def test_success_rate_below_absolute_floor_fails() -> None:
    s = judge(["a"], {"a": m(500, 97.0, 120)}, {}, TH, 1.0)
    assert s.verdict == Verdict.FAIL and "97.00% < 99.00%" in s.reason


def test_baseline_tightens_thresholds() -> None:
    base = {"a": m(1000, 100.0, 100)}
    s = judge(["a"], {"a": m(1000, 99.4, 119)}, base, TH, 1.0)
    assert s.verdict == Verdict.FAIL and "< 99.50%" in s.reason
    s = judge(["a"], {"a": m(1000, 99.6, 121)}, base, TH, 1.0)
    assert s.verdict == Verdict.FAIL and "p99 121 ms > 120 ms" in s.reason
    s = judge(["a"], {"a": m(1000, 99.6, 119)}, base, TH, 1.0)
    assert s.verdict == Verdict.PASS


def test_thin_baseline_is_ignored() -> None:
    s = judge(["a"], {"a": m(1000, 99.2, 400)}, {"a": m(10, 100.0, 10)}, TH, 1.0)
    assert s.verdict == Verdict.PASS


def test_too_few_requests_is_inconclusive_never_pass() -> None:
    s = judge(["a", "b"], {"a": m(500, 100, 10), "b": m(99, 100, 10)}, {}, TH, 1.0)
    assert s.verdict == Verdict.INCONCLUSIVE and "b" in s.reason
    s = judge(["a"], {}, {}, TH, 1.0)
    assert s.verdict == Verdict.INCONCLUSIVE


def test_fail_beats_inconclusive() -> None:
    s = judge(["a", "b"], {"a": m(500, 50, 10), "b": m(1, 100, 10)}, {}, TH, 1.0)
    assert s.verdict == Verdict.FAIL


def sample(v: Verdict) -> GateSample:
    return GateSample(at=0, verdict=v)


def test_bake_needs_consecutive_failures() -> None:
    one = decide_bake([sample(Verdict.FAIL)], 0, 5, 100, 10, TH)
    assert one.verdict is None and one.after_s == 10
    two = decide_bake([sample(Verdict.FAIL)] * 2, 0, 5, 100, 10, TH)
    assert two.verdict == Verdict.FAIL
    broken = decide_bake([sample(Verdict.FAIL), sample(Verdict.PASS), sample(Verdict.FAIL)],
                         0, 5, 100, 10, TH)
    assert broken.verdict is None


def test_bake_ends_on_last_sample_after_bake_time() -> None:
    assert decide_bake([sample(Verdict.PASS)], 0, 50, 100, 10, TH).verdict is None
    assert decide_bake([sample(Verdict.PASS)], 0, 100, 100, 10, TH).verdict == Verdict.PASS
    assert decide_bake([sample(Verdict.INCONCLUSIVE)], 0, 100, 100, 10, TH).verdict == \
        Verdict.INCONCLUSIVE
    assert decide_bake([sample(Verdict.ERROR)] * 3, 0, 5, 100, 10, TH).verdict == Verdict.ERROR
