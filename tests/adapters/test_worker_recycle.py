"""A pool process whose peak memory passes ``--max-memory-per-child`` is replaced once its
task is done, and the runs go on in the next one (:mod:`workers.heap`: what a process
frees its allocator keeps). A real ``meshops worker`` on the suite's Redis, under a prefix
of the test's own; a limit of 1 KiB makes every task its process' last."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

# what the engine benchmark reads the peaks with
from benchmarks.engine import EX_RECYCLE, EXITED
from meshops.cli import main
from tests.adapters.celery_worker import start_meshops_worker
from tests.adapters.test_broker_restart import wait_for
from tests.adapters.test_slack_charts import canary_run
from tests.conftest import REDIS_URL, free_port_base
from tests.core.test_workflow import new_run
from workers.heap import MAX_MEMORY_PER_CHILD_KIB
from workers.store.runs import RedisRunStore


def test_a_process_past_the_limit_is_replaced_after_its_task_and_the_runs_go_on(
        tmp_path: Path, prefix: str) -> None:
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    now = time.time()
    for run_id, cluster in (("r-first00001", "prod-weu"), ("r-second0001", "dev-weu")):
        # due now: the worker's resume ticks both at once, one task each
        store.create(new_run().evolve(id=run_id, cluster=cluster, next_tick_at=now - 60,
                                      created_at=now, updated_at=now))
    log = tmp_path / "worker.log"
    worker = start_meshops_worker(REDIS_URL, prefix, log, free_port_base(19100, 19900),
                                  "--max-memory-per-child", "1")
    try:
        assert wait_for(log, "run_id='r-first00001'", 60) and wait_for(
            log, "run_id='r-second0001'", 60) and wait_for(
            log, "worker.process_exit", 30, count=3), log.read_text()[-3000:]
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    text = log.read_text(errors="replace")
    exits = [m.groups() for m in EXITED.finditer(text)]
    assert len(exits) >= 3, text[-3000:]
    # each left with its peak, a Python process' tens of MB, and by Celery's recycling,
    # not a crash; each was a different process
    assert all(int(code) == EX_RECYCLE and int(kib) > 20_000 for _, code, kib in exits), exits
    assert len({pid for pid, _, _ in exits}) == len(exits)
    # both runs were ticked, and (one pool process at a time) a tick ran in a process
    # that came after a replaced one
    lines = text.splitlines()
    ticked = [i for i, line in enumerate(lines)
              if "meshops.tick[" in line and "succeeded" in line]
    for run_id in ("r-first00001", "r-second0001"):
        assert any(run_id in lines[i] for i in ticked), run_id
    first_exit = next(i for i, line in enumerate(lines) if "worker.process_exit" in line)
    assert any(i > first_exit for i in ticked), "\n".join(lines[-30:])


def test_a_process_that_ends_reaps_its_chart_interpreter(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """Else the interpreter, orphaned, waits after every replacement for whoever adopts
    it to reap it: the worker's main process waits for its pool processes only, and the
    image's init (tini) reaps only what is orphaned up to it."""
    from workers.slack import charts
    from workers.tasks import app as tasks

    drawer = charts.ChartDrawer()
    monkeypatch.setattr(charts, "_DRAWER", drawer)
    assert charts.gate_chart(canary_run(3))[:4] == b"\x89PNG"
    proc = drawer._proc
    assert proc is not None and proc.poll() is None
    tasks._on_process_exit(pid=os.getpid(), exitcode=EX_RECYCLE)
    assert proc.returncode is not None  # waited for: no zombie left
    assert not Path(f"/proc/{proc.pid}").exists()
    assert drawer._proc is None


@pytest.mark.parametrize(("options", "expected"), [
    ((), [f"--max-memory-per-child={MAX_MEMORY_PER_CHILD_KIB}"]),
    (("--max-memory-per-child", "262144"), ["--max-memory-per-child=262144"]),
    (("--max-memory-per-child", "0"), []),  # never: Celery's own default
])
def test_the_limit_reaches_celery(options: tuple[str, ...], expected: list[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from meshops import wiring
    from workers.tasks.app import app

    started: list[list[str]] = []
    monkeypatch.setattr(wiring, "check_config", lambda: None)
    monkeypatch.setattr(app, "worker_main", started.append)
    result = CliRunner().invoke(main, ["worker", *options])
    assert result.exit_code == 0, result.output
    assert [a for a in started[0] if a.startswith("--max-memory")] == expected
    bad = CliRunner().invoke(main, ["worker", "--max-memory-per-child", "-1"])
    assert bad.exit_code == 2 and "-1 is not in the range x>=0" in bad.output
