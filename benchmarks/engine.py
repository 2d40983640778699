"""Engine benchmark: one upgrade of a 200-namespace cluster, against a plain loop.

Starts ``meshops sandbox`` with 200 extra namespaces of 5 Deployments each on the dev
cluster, instant rollouts and ARM operations, and a real Prometheus. Then, in this process
(which plays the worker):

1. **engine** — one upgrade run from plan to completion through the real engine
   (``Engine.advance`` with the Redis run store and the SDK adapters), bake time zero,
   rechecks taken at once instead of after their countdown;
2. **plain loop** — the same ARM, Kubernetes and Prometheus calls made in a straight loop
   with the same adapters, no engine, no store (the reverse direction, back to stable, so
   each measures a real change).

The plain loop reads Prometheus as the workers do (``workflows/waves.py``): per wave, one
``windows`` read in the baseline step (``baseline_s``, an hour, before now) and one per
gate look — the wave, its control as the engine's run recorded it (up to 20 namespaces not
yet migrated) and the ingress gateways, from ``baseline_s`` before the move to now — as
many looks as the engine's run took.

Prints the engine's wall time as a ratio to the plain loop's (target ≤ 1.5×), Prometheus
queries per read and per wave (target: one per signal, 4 per ``windows`` read), and this
process's peak RSS (target < 300 MB).

    .venv/bin/python benchmarks/engine.py [--namespaces 200] [--wave-size 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workers.config import load_fleet  # noqa: E402
from workers.engine import Engine  # noqa: E402
from workers.store.runs import RedisRunStore  # noqa: E402
from workers.wiring import FleetPorts  # noqa: E402
from workflows.kind import StartRun  # noqa: E402
from workflows.model import Phase  # noqa: E402
from workflows.waves import restart_token  # noqa: E402


def start_sandbox(state: Path, base: int, namespaces: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshops", "sandbox", "--state-dir", str(state), "--port-base",
         str(base), "--extra-namespaces", str(namespaces), "--rollout-s", "0",
         "--operation-s", "0"],
        stdout=subprocess.DEVNULL, stderr=open(state.parent / "sandbox.log", "wb"),  # noqa: SIM115
        start_new_session=True)
    deadline = time.time() + 120
    while not (state / "sandbox.json").exists():
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"sandbox did not start; see {state.parent / 'sandbox.log'}")
        time.sleep(0.2)
    return proc


def run_engine(engine: Engine, store: RedisRunStore, wave_size: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    run = engine.start(StartRun("upgrade", "dev", "asm-1-26", {
        "bake_s": 0.0, "interval_s": 5.0, "wave_size": wave_size}), "U0ANA", "C0DEVMESH")
    ticks = 0

    def drive(run_id: str) -> None:
        nonlocal ticks
        while True:
            run = store.get(run_id)
            if run.phase.terminal or run.phase.waiting_for_person:
                return
            advanced = engine.advance(run_id, run.seq)
            ticks += 1
            if advanced is None:
                raise SystemExit(f"engine stalled at {run.phase}")

    drive(run.id)
    engine.decide(run.id, "approve", "U0BEN")
    drive(run.id)
    final = store.get(run.id)
    if final.phase != Phase.AWAITING_COMPLETION:
        raise SystemExit(f"run ended {final.phase}: {final.pause_reason or final.outcome}")
    engine.decide(run.id, "complete", "U0BEN")
    drive(run.id)
    final = store.get(run.id)
    if final.phase != Phase.COMPLETED:
        raise SystemExit(f"run ended {final.phase}: {final.outcome}")
    return time.perf_counter() - t0, len(final.waves)


def run_plain(ports: FleetPorts, stable: str, canary: str, waves: list[list[str]],
              controls: list[list[str]], looks: list[int], interval_s: float,
              baseline_s: float) -> float:
    """The same calls in a plain loop: canary start, each wave, completion.

    ``controls`` and ``looks``: per wave, the control namespaces the engine's run read and
    how many gate looks it took; ``baseline_s``: how far before the move a look reads."""
    mesh, capi, metrics = ports.mesh, ports.cluster_api("dev"), ports.metrics("dev")
    t0 = time.perf_counter()

    def until(cond: object, what: str) -> None:
        deadline = time.time() + 120
        while not cond():  # type: ignore[operator]
            if time.time() > deadline:
                raise SystemExit(f"plain loop: {what} did not happen in 120 s")

    def put(revisions: list[str]) -> None:
        mesh.get_mesh("dev")
        url = mesh.set_revisions("dev", revisions)
        until(lambda: mesh.operation_status("dev", url or "").done, "the ARM operation")
        mesh.get_mesh("dev")

    mesh.get_mesh("dev")
    mesh.upgrade_targets("dev")
    capi.list_namespaces()
    capi.list_workloads([ns for w in waves for ns in w])
    put([stable, canary])
    capi.control_plane_revisions()
    token = restart_token(time.time())
    for wave, control, n_looks in zip(waves, controls, looks, strict=True):
        now = time.time()
        metrics.windows(wave, [], now - baseline_s, now, interval_s)  # the baseline step
        capi.list_namespaces()
        for ns in wave:
            capi.set_namespace_revision(ns, canary)
        moved = time.time()
        for w in capi.list_workloads(wave):
            capi.restart_workload(w, token)
        def rolled_over(wave: list[str] = wave) -> bool:
            pending = [w for w in capi.list_workloads(wave) if not w.rolled_out]
            pods = capi.list_pods(wave)
            return not pending and all(p.revision == canary for p in pods if p.revision)

        until(rolled_over, f"the rollout of {wave}")
        gateways = sorted(f"aks-istio-ingressgateway-{mode.lower()}-{rev}"
                          for mode, rev in capi.revision_gateways() if rev in (canary, stable))
        for _ in range(n_looks):
            metrics.windows([*wave, *control], gateways, moved - baseline_s, time.time(),
                            interval_s)
    capi.list_namespaces()
    put([canary])
    capi.control_plane_revisions()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=200)
    parser.add_argument("--wave-size", type=int, default=10)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="meshops-bench-")) / "sandbox"
    base = random.randrange(16000, 20000, 10)
    proc = start_sandbox(state, base, args.namespaces)
    info = json.loads((state / "sandbox.json").read_text())
    os.environ.update(info["env"])
    prefix = f"meshops-bench-{secrets.token_hex(4)}"
    store = RedisRunStore.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                                   prefix)
    try:
        fleet = load_fleet(state / "fleet.yaml")
        fleet = fleet.model_copy(update={"defaults": fleet.defaults.model_copy(update={
            "gates": fleet.defaults.gates.model_copy(update={"min_requests": 1})})})
        time.sleep(6)  # let Prometheus gather a window of traffic
        ports = FleetPorts(fleet)
        engine = Engine(fleet, store, ports)
        engine_s, n_waves = run_engine(engine, store, args.wave_size)
        queries = ports.metrics("dev").queries
        k8s_calls, arm_calls = ports.cluster_api("dev").calls, ports.mesh.calls
        run = store.list_runs("dev")[0]
        waves = [w.namespaces for w in run.waves]
        looks = [len(w.samples) for w in run.waves]
        reads = sum(looks) + len(run.waves)  # + a baseline step per wave

        plain_ports = FleetPorts(fleet)
        plain_s = run_plain(plain_ports, run.canary_revision, "asm-1-27", waves,
                            [w.control for w in run.waves], looks, run.options.interval_s,
                            run.thresholds.canary.baseline_s)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"engine benchmark: dev cluster, {sum(len(w) for w in waves)} namespaces, "
              f"{sum(w.workloads for w in run.waves)} workloads, {n_waves} waves")
        print(f"  engine run:        {engine_s:8.2f} s  ({arm_calls} ARM calls, "
              f"{k8s_calls} Kubernetes calls)")
        print(f"  plain loop:        {plain_s:8.2f} s  ({plain_ports.mesh.calls} ARM calls, "
              f"{plain_ports.cluster_api('dev').calls} Kubernetes calls)")
        print(f"  ratio:             {engine_s / plain_s:8.2f} ×  (target ≤ 1.5)")
        print(f"  Prometheus:        {queries} queries for {reads} windows reads = "
              f"{queries / reads:.1f} per read (one per signal: 4), "
              f"{queries / n_waves:.1f} per wave; plain loop: "
              f"{plain_ports.metrics('dev').queries} queries")
        print(f"  peak memory (RSS): {peak_mb:8.1f} MB (target < 300)")
    finally:
        keys = list(store.r.scan_iter(prefix + "*"))
        if keys:
            store.r.delete(*keys)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


if __name__ == "__main__":
    main()
