"""The HMAC-signed endpoint where a relay pushes an AKS release (``POST /releases/push``).

Body: a GitHub release object ``{"name"|"tag_name", "body", ...}`` or a non-empty list of
them, UTF-8; anything else is refused with 400 saying so (:func:`release_problem`).
Headers: ``X-Meshops-Request-Timestamp`` and ``X-Meshops-Signature: v0=<hex>``, the HMAC-SHA256
of ``v0:{timestamp}:{body}`` with ``MESHOPS_RELEASES_PUSH_SECRET`` (Slack's signing scheme).
An unsigned, badly signed, stale or malformed push is logged and refused; nothing is lost or
posted twice, since the watcher deduplicates events. Every request, pushed or for Bolt, is
behind the body cap of :mod:`bot.http` (1 MiB, 413 unread beyond it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from bot.http import Refused, json_problem, read_body, refuse, reply, slack_guard
from workers.watcher import pushed_events, verify_push

log = structlog.get_logger("meshops.push")

PUSH_PATH = "/releases/push"

#: the shape a push must have, as told to a relay that sent something else
RELEASE_SHAPE = ('a GitHub release object {"tag_name" or "name": "...", "body": "..."} '
                 "or a non-empty list of them")


def release_problem(body: bytes) -> str | None:
    """Why ``body`` is not a pushed release (or list of releases), or None when it is one.

    A release is an object whose ``tag_name`` or ``name`` is a non-empty string and whose
    ``body``, when present, is a string or null (GitHub's releases API shape).
    """
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    except (RecursionError, json.JSONDecodeError) as exc:
        return json_problem(exc)
    releases = data if isinstance(data, list) else [data]
    if not releases:
        return f"an empty list; expected {RELEASE_SHAPE}"
    for i, rel in enumerate(releases):
        where = f"item {i}" if isinstance(data, list) else "the body"
        if not isinstance(rel, dict):
            return f"{where} is a JSON {type(rel).__name__}; expected {RELEASE_SHAPE}"
        if not any(isinstance(rel.get(k), str) and rel[k] for k in ("tag_name", "name")):
            return f"{where} has no \"tag_name\" or \"name\"; expected {RELEASE_SHAPE}"
        if not isinstance(rel.get("body") or "", str):
            return f"{where} has a \"body\" that is not text; expected {RELEASE_SHAPE}"
    return None


def push_app(secret: str, enqueue: Callable[[str], None], inner: Callable[..., Any]
             ) -> Callable[..., Iterable[bytes]]:
    """A WSGI app serving ``PUSH_PATH`` and passing everything else to ``inner`` (Bolt),
    both behind the body cap of :mod:`bot.http`."""
    slack = slack_guard(inner)

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
        if not secret or not sig.isascii() or not verify_push(secret, body, ts, sig):
            log.warning("push.refused", reason="unsigned, badly signed or stale",
                        configured=bool(secret))
            return reply(start_response, "401 Unauthorized",
                         {"error": "signature missing, wrong or older than 5 minutes"})
        problem = release_problem(body)
        if problem is None:
            try:
                events = pushed_events(body)
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            log.warning("push.malformed", error=problem[:200], size=len(body))
            return reply(start_response, "400 Bad Request",
                         {"error": f"not a GitHub release: {problem}"[:300]})
        enqueue(body.decode())
        log.info("push.accepted", events=len(events))
        return reply(start_response, "202 Accepted", {"events": len(events)})

    return app
