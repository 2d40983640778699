"""Worker memory benchmark (issue 13): where a worker's peak resident set goes, cheaply.

:mod:`benchmarks.engine` measures the worker's peak RSS at a 2,000-namespace upgrade in 45
minutes; this takes seconds and splits it up, each part in a fresh interpreter:

1. **imports**: ``VmRSS`` after importing the worker's task module (``workers.tasks.app``),
   and after each of the heavy libraries alone.
2. **gate look**: one look at a wave the size of a 2,000-namespace upgrade's (``--wave``
   namespaces, ``--control`` control namespaces and two ingress gateways, an hour of
   baseline plus the bake so far at ``--step`` s), through the worker's own path:
   ``PrometheusMetricsApi.windows`` (prometheus-api-client over HTTP against a local
   server answering the two queries with Prometheus' JSON: the wave's targets, and its
   windows, every signal's series labelled with it as ``label_replace`` labels them) →
   :func:`workflows.waves.on_latest_revision` → :func:`workflows.canary.judge_canary`.
   Printed: the ``VmHWM`` growth over the ``VmRSS`` before the look, tracemalloc's peak
   (another run, tracemalloc costs memory of its own), the windows read and the verdict.
   ``plan``: the same for the upgrade plan's read of every namespace (``--namespaces``)
   over the last hour in 300 s windows (:func:`workflows.waves.low_traffic_note`'s).
3. **notifier**: a finished run of ``--namespaces`` namespaces (the run store benchmark's
   ticks) parsed from its stored JSON as the sync task reads it, its root message, every
   history line and the last wave's chart rendered (``gate_chart``: in a child
   interpreter); ``VmHWM`` growth and tracemalloc peak, and the chart process' peak RSS.

    .venv/bin/python benchmarks/memory.py [--wave 100] [--control 20] [--step 10]
        [--baseline 3600] [--rps 20] [--source] [--parts imports,look,plan,notify]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HEAVY = ("kubernetes", "azure.mgmt.containerservice", "azure.identity", "slack_sdk",
         "matplotlib.pyplot", "numpy", "celery", "pydantic", "prometheus_api_client")
STABLE, CANARY = "asm-1-25", "asm-1-26"
TAGS = {STABLE: "1.25.3", CANARY: "1.26.2"}
#: Istio's ``le`` labels as Prometheus writes them
LES = ("0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000",
       "10000", "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf")


def status_kb(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process, kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def mb(kb: float) -> str:
    return f"{kb / 1024:6.1f} MB"


# --------------------------------------------------------------------------------------
# 1. imports


def import_rss(module: str) -> int:
    code = (f"import {module}\n" if module else "") + \
        "print([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return int(out.stdout.strip())


def part_imports() -> None:
    bare = import_rss("")
    worker = import_rss("workers.tasks.app")
    print(f"imports: bare interpreter {mb(bare)}; workers.tasks.app {mb(worker)}")
    for m in HEAVY:
        print(f"    {m:30} +{mb(import_rss(m) - bare)}")
    mods = subprocess.run(
        [sys.executable, "-c", "import sys, workers.tasks.app; "
         "print(' '.join(m for m in ('matplotlib', 'numpy') if m in sys.modules))"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    print(f"    loaded by workers.tasks.app: {mods or 'neither matplotlib nor numpy'}")


# --------------------------------------------------------------------------------------
# 2. a gate look


class World:
    """The wave's traffic: per window, requests (200 / 503), latency buckets, TCP."""

    def __init__(self, a: argparse.Namespace):
        # short names in the plan's read of every namespace: its GET must fit the local
        # server's 64 KiB request line (Prometheus takes 1 MiB)
        self.wave = [f"{'n' if a.wave > 1000 else 'app-'}{i:04}" for i in range(a.wave)]
        self.control = [f"app-{1000 + i:04}" for i in range(a.control)]
        self.gateways = [f"aks-istio-ingressgateway-external-{r}" for r in (STABLE, CANARY)]
        self.step = a.step
        self.now = 1_800_000_000.0
        self.moved = self.now - a.bake_s
        self.baseline_s = a.baseline
        self.source = a.source
        self.rps = a.rps
        self.first = (int(self.moved - a.baseline) // a.step + 1) * a.step
        self.times = list(range(self.first, int(self.now) // a.step * a.step + 1, a.step))

    def series(self, signal: str) -> list[dict[str, Any]]:
        rnd = random.Random(signal)
        out: list[dict[str, Any]] = []
        reporters = ("destination", "source") if self.source else ("destination",)
        subjects = [(ns, rep) for ns in [*self.wave, *self.control] for rep in reporters]
        for ns, rep in subjects:
            for rev in (STABLE, CANARY) if ns in self.wave else (STABLE,):
                times = [t for t in self.times if (t > self.moved) == (rev == CANARY)] \
                    if ns in self.wave else self.times
                labels = {"reporter": rep, f"{rep}_workload_namespace": ns, "tag": TAGS[rev]}
                out += self._signal(signal, labels, times, rnd)
        for gw in self.gateways:
            labels = {"reporter": "source", "source_workload": gw}
            out += self._signal(signal, labels, self.times, rnd)
        return out

    def _signal(self, signal: str, labels: dict[str, str], times: list[int],
                rnd: random.Random) -> list[dict[str, Any]]:
        rate = self.rps * self.step
        if signal == "requests":
            return [{"metric": {**labels, "response_code": "200"},
                     "values": [[t, f"{rnd.gauss(rate, rate ** 0.5):.6f}"] for t in times]},
                    {"metric": {**labels, "response_code": "503"},
                     "values": [[t, f"{rnd.random() * 0.002 * rate:.6f}"] for t in times]}]
        if signal == "buckets":
            fractions = [min(1.0, 0.02 * 2 ** i) for i in range(len(LES))]
            return [{"metric": {**labels, "le": le},
                     "values": [[t, f"{rate * f:.6f}"] for t in times]}
                    for le, f in zip(LES, fractions, strict=True)]
        if signal == "tcp_opened":
            return [{"metric": labels, "values": [[t, "0"] for t in times]}]
        return []


def serve(world: World) -> tuple[ThreadingHTTPServer, str]:
    from workers.prom.windows import SIGNAL_LABEL, SIGNALS

    bodies = {}
    for signal in SIGNALS:
        bodies[signal] = json.dumps({"status": "success", "data": {
            "resultType": "matrix", "result": world.series(signal)}}).encode()
    # the windows' one query: every signal's series, each labelled with its signal
    windows = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {**s, "metric": {**s["metric"], SIGNAL_LABEL: signal}}
        for signal in SIGNALS for s in world.series(signal)]}}).encode()
    targets = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"job": "workload", "instance": f"10.0.{i // 250}.{i % 250}:15020"},
         "value": [world.now, "1"]} for i in range(len(world.wave) + len(world.control))]}}
                         ).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, query: str) -> None:
            if self.path.startswith("/api/v1/query_range"):
                if SIGNAL_LABEL not in query:
                    raise ValueError(f"not the windows' query: {query[:200]}")
                body = windows
            else:
                body = targets
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            qs = parse_qs(self.path.partition("?")[2])
            self._answer(qs.get("query", [""])[0])

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length", 0))
            qs = parse_qs(self.rfile.read(n).decode())
            self._answer(qs.get("query", [""])[0])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sizes = (f"{len(windows) / 1e6:.1f} MB (" +
             ", ".join(f"{k} {len(v) / 1e6:.1f} MB" for k, v in bodies.items()) + ")")
    print(f"{'plan' if world.step >= 300 else 'look'}: {len(world.wave)} + "
          f"{len(world.control)} control namespaces, 2 gateways, "
          f"{len(world.times)} windows of {world.step} s; Prometheus' answers: {sizes}")
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def child_look(a: argparse.Namespace) -> dict[str, Any]:
    """One look at the wave, in this (fresh) process."""
    import tracemalloc

    if a.worker_imports:
        import workers.tasks.app  # noqa: F401  (what every worker process holds)
    from workers.prom.metrics import PrometheusMetricsApi
    from workflows.canary import CanaryWave, judge_canary
    from workflows.model import GateThresholds
    from workflows.waves import on_latest_revision

    world = World(a)
    th = GateThresholds().canary
    api = PrometheusMetricsApi(a.url)
    if a.plan:  # the plan's read: windows only, no judgement
        before, t0 = status_kb("VmRSS"), time.perf_counter()
        if a.trace:
            tracemalloc.start()
        n = len(api.windows(world.wave, [], world.now - a.baseline, world.now, a.step))
        peak = tracemalloc.get_traced_memory()[1] if a.trace else 0
        return {"rss_before": before, "hwm": status_kb("VmHWM"), "trace_peak": peak,
                "windows": n, "verdict": "-", "reason": "the plan's read",
                "s": time.perf_counter() - t0}
    cw = CanaryWave(canary=world.wave, gateways=[f"gateway/{world.gateways[1]}"],
                    control=world.control, canary_revision=CANARY,
                    baseline_from=world.moved - th.baseline_s, baseline_until=world.moved,
                    bake_started_at=world.moved)
    if a.trace:
        tracemalloc.start()
    before, t0 = status_kb("VmRSS"), time.perf_counter()
    # as a bake's look: through the window cache, which then holds the hour's final part
    # (by the world's clock: its samples are stamped at world.now)
    api.cache.clock = lambda: world.now
    windows = api.windows([*world.wave, *world.control], world.gateways, cw.baseline_from,
                          world.now, a.step, repeat=True)
    n = len(windows)
    windows = on_latest_revision(windows, world.control)
    judgement = judge_canary(windows, cw, world.now, a.bake_s, a.step, th)
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if a.trace else 0
    return {"rss_before": before, "hwm": status_kb("VmHWM"), "trace_peak": peak,
            "windows": n, "verdict": str(judgement.verdict),
            "reason": judgement.reason[:80], "s": elapsed,
            "cached": api.cache.held}


def part_look(a: argparse.Namespace) -> None:
    if a.plan:
        a = argparse.Namespace(**{**vars(a), "wave": a.namespaces, "control": 0,
                                  "step": 300, "bake_s": 0.0})
    server, url = serve(World(a))
    try:
        out = {}
        for trace, worker in ((False, False), (True, False), (False, True)):
            args = [sys.executable, __file__, "--child", "look", "--url", url,
                    "--wave", str(a.wave), "--control", str(a.control), "--step", str(a.step),
                    "--baseline", str(a.baseline), "--bake-s", str(a.bake_s),
                    "--rps", str(a.rps),
                    *(["--source"] if a.source else []), *(["--trace"] if trace else []),
                    *(["--worker-imports"] if worker else []), *(["--plan"] if a.plan else [])]
            res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
            if res.returncode:
                raise SystemExit(res.stderr)
            out[trace, worker] = json.loads(res.stdout.strip().splitlines()[-1])
    finally:
        server.shutdown()
    r, t, w = out[False, False], out[True, False], out[False, True]
    what = "plan" if a.plan else "look"
    print(f"{what}: {r['windows']} windows, {r['s']:.2f} s, verdict {r['verdict']} "
          f"({r['reason']}); {r.get('cached', 0)} windows kept for the next look")
    print(f"{what}: RSS before {mb(r['rss_before'])}, VmHWM after {mb(r['hwm'])}: "
          f"+{mb(r['hwm'] - r['rss_before'])}; tracemalloc peak {mb(t['trace_peak'] / 1024)}")
    print(f"{what}: after importing workers.tasks.app: RSS before {mb(w['rss_before'])}, "
          f"VmHWM after {mb(w['hwm'])} (a worker process' peak for this look)")


# --------------------------------------------------------------------------------------
# 3. the notifier's read of a big run


def child_notify(a: argparse.Namespace) -> dict[str, Any]:
    import resource
    import tracemalloc

    from benchmarks.run_store import ticks
    from workers.slack import charts
    from workers.slack.render import render_event, render_root
    from workflows.model import Phase, Run, Wave

    size = a.namespaces // a.waves
    waves = [Wave(index=w, namespaces=[f"team-{w * size + i:04}" for i in range(size)],
                  workloads=3 * size) for w in range(a.waves)]
    run = Run(id="r-bench", cluster="big", requester="UREQ", channel="C1",
              canary_revision=CANARY, stable_revision=STABLE, phase=Phase.MIGRATING,
              waves=waves, created_at=1e9, updated_at=1e9)
    text = ticks(run, a.samples, a.checks)[-1].model_dump_json()
    del run, waves
    if a.trace:
        tracemalloc.start()
    before = status_kb("VmRSS")
    run = Run.model_validate_json(text)
    render_root(run, [])
    lines = sum(len(render_event(run, i)) for i in range(len(run.history)))
    t0 = time.perf_counter()
    png = charts.gate_chart(run)
    drawn = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if a.trace else 0
    return {"rss_before": before, "hwm": status_kb("VmHWM"), "trace_peak": peak,
            "json": len(text), "history": len(run.history), "lines": lines, "png": len(png),
            "chart_s": drawn, "matplotlib": "matplotlib" in sys.modules,
            "chart_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}


def part_notify(a: argparse.Namespace) -> None:
    out = {}
    for trace in (False, True):
        args = [sys.executable, __file__, "--child", "notify", "--namespaces",
                str(a.namespaces), "--waves", str(a.waves), "--samples", str(a.samples),
                "--checks", str(a.checks), *(["--trace"] if trace else [])]
        res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(res.stderr)
        out[trace] = json.loads(res.stdout.strip().splitlines()[-1])
    r, t = out[False], out[True]
    print(f"notify: run of {a.namespaces} namespaces, {r['json'] / 1e6:.2f} MB JSON, "
          f"{r['history']} history lines; RSS before {mb(r['rss_before'])}, VmHWM after "
          f"{mb(r['hwm'])}: +{mb(r['hwm'] - r['rss_before'])}; tracemalloc peak "
          f"{mb(t['trace_peak'] / 1024)}")
    where = "in this process" if r["matplotlib"] else "in a child interpreter"
    print(f"notify: chart drawn {where} in {r['chart_s']:.2f} s; the child's peak RSS "
          f"{mb(r['chart_rss'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="imports,look,plan,notify")
    ap.add_argument("--wave", type=int, default=100, help="namespaces of the wave")
    ap.add_argument("--control", type=int, default=20)
    ap.add_argument("--step", type=int, default=10, help="window length, s")
    ap.add_argument("--baseline", type=int, default=3600, help="baseline, s")
    ap.add_argument("--bake-s", type=float, default=20.0, help="bake so far, s")
    ap.add_argument("--source", action="store_true",
                    help="namespaces report as source too (callers inside the mesh)")
    ap.add_argument("--rps", type=float, default=20.0,
                    help="requests a second of each namespace (counts above 256 are ints of "
                         "their own in Python)")
    ap.add_argument("--namespaces", type=int, default=2000)
    ap.add_argument("--waves", type=int, default=20)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--checks", type=int, default=40)
    ap.add_argument("--child", choices=("look", "notify"), help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker-imports", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--plan", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child == "look":
        print(json.dumps(child_look(a)))
        return
    if a.child == "notify":
        print(json.dumps(child_notify(a)))
        return
    parts = a.parts.split(",")
    if "imports" in parts:
        part_imports()
    if "look" in parts:
        part_look(a)
    if "plan" in parts:
        part_look(argparse.Namespace(**{**vars(a), "plan": True}))
    if "notify" in parts:
        part_notify(a)


if __name__ == "__main__":
    main()
