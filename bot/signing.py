"""Slack's request signature, checked by a middleware of our own that logs no body.

Slack signs every HTTP request: ``X-Slack-Signature: v0=<hex>`` is the HMAC-SHA256 of
``v0:{X-Slack-Request-Timestamp}:{body}`` with the app's signing secret, and a timestamp more
than five minutes from now is refused (https://api.slack.com/authentication/verifying-requests-from-slack).

Bolt's own ``RequestVerification`` logs the *whole body* of every request that fails the
check, at INFO: anyone on the internet could write megabytes into our logs per request, and
the ``response_url`` of a stale request landed there. :class:`SignedRequests` takes its place
in the middleware chain (Bolt's ``before_authorize`` slot, right where Bolt puts its own) and
logs one line per refusal: the reason, the body's size and nothing of its content.

A signed request must also come in a shape Slack sends: Bolt takes a JSON body that has a
``command`` for a slash command, but Slack posts slash commands and interactions as forms
and JSON only for the Events API; anything else is answered 400 (:func:`shape_problem`).

A signature proves who made a request, not that it is new: anyone who saw one signed
``/mesh upgrade`` could post it again, unchanged, for as long as its timestamp is within the
five minutes, and start a second run. Slack never sends a slash command or an interaction
twice, so each one's (timestamp, signature) is remembered in Redis until its timestamp
leaves the window (:class:`SeenRequests`, ``SET NX`` with a TTL, so it holds across bot
processes) and a second arrival is answered 409. Events API requests are not checked: Slack
retries those itself (``X-Slack-Retry-Num``), and meshops listens to none.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

import redis
import structlog
from slack_bolt import BoltResponse, Respond
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest

from workers.store.errors import translate_redis_error
from workflows.errors import TemporaryError

log = structlog.get_logger("meshops.bot")

#: Slack's window: a request whose timestamp is further than this from now is refused (s)
MAX_SKEW_S = 300

#: the ``type`` of every JSON body Slack posts (Events API)
EVENTS_API_TYPES = frozenset({"url_verification", "event_callback", "app_rate_limited"})


def _header(req: BoltRequest, name: str) -> str:
    values = req.headers.get(name) or [""]
    return str(values[0])


def signature_problem(secret: str, body: str, timestamp: str, signature: str,
                      now: float) -> str | None:
    """Why a request's signature is not acceptable, or None when it is.

    Args:
        body: the raw body as received; timestamp / signature: the two headers' values.
        now: Unix seconds.
    Returns:
        None, or a short reason for the log: "no signature", "timestamp is not a number",
        "timestamp more than 5 minutes off", "wrong signature".
    """
    if not timestamp or not signature:
        return "no signature"
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return "timestamp is not a number"
    if abs(now - int(timestamp)) > MAX_SKEW_S:
        return "timestamp more than 5 minutes off"
    expected = "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(),
                                hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return "wrong signature"
    return None


class SeenRequests:
    """The signed requests taken in the last five minutes, in Redis:
    ``{prefix}:replay:{timestamp}:{signature}``, each kept until its timestamp is more than
    :data:`MAX_SKEW_S` old, when Slack's signature check refuses it anyway."""

    def __init__(self, client: redis.Redis, prefix: str = "meshops"):
        self.r = client
        self.p = prefix

    def first_time(self, timestamp: str, signature: str, now: float) -> bool:
        """True the first time this (timestamp, signature) is seen, False after.

        Args:
            timestamp: a verified ``X-Slack-Request-Timestamp`` (Unix s, at most
                :data:`MAX_SKEW_S` from ``now``); signature: its ``X-Slack-Signature``.
        Raises:
            TemporaryError: Redis did not answer.
        """
        ttl = max(1, int(timestamp) + MAX_SKEW_S + 1 - int(now))
        try:
            return bool(self.r.set(f"{self.p}:replay:{timestamp}:{signature}", "1", nx=True,
                                   ex=ttl))
        except redis.RedisError as exc:
            raise translate_redis_error(exc, "checking that a request is new") from exc


def shape_problem(req: BoltRequest) -> str | None:
    """Why a (signed) request is not shaped as Slack sends it, or None.

    Slack posts slash commands and interactions form-encoded, and JSON only for the Events
    API (https://api.slack.com/interactivity/slash-commands,
    https://api.slack.com/apis/events-api); Bolt reads a JSON body the way it guesses it, so
    a JSON ``{"command": …}`` would be taken as a slash command.
    """
    is_json = req.content_type == "application/json" or req.raw_body.startswith("{")
    if is_json and req.body.get("type") not in EVENTS_API_TYPES:
        return ("a JSON body that is not an Events API request; Slack sends slash commands "
                "and interactions form-encoded (application/x-www-form-urlencoded)")
    return None


class SignedRequests(Middleware):
    """Refuses, with 401, every request not signed by Slack with ``signing_secret``, and
    with 400 a signed one that is not shaped as Slack sends it, with 409 a replay of a slash
    command or an interaction already taken."""

    def __init__(self, signing_secret: str, seen: SeenRequests | None = None,
                 clock: Callable[[], float] = time.time):
        """``seen``: where requests already taken are remembered; None: replays are not
        refused (tests of other things only)."""
        self.secret = signing_secret
        self.seen = seen
        self.clock = clock

    def process(self, *, req: BoltRequest, resp: BoltResponse,
                next: Callable[[], BoltResponse],  # noqa: A002 - Bolt's name
                ) -> BoltResponse | None:
        if req.mode == "socket_mode":  # the WebSocket itself is authenticated
            return next()
        timestamp = _header(req, "x-slack-request-timestamp")
        signature = _header(req, "x-slack-signature")
        now = self.clock()
        problem = signature_problem(self.secret, req.raw_body, timestamp, signature, now)
        if problem:
            log.warning("slack.request_refused", reason=problem, size=len(req.raw_body),
                        timestamp=timestamp[:20])
            return BoltResponse(status=401, body={
                "error": "signature missing, wrong or older than 5 minutes"})
        problem = shape_problem(req)
        if problem:
            log.warning("slack.request_refused", reason=problem, size=len(req.raw_body))
            return BoltResponse(status=400, body={"error": problem})
        if self.seen is None or req.body.get("type") in EVENTS_API_TYPES:
            return next()
        try:
            first = self.seen.first_time(timestamp, signature, now)
        except TemporaryError as exc:
            log.warning("slack.replay_check_failed", error=str(exc))
            return could_not_take(req, exc)
        if not first:
            log.warning("slack.request_refused", reason="replay", size=len(req.raw_body),
                        timestamp=timestamp)
            return BoltResponse(status=409, body={
                "error": "this signed request was already taken; a replay changes nothing"})
        return next()


def could_not_take(req: BoltRequest, exc: Exception) -> BoltResponse:
    """Answer a request that cannot be taken now as the listeners would: a slash command in
    its ack, an interaction ephemerally through its ``response_url`` after the ack."""
    text = f":warning: meshops could not take that now ({exc}). Nothing changed."
    if "command" in req.body:
        return BoltResponse(status=200, body={"response_type": "ephemeral", "text": text})
    if req.context.response_url:
        def tell(respond: Respond) -> None:
            respond(text=text, response_type="ephemeral", replace_original=False)

        req.context.listener_runner.lazy_listener_runner.start(function=tell,
                                                               request=req.to_copyable())
    return BoltResponse(status=200, body="")
