"""Ack latency of the bot in HTTP mode against a bare slack-bolt app that only acks.

Both sides are served the same way: waitress as ``bot.http.make_server`` configures it
(8 threads, the same body cap), Bolt's WSGI adapter, and the same ack mode as meshops'
bot (``process_before_response=True``: the listener runs in the request's thread and the
HTTP answer goes out when it returns). The bare app keeps Bolt's own signature check; its
``/mesh`` listener only acks. meshops' bot is ``meshops bot`` itself, on a sandbox whose
world is generated here with one cluster per concurrent client; no worker runs, so what is
timed is the bot alone (what is enqueued waits in Redis and is removed at the end).

Both sides get the same signed requests (each one distinct, as Slack's are: meshops refuses
a replay with 409), in rounds that alternate which side goes first, after warming both:

- ``/mesh status``: validate, enqueue the answer for a worker, ack, audit.
- ``/mesh upgrade bench<k> asm-1-26``: every timed request creates a run (validate,
  authorise, store the run and take the cluster's lease, enqueue its first tick, ack,
  audit) — each concurrent client owns a cluster, and the run is cancelled, untimed, with
  ``/mesh cancel <run-id>`` before the client's next upgrade (the bare side gets the same
  cancels). An answer that is not a new run stops the benchmark.

Prints p50 and p99 per case (ms) and the p99 ratio meshops / bare (target ≤ 1.2), the calls
each side took, and last the case with the highest p99 ratio::

    ack: p99 X ms meshops vs Y ms bare Bolt, ratio R

    .venv/bin/python benchmarks/ack_latency.py [--requests 400] [--clients 1 10] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meshops.demo import Harness, port_open, sign  # noqa: E402

#: the ack that shows a timed ``/mesh upgrade`` created a run (workflows/kinds/upgrade.py)
CREATED = re.compile(r"^Planning the upgrade of `bench\d+` to `asm-1-26` as run `([^`]+)`")
#: the ack of ``/mesh status`` (bot/commands.py)
LOOKING = "Looking at ARM and Kubernetes"
TARGET = 1.2


def bare_app(port: int, secret: str) -> None:
    """A slack-bolt app whose ``/mesh`` listener only acks (the baseline): the ack mode and
    the waitress server of meshops' bot (``bot/app.py``, ``bot/http.py``), the same bot
    token and Web API, Bolt's own request verification and WSGI adapter."""
    from slack_bolt import App
    from slack_bolt.adapter.wsgi import SlackRequestHandler
    from slack_sdk import WebClient

    from bot.http import make_server

    client = WebClient(token=os.environ["SLACK_BOT_TOKEN"],
                       base_url=os.environ["BENCH_SLACK_API_URL"])
    app = App(signing_secret=secret, client=client, process_before_response=True)

    @app.command("/mesh")
    def ack_only(ack):  # type: ignore[no-untyped-def]
        ack(response_type="ephemeral", text="ok")

    make_server(SlackRequestHandler(app), "127.0.0.1", port).run()


def world_file(path: Path, clusters: int) -> Path:
    """A sandbox world of ``clusters`` small clusters on asm-1-25, ``bench0`` … (one
    namespace each: what is timed is the ack, not the cluster)."""
    world = {"clusters": [
        {"name": f"aks-bench{i}", "alias": f"bench{i}", "resource_group": "rg-bench",
         "location": "westus2", "kubernetes_version": "1.31.2", "revisions": ["asm-1-25"],
         "channel": {"id": f"C0BENCH{i}", "name": f"mesh-bench{i}"},
         "namespaces": [{"name": "app", "labels": {"istio.io/rev": "asm-1-25"}}]}
        for i in range(clusters)]}
    path.write_text(yaml.safe_dump(world, sort_keys=False))
    return path


class BotOnly(Harness):
    """The demo's harness with the sandbox and the HTTP bot only: no worker, no beat."""

    def start_worker(self, name: str = "worker") -> Any:
        return None

    def _spawn(self, name: str, *args: str) -> Any:
        return None if name == "beat" else super()._spawn(name, *args)


@dataclass
class Side:
    """One server under test and the connections of its clients (one each, kept alive)."""

    name: str
    port: int
    secret: str
    conns: dict[int, http.client.HTTPConnection] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    serial: int = 0

    def post(self, client: int, text: str) -> tuple[float, str]:
        """Send a signed ``/mesh text`` as user ana; (seconds to the answer, ack text).
        Raises SystemExit on an HTTP status other than 200."""
        self.serial += 1  # distinct bodies: each request is new, as Slack's are
        fields = {"token": "x", "team_id": "T0SANDBOX", "channel_id": f"C0BENCH{client}",
                  "user_id": "U0ANA", "user_name": "ana", "command": "/mesh", "text": text,
                  "api_app_id": "A0MESHOPS", "response_url": "http://127.0.0.1:9/none",
                  "trigger_id": f"{self.name}.{client}.{self.serial}.{time.time_ns()}"}
        body = urllib.parse.urlencode(fields)
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(self.secret, body)}
        conn = self.conns.get(client)
        if conn is None:
            conn = self.conns[client] = http.client.HTTPConnection("127.0.0.1", self.port,
                                                                   timeout=30)
        t0 = time.perf_counter()
        conn.request("POST", "/slack/events", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - t0
        self.calls[text.split()[0]] += 1
        if resp.status != 200:
            raise SystemExit(f"{self.name}: HTTP {resp.status} to `/mesh {text}`: "
                             f"{data[:200]!r}")
        if resp.will_close:
            conn.close()
            del self.conns[client]
        return elapsed, ack_text(data)

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


def ack_text(data: bytes) -> str:
    import json

    try:
        return str(json.loads(data).get("text", "")) if data else ""
    except ValueError:
        return data.decode(errors="replace")


@dataclass
class Case:
    """A command timed at a number of concurrent clients."""

    verb: str
    clients: int

    def text(self, client: int) -> str:
        return "status" if self.verb == "status" else f"upgrade bench{client} asm-1-26"

    def check(self, side: Side, text: str) -> str | None:
        """The run id of a created run (upgrade), or None; SystemExit when meshops' ack is
        not the real work (a refusal, an error)."""
        if side.name == "bare":
            if text != "ok":
                raise SystemExit(f"bare app answered {text!r}")
            return None
        if self.verb == "status":
            if not text.startswith(LOOKING):
                raise SystemExit(f"meshops answered `/mesh status` with {text!r}")
            return None
        created = CREATED.match(text)
        if not created:
            raise SystemExit(f"meshops did not create a run: {text!r}")
        return created.group(1)


def burst(pool: ThreadPoolExecutor, side: Side, case: Case, timed: list[float] | None
          ) -> None:
    """One request per client at once; then, for upgrades, each created run cancelled
    (untimed, the same cancels on both sides)."""

    def one(client: int) -> str | None:
        elapsed, text = side.post(client, case.text(client))
        if timed is not None:
            timed.append(elapsed)  # list.append is atomic under the GIL
        return case.check(side, text)

    run_ids = list(pool.map(one, range(case.clients)))
    if case.verb == "upgrade":
        def cancel(client: int) -> None:
            _, text = side.post(client, f"cancel {run_ids[client] or 'bench-run'}")
            if side.name == "meshops" and "cancel recorded" not in text:
                raise SystemExit(f"meshops did not cancel {run_ids[client]}: {text!r}")

        list(pool.map(cancel, range(case.clients)))


def run_case(sides: list[Side], case: Case, requests: int, warm: int
             ) -> dict[str, list[float]]:
    """Warm both sides, then ``requests`` timed requests per side in rounds of one burst
    each, alternating which side goes first; {side name: latencies in s}."""
    timed: dict[str, list[float]] = {s.name: [] for s in sides}
    with ThreadPoolExecutor(case.clients) as pool:
        for r in range(max(1, warm // case.clients)):
            for side in sides if r % 2 == 0 else sides[::-1]:
                burst(pool, side, case, None)
        for r in range(max(1, requests // case.clients)):
            for side in sides if r % 2 == 0 else sides[::-1]:
                burst(pool, side, case, timed[side.name])
    return timed


def pct(values: list[float], q: int) -> float:
    """The q-th percentile (inclusive method: p99 of 100 values is between the top two)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400,
                        help="timed requests per side and case (default 400)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10],
                        help="concurrent clients of each case (default 1 10)")
    parser.add_argument("--quick", action="store_true",
                        help="60 timed requests per side and case (under a minute)")
    parser.add_argument("--port-base", type=int, default=None,
                        help="ports base … base+6 (sandbox), +80 (bot), +90 (bare app)")
    parser.add_argument("--bare-app", nargs=2, metavar=("PORT", "SECRET"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_app:
        bare_app(int(args.bare_app[0]), args.bare_app[1])
        return
    requests = 60 if args.quick else args.requests
    warm = max(20, requests // 10)
    state = Path(tempfile.mkdtemp(prefix="meshops-ackbench-"))
    world = world_file(state / "world.yaml", max(args.clients))
    base = args.port_base or random.randrange(16000, 20000, 100)
    h = BotOnly(state, base, base + 80, echo=lambda line: None, world_file=world)
    bare_port = base + 90
    bare: subprocess.Popen[bytes] | None = None
    sides: list[Side] = []
    try:
        h.start()
        secret = h.info["env"]["SLACK_SIGNING_SECRET"]
        bare = subprocess.Popen([sys.executable, __file__, "--bare-app", str(bare_port), secret],
                                env={**os.environ, **h.info["env"], "PYTHONPATH": str(ROOT),
                                     "BENCH_SLACK_API_URL": h.info["url"]["slack"] + "/api/"},
                                stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(bare_port), 30, "the bare app to listen")
        sides = [Side("bare", bare_port, secret), Side("meshops", h.bot_port, secret)]
        print(f"ack latency, HTTP mode, {requests} timed signed requests per side and case, "
              f"rounds alternating the side that goes first, after {warm} to warm each "
              "(ms; ratio = meshops / bare slack-bolt app, same ack mode and server)")
        print(f"{'command':<28}{'clients':>8}{'bare p50':>10}{'bare p99':>10}"
              f"{'p50':>9}{'p99':>9}{'p99 ratio':>11}")
        worst: tuple[float, float, float] | None = None
        for verb in ("status", "upgrade"):
            for clients in args.clients:
                case = Case(verb, clients)
                t = run_case(sides, case, requests, warm)
                b, m = t["bare"], t["meshops"]
                ratio = pct(m, 99) / pct(b, 99)
                label = "/mesh " + ("status" if verb == "status"
                                    else "upgrade bench<k> asm-1-26")
                print(f"{label:<28}{clients:>8}{pct(b, 50) * 1e3:>10.2f}"
                      f"{pct(b, 99) * 1e3:>10.2f}{pct(m, 50) * 1e3:>9.2f}"
                      f"{pct(m, 99) * 1e3:>9.2f}{ratio:>10.2f}×", flush=True)
                if worst is None or ratio > worst[2]:
                    worst = (pct(m, 99), pct(b, 99), ratio)
        for side in sides:
            print(f"calls {side.name}: {sum(side.calls.values())} "
                  f"({', '.join(f'{k} {v}' for k, v in sorted(side.calls.items()))})")
    finally:
        for side in sides:
            side.close()
        if bare is not None:
            bare.terminate()
            bare.wait(10)
        h.stop()
    assert worst is not None
    print(f"ack: p99 {worst[0] * 1e3:.2f} ms meshops vs {worst[1] * 1e3:.2f} ms bare Bolt, "
          f"ratio {worst[2]:.2f}")


if __name__ == "__main__":
    main()
