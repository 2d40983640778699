"""A bot in Socket Mode serves /livez and /readyz too (issue 11: probes for the bot): live
while it serves them, ready only while its WebSocket to Slack is open and Redis answers.
Against the sandbox's Slack Web API and Socket Mode emulators and a real Redis: in process
with Bolt's Socket Mode handler, and as ``meshops bot`` starts it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry
from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot.app import create_app
from bot.health import all_ready, redis_ready, socket_ready, start_health_server
from sandbox.http import serve
from sandbox.slack import SlackEmulator, SocketModeServer
from tests.conftest import REDIS_URL, ROOT, free_port_base
from workers.config import load_fleet
from workers.engine import Engine
from workers.slack.client import make_client
from workers.store.runs import RedisRunStore
from workers.wiring import FleetPorts

APP_TOKEN = "xapp-test"
NOT_CONNECTED = "slack: the Socket Mode connection is not open (connecting or reconnecting)"


class Slack:
    """The sandbox's Slack: the Web API at ``port``, Socket Mode at ``port + 1``; ``port +
    2`` is free for the bot's health endpoints."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.emu = SlackEmulator("xoxb-test", {"C0123456789": "mesh"}, {"U0AAAAAAA": "ana"},
                                 base_url=f"http://127.0.0.1:{port}")
        self.emu.socket = SocketModeServer(APP_TOKEN, "127.0.0.1", port + 1)
        self.server = serve(self.emu.router(), "slack", "127.0.0.1", port)

    @property
    def connections(self) -> int:
        assert self.emu.socket is not None
        return len(self.emu.socket.connections)

    def close(self) -> None:
        if self.emu.socket is not None:
            self.emu.socket.shutdown()
        self.server.shutdown()


@pytest.fixture
def slack() -> Iterator[Slack]:
    s = Slack(free_port_base(16000, 17000, span=3))
    yield s
    s.close()


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def eventually(what: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def handler(slack: Slack, prefix: str) -> Iterator[SocketModeHandler]:
    """The bot's Bolt app behind Bolt's Socket Mode handler, as ``meshops bot`` builds them
    with SLACK_APP_TOKEN set (not connected yet)."""
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    app = create_app(fleet, Engine(fleet, store, FleetPorts(fleet)),
                     make_client("xoxb-test", slack.emu.base_url + "/api/"), None,
                     lambda run_id, seq: None, lambda run_id: None)
    h = SocketModeHandler(app, APP_TOKEN)
    yield h
    # slack_sdk's close() joins its session thread, which can miss the closing when it
    # lands as the session starts (seen under load: the join never returned); its threads
    # are daemons, so a close that does not finish within seconds is left behind
    closing = threading.Thread(target=h.close, daemon=True)
    closing.start()
    closing.join(10)
    keys = list(store.r.scan_iter(prefix + "*"))
    if keys:
        store.r.delete(*keys)


def test_ready_only_while_connected_to_slack(slack: Slack, handler: SocketModeHandler) -> None:
    port = slack.port + 2
    server = start_health_server(all_ready(socket_ready(handler.client),
                                           redis_ready(redis.Redis.from_url(REDIS_URL).ping)),
                                 "127.0.0.1", port)
    assert server is not None
    try:
        # before the WebSocket is open: live, not ready
        assert get(port, "/livez") == (200, {"ok": True})
        assert get(port, "/readyz") == (503, {"ok": False, "reason": NOT_CONNECTED})
        # nothing else is served: Slack's requests come over the WebSocket
        assert get(port, "/slack/events", "POST")[0] == 404
        assert get(port, "/releases/push", "POST")[0] == 404

        handler.connect()  # type: ignore[no-untyped-call]
        eventually(lambda: slack.connections == 1)
        assert get(port, "/readyz") == (200, {"ok": True})
        # and the connection it reports on is the one that takes the commands
        assert slack.emu.socket is not None
        ack = slack.emu.socket.deliver("slash_commands", {
            "command": "/mesh", "text": "status payload-prod", "user_id": "U0AAAAAAA",
            "channel_id": "C0123456789", "api_app_id": "A0123456789",
            "response_url": slack.emu.base_url + "/_sandbox/slack/response/x"})
        assert ack["payload"]["text"].startswith(":warning: Unknown cluster `payload-prod`.")

        # Slack goes away: not ready until the client is connected again, still live
        slack.emu.socket.shutdown()
        eventually(lambda: get(port, "/readyz")[0] == 503)
        assert get(port, "/readyz")[1]["reason"] == NOT_CONNECTED
        assert get(port, "/livez") == (200, {"ok": True})
    finally:
        server.close()


def test_not_ready_without_redis_even_when_connected(slack: Slack,
                                                     handler: SocketModeHandler) -> None:
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5,
                       retry=Retry(NoBackoff(), 0))
    ready = all_ready(socket_ready(handler.client), redis_ready(gone.ping))
    problem = ready()
    assert problem is not None and problem.startswith(f"{NOT_CONNECTED}; redis: ConnectionError")
    handler.connect()  # type: ignore[no-untyped-call]
    eventually(lambda: slack.connections == 1)
    problem = ready()
    assert problem is not None and problem.startswith("redis: ConnectionError")


def test_a_taken_port_leaves_the_bot_without_endpoints_not_dead() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert start_health_server(lambda: None, "127.0.0.1", taken.getsockname()[1]) is None


def test_the_health_server_stops_from_its_own_loop_and_frees_its_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serving = start_health_server(lambda: None, "127.0.0.1", port)
    assert serving is not None and get(port, "/livez") == (200, {"ok": True})
    serving.close()
    assert not serving.thread.is_alive()  # its loop ended on an empty map
    again = start_health_server(lambda: None, "127.0.0.1", port)  # the port is free
    assert again is not None
    again.close()


def test_meshops_bot_in_socket_mode_serves_its_probes_on_port(slack: Slack, prefix: str,
                                                              tmp_path: Path) -> None:
    fleet = yaml.safe_load((ROOT / "examples" / "fleet.azure.yaml").read_text())
    fleet["slack"]["api_url"] = slack.emu.base_url + "/api/"
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    env = {k: v for k, v in os.environ.items() if k != "SLACK_SIGNING_SECRET"}
    env.update(MESHOPS_FLEET=str(tmp_path / "fleet.yaml"), REDIS_URL=REDIS_URL,
               MESHOPS_REDIS_PREFIX=prefix, SLACK_BOT_TOKEN="xoxb-test",
               SLACK_APP_TOKEN=APP_TOKEN, PYTHONUNBUFFERED="1")
    port = slack.port + 2
    log = tmp_path / "bot.log"
    with open(log, "wb") as out:
        bot = subprocess.Popen([sys.executable, "-m", "meshops", "bot", "--host", "127.0.0.1",
                                "--port", str(port)], env=env, stdout=out,
                               stderr=subprocess.STDOUT)
    try:
        def serving() -> bool:
            assert bot.poll() is None, log.read_text()
            try:
                return get(port, "/livez")[0] == 200
            except OSError:
                return False

        eventually(serving, 60)
        eventually(lambda: slack.connections == 1, 60)
        assert get(port, "/readyz") == (200, {"ok": True})
        assert get(port, "/slack/events", "POST")[0] == 404
        # its startup heap is frozen before the first request (workers.heap)
        assert "bot.heap_frozen" in log.read_text()
        bot.send_signal(signal.SIGTERM)  # its pod stopping: it closes and drains, then ends
        assert bot.wait(30) == 0, log.read_text()
        assert "bot.stopped" in log.read_text()
    finally:
        bot.terminate()
        bot.wait(15)
