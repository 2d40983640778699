"""Health of a Celery worker for its orchestrator: ``/livez``, ``/readyz`` and ``/metrics``.

Two Celery bootsteps (registered in :mod:`workers.tasks.app`):

- :class:`HealthServer` (a worker step) serves HTTP on ``MESHOPS_HEALTH_PORT`` (default
  9100; 0: no server) at ``MESHOPS_HEALTH_HOST`` (default ``0.0.0.0``) from the worker's
  main process, from before the consumer connects until the worker shuts down;
- :class:`HealthProbe` (a consumer step, started once the consumer consumes) stamps a
  heartbeat from a timer of the consumer's event loop every :data:`HEARTBEAT_S` seconds
  (``Consumer.timer``: the hub's timer, driven by the loop itself; a pool without the hub
  (threads, gevent) has a timer thread instead, which proves less), and tells the server
  when the consumer stops (connection lost) and starts again.

``GET /livez`` — 200 while the consumer's loop has run within :data:`STALE_S` seconds (with
the prefork pool of ``meshops worker`` tasks run in child processes and never hold the loop;
with ``-P solo`` a task runs in the loop, so one longer than that fails it); while
the consumer is (re)connecting to the broker the loop is not meant to run, so 200 for up to
:data:`CONNECT_GRACE_S` seconds of connecting, then 503 (a worker stuck connecting). A
restart is what a 503 asks for: restarting will not bring Redis back, so an outage of Redis
alone never fails it.

``GET /readyz`` — 200 when the consumer is consuming (its blueprint running, its broker
connection open, past the step that starts consuming), its loop alive, and the run store's
Redis answers ``PING`` within 2 s; else 503 with the reason (``redis: ConnectionError…``,
``not consuming: …``). It says whether this worker is taking work now.

``GET /metrics`` — the Prometheus exposition of :mod:`workers.metrics` (read from Redis at
each scrape) and the main process's ``process_*`` metrics.

Bodies are one line of text: ``ok: <what was checked>`` or the reason it failed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
import structlog
from celery import bootsteps
from celery.bootsteps import RUN
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from redis.exceptions import RedisError

from workers.metrics import QueueKeys, registry
from workers.store.connect import redis_client
from workers.store.runs import RedisRunStore

log = structlog.get_logger("meshops.health")

PORT_ENV, HOST_ENV = "MESHOPS_HEALTH_PORT", "MESHOPS_HEALTH_HOST"
DEFAULT_PORT = 9100
HEARTBEAT_S = 5.0  # the event loop stamps its heartbeat this often
STALE_S = 30.0  # /livez fails once the loop has not stamped it for this long
CONNECT_GRACE_S = 300.0  # /livez fails once the consumer has been connecting this long
PING_TIMEOUT_S = 2.0
SCRAPE_TIMEOUT_S = 5.0


def health_port() -> int:
    """``MESHOPS_HEALTH_PORT`` (default 9100; 0: off)."""
    raw = os.environ.get(PORT_ENV, "").strip()
    try:
        return int(raw) if raw else DEFAULT_PORT
    except ValueError:
        log.warning("health.bad_port", value=raw, using=DEFAULT_PORT)
        return DEFAULT_PORT


class WorkerHealth:
    """What the consumer of this process last did, as the endpoints see it (monotonic
    seconds). One per process: Celery runs one worker per process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.consumer: Any = None
        self.consuming = False
        self.heartbeat_at = clock()
        self.connecting_since: float | None = clock()

    def beat(self) -> None:
        self.heartbeat_at = self.clock()

    def started(self, consumer: Any) -> None:
        self.consumer = consumer
        self.heartbeat_at = self.clock()
        self.connecting_since = None
        self.consuming = True

    def stopped(self) -> None:
        if self.consuming or self.connecting_since is None:
            self.connecting_since = self.clock()
        self.consuming = False

    def liveness(self) -> tuple[bool, str]:
        """(alive, why): see the module docstring."""
        now = self.clock()
        if self.consuming:
            age = now - self.heartbeat_at
            if age > STALE_S:
                return False, f"the event loop has not run for {age:.0f} s"
            return True, f"the event loop ran {age:.0f} s ago"
        since = now - (self.connecting_since if self.connecting_since is not None else now)
        if since > CONNECT_GRACE_S:
            return False, f"connecting to the broker for {since:.0f} s"
        return True, f"connecting to the broker ({since:.0f} s)"

    def readiness(self, ping: Callable[[], object]) -> tuple[bool, str]:
        """(ready, why): consuming, the loop alive, and ``ping`` (Redis) answered."""
        consumer = self.consumer
        if not self.consuming or consumer is None:
            return False, "not consuming: connecting to the broker"
        if getattr(consumer.blueprint, "state", None) != RUN:
            return False, "not consuming: the consumer is stopping"
        connection = consumer.connection
        if connection is None or not connection.connected:
            return False, "not consuming: no broker connection"
        alive, why = self.liveness()
        if not alive:
            return False, why
        try:
            ping()
        except (RedisError, OSError) as exc:
            return False, f"redis: {type(exc).__name__}: {exc}"
        return True, "consuming; redis answers"


HEALTH = WorkerHealth()


def _client(url: str, timeout_s: float) -> redis.Redis:
    """A client for ``url`` whose commands give up after ``timeout_s``."""
    client = redis_client(url)
    kwargs = client.connection_pool.connection_kwargs
    kwargs["socket_timeout"] = timeout_s
    kwargs["socket_connect_timeout"] = timeout_s
    return client


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(host: str, port: int, health: WorkerHealth, ping: Callable[[], object],
          metrics: CollectorRegistry) -> ThreadingHTTPServer:
    """Start the endpoints on ``host:port`` in a daemon thread; returns the server
    (``shutdown()`` stops it). Raises ``OSError`` when the port is taken."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            if path == "/livez":
                self._text(*health.liveness())
            elif path == "/readyz":
                self._text(*health.readiness(ping))
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics))
            else:
                self._send(404, "text/plain; charset=utf-8",
                           b"not found: /livez, /readyz or /metrics\n")

        def _text(self, ok: bool, why: str) -> None:
            body = (f"ok: {why}\n" if ok else f"{why}\n").encode()
            self._send(200 if ok else 503, "text/plain; charset=utf-8", body)

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # probes every few seconds: not worth a line each

    server = _Server((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="meshops-health", daemon=True).start()
    return server


class HealthServer(bootsteps.StartStopStep):  # type: ignore[misc]  # Celery is untyped
    """Worker bootstep: the HTTP endpoints of the module docstring, for the worker's life."""

    label = "meshops health"
    requires = ("celery.worker.components:Pool",)  # and before the consumer (always last)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.port = health_port()
        self.server: ThreadingHTTPServer | None = None
        super().__init__(worker, **kwargs)

    def include_if(self, worker: Any) -> bool:
        return self.port != 0

    def start(self, worker: Any) -> None:
        if self.server is not None:
            return
        url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        prefix = os.environ.get("MESHOPS_REDIS_PREFIX", "meshops")
        conf = worker.app.conf
        queue = QueueKeys.of((conf.broker_transport_options or {}).get("global_keyprefix", ""),
                             conf.task_default_queue)
        store = RedisRunStore(_client(url, SCRAPE_TIMEOUT_S), prefix)
        pinger = _client(url, PING_TIMEOUT_S)
        host = os.environ.get(HOST_ENV, "0.0.0.0")
        try:
            self.server = serve(host, self.port, HEALTH, pinger.ping, registry(store, queue))
        except OSError as exc:  # the worker works without its endpoints; say so loudly
            log.error("health.unavailable", host=host, port=self.port, error=str(exc))
            return
        log.info("health.serving", host=host, port=self.port,
                 paths="/livez /readyz /metrics")

    def stop(self, worker: Any) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def shutdown(self, worker: Any) -> None:
        self.stop(worker)

    def terminate(self, worker: Any) -> None:
        self.stop(worker)


class HealthProbe(bootsteps.StartStopStep):  # type: ignore[misc]  # Celery is untyped
    """Consumer bootstep: the event loop's heartbeat and the consumer's state, for
    :class:`HealthServer`. Started after the consumer starts consuming; stopped (and started
    again) with the consumer when the broker connection is lost."""

    label = "meshops health probe"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        self.entry: Any = None
        super().__init__(consumer, **kwargs)

    def start(self, consumer: Any) -> None:
        self.entry = consumer.timer.call_repeatedly(HEARTBEAT_S, HEALTH.beat)
        HEALTH.started(consumer)

    def stop(self, consumer: Any) -> None:
        HEALTH.stopped()
        if self.entry is not None:
            try:
                consumer.timer.cancel(self.entry)
            except Exception:  # noqa: BLE001 - already cancelled with the connection's entries
                pass
            self.entry = None

    def shutdown(self, consumer: Any) -> None:
        self.stop(consumer)
