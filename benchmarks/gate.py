"""Metric gate benchmark: the former gate, a Flagger-style gate and the canary gate on the same
synthetic Istio traffic, healthy canaries and regressions of graded size (issue 12).

Each *wave* is one cluster's bake: 3 namespaces move to the canary revision after a
60-minute baseline, 3 to 9 others stay (the control; in half of the clusters 3 of them were
migrated long before, so they sit on the canary revision throughout), and the add-on's
ingress gateway runs on both revisions side by side. Every namespace has destination and
source traffic, TCP connections and restarts; windows are 1 minute, the bake 10 minutes
(extended to at most 20 by the canary gate). The traffic model has production's noise:

- request counts gamma–Poisson (negative binomial, load CV 0.2 per window), median 20 req/s
  per namespace (lognormal spread 0.3), one namespace in ten between 0.5 and 3 req/s;
- diurnal change of load over the run (−30 % … +40 %, errors ∝ load^0.5, latency ∝ load^0.1);
- bursts (2 % of windows: 3 × the load, latency × 1.3);
- error rates log-uniform 0.01 … 0.5 % with a gamma jitter per window (CV 0.3); HTTP or gRPC
  (3 in 10 namespaces; gRPC failures as ``grpc:14`` in HTTP 200); 0.5 % 4xx;
- latency a lognormal mixture (a fast mode and a 1–4 % slow mode), p99 between 100 and
  320 ms, scale jitter per window (lognormal σ 0.05), binned into Istio's buckets;
- fleet-wide incidents in 30 % of waves: 2–5 windows around the move that add 1–4 points
  of errors (× 0.5–1.5 per namespace) and/or multiply latency by 1.5–2.5 (exponent
  0.7–1.3 per namespace), on migrated and unmigrated namespaces alike; each namespace's
  proxies are scraped up to half a window early or late, so the incident's first and last
  moments fall into a neighbouring window for some namespaces and not for others (as 30 s
  scrapes do to 60 s windows).

Regressions (on one of the wave's namespaces, from the move): destination 5xx up by 0.2,
0.5, 1 and 5 points; p99 up 20 %, 50 %, 100 %, either every request slower (a proxy short
of CPU) or only the slow mode (a slow path: the bulk unchanged); errors seen only
by the namespace's outbound proxy (source reporter, +1 point); gRPC failures in HTTP 200
(+1 point); TCP connection failures (+2 points of connections); a crash-looping sidecar
(2 pods in CrashLoopBackOff); 5xx on the canary's ingress gateway (+1 point).

Gates, on the same windows:

- **former** (the workers' gate before issue 12): :func:`workflows.gates.judge` and
  :func:`~workflows.gates.decide_bake` with the product's defaults, fed what
  ``workers/prom/metrics.py`` computes (requests, 5xx by ``response_code``,
  ``histogram_quantile(0.99)`` of the buckets, reporter destination), the baseline the
  minute before the move;
- **Flagger-style**: success rate ≥ 99 %, p99 ≤ 500 ms per minute, a window without data is
  a failed check, rollback at 2 failed checks (Flagger's ``threshold``, cumulative), else
  promotion after the 10 checks of the bake;
- **canary gate**: :func:`workflows.canary.judge_canary` every minute.

Besides, two *quiet* healthy runs as the issue measured the former gate: every namespace at
exactly 20 or 2 req/s, Poisson counts, no jitter, bursts, incident or diurnal change.

Prints per scenario and gate: rollbacks, passes, undecided waves (INCONCLUSIVE: a person
decides) and the median number of intervals to a rollback; then, per gate, the false
rollbacks per healthy wave (goal ≤ 1 %), the regressions of the goal sizes that passed
("missed": 5xx from 0.5 points, p99 from +50 %, and every other kind; goal ≤ 1 %), the
median intervals to roll them back, the undecided share of all waves of the production
model; the last line is the canary gate's. ``--write FILE`` writes one wave's windows as
JSON lines instead (``meshops gate replay FILE`` scores them).

    .venv/bin/python benchmarks/gate.py [--waves 1000] [--seed 12] [--jobs 2]
    .venv/bin/python benchmarks/gate.py --write wave.jsonl [--scenario '5xx +1 pt'] [--seed 3]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workflows.canary import (  # noqa: E402
    CanaryThresholds,
    TrafficIndex,
    dump_jsonl,
    find_waves,
    judge_canary,
)
from workflows.gates import decide_bake, judge  # noqa: E402
from workflows.model import GateSample, GateThresholds, NamespaceMetrics, Verdict  # noqa: E402
from workflows.traffic import ISTIO_BUCKETS_MS, TrafficWindow  # noqa: E402

STABLE, CANARY = "asm-1-25", "asm-1-26"
INTERVAL_S, BAKE_LOOKS, MAX_LOOKS, BASELINE_LOOKS = 60.0, 10, 20, 60
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
GATEWAY = "gateway/aks-istio-ingressgateway-external"
EDGES = ISTIO_BUCKETS_MS[:-1]


@dataclass(frozen=True)
class Regression:
    kind: str  # none | errors | slower | latency | source | grpc | tcp | crashloop | gateway
    size: float = 0.0  # points of errors / connections, or p99 growth (0.5 = +50 %)
    goal: bool = False  # counted in "missed" (the goal sizes)


SCENARIOS: dict[str, Regression] = {
    "healthy": Regression("none"),
    "5xx +0.2 pt": Regression("errors", 0.2),
    "5xx +0.5 pt": Regression("errors", 0.5, True),
    "5xx +1 pt": Regression("errors", 1.0, True),
    "5xx +5 pt": Regression("errors", 5.0, True),
    "p99 +20% (all slower)": Regression("slower", 0.2),
    "p99 +50% (all slower)": Regression("slower", 0.5, True),
    "p99 +100% (all slower)": Regression("slower", 1.0, True),
    "p99 +20% (slow path)": Regression("latency", 0.2),
    "p99 +50% (slow path)": Regression("latency", 0.5, True),
    "p99 +100% (slow path)": Regression("latency", 1.0, True),
    "source-only 5xx +1 pt": Regression("source", 1.0, True),
    "gRPC 14 in 200 +1 pt": Regression("grpc", 1.0, True),
    "TCP failures +2 pt": Regression("tcp", 2.0, True),
    "crash-looping sidecar": Regression("crashloop", 0.0, True),
    "gateway 5xx +1 pt": Regression("gateway", 1.0, True),
}
QUIET = {"healthy, quiet 20 req/s": 20.0, "healthy, quiet 2 req/s": 2.0}  # the runs


# ---------------------------------------------------------------------------------------
# Sampling in pure Python (the project has no numpy).


def poisson(rng: random.Random, mu: float) -> int:
    """A Poisson draw: multiplication below 12, else Hörmann's PTRS (1993)."""
    if mu <= 0:
        return 0
    if mu < 12:
        limit, k, p = math.exp(-mu), 0, rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    slam, loglam = math.sqrt(mu), math.log(mu)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = math.floor((2 * a / us + b) * u + mu + 0.43)
        if us >= 0.07 and v <= vr:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if (math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b)
                <= -mu + k * loglam - math.lgamma(k + 1)):
            return k


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A binomial draw for small p (geometric gaps between successes)."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    log_q, k, i = math.log1p(-p), 0, -1
    while True:
        i += 1 + int(math.log(1.0 - rng.random()) / log_q)
        if i >= n:
            return k
        k += 1


def gamma_jitter(rng: random.Random, cv: float) -> float:
    if cv <= 0:
        return 1.0
    shape = 1.0 / (cv * cv)
    return rng.gammavariate(shape, 1.0 / shape)


# ---------------------------------------------------------------------------------------
# The traffic model.


@dataclass
class Latency:
    """A lognormal mixture (ms): a fast mode and a slow one of weight ``slow``."""

    fast_mu: float
    fast_sigma: float
    slow_mu: float
    slow_sigma: float
    slow: float

    def cdf(self, x: float, slow_scale: float = 1.0) -> float:
        if x <= 0:
            return 0.0
        lx = math.log(x)
        f = 0.5 * math.erfc(-(lx - self.fast_mu) / (self.fast_sigma * math.sqrt(2)))
        s = 0.5 * math.erfc(-(lx - self.slow_mu - math.log(slow_scale))
                            / (self.slow_sigma * math.sqrt(2)))
        return (1 - self.slow) * f + self.slow * s

    def quantile(self, q: float, slow_scale: float = 1.0) -> float:
        lo, hi = 0.01, 1e7
        for _ in range(80):
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if self.cdf(mid, slow_scale) < q else (lo, mid)
        return hi

    def slow_scale_for(self, growth: float) -> float:
        """The slow mode's scale that raises the p99 by ``growth`` (0.5: +50 %)."""
        target = self.quantile(0.99) * (1 + growth)
        lo, hi = 1.0, 1000.0
        for _ in range(60):
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if self.quantile(0.99, mid) < target else (lo, mid)
        return hi

    def cells(self, scale: float, slow_scale: float) -> list[float]:
        """Per-bucket (not cumulative) probabilities over Istio's buckets, +Inf last."""
        out, prev = [], 0.0
        for e in EDGES:
            c = self.cdf(e / scale, slow_scale)
            out.append(c - prev)
            prev = c
        out.append(1.0 - prev)
        return out


def random_latency(rng: random.Random) -> Latency:
    fast_sigma, slow_sigma = rng.uniform(0.4, 0.7), rng.uniform(0.4, 0.8)
    slow = rng.uniform(0.012, 0.04)
    lat = Latency(0.0, fast_sigma, math.log(rng.uniform(4, 8)), slow_sigma, slow)
    shift = math.log(rng.uniform(100, 320) / lat.quantile(0.99))
    return Latency(shift, fast_sigma, lat.slow_mu + shift, slow_sigma, slow)


@dataclass
class Flow:
    """One reporter's traffic of one subject."""

    rate: float  # req/s
    error: float  # failure probability per request
    grpc: bool
    latency: Latency
    tcp_rate: float  # connections/s
    tcp_fail: float


@dataclass
class Subject:
    name: str
    revision_before: str
    revision_after: str
    flows: dict[str, Flow]  # reporter → flow
    restarts_per_s: float
    incident_errors: float = 1.0  # how hard a fleet-wide incident hits it
    incident_latency: float = 1.0
    # when its proxies are scraped, in windows: its window k holds what happened in
    # [k + offset, k + 1 + offset) (Prometheus spreads its targets' scrapes over the scrape
    # interval; increase() counts between a target's samples inside the window)
    scrape_offset: float = 0.0


@dataclass
class World:
    subjects: list[Subject]
    canary: list[str]
    target: str  # where the regression is
    regression: Regression
    diurnal: float  # relative load change over the run
    incident: tuple[int, int, float, float] | None  # first, last window, +errors, × latency
    bursts: set[tuple[str, int]] = field(default_factory=set)
    slow_scale: float = 1.0
    quiet: bool = False  # Poisson counts, no jitter, bursts, incident or diurnal change


def random_flow(rng: random.Random, rate: float, grpc: bool) -> Flow:
    return Flow(rate, math.exp(rng.uniform(math.log(1e-4), math.log(5e-3))), grpc,
                random_latency(rng), rng.uniform(1, 10),
                math.exp(rng.uniform(math.log(1e-4), math.log(3e-3))))


def make_world(seed: int, scenario: str, rate: float | None = None) -> World:
    """One wave's cluster: the moving namespaces, the control, the gateways, the weather
    and the scenario's regression, all drawn from ``seed``. The quiet scenarios
    (:data:`QUIET`), or any scenario with ``rate`` (req/s), hold every namespace at one
    rate without the production noise, as the issue measured the former gate."""
    rng = random.Random(seed)
    reg = SCENARIOS.get(scenario, SCENARIOS["healthy"])
    rate = rate if rate is not None else QUIET.get(scenario)
    n_control = rng.randint(3, 9)
    migrated_before = 3 if rng.random() < 0.5 else 0
    subjects = []
    names = [f"ns-{i:02d}" for i in range(3 + n_control)]
    target_i = rng.randrange(3)
    for i, name in enumerate(names):
        if rate is not None:
            r = rate
        elif rng.random() < 0.1:
            r = rng.uniform(0.5, 3.0)
        else:
            r = 20.0 * math.exp(rng.gauss(0, 0.3))
        grpc = rng.random() < 0.3
        if i == target_i and reg.kind == "errors":
            grpc = False
        if i == target_i and reg.kind == "grpc":
            grpc = True
        before = after = STABLE
        if i < 3:
            after = CANARY
        elif i < 3 + migrated_before:
            before = after = CANARY
        subjects.append(Subject(
            name, before, after,
            {"destination": random_flow(rng, r, grpc),
             "source": random_flow(rng, r * rng.uniform(0.3, 1.5), grpc)},
            0.5 / 3600, rng.uniform(0.5, 1.5), rng.uniform(0.7, 1.3)))
    gateway = random_flow(rng, 50.0, False)  # both revisions' gateways behind one LB
    hit_e, hit_l = rng.uniform(0.5, 1.5), rng.uniform(0.7, 1.3)
    for rev in (STABLE, CANARY):
        subjects.append(Subject(f"{GATEWAY}-{rev}", rev, rev, {"source": gateway}, 0.0,
                                hit_e, hit_l))
    incident = None
    if rng.random() < 0.3 and rate is None:
        first = rng.randrange(BASELINE_LOOKS - 3, BASELINE_LOOKS + BAKE_LOOKS)
        kind = rng.random()
        add = rng.uniform(0.01, 0.04) if kind < 0.7 else 0.0
        mult = rng.uniform(1.5, 2.5) if kind >= 0.5 else 1.0
        incident = (first, first + rng.randint(1, 4), add, mult)
    world = World(subjects, names[:3], names[target_i], reg, rng.uniform(-0.3, 0.4), incident,
                  quiet=rate is not None)
    # up to half a window either way, as 30 s scrapes do to 60 s windows; drawn apart, so
    # the rest of the world is what it was without them
    scrapes = random.Random(f"{seed}/scrape")
    for s in subjects:
        s.scrape_offset = scrapes.uniform(-0.5, 0.5)
    total = BASELINE_LOOKS + MAX_LOOKS
    world.bursts = {(s.name, k) for s in subjects for k in range(total) if rng.random() < 0.02}
    if world.quiet:
        world.diurnal, world.bursts = 0.0, set()
    if reg.kind == "latency":
        world.slow_scale = subjects[target_i].flows["destination"].latency.slow_scale_for(
            reg.size)
    return world


def crashloop_restarts(t0: float, t1: float, start: float) -> int:
    """Restarts of one container in CrashLoopBackOff in [t0, t1): back-off 10 s doubling
    to 5 min, after a few seconds of running each time."""
    n, t, delay = 0, start, 10.0
    while t < t1:
        if t >= t0:
            n += 1
        t += 5.0 + delay
        delay = min(300.0, delay * 2)
    return n


def windows_of(world: World, seed: int) -> list[TrafficWindow]:
    """Every window of the world: baseline, then the longest bake."""
    rng = random.Random(seed * 7919 + 1)
    reg, out = world.regression, []
    total = BASELINE_LOOKS + MAX_LOOKS
    crash_start = rng.uniform(0, 60)
    noise = 0.0 if world.quiet else 1.0
    for k in range(total):
        start = T0 + k * INTERVAL_S
        moved = k >= BASELINE_LOOKS
        load_f = 1 + world.diurnal * k / total
        inc = world.incident
        for s in world.subjects:
            # the share of this subject's window k inside the incident (windows inc[0] to
            # inc[1] of the clock): its first and last moments fall into a neighbouring
            # window for a subject scraped early or late
            hit = 0.0 if inc is None else max(0.0, min(k + 1 + s.scrape_offset, inc[1] + 1)
                                                   - max(k + s.scrape_offset, inc[0]))
            revision = s.revision_after if moved else s.revision_before
            burst = (s.name, k) in world.bursts
            target = moved and s.name == world.target
            gateway_target = moved and reg.kind == "gateway" and s.name.endswith(CANARY) \
                and s.name.startswith("gateway/")
            restarts = poisson(rng, s.restarts_per_s * INTERVAL_S)
            if target and reg.kind == "crashloop":
                t0 = (k - BASELINE_LOOKS) * INTERVAL_S
                restarts += 2 * crashloop_restarts(t0, t0 + INTERVAL_S, crash_start)
            for reporter, f in s.flows.items():
                lam = (f.rate * load_f * gamma_jitter(rng, 0.2 * noise)
                       * (3.0 if burst else 1.0) * INTERVAL_S)
                err = f.error * math.sqrt(load_f) * gamma_jitter(rng, 0.3 * noise)
                scale = (math.exp(rng.gauss(0, 0.05 * noise)) * load_f ** 0.1
                         * (1.3 if burst else 1.0))
                if hit > 0 and inc is not None:
                    # part of a window: the added errors pro rata, the slowdown as a
                    # geometric share (a shortcut for the mixture of slow and normal)
                    err += inc[2] * s.incident_errors * hit
                    scale *= inc[3] ** (s.incident_latency * hit)
                slow_scale = 1.0
                if target and reporter == "destination":
                    if reg.kind in ("errors", "grpc"):
                        err += reg.size / 100
                    elif reg.kind == "latency":
                        slow_scale = world.slow_scale
                    elif reg.kind == "slower":
                        scale *= 1 + reg.size
                if target and reporter == "source" and reg.kind == "source":
                    err += reg.size / 100
                if gateway_target:
                    err += reg.size / 100
                cells = [poisson(rng, lam * p) if lam * p > 1e-7 else 0
                         for p in f.latency.cells(scale, slow_scale)]
                n = sum(cells)
                errors = binomial(rng, n, min(1.0, err))
                cum, run = {}, 0
                for e, c in zip(ISTIO_BUCKETS_MS, cells, strict=True):
                    run += c
                    cum[e] = run
                if f.grpc:
                    codes = {"grpc:0": n - errors, "grpc:14": errors}
                else:
                    client = binomial(rng, n - errors, 0.005)
                    codes = {"200": n - errors - client, "404": client, "503": errors}
                opened = poisson(rng, f.tcp_rate * load_f * INTERVAL_S)
                fail_p = f.tcp_fail + (reg.size / 100 if target and reg.kind == "tcp"
                                       and reporter == "destination" else 0.0)
                out.append(TrafficWindow(
                    subject=s.name, revision=revision, reporter=reporter, start=start,
                    end=start + INTERVAL_S, requests=n,
                    codes={c: v for c, v in codes.items() if v}, buckets=cum,
                    tcp_opened=opened, tcp_failed=binomial(rng, opened, fail_p),
                    restarts=restarts if reporter == "destination" or s.name.startswith(
                        "gateway/") else 0))
    return out


# ---------------------------------------------------------------------------------------
# The gates.


def histogram_quantile(q: float, buckets: dict[float, int]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear inside the bucket, the highest finite
    bound when the rank falls in +Inf, None without observations."""
    edges = sorted(buckets)
    if not edges or buckets[edges[-1]] <= 0:
        return None
    rank = q * buckets[edges[-1]]
    prev_le, prev_count = 0.0, 0.0
    for le in edges:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def namespace_metrics(w: TrafficWindow | None) -> NamespaceMetrics:
    """What ``workers/prom/metrics.py`` reads from one window (destination reporter)."""
    if w is None or w.requests == 0:
        return NamespaceMetrics(requests=0, success_rate=None, p99_ms=None)
    fives = sum(v for c, v in w.codes.items() if c.startswith("5"))
    return NamespaceMetrics(requests=w.requests,
                            success_rate=100.0 * (w.requests - fives) / w.requests,
                            p99_ms=histogram_quantile(0.99, w.buckets))


Outcome = tuple[str, int]  # verdict (FAIL, PASS, INCONCLUSIVE), the look it came at


def dest_windows(windows: list[TrafficWindow], names: list[str]
                 ) -> dict[tuple[str, int], TrafficWindow]:
    return {(w.subject, round((w.start - T0) / INTERVAL_S)): w for w in windows
            if w.reporter == "destination" and w.subject in names}


def former_gate(world: World, windows: list[TrafficWindow]) -> Outcome:
    th = GateThresholds()
    by = dest_windows(windows, world.canary)
    baseline = {ns: namespace_metrics(by.get((ns, BASELINE_LOOKS - 1))) for ns in world.canary}
    started = T0 + BASELINE_LOOKS * INTERVAL_S
    samples: list[GateSample] = []
    for k in range(1, MAX_LOOKS + 1):
        now = started + k * INTERVAL_S
        current = {ns: namespace_metrics(by.get((ns, BASELINE_LOOKS + k - 1)))
                   for ns in world.canary}
        samples.append(judge(world.canary, current, baseline, th, now))
        d = decide_bake(samples, started, now, BAKE_LOOKS * INTERVAL_S, INTERVAL_S, th)
        if d.verdict is not None:
            return d.verdict.value, k
    return Verdict.INCONCLUSIVE.value, MAX_LOOKS


def flagger_gate(world: World, windows: list[TrafficWindow]) -> Outcome:
    by = dest_windows(windows, world.canary)
    failed = 0
    for k in range(1, BAKE_LOOKS + 1):
        bad = False
        for ns in world.canary:
            m = namespace_metrics(by.get((ns, BASELINE_LOOKS + k - 1)))
            if m.success_rate is None or m.p99_ms is None:  # "no values found": a failure
                bad = True
            elif m.success_rate < 99.0 or m.p99_ms > 500.0:
                bad = True
        failed += bad
        if failed >= 2:
            return Verdict.FAIL.value, k
    return Verdict.PASS.value, BAKE_LOOKS


def canary_gate(world: World, windows: list[TrafficWindow],
                th: CanaryThresholds | None = None) -> Outcome:
    index = TrafficIndex.of(windows)
    waves = find_waves(index, CANARY, BAKE_LOOKS * INTERVAL_S, INTERVAL_S, th)
    assert len(waves) == 1 and waves[0].canary == world.canary, waves
    wave = waves[0]
    for k in range(1, MAX_LOOKS + 1):
        j = judge_canary(index, wave, wave.bake_started_at + k * INTERVAL_S,
                         BAKE_LOOKS * INTERVAL_S, INTERVAL_S, th)
        if j.verdict is not None:
            return j.verdict.value, k
    return Verdict.INCONCLUSIVE.value, MAX_LOOKS


GATES: dict[str, Callable[[World, list[TrafficWindow]], Outcome]] = {
    "former gate": former_gate,
    "Flagger-style": flagger_gate,
    "canary gate": canary_gate,
}


def play(job: tuple[str, int]) -> tuple[str, dict[str, Outcome]]:
    scenario, seed = job
    world = make_world(seed, scenario)
    windows = windows_of(world, seed)
    return scenario, {name: gate(world, windows) for name, gate in GATES.items()}


# ---------------------------------------------------------------------------------------


def pct(n: int, d: int) -> str:
    return f"{100 * n / d:5.1f}%" if d else "    —"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waves", type=int, default=1000,
                        help="healthy waves; each regression and each quiet run gets a tenth")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--write", type=Path, default=None,
                        help="write one wave's windows as JSON lines to this file and stop")
    parser.add_argument("--scenario", default="healthy",
                        choices=[*SCENARIOS, *QUIET])
    args = parser.parse_args()

    if args.write is not None:
        world = make_world(args.seed, args.scenario)
        windows = windows_of(world, args.seed)
        args.write.write_text(f"# benchmarks/gate.py --scenario '{args.scenario}' --seed "
                              f"{args.seed}: {world.target} regressed\n" * (
                                  world.regression.kind != "none") + dump_jsonl(windows))
        print(f"{args.write}: {len(windows)} windows, scenario {args.scenario!r}, canary "
              f"{CANARY}: {', '.join(world.canary)}")
        return

    per_regression = max(20, args.waves // 10)
    jobs = [("healthy", args.seed * 1_000_000 + i) for i in range(args.waves)]
    for s_i, name in enumerate(SCENARIOS):
        if name != "healthy":
            jobs += [(name, args.seed * 1_000_000 + (s_i + 1) * 100_000 + i)
                     for i in range(per_regression)]
    for q_i, name in enumerate(QUIET):
        jobs += [(name, args.seed * 1_000_000 + 980_000 + q_i * 10_000 + i)
                 for i in range(max(20, args.waves // 10))]
    t0 = time.perf_counter()
    results: dict[str, list[dict[str, Outcome]]] = {}
    with multiprocessing.Pool(args.jobs) as pool:
        for scenario, outcome in pool.imap_unordered(play, jobs, chunksize=8):
            results.setdefault(scenario, []).append(outcome)
    elapsed = time.perf_counter() - t0

    print(f"metric gate benchmark: {len(jobs)} waves (seed {args.seed}, {args.jobs} processes, "
          f"{elapsed:.0f} s); bake {BAKE_LOOKS} × {INTERVAL_S:.0f} s (canary gate: up to "
          f"{MAX_LOOKS}), baseline {BASELINE_LOOKS} min, waves of 3 namespaces")
    print("per scenario: rolled back / passed / undecided, median intervals to roll back")
    head = f"{'scenario':<24}{'waves':>6}"
    for g in GATES:
        head += f"  {g:^31}"
    print(head)
    order = ["healthy", *QUIET, *[s for s in SCENARIOS if s != "healthy"]]
    for scenario in order:
        rows = results.get(scenario, [])
        line = f"{scenario:<24}{len(rows):>6}"
        for g in GATES:
            v = [r[g] for r in rows]
            fail = [k for verdict, k in v if verdict == "FAIL"]
            passed = sum(verdict == "PASS" for verdict, _ in v)
            open_ = len(v) - len(fail) - passed
            med = f"{statistics.median(fail):4.0f}" if fail else "   —"
            line += f"  {pct(len(fail), len(v))} {pct(passed, len(v))} {pct(open_, len(v))}" \
                    f" {med}"
        print(line)

    summary: dict[str, tuple[float, float, float, float]] = {}
    for g in GATES:
        healthy = [r[g] for r in results.get("healthy", [])]
        goal = [r[g] for s, reg in SCENARIOS.items() if reg.goal for r in results.get(s, [])]
        every = [r[g] for s in SCENARIOS for r in results.get(s, [])]
        false_rb = sum(v == "FAIL" for v, _ in healthy) / max(1, len(healthy))
        missed = sum(v == "PASS" for v, _ in goal) / max(1, len(goal))
        detect = [k for v, k in goal if v == "FAIL"]
        undecided = sum(v not in ("FAIL", "PASS") for v, _ in every) / max(1, len(every))
        median = float(statistics.median(detect)) if detect else math.nan
        summary[g] = (false_rb, missed, median, undecided)
        worst = max(((s, sum(r[g][0] == "PASS" for r in results.get(s, []))
                      / max(1, len(results.get(s, [])))) for s, reg in SCENARIOS.items()
                     if reg.goal), key=lambda x: x[1])
        print(f"{g}: false rollbacks {100 * false_rb:.1f}% of healthy waves (goal ≤ 1%); "
              f"regressions of the goal sizes passed {100 * missed:.1f}% (goal ≤ 1%; worst "
              f"{worst[0]} {100 * worst[1]:.0f}%); median {summary[g][2]:.0f} intervals to "
              f"roll back; undecided {100 * undecided:.1f}% of all waves")
    f, m, d, u = summary["canary gate"]
    print(f"gate: false-rollback {100 * f:.1f}%, missed {100 * m:.1f}%, median detect "
          f"{d:.0f} intervals, undecided {100 * u:.1f}%")


if __name__ == "__main__":
    main()
