"""``meshops.tick`` takes a run's steps in a row while each asks for the next at once
(workers/tasks/app.py ``CHAINED_STEPS``): a wave's baseline, label and restart in one task,
each saved before the next; then one tick scheduled when the next step is due, and one Slack
sync for the lines logged. The engine and store are real (Redis); the cluster is the
in-memory world of the core tests; what the task publishes to Celery is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import REDIS_URL, ROOT
from tests.core.fakes import FakeWorld
from workers.config import load_fleet
from workers.engine import Engine
from workers.store.runs import RedisRunStore
from workflows.errors import TemporaryError
from workflows.kind import StartRun
from workflows.model import Phase, WaveStep
from workflows.operations import POLL_S

CLUSTER = "dev-weu"  # of examples/fleet.azure.yaml: two approvers, no pilot


class Published:
    """What the task published to Celery: ticks (seq, countdown) and syncs."""

    def __init__(self) -> None:
        self.ticks: list[tuple[int, float]] = []
        self.syncs = 0


@pytest.fixture
def worker(prefix: str, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[Any, Engine, FakeWorld, Published]]:
    from workers.tasks import app as tasks

    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    world = FakeWorld.seeded(["a", "b", "c", "d"])
    engine = Engine(fleet, store, world)  # type: ignore[arg-type]
    out = Published()
    monkeypatch.setattr(tasks, "context", lambda: SimpleNamespace(engine=engine, store=store,
                                                                ports=world))
    monkeypatch.setattr(tasks.tick_task, "apply_async",
                        lambda args, countdown=0, **kw: out.ticks.append((args[1], countdown)))

    def sync(run_id: str) -> None:
        out.syncs += 1

    monkeypatch.setattr(tasks.notify_task, "delay", sync)
    try:
        yield tasks, engine, world, out
    finally:
        keys = list(store.r.scan_iter(prefix + "*"))
        if keys:
            store.r.delete(*keys)


def to_first_wave(tasks: Any, engine: Engine, out: Published) -> str:
    """A run approved and ticked (one task at a time, as the worker would, one step a task)
    until its first wave's baseline is the next step; its id."""
    chained, tasks.CHAINED_STEPS = tasks.CHAINED_STEPS, 1
    try:
        return _to_first_wave(tasks, engine, out)
    finally:
        tasks.CHAINED_STEPS = chained


def _to_first_wave(tasks: Any, engine: Engine, out: Published) -> str:
    requester, approver = sorted(engine.fleet.cluster(CLUSTER).approvers)[:2]
    run = engine.start(StartRun("upgrade", CLUSTER, "asm-1-26"), requester, "C0123456789")
    tasks.tick_task(run.id, run.seq)
    assert engine.store.get(run.id).phase == Phase.AWAITING_APPROVAL, \
        engine.store.get(run.id).outcome
    run = engine.decide(run.id, "approve", approver)
    out.ticks[:] = [(run.seq, 0.0)]
    for _ in range(30):
        run = engine.store.get(run.id)
        wave = run.current_wave
        if run.phase == Phase.MIGRATING and wave is not None and wave.step == WaveStep.BASELINE:
            return run.id
        seq, _countdown = out.ticks.pop()
        tasks.tick_task(run.id, seq)
    raise AssertionError(f"never reached the first wave: {run.phase} {run.history[-3:]}")


def test_a_waves_baseline_label_and_restart_are_one_task(worker: Any) -> None:
    tasks, engine, world, out = worker
    run_id = to_first_wave(tasks, engine, out)
    before = engine.store.get(run_id)
    syncs = out.syncs
    ((seq, _),) = out.ticks
    out.ticks.clear()
    tasks.tick_task(run_id, seq)
    after = engine.store.get(run_id)
    steps = [e.text for e in after.history[len(before.history):]]
    assert [s.split(": ", 1)[1].split(" ")[0] for s in steps] == \
        ["baseline:", "labelled", "restarted"], steps
    assert after.current_wave is not None and after.current_wave.step == WaveStep.VERIFY
    assert after.seq == before.seq + 3  # three saves, one per step
    # one tick, for the rollout's first look, not for a step due at once; one sync
    assert out.ticks == [(after.seq, pytest.approx(after.next_tick_at - after.updated_at,
                                                   abs=0.2))]
    assert out.ticks[0][1] > 0
    assert out.syncs == syncs + 1
    assert world.writes[f"label:{after.current_wave.namespaces[0]}:asm-1-26"] == 1


def test_from_the_canary_control_plane_to_the_first_restart_is_one_task(
        worker: Any) -> None:
    """The task that finds the canary's ARM operation done goes on through istiod, the
    first wave's baseline, label and restart (five steps, each due at once): one more trip
    through the queue there cost every run of a 30-run fleet about 2.5 s (issue 13)."""
    tasks, engine, world, out = worker
    requester, approver = sorted(engine.fleet.cluster(CLUSTER).approvers)[:2]
    run = engine.start(StartRun("upgrade", CLUSTER, "asm-1-26"), requester, "C0123456789")
    tasks.tick_task(run.id, run.seq)
    run = engine.decide(run.id, "approve", approver)
    out.ticks[:] = [(run.seq, 0.0)]
    for _ in range(30):  # one task at a time, as the worker takes them
        before = engine.store.get(run.id)
        seq, _countdown = out.ticks.pop()
        tasks.tick_task(run.id, seq)
        after = engine.store.get(run.id)
        steps = [e.text for e in after.history[len(before.history):]]
        if any("deployed beside" in s for s in steps):
            break
    else:
        raise AssertionError(f"the canary control plane never came: {after.history[-3:]}")
    assert any("istiod-asm-1-26 available" in s for s in steps), steps
    assert [s.split(": ", 1)[-1].split(" ")[0] for s in steps[-3:]] == \
        ["baseline:", "labelled", "restarted"], steps
    assert after.current_wave is not None and after.current_wave.step == WaveStep.VERIFY
    assert out.ticks and out.ticks[-1][1] > 0  # next: the rollout's first look


def test_a_chain_is_bounded_and_the_rest_is_scheduled_at_once(
        worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tasks, engine, world, out = worker
    monkeypatch.setattr(tasks, "CHAINED_STEPS", 2)
    run_id = to_first_wave(tasks, engine, out)
    ((seq, _),) = out.ticks
    out.ticks.clear()
    tasks.tick_task(run_id, seq)
    run = engine.store.get(run_id)
    assert run.current_wave is not None and run.current_wave.step == WaveStep.RESTART
    assert out.ticks == [(run.seq, 0.0)]  # the restart: due at once, through the queue


def test_a_chained_step_that_fails_leaves_the_run_at_the_step_before(
        worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tasks, engine, world, out = worker
    run_id = to_first_wave(tasks, engine, out)
    ((seq, _),) = out.ticks
    out.ticks.clear()
    syncs = out.syncs
    real = engine.advance
    calls = []

    def advance(rid: str, s: int) -> Any:
        calls.append(s)
        if len(calls) == 2:  # the label step: Redis went away under the worker
            raise TemporaryError("Redis did not answer")
        return real(rid, s)

    monkeypatch.setattr(engine, "advance", advance)
    with pytest.raises(TemporaryError):
        tasks.tick_task(run_id, seq)
    run = engine.store.get(run_id)
    assert run.current_wave is not None and run.current_wave.step == WaveStep.LABEL
    assert run.next_tick_at is not None and run.next_tick_at <= run.updated_at  # the sweep's
    assert out.ticks == []  # not re-queued at once (a failing step would spin)
    assert out.syncs == syncs + 1  # the baseline's line is shown all the same


def test_a_tick_that_finds_its_run_locked_tries_again_until_it_is_free(
        worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock's holder may be a tick of an older seq, which leaves at once without
    scheduling anything: the tick of the latest seq must not be dropped (it was, and the
    run then waited for the sweep's grace)."""
    tasks, engine, world, out = worker
    run_id = to_first_wave(tasks, engine, out)
    ((seq, _),) = out.ticks
    retried: list[tuple[tuple[str, int], dict[str, int], float]] = []
    monkeypatch.setattr(tasks.tick_task, "apply_async",
                        lambda args, kwargs=None, countdown=0, **kw:
                        retried.append((args, kwargs or {}, countdown)))
    lock = engine.store.lock(run_id)
    assert lock.acquire(blocking=False)
    try:
        tasks.tick_task(run_id, seq)
        tasks.tick_task(run_id, seq, **retried[-1][1])
    finally:
        lock.release()
    assert retried == [((run_id, seq), {"busy": 1}, tasks.LOCKED_TICK_RETRY_S),
                       ((run_id, seq), {"busy": 2}, 2 * tasks.LOCKED_TICK_RETRY_S)]
    assert engine.store.get(run_id).seq == seq  # nothing ran while locked
    tasks.tick_task(run_id, seq, **retried[-1][1])
    run = engine.store.get(run_id)
    assert run.seq > seq and run.current_wave is not None
    assert run.current_wave.step == WaveStep.VERIFY  # the retried tick took the steps


def test_the_next_tick_is_due_when_the_step_asked_from_its_start(
        worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step that took a while (a look read Prometheus at fleet load) does not push its
    next tick back by as long: the countdown runs to the saved ``next_tick_at``, which
    counts from the step's start."""
    import time

    tasks, engine, world, out = worker
    run_id = to_first_wave(tasks, engine, out)
    ((seq, _),) = out.ticks
    out.ticks.clear()
    started = time.time() - 0.4  # the chain began 0.4 s before it ends
    monkeypatch.setattr(engine, "clock", lambda: started)
    tasks.tick_task(run_id, seq)
    after = engine.store.get(run_id)
    assert after.current_wave is not None and after.current_wave.step == WaveStep.VERIFY
    assert after.next_tick_at == pytest.approx(started + POLL_S)  # watched: a fallback look
    ((_, countdown),) = out.ticks
    assert countdown == pytest.approx(POLL_S - 0.4, abs=0.1)

