"""A worker that starts takes up at once the ticks the one before it dropped (``meshops.resume``
on Celery's ``worker_ready``): a run due for a tick is ticked within a second or two of the
worker being ready, not after the beat sweep's 15-s grace (no beat runs here), and a run due
later is ticked at its time, not before. A real ``meshops worker`` on the suite's Redis,
under a prefix of the test's own."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.adapters.celery_worker import start_meshops_worker
from tests.adapters.test_broker_restart import wait_for
from tests.conftest import REDIS_URL, ROOT, free_port_base
from tests.core.fakes import FakeWorld
from tests.core.test_workflow import new_run
from workers.config import load_fleet
from workers.engine import SWEEP_GRACE_S, Engine
from workers.store.runs import RedisRunStore

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def at(line: str) -> float:
    m = STAMP.match(line)
    assert m, line
    return time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S")) + \
        int(m.group(1)[20:]) / 1000


def first(lines: list[str], *needles: str) -> str:
    return next(line for line in lines if all(n in line for n in needles))


def test_a_starting_worker_ticks_the_runs_the_last_one_dropped(tmp_path: Path,
                                                               prefix: str) -> None:
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    now = time.time()
    # the last worker died holding these runs' ticks: one due a minute ago, one in 4 s
    due = new_run().evolve(id="r-due0000001", cluster="prod-weu", next_tick_at=now - 60,
                           created_at=now, updated_at=now)
    later = new_run().evolve(id="r-later00001", cluster="dev-weu", next_tick_at=now + 4,
                             created_at=now, updated_at=now)
    store.create(due)
    store.create(later)
    log = tmp_path / "worker.log"
    worker = start_meshops_worker(REDIS_URL, prefix, log, free_port_base(19100, 19900))
    try:
        assert wait_for(log, "run_id='r-later00001'", 60) and wait_for(
            log, "meshops.tick[", 30, count=4), log.read_text()[-3000:]
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    lines = log.read_text(errors="replace").splitlines()
    ready = at(first(lines, "ready."))
    ticked = at(first(lines, "meshops.tick[", "run_id='r-due0000001'"))
    assert ticked - ready < SWEEP_GRACE_S / 3, "\n".join(lines[-40:])
    asked = first(lines, "resume.tick", "run_id='r-later00001'")
    assert float(re.search(r"due_in_s=([-\d.]+)", asked).group(1)) > 0  # type: ignore[union-attr]
    ticked_later = at(first(lines, "meshops.tick[", "run_id='r-later00001'"))
    assert ticked_later >= now + 4 - 0.5, "\n".join(lines[-40:])  # at its time, not before


def test_resume_leaves_a_run_due_beyond_its_horizon_to_the_sweep(
        prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ETA further out than the broker's visibility timeout is delivered again each time
    it passes: a run due in an hour (a maintenance window) is not given one."""
    from workers.tasks import app as tasks

    store = RedisRunStore.from_url(REDIS_URL, prefix)
    now = time.time()
    store.create(new_run().evolve(id="r-soon000001", cluster="prod-weu",
                                  next_tick_at=now + 30, created_at=now, updated_at=now))
    store.create(new_run().evolve(id="r-hour000001", cluster="dev-weu",
                                  next_tick_at=now + 3600, created_at=now, updated_at=now))
    engine = Engine(load_fleet(ROOT / "examples" / "fleet.azure.yaml"), store,
                    FakeWorld.seeded(["a"]))  # type: ignore[arg-type]
    monkeypatch.setattr(tasks, "context", lambda: SimpleNamespace(engine=engine, store=store))
    ticks: list[tuple[str, float]] = []
    monkeypatch.setattr(tasks.tick_task, "apply_async",
                        lambda args, countdown=0, **kw: ticks.append((args[0], countdown)))
    monkeypatch.setattr(tasks.notify_task, "delay", lambda run_id: None)
    try:
        tasks.resume_task()
    finally:
        keys = list(store.r.scan_iter(prefix + "*"))
        if keys:
            store.r.delete(*keys)
    assert [r for r, _ in ticks] == ["r-soon000001"]
    assert 25 < ticks[0][1] <= 30
