"""The HMAC-signed endpoint where a relay pushes an AKS release (``POST /releases/push``).

Body: a GitHub release object ``{"name"|"tag_name", "body", ...}`` or a list of them.
Headers: ``X-Meshops-Request-Timestamp`` and ``X-Meshops-Signature: v0=<hex>``, the HMAC-SHA256
of ``v0:{timestamp}:{body}`` with ``MESHOPS_RELEASES_PUSH_SECRET`` (Slack's signing scheme).
An unsigned, badly signed, stale or malformed push is logged and refused; nothing is lost or
posted twice, since the watcher deduplicates events. Every request, pushed or for Bolt, is
behind the body cap of :mod:`bot.http` (1 MiB, 413 unread beyond it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import structlog

from bot.http import Refused, capped, read_body, refuse, reply
from workers.watcher import pushed_events, verify_push

log = structlog.get_logger("meshops.push")

PUSH_PATH = "/releases/push"


def push_app(secret: str, enqueue: Callable[[str], None], inner: Callable[..., Any]
             ) -> Callable[..., Iterable[bytes]]:
    """A WSGI app serving ``PUSH_PATH`` and passing everything else to ``inner`` (Bolt),
    both behind the body cap of :mod:`bot.http`."""
    slack = capped(inner)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PUSH_PATH:
            return slack(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return reply(start_response, "405 Method Not Allowed", {"error": "POST only"})
        try:
            body = read_body(environ)
        except Refused as exc:
            return refuse(environ, start_response, exc)
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
