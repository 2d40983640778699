"""The soak after a campaign stage: errors the upgraded namespaces did not serve before,
large enough to matter and beyond chance, fail the cluster; noise and thin traffic do not."""

from __future__ import annotations

import random

from workflows.canary import soak_regression
from workflows.model import CanaryThresholds
from workflows.traffic import TrafficWindow

TH = CanaryThresholds()


def windows(ns: str, start: float, end: float, rps: float, error_rate: float,
            reporter: str = "destination", seed: int = 1, step: float = 30) -> list[TrafficWindow]:
    rng = random.Random(seed)
    out = []
    t = start
    while t + step <= end:
        n = int(rng.gauss(rps * step, (rps * step) ** 0.5))
        # production's over-dispersion: the error rate itself jitters window to window
        e = sum(1 for _ in range(n) if rng.random() < error_rate * rng.uniform(0.8, 1.2))
        out.append(TrafficWindow(subject=ns, revision=None, reporter=reporter, start=t,
                                 end=t + step, requests=n, codes={"200": n - e, "503": e}))
        t += step
    return out


def test_a_regression_after_the_upgrade_is_named_with_both_rates() -> None:
    since = 10_000.0
    w = windows("shop", since - 3600, since, 20, 0.001) + \
        windows("shop", since, since + 300, 20, 0.03, seed=2)
    found = soak_regression(w, since, TH)
    assert found is not None and found.startswith("shop ")
    assert "since the upgrade against" in found and "0.5 points" in found


def test_noise_a_small_rise_and_thin_traffic_are_not_regressions() -> None:
    since = 10_000.0
    same = windows("shop", since - 3600, since, 50, 0.002) + \
        windows("shop", since, since + 600, 50, 0.002, seed=3)
    assert soak_regression(same, since, TH) is None
    # 0.3 points more: real, but smaller than what the gate is set to catch (0.5)
    small = windows("cart", since - 3600, since, 200, 0.001) + \
        windows("cart", since, since + 600, 200, 0.004, seed=4)
    assert soak_regression(small, since, TH) is None
    # 1 error in 40 requests since: 2.5 % but not beyond chance
    thin = [TrafficWindow(subject="ops", revision=None, reporter="destination", start=0,
                          end=since, requests=4000, codes={"200": 3996, "503": 4}),
            TrafficWindow(subject="ops", revision=None, reporter="destination", start=since,
                          end=since + 60, requests=40, codes={"200": 39, "503": 1})]
    assert soak_regression(thin, since, TH) is None
    assert soak_regression([], since, TH) is None


def test_the_source_reporter_counts_only_where_no_destination_reports() -> None:
    since = 10_000.0
    # callers outside the mesh: only the source reporter (e.g. an ingress) sees the errors
    w = windows("edge", since - 3600, since, 20, 0.001, reporter="source") + \
        windows("edge", since, since + 300, 20, 0.05, reporter="source", seed=5)
    assert soak_regression(w, since, TH) is not None
    # a namespace with a destination reporter is judged on it alone
    w += windows("edge", since - 3600, since + 300, 20, 0.001, reporter="destination", seed=6)
    assert soak_regression(w, since, TH) is None
