"""A real Celery worker of meshops outlives a Redis restart while it holds ETA ticks
(issue 11, item 1: with kombu's own Redis transport it exits with "Unrecoverable error").
Against a redis-server of the test's own, killed and started again on the same port."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.adapters.celery_worker import start_worker
from tests.conftest import free_port_base

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None,
                                reason="no redis-server binary: ./scripts/setup installs it")


class RedisServer:
    """A redis-server on its own port; ``kill`` stops it at once, ``start`` brings it back."""

    def __init__(self, port: int, workdir: Path):
        self.port, self.workdir, self.proc = port, workdir, None

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen(  # type: ignore[assignment]
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    s = RedisServer(free_port_base(17000, 18000), tmp_path)
    s.start()
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.kill()


def wait_for(log: Path, needle: str, timeout: float = 30, count: int = 1) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.read_text(errors="replace").count(needle) >= count:
            return True
        time.sleep(0.2)
    return False


def test_the_worker_outlives_a_redis_restart_with_eta_ticks_held(
        server: RedisServer, tmp_path: Path) -> None:
    url, prefix = f"redis://127.0.0.1:{server.port}/0", "meshops-broker-test"
    log = tmp_path / "worker.log"
    worker = start_worker(url, prefix, log)
    client = Celery("test", broker=url)
    client.conf.update(broker_transport_options={"global_keyprefix": f"{prefix}:kombu:"},
                       task_default_queue=prefix)
    try:
        assert wait_for(log, "ready."), log.read_text()[-2000:]
        held = [client.send_task("meshops.tick", (f"r-held{i}", 1), countdown=120).id
                for i in range(3)]  # ticks the worker holds until their ETA, unacknowledged
        for task_id in held:
            assert wait_for(log, f"[{task_id}] received"), log.read_text()[-2000:]
        server.kill()
        time.sleep(2)
        server.start()
        time.sleep(6)  # the consumer notices, closes its channel and reconnects
        assert worker.poll() is None, "the worker exited:\n" + log.read_text()[-3000:]
        assert "Unrecoverable error" not in log.read_text()
        sent = client.send_task("meshops.tick", ("r-after", 1))
        assert wait_for(log, f"meshops.tick[{sent.id}] received"), log.read_text()[-3000:]
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
