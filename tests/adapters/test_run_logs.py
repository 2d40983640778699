"""Every line logged while a run is handled says which run and cluster: meshops' own events
and the lines of the libraries it calls (stdlib logging), through a tick and a decision of
the engine on a real Redis, with the logging of ``meshops`` processes
(:func:`meshops.logs.configure_logging`); nothing is left bound afterwards.

In a process of its own, so that its logging configuration is the product's and stays
there. (The Celery tasks' own lines are checked with a real worker in
``test_worker_health.py``.)"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REDIS_URL, ROOT

SCRIPT = r"""
import logging, sys
import structlog
from meshops.logs import configure_logging
from tests.core.fakes import FakeWorld
from workers.config import load_fleet
from workers.engine import Engine
from workers.store.runs import RedisRunStore
from workflows.kind import StartRun

configure_logging("INFO")
log = structlog.get_logger("meshops.test")
library = logging.getLogger("azure.core.pipeline.policies")


class World(FakeWorld):
    def get_mesh(self, cluster):
        library.info("Request URL: 'https://management.azure.com/…' (%s)", "GET")
        log.info("world.read", what="mesh")
        return super().get_mesh(cluster)


url, prefix = sys.argv[1], sys.argv[2]
store = RedisRunStore.from_url(url, prefix)
clock = {"now": 1_800_000_000.0}
engine = Engine(load_fleet("examples/fleet.azure.yaml"), store, World.seeded(["a"]),
                clock=lambda: clock["now"])
try:
    run = engine.start(StartRun("upgrade", "dev-weu", "asm-1-26"), "U0AAAAAAA", "C0")
    print("--- tick", run.id, file=sys.stderr, flush=True)
    engine.advance(run.id, run.seq)
    print("--- decide", file=sys.stderr, flush=True)
    run = store.get(run.id)
    while not run.phase.waiting_for_person:
        engine.advance(run.id, run.seq)
        run = store.get(run.id)
    engine.decide(run.id, "approve", "U0BBBBBBB")
    print("--- after", file=sys.stderr, flush=True)
    log.info("after.run")
    library.info("a library line after the run")
finally:
    keys = list(store.r.scan_iter(prefix + ":*"))
    if keys:
        store.r.delete(*keys)
"""


def test_lines_logged_during_a_tick_and_a_decision_carry_run_id_and_cluster(
        prefix: str) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, REDIS_URL, prefix], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    tick = next(i for i, line in enumerate(lines) if line.startswith("--- tick"))
    run_id = lines[tick].split()[-1]
    decide = lines.index("--- decide")
    after = lines.index("--- after")
    during = [line for line in lines[tick + 1:after] if not line.startswith("---")]
    tagged = f"run_id='{run_id}'"
    assert any("world.read" in line for line in lines[tick:decide]), done.stderr
    assert any("Request URL" in line for line in lines[tick:decide]), done.stderr
    assert any("run.decided" in line for line in lines[decide:after]), done.stderr
    untagged = [line for line in during if tagged not in line or "cluster='dev-weu'" not in line]
    assert not untagged, "\n".join(untagged)
    for line in lines[after + 1:]:
        assert "run_id=" not in line and "cluster=" not in line, line
    assert any("after.run" in line for line in lines[after + 1:])
