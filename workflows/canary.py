"""The canary gate: each migrated subject against its own baseline and the weather. Pure.

Issue 12: the gate the workers run (:mod:`workflows.waves`). The former gate
(:mod:`workflows.gates`) compared one minute of a migrated namespace with one minute
before it moved, against fixed margins: it blamed the canary for the weather (a diurnal
rise, an incident everywhere), treated 40 requests like 40,000, and read latency as a
ratio of two p99 estimates interpolated inside Istio's coarse buckets. This
gate asks one question per signal: *did this subject get worse since it moved, by more than
the subjects that did not move changed over the same windows?* (difference in
differences), and answers it with count statistics that know how much evidence there is.

**Who is compared with whom.** A wave's *canary* subjects are its namespaces, now on the
canary revision; each is judged on its windows since the bake started against its own
windows before it moved (``baseline_s``, an hour by default: Prometheus already holds them,
and the baseline's noise is what limits the gate most). The *control* is every other
subject that stayed on one revision over the baseline and the bake (the namespaces not yet
migrated, and those migrated before the baseline began): their change over the same
windows is the weather. The add-on's ingress gateways of the canary revision
(``gateway/<deployment>``) run side by side with the stable revision's behind one load
balancer, so each is compared with its stable counterpart in the same windows instead (as
Kayenta compares a canary with a baseline started with it).

**Signals**, per reporter (``destination``: the subject's inbound proxy; ``source``: its
outbound proxy, which alone sees the calls a broken canary sidecar fails before sending):

- errors: HTTP 5xx and server-side gRPC failures (also those in HTTP 200) per request,
  compared additively (percentage points: the weather's change added to the baseline);
- latency: the fraction of requests slower than an Istio bucket edge — the edge whose
  baseline fraction is closest to 1 % (near the p99) and the next edge up (the slow path's
  tail) — compared relatively (× the weather), never as a ratio of two p99 estimates;
- TCP connection failures per connection opened (additive);
- container restarts per hour (a crash-looping sidecar; additive).

**The expectation.** Window by window, the control's change is measured with every control
subject against its own baseline — so a control subject's own burst of traffic does not
read as a change of rate (no Simpson's paradox) — and added to (or multiplied into) the
canary subject's baseline rate; the expected count is the sum over the canary's windows.
(The next edge up uses the weather of the ~1 % edge: ten times the slow requests, and a
fleet-wide slowdown moves both.) Windows in which the control as a whole got sharply worse
— a fleet-wide incident: more than 5 standard deviations (of the median window's
dispersion, so the storm does not hide itself) and 50 % above its baseline — are left out
on every side, and so is the window on either side of them wherever the subject was worse
than usual in it (each proxy is scraped at its own moment, so an incident's first and last
seconds fall into a neighbouring window for some subjects and not for others); each check
says how many. Every baseline first loses its outlying windows (an incident no control saw,
a burst of its own: 8 robust standard deviations and twice away from the median window's
rate, a minority of its windows; as Kayenta filters outliers), so that it says what normal
was. A control migrated by an earlier wave is read on the canary from the end of its
rollout on, and only once it has been there as long as a baseline must be (the longest
bake, :func:`workflows.waves.control_namespaces`); a control too thin to measure the
weather within a quarter of the detection gap is not used. The expectation's variance adds
the baseline's sampling noise, the control mean's, and the spread of the true change
between control subjects (random effects, the spread estimated robustly from the median
absolute deviation of the standardized changes, so one bursty subject is not fleet-wide
disagreement); window-to-window noise beyond Poisson is measured on the same windows (a
method-of-moments dispersion, as quasi-Poisson models do). The canary's count is then
compared with its *predictive* distribution, a gamma–Poisson (negative binomial) with that
mean and variance, computed exactly in pure Python (regularized incomplete beta and gamma
functions):

- ``p_regressed = P(X ≥ x)`` at the rate the tolerance allows (``+ error_tolerance_pts``;
  ``× (1 + latency_tolerance)``, …);
- ``p_ruled_out = P(X ≤ x)`` at the rate of a regression that must not pass
  (``+ error_detect_pts``: 0.5 points; ``× (1 + latency_detect)``: the ~1 % edge's slow
  fraction doubled, ``× (1 + tail_detect)``: the next edge's ×2.2 — what p99 +50 % does to
  the tails of the benchmark's lognormal mixtures, see ``benchmarks/gate.py``).

**Sequential rule.** The evidence is cumulative from the start of the bake and judged after
every interval. FAIL as soon as a test's ``p_regressed`` is at most ``false_rollback /
(tests × looks)`` — a union bound over every signal, subject and look, so a healthy wave is
rolled back with probability at most ``false_rollback`` (1 %) however often it is looked at
— and still is without the canary's worst window (a burst of the subject's own traffic is
not a regression; one window is never enough). PASS only at the end of the bake, half-way
through the extension or at its end (:func:`pass_looks`), when every *blocking* test has
``p_ruled_out`` at most ``missed / pass looks``, so a regression of the detection size
passes with probability at most ``missed`` (1 %). Blocking: errors of each reporter carrying
≥ 25 % of the subject's requests, latency (both edges) of the destination reporter, a
gateway's errors and latency; TCP failures and restarts can fail a wave but never hold it; a
namespace's source-side latency is reported only (it is its callees' latency, other
namespaces' included, more than its own proxy's). Otherwise the bake is extended, by at most
``max_extension`` × the bake, while the requests each open signal still needs to tell the
tolerance from the detection size (a sample-size computation on the same variances) can
arrive in time; else INCONCLUSIVE at once, saying per signal how many requests were seen and
how many are needed (or that no bake is long enough with this baseline). A person then
decides, as DESIGN.md §5.1 says.

Why this and not the others: Kayenta's NetflixACAJudge (spinnaker/kayenta,
``judge/NetflixACAJudge.scala``, ``classifiers/metric/MannWhitneyClassifier.scala``) removes
outliers (IQR), runs a Mann–Whitney U test on the time series of each metric of canary and
baseline (98 % confidence interval of the Hodges–Lehmann shift; High when its lower bound
exceeds 25 % of the estimate) and scores the metrics with weights; it needs a baseline
deployment started with the canary (we have one only for gateways), it tests *any* shift of
the whole series — with thousands of requests per side a shift of the median nobody notices
is significant — and on requests binned into Istio's buckets most pairs are ties. A count
test on the fraction above a bucket edge is exact for binned data, speaks about the tail the
p99 SLO is about, and composes with the weather; from Kayenta we keep the distrust of a
single outlying window. Argo Rollouts' analysis (``failureLimit``,
``consecutiveErrorLimit``, ``inconclusiveLimit``; docs/features/analysis.md) counts failed
*measurements*, each judged alone, so the false-alarm rate grows with every look and a small
regression never adds up. We keep Argo's separation of a failing canary from a measurement
that could not be made (ERROR after ``error_limit`` in a row, :func:`error_judgement`) and
of an inconclusive result that pauses for a person (``inconclusiveLimit: 0``).

**Replay files** (``meshops gate replay``, ``benchmarks/gate.py --write``): JSON lines, one
:class:`~workflows.traffic.TrafficWindow` per line as ``model_dump_json`` writes it, e.g.::

    {"subject": "shop", "revision": "asm-1-25", "reporter": "destination",
     "start": 1767225600.0, "end": 1767225660.0, "requests": 1204,
     "codes": {"200": 1199, "503": 5}, "buckets": {"25.0": 310, "…": 0, "inf": 1204},
     "tcp_opened": 301, "tcp_failed": 0, "restarts": 0}

(one line each; ``buckets`` cumulative by ``le`` in ms, ``"inf"`` last; gRPC calls under
``"grpc:<status>"``; blank lines and lines starting with ``#`` are skipped). A subject's
first window on the canary revision after windows on another one is the moment its wave
moved; subjects that moved in the same interval form a wave (:func:`find_waves`).
"""

from __future__ import annotations

import math
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workflows.model import CanaryThresholds, Check, GateSample, Verdict
from workflows.traffic import ISTIO_BUCKETS_MS, TrafficWindow

REPORTERS = ("destination", "source")
SIGNALS = ("errors", "latency", "tail", "tcp", "restarts")
_FINITE_EDGES = ISTIO_BUCKETS_MS[:-1]
_GATEWAY_REVISION = re.compile(r"-asm-1-\d+$")
_NORMAL = NormalDist()
_FIVE_SIGMA = _NORMAL.cdf(-5.0)  # a storm: as rare as 5 standard deviations, one-sided


# --------------------------------------------------------------------------------------
# Exact tails in pure Python (Numerical Recipes §6.2, §6.4: series and Lentz's continued
# fractions). Each returns (lower, upper) with the smaller one computed directly, so tail
# probabilities of 1e-30 keep their digits.

_EPS = 1e-15
#: the least time between two looks, seconds: a look that ran nearly an interval late is
#: followed by the next at once, but never within the same instant (a timer that fires a
#: hair early would number a look twice)
MIN_LOOK_GAP_S = 0.05
_TINY = 1e-300


def _betacf(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> tuple[float, float]:
    """The regularized incomplete beta function ``(I_x(a, b), 1 − I_x(a, b))``; a, b > 0."""
    if x <= 0.0:
        return 0.0, 1.0
    if x >= 1.0:
        return 1.0, 0.0
    ln_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
                + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        lower = min(1.0, math.exp(ln_front) * _betacf(a, b, x) / a)
        return lower, 1.0 - lower
    upper = min(1.0, math.exp(ln_front) * _betacf(b, a, 1.0 - x) / b)
    return 1.0 - upper, upper


def gammainc(a: float, x: float) -> tuple[float, float]:
    """The regularized incomplete gamma functions ``(P(a, x), Q(a, x))``; a > 0."""
    if x <= 0.0:
        return 0.0, 1.0
    ln_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        ap, term = a, 1.0 / a
        total = term
        for _ in range(100_000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * _EPS:
                break
        lower = min(1.0, total * math.exp(ln_front))
        return lower, 1.0 - lower
    b = x + 1.0 - a
    c, d = 1.0 / _TINY, 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = b + an / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            break
    upper = min(1.0, math.exp(ln_front) * h)
    return 1.0 - upper, upper


def count_tails(x: int, mean: float, var: float) -> tuple[float, float]:
    """``(P(X ≥ x), P(X ≤ x))`` for a count X with this mean and variance: gamma–Poisson
    (negative binomial) when ``var > mean``, else Poisson.

    Args:
        x: the observed count (≥ 0).
        mean: the expected count (> 0; 0 gives a point mass at 0).
        var: its variance; below ``mean`` it is taken as ``mean``.
    """
    if mean <= 0.0:
        return (1.0 if x <= 0 else 0.0), 1.0
    if var <= mean * (1.0 + 1e-9) or mean * mean / (var - mean) > 1e12:
        ge = 1.0 if x <= 0 else gammainc(float(x), mean)[0]
        return ge, gammainc(float(x + 1), mean)[1]
    r = mean * mean / (var - mean)
    p = mean / var  # the success probability of NB(r, p), failures counted
    ge = 1.0 if x <= 0 else betainc(float(x), r, 1.0 - p)[0]
    return ge, betainc(r, float(x + 1), p)[0]


# --------------------------------------------------------------------------------------
# The windows, indexed once.


@dataclass(frozen=True, slots=True)
class _Window:
    start: float
    end: float
    revision: str | None
    requests: int
    errors: int
    tcp_opened: int
    tcp_failed: int
    restarts: int
    total: int  # the histogram's count (+Inf bucket)
    #: cumulative counts at Istio's finite edges, read at those indices only (an array: no
    #: int object per count, as a tuple of counts above 256 would hold; the window's own,
    #: +Inf last, when its buckets are Istio's)
    cum: array[int]

    def tally(self, signal: str, edge: int) -> tuple[float, int, float]:
        """(start, count, exposure) of one signal: errors/requests, slow/requests at
        ``edge``, failed/opened connections, restarts/seconds."""
        if signal == "errors":
            return self.start, self.errors, float(self.requests)
        if signal in ("latency", "tail"):
            return self.start, self.total - self.cum[edge], float(self.total)
        if signal == "tcp":
            return self.start, self.tcp_failed, float(self.tcp_opened)
        return self.start, self.restarts, self.end - self.start


_NO_COUNTS = array("q", [0] * len(_FINITE_EDGES))  # shared: never written
_ISTIO_EDGES = tuple(map(float, ISTIO_BUCKETS_MS))


def _non_decreasing(counts: array[int]) -> bool:
    last = 0
    for c in counts:
        if c < last:
            return False
        last = c
    return True


def _cumulative(buckets: dict[float, int]) -> tuple[int, array[int]]:
    if not buckets:
        return 0, _NO_COUNTS
    cum, last = [], 0
    for edge in _FINITE_EDGES:
        last = max(last, buckets.get(edge, last))
        cum.append(last)
    total = buckets.get(float("inf"), max(buckets.values()))
    return max(total, last), array("q", cum)


@dataclass(frozen=True)
class TrafficIndex:
    """Windows by (subject, reporter), in time order; build once with :meth:`of`."""

    series: dict[tuple[str, str], tuple[_Window, ...]]

    @classmethod
    def of(cls, windows: Iterable[TrafficWindow]) -> TrafficIndex:
        by: dict[tuple[str, str], list[_Window]] = {}
        for w in windows:
            les, counts = w.bucket_counts()
            if les == _ISTIO_EDGES and _non_decreasing(counts):
                # Istio's own buckets, cumulative already: the window's counts serve as
                # they are (their last, +Inf, is the total; ``cum`` is read at the finite
                # edges only), not copied per window (issue 13: a 100-namespace wave's
                # look holds 44,000 windows, 10 MB of copies)
                total, cum = counts[-1], counts
            else:
                total, cum = _cumulative(w.buckets)
            by.setdefault((w.subject, w.reporter), []).append(_Window(
                w.start, w.end, w.revision, w.requests, w.errors, w.tcp_opened,
                w.tcp_failed, w.restarts, total, cum))
        return cls({k: tuple(sorted(v, key=lambda x: x.start)) for k, v in by.items()})

    @property
    def subjects(self) -> list[str]:
        return sorted({s for s, _ in self.series})

    def windows(self, subject: str, reporter: str, t0: float, t1: float,
                revision: str | None = None, not_revision: str | None = None
                ) -> list[_Window]:
        """The windows inside [t0, t1], optionally of one revision or of any but one."""
        out = []
        for w in self.series.get((subject, reporter), ()):
            if w.start < t0 - 1e-6 or w.end > t1 + 1e-6:
                continue
            if revision is not None and w.revision != revision:
                continue
            if not_revision is not None and (w.revision is None or w.revision == not_revision):
                continue
            out.append(w)
        return out


def is_gateway(subject: str) -> bool:
    return subject.startswith("gateway/")


# --------------------------------------------------------------------------------------
# Waves.


class CanaryWave(BaseModel):
    """Who is judged against whom, and when.

    ``canary``: the wave's namespaces (on ``canary_revision`` since the move);
    ``gateways``: ``gateway/…`` subjects of the canary revision, each judged against its
    stable counterpart (the same name with another ``-asm-1-NN`` suffix, or the same name on
    another revision) over the bake; ``control``: subjects on one revision throughout.
    Times in Unix s: the baseline is ``[baseline_from, baseline_until]`` (before the move),
    the bake starts at ``bake_started_at``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    canary: list[str]
    gateways: list[str] = Field(default_factory=list)
    control: list[str] = Field(default_factory=list)
    canary_revision: str
    baseline_from: float
    baseline_until: float
    bake_started_at: float


def find_waves(index: TrafficIndex, canary_revision: str, bake_s: float, interval_s: float,
               th: CanaryThresholds | None = None) -> list[CanaryWave]:
    """The waves in a replay: subjects whose first window on ``canary_revision`` starts in
    the same interval, after windows on another revision, moved together (a subject on
    the canary from its first window had moved before the replay begins). Gateways of
    the canary revision join every wave; the control of a wave is every other non-gateway
    subject whose windows over the baseline and the longest bake all carry one revision."""
    th = th or CanaryThresholds()
    moved: dict[str, float] = {}
    gateways: set[str] = set()
    for (subject, _), ws in index.series.items():
        first = next((w.start for w in ws if w.revision == canary_revision), None)
        if first is None:
            continue
        if is_gateway(subject):
            gateways.add(subject)
        elif any(w.revision not in (None, canary_revision) for w in ws if w.start < first):
            moved[subject] = min(first, moved.get(subject, first))  # it moved in the file
    groups: dict[int, list[str]] = {}
    for subject, at in moved.items():
        groups.setdefault(round(at / interval_s), []).append(subject)
    looks = _looks(bake_s, interval_s, th)[1]
    waves = []
    for key in sorted(groups):
        members = sorted(groups[key])
        at = min(moved[s] for s in members)
        t0, t1 = at - th.baseline_s, at + looks * interval_s
        control = []
        for subject in index.subjects:
            if subject in members or is_gateway(subject):
                continue
            revisions = {w.revision for r in REPORTERS for w in index.windows(subject, r, t0, t1)}
            if len(revisions) == 1 and None not in revisions:
                control.append(subject)
        waves.append(CanaryWave(canary=members, gateways=sorted(gateways), control=control,
                                canary_revision=canary_revision, baseline_from=t0,
                                baseline_until=at, bake_started_at=at))
    return waves


# --------------------------------------------------------------------------------------
# Evidence.

_Obs = list[tuple[float, int, float]]  # (start, count, exposure) per window


def _sum(obs: _Obs) -> tuple[int, float]:
    return sum(x for _, x, _ in obs), sum(n for _, _, n in obs)


def _count_var(obs: _Obs, rate: float, c2: float) -> float:
    """Variance of the count over these windows at ``rate``: Poisson plus the measured
    window-to-window dispersion ``c2`` (squared coefficient of variation of the rate)."""
    mu = [n * rate for _, _, n in obs]
    return sum(mu) + c2 * sum(m * m for m in mu)


def _dispersion(groups: Iterable[_Obs]) -> float:
    """Method-of-moments extra variance of the rate between windows, pooled over groups of
    windows that share one rate (a subject in one period): ``Var x_w = μ_w + c² μ_w²``."""
    resid = base = quad = 0.0
    for obs in groups:
        x, n = _sum(obs)
        if len(obs) < 2 or n <= 0:
            continue
        p = x / n
        for _, xw, nw in obs:
            mu, lev = nw * p, 1.0 - nw / n
            resid += (xw - mu) ** 2
            base += lev * mu
            quad += lev * mu * mu
    if quad <= 0:
        return 0.0
    return min(4.0, max(0.0, (resid - base) / quad))


def _median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def _robust_dispersion(groups: Iterable[_Obs], rate: float | None = None) -> float:
    """The window-to-window extra variance as the median window shows it: the median of
    ``((x − μ)² − μ) / μ²`` over every window, μ at the group's rate (or ``rate``). The
    moment estimator of :func:`_dispersion` is driven by its largest deviations, so storm
    windows would inflate the very spread they are measured against and hide themselves;
    storms and outliers are found with this one."""
    ratios = []
    for obs in groups:
        x, n = _sum(obs)
        if len(obs) < 2 or n <= 0:
            continue
        p = (x + 0.5) / n if rate is None else rate
        for _, xw, nw in obs:
            mu = nw * p
            if mu > 0:
                ratios.append(((xw - mu) ** 2 - mu) / (mu * mu))
    return min(4.0, max(0.0, _median(ratios))) if ratios else 0.0


def _storms(controls: list[tuple[_Obs, _Obs]], c2: float) -> set[float]:
    """The windows (starts) in which the control as a whole got sharply worse — a
    fleet-wide incident: its count, each subject at its own baseline rate, more than 5
    standard deviations (Poisson and the robust dispersion) and more than 50 % above that,
    and as rare as 5 standard deviations under that gamma–Poisson count
    (:func:`count_tails`)."""
    acc: dict[float, list[float]] = {}
    for before, after in controls:
        xb, nb = _sum(before)
        if nb <= 0:
            continue
        p = (xb + 0.5) / nb
        for start, x, n in before + after:
            a = acc.setdefault(start, [0.0, 0.0, 0.0])
            a[0] += x
            a[1] += n * p
            a[2] += (n * p) ** 2
    out = set()
    for start, (seen, e, e2) in acc.items():
        # worse only: a control far better than its baseline had an incident in the baseline
        # (its outliers are out of it), and nothing to leave out now
        if e > 0 and seen - e > 5 * math.sqrt(e + c2 * e2) and seen - e > 0.5 * e \
                and count_tails(round(seen), e, e + c2 * e2)[0] < _FIVE_SIGMA:
            # (the exact tail too: where a fraction of one is expected, as with restarts,
            # one count is far above 5 standard deviations yet happens once in a hundred)
            out.add(start)
    return out


def _storm_edges(storms: set[float], starts: Iterable[float]) -> set[float]:
    """The windows just before and after each storm that are not storms themselves (of
    ``starts``, the windows there are). Prometheus scrapes each target at its own offset
    within the scrape interval and ``increase()`` counts what happened between a target's
    samples inside the window, so an incident that starts or ends inside a window lands in
    it for the proxies scraped after that moment and in the next (or previous) one for the
    others: up to a scrape interval, half a window with Azure Monitor's 30 s scrapes and
    60 s windows. A canary can then show the incident's first or last moments in a window
    where the control, as a whole, shows nothing (seen end to end: a 5 % incident read as
    the canary's 0.6 %). The control leaves these windows out; each judged subject those
    of them in which it was worse than usual (:func:`_struck`)."""
    ordered = sorted(set(starts))
    steps = [b - a for a, b in zip(ordered, ordered[1:], strict=False) if b > a]
    if not storms or not steps:
        return set()
    step = min(steps)  # the window length: windows are aligned to it (workers.prom.windows)
    return {s + d for s in storms for d in (-step, step)} - storms


def _struck(obs: _Obs, edges: set[float], rate: float, c2: float) -> set[float]:
    """The windows next to a storm (``edges``) in which this subject's count was more than
    2 standard deviations (and one) above ``rate`` (its baseline's): it took in the
    incident's first or last moments there. One in which it was as usual is evidence like
    any other and is kept; one in which it was worse cannot be told from the storm. A
    regression shows in the other windows too: this leaves out at most two of its windows
    per storm."""
    out = set()
    for start, x, n in obs:
        if start in edges:
            mu = n * rate
            if x - mu > 2 * math.sqrt(mu + c2 * mu * mu) + 1:
                out.add(start)
    return out


def _outlying(obs: _Obs) -> set[float]:
    """The windows (starts) of one subject's baseline far outside the rest of it — an
    incident the control did not see (it had no windows then), a burst of its own: the
    count more than 8 robust standard deviations and more than twice away from the
    baseline's rate, fewer than half of its windows. A baseline should say what normal
    was; Kayenta likewise removes outliers before it compares (NetflixACAJudge's IQR
    filter). Needs 3 windows."""
    if len(obs) < 3:
        return set()
    x, n = _sum(obs)
    if n <= 0:
        return set()
    # the median window's rate: the outliers themselves must not set what normal is
    p = _median([xw / nw for _, xw, nw in obs if nw > 0])
    c2 = _robust_dispersion([obs], p)
    out = set()
    for start, xw, nw in obs:
        e = nw * p
        if abs(xw - e) > 8 * math.sqrt(e + c2 * e * e + 1) and abs(xw - e) > e + 1:
            out.add(start)
    return out if len(out) * 2 < len(obs) else set()  # a minority: else it is what is normal


def _baselines_without_outliers(tests: list[_Test]) -> None:
    """Leave out of every baseline (the canary's and the control's, per signal and
    reporter) its own outlying windows (:func:`_outlying`) and the baseline's storms: the
    windows that most of the subjects with a window then found outlying, at least two of
    them. A fleet-wide incident before the move is then out of a short baseline as well —
    a control that moved one wave earlier has only the windows since, and the incident
    can be half of them, too many to stand out there, enough to make normal look noisy."""
    keys = {(t.signal.signal, t.reporter) for t in tests if not t.gateway}
    for key in keys:
        same = [t for t in tests if (t.signal.signal, t.reporter) == key and not t.gateway]
        controls = next((t.controls for t in same if t.controls), [])
        bases = [t.base for t in same if t.base] + [before for before, _ in controls]
        odd = [_outlying(b) for b in bases]
        have: Counter[float] = Counter(start for b in bases for start, _, _ in b)
        flagged: Counter[float] = Counter(start for o in odd for start in o)
        storms = {s for s, f in flagged.items() if f >= 2 and 2 * f >= have[s]}

        own = {id(b): o for b, o in zip(bases, odd, strict=True)}

        def normal(base: _Obs, own: dict[int, set[float]] = own,
                   storms: set[float] = storms) -> _Obs:
            out = _calm(base, own[id(base)] | storms)
            # a baseline that was all storm has no normal in it: its own outliers only
            return out if len(out) >= 2 else _calm(base, own[id(base)])

        for t in same:
            if t.base:
                kept = normal(t.base)
                t.base, t.base_left_out = kept, len(t.base) - len(kept)
        calmed = [(normal(before), after) for before, after in controls]
        for t in same:
            if t.controls is controls:
                t.controls = calmed


def _calm(obs: _Obs, storms: set[float]) -> _Obs:
    return [o for o in obs if o[0] not in storms] if storms else obs


@dataclass(frozen=True)
class Weather:
    """The control's change over the same windows: its mean, the mean's variance, the
    between-subject variance ``tau2`` of the true change, and how many subjects.
    ``floor``: the mean's variance were the controls' counts since the move exact (their
    baselines' part alone), what a longer bake brings ``var`` down towards."""

    mean: float = 0.0
    var: float = 0.0
    tau2: float = 0.0
    subjects: int = 0
    floor: float = 0.0


def _informative(weather: Weather, sig: _Signal) -> bool:
    """Whether the weather is known within a quarter of the gap between the tolerated and
    the detected change (additive: points; relative: log growth)."""
    if not weather.subjects:
        return True
    gap = (sig.detect - sig.tolerance if sig.scale == "additive"
           else math.log((1 + sig.detect) / (1 + sig.tolerance)))
    return weather.var + weather.tau2 <= (gap / 4) ** 2


def _weather(changes: list[tuple[float, float, float]]) -> Weather:
    """Combine the control subjects' changes ``(d, variance, the variance's part from their
    baselines)``: the inverse-variance mean, and the spread of the true changes beyond
    their sampling variance, estimated robustly (the median absolute deviation of the
    standardized changes, so one subject's burst of its own does not read as fleet-wide
    disagreement; DerSimonian and Laird's moment estimator is driven by the largest
    deviation). Fewer than 3 subjects: no spread. Its ``floor``: the mean's variance from
    the baselines' parts alone (with the same spread)."""
    if not changes:
        return Weather()
    w = [1.0 / max(v, 1e-18) for _, v, _ in changes]
    mean = sum(wi * d for wi, (d, _, _) in zip(w, changes, strict=True)) / sum(w)
    tau2 = 0.0
    if len(changes) >= 3:
        z = sorted((d - mean) / math.sqrt(max(v, 1e-18)) for d, v, _ in changes)
        mid = z[len(z) // 2] if len(z) % 2 else (z[len(z) // 2 - 1] + z[len(z) // 2]) / 2
        dev = sorted(abs(v - mid) for v in z)
        mad = dev[len(dev) // 2] if len(dev) % 2 else (dev[len(dev) // 2 - 1]
                                                          + dev[len(dev) // 2]) / 2
        scale2 = (1.4826 * mad) ** 2
        typical = sorted(v for _, v, _ in changes)[len(changes) // 2]
        tau2 = max(0.0, scale2 - 1.0) * typical
    ws = [1.0 / (v + tau2) for _, v, _ in changes]
    mean = sum(wi * d for wi, (d, _, _) in zip(ws, changes, strict=True)) / sum(ws)
    floor = 1.0 / sum(1.0 / max(fixed + tau2, 1e-18) for _, _, fixed in changes)
    return Weather(mean, 1.0 / sum(ws), tau2, len(changes), min(floor, 1.0 / sum(ws)))


def _edge(obs_windows: list[_Window], target: float) -> int | None:
    """The finite bucket edge whose slow fraction in these windows is closest to
    ``target`` (in log ratio), among fractions in [0.05 %, 20 %]."""
    total = sum(w.total for w in obs_windows)
    if total <= 0:
        return None
    best, score = None, math.inf
    for i in range(len(_FINITE_EDGES)):
        frac = (total - sum(w.cum[i] for w in obs_windows)) / total
        if 0.0005 <= frac <= 0.2:
            s = abs(math.log(frac / target))
            if s < score:
                best, score = i, s
    if best is None:  # all fractions outside: the edge just above the bulk
        for i in range(len(_FINITE_EDGES)):
            if (total - sum(w.cum[i] for w in obs_windows)) / total < 0.0005:
                return i
    return best


# --------------------------------------------------------------------------------------
# Checks and judgements.


class Tally(BaseModel):
    """A count over an exposure (requests, connections or seconds)."""

    model_config = ConfigDict(frozen=True)

    count: int
    exposure: float


class SignalCheck(BaseModel):
    """One signal of one subject at one look: both sides' numbers, the test, the status.

    Rates (``observed``, ``expected``, ``tolerated``, ``detect``) are fractions (of
    requests or connections) or restarts per second; ``unit`` is how they are shown
    (``%``: × 100, ``/h``: × 3600), as :meth:`to_check` records them.
    ``p_regressed``: P(a count this high | the canary within tolerance);
    ``p_ruled_out``: P(a count this low | a regression of the detection size).
    ``status``: regressed | ok (a regression of the detection size ruled out) |
    undecided | thin (no data on one side). ``seen`` / ``needed``: the exposure in the
    bake so far and what telling tolerance from detection takes (None: not reachable
    with this baseline; 0: not computed).
    """

    model_config = ConfigDict(frozen=True)

    subject: str
    signal: str
    reporter: str
    label: str
    unit: str
    edge_ms: float | None = None
    canary_before: Tally | None = None
    canary_now: Tally
    control_before: Tally | None = None
    control_now: Tally | None = None
    compared_with: str  # "baseline+weather (N subjects)", "stable gateway …", "baseline"
    observed: float | None
    expected: float | None
    tolerated: float | None
    detect: float | None
    p_regressed: float
    p_ruled_out: float
    confidence: float
    status: str
    blocking: bool
    seen: float
    windows: int = 0  # the canary's windows since the bake began (one more each look)
    #: the subject's exposure a window before the move (its baseline's mean; None: no
    #: baseline, or a gateway, whose reference is another deployment's)
    base_per_window: float | None = None
    needed: float | None = 0.0
    left_out: int = 0  # windows since the move left out as fleet-wide weather (storms)
    gating: bool = True  # a regression fails the wave (source-side latency: reported only)
    #: its reference narrows with each look (a gateway's stable counterpart, the weather of
    #: the control since the move), so ``needed``, where the tests meet at worst, is worth
    #: the whole extension
    narrows: bool = False
    text: str

    def to_check(self) -> Check:
        """The :class:`~workflows.model.Check` a run records (value ≤ tolerated, in ``unit``)."""
        metric = f"{self.signal}:{self.reporter}" + (
            f">{self.edge_ms:g}ms" if self.edge_ms is not None else "")
        factor = 3600.0 if self.unit == "/h" else 100.0

        def shown(rate: float | None) -> float | None:
            return None if rate is None else round(rate * factor, 6)

        return Check(namespace=self.subject, metric=metric, value=shown(self.observed),
                     threshold=shown(self.tolerated) or 0.0, op="<=",
                     ok=self.status != "regressed", expected=shown(self.expected),
                     control=shown(_rate(self.control_now)),
                     unit=self.unit, status=self.status,
                     confidence=round(self.confidence, 6))



@dataclass(frozen=True)
class CanaryJudgement:
    """One look at a wave: ``verdict`` None means keep baking and look again after
    ``after_s`` seconds (at the bake's next multiple of the interval: a late look does not
    delay the next); ``sample`` is what to record (the evidence's state now: FAIL,
    PASS, or INCONCLUSIVE while undecided), with :class:`Check` records and the reason."""

    verdict: Verdict | None
    after_s: float
    sample: GateSample
    checks: tuple[SignalCheck, ...]
    look: int
    bake_looks: int
    max_looks: int
    reason: str


def _looks(bake_s: float, interval_s: float, th: CanaryThresholds) -> tuple[int, int]:
    bake = max(1, math.ceil(bake_s / interval_s - 1e-9))
    return bake, bake + math.ceil(bake * th.max_extension - 1e-9)


def pass_looks(bake_looks: int, max_looks: int) -> tuple[int, ...]:
    """The looks at which a wave may PASS: the bake's end, half-way through the extension
    and its end (fewer looks, less of the ``missed`` budget spent per look)."""
    return tuple(sorted({bake_looks, (bake_looks + max_looks) // 2, max_looks}))


@dataclass(frozen=True)
class _Signal:
    signal: str
    scale: str  # additive | relative
    unit_factor: float  # rate → display unit
    unit: str
    tolerance: float  # additive: rate; relative: growth
    detect: float
    floors: tuple[float, float]  # relative: rates added to tolerated / detect


def _specs(th: CanaryThresholds) -> dict[str, _Signal]:
    fl = (th.latency_floor_pts[0] / 100, th.latency_floor_pts[1] / 100)
    return {
        "errors": _Signal("errors", "additive", 100.0, "%", th.error_tolerance_pts / 100,
                          th.error_detect_pts / 100, (0.0, 0.0)),
        "latency": _Signal("latency", "relative", 100.0, "%", th.latency_tolerance,
                           th.latency_detect, fl),
        "tail": _Signal("tail", "relative", 100.0, "%", th.latency_tolerance,
                        th.tail_detect, fl),
        "tcp": _Signal("tcp", "additive", 100.0, "%", th.tcp_tolerance_pts / 100,
                       th.tcp_detect_pts / 100, (0.0, 0.0)),
        "restarts": _Signal("restarts", "additive", 3600.0, "/h",
                            th.restart_tolerance_per_h / 3600,
                            th.restart_detect_per_h / 3600, (0.0, 0.0)),
    }


_LABELS = {"errors": "5xx and gRPC errors", "tcp": "TCP connection failures",
           "restarts": "container restarts"}


@dataclass
class _Test:
    subject: str
    signal: _Signal
    reporter: str
    edge: int | None
    cur: _Obs
    base: _Obs | None  # own baseline (namespaces) or the stable counterpart (gateways)
    controls: list[tuple[_Obs, _Obs]]  # (before, now) per control subject
    gateway: bool
    blocking: bool
    left_out: int = 0  # the canary's windows since the move left out as storms
    base_left_out: int = 0  # outlying windows of its own baseline left out
    gating: bool = True  # a regression fails the wave (else it is reported only)
    fresh: bool = False  # no history before the move: errors judged against zero


def _reporter_for_restarts(index: TrafficIndex, subject: str) -> str:
    return "destination" if (subject, "destination") in index.series else "source"


def _gateway_reference(index: TrafficIndex, gateway: str) -> list[str]:
    base = _GATEWAY_REVISION.sub("", gateway)
    return [s for s in index.subjects
            if is_gateway(s) and _GATEWAY_REVISION.sub("", s) == base]


def _edges(windows: list[_Window], th: CanaryThresholds) -> dict[str, int]:
    """The latency edges of a subject from windows of its own (its baseline): ``latency``
    the edge nearest ``tail_target``, ``tail`` the next edge up when requests reach it."""
    e1 = _edge(windows, th.tail_target)
    if e1 is None:
        return {}
    out = {"latency": e1}
    total = sum(w.total for w in windows)
    if e1 + 1 < len(_FINITE_EDGES) and total > 0:
        frac = (total - sum(w.cum[e1 + 1] for w in windows)) / total
        if frac >= 0.0002:
            out["tail"] = e1 + 1
    return out


def _collect(index: TrafficIndex, wave: CanaryWave, now: float, th: CanaryThresholds
             ) -> list[_Test]:
    """Every test of the look: per canary subject, reporter and signal, with the control's
    windows; per canary gateway, against its stable counterpart."""
    specs = _specs(th)
    rev = wave.canary_revision
    b0, b1, c0 = wave.baseline_from, wave.baseline_until, wave.bake_started_at
    tests: list[_Test] = []
    controls: dict[tuple[str, str], list[tuple[_Obs, _Obs]]] = {}
    for k in wave.control:
        for r in (*REPORTERS, "pods"):
            rep = _reporter_for_restarts(index, k) if r == "pods" else r
            before, after = index.windows(k, rep, b0, b1), index.windows(k, rep, c0, now)
            if not before or not after:
                continue
            control_edges = {"restarts": 0} if r == "pods" else {
                "errors": 0, "tcp": 0, **_edges(before, th)}
            for signal, edge in control_edges.items():
                # outliers of its baseline are left out with the canary's (judge_canary)
                controls.setdefault((signal, r), []).append((
                    [w.tally(signal, edge) for w in before],
                    [w.tally(signal, edge) for w in after]))

    for subject in wave.canary:
        cur_by = {r: index.windows(subject, r, c0, now, revision=rev) for r in REPORTERS}
        base_by = {r: index.windows(subject, r, b0, b1, not_revision=rev) for r in REPORTERS}
        volume = {r: sum(w.requests for w in cur_by[r] + base_by[r]) for r in REPORTERS}
        top = max(volume.values())
        # no window before the move on any reporter: the namespace was not in the mesh
        # (first injected), so Istio has no history of it to compare with
        fresh = not any(base_by.values())
        for r in REPORTERS:
            cur, base = cur_by[r], base_by[r]
            if volume[r] == 0 and not any(w.tcp_opened for w in cur + base):
                continue
            material = top > 0 and volume[r] >= th.material_share * top
            edges: dict[str, int | None] = {"errors": None}
            if any(w.tcp_opened for w in cur + base):
                edges["tcp"] = None
            found = _edges(base, th)
            if found:
                edges.update(found)
            elif any(w.total for w in cur):
                edges["latency"] = None  # latency now, none before: thin
            for signal, c_edge in edges.items():
                thin = c_edge is None and signal == "latency"
                tests.append(_Test(
                    subject, specs[signal], r, c_edge,
                    [w.tally(signal, c_edge or 0) for w in cur],
                    [] if thin else [w.tally(signal, c_edge or 0) for w in base],
                    controls.get((signal, r), []), False,
                    material and (signal == "errors" or (
                        signal in ("latency", "tail") and r == "destination" and not fresh)),
                    # a namespace's outbound latency is its callees' (other namespaces'
                    # included): reported, never failing the wave on its own
                    gating=not (signal in ("latency", "tail") and r == "source"),
                    fresh=fresh))
        rr = _reporter_for_restarts(index, subject)
        cur = index.windows(subject, rr, c0, now, revision=rev)
        base = index.windows(subject, rr, b0, b1, not_revision=rev)
        if cur or base:
            tests.append(_Test(subject, specs["restarts"], "pods", None,
                               [w.tally("restarts", 0) for w in cur],
                               [w.tally("restarts", 0) for w in base],
                               controls.get(("restarts", "pods"), []), False, False))

    for gw in wave.gateways:
        refs = _gateway_reference(index, gw)
        for r in REPORTERS:
            cur = index.windows(gw, r, c0, now, revision=rev)
            if not cur:
                continue
            ref = [w for s in refs for w in index.windows(s, r, c0, now, not_revision=rev)]
            gw_edges: dict[str, int | None] = {"errors": None, **_edges(ref or cur, th)}
            if any(w.tcp_opened for w in cur + ref):
                gw_edges["tcp"] = None
            for signal, g_edge in gw_edges.items():
                tests.append(_Test(gw, specs[signal], r, g_edge,
                                   [w.tally(signal, g_edge or 0) for w in cur],
                                   [w.tally(signal, g_edge or 0) for w in ref], [], True,
                                   signal in ("errors", "latency")))
    return tests


@dataclass(frozen=True)
class _Prediction:
    rates: list[float]  # the expected rate of each of the canary's windows now
    rate: float  # their exposure-weighted mean
    var: float  # the variance of the expected rate (baseline, control, between subjects)
    how: str
    #: ``var`` were the control's counts since the move exact: what a longer bake brings it
    #: down towards, as the control's windows since the move grow with it (None: no part
    #: of ``var`` falls with the bake, or, a gateway's, all of it)
    floor: float | None = None


def _per_window(pairs: list[tuple[_Obs, _Obs]], scale: str) -> dict[float, float]:
    """The control's change in each window since the move, every control subject against
    its own baseline: additive ``(Σ x − Σ n·p_base) / Σ n``, relative
    ``(Σ x + ½) / (Σ n·p_base + ½)`` (so one subject's burst of traffic does not read as a
    change of rate: no Simpson's paradox)."""
    acc: dict[float, list[float]] = {}
    for before, after in pairs:
        xb, nb = _sum(before)
        if nb <= 0:
            continue
        p = xb / nb
        for start, x, n in after:
            a = acc.setdefault(start, [0.0, 0.0, 0.0])
            a[0] += x
            a[1] += n * p
            a[2] += n
    if scale == "additive":
        return {s: (x - e) / n for s, (x, e, n) in acc.items() if n > 0}
    return {s: (x + 0.5) / (e + 0.5) for s, (x, e, n) in acc.items() if n > 0}


def _predict(test: _Test, c2: float, weather: Weather) -> _Prediction | None:
    """The canary's expected rate in each window since the move and the variance of the
    expectation, or None without a baseline (or stable counterpart)."""
    base = test.base or []
    xb, nb = _sum(base)
    x, n = _sum(test.cur)
    sig = test.signal
    if test.fresh and n > 0 and sig.scale == "additive":
        # nothing to compare with: the rate the detection size is measured from is zero
        # (0.05 points of errors tolerated, 0.5 must be ruled out), as an absolute gate
        return _Prediction([0.0] * len(test.cur), 0.0, 0.0,
                           "no history before the move (not in the mesh): against zero")
    if nb <= 0 or n <= 0:
        return None
    if test.gateway:
        by: dict[float, list[float]] = {}
        for start, xs, ns in base:
            a = by.setdefault(start, [0.0, 0.0])
            a[0] += xs
            a[1] += ns
        rates, var = [], 0.0
        for start, _, nc in test.cur:
            xr, nr = by.get(start, (float(xb), nb))
            r = xr / nr if nr > 0 else xb / nb
            rates.append(r)
            var += nc * nc * ((xr + 0.5) / nr ** 2 + c2 * ((xr + 0.5) / nr) ** 2)
        rate = sum(r * nc for r, (_, _, nc) in zip(rates, test.cur, strict=True)) / n
        return _Prediction(rates, rate, var / (n * n),
                           "the stable revision's gateway in the same windows")
    how = (f"own baseline and the weather of {weather.subjects} subjects" if weather.subjects
           else "own baseline (no control subjects)")
    change = _per_window(test.controls, sig.scale)
    if sig.scale == "additive":
        p = xb / nb
        rates = [max(0.0, p + change.get(start, 0.0)) for start, _, _ in test.cur]
        own = _count_var(base, (xb + 0.5) / nb, c2) / nb ** 2
        var, floor = own + weather.var + weather.tau2, own + weather.floor + weather.tau2
    else:
        q = (xb + 0.5) / (nb + 0.5)
        rates = [q * change.get(start, 1.0) for start, _, _ in test.cur]
        var_log = _count_var(base, q, c2) / (xb + 0.5) ** 2
    rate = sum(r * nc for r, (_, _, nc) in zip(rates, test.cur, strict=True)) / n
    if sig.scale != "additive":
        var = rate * rate * (var_log + weather.var + weather.tau2)
        floor = rate * rate * (var_log + weather.floor + weather.tau2)
    return _Prediction(rates, rate, var, how, floor)


def _limits(sig: _Signal, rate: float, var: float) -> tuple[float, float, float, float]:
    """(tolerated rate, its variance, detect rate, its variance). An additive rate's
    standard deviation is kept within the rate itself: near zero events the controls'
    sparse counts give a spread larger than the mean, and a moment-matched gamma of shape
    below 1 would then make any count look ordinary."""
    if sig.scale == "additive":
        r0, r1 = rate + sig.tolerance, rate + sig.detect
        return r0, min(var, r0 * r0), r1, min(var, r1 * r1)
    g0, g1 = 1.0 + sig.tolerance, 1.0 + sig.detect
    return (rate * g0 + sig.floors[0], var * g0 * g0, rate * g1 + sig.floors[1],
            var * g1 * g1)


def _tails(sig: _Signal, obs: _Obs, rates: list[float], var: float, c2: float
           ) -> tuple[float, float]:
    """(P(count ≥ observed | tolerated), P(count ≤ observed | detection size)) over these
    windows, each window at its own expected rate."""
    x, n = _sum(obs)
    mu0 = [nw * _limits(sig, r, var)[0] for (_, _, nw), r in zip(obs, rates, strict=True)]
    mu1 = [nw * _limits(sig, r, var)[2] for (_, _, nw), r in zip(obs, rates, strict=True)]
    rate = sum(r * nw for (_, _, nw), r in zip(obs, rates, strict=True)) / n if n else 0.0
    _, v0, _, v1 = _limits(sig, rate, var)
    m0, m1 = sum(mu0), sum(mu1)
    p_reg = count_tails(x, m0, m0 + c2 * sum(m * m for m in mu0) + n * n * v0)[0]
    p_ok = count_tails(x, m1, m1 + c2 * sum(m * m for m in mu1) + n * n * v1)[1]
    return p_reg, p_ok


def _needed(r0: float, v0: float, r1: float, v1: float, c2: float, per_window: float,
            za: float, zb: float, shrink: Callable[[float], float] | None = None,
            floors: tuple[float, float] = (0.0, 0.0)) -> float | None:
    """The exposure at which the two one-sided tests' critical regions meet (normal
    approximation), or None when what does not fall with the bake keeps them apart.

    ``shrink``: when the reference grows with the bake, the share of the variances ``v0``,
    ``v1`` above their ``floors`` left once the canary's exposure is ``n`` (≤ 1, falling
    towards 0). All of them for a gateway's stable counterpart, read over the same windows:
    a longer bake always gets there. Above the floors for a namespace compared with its
    baseline and the weather of the control: the control's windows since the move grow
    with the bake, its baselines do not. None: a fixed reference (a baseline alone, read
    before the move), ``floors`` unused."""
    if r1 <= r0:
        return None
    f0, f1 = (v0, v1) if shrink is None else (min(floors[0], v0), min(floors[1], v1))
    if (r1 - r0) <= za * math.sqrt(f0) + zb * math.sqrt(f1):
        return None

    def gap(n: float) -> float:
        left = 1.0 if shrink is None else min(1.0, max(0.0, shrink(n)))
        s0 = n * r0 + c2 * r0 * r0 * n * per_window + n * n * (f0 + (v0 - f0) * left)
        s1 = n * r1 + c2 * r1 * r1 * n * per_window + n * n * (f1 + (v1 - f1) * left)
        return n * (r1 - r0) - za * math.sqrt(s0) - zb * math.sqrt(s1)

    lo, hi = 0.0, 1.0
    while gap(hi) < 0:
        lo, hi = hi, hi * 2
        if hi > 1e15:
            return None
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gap(mid) < 0 else (lo, mid)
    return hi


#: the tests of one namespace in a wave, about: errors, the ~1 % latency edge and the next
#: edge up of both reporters, and restarts
TESTS_PER_NAMESPACE = 7


def requests_to_decide(error_rate: float, wave_size: int, bake_s: float, interval_s: float,
                       th: CanaryThresholds | None = None) -> float | None:
    """About how many requests a namespace must serve since the move for the gate to tell
    its errors apart — ruled out a rise of the detection size (``error_detect_pts``), or
    found one — by the last look of the longest bake, at ``error_rate`` (a fraction) before
    the move: where the two one-sided tests meet (:func:`_needed`) with the gate's per-test
    error budgets for a wave of ``wave_size`` namespaces, Poisson counts and a known
    baseline. A lower bound (no weather, no overdispersion): the plan's warning on low
    traffic; the gate's own figure, per look, is in its undecided lines. None when no
    exposure is enough."""
    th = th or CanaryThresholds()
    bake_looks, max_looks = _looks(bake_s, interval_s, th)
    alpha = th.false_rollback / (TESTS_PER_NAMESPACE * max(1, wave_size) * max_looks)
    beta = th.missed / len(pass_looks(bake_looks, max_looks))
    r0, v0, r1, v1 = _limits(_specs(th)["errors"], max(0.0, error_rate), 0.0)
    return _needed(r0, v0, r1, v1, 0.0, 1.0, _NORMAL.inv_cdf(1 - alpha),
                   _NORMAL.inv_cdf(1 - beta))


def undecidable_baselines(traffic: Iterable[TrafficWindow], namespaces: list[str],
                          canary_revision: str, baseline_from: float, now: float,
                          bake_s: float, interval_s: float,
                          th: CanaryThresholds | None = None) -> dict[str, str]:
    """The namespaces whose baseline (their windows from ``baseline_from`` to ``now``, Unix
    s) is too thin for the longest bake to decide one of their blocking signals, and which:
    were the wave to move now and its traffic go on as before, the gate's two tests could
    not meet by the last look — the baseline's own sampling noise keeps the tolerated and
    the detected rate apart (:func:`_needed` is None), or they meet beyond the requests the
    longest bake brings at the baseline's pace where a baseline known exactly would bring
    them within it — and the wave would end INCONCLUSIVE. (Beyond reach either way is low
    traffic: the plan warns of it, and waiting would not change it.) The same tests,
    edges and outlier filter as :func:`judge_canary` without a control, each with the
    dispersion of its own baseline, the error budget split over the namespaces' tests
    (a bake adds its gateways': the gate's own is a little stricter).
    ``{namespace: "slower than 250 ms"}``; empty when all can decide.

    A young Prometheus (a new cluster, the sandbox) holds minutes of a namespace's rare
    slow requests; the wave's baseline step waits for more while this is not empty."""
    th = th or CanaryThresholds()
    index = TrafficIndex.of(traffic)
    wave = CanaryWave(canary=list(namespaces), gateways=[], control=[],
                      canary_revision=canary_revision, baseline_from=baseline_from,
                      baseline_until=now, bake_started_at=now)
    every = _collect(index, wave, now, th)
    _baselines_without_outliers(every)
    tests = [t for t in every if t.blocking and not t.fresh]
    bake_looks, max_looks = _looks(bake_s, interval_s, th)
    m = max(1, len(every))  # the look's error budget is split over every test, as there
    za = _NORMAL.inv_cdf(1 - th.false_rollback / (m * max_looks))
    zb = _NORMAL.inv_cdf(1 - th.missed / len(pass_looks(bake_looks, max_looks)))
    out: dict[str, str] = {}
    for t in tests:
        if not t.base or t.subject in out:
            continue
        c2 = _dispersion([t.base])
        # a bake whose traffic is the baseline's, to ask the prediction what it would be
        predicted = _predict(replace(t, cur=t.base), c2, Weather())
        if predicted is None:
            continue
        r0, v0, r1, v1 = _limits(t.signal, predicted.rate, predicted.var)
        _, nb = _sum(t.base)
        per_window = nb / len(t.base)
        needed = _needed(r0, v0, r1, v1, c2, per_window, za, zb)
        # beyond what the longest bake brings at the baseline's pace (a window a look, as
        # the gate reckons when it decides whether to extend, :func:`_decide`), and only
        # for want of baseline: with the rate known exactly it would be within reach (else
        # it is low traffic, which waiting does not change)
        reach = max_looks * per_window
        exact = _needed(*_limits(t.signal, predicted.rate, 0.0), c2, per_window, za, zb)
        if needed is None or needed > reach and exact is not None and exact <= reach:
            out[t.subject] = _label(t)
    return out


def _fmt_rate(sig: _Signal, rate: float | None) -> str:
    if rate is None:
        return "—"
    v = rate * sig.unit_factor
    if sig.unit == "/h":
        return f"{v:.1f}/h"
    return f"{v:.3f}%" if v < 1 else f"{v:.2f}%"


def _exposure_word(signal: str) -> str:
    return {"errors": "requests", "latency": "requests", "tail": "requests",
            "tcp": "connections"}.get(
        signal, "s")


def _label(test: _Test) -> str:
    if test.signal.signal in ("latency", "tail"):
        return (f"slower than {_FINITE_EDGES[test.edge]:g} ms" if test.edge is not None
                else "latency")
    return _LABELS[test.signal.signal]


def judge_canary(traffic: TrafficIndex | Iterable[TrafficWindow], wave: CanaryWave,
                 now: float, bake_s: float, interval_s: float,
                 th: CanaryThresholds | None = None) -> CanaryJudgement:
    """Judge a wave at one look: everything seen from the bake's start up to ``now``.

    Args:
        traffic: the windows (or their :class:`TrafficIndex`): the wave's subjects before
            and since the move, the control's over the same time, the gateways'.
        wave: who is compared with whom (:class:`CanaryWave`).
        now: the time of the look (Unix s); windows ending later are not used.
        bake_s: the bake time (s); PASS is never given before it has passed.
        interval_s: the time between looks (s).
        th: the gate's parameters.
    Returns:
        A :class:`CanaryJudgement`: FAIL, PASS, INCONCLUSIVE (a person decides), or None
        with ``after_s`` to look again; every signal's :class:`SignalCheck`.
    """
    th = th or CanaryThresholds()
    specs = _specs(th)
    index = traffic if isinstance(traffic, TrafficIndex) else TrafficIndex.of(traffic)
    bake_looks, max_looks = _looks(bake_s, interval_s, th)
    look = max(0, math.floor((now - wave.bake_started_at) / interval_s + 1e-6))
    tests = _collect(index, wave, now, th)
    _baselines_without_outliers(tests)

    # per (signal, reporter): dispersion from every window but the canary's since the
    # move, storm windows (left out on every side), dispersion again without them, weather.
    # The next edge up takes the storms and the weather of the ~1 % edge (ten times the
    # slow requests; a fleet-wide slowdown moves both).
    keys = sorted({(t.signal.signal, t.reporter) for t in tests}, key=lambda k: k[0] == "tail")
    c2: dict[tuple[str, str], float] = {}
    storms: dict[tuple[str, str], set[float]] = {}
    edges: dict[tuple[str, str], set[float]] = {}
    weather: dict[tuple[str, str], Weather] = {}
    controls_of: dict[tuple[str, str], list[tuple[_Obs, _Obs]]] = {}
    for key in keys:
        same = [t for t in tests if (t.signal.signal, t.reporter) == key]
        controls = next((t.controls for t in same if t.controls), [])
        bases = [t.base for t in same if t.base and not t.gateway]

        def groups(calm: set[float], controls: list[tuple[_Obs, _Obs]] = controls,
                   bases: list[_Obs] = bases) -> list[_Obs]:
            out = [_calm(o, calm) for pair in controls for o in pair]
            return out + [_calm(b, calm) for b in bases]

        rough = _robust_dispersion(groups(set()))
        edge_key = ("latency", key[1])
        if key[0] == "tail" and edge_key in weather:
            storms[key], weather[key] = storms[edge_key], weather[edge_key]
            edges[key], controls_of[key] = edges[edge_key], controls_of[edge_key]
            c2[key] = _dispersion(groups(storms[key] | edges[key]))
            continue
        storms[key] = _storms(controls, rough)
        edges[key] = _storm_edges(storms[key], (o[0] for pair in controls for side in pair
                                                for o in side))
        out = storms[key] | edges[key]
        c2[key] = _dispersion(groups(out))
        controls_of[key] = [(_calm(b, out), _calm(a, out)) for b, a in controls]
        changes = []
        for before, after in controls_of[key]:
            (xb, nb), (xc, nc) = _sum(before), _sum(after)
            if nb <= 0 or nc <= 0:
                continue
            pooled = (xb + xc + 0.5) / (nb + nc)  # the subject's rate, no change assumed
            vb, vc = _count_var(before, pooled, c2[key]), _count_var(after, pooled, c2[key])
            if key[0] == "latency":
                d = math.log((xc + 0.5) / (nc + 0.5)) - math.log((xb + 0.5) / (nb + 0.5))
                mu_b, mu_c = max(nb * pooled, 0.5), max(nc * pooled, 0.5)
                changes.append((d, vb / mu_b ** 2 + vc / mu_c ** 2, vb / mu_b ** 2))
            else:
                changes.append((xc / nc - xb / nb, vb / nb ** 2 + vc / nc ** 2, vb / nb ** 2))
        weather[key] = _weather(changes)
        if not _informative(weather[key], specs[key[0]]):
            # a control too thin to measure the weather within a quarter of what separates
            # tolerance from detection would only blur the canary's own comparison: the
            # subject is judged on its own baseline, as without a control
            weather[key], controls_of[key] = Weather(), []
    for t in tests:
        key = (t.signal.signal, t.reporter)
        calm = storms[key]
        if calm:
            # a gateway, too: both revisions' gateways see a fleet-wide incident alike, so
            # its windows say nothing of the canary's and, far noisier, would only leave
            # the comparison undecided
            xb, nb = _sum(_calm(t.base, calm | edges[key])) if t.base else (0, 0.0)
            rate = (xb + 0.5) / nb if nb > 0 else 0.0
            calm = calm | _struck(t.cur + (t.base or []), edges[key], rate, c2[key])
            t.left_out = sum(1 for o in t.cur if o[0] in calm)
            t.cur = _calm(t.cur, calm)
            t.base = _calm(t.base, calm) if t.base else t.base
        if not t.gateway:
            t.controls = controls_of[key]

    m = max(1, len(tests))
    alpha = th.false_rollback / (m * max_looks)
    beta = th.missed / len(pass_looks(bake_looks, max_looks))
    za, zb = _NORMAL.inv_cdf(1 - alpha), _NORMAL.inv_cdf(1 - beta)
    checks = [_check(t, c2[(t.signal.signal, t.reporter)],
                     weather.get((t.signal.signal, t.reporter), Weather()),
                     alpha, beta, za, zb, max(look, 1)) for t in tests]
    return _decide(checks, wave, now, look, bake_looks, max_looks, interval_s)


def _tally(obs: list[_Obs]) -> Tally | None:
    if not obs:
        return None
    return Tally(count=sum(_sum(o)[0] for o in obs), exposure=sum(_sum(o)[1] for o in obs))


def _check(t: _Test, c2: float, weather: Weather, alpha: float, beta: float, za: float,
           zb: float, look: int) -> SignalCheck:
    sig, f = t.signal, _fmt_rate
    x, n = _sum(t.cur)
    label = _label(t)
    before = _tally([t.base]) if t.base else None
    own_edge = sig.signal != "tail"  # the tail's control counts are of the ~1 % edge
    control_before = _tally([o for o, _ in t.controls]) if own_edge else None
    control_now = _tally([o for _, o in t.controls]) if own_edge else None
    unit_word = _exposure_word(sig.signal)
    where = f"{t.subject} {label} ({t.reporter})"

    def make(status: str, text: str, *, compared_with: str = "", expected: float | None = None,
             tolerated: float | None = None, detect: float | None = None,
             p_regressed: float = 1.0, p_ruled_out: float = 1.0, confidence: float = 0.0,
             needed: float | None = 0.0, narrows: bool = False) -> SignalCheck:
        return SignalCheck(
            subject=t.subject, signal=sig.signal, reporter=t.reporter, label=label,
            unit=sig.unit, edge_ms=_FINITE_EDGES[t.edge] if t.edge is not None else None,
            canary_before=before, canary_now=Tally(count=x, exposure=n),
            control_before=control_before, control_now=control_now,
            compared_with=compared_with, observed=x / n if n > 0 else None,
            expected=expected, tolerated=tolerated, detect=detect, p_regressed=p_regressed,
            p_ruled_out=p_ruled_out, confidence=confidence, status=status,
            blocking=t.blocking, seen=n, windows=len(t.cur), needed=needed,
            base_per_window=(_sum(t.base)[1] / len(t.base) if t.base and not t.gateway
                             else None),
            left_out=t.left_out, gating=t.gating, narrows=narrows, text=text)

    predicted = _predict(t, c2, weather)
    if predicted is None:
        if n <= 0 and t.left_out:
            why = (f"all {t.left_out} windows since the move were fleet-wide weather (the "
                   "control moved as much), left out; waiting for calm ones")
        elif n <= 0:
            why = f"no {unit_word} since the move"
        else:
            why = ("no stable counterpart to compare with" if t.gateway
                   else "no history before the move (not in the mesh before)" if t.fresh
                   else "no baseline before the move")
        return make("thin", f"{where}: {why}", needed=None)
    rate, var, how = predicted.rate, predicted.var, predicted.how
    r0, v0, r1, v1 = _limits(sig, rate, var)
    p_reg, p_ok = _tails(sig, t.cur, predicted.rates, var, c2)
    if p_reg <= alpha and len(t.cur) > 1:
        # a regression must not rest on one window (a burst of the subject's own traffic)
        worst = max(range(len(t.cur)), key=lambda i: t.cur[i][1] - t.cur[i][2] * _limits(
            sig, predicted.rates[i], var)[0])
        rest = [o for i, o in enumerate(t.cur) if i != worst]
        rest_rates = [r for i, r in enumerate(predicted.rates) if i != worst]
        p_reg = max(p_reg, _tails(sig, rest, rest_rates, var, c2)[0])
    elif p_reg <= alpha:
        p_reg = max(p_reg, alpha * 1.0001)  # one window is never enough
    sides = (f"stable gateway {f(sig, _rate(before))}" if t.gateway
             else f"before {f(sig, _rate(before))}")
    if t.controls and own_edge:
        sides += (f"; control {f(sig, _rate(control_before))} → {f(sig, _rate(control_now))}"
                  f" in {len(t.controls)}")
    elif t.controls:
        base_q = (_sum(t.base)[0] + 0.5) / (_sum(t.base)[1] + 0.5) if t.base else 0.0
        sides += (f"; weather ×{rate / base_q:.2f} from the ~1% edge of {len(t.controls)}"
                  if base_q > 0 else "")
    if t.left_out:
        sides += f"; {t.left_out} windows of fleet-wide weather left out"
    if t.base_left_out:
        sides += f"; {t.base_left_out} outlying baseline windows left out"
    numbers = (f"{f(sig, x / n)} of {n:,.0f} {unit_word} ({sides}) vs expected "
               f"{f(sig, rate)}, tolerated {f(sig, r0)}")
    if p_reg <= alpha:
        conf = 1 - p_reg
        return make("regressed", f"{where}: {numbers}: regression (confidence {_pct(conf)})",
                    confidence=conf, compared_with=how, expected=rate, tolerated=r0,
                    detect=r1, p_regressed=p_reg, p_ruled_out=p_ok)
    if p_ok <= beta:
        conf = 1 - p_ok
        return make("ok", f"{where}: {numbers}: no regression to {f(sig, r1)} "
                    f"(confidence {_pct(conf)})", confidence=conf, compared_with=how,
                    expected=rate, tolerated=r0, detect=r1, p_regressed=p_reg,
                    p_ruled_out=p_ok)
    # the bake's next windows as large as the baseline's when those were larger (the
    # first after a restart hold a sliver: Prometheus has not scraped the new pods twice)
    base_pw = _sum(t.base)[1] / len(t.base) if t.base and not t.gateway else 0.0
    canary_pw = max(n / max(1, len(t.cur)), base_pw)
    narrows = t.gateway
    if t.gateway:  # its reference is read over the same windows: all of it grows
        needed = _needed(r0, v0, r1, v1, c2, canary_pw, za, zb,
                         shrink=lambda m: n / max(m, 1e-12))
    elif predicted.floor is not None and predicted.floor < var and t.controls:
        # the weather's part from the control's windows since the move falls as those
        # grow, at their own pace while the canary's exposure grows at its own: an early
        # look must not call the bake too short for what only the first windows' noise
        # keeps undecided (seen in the fleet benchmark: "no bake long enough" at look 2
        # on one window, PASS at look 3)
        _, f0, _, f1 = _limits(sig, rate, predicted.floor)
        c_now = sum(_sum(after)[1] for _, after in t.controls)
        c_pw = c_now / max(1, max(len(after) for _, after in t.controls))

        def control_share(m: float) -> float:
            later = c_now + max(0.0, m - n) / max(canary_pw, 1e-12) * c_pw
            return c_now / later if later > 0 else 1.0

        needed = _needed(r0, v0, r1, v1, c2, canary_pw, za, zb, shrink=control_share,
                         floors=(f0, f1))
        narrows = needed is not None and c_now > 0
    else:
        needed = _needed(r0, v0, r1, v1, c2, canary_pw, za, zb)
    want = (f"no bake long enough with the baseline's {_sum(t.base or [])[1]:,.0f}"
            if needed is None else f"{needed:,.0f} needed")
    return make("undecided", f"{where}: {numbers}: undecided between {f(sig, r0)} and "
                f"{f(sig, r1)}; {n:,.0f} {unit_word} seen, {want}",
                confidence=1 - min(p_reg, p_ok), needed=needed, compared_with=how,
                expected=rate, tolerated=r0, detect=r1, p_regressed=p_reg, p_ruled_out=p_ok,
                narrows=narrows)


def _rate(t: Tally | None) -> float | None:
    return None if t is None or t.exposure <= 0 else t.count / t.exposure


def _pct(p: float) -> str:
    if p >= 0.9999:
        return ">99.99%"
    return f"{100 * p:.2f}%"


def _decide(checks: list[SignalCheck], wave: CanaryWave, now: float, look: int,
            bake_looks: int, max_looks: int, interval_s: float) -> CanaryJudgement:
    regressed = [c for c in checks if c.status == "regressed" and c.gating]
    reported = [c for c in checks if c.status == "regressed" and not c.gating]
    blocking = [c for c in checks if c.blocking]
    open_ = [c for c in blocking if c.status != "ok"]

    def done(verdict: Verdict | None, sample_verdict: Verdict, reason: str,
             after_s: float = 0.0) -> CanaryJudgement:
        sample = GateSample(at=now, verdict=sample_verdict,
                            checks=[c.to_check() for c in checks], reason=reason)
        return CanaryJudgement(verdict, after_s, sample, tuple(checks), look, bake_looks,
                               max_looks, reason)

    if regressed:
        worst = sorted(regressed, key=lambda c: c.p_regressed)
        return done(Verdict.FAIL, Verdict.FAIL, "; ".join(c.text for c in worst))
    if not blocking:
        state = Verdict.INCONCLUSIVE
        reason = "no traffic to judge: " + (", ".join(wave.canary) or "no subjects")
    elif not open_:
        state = Verdict.PASS
        reason = (f"{len(checks)} signals of {len(wave.canary) + len(wave.gateways)} "
                  f"subjects: no regression of the detection size (every blocking signal "
                  f"ruled out at ≥ {_pct(min(c.confidence for c in blocking))})")
        if reported:
            reason += "; reported only: " + "; ".join(c.text for c in reported)
        storms = max((c.left_out for c in checks), default=0)
        if storms:
            reason += (f"; {storms} windows of fleet-wide weather (the control moved as "
                       "much) left out")
    else:
        state = Verdict.INCONCLUSIVE
        reason = "; ".join(c.text for c in open_)
    # the next look is due at the bake's next multiple of the interval, not an interval
    # from now: a look a busy worker ran late does not push back every look after it
    # (Flagger's analysis runs on a ticker of its interval, not a delay after each check)
    next_look_s = max(MIN_LOOK_GAP_S,
                      wave.bake_started_at + (look + 1) * interval_s - now)
    if look < bake_looks:
        return done(None, state, reason, next_look_s)
    passing = pass_looks(bake_looks, max_looks)
    upcoming = [k for k in passing if k >= look]
    if state == Verdict.PASS:
        if look in passing or not upcoming:  # a late look (a worker was down) decides too
            return done(Verdict.PASS, Verdict.PASS, reason)
        return done(None, Verdict.PASS, f"{reason}; confirming at look {upcoming[0]}",
                    next_look_s)
    # extend while every open signal can get what it needs before the extension ends
    # (each look adds about one window: the windows seen so far say how much one brings)
    more = 0
    reachable = bool(open_) or not blocking  # no traffic seen yet: it may still come
    for c in open_:
        if c.status == "thin" and c.seen <= 0 and (c.left_out or not c.windows):
            # only weather so far, or no window yet (Prometheus has not scraped the new
            # pods twice): the next windows may bring what is needed
            more = max(more, 1)
            continue
        if c.status == "thin" or c.needed is None or c.seen <= 0:
            reachable = False
            break
        # what a look brings: as much as a window brought so far, or as before the move
        # when that was more (the first windows after a restart hold a sliver: Prometheus
        # finds the new pods and scrapes them twice before their counts show)
        per_look = max(c.seen / max(1, c.windows or look), c.base_per_window or 0.0)
        ahead = math.ceil((c.needed - c.seen) / per_look)
        if c.narrows or is_gateway(c.subject):
            # its reference (the stable gateway over the same windows, the control's
            # weather since the move) grows with the bake and ``needed`` is where the two
            # tests' regions meet at worst: each look narrows both sides, so the whole
            # extension is worth waiting for
            ahead = min(ahead, max_looks - look)
        more = max(more, ahead)
    # a signal already worse than tolerated is looked at again while the bake may grow:
    # the next window may confirm a regression, which is not a person's decision to make
    leaning = any(c.status == "undecided" and c.observed is not None
                  and c.tolerated is not None and c.observed > c.tolerated for c in checks)
    if (reachable and look + more <= max_looks or leaning) and look < max_looks:
        until = min(k for k in passing if k >= min(max_looks, look + max(more, 1)))
        return done(None, Verdict.INCONCLUSIVE,
                    f"extending the bake to look {until} (of at most {max_looks}): {reason}",
                    next_look_s)
    head = (f"after {look} intervals, {len(open_)} of {len(blocking)} signals could not be "
            "decided (a person decides): ")
    return done(Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE, head + reason)


def error_judgement(samples: Sequence[GateSample], now: float, reason: str,
                    interval_s: float, th: CanaryThresholds | None = None) -> CanaryJudgement:
    """A look whose windows could not be read: record an ERROR sample; ERROR (a person
    decides) after ``error_limit`` in a row, counting this one (Argo Rollouts'
    ``consecutiveErrorLimit``), else look again after ``interval_s``.

    Args:
        samples: the wave's samples so far (before this one).
    """
    th = th or CanaryThresholds()
    streak = 1
    for s in reversed(samples):
        if s.verdict != Verdict.ERROR:
            break
        streak += 1
    sample = GateSample(at=now, verdict=Verdict.ERROR, reason=reason)
    verdict = Verdict.ERROR if streak >= th.error_limit else None
    return CanaryJudgement(verdict, 0.0 if verdict else interval_s, sample, (), 0, 0, 0,
                           f"could not read the windows ({streak} in a row): {reason}")


# --------------------------------------------------------------------------------------
# Replays.


def dump_jsonl(windows: Iterable[TrafficWindow]) -> str:
    """The JSON lines text of these windows (the module docstring's format)."""
    return "".join(w.model_dump_json() + "\n" for w in windows)


def load_jsonl(text: str) -> list[TrafficWindow]:
    """Parse JSON lines of windows.

    Raises:
        ValueError: naming the first bad line and what is wrong with it.
    """
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(TrafficWindow.model_validate_json(line))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "line"
            raise ValueError(f"line {no}: {where}: {first.get('msg', exc)}") from None
    return out


def newest_revision(windows: Iterable[TrafficWindow]) -> str | None:
    """The highest ``asm-1-NN`` among the windows' revisions (the canary of a replay)."""
    best: tuple[int, str] | None = None
    for w in windows:
        m = re.fullmatch(r"asm-1-(\d+)", w.revision or "")
        if m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), w.revision or "")
    return None if best is None else best[1]


def interval_of(windows: Iterable[TrafficWindow]) -> float:
    """The windows' usual length (s): the median, 60 without windows."""
    lengths = sorted(w.end - w.start for w in windows)
    return lengths[len(lengths) // 2] if lengths else 60.0


@dataclass(frozen=True)
class WaveReplay:
    wave: CanaryWave
    looks: tuple[CanaryJudgement, ...]  # one per interval, the last one decides (or not)

    @property
    def verdict(self) -> Verdict | None:
        return self.looks[-1].verdict if self.looks else None


def replay(windows: Sequence[TrafficWindow], canary_revision: str | None = None,
           bake_s: float = 600.0, interval_s: float | None = None,
           th: CanaryThresholds | None = None) -> list[WaveReplay]:
    """Judge every wave of a replay, one look per interval, until each decides or its data
    ends.

    Args:
        windows: the replay's windows.
        canary_revision: default: the newest revision in the windows.
        bake_s: the bake time (s).
        interval_s: default: the windows' usual length.
    Returns:
        One :class:`WaveReplay` per wave, in the order the waves moved; empty when there is
        no canary revision or no subject moved to it.
    """
    th = th or CanaryThresholds()
    canary = canary_revision or newest_revision(windows)
    if canary is None:
        return []
    step = interval_s or interval_of(windows)
    index = TrafficIndex.of(windows)
    last_end = max((w.end for w in windows), default=0.0)
    out = []
    for wave in find_waves(index, canary, bake_s, step, th):
        looks: list[CanaryJudgement] = []
        k = 1
        while wave.bake_started_at + k * step <= last_end + 1e-6:
            j = judge_canary(index, wave, wave.bake_started_at + k * step, bake_s, step, th)
            looks.append(j)
            if j.verdict is not None or k >= j.max_looks:
                break
            k += 1
        out.append(WaveReplay(wave, tuple(looks)))
    return out


def soak_regression(windows: Sequence[TrafficWindow], since: float, th: CanaryThresholds
                    ) -> str | None:
    """Whether namespaces upgraded at ``since`` serve errors they did not before: the soak
    after a campaign stage (Azure Kubernetes Fleet Manager's after-stage wait, with Flagger's
    and Argo Rollouts' idea of analysis continuing after promotion).

    Per namespace, the requests and server errors (:attr:`TrafficWindow.errors`) its
    destination proxies report (the source's when no destination reports: callers outside
    the mesh), in windows ending at or before ``since`` (before) and after it (soak). A
    regression is an error rate higher by at least ``th.error_detect_pts`` points (the
    change the canary gate is set to catch) **and** beyond chance: the soak's error count
    is in the upper tail (below ``th.false_rollback / n``, Bonferroni over the ``n``
    namespaces judged) of the Poisson count expected at the rate before plus the
    tolerated ``th.error_tolerance_pts`` (:func:`count_tails`), so production's noise at
    high volume does not read as a regression and a handful of errors at low volume
    cannot either.

    Args:
        windows: the namespaces' traffic windows over both spans (``MetricsApi.windows``).
        since: Unix seconds the upgrade completed.
        th: the cluster's canary gate parameters.
    Returns:
        None when no namespace regressed (or there is nothing to compare), else one
        sentence naming each regressed namespace with both rates and the request counts.
    """
    tally: dict[tuple[str, str], list[int]] = {}  # (ns, reporter) -> before n, e, soak n, e
    for w in windows:
        t = tally.setdefault((w.subject, w.reporter), [0, 0, 0, 0])
        at = 0 if w.end <= since else 2
        t[at] += w.requests
        t[at + 1] += w.errors
    judged: dict[str, list[int]] = {}
    for (ns, reporter), t in sorted(tally.items()):
        if ns.startswith("gateway/"):
            continue
        if reporter == "destination" or ns not in judged:
            if t[0] and t[2]:
                judged[ns] = t
    if not judged:
        return None
    alpha = th.false_rollback / len(judged)
    found = []
    for ns, (n0, e0, n1, e1) in judged.items():
        p0, p1 = e0 / n0, e1 / n1
        if (p1 - p0) * 100 < th.error_detect_pts:
            continue
        expected = n1 * (p0 + th.error_tolerance_pts / 100)
        if count_tails(e1, expected, expected)[0] >= alpha:
            continue
        found.append(f"{ns} {p1 * 100:.2f} % errors over {n1:,} requests since the upgrade "
                     f"against {p0 * 100:.2f} % over {n0:,} before")
    if not found:
        return None
    return ("; ".join(found) + f" (a regression is {th.error_detect_pts:g} points or more, "
            "beyond chance)")
