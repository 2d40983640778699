"""A real worker (``meshops worker``: prefork, the product's logging) serves ``/livez``,
``/readyz`` and ``/metrics`` on ``MESHOPS_HEALTH_PORT``: ready while it consumes and its
Redis answers, 503 with the reason once the redis-server of the test's own is gone (while
``/livez`` stays 200: a restart would not bring Redis back), ready again once Redis is back.
Celery's own lines of a run's task carry its run id. The liveness rule itself (a stale
event loop, a consumer connecting for too long) is checked on a clock of the test's own."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery import Celery
from celery.bootsteps import RUN

from tests.adapters.celery_worker import start_meshops_worker
from tests.adapters.test_broker_restart import REDIS_SERVER, RedisServer, wait_for
from tests.adapters.test_metrics import value
from tests.conftest import free_port_base
from workers.health import CONNECT_GRACE_S, STALE_S, WorkerHealth


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def until(url: str, status: int, timeout: float) -> tuple[int, str]:
    """GET ``url`` until it answers ``status`` (or ``timeout`` s passed); the last answer."""
    deadline = time.time() + timeout
    answer = (0, "no answer")
    while time.time() < deadline:
        try:
            answer = get(url)
        except OSError as exc:  # not listening yet
            answer = (0, str(exc))
        if answer[0] == status:
            return answer
        time.sleep(0.3)
    return answer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("no redis-server binary: ./scripts/setup installs it")
    s = RedisServer(free_port_base(17000, 18000), tmp_path)
    s.start()
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.kill()


def test_a_worker_is_ready_while_it_consumes_and_not_once_its_redis_is_gone(
        server: RedisServer, tmp_path: Path, prefix: str) -> None:
    url = f"redis://127.0.0.1:{server.port}/0"
    port = free_port_base(19100, 19900)
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "worker.log"
    worker = start_meshops_worker(url, prefix, log, port)
    try:
        status, body = until(f"{base}/readyz", 200, 60)
        assert status == 200, body + log.read_text()[-3000:]
        assert body == "ok: consuming; redis answers\n"
        status, body = get(f"{base}/livez")
        assert status == 200 and body.startswith("ok: the event loop ran"), body
        # the worker's own first task (meshops.resume, asked for once it is ready) may
        # still be queued at the first scrape: the queue empties once it is taken
        deadline = time.time() + 10
        while True:
            status, text = get(f"{base}/metrics")
            assert status == 200
            if value(text, "meshops_queue_depth") == 0 or time.time() > deadline:
                break
            time.sleep(0.2)
        assert value(text, "meshops_store_up") == 1
        assert value(text, "meshops_queue_depth") == 0
        assert wait_for(log, "meshops.resume[", 10), log.read_text()[-3000:]

        client = Celery("test", broker=url)
        client.conf.update(broker_transport_options={"global_keyprefix": f"{prefix}:kombu:"},
                           task_default_queue=prefix)
        sent = client.send_task("meshops.tick", ("r-nosuch", 1))
        assert wait_for(log, f"meshops.tick[{sent.id}] succeeded"), log.read_text()[-3000:]
        lines = log.read_text().splitlines()
        done = next(line for line in lines if f"meshops.tick[{sent.id}] succeeded" in line)
        assert "run_id='r-nosuch'" in done  # Celery's own line, during the task
        assert any("tick.unknown_run" in line and "run_id='r-nosuch'" in line
                   for line in lines)
        # the main process froze what it imported before forking its pool (workers.heap)
        frozen = next(i for i, line in enumerate(lines) if "worker.heap_frozen" in line)
        assert frozen < next(i for i, line in enumerate(lines) if "meshops.resume[" in line)

        server.kill()
        status, body = until(f"{base}/readyz", 503, 20)
        assert status == 503, body
        assert body.startswith(("redis: ", "not consuming")), body
        status, body = get(f"{base}/livez")
        assert status == 200, body  # Redis away is not a reason to restart the worker
        status, text = get(f"{base}/metrics")
        assert status == 200 and value(text, "meshops_store_up") == 0

        server.start()
        status, body = until(f"{base}/readyz", 200, 90)
        assert status == 200, body + log.read_text()[-3000:]
        assert worker.poll() is None
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def consumer(connected: bool = True) -> SimpleNamespace:
    return SimpleNamespace(blueprint=SimpleNamespace(state=RUN),
                           connection=SimpleNamespace(connected=connected))


def test_liveness_fails_when_the_loop_stops_or_connecting_takes_too_long() -> None:
    clock = Clock()
    health = WorkerHealth(clock)
    assert health.liveness()[0]  # starting: connecting to the broker
    assert health.readiness(lambda: True) == (False, "not consuming: connecting to the broker")
    health.started(consumer())
    clock.now += STALE_S - 1
    assert health.liveness()[0]
    assert health.readiness(lambda: True) == (True, "consuming; redis answers")
    clock.now += 2  # the loop's timer has not run for longer than STALE_S
    alive, why = health.liveness()
    assert not alive and "has not run for" in why
    assert not health.readiness(lambda: True)[0]
    health.beat()
    assert health.liveness()[0]
    health.stopped()  # connection lost: the consumer reconnects
    clock.now += CONNECT_GRACE_S - 1
    assert health.liveness() == (True, f"connecting to the broker ({CONNECT_GRACE_S - 1:.0f} s)")
    clock.now += 2
    assert not health.liveness()[0]
    health.started(consumer(connected=False))
    assert health.readiness(lambda: True) == (False, "not consuming: no broker connection")
