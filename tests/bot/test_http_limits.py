"""The HTTP front door under unauthenticated load: bodies over 1 MiB are refused unread,
and a request that fails Slack's signature check is logged without any of its body."""

from __future__ import annotations

import io
import logging
import socket
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from slack_bolt.request import BoltRequest

from bot.http import MAX_BODY_BYTES, make_server
from bot.push import push_app
from tests.bot.test_payloads import PAYLOADS, bolt, dispatch, slack, slash_body  # noqa: F401
from tests.conftest import free_port_base, running


class Unreadable(io.RawIOBase):
    """A ``wsgi.input`` that fails the test if anything reads it."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")


def call(app: Any, path: str, length: int, body: Any = None) -> tuple[str, bytes]:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_PROTOCOL": "HTTP/1.1",
               "CONTENT_TYPE": "application/x-www-form-urlencoded",
               "CONTENT_LENGTH": str(length), "wsgi.input": body or Unreadable()}
    status: list[str] = []
    out = b"".join(app(environ, lambda s, headers: status.append(s)))
    return status[0], out


@pytest.mark.parametrize("path", ["/slack/events", "/releases/push"])
def test_a_body_over_one_mib_is_refused_unread(path: str) -> None:
    def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise AssertionError("Bolt got the request")

    app = push_app("push-secret", lambda body: None, inner)
    with structlog.testing.capture_logs() as logs:
        status, out = call(app, path, 5 * MAX_BODY_BYTES)
    assert status.startswith("413") and b"over the limit of 1048576 bytes" in out
    assert logs[-1]["event"] == "http.refused" and logs[-1]["path"] == path
    assert logs[-1]["method"] == "POST" and logs[-1]["size"] == str(5 * MAX_BODY_BYTES)


def test_a_body_at_the_limit_is_passed_on() -> None:
    seen: list[bytes] = []

    def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        start_response("200 OK", [])
        return [b""]

    app = push_app("push-secret", lambda body: None, inner)
    body = b"x" * MAX_BODY_BYTES
    assert call(app, "/slack/events", len(body), io.BytesIO(body))[0] == "200 OK"
    assert seen == [body]


@pytest.fixture
def server() -> Iterator[int]:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    port = free_port_base(16000, 17000)
    with running(make_server(app, "127.0.0.1", port, threads=1)):
        yield port


def test_waitress_answers_413_from_the_content_length_before_the_body(server: int) -> None:
    """5 MiB announced, nothing sent: the answer comes at once, nothing is waited for."""
    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        s.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: %d\r\n\r\n" % (5 * MAX_BODY_BYTES))
        started = time.time()
        answer = s.recv(200)
    assert answer.startswith(b"HTTP/1.1 413") and time.time() - started < 5


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record, from DEBUG up (set before the app is built: Bolt's loggers copy
    the root logger's level when they are made)."""
    caplog.set_level(logging.DEBUG)
    return caplog


def test_a_badly_signed_request_is_logged_without_its_body(debug_logs, bolt) -> None:  # noqa: F811
    app, store, enqueued = bolt
    form = slash_body(PAYLOADS["project"]["slash"].read_text(), "upgrade prod-weu asm-1-26")
    fields = dict(urllib.parse.parse_qsl(form))
    fields.update(response_url="https://hooks.slack.com/commands/T0/SECRET-RESPONSE-URL",
                  padding="A-BODY-MARKER" * 20_000)
    body = urllib.parse.urlencode(fields)
    with structlog.testing.capture_logs() as logs:
        stale = dispatch(app, body, timestamp=int(time.time()) - 301)
        forged = app.dispatch(BoltRequest(body=body, headers={
            "content-type": ["application/x-www-form-urlencoded"],
            "x-slack-request-timestamp": [str(int(time.time()))],
            "x-slack-signature": ["v0=" + "0" * 64]}))
    assert stale.status == forged.status == 401
    everything = debug_logs.text + repr(logs)
    assert "A-BODY-MARKER" not in everything and "SECRET-RESPONSE-URL" not in everything
    assert [(e["event"], e["reason"], e["size"]) for e in logs] == [
        ("slack.request_refused", "timestamp more than 5 minutes off", len(body)),
        ("slack.request_refused", "wrong signature", len(body))]
    assert enqueued == [] and store.list_runs() == []
