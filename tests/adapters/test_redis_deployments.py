"""Redis as teams run it on Azure (issue 11): TLS (``rediss://``, as Azure Cache for Redis
and Azure Managed Redis require) and Redis Sentinel, for the run store and the Celery broker
alike. Against redis-servers of the test's own: one with TLS and a CA made for the test, and
a master with a sentinel watching it."""

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

from sandbox.certs import make_cluster_ca
from tests.adapters.celery_worker import start_worker
from tests.conftest import free_port_base
from tests.core.test_workflow import new_run
from workers.store.connect import celery_broker, parse, redis_client
from workers.store.runs import RedisRunStore
from workflows.errors import ConfigError, TemporaryError

REDIS_SERVER = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(REDIS_SERVER is None,
                                 reason="no redis-server binary: ./scripts/setup installs it")


def test_the_url_forms() -> None:
    plain = parse("redis://:pw@cache:6379/2")
    assert (plain.scheme, plain.db, plain.password) == ("redis", 2, "pw")
    tls = parse("rediss://:key@x.redis.cache.windows.net:6380/0?ssl_ca_certs=/etc/ca.pem")
    assert (tls.scheme, tls.ca_certs, tls.url) == (
        "rediss", "/etc/ca.pem", "rediss://:key@x.redis.cache.windows.net:6380/0")
    sentinel_url = "sentinel://:pw@s1:26379;sentinel://s2:26380/1?master_name=meshops"
    sentinel = parse(sentinel_url)
    assert sentinel.sentinels == [("s1", 26379), ("s2", 26380)]
    assert (sentinel.master_name, sentinel.db, sentinel.password) == ("meshops", 1, "pw")
    broker = celery_broker(sentinel_url, "p:")
    assert broker["broker_transport_options"]["master_name"] == "meshops"
    assert broker["broker_transport"] == "workers.tasks.broker:SentinelTransport"
    with pytest.raises(ConfigError, match="expected redis://host:6379/0, rediss://"):
        parse("http://cache:6379")
    with pytest.raises(ConfigError, match="several hosts need sentinel://"):
        parse("redis://a:6379;redis://b:6379/0")


def start(*args: str, port: int) -> subprocess.Popen[bytes]:
    assert REDIS_SERVER is not None
    proc = subprocess.Popen([REDIS_SERVER, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            import socket
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server {args} did not start")


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    files = make_cluster_ca(tmp_path, "redis")
    ca, cert, key = files.ca, files.cert, files.key
    port = free_port_base(18000, 19000)
    proc = start("--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                 "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                 "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--save", "",
                 "--appendonly", "no", "--dir", str(tmp_path), port=port)
    yield port, ca
    proc.kill()
    proc.wait(10)


@pytest.fixture
def sentinel_redis(tmp_path: Path) -> Iterator[int]:
    master = free_port_base(19000, 19500)
    sentinel = free_port_base(19500, 20000)
    procs = [start("--port", str(master), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(tmp_path), port=master)]
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sentinel}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor meshops 127.0.0.1 {master} 1\n")
    procs.append(start(str(conf), "--sentinel", port=sentinel))
    yield sentinel
    for p in procs:
        p.kill()
        p.wait(10)


def store_round_trip(url: str) -> None:
    store = RedisRunStore.from_url(url, "meshops-deploy-test")
    run = new_run().evolve(id="r-0c0c0c0c0c")
    store.create(run)
    assert store.get(run.id).canary_revision == "asm-1-26"


def worker_consumes(url: str, tmp_path: Path) -> None:
    """A real worker on ``url`` takes a task sent through the same broker settings."""
    prefix = "meshops-deploy-test"
    log = tmp_path / "worker.log"
    worker = start_worker(url, prefix, log)
    client = Celery("test")
    client.conf.update(task_default_queue=prefix, **celery_broker(url, f"{prefix}:kombu:"))
    try:
        sent = client.send_task("meshops.tick", ("r-none", 1))
        deadline = time.time() + 30
        while time.time() < deadline and f"[{sent.id}] received" not in log.read_text():
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        assert f"[{sent.id}] received" in log.read_text(), log.read_text()[-3000:]
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)


@needs_redis
def test_tls_for_the_store_and_the_broker(tls_redis: tuple[int, Path], tmp_path: Path
                                          ) -> None:
    port, ca = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    store_round_trip(url)
    worker_consumes(url, tmp_path)
    # the server's certificate is verified: without its CA the store refuses to talk
    with pytest.raises(TemporaryError, match="Redis unavailable"):
        store_round_trip(f"rediss://127.0.0.1:{port}/0")
    with pytest.raises(redis.ConnectionError):
        redis_client(f"redis://127.0.0.1:{port}/0").ping()  # and never in clear


@needs_redis
def test_sentinel_for_the_store_and_the_broker(sentinel_redis: int, tmp_path: Path) -> None:
    url = f"sentinel://127.0.0.1:{sentinel_redis}/0?master_name=meshops"
    store_round_trip(url)
    worker_consumes(url, tmp_path)
