"""Ack latency of the bot in HTTP mode against a bare slack-bolt app that only acks.

Starts the sandbox, a worker and the meshops bot (``meshops demo``'s harness), and a bare
Bolt app served the same way (waitress, same signing secret). Then sends signed
``/mesh status`` and ``/mesh upgrade`` requests at 1 and at 50 concurrent clients and prints
p50 and p99 per case, and the meshops/bare ratio (target: p99 ≤ 1.5 × the bare app, far
below Slack's 3 s).

    .venv/bin/python benchmarks/ack_latency.py [--requests 300]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meshops.demo import Harness, port_open, sign  # noqa: E402


def bare_app(port: int, secret: str) -> None:
    """A slack-bolt app whose /mesh listener only acks (the baseline), with the same bot
    token and Web API as meshops' bot."""
    from slack_bolt import App
    from slack_bolt.adapter.wsgi import SlackRequestHandler
    from slack_sdk import WebClient
    from waitress import serve

    client = WebClient(token=os.environ["SLACK_BOT_TOKEN"],
                       base_url=os.environ["BENCH_SLACK_API_URL"])
    app = App(signing_secret=secret, client=client)

    @app.command("/mesh")
    def ack_only(ack):  # type: ignore[no-untyped-def]
        ack(text="ok")

    serve(SlackRequestHandler(app), host="127.0.0.1", port=port, threads=8, _quiet=True)


def measure(port: int, secret: str, text: str, clients: int, total: int) -> list[float]:
    fields = {"token": "x", "team_id": "T0SANDBOX", "channel_id": "C0DEVMESH",
              "user_id": "U0ANA", "user_name": "ana", "command": "/mesh", "text": text,
              "api_app_id": "A0MESHOPS", "response_url": "http://127.0.0.1:9/none",
              "trigger_id": "1.2.3"}
    body = urllib.parse.urlencode(fields)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_client = max(1, total // clients)

    def client() -> None:
        session = requests.Session()
        for _ in range(per_client):
            headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(secret, body)}
            t0 = time.perf_counter()
            resp = session.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                                headers=headers, timeout=30)
            elapsed = time.perf_counter() - t0
            if resp.status_code != 200:
                with lock:
                    errors.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                return
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"port {port}: {errors[0]}")
    return latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--bare-app", nargs=2, metavar=("PORT", "SECRET"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_app:
        bare_app(int(args.bare_app[0]), args.bare_app[1])
        return
    base = random.randrange(16000, 20000, 100)
    h = Harness(Path(tempfile.mkdtemp(prefix="meshops-ackbench-")), base, base + 80,
                echo=lambda line: None)
    bare_port = base + 90
    try:
        h.start()
        secret = h.info["env"]["SLACK_SIGNING_SECRET"]
        bare = subprocess.Popen([sys.executable, __file__, "--bare-app", str(bare_port), secret],
                                env={**os.environ, **h.info["env"], "PYTHONPATH": str(ROOT),
                                     "BENCH_SLACK_API_URL": h.info["url"]["slack"] + "/api/"})
        deadline = time.time() + 30
        while not port_open(bare_port) and time.time() < deadline:
            time.sleep(0.1)
        print(f"ack latency, HTTP mode, {args.requests} signed requests per case "
              "(ms; ratio = meshops / bare slack-bolt app)")
        print(f"{'command':<28}{'clients':>8}{'bare p50':>10}{'bare p99':>10}"
              f"{'p50':>9}{'p99':>9}{'p99 ratio':>11}")
        try:
            for text in ("status", "upgrade dev asm-1-26"):
                for clients in (1, 50):
                    measure(bare_port, secret, text, clients, 20)  # warm up
                    measure(h.bot_port, secret, text, clients, 20)
                    b = measure(bare_port, secret, text, clients, args.requests)
                    m = measure(h.bot_port, secret, text, clients, args.requests)
                    print(f"{'/mesh ' + text:<28}{clients:>8}{pct(b, 50) * 1e3:>10.1f}"
                          f"{pct(b, 99) * 1e3:>10.1f}{pct(m, 50) * 1e3:>9.1f}"
                          f"{pct(m, 99) * 1e3:>9.1f}{pct(m, 99) / pct(b, 99):>10.2f}×")
        finally:
            bare.terminate()
            bare.wait(10)
    finally:
        h.stop()


if __name__ == "__main__":
    main()
