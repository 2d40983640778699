"""The deployment's metrics (workers/metrics.py) on a real Redis: an upgrade driven through
the engine against the in-memory world is counted (runs started and ended, gate verdicts,
phase durations, decisions and their latency), active runs and their tick lag, the Celery
queue and beat's heartbeat are read at scrape time, and a Redis that does not answer is
``meshops_store_up 0``, not a failed scrape."""

from __future__ import annotations

import socket

import pytest
from celery import Celery
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REDIS_URL, ROOT
from tests.core.fakes import FakeWorld
from workers.config import load_fleet
from workers.engine import Engine
from workers.metrics import MeshopsCollector, QueueKeys, beat_key, registry
from workers.store.runs import RedisRunStore
from workflows.kind import StartRun
from workflows.model import Phase, Run

T0 = 1_800_000_000.0


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` of an exposition; KeyError when it is not there."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    raise KeyError(f"{name}{labels} not in the exposition")


def names(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def settle(engine: Engine, clock: Clock, run: Run) -> Run:
    """Advance the run until it waits for a person or ends; time jumps by each recheck."""
    for _ in range(300):
        advanced = engine.advance(run.id, run.seq)
        if advanced is None:
            return engine.store.get(run.id)
        run = advanced.run  # its recent part (a tick's read)
        if advanced.recheck_after is None:
            return engine.store.get(run.id)
        clock.now += advanced.recheck_after
    raise AssertionError(f"run did not settle: {run.phase}")


def scrape(store: RedisRunStore, clock: Clock) -> str:
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(MeshopsCollector(store, QueueKeys.of(f"{store.p}:kombu:", store.p), clock))
    return generate_latest(reg).decode()


def test_an_upgrade_is_counted_from_request_to_completion(store: RedisRunStore) -> None:
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    clock = Clock()
    engine = Engine(fleet, store, FakeWorld.seeded(["a", "b", "c"]), clock=clock)
    run = engine.start(StartRun("upgrade", "dev-weu", "asm-1-26"), "U0AAAAAAA", "C0987654321")
    text = scrape(store, clock)
    assert value(text, "meshops_runs", kind="upgrade", phase="planning") == 1
    assert value(text, "meshops_runs_started_total", kind="upgrade") == 1

    run = settle(engine, clock, run)
    assert run.phase == Phase.AWAITING_APPROVAL
    clock.now += 100  # an approver takes 100 s
    run = engine.decide(run.id, "approve", "U0BBBBBBB")
    run = settle(engine, clock, run)
    assert run.phase == Phase.AWAITING_COMPLETION
    clock.now += 5400  # the completion decision 1.5 h later
    run = engine.decide(run.id, "complete", "U0BBBBBBB")
    run = settle(engine, clock, run)
    assert run.phase == Phase.COMPLETED

    text = scrape(store, clock)
    assert value(text, "meshops_store_up") == 1
    assert value(text, "meshops_runs_ended_total", kind="upgrade", phase="completed") == 1
    assert value(text, "meshops_runs", kind="upgrade", phase="planning") == 0
    assert value(text, "meshops_runs", kind="enable", phase="paused") == 0  # every kind, 0
    decided = [e for e in run.history if e.kind == "gate" and e.data["decided"]]
    samples = len(decided)
    assert samples == len(run.waves) >= 2  # one verdict per wave
    assert all(e.data["verdict"] == "PASS" for e in decided)
    assert value(text, "meshops_gate_verdicts_total", verdict="PASS") == samples
    assert value(text, "meshops_decisions_total", action="approve") == 1
    assert value(text, "meshops_decisions_total", action="complete") == 1
    # decision latency: from entering the awaiting-* phase to the decision
    lat = "meshops_decision_latency_seconds"
    assert value(text, f"{lat}_count", phase="awaiting_approval") == 1
    assert value(text, f"{lat}_sum", phase="awaiting_approval") == 100
    assert value(text, f"{lat}_bucket", phase="awaiting_approval", le="60.0") == 0
    assert value(text, f"{lat}_bucket", phase="awaiting_approval", le="300.0") == 1
    assert value(text, f"{lat}_sum", phase="awaiting_completion") == 5400
    assert value(text, f"{lat}_bucket", phase="awaiting_completion", le="3600.0") == 0
    assert value(text, f"{lat}_bucket", phase="awaiting_completion", le="7200.0") == 1
    assert value(text, f"{lat}_bucket", phase="awaiting_completion", le="+Inf") == 1
    # phase durations: each phase left is observed once, with the time spent in it
    dur = "meshops_phase_duration_seconds"
    assert value(text, f"{dur}_count", kind="upgrade", phase="awaiting_approval") == 1
    assert value(text, f"{dur}_sum", kind="upgrade", phase="awaiting_approval") == 100
    assert value(text, f"{dur}_sum", kind="upgrade", phase="awaiting_completion") == 5400
    assert value(text, f"{dur}_count", kind="upgrade", phase="migrating") >= 1
    assert value(text, f"{dur}_count", kind="upgrade", phase="completing") == 1
    with pytest.raises(KeyError):  # a terminal phase is never left
        value(text, f"{dur}_count", kind="upgrade", phase="completed")


def test_active_runs_tick_lag_queue_and_beat_are_read_at_scrape_time(
        store: RedisRunStore) -> None:
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    clock = Clock()
    engine = Engine(fleet, store, FakeWorld.seeded(["a"]), clock=clock)
    late = engine.start(StartRun("upgrade", "dev-weu", "asm-1-26"), "U0AAAAAAA", "C0")
    waiting = engine.start(StartRun("upgrade", "prod-weu", "asm-1-26"), "U0AAAAAAA", "C0")
    store.save(waiting.to(Phase.AWAITING_APPROVAL, T0 + 10, "plan"), waiting.seq)
    store.save(late.evolve(next_tick_at=T0 + 30), late.seq)
    clock.now = T0 + 120

    celery = Celery("test", broker=REDIS_URL)
    celery.conf.update(broker_transport_options={"global_keyprefix": f"{store.p}:kombu:"},
                       task_default_queue=store.p)
    celery.send_task("meshops.tick", ("r-a", 1))
    celery.send_task("meshops.tick", ("r-b", 1), countdown=60)
    celery.send_task("meshops.notify", ("r-a",), priority=5)  # a priority list of its own
    store.r.set(beat_key(store.p), f"{T0 + 115:.3f}")

    text = scrape(store, clock)
    assert value(text, "meshops_runs", kind="upgrade", phase="planning") == 1
    assert value(text, "meshops_runs", kind="upgrade", phase="awaiting_approval") == 1
    assert value(text, "meshops_tick_lag_seconds") == 90  # due at T0+30, now T0+120
    assert value(text, "meshops_waiting_for_person_seconds", phase="awaiting_approval") == 110
    assert value(text, "meshops_waiting_for_person_seconds", phase="paused") == 0
    assert value(text, "meshops_queue_depth") == 3
    assert value(text, "meshops_queue_unacked") == 0
    assert value(text, "meshops_beat_last_tick_timestamp_seconds") == T0 + 115

    # the worker's registry: the same collector, with the process's own metrics
    full = generate_latest(registry(store, QueueKeys.of(f"{store.p}:kombu:", store.p)))
    assert {"meshops_queue_depth", "process_resident_memory_bytes"} <= names(full.decode())


def test_a_redis_that_does_not_answer_is_store_up_0_not_a_failed_scrape(prefix: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = RedisRunStore.from_url(f"redis://127.0.0.1:{port}/0", prefix)
    text = scrape(store, Clock())
    assert value(text, "meshops_store_up") == 0
    assert names(text) == {"meshops_store_up"}


def test_a_phases_duration_is_known_from_a_recent_only_read() -> None:
    """A tick reads only the run's last events; the phase it leaves may have begun long
    before them: ``Run.phase_since`` says when (else the phase's last history entry)."""
    from workers.metrics import exited_phases
    from workflows.model import Phase, Run

    run = Run(id="r-0000000001", cluster="dev", requester="U1", channel="C1",
              canary_revision="asm-1-26", created_at=1000.0, updated_at=1000.0)
    run = run.to(Phase.MIGRATING, 1100.0)
    for i in range(50):  # a long bake: the phase entry is far behind
        run = run.log(1200.0 + i, "gate", f"look {i}")
    recent = run.evolve(history=run.history[-20:])  # what a tick reads
    done = recent.to(Phase.AWAITING_COMPLETION, 2000.0)
    assert exited_phases(recent, done, 2000.0) == [("migrating", 900.0)]
    # a run stored before phase_since was kept: its last phase entry says
    old = run.evolve(phase_since=None)
    assert exited_phases(old, old.to(Phase.AWAITING_COMPLETION, 2000.0), 2000.0) == [
        ("migrating", 900.0)]


def test_an_observation_is_one_bucket_in_redis_and_cumulative_at_scrape(
        store: RedisRunStore) -> None:
    from workers.metrics import PHASE_BUCKETS, PHASE_DURATION, RunMetrics

    metrics = RunMetrics(store.r, store.p)
    for seconds in (0.5, 100.0, 100.0, 1e7):  # 1e7: past the last bound, +Inf only
        metrics._write(lambda p, s=seconds: metrics._observe(
            p, PHASE_DURATION, ("upgrade", "planning"), s), "test")
    stored = store.r.hgetall(metrics.key(PHASE_DURATION))
    # the buckets that hold an observation (two), _count and _sum: not one field per bound
    assert len(stored) == 4, stored
    text = generate_latest(registry(store)).decode()
    dur, labels = "meshops_phase_duration_seconds", {"kind": "upgrade", "phase": "planning"}
    assert value(text, f"{dur}_bucket", **labels, le="1.0") == 1
    assert value(text, f"{dur}_bucket", **labels, le="60.0") == 1
    assert value(text, f"{dur}_bucket", **labels, le="300.0") == 3
    assert value(text, f"{dur}_bucket", **labels, le=repr(PHASE_BUCKETS[-1])) == 3
    assert value(text, f"{dur}_bucket", **labels, le="+Inf") == 4
    assert value(text, f"{dur}_count", **labels) == 4
    assert value(text, f"{dur}_sum", **labels) == 0.5 + 200 + 1e7


def test_a_scrape_between_an_observations_writes_reads_a_valid_histogram(
        store: RedisRunStore) -> None:
    """The writes are not one transaction: after each of them in turn, the histogram a
    scrape reads has buckets that never go down and a +Inf that holds them all."""
    from workers.metrics import PHASE_DURATION, RunMetrics

    metrics = RunMetrics(store.r, store.p)
    writes: list[tuple[str, tuple[object, ...]]] = []

    class Recording:  # the pipeline's calls, to be made one at a time below
        def __getattr__(self, name: str) -> object:
            return lambda *args: writes.append((name, args))

    metrics._observe(Recording(), PHASE_DURATION, ("upgrade", "planning"), 30.0)
    dur, labels = "meshops_phase_duration_seconds", {"kind": "upgrade", "phase": "planning"}
    for name, args in writes:
        getattr(store.r, name)(*args)
        text = generate_latest(registry(store)).decode()
        buckets = [v for le, v in bucket_values(text, f"{dur}_bucket", **labels)]
        assert buckets == sorted(buckets), (name, args, buckets)
    assert buckets[-1] == value(text, f"{dur}_count", **labels) == 1


def bucket_values(text: str, name: str, **labels: str) -> list[tuple[str, float]]:
    """``(le, value)`` of a histogram's ``name`` series with ``labels``, in ``le`` order."""
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                out.append((s.labels["le"], s.value))
    return sorted(out, key=lambda kv: float(kv[0]))
