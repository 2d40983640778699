"""Beat's liveness: a real ``meshops beat`` stamps each tick (``<schedule>.alive`` and
``{prefix}:beat:heartbeat`` in Redis); ``meshops probe beat`` passes while it runs and fails
once it has stopped ticking, or before it ever ticked. With no worker consuming, the sweeps
it sends pile up in the queue: ``meshops_queue_depth`` grows, as the alert expects."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client import generate_latest

from tests.adapters.test_metrics import value
from tests.conftest import REDIS_URL, ROOT
from workers.metrics import QueueKeys, registry
from workers.store.runs import RedisRunStore


def probe(schedule: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshops", "probe", "beat", "--schedule",
                           str(schedule), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=30)


def test_the_beat_probe_passes_while_beat_ticks_and_fails_once_it_stopped(
        store: RedisRunStore, tmp_path: Path) -> None:
    schedule = tmp_path / "celerybeat-schedule"
    never = probe(schedule)
    assert never.returncode == 1 and "has not ticked yet" in never.stderr

    env = {**os.environ, "REDIS_URL": REDIS_URL, "MESHOPS_REDIS_PREFIX": store.p,
           "MESHOPS_FLEET": str(ROOT / "examples" / "fleet.azure.yaml"),
           "SLACK_BOT_TOKEN": "xoxb-test"}
    log = tmp_path / "beat.log"
    with log.open("w") as out:
        beat = subprocess.Popen([sys.executable, "-m", "meshops", "beat", "--schedule",
                                 str(schedule)], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and probe(schedule).returncode != 0:
            time.sleep(0.5)
        alive = probe(schedule)
        assert alive.returncode == 0, alive.stderr + log.read_text()[-2000:]
        assert alive.stdout.startswith("beat ticked ")
        time.sleep(6)  # a sweep (every 5 s) or two more, nobody consuming them
        text = generate_latest(registry(store, QueueKeys.of(f"{store.p}:kombu:", store.p)))
        stamp = value(text.decode(), "meshops_beat_last_tick_timestamp_seconds")
        assert time.time() - 15 < stamp <= time.time()
        assert value(text.decode(), "meshops_queue_depth") >= 2
    finally:
        os.killpg(beat.pid, signal.SIGKILL)
        beat.wait(10)
    time.sleep(2.5)
    dead = probe(schedule, "--max-age", "2")
    assert dead.returncode == 1 and "beat last ticked" in dead.stderr, dead.stderr
