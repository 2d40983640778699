"""The HMAC-signed endpoint where a relay pushes an AKS release (``POST /releases/push``).

Body: a GitHub release object ``{"name"|"tag_name", "body", ...}`` or a list of them.
Headers: ``X-Meshops-Request-Timestamp`` and ``X-Meshops-Signature: v0=<hex>``, the HMAC-SHA256
of ``v0:{timestamp}:{body}`` with ``MESHOPS_RELEASES_PUSH_SECRET`` (Slack's signing scheme).
An unsigned, badly signed, stale or malformed push is logged and refused; nothing is lost or
posted twice, since the watcher deduplicates events.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from workers.watcher import pushed_events, verify_push

log = structlog.get_logger("meshops.push")

PUSH_PATH = "/releases/push"


def push_app(secret: str, enqueue: Callable[[str], None], inner: Callable[..., Any]
             ) -> Callable[..., Iterable[bytes]]:
    """A WSGI app serving ``PUSH_PATH`` and passing everything else to ``inner`` (Bolt)."""

    def reply(start_response: Callable[..., Any], status: str, body: dict[str, Any]
              ) -> list[bytes]:
        data = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(data)))])
        return [data]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PUSH_PATH:
            return inner(environ, start_response)  # type: ignore[no-any-return]
        if environ.get("REQUEST_METHOD") != "POST":
            return reply(start_response, "405 Method Not Allowed", {"error": "POST only"})
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        ts = environ.get("HTTP_X_MESHOPS_REQUEST_TIMESTAMP", "")
        sig = environ.get("HTTP_X_MESHOPS_SIGNATURE", "")
        if not secret or not verify_push(secret, body, ts, sig):
            log.warning("push.refused", reason="unsigned, badly signed or stale",
                        configured=bool(secret))
            return reply(start_response, "401 Unauthorized",
                         {"error": "signature missing, wrong or older than 5 minutes"})
        try:
            events = pushed_events(body)
        except ValueError as exc:
            log.warning("push.malformed", error=str(exc)[:200])
            return reply(start_response, "400 Bad Request",
                         {"error": f"not a GitHub release: {exc}"[:300]})
        enqueue(body.decode())
        log.info("push.accepted", events=len(events))
        return reply(start_response, "202 Accepted", {"events": len(events)})

    return app
