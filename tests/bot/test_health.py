"""The bot's /livez and /readyz (issue 11: probes for the bot): live while it serves,
ready only while Redis answers; everything else still reaches Slack's handler."""

from __future__ import annotations

import json
import threading
from typing import Any

import redis

from bot.health import STILL_CHECKING, health_app, redis_ready
from tests.conftest import REDIS_URL


def call(app: Any, path: str, method: str = "GET") -> tuple[str, dict[str, Any] | bytes]:
    seen: dict[str, str] = {}
    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": method},
                        lambda status, headers: seen.update(status=status)))
    try:
        return seen["status"], json.loads(body)
    except ValueError:
        return seen["status"], body


def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b"slack"]


def test_live_and_ready_with_redis() -> None:
    app = health_app(inner, redis_ready(redis.Redis.from_url(REDIS_URL).ping))
    assert call(app, "/livez") == ("200 OK", {"ok": True})
    assert call(app, "/readyz") == ("200 OK", {"ok": True})
    assert call(app, "/slack/events", "POST") == ("200 OK", b"slack")


def test_not_ready_without_redis_but_still_live() -> None:
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    app = health_app(inner, redis_ready(gone.ping))
    status, body = call(app, "/readyz")
    assert status == "503 Service Unavailable"
    assert isinstance(body, dict) and body["reason"].startswith("redis: ConnectionError")
    assert call(app, "/livez")[0] == "200 OK"


def test_a_slow_check_holds_one_request_and_the_others_are_answered_at_once() -> None:
    started, release = threading.Event(), threading.Event()

    def slow() -> str | None:
        started.set()
        release.wait(10)
        return None

    app = health_app(inner, slow)
    first: list[tuple[str, Any]] = []
    waiting = threading.Thread(target=lambda: first.append(call(app, "/readyz")))
    waiting.start()
    assert started.wait(5)
    assert call(app, "/readyz") == ("503 Service Unavailable",
                                    {"ok": False, "reason": STILL_CHECKING})
    assert call(app, "/livez") == ("200 OK", {"ok": True})
    release.set()
    waiting.join(5)
    assert first == [("200 OK", {"ok": True})]
    assert call(app, "/readyz") == ("200 OK", {"ok": True})
