"""A small routing layer over ``http.server`` shared by the emulators.

Emulators are loopback servers with a few dozen routes each; the standard library's
threading server is enough and keeps the sandbox free of web frameworks.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("sandbox.http")


class Request:
    def __init__(self, handler: BaseHTTPRequestHandler, method: str, match: re.Match[str]):
        self.handler = handler
        self.method = method
        parsed = urllib.parse.urlsplit(handler.path)
        self.path = parsed.path
        self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        self.params = match.groupdict()
        self.headers = handler.headers
        length = int(handler.headers.get("Content-Length") or 0)
        self.raw = handler.rfile.read(length) if length else b""

    def json(self) -> Any:
        return json.loads(self.raw or b"null")

    def form(self) -> dict[str, str]:
        """Form or JSON body, as Slack's Web API accepts both."""
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            body = self.json() or {}
            return {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
        return {k: v[-1] for k, v in urllib.parse.parse_qs(self.raw.decode()).items()}

    @property
    def bearer(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None


class Response:
    def __init__(self, status: int = 200, body: Any = None, headers: dict[str, str] | None = None,
                 content_type: str = "application/json", stream: Callable[[Any], None] | None
                 = None):
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.content_type = content_type
        self.stream = stream


Route = tuple[str, re.Pattern[str], Callable[[Request], Response]]


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, fn: Callable[[Request], Response]) -> None:
        self.routes.append((method, re.compile("^" + pattern + "$", re.IGNORECASE), fn))

    def route(self, method: str, pattern: str) -> Callable[[Callable[[Request], Response]],
                                                           Callable[[Request], Response]]:
        def deco(fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
            self.add(method, pattern, fn)
            return fn
        return deco


def make_handler(router: Router, name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"meshops-sandbox-{name}"
        # Headers and body go out in two writes; with Nagle on, a keep-alive client's
        # delayed ACK would stall every response by ~40 ms.
        disable_nagle_algorithm = True

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("%s " + fmt, name, *args)

        def _dispatch(self, method: str) -> None:
            path = urllib.parse.urlsplit(self.path).path
            allowed = False
            for m, pattern, fn in router.routes:
                match = pattern.match(path)
                if not match:
                    continue
                allowed = True
                if m != method:
                    continue
                try:
                    resp = fn(Request(self, method, match))
                except Exception as exc:  # an emulator bug must show, not hang the client
                    log.exception("%s %s %s failed", name, method, path)
                    resp = Response(500, {"error": {"code": "InternalError", "message": str(exc)}})
                self._send(resp)
                return
            self._send(Response(405 if allowed else 404,
                                {"error": {"code": "NotFound", "message": f"{method} {path}"}}))

        def _send(self, resp: Response) -> None:
            if resp.stream is not None:
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.content_type)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                resp.stream(self)
                self.close_connection = True
                return
            if isinstance(resp.body, bytes | str):
                data = resp.body.encode() if isinstance(resp.body, str) else resp.body
            elif resp.body is None:
                data = b""
            else:
                data = json.dumps(resp.body).encode()
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._dispatch("PUT")

        def do_PATCH(self) -> None:  # noqa: N802
            self._dispatch("PATCH")

        def do_DELETE(self) -> None:  # noqa: N802
            self._dispatch("DELETE")

    return Handler


def write_chunk(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()


def serve(router: Router, name: str, host: str, port: int,
          tls: tuple[str, str] | None = None) -> ThreadingHTTPServer:
    """Start ``router`` on ``host:port`` (HTTPS with ``tls=(cert, key)``) in a daemon thread."""
    server = ThreadingHTTPServer((host, port), make_handler(router, name))
    server.daemon_threads = True
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name=f"sandbox-{name}", daemon=True).start()
    return server
