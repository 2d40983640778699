"""Bad input at the HTTP front door gets 400 or 401 with what was wrong, never a 500:
through the whole WSGI stack the bot serves (the release push endpoint in front of Bolt's
handler), with Slack's signatures and a real Redis run store."""

from __future__ import annotations

import io
import json
import time
import urllib.parse
from typing import Any

import pytest

from bot.http import SlackHandler
from bot.push import push_app
from meshops.demo import sign
from tests.bot.test_payloads import (  # noqa: F401
    PAYLOADS,
    SECRET,
    bolt,
    dispatch,
    slack,
    slash_body,
)

PUSH_SECRET = "test-push-secret"
FORM = "application/x-www-form-urlencoded"
DEEP = "[" * 100_000 + "]" * 100_000


def post(wsgi: Any, path: str, body: str | bytes, headers: dict[str, str]
         ) -> tuple[int, dict[str, Any]]:
    data = body.encode() if isinstance(body, str) else body
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_PROTOCOL": "HTTP/1.1",
               "QUERY_STRING": "", "CONTENT_LENGTH": str(len(data)),
               "wsgi.input": io.BytesIO(data)}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE",) else "HTTP_" + key] = value
    status: list[str] = []
    out = b"".join(wsgi(environ, lambda s, h: status.append(s)))
    return int(status[0].split()[0]), json.loads(out) if out.startswith(b"{") else {}


@pytest.fixture
def front(bolt):  # type: ignore[no-untyped-def]  # noqa: F811
    """The bot's WSGI app as ``meshops bot`` serves it, and what reached the workers."""
    app, store, enqueued = bolt
    pushed: list[str] = []
    return push_app(PUSH_SECRET, pushed.append, SlackHandler(app)), store, enqueued, pushed


def slack_post(front_app: Any, body: str | bytes, content_type: str = FORM,
               signed: bool = True, **headers: str) -> tuple[int, dict[str, Any]]:
    text = body.decode("latin-1") if isinstance(body, bytes) else body
    sig = sign(SECRET, text) if signed else {}
    return post(front_app, "/slack/events", body,
                {"Content-Type": content_type, **sig, **headers})


def push(front_app: Any, body: str, secret: str = PUSH_SECRET) -> tuple[int, dict[str, Any]]:
    s = sign(secret, body)
    return post(front_app, "/releases/push", body, {
        "Content-Type": "application/json",
        "X-Meshops-Request-Timestamp": s["X-Slack-Request-Timestamp"],
        "X-Meshops-Signature": s["X-Slack-Signature"]})


def test_a_timestamp_that_is_not_a_number_is_401(front) -> None:
    app, store, enqueued, _ = front
    body = slash_body(PAYLOADS["project"]["slash"].read_text(), "upgrade prod-weu asm-1-26")
    for ts in ("soon", "", "1e9", "１７００００００００"):
        status, answer = post(app, "/slack/events", body, {
            "Content-Type": FORM, "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(SECRET, body)["X-Slack-Signature"]})
        assert status == 401, ts
        assert answer == {"error": "signature missing, wrong or older than 5 minutes"}
    assert enqueued == [] and store.list_runs() == []


@pytest.mark.parametrize(("body", "content_type", "error"), [
    ("payload=%7Bnope", FORM, "malformed JSON (Expecting property name enclosed in double "
                              "quotes at line 1 column 2)"),
    ("payload=" + urllib.parse.quote(DEEP), FORM, "JSON nested too deeply"),
    ("payload=%5B1%2C2%2C3%5D", FORM, "not a Slack request: Slack sends a form"),
    ("payload=null", FORM, "not a Slack request"),
    ("{nope", "application/json", "malformed JSON"),
    (DEEP, "application/json", "JSON nested too deeply"),
    ('"x"', "application/json", "not a Slack request"),
    ('{"type": "block_actions", "team": "T0", "user": 5}', "application/json",
     "not a Slack request"),
    (b"command=/mesh&text=\xff\xfe", FORM, "the body is not UTF-8"),
])
def test_bodies_bolt_cannot_read_are_400(front, body: str | bytes, content_type: str,
                                         error: str) -> None:
    """Bolt parses a body before any middleware, the signature check included: the
    answer is the same signed or not."""
    app, store, enqueued, _ = front
    for signed in (False, True):
        status, answer = slack_post(app, body, content_type, signed=signed)
        assert status == 400 and answer["error"].startswith(error)
    assert enqueued == [] and store.list_runs() == []


def test_a_signed_json_slash_command_is_400_and_starts_nothing(front) -> None:
    app, store, enqueued, _ = front
    form = dict(urllib.parse.parse_qsl(slash_body(PAYLOADS["project"]["slash"].read_text(),
                                                  "upgrade prod-weu asm-1-26", "U0AAAAAAA")))
    for content_type in ("application/json", "text/plain"):
        status, answer = slack_post(app, json.dumps(form), content_type)
        assert status == 400, content_type
        assert "Slack sends slash commands and interactions form-encoded" in answer["error"]
    assert enqueued == [] and store.list_runs() == []
    # the same command as Slack sends it (a form) is taken
    status, answer = slack_post(app, urllib.parse.urlencode(form))
    assert status == 200 and "Planning the upgrade" in answer["text"]


def test_events_api_json_is_still_read(front) -> None:
    app, *_ = front
    status, answer = slack_post(app, json.dumps({"type": "url_verification", "token": "t",
                                                 "challenge": "c-123"}), "application/json")
    assert (status, answer) == (200, {"challenge": "c-123"})


RELEASE = {"tag_name": "2026-11-22", "name": "Release 2026-11-22",
           "body": "* Istio add-on revision asm-1-25 is patched to 1.25.7."}


@pytest.mark.parametrize(("body", "error"), [
    (DEEP, "JSON nested too deeply"),
    ("[1, 2, 3]", "item 0 is a JSON int; expected a GitHub release object "
                  '{"tag_name" or "name": "...", "body": "..."} or a non-empty list of them'),
    ('"x"', "the body is a JSON str; expected a GitHub release object"),
    ("[]", "an empty list; expected a GitHub release object"),
    ("null", "the body is a JSON NoneType"),
    (json.dumps([RELEASE, {"body": "x"}]), 'item 1 has no "tag_name" or "name"'),
    (json.dumps({**RELEASE, "body": ["x"]}), 'the body has a "body" that is not text'),
    ("<html>oops</html>", "malformed JSON"),
])
def test_pushes_that_are_not_releases_are_400_with_the_shape_expected(
        body: str, error: str) -> None:
    pushed: list[str] = []
    app = push_app(PUSH_SECRET, pushed.append, SlackHandler(None))  # type: ignore[arg-type]
    status, answer = push(app, body)
    assert status == 400 and answer["error"].startswith(f"not a GitHub release: {error}")
    assert pushed == []


def test_a_release_push_is_accepted_and_a_bad_signature_is_401(front) -> None:
    app, *_, pushed = front
    body = json.dumps(RELEASE)
    assert push(app, body)[0] == 202
    assert push(app, json.dumps([RELEASE, {**RELEASE, "body": None}]))[0] == 202
    assert pushed == [body, json.dumps([RELEASE, {**RELEASE, "body": None}])]
    assert push(app, body, secret="wrong")[0] == 401
    s = sign(PUSH_SECRET, body)
    status, _ = post(app, "/releases/push", body, {
        "X-Meshops-Request-Timestamp": s["X-Slack-Request-Timestamp"],
        "X-Meshops-Signature": "v0=\u00e9" + "0" * 63})
    assert status == 401
    ts = str(int(time.time()))
    assert post(app, "/releases/push", body, {"X-Meshops-Request-Timestamp": ts + "x",
                                              "X-Meshops-Signature": "v0=0"})[0] == 401
