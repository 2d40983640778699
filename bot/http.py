"""The HTTP front door's limits, in front of Bolt and the release push endpoint.

Slack's own payloads are small: a slash command is a form of about a kilobyte, and the
largest interaction payload, a ``block_actions`` carrying the message it came from, is at
most 50 blocks of at most 3,000 characters each (Block Kit's limits) — some tens of KB.
:data:`MAX_BODY_BYTES` (1 MiB) leaves room for all of them and for a pushed GitHub release,
and is what :func:`serve` tells waitress (whose own default is 1 GiB), so a larger body is
answered 413 from its ``Content-Length`` before it is read. The WSGI layer refuses it again
without reading it, for servers configured otherwise.

Every refusal here is logged as one line with the method, path, size and reason, never with
any of the body: nothing has been authenticated yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import structlog

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


def capped(inner: Wsgi, limit: int = MAX_BODY_BYTES) -> Wsgi:
    """``inner`` behind a body size cap: a body over ``limit`` bytes is answered 413 unread."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            declared_length(environ, limit)
        except Refused as exc:
            return refuse(environ, start_response, exc)
        return inner(environ, start_response)

    return app


def make_server(wsgi: Wsgi, host: str, port: int, threads: int = 8) -> Any:
    """A waitress server of ``wsgi`` that refuses bodies over :data:`MAX_BODY_BYTES` (413)
    from their ``Content-Length``, before reading them (``.run()`` serves, ``.close()``)."""
    from waitress import create_server

    # waitress refuses a body whose length is >= max_request_body_size
    return create_server(wsgi, host=host, port=port, threads=threads,
                         max_request_body_size=MAX_BODY_BYTES + 1)


def serve(wsgi: Wsgi, host: str, port: int, threads: int = 8) -> None:
    """Serve ``wsgi`` on ``host:port`` until the process ends (see :func:`make_server`)."""
    make_server(wsgi, host, port, threads).run()
