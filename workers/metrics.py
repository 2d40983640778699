"""Prometheus metrics of a meshops deployment, kept where every process can add to them.

Celery runs several processes per worker (prefork) and several workers run against one
Redis, so no process-local counter would add up. Two sources instead, both in the run
store's Redis and read when Prometheus scrapes a worker (:class:`MeshopsCollector`; any
worker answers for the whole deployment, so scrape one, or de-duplicate with ``max``):

**Read from the stored state at scrape time** (gauges):

- ``meshops_runs{kind, phase}``: active runs (``{p}:active``) by workflow kind and phase;
  0 for every registered kind and non-terminal phase with none.
- ``meshops_tick_lag_seconds``: how late the most overdue active run's next tick is
  (``now - next_tick_at``; 0 when none is late). A run waiting for a person has no tick.
- ``meshops_waiting_for_person_seconds{phase}``: how long the longest-waiting run has
  waited in each awaiting-* phase and ``paused`` (0: none waits).
- ``meshops_queue_depth``: task messages waiting in the Celery queue (``LLEN`` of the
  kombu list ``{p}:kombu:{queue}`` and its priority lists); ``meshops_queue_unacked``:
  messages workers hold without having acknowledged them (``HLEN {p}:kombu:unacked``:
  running tasks and ticks waiting for their ETA).
- ``meshops_beat_last_tick_timestamp_seconds``: when beat's scheduler last ran (0: never;
  :mod:`workers.tasks.beat`).
- ``meshops_store_up``: 1 when Redis answered this scrape, else 0 (and nothing else).

**Counted into Redis hashes as things happen** (``HINCRBY`` on ``{p}:metrics:*``), from one
place each: :class:`workers.engine.Engine` after it saved a run (runs started and ended,
gate verdicts from the run's new history entries of kind ``gate``, phase durations from its
``phase`` entries, decisions and their latency), and :mod:`workers.apierrors` for the
API errors:

- ``meshops_runs_started_total{kind}``, ``meshops_runs_ended_total{kind, phase}`` (the
  terminal phase: completed, rolled_back, cancelled, rejected, refused, failed);
- ``meshops_phase_duration_seconds{kind, phase}``: histogram of the time runs spent in a
  phase, observed when they leave it;
- ``meshops_gate_verdicts_total{verdict}``: each wave's metric gate verdict (the look that
  decides): PASS, FAIL, INCONCLUSIVE, ERROR;
- ``meshops_decisions_total{action}``: people's decisions (approve, reject, complete,
  rollback, pause, resume, cancel) and approval requests that expired (``expire``);
- ``meshops_decision_latency_seconds{phase}``: histogram of the time from a run entering
  an awaiting-* phase (or ``paused``) to a person's decision on it;
- ``meshops_api_errors_total{system, code}`` (what is counted: :mod:`workers.apierrors`).

A histogram's hash (``{p}:metrics:*_by_bucket``) counts each observation once, in the
smallest bucket that holds it, with its ``_count`` and ``_sum``; the collector adds the
buckets up into Prometheus' cumulative ``le`` buckets, so an observation is three writes
whatever the number of buckets. (Earlier builds kept cumulative buckets under
``{p}:metrics:*_seconds``; those hashes are no longer read: a deployment updated across the
change shows Prometheus a counter reset, which ``rate()`` handles.)

A save and its counting are two writes: a process killed between them loses that one
count, never counts twice (the save is compare-and-set; only its winner counts).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import redis
import structlog
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from redis.exceptions import RedisError

from workers.store.runs import RedisRunStore
from workflows.errors import TemporaryError
from workflows.kind import KINDS
from workflows.model import PARKED_PHASES, Phase, Run

log = structlog.get_logger("meshops.metrics")

#: seconds; a phase lasts from a second (planning) to days (a completion nobody decides)
PHASE_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
                 43200.0, 86400.0, 259200.0, 604800.0)
#: seconds; people answer in minutes to days
DECISION_BUCKETS = (10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
                    28800.0, 86400.0, 259200.0, 604800.0)


@dataclass(frozen=True)
class _Family:
    key: str  # the hash under {p}:metrics:
    name: str  # without _total (prometheus_client adds it to counters)
    doc: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()  # a histogram when set


API_ERRORS = _Family("api_errors", "meshops_api_errors",
                     "Errors of the APIs meshops calls, by system (arm, kubernetes, prometheus, "
                     "slack) and code (HTTP status, Slack error code, unreachable), after the "
                     "SDKs' own retries.", ("system", "code"))
GATE_VERDICTS = _Family("gate_verdicts", "meshops_gate_verdicts",
                        "Metric gate verdicts of waves (the look that decides).",
                        ("verdict",))
DECISIONS = _Family("decisions", "meshops_decisions",
                    "Decisions on runs by action (expire: an approval request timed out).",
                    ("action",))
RUNS_STARTED = _Family("runs_started", "meshops_runs_started", "Runs requested, by kind.",
                       ("kind",))
RUNS_ENDED = _Family("runs_ended", "meshops_runs_ended",
                     "Runs that ended, by kind and terminal phase.", ("kind", "phase"))
PHASE_DURATION = _Family("phase_duration_seconds_by_bucket", "meshops_phase_duration_seconds",
                         "Time runs spent in a phase, observed when they left it.",
                         ("kind", "phase"), PHASE_BUCKETS)
DECISION_LATENCY = _Family("decision_latency_seconds_by_bucket", "meshops_decision_latency_seconds",
                           "Time from a run starting to wait for a person (awaiting-* or "
                           "paused) to a person's decision.", ("phase",), DECISION_BUCKETS)
COUNTERS = (API_ERRORS, GATE_VERDICTS, DECISIONS, RUNS_STARTED, RUNS_ENDED)
HISTOGRAMS = (PHASE_DURATION, DECISION_LATENCY)


def beat_key(prefix: str) -> str:
    """The key beat's scheduler stamps with the time of its last tick (Unix s)."""
    return f"{prefix}:beat:heartbeat"


def _field(*parts: str) -> str:
    return json.dumps(list(parts), separators=(",", ":"))


def _le(bound: float) -> str:
    """A bucket's ``le`` as Prometheus writes it (``10.0``; the buckets here need no
    exponent, which is where ``prometheus_client.utils.floatToGoString`` would differ)."""
    return repr(float(bound))


def exited_phases(before: Run, after: Run, now: float) -> list[tuple[str, float]]:
    """The phases ``before`` left on its way to ``after``, each with the seconds it spent
    there: from the history entries of kind ``phase`` (:meth:`Run.to`), the phase entered
    at the last of them naming it (else when the run was created). ``before`` may hold only
    its recent history (a tick's read): its ``phase_since`` says when it entered its phase."""
    current = before.phase.value
    entered = before.phase_since if before.phase_since is not None else next(
        (e.at for e in reversed(before.history)
         if e.kind == "phase" and e.data.get("phase") == current), before.created_at)
    spans = []
    for event in after.history[len(before.history):]:
        phase = event.data.get("phase") if event.kind == "phase" else None
        if isinstance(phase, str) and phase != current:
            spans.append((current, max(0.0, event.at - entered)))
            current, entered = phase, event.at
    if after.phase.value != current:  # changed without a history entry
        spans.append((current, max(0.0, now - entered)))
    return spans


class RunMetrics:
    """The counters and histograms of one deployment (``{prefix}:metrics:*`` hashes).

    Every method writes in one round trip (a pipeline) and never raises: a metrics outage
    is logged and the action it describes still happens (as with the audit stream).
    """

    def __init__(self, client: redis.Redis, prefix: str = "meshops"):
        self.r = client
        self.p = prefix

    def key(self, family: _Family) -> str:
        return f"{self.p}:metrics:{family.key}"

    def _write(self, fill: Callable[[Any], None], what: str) -> None:
        try:
            # not MULTI/EXEC (it cost the bot's after-answer thread a third of its metrics
            # time): each write is an increment that stands alone, and a histogram's are
            # ordered so that a scrape between them still reads a valid histogram
            # (:meth:`_observe`; only _sum may lag its count by the one observation)
            pipe = self.r.pipeline(transaction=False)
            fill(pipe)
            pipe.execute()
        except RedisError as exc:
            log.warning("metrics.unavailable", what=what, error=str(exc))

    def _observe(self, pipe: Any, family: _Family, labels: Sequence[str], value: float) -> None:
        # one bucket per observation, the smallest that holds it (none past the last bound:
        # +Inf is _count); the collector adds them up (the module docstring)
        key = self.key(family)
        bound = next((b for b in family.buckets if value <= b), None)
        # _count (the +Inf bucket) first: a scrape between the writes then sees the
        # observation in +Inf only, never a finite bucket above +Inf (buckets not written
        # in one transaction, :meth:`_write`)
        pipe.hincrby(key, _field(*labels, "_count"), 1)
        if bound is not None:
            pipe.hincrby(key, _field(*labels, _le(bound)), 1)
        pipe.hincrbyfloat(key, _field(*labels, "_sum"), value)

    def api_error(self, system: str, code: str) -> None:
        """One error of ``system``'s API with ``code`` (:mod:`workers.apierrors`)."""
        self._write(lambda p: p.hincrby(self.key(API_ERRORS), _field(system, code), 1),
                    "api_error")

    def run_started(self, kind: str) -> None:
        self._write(lambda p: p.hincrby(self.key(RUNS_STARTED), _field(kind), 1),
                    "run_started")

    def run_changed(self, before: Run, after: Run, now: float) -> None:
        """Count what saving ``after`` over ``before`` did: gate verdicts in the new history,
        phases left (their durations), the run's end."""
        self._write(lambda p: self._changed(p, before, after, now), "run_changed")

    def decided(self, before: Run, after: Run, action: str, now: float,
                by_person: bool = True) -> None:
        """A decision (``action``) that turned ``before`` into ``after``: counted, and for a
        person's decision on a waiting run its latency (``now - before.parked_at``)."""

        def fill(pipe: Any) -> None:
            pipe.hincrby(self.key(DECISIONS), _field(action), 1)
            if by_person and before.phase.waiting_for_person and before.parked_at is not None:
                self._observe(pipe, DECISION_LATENCY, (before.phase.value,),
                              max(0.0, now - before.parked_at))
            self._changed(pipe, before, after, now)

        self._write(fill, "decided")

    def _changed(self, pipe: Any, before: Run, after: Run, now: float) -> None:
        verdicts = Counter(str(e.data["verdict"]) for e in after.history[len(before.history):]
                           if e.kind == "gate" and "verdict" in e.data
                           and e.data.get("decided", True))
        for verdict, n in verdicts.items():
            pipe.hincrby(self.key(GATE_VERDICTS), _field(verdict), n)
        for phase, seconds in exited_phases(before, after, now):
            self._observe(pipe, PHASE_DURATION, (after.kind, phase), seconds)
        if after.phase.terminal and not before.phase.terminal:
            pipe.hincrby(self.key(RUNS_ENDED), _field(after.kind, after.phase.value), 1)

    def read(self, family: _Family) -> dict[tuple[str, ...], float]:
        """A family's hash: label values (and, for histograms, the bucket) → value."""
        raw = self.r.hgetall(self.key(family))
        out: dict[tuple[str, ...], float] = {}
        for field, value in raw.items():
            parts = json.loads(field.decode() if isinstance(field, bytes) else field)
            out[tuple(str(p) for p in parts)] = float(value)
        return out


@dataclass(frozen=True)
class QueueKeys:
    """Where Celery's Redis transport keeps the queue (kombu ``redis`` transport)."""

    lists: tuple[str, ...]  # the queue's list and its priority lists
    unacked: str  # hash of delivered, unacknowledged messages

    @classmethod
    def of(cls, keyprefix: str, queue: str) -> QueueKeys:
        """For kombu's ``global_keyprefix`` and queue name: the list ``{prefix}{queue}``, its
        priority lists ``{prefix}{queue}\\x06\\x16{3,6,9}`` (kombu ``PRIORITY_STEPS``, ``sep``)
        and ``{prefix}unacked``."""
        return cls((f"{keyprefix}{queue}",
                    *(f"{keyprefix}{queue}\x06\x16{pri}" for pri in (3, 6, 9))),
                   f"{keyprefix}unacked")


class MeshopsCollector(Collector):
    """A prometheus_client collector reading the metrics of the module docstring from Redis
    at each scrape (one ``SMEMBERS`` and one read per active run, one ``HGETALL`` per
    counter, a few ``LLEN``).

    Args:
        store: the run store (its Redis and prefix).
        queue: the Celery queue's keys (:meth:`QueueKeys.of`); None: no queue metrics.
        clock: Unix seconds.
    """

    def __init__(self, store: RedisRunStore, queue: QueueKeys | None = None,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.metrics = RunMetrics(store.r, store.p)
        self.queue = queue
        self.clock = clock

    def describe(self) -> Iterable[Metric]:
        return []  # names are not checked at registration: collecting needs Redis

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("meshops_store_up", "1 when Redis answered this scrape.")
        try:
            families = list(self._collect(self.clock()))
        except (RedisError, TemporaryError) as exc:
            log.warning("metrics.store_unavailable", error=str(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _collect(self, now: float) -> Iterator[Metric]:
        runs = self.store.list_runs(active_only=True)
        yield from self._runs(runs, now)
        for family in COUNTERS:
            counter = CounterMetricFamily(family.name, family.doc, labels=list(family.labels))
            for labels, value in sorted(self.metrics.read(family).items()):
                counter.add_metric(list(labels), value)
            yield counter
        for family in HISTOGRAMS:
            yield self._histogram(family)
        if self.queue is not None:
            depth = GaugeMetricFamily("meshops_queue_depth",
                                      "Task messages waiting in the Celery queue.")
            depth.add_metric([], float(sum(int(self.store.r.llen(k)) for k in self.queue.lists)))
            yield depth
            unacked = GaugeMetricFamily("meshops_queue_unacked",
                                        "Task messages delivered to workers and not yet "
                                        "acknowledged (running, or waiting for their ETA).")
            unacked.add_metric([], float(self.store.r.hlen(self.queue.unacked)))
            yield unacked
        beat = GaugeMetricFamily("meshops_beat_last_tick_timestamp_seconds",
                                 "When beat's scheduler last ran (Unix s; 0: never).")
        stamp = self.store.r.get(beat_key(self.store.p))
        beat.add_metric([], float(stamp) if stamp else 0.0)
        yield beat

    def _runs(self, runs: list[Run], now: float) -> Iterator[Metric]:
        counts: Counter[tuple[str, str]] = Counter()
        for registered in KINDS:
            for each in Phase:
                if not each.terminal:
                    counts[(registered.name, each.value)] = 0
        lag = 0.0
        waiting: dict[str, float] = {p.value: 0.0 for p in PARKED_PHASES}
        for run in runs:
            counts[(run.kind, run.phase.value)] += 1
            if run.phase.waiting_for_person:
                if run.parked_at is not None:
                    waiting[run.phase.value] = max(waiting[run.phase.value],
                                                   now - run.parked_at)
            elif not run.phase.terminal and run.next_tick_at is not None:
                lag = max(lag, now - run.next_tick_at)
        gauge = GaugeMetricFamily("meshops_runs", "Active runs by kind and phase.",
                                  labels=["kind", "phase"])
        for (kind_name, phase_name), n in sorted(counts.items()):
            gauge.add_metric([kind_name, phase_name], n)
        yield gauge
        lag_gauge = GaugeMetricFamily(
            "meshops_tick_lag_seconds",
            "How late the most overdue active run's next tick is (0: none is late).")
        lag_gauge.add_metric([], max(0.0, lag))
        yield lag_gauge
        wait = GaugeMetricFamily("meshops_waiting_for_person_seconds",
                                 "How long the longest-waiting run has waited for a person, by "
                                 "phase.", labels=["phase"])
        for parked, seconds in sorted(waiting.items()):
            wait.add_metric([parked], max(0.0, seconds))
        yield wait

    def _histogram(self, family: _Family) -> HistogramMetricFamily:
        series: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
        for parts, value in self.metrics.read(family).items():
            series[parts[:-1]][parts[-1]] = value
        hist = HistogramMetricFamily(family.name, family.doc, labels=list(family.labels))
        for labels, values in sorted(series.items()):
            count = values.get("_count", 0.0)
            cumulative = list(accumulate(values.get(_le(b), 0.0) for b in family.buckets))
            buckets = [(_le(b), n) for b, n in zip(family.buckets, cumulative, strict=True)]
            buckets.append(("+Inf", count))
            total = values.get("_sum", 0.0)
            hist.add_metric(list(labels), buckets, sum_value=total if math.isfinite(total)
                            else 0.0)
        return hist


def registry(store: RedisRunStore, queue: QueueKeys | None = None) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global ``REGISTRY``, so that building
    it twice, or for two prefixes in one process, registers nothing twice) with
    :class:`MeshopsCollector` and the serving process's ``process_*`` metrics."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MeshopsCollector(store, queue))
    ProcessCollector(registry=reg)
    return reg
