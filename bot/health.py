"""The bot's health endpoints, in front of everything else it serves over HTTP.

- ``GET /livez``: 200 while the process serves HTTP (a Kubernetes liveness probe: a bot that
  no longer answers is restarted).
- ``GET /readyz``: 200 when the run store (Redis) answers a PING within two seconds, else
  503 with the reason — a bot that cannot record a decision should get no clicks (a
  readiness probe takes it out of the Service meanwhile; it is not restarted for it).
Neither needs a signature: they say nothing about runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

LIVEZ, READYZ = "/livez", "/readyz"


def health_app(inner: Callable[..., Iterable[bytes]], ready: Callable[[], str | None]
               ) -> Callable[..., Iterable[bytes]]:
    """``inner`` with ``/livez`` and ``/readyz`` in front; ``ready()`` returns None when
    ready, else why not."""

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


def redis_ready(ping: Callable[[], Any]) -> Callable[[], str | None]:
    """A readiness check on a Redis client's ``ping`` (its socket timeouts bound it)."""

    def check() -> str | None:
        try:
            ping()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready, said as such
            return f"redis: {type(exc).__name__}: {str(exc)[:200]}"
        return None

    return check
