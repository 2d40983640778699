"""The HTTP front door's limits, in front of Bolt and the release push endpoint.

Slack's own payloads are small: a slash command is a form of about a kilobyte, and the
largest interaction payload, a ``block_actions`` carrying the message it came from, is at
most 50 blocks of at most 3,000 characters each (Block Kit's limits) — some tens of KB.
:data:`MAX_BODY_BYTES` (1 MiB) leaves room for all of them and for a pushed GitHub release,
and is what :func:`serve` tells waitress (whose own default is 1 GiB), so a larger body is
answered 413 from its ``Content-Length`` before it is read. The WSGI layer refuses it again
without reading it, for servers configured otherwise.

:func:`slack_guard` also refuses, with 400, a body Bolt could not even turn into a request:
not UTF-8, a ``payload=`` that is not JSON, JSON nested deeper than Python's parser goes, a
JSON document or ``payload`` that is not an object. Bolt parses the body before any
middleware runs, signature check included, so such a body used to be an HTTP 500 for anyone.

Bolt (``slack_bolt.request.internals.parse_body``) takes a form for an interaction when the
word "payload" occurs *anywhere* in its text, and reads a form without a ``payload`` field
as nothing: ``/mesh status payload-prod`` (``text=status+payload-prod``), or any command from
a channel or user whose name holds the word, reached no listener and was answered 404.
:class:`SlackRequest` reads a form by its fields instead (an interaction is a form with a
``payload`` field, as Slack sends it: https://api.slack.com/interactivity/handling#payloads)
and keeps the raw body as received, which is what the signature is checked on;
:class:`SlackHandler` is Bolt's WSGI handler building those requests.

Every refusal here is logged as one line with the method, path, size and reason, never with
any of the body: nothing has been authenticated yet.
"""

from __future__ import annotations

import io
import json
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl

import structlog
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.context import BoltContext
from slack_bolt.request import BoltRequest
from slack_bolt.request.internals import build_context
from slack_bolt.response import BoltResponse

log = structlog.get_logger("meshops.http")

#: the largest request body meshops reads (bytes): 1 MiB
MAX_BODY_BYTES = 1 << 20

StartResponse = Callable[..., Any]
Wsgi = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class Refused(Exception):
    """A request refused before anything reads it further: ``status`` and a ``reason`` for
    the caller (and the log)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def reply(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    """A small JSON answer."""
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
    return [data]


def refuse(environ: dict[str, Any], start_response: StartResponse, refused: Refused
           ) -> list[bytes]:
    """Log ``refused`` (method, path, size, reason: no body) and answer it."""
    log.warning("http.refused", method=str(environ.get("REQUEST_METHOD", ""))[:10],
                path=str(environ.get("PATH_INFO", ""))[:100],
                size=str(environ.get("CONTENT_LENGTH") or 0)[:20],
                status=refused.status.split()[0], reason=refused.reason)
    return reply(start_response, refused.status, {"error": refused.reason})


def declared_length(environ: dict[str, Any], limit: int = MAX_BODY_BYTES) -> int:
    """The request's ``Content-Length`` (bytes), checked against ``limit``; nothing is read.

    A request without ``Content-Length`` has no body (PEP 3333; waitress sets it after
    decoding a chunked body).

    Raises:
        Refused: 413 when the body is larger than ``limit``; 400 when ``Content-Length`` is
            not a number.
    """
    raw = str(environ.get("CONTENT_LENGTH") or "0").strip()
    if not (raw.isascii() and raw.isdigit()):
        raise Refused("400 Bad Request", "Content-Length is not a number")
    length = int(raw)
    if length > limit:
        raise Refused("413 Content Too Large",
                      f"a body of {length} bytes is over the limit of {limit} bytes")
    return length


def read_body(environ: dict[str, Any], limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, read only when :func:`declared_length` accepts it.

    Raises:
        Refused: as :func:`declared_length`.
    """
    length = declared_length(environ, limit)
    if not length:
        return b""
    body = environ["wsgi.input"].read(length)
    return body if isinstance(body, bytes) else bytes(body)


#: what Bolt can take: the shapes Slack sends
SLACK_SHAPES = ("a form (slash commands), a form whose `payload` is a JSON object "
                "(interactions) or a JSON object (Events API)")


def json_problem(exc: Exception) -> str:
    """What was wrong with a JSON document, for the person who sent it."""
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    return str(exc)


def slack_body(raw_body: str, content_type: str | None) -> Any:
    """A Slack request body as Bolt reads it, except that a form is an interaction only
    when it has a ``payload`` field (see the module docstring).

    Returns:
        ``{}`` for an empty body; a JSON body (``application/json``, or text starting with
        ``{``) parsed; a form's ``payload`` field parsed as JSON; else the form's fields
        (``{name: value}``, the last of a repeated name, blank values kept — as Bolt).
    Raises:
        json.JSONDecodeError, RecursionError: JSON that Python cannot read.
    """
    if not raw_body:
        return {}
    if content_type == "application/json" or raw_body.startswith("{"):
        return json.loads(raw_body)
    fields = dict(parse_qsl(raw_body, keep_blank_values=True))
    if "payload" in fields:
        return json.loads(fields["payload"])
    return fields


class SlackRequest(BoltRequest):
    """A Bolt request whose body is read by :func:`slack_body`; ``raw_body`` stays the body
    as received (the signature covers it)."""

    def __init__(self, *, body: str | dict[str, Any],
                 query: str | dict[str, str] | dict[str, Sequence[str]] | None = None,
                 headers: dict[str, str | Sequence[str]] | None = None,
                 context: dict[str, Any] | None = None, mode: str = "http") -> None:
        super().__init__(body=body, query=query, headers=headers, context=context, mode=mode)
        # Bolt reads every other body as slack_body does; where they differ it read {}
        if isinstance(body, str) and self.body == {} and self.raw_body:
            parsed = slack_body(self.raw_body, self.content_type)
            if parsed != self.body:
                self.body = parsed
                self.context = build_context(BoltContext(context or {}), parsed)

    def to_copyable(self) -> SlackRequest:
        """A copy for a lazy listener's thread (Bolt's, of this class)."""
        return SlackRequest(body=self.raw_body if self.mode == "http" else self.body,
                            query=self.query, headers=dict(self.headers),
                            context=self.context.to_copyable(), mode=self.mode)


class SlackHandler(SlackRequestHandler):
    """Bolt's WSGI handler (``POST /slack/events``), dispatching a :class:`SlackRequest`."""

    def dispatch(self, request: WsgiHttpRequest) -> BoltResponse:
        built = request.environ.pop(BUILT_REQUEST, None)  # by slack_guard, from this body
        if isinstance(built, SlackRequest):
            return self.app.dispatch(built)
        return self.app.dispatch(SlackRequest(body=request.get_body(),
                                              query=request.query_string,
                                              headers=request.get_headers()))


#: where :func:`slack_guard` leaves the request it built for :class:`SlackHandler`, so that
#: a body is parsed into a Bolt request once (a third of a millisecond of the ack's CPU)
BUILT_REQUEST = "meshops.slack_request"


def bolt_request(environ: dict[str, Any], body: bytes) -> SlackRequest:
    """The Bolt request of this body.

    Raises:
        Refused: 400 with why Bolt could not build a request of it.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused("400 Bad Request", "the body is not UTF-8") from exc
    request = WsgiHttpRequest(environ)
    try:
        return SlackRequest(body=text, query=request.query_string,
                            headers=request.get_headers())
    except (RecursionError, json.JSONDecodeError) as exc:
        raise Refused("400 Bad Request", json_problem(exc)) from exc
    except Exception as exc:  # whatever else Bolt trips on is a malformed body
        raise Refused("400 Bad Request",
                      f"not a Slack request: Slack sends {SLACK_SHAPES}") from exc


def slack_guard(inner: Wsgi, limit: int = MAX_BODY_BYTES) -> Wsgi:
    """``inner`` (Bolt's WSGI handler, a :class:`SlackHandler`) behind the body cap (413,
    unread) and a check that Bolt can read the body at all (400 with what is wrong; see the
    module docstring)."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            if environ.get("REQUEST_METHOD") != "POST":
                declared_length(environ, limit)
                return inner(environ, start_response)
            body = read_body(environ, limit)
            built = bolt_request(environ, body)
        except Refused as exc:
            return refuse(environ, start_response, exc)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ[BUILT_REQUEST] = built
        return inner(environ, start_response)

    return app


def make_server(wsgi: Wsgi, host: str, port: int, threads: int = 8) -> Any:
    """A waitress server of ``wsgi`` that refuses bodies over :data:`MAX_BODY_BYTES` (413)
    from their ``Content-Length``, before reading them (``.run()`` serves, ``.close()``)."""
    from waitress import create_server

    # waitress refuses a body whose length is >= max_request_body_size
    return create_server(wsgi, host=host, port=port, threads=threads,
                         max_request_body_size=MAX_BODY_BYTES + 1)


class ServerThread:
    """A waitress server (:func:`make_server`) serving from a daemon thread of its own.

    :meth:`close` stops it from its own loop: a thunk through the server's trigger closes
    every channel (listener, connections, the trigger), so the loop ends on an empty map,
    then the thread is joined and the worker threads are stopped. Closing the server from
    another thread instead pulls its sockets from under a running ``select()`` (EBADF in
    the server's thread).
    """

    def __init__(self, server: Any, name: str):
        self.server = server
        self.thread = threading.Thread(target=server.run, name=name, daemon=True)
        self.thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        from waitress import wasyncore

        try:
            self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self.server._map))
        except OSError:
            # the loop has ended meanwhile and closed its trigger with it (EBADF, seen once
            # in a fresh-clone suite run): nothing is left for the thunk to close
            if self.thread.is_alive() and not self.server.trigger._closed:
                raise
        self.thread.join(timeout_s)
        self.server.task_dispatcher.shutdown()


def serve(wsgi: Wsgi, host: str, port: int, threads: int = 8) -> None:
    """Serve ``wsgi`` on ``host:port`` (see :func:`make_server`) until SIGTERM or SIGINT;
    then stop reading requests, give the ones being answered up to waitress' 5 s to finish,
    close every connection and the listening socket, and return.

    Kubernetes stops a pod with SIGTERM once its preStop hook has run (by then the pod is out
    of its Service's endpoints: ``deploy/kubernetes/bot.yaml``), and the image's init passes
    it on to this process. Without a handler it ended the process at once, cutting off the
    answers being written; a slash command is not retried by Slack. Once stopping, the
    process ignores SIGTERM. Call it from the main thread (Python runs signal handlers
    there)."""
    from waitress import wasyncore

    server = make_server(wsgi, host, port, threads)
    # waitress' loop runs in this thread: on SystemExit its run() shuts its worker threads
    # down once their request is answered (at most 5 s) and returns
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        server.run()
    finally:
        # what waitress leaves open: the listening socket (no more connections queue
        # there unanswered) and every connection, the trigger among them (a host of several
        # addresses is a MultiSocketServer, whose run() closes its own)
        if hasattr(server, "_map"):
            wasyncore.close_all(server._map)
        log.info("http.stopped", host=host, port=port)


def exit_on_sigterm(signum: int, frame: Any) -> None:
    """A SIGTERM handler: SystemExit in the main thread, as Ctrl-C's KeyboardInterrupt ends
    what it runs; a second SIGTERM is ignored, so it cannot cut the stop short (Kubernetes'
    SIGKILL ends it at the end of the grace period)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(0)
