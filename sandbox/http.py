"""A small routing layer over ``http.server`` shared by the emulators.

Emulators are loopback servers with a few dozen routes each; the standard library's
threading server is enough and keeps the sandbox free of web frameworks. Pages computed in
advance and asked for thousands of times a second (every proxy's metrics, scraped by
Prometheus) are served from a process of their own (:class:`PublishedServer`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import re
import ssl
import struct
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
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
                # the connection stays open for the next request once the stream's last
                # chunk is written, as Go's net/http (the API server's) keeps it: closing it
                # unannounced (no "Connection: close") let a client's pool hand it to the
                # next request just as it closed ("Remote end closed connection without
                # response"); a stream cut short ends the connection at the next read
                resp.stream(self)
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
          tls: tuple[str, str] | None = None, client_ca: str | None = None
          ) -> ThreadingHTTPServer:
    """Start ``router`` on ``host:port`` (HTTPS with ``tls=(cert, key)``) in a daemon thread.
    ``client_ca``: a client may present a certificate, and one that this CA did not sign
    fails the handshake, as the Kubernetes API server's ``--client-ca-file`` does."""
    server = ThreadingHTTPServer((host, port), make_handler(router, name))
    server.daemon_threads = True
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        if client_ca is not None:
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(client_ca)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name=f"sandbox-{name}", daemon=True).start()
    return server


# ---------------------------------------------------------------------- published pages

#: pending connections a listener queues: the standard library's 5 drops connections when
#: thousands of clients (Prometheus' scrape loops) connect at once, and a dropped SYN costs
#: the client a second or more
BACKLOG = 1024
#: a page: (Content-Type, body)
Page = tuple[bytes, bytes]
_Served = tuple[bytes, bytes | memoryview]
_FRAME = struct.Struct("!Q")


class PublishedServer:
    """Serves pages published in advance from a process of its own, everything else
    through ``router`` in this process.

    Why: a Prometheus scraping thousands of proxies asks for thousands of pages an
    interval. In the process that computes them, every request waits for the interpreter
    lock, which the computing holds most of the time, so scrapes time out. Here a child
    process (asyncio, HTTP/1.1 with keep-alive, a listen backlog of :data:`BACKLOG`) answers
    a GET of a published path with a dictionary lookup, whatever this process is doing;
    :meth:`publish` hands it a new set of pages at once (the child swaps them whole, so a
    reader never sees half of one set and half of another). A GET under an ``owned``
    prefix that is not published is 404; any other request (or any request before the
    first :meth:`publish`, or after ``publish(None)``) is passed on to ``router``, served on
    an ephemeral loopback port of this process. The child exits when this process closes its
    end of the pipe (:meth:`shutdown`, or this process dying).
    """

    def __init__(self, router: Router, name: str, host: str, port: int) -> None:
        """Listen on ``host:port``; raises OSError when the child cannot (port in use)."""
        self.fallback = serve(router, f"{name}-fallback", "127.0.0.1", 0)
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from sandbox.http import _published_main; "
             "_published_main(sys.argv[1:])", name, host, str(port),
             str(self.fallback.server_address[1])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline().decode(errors="replace").strip()
        if line != "ready":
            self.proc.wait(10)
            self.fallback.shutdown()
            raise OSError(f"{name}: cannot serve on {host}:{port}: {line or 'no answer'}")
        self.lock = threading.Lock()

    def publish(self, pages: dict[str, Page] | None, owned: tuple[str, ...] = ()) -> None:
        """Serve ``pages`` (path → page) from now on (returns once the child serves them),
        404 for other GETs under ``owned`` path prefixes; None: pass every request on to
        the router again."""
        # the bodies travel as one block, which the child serves slices of: one allocation
        # a publish, returned whole when the next replaces it (thousands of bodies of
        # tens of kB each, copied every few seconds, would fragment the child's heap)
        index: dict[str, tuple[bytes, int, int]] | None = None
        blob = b""
        if pages is not None:
            index, offset = {}, 0
            for path, (ctype, body) in pages.items():
                index[path] = (ctype, offset, len(body))
                offset += len(body)
            blob = b"".join(body for _, body in pages.values())
        head = pickle.dumps((index, owned), protocol=pickle.HIGHEST_PROTOCOL)
        with self.lock:
            stdin = self.proc.stdin
            assert stdin is not None
            try:
                stdin.write(_FRAME.pack(len(head)) + head + _FRAME.pack(len(blob)))
                stdin.write(blob)
                stdin.flush()
                # served from the child's next request on (it answers once it swapped)
                acked = self.proc.stdout is not None and self.proc.stdout.readline() == b"ok\n"
            except (BrokenPipeError, ValueError):
                acked = False
            if not acked:
                log.error("published server gone (exit %s)", self.proc.poll())

    def shutdown(self) -> None:
        with self.lock:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                try:
                    self.proc.stdin.close()
                except BrokenPipeError:
                    pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.fallback.shutdown()


def _published_main(argv: list[str]) -> None:
    """The child of :class:`PublishedServer`: ``name host port fallback_port``."""
    name, host, port, fallback_port = argv[0], argv[1], int(argv[2]), int(argv[3])
    #: (pages, owned prefixes) as last published; pages None: nothing published
    current: list[tuple[dict[str, _Served] | None, tuple[str, ...]]] = [(None, ())]
    not_found: _Served = (b"text/plain", b"not found\n")

    async def forward(head: bytes, body: bytes) -> bytes:
        lines = [ln for ln in head.split(b"\r\n")[:-2]
                 if not ln.lower().startswith(b"connection:")]
        reader, writer = await asyncio.open_connection("127.0.0.1", fallback_port)
        try:
            writer.write(b"\r\n".join([*lines, b"Connection: close", b"", b""]) + body)
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.split(b"\r\n")
                parts = lines[0].split(b" ")
                if len(parts) != 3:
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                    return
                method, target, version = parts
                headers = {}
                for ln in lines[1:]:
                    k, sep, v = ln.partition(b":")
                    if sep:
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get(b"content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                close = version == b"HTTP/1.0" or headers.get(
                    b"connection", b"").lower() == b"close"
                pages, owned = current[0]
                path = target.split(b"?", 1)[0].decode("latin-1")
                page = pages.get(path) if pages is not None and method == b"GET" else None
                if page is None and pages is not None and method == b"GET" and owned and \
                        path.startswith(owned):
                    page = not_found
                    status = b"404 Not Found"
                else:
                    status = b"200 OK"
                if page is None:
                    answer = await forward(head, body)
                    writer.write(answer)
                    await writer.drain()
                    answer_head = answer.split(b"\r\n\r\n", 1)[0].lower()
                    if close or b"content-length:" not in answer_head:
                        return
                    continue
                ctype, data = page
                writer.write(b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                             % (status, ctype, len(data)))
                writer.write(data)
                await writer.drain()
                if close:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    def receive(loop: asyncio.AbstractEventLoop) -> None:
        stdin = sys.stdin.buffer

        def chunk() -> bytes | None:
            frame = stdin.read(_FRAME.size)
            if len(frame) < _FRAME.size:
                return None
            size = _FRAME.unpack(frame)[0]
            data = stdin.read(size)
            return data if len(data) == size else None

        while (head := chunk()) is not None and (blob := chunk()) is not None:
            index, owned = pickle.loads(head)
            view = memoryview(blob)
            pages: dict[str, _Served] | None = None if index is None else {
                path: (ctype, view[offset:offset + size])
                for path, (ctype, offset, size) in index.items()}
            current[0] = (pages, owned)  # one assignment: readers see one set or the other
            sys.stdout.write("ok\n")
            sys.stdout.flush()
        loop.call_soon_threadsafe(loop.stop)

    loop = asyncio.new_event_loop()
    try:
        server = loop.run_until_complete(asyncio.start_server(
            handle, host, port, backlog=BACKLOG, reuse_address=True))
    except OSError as exc:
        print(f"{type(exc).__name__}: {exc}", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    threading.Thread(target=receive, args=(loop,), name=f"{name}-publish",
                     daemon=True).start()
    try:
        loop.run_forever()
    finally:
        server.close()
        # the clients' keep-alive connections end with the process, without asyncio's
        # complaints about the tasks still reading them
        os._exit(0)
