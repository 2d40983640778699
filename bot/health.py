"""The bot's health endpoints, in front of everything else it serves over HTTP.

- ``GET /livez``: 200 while the process serves HTTP (a Kubernetes liveness probe: a bot that
  no longer answers is restarted).
- ``GET /readyz``: 200 when the run store (Redis) answers a PING (within the client's
  timeouts), else 503 with the reason — a bot that cannot record a decision should get no
  clicks (a readiness probe takes it out of the Service meanwhile; it is not restarted for
  it). One check runs at a time: a ``/readyz`` arriving while one is still running (Redis
  unreachable, its timeouts and retries take tens of seconds) is answered 503 at once, so
  probes that time out and come back cannot take every server thread and starve
  ``/livez`` and Slack's requests.
Neither needs a signature: they say nothing about runs.

In Socket Mode (``SLACK_APP_TOKEN`` set) Slack's requests come over a WebSocket the bot
opens, and there is no HTTP server for Slack; :func:`start_health_server` serves the same two
endpoints alone on the bot's ``--port``, and ``/readyz`` also answers 503 while the Socket
Mode connection is not open (:func:`socket_ready`: at start, and while the client
reconnects). Nothing routes to a Socket Mode bot through a Service, so there readiness is
what a rolling update waits for before it stops the old bot.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import structlog

from bot.http import ServerThread, make_server

log = structlog.get_logger("meshops.bot")

LIVEZ, READYZ = "/livez", "/readyz"

Ready = Callable[[], str | None]


def health_app(inner: Callable[..., Iterable[bytes]], ready: Ready
               ) -> Callable[..., Iterable[bytes]]:
    """``inner`` with ``/livez`` and ``/readyz`` in front; ``ready()`` returns None when
    ready, else why not (called by one request at a time: :func:`one_at_a_time`)."""
    ready = one_at_a_time(ready)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path not in (LIVEZ, READYZ) or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return inner(environ, start_response)
        problem = None if path == LIVEZ else ready()
        status = "200 OK" if problem is None else "503 Service Unavailable"
        body = json.dumps({"ok": problem is None, **({"reason": problem} if problem else {})
                           }).encode()
        start_response(status, [("Content-Type", "application/json"),
                                 ("Content-Length", str(len(body)))])
        return [body]

    return app


#: the reason of a ``/readyz`` that came while the previous check was still running
STILL_CHECKING = "the previous readiness check has not finished (Redis slow or unreachable)"


def one_at_a_time(check: Ready) -> Ready:
    """``check``, run by one caller at a time; a caller arriving meanwhile gets
    :data:`STILL_CHECKING` at once instead of waiting."""
    running = threading.Lock()

    def guarded() -> str | None:
        if not running.acquire(blocking=False):
            return STILL_CHECKING
        try:
            return check()
        finally:
            running.release()

    return guarded


def redis_ready(ping: Callable[[], Any]) -> Ready:
    """A readiness check on a Redis client's ``ping`` (its socket timeouts bound it)."""

    def check() -> str | None:
        try:
            ping()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready, said as such
            return f"redis: {type(exc).__name__}: {str(exc)[:200]}"
        return None

    return check


class SocketModeConnection(Protocol):
    """What :func:`socket_ready` needs of a Socket Mode client (slack_sdk's
    ``SocketModeClient``)."""

    def is_connected(self) -> bool: ...


def socket_ready(client: SocketModeConnection) -> Ready:
    """A readiness check that the Socket Mode WebSocket is open."""

    def check() -> str | None:
        try:
            if client.is_connected():
                return None
        except Exception as exc:  # noqa: BLE001 - any failure means not connected
            return f"slack: {type(exc).__name__}: {str(exc)[:200]}"
        return "slack: the Socket Mode connection is not open (connecting or reconnecting)"

    return check


def all_ready(*checks: Ready) -> Ready:
    """Ready when every one of ``checks`` is; else every reason, joined with ``"; "``."""

    def check() -> str | None:
        problems = [p for p in (c() for c in checks) if p is not None]
        return "; ".join(problems) or None

    return check


def not_found(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """404 for every path but the health endpoints (Socket Mode serves nothing else)."""
    body = json.dumps({"error": f"only {LIVEZ} and {READYZ} are served here"}).encode()
    start_response("404 Not Found", [("Content-Type", "application/json"),
                                     ("Content-Length", str(len(body)))])
    return [body]


def start_health_server(ready: Ready, host: str, port: int) -> Any | None:
    """Serve ``/livez`` and ``/readyz`` (and nothing else) on ``host:port`` from a daemon
    thread, for a bot in Socket Mode.

    Returns:
        The server and its thread (:class:`bot.http.ServerThread`: ``.close()`` stops it),
        or None when the port cannot be bound:
        the bot still takes Slack's requests without its endpoints, and says so loudly
        (its probes then fail, as the worker's do: :mod:`workers.health`).
    """
    try:
        server = make_server(health_app(not_found, ready), host, port, threads=2)
    except OSError as exc:
        log.error("bot.health_unavailable", host=host, port=port, error=str(exc))
        return None
    serving = ServerThread(server, "meshops-bot-health")
    log.info("bot.health_serving", host=host, port=port, paths=f"{LIVEZ} {READYZ}")
    return serving
