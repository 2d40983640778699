"""Fleet benchmark: 1, 10 and 30 upgrades at once, through the whole product.

For each size N, a fresh sandbox of N generated clusters (``meshops sandbox --namespaces
M --clusters N``: M app namespaces each, a Deployment of two pods in each) with the real
Prometheus, one Celery worker and beat, the bot over HTTP, and the sandbox's Slack
enforcing Slack's published limits (per-method tiers a minute, one message a second per
channel with short bursts; 429 with ``Retry-After`` beyond them: ``sandbox/slack.py``).
Once Prometheus holds enough history for the first wave's baseline, every cluster's
upgrade is asked for (``/mesh upgrade scale-NN <newest>``) and approved, and each run's
*Complete* is clicked as soon as the benchmark sees it. People act at once: the benchmark
measures the machine, not them.

Per run:

- **wall**: from leaving ``awaiting_approval`` to the terminal phase, less the time the
  run spent waiting for the Complete click (phase events of the run's history);
- **unavoidable**: what the systems themselves take whatever orchestrates them: the two
  ARM operations (the canary's start and the completion, ``operation_s`` each), and per
  wave its rollout and its bake. A rollout of the generated Deployment (two replicas, the
  default RollingUpdate: maxSurge 25 % → 1, maxUnavailable 25 % → 0) replaces one pod at a
  time, each ready ``rollout_s`` after it is created: 2 × ``rollout_s``. The bake is the
  run's own (``--bake``; a gate that extends it counts the extension as unavoidable too:
  its deciding look × ``--interval``, from the run's gate looks).

Across the runs: tick lag (every second, each active run's ``now - next_tick_at`` when
due), Slack calls a minute per method (the highest over any 60 s, whole workspace, from
the sandbox's Slack log: ``chat.postMessage``, ``chat.update`` and the charts'
``files.completeUploadExternal``), the most posts in one channel in any one second (file
shares counted as posts, as Slack counts them), and the 429s Slack's limits gave (``GET
/_sandbox/slack/throttled``), and the CPU seconds each part used while the
runs went on (worker, Prometheus, the emulators, bot, beat, Redis: they share the machine's
cores, so a wall time above the unavoidable can be told apart from meshops' own cost), and
where each run's wall above its unavoidable went (:func:`overhead`: ARM operations seen
done late, rollouts seen done late, deciding looks after the bake, the steps between).

Targets at 30 runs (issue 13): wall/unavoidable ≤ 1.1, chat.update ≤ 50 a minute, at most
one post per channel per second, no 429. Last line:

    fleet: 30 runs, wall/unavoidable X, chat.update per minute Y, max posts per channel \
per second Z, 429s N  (one line)

    .venv/bin/python benchmarks/fleet.py [--runs 1,10,30] [--namespaces 6] [--bake 6s]

``--campaign`` (issue 14): one campaign across N generated clusters instead (``meshops
sandbox --namespaces M --clusters N --campaign``: the clusters labelled ``ring: dev`` (the
first 10 %), ``staging`` (the next 30 %), ``prod`` (the rest), and the fleet file's three
stages selecting them in that order, ``--max-concurrency`` of them at once, a failure
budget of one, no stage approval, a ``--soak``). Once Prometheus holds enough history,
``/mesh campaign start <newest>`` is typed in the campaigns' channel and its plan approved;
the campaign approves and completes its cluster runs itself (its approver is the fleet's,
``workflows/kinds/campaign.py``); a stage approval or a cluster run the campaign hands to a
person is clicked at once, as in the fleet mode. The cluster runs' bake and interval are
the fleet file's defaults, set to ``--bake`` and ``--interval`` before the worker starts.

- **wall**: from the campaign leaving ``awaiting_approval`` to its terminal phase
  (``completed``, or ``halted``), less the time it waited for people (its
  ``awaiting_*`` phases after the approval: none when no stage asks for one);
- **unavoidable**: the critical path the systems impose on the campaign, stage after stage:
  ``Σ_stage ⌈clusters / max_concurrency⌉ × cluster + soak`` — a stage moves its clusters
  ``max_concurrency`` at a time, so ⌈clusters / max_concurrency⌉ rounds of one cluster's
  unavoidable upgrade each (the fleet mode's model above: two ARM operations, and per wave
  its rollout and its bake, extended by its gate; the stage's slowest cluster, whose runs
  for all its hops are summed: the generated clusters are alike, one hop to the newest
  revision), then the stage's soak (when it upgraded a cluster);
- Slack calls a minute per method, posts per channel per second and 429s, as above.

Last line:

    fleet: campaign of N clusters, wall/unavoidable X, chat.update per minute Y, max posts \
per channel per second Z, 429s K  (one line)

    .venv/bin/python benchmarks/fleet.py --campaign [--clusters 50] [--namespaces 6] \
[--bake 6s] [--max-concurrency 5,10,15] [--soak 5s]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from meshops.demo import RUN_ID_RE, TERMINAL, Harness, newest  # noqa: E402
from workers.config import load_fleet  # noqa: E402
from workers.store.runs import RedisRunStore  # noqa: E402
from workers.wiring import FleetPorts  # noqa: E402
from workflows.errors import TemporaryError  # noqa: E402
from workflows.syntax import parse_duration  # noqa: E402

#: the sandbox's defaults (``meshops sandbox --operation-s/--rollout-s``)
OPERATION_S = 2.0
ROLLOUT_S = 1.0
#: pods replaced one after the other in a rollout of the generated Deployment
ROLLOUT_STEPS = 2


@dataclass
class Figures:
    """One size's measurements."""

    runs: int
    wall: list[float] = field(default_factory=list)
    unavoidable: list[float] = field(default_factory=list)
    phases: Counter[str] = field(default_factory=Counter)
    lag: list[float] = field(default_factory=list)
    per_minute: dict[str, int] = field(default_factory=dict)
    channel_second: int = 0
    throttled: int = 0
    #: CPU seconds each part used while the runs went on, and how long that was (s)
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_wall: float = 0.0
    #: each completed run's :func:`overhead`
    overheads: list[dict[str, float]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        ratios = [w / u for w, u in zip(self.wall, self.unavoidable, strict=True) if u > 0]
        return statistics.median(ratios) if ratios else math.nan


class SlackLog:
    """The sandbox's Slack log read incrementally (``?after=<seq>``), the runs' root
    messages as they stand."""

    def __init__(self, h: Harness) -> None:
        self.h, self.seen, self.entries = h, 0, []  # type: ignore[var-annotated]
        self.roots: dict[str, dict[str, Any]] = {}

    def poll(self) -> None:
        new = self.h.slack_log(self.seen)
        if not new:
            return
        self.seen = new[-1]["seq"]
        self.entries.extend(new)
        for e in new:
            if e["kind"] in ("post", "update") and not e.get("thread_ts"):
                m = RUN_ID_RE.search(e.get("text") or "")
                if m and f"(run {m.group(0)})" in e["text"]:
                    self.roots[m.group(0)] = e

    def button(self, run_id: str, action: str) -> dict[str, Any] | None:
        root = self.roots.get(run_id)
        if root and any(el.get("action_id") == f"meshops_{action}"
                        for b in root.get("blocks") or [] if b.get("type") == "actions"
                        for el in b["elements"]):
            return root
        return None


def person_wait(history: list[Any]) -> float:
    """Seconds the run spent waiting for a person after its approval (awaiting-* phases)."""
    waited, since = 0.0, None
    for e in history:
        if e.kind != "phase":
            continue
        phase = e.data.get("phase", "")
        if since is not None:
            waited += e.at - since
            since = None
        if phase.startswith("awaiting_") and phase != "awaiting_approval":
            since = e.at
    return waited


def wall_of(run: Any) -> float:
    """Seconds from the run leaving ``awaiting_approval`` (else its creation) to its last
    phase, less the time it waited for people after the approval (:func:`person_wait`)."""
    phases = [e for e in run.history if e.kind == "phase"]
    start = next((e.at for i, e in enumerate(phases[:-1])
                  if e.data.get("phase") == "awaiting_approval"), None)
    start = next((p.at for p in phases if start is not None and p.at > start), start)
    end = phases[-1].at if phases else run.updated_at
    return float(end - (start if start is not None else run.created_at)
                 - person_wait(run.history))


def measured(run: Any, bake_s: float, interval_s: float) -> tuple[float, float]:
    """(wall, unavoidable) of a finished run, seconds (see the module docstring)."""
    wall = wall_of(run)
    # the look that decided, one interval apart from the bake's start
    bakes = sum(max(bake_s, deciding_look(run, w.index) * interval_s) for w in run.waves)
    unavoidable = 2 * OPERATION_S + len(run.waves) * ROLLOUT_STEPS * ROLLOUT_S + bakes
    return wall, unavoidable


def deciding_look(run: Any, wave: int) -> int:
    """The highest look of wave ``wave`` that decided (0: none did), from its gate events."""
    return max((int(e.data.get("look") or 0) for e in run.history if e.kind == "gate"
                and e.data.get("wave") == wave and e.data.get("decided")), default=0)


def overhead(run: Any, bake_s: float, interval_s: float) -> dict[str, float]:
    """Where a finished run's wall time above its unavoidable time (:func:`measured`)
    went, seconds:

    - ``ARM``: its ARM operations seen done (the run's next phase after a PUT's ``arm``
      event; a PUT sent again before that counts from the last one) beyond the two
      operations' ``2 × OPERATION_S``; the completion's includes the old control plane's
      removal, which the run checks with it;
    - ``rollouts``: each wave's bake started (its rollout seen done) later than its
      rollout's ``ROLLOUT_STEPS × ROLLOUT_S`` after its restart;
    - ``bakes``: each wave's deciding look later than its bake (the deciding look ×
      ``interval_s``, at least ``bake_s``) after the bake started;
    - ``between``: the rest: approval to the PUT, the control plane seen deployed to the
      first wave's restart, each gate decision to the next wave's restart or to the
      Complete button, the Complete to its PUT (and a wave's rollout and bake when the
      run holds no times for them).
    """
    wall, unavoidable = measured(run, bake_s, interval_s)
    arm, put = 0.0, None
    for e in run.history:
        if e.kind == "arm":
            put = e.at
        elif e.kind == "phase" and put is not None:
            arm += e.at - put
            put = None
    arm -= 2 * OPERATION_S
    rollouts = bakes = 0.0
    for w in run.waves:
        if w.restarted_at is None or w.bake_started_at is None:
            continue
        rollouts += w.bake_started_at - w.restarted_at - ROLLOUT_STEPS * ROLLOUT_S
        look = deciding_look(run, w.index)
        decided = [e.at for e in run.history if e.kind == "gate"
                   and e.data.get("wave") == w.index and e.data.get("decided")
                   and int(e.data.get("look") or 0) == look]
        if decided:
            bakes += decided[-1] - w.bake_started_at - max(bake_s, look * interval_s)
    return {"ARM": arm, "rollouts": rollouts, "bakes": bakes,
            "between": wall - unavoidable - arm - rollouts - bakes}


@dataclass(frozen=True)
class StageFigures:
    """One campaign stage as the critical path sees it.

    Args:
        name: the stage's name.
        clusters: the clusters it upgraded (or tried to: done or failed).
        max_concurrency: how many of them at once.
        cluster_s: one cluster's unavoidable upgrade, seconds (its slowest cluster's, all
            hops).
        soak_s: its soak, seconds (counted only when it upgraded a cluster).
    """

    name: str
    clusters: int
    max_concurrency: int
    cluster_s: float
    soak_s: float

    @property
    def rounds(self) -> int:
        """⌈clusters / max_concurrency⌉: the clusters that go one after the other."""
        return math.ceil(self.clusters / max(1, self.max_concurrency))

    @property
    def unavoidable(self) -> float:
        """Seconds: ``rounds × cluster_s + soak_s`` (no soak without a cluster)."""
        return self.rounds * self.cluster_s + (self.soak_s if self.clusters else 0.0)


def campaign_unavoidable(stages: list[StageFigures]) -> float:
    """Seconds a campaign cannot take less than: its stages one after the other, each
    :attr:`StageFigures.unavoidable` (see the module docstring)."""
    return sum(s.unavoidable for s in stages)


def stage_figures(campaign: Any, children: dict[str, Any]) -> list[StageFigures]:
    """Each stage of a finished ``campaign`` run (its ``params``, as
    ``workflows/kinds/campaign.py`` keeps them) with its clusters' unavoidable upgrade from
    their runs in ``children`` (run id → run, read whole): per cluster the sum over its
    hops' runs of :func:`measured`'s unavoidable, at each run's own bake and interval; a
    stage's ``cluster_s`` is the most of its clusters'. Runs that did not complete count
    for what their history shows (their waves' rollouts and bakes)."""
    out = []
    for s in campaign.params.get("stages", []):
        moved = [e for e in s["clusters"] if e.get("runs")]
        per_cluster = []
        for e in moved:
            total = 0.0
            for run_id in e["runs"]:
                run = children.get(run_id)
                if run is not None:
                    total += measured(run, run.options.bake_s, run.options.interval_s)[1]
            per_cluster.append(total)
        out.append(StageFigures(s["name"], len(moved), int(s["max_concurrency"]),
                                max(per_cluster, default=0.0), float(s["soak_s"])))
    return out


def lag_sampler(store: RedisRunStore, run_ids: Callable[[], list[str]],
                ends: Collection[str], lag: list[float], stop: threading.Event
                ) -> threading.Thread:
    """A started thread that, every second until ``stop``, appends to ``lag`` each working
    run's ``now - next_tick_at`` (s): the tick lag of runs neither ended (``ends``) nor
    waiting for a person."""
    def sample() -> None:
        while not stop.wait(1.0):
            now = time.time()
            for run_id in run_ids():
                try:
                    run = store.get(run_id, recent=1)
                except TemporaryError:
                    continue
                if run.phase.value not in ends and run.next_tick_at is not None \
                        and not run.phase.waiting_for_person:
                    lag.append(max(0.0, now - run.next_tick_at))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread


def sliding_max(times: list[float], window: float) -> int:
    """The most ``times`` in any half-open window of ``window`` seconds."""
    times, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def cpu_by_part(h: Harness) -> dict[str, float]:
    """CPU seconds (user + system, proc(5)) used so far by each part of the setup: the
    harness's process groups (worker: its pool processes and their chart interpreters; bot;
    beat; sandbox: the emulators) with the sandbox's Prometheus apart, and Redis."""
    groups = {proc.pid: name for name, proc in h.procs.items()}
    out: dict[str, float] = defaultdict(float)
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        comm, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat.rpartition(")")[2].split()
        pgid = int(fields[2])
        name = ("prometheus" if comm == "prometheus" and pgid in groups
                else "redis" if comm == "redis-server" else groups.get(pgid))
        if name is not None and cmd:
            out[name] += (int(fields[11]) + int(fields[12])) / tick
    return dict(out)


def wait_for_history(h: Harness, clusters: list[str], bake_s: float, interval_s: float,
                     timeout_s: float = 120.0) -> float:
    """Wait until Prometheus holds, for every labelled namespace of ``clusters``, traffic
    as old as a first wave's baseline needs (``bake_s`` × (1 + the cluster's
    ``max_extension``): ``workflows.waves.baseline_needed``) and one look interval more,
    read as the runs read it (the product's adapter, ``FleetPorts``, windows at
    ``interval_s``). Returns the seconds waited.

    Why not a fixed sleep: a fresh Prometheus finds its targets only after its discovery's
    throttle (5 s, as Prometheus') and scrapes twice before a window holds traffic, so the
    twice-the-bake sleep this replaced was sometimes short, and a run then waited seconds
    for its first baseline, which the benchmark counted as meshops' overhead (seen: one
    run at 1.21 × its unavoidable, 6 s of it that wait).

    Raises:
        SystemExit: Prometheus has not that history after ``timeout_s``.
    """
    t0 = time.time()
    os.environ.update(h.info["env"])  # the fleet file's references, as the worker has them
    fleet = load_fleet(Path(h.info["env"]["MESHOPS_FLEET"]))
    ports = FleetPorts(fleet)
    waiting = set(clusters)
    while waiting:
        for cluster in sorted(waiting):
            need = bake_s * (1 + fleet.thresholds(cluster).canary.max_extension) + interval_s
            names = [ns.name for ns in ports.cluster_api(cluster).list_namespaces()
                     if ns.labels.get("istio.io/rev")
                     or ns.labels.get("istio-injection") == "enabled"]
            now = time.time()
            try:
                windows = ports.metrics(cluster).windows(names, [], now - 2 * need, now,
                                                         interval_s)
            except TemporaryError:
                continue
            first: dict[str, float] = {}
            for w in windows:
                if w.requests:
                    first[w.subject] = min(first.get(w.subject, w.start), w.start)
            if all(now - first.get(ns, now) >= need for ns in names):
                waiting.discard(cluster)
        if waiting and time.time() - t0 > timeout_s:
            raise SystemExit(f"Prometheus holds too little traffic history after {timeout_s:.0f} "
                             f"s for {len(waiting)} clusters (e.g. {min(waiting)})")
        if waiting:
            time.sleep(1)
    return time.time() - t0


#: where the benchmark stops following a run: its end, or a pause that hands the run to a
#: person (its gate could not decide within the longest bake, or a step's retries ran out):
#: what that person would do is not the machine's to guess, so the run is reported with
#: its reason and left out of the ratios, and the others are not held up to the timeout
RUN_ENDS = {*TERMINAL, "paused"}


def one_size(n: int, namespaces: int, bake: str, interval: str, port_base: int,
             timeout: float, timeline: bool = False) -> Figures:
    fig = Figures(n)
    state_dir = Path(tempfile.mkdtemp(prefix=f"meshops-fleet-{n}-"))
    h = Harness(state_dir, port_base, port_base + 80, generated=(namespaces, n),
                echo=lambda line: None)
    bake_s = parse_duration(bake)
    try:
        h.start()
        store = RedisRunStore.from_url(h.redis_url, h.prefix)
        state = h.control("GET", "/_sandbox/state")
        clusters = sorted(state)[:n]
        # the first wave waits for a baseline as long as its longest bake: a fresh
        # Prometheus is given that history first, so no run waits for it
        wait_for_history(h, clusters, bake_s, parse_duration(interval))
        log, runs = SlackLog(h), {}
        cpu0, t0 = cpu_by_part(h), time.time()
        for cluster in clusters:
            target = newest(state[cluster]["upgrades"])
            resp = h.slash("requester", f"upgrade {cluster} {target} --bake={bake} "
                                        f"--interval={interval}", channel=h.channel_of(cluster))
            m = RUN_ID_RE.search(resp.text)
            if resp.status_code != 200 or not m:
                raise RuntimeError(f"{cluster}: the upgrade was not accepted: "
                                   f"HTTP {resp.status_code} {resp.text}")
            runs[m.group(0)] = cluster
        stop = threading.Event()
        sampler = lag_sampler(store, lambda: list(runs), TERMINAL, fig.lag, stop)
        clicked: set[tuple[str, str]] = set()
        done: dict[str, str] = {}
        deadline = time.time() + timeout
        while len(done) < len(runs) and time.time() < deadline:
            log.poll()
            for run_id in runs:
                if run_id in done:
                    continue
                for action in ("approve", "complete"):
                    root = log.button(run_id, action)
                    if root and (run_id, action) not in clicked:
                        clicked.add((run_id, action))
                        h.click("approver", run_id, action, root)
                phase = h.run_phase(run_id)
                if phase in RUN_ENDS:
                    done[run_id] = phase
            time.sleep(0.5)
        cpu1, fig.cpu_wall = cpu_by_part(h), time.time() - t0
        fig.cpu = {k: v - cpu0.get(k, 0.0) for k, v in cpu1.items()}
        stop.set()
        sampler.join(5)
        slowest: tuple[float, Any] | None = None
        ranked: list[tuple[float, Any]] = []
        for run_id in runs:
            run = store.get(run_id)
            fig.phases[run.phase.value] += 1
            if run.phase.value != "completed":  # say why, or a stuck run is a mystery
                print(f"  {run_id} ({runs[run_id]}) ended {run.phase.value}: "
                      f"{run.history[-1].text[:300] if run.history else '-'}", flush=True)
            if run.phase.value == "completed":
                wall, unavoidable = measured(run, bake_s, parse_duration(interval))
                fig.wall.append(wall)
                fig.unavoidable.append(unavoidable)
                fig.overheads.append(overhead(run, bake_s, parse_duration(interval)))
                ranked.append((wall / unavoidable, run))
                if slowest is None or wall / unavoidable > slowest[0]:
                    slowest = (wall / unavoidable, run)
        if timeline and slowest is not None:
            ranked.sort(key=lambda r: r[0])
            # the median run shows the common cost, the slowest what an outlier adds
            shown = [("median", ranked[len(ranked) // 2]), ("slowest", slowest)]
            for which, (ratio, run) in shown[:1] if len(ranked) == 1 else shown:
                print(f"  timeline of the {which} run ({ratio:.2f}), seconds from its "
                      "request:")
                for e in run.history:
                    print(f"    {e.at - run.created_at:7.2f} {e.kind:6} {e.text[:90]!r}")
        slack_figures(h, log, fig)
        return fig
    finally:
        h.stop()
        shutil.rmtree(state_dir, ignore_errors=True)  # Prometheus' data: hundreds of MB


#: a campaign's phases the benchmark stops at
CAMPAIGN_ENDS = {*TERMINAL, "halted"}


@dataclass
class CampaignFigures(Figures):
    """A campaign's measurements: ``runs`` is its clusters; ``wall`` and ``unavoidable`` hold
    the campaign's own, one each."""

    phase: str = ""
    stages: list[StageFigures] = field(default_factory=list)
    children: Counter[str] = field(default_factory=Counter)
    clicks: list[str] = field(default_factory=list)


class CampaignHarness(Harness):
    """The harness, its sandbox started with ``sandbox_args`` too (``--campaign``…), and the
    cluster runs' bake and interval set (the fleet file's ``defaults.upgrade``) in the fleet
    file the sandbox wrote, before the worker and the bot read it."""

    def __init__(self, *args: Any, sandbox_args: tuple[str, ...], bake: str, interval: str,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sandbox_args, self.bake, self.interval = sandbox_args, bake, interval

    def _spawn(self, name: str, *args: str) -> Any:
        if name == "sandbox":
            args = (*args, *self.sandbox_args)
        return super()._spawn(name, *args)

    def start_worker(self, name: str = "worker") -> Any:
        path = Path(self.info["env"]["MESHOPS_FLEET"])
        fleet = yaml.safe_load(path.read_text())
        upgrade = fleet.setdefault("defaults", {}).setdefault("upgrade", {})
        if (upgrade.get("bake"), upgrade.get("interval")) != (self.bake, self.interval):
            upgrade.update(bake=self.bake, interval=self.interval)
            path.write_text(yaml.safe_dump(fleet, sort_keys=False))
        return super().start_worker(name)


def one_campaign(n: int, namespaces: int, bake: str, interval: str, port_base: int,
                 timeout: float, concurrency: str, soak: str,
                 timeline: bool = False) -> CampaignFigures:
    """One campaign across ``n`` generated clusters to their newest revision (see the module
    docstring); its figures."""
    fig = CampaignFigures(n)
    state_dir = Path(tempfile.mkdtemp(prefix=f"meshops-campaign-{n}-"))
    h = CampaignHarness(state_dir, port_base, port_base + 80, generated=(namespaces, n),
                        sandbox_args=("--campaign", "--campaign-concurrency", concurrency,
                                      "--campaign-soak", soak),
                        echo=lambda line: None, bake=bake, interval=interval)
    bake_s = parse_duration(bake)
    try:
        h.start()
        store = RedisRunStore.from_url(h.redis_url, h.prefix)
        fleet = load_fleet(h.info["env"]["MESHOPS_FLEET"])
        assert fleet.campaigns is not None, "the generated world has no campaigns:"
        state = h.control("GET", "/_sandbox/state")
        target = newest([r for c in state.values() for r in c["upgrades"]])
        # a baseline for the first wave, as in the fleet mode
        wait_for_history(h, sorted(state), bake_s, parse_duration(interval))
        log = SlackLog(h)
        resp = h.slash("requester", f"campaign start {target}",
                       channel=fleet.campaigns.channel)
        m = RUN_ID_RE.search(resp.text)
        if resp.status_code != 200 or not m:
            raise RuntimeError(f"the campaign was not accepted: HTTP {resp.status_code} "
                               f"{resp.text}")
        campaign_id = m.group(0)
        h.click("approver", campaign_id, "approve",
                h.wait_for_button(campaign_id, "approve", 120))
        children: set[str] = set()
        stop = threading.Event()
        sampler = lag_sampler(store, lambda: [campaign_id, *children], CAMPAIGN_ENDS, fig.lag,
                              stop)
        clicked: set[tuple[str, str, str]] = set()
        deadline = time.time() + timeout
        phase = h.run_phase(campaign_id)
        while phase not in CAMPAIGN_ENDS and time.time() < deadline:
            log.poll()
            campaign = store.get(campaign_id)
            waiting = set()
            for stage in campaign.params.get("stages", []):
                for e in stage["clusters"]:
                    children.update(e.get("runs") or [])
                    if e["status"] == "awaiting_person" and e.get("run"):
                        waiting.add(e["run"])
            # a stage approval, or a cluster run the campaign handed to a person: clicked
            # at once (people are not what is measured). A run its gate paused (no
            # decision within the longest bake: the 6 s bakes here leave a few runs of 50
            # undecided) holds its stage until a person acts: here they resume it, and its
            # gate looks again; the time that takes counts in the campaign's wall
            wanted = [(campaign_id, "approve")] if phase == "awaiting_wave_approval" else []
            wanted += [(r, a) for r in sorted(waiting)
                       for a in ("approve", "complete", "resume")]
            for run_id, action in wanted:
                root = log.button(run_id, action)
                if root and (run_id, action, root["ts"] + str(root["seq"])) not in clicked:
                    clicked.add((run_id, action, root["ts"] + str(root["seq"])))
                    fig.clicks.append(f"{action} {run_id}")
                    h.click("approver", run_id, action, root)
            time.sleep(0.5)
            phase = h.run_phase(campaign_id)
        stop.set()
        sampler.join(5)
        campaign = store.get(campaign_id)
        fig.phase = campaign.phase.value
        runs = {}
        for stage in campaign.params.get("stages", []):
            for e in stage["clusters"]:
                for run_id in e.get("runs") or []:
                    runs[run_id] = store.get(run_id)
                    fig.children[runs[run_id].phase.value] += 1
        fig.stages = stage_figures(campaign, runs)
        fig.wall.append(wall_of(campaign))
        fig.unavoidable.append(campaign_unavoidable(fig.stages))
        if timeline:
            print(f"  timeline of campaign {campaign_id}, seconds from its request:")
            for e in campaign.history:
                print(f"    {e.at - campaign.created_at:7.2f} {e.kind:6} {e.text[:90]!r}")
        slack_figures(h, log, fig)
        return fig
    finally:
        h.stop()
        shutil.rmtree(state_dir, ignore_errors=True)  # Prometheus' data: hundreds of MB


def slack_figures(h: Harness, log: SlackLog, fig: Figures) -> None:
    """Fill ``fig``'s Slack figures from the whole Slack log and the sandbox's 429 count:
    calls a minute per method (the most in any 60 s), the most posts in one channel in any
    one second (a file shared into a channel is a message in it, as Slack counts it: the
    charts' ``files.completeUploadExternal`` count with the posts)."""
    log.poll()
    by_method: dict[str, list[float]] = defaultdict(list)
    per_channel: dict[str, list[float]] = defaultdict(list)
    for e in log.entries:
        if e["kind"] == "post":
            by_method["chat.postMessage"].append(e["at"])
            per_channel[e["channel"]].append(e["at"])
        elif e["kind"] == "update":
            by_method["chat.update"].append(e["at"])
        elif e["kind"] == "file":
            by_method["files.completeUploadExternal"].append(e["at"])
            per_channel[e["channel"]].append(e["at"])
    fig.per_minute = {m: sliding_max(t, 60.0) for m, t in sorted(by_method.items())}
    fig.channel_second = max((sliding_max(t, 1.0) for t in per_channel.values()),
                             default=0)
    fig.throttled = _throttled(h)


def _throttled(h: Harness) -> int:
    import requests

    return int(requests.get(h.info["url"]["slack"] + "/_sandbox/slack/throttled",
                            timeout=10).json()["count"])


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="1,10,30", help="concurrent upgrades, comma-separated")
    ap.add_argument("--namespaces", type=int, default=6, help="app namespaces per cluster")
    ap.add_argument("--bake", default="6s")
    ap.add_argument("--interval", default="3s")
    ap.add_argument("--port-base", type=int, default=19800)
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per size (default 900; a campaign 1800)")
    ap.add_argument("--timeline", action="store_true",
                    help="print the history of each size's median and slowest runs, timed")
    ap.add_argument("--campaign", action="store_true",
                    help="one campaign across --clusters generated clusters instead")
    ap.add_argument("--clusters", type=int, default=50, help="with --campaign: clusters")
    ap.add_argument("--max-concurrency", default="5,10,15",
                    help="with --campaign: the dev, staging and prod stages' max_concurrency")
    ap.add_argument("--soak", default="5s", help="with --campaign: each stage's soak")
    args = ap.parse_args(argv)
    if args.campaign:
        return campaign_main(args)
    last: Figures | None = None
    for n in (int(x) for x in args.runs.split(",")):
        fig = one_size(n, args.namespaces, args.bake, args.interval, args.port_base,
                       args.timeout or 900.0, args.timeline)
        last = fig
        walls = ", ".join(f"{w / u:.2f}" for w, u in zip(fig.wall, fig.unavoidable,
                                                        strict=True))
        print(f"{n} runs: phases {dict(fig.phases)}; wall/unavoidable per run: {walls}")
        print(f"  median wall/unavoidable {fig.ratio:.2f}; tick lag p50 "
              f"{pct(fig.lag, 0.5):.2f}s p90 {pct(fig.lag, 0.9):.2f}s; Slack calls per "
              f"minute (highest) {fig.per_minute}; most posts in one channel in one second "
              f"{fig.channel_second}; 429s {fig.throttled}", flush=True)
        # what the machine's cores did meanwhile: Prometheus and the emulators share them
        print(f"  CPU while the runs went on ({fig.cpu_wall:.0f} s × {os.cpu_count()} cores): "
              + ", ".join(f"{k} {v:.0f} s" for k, v in sorted(fig.cpu.items(),
                                                                key=lambda kv: -kv[1])),
              flush=True)
        if fig.overheads:
            print("  wall above the unavoidable per run (s, median of each part): " + ", ".join(
                f"{k} {statistics.median(o[k] for o in fig.overheads):.2f}"
                for k in fig.overheads[0]), flush=True)
    assert last is not None
    print(f"fleet: {last.runs} runs, wall/unavoidable {last.ratio:.2f}, chat.update per "
          f"minute {last.per_minute.get('chat.update', 0)}, max posts per channel per "
          f"second {last.channel_second}, 429s {last.throttled}")
    return 0


def campaign_main(args: argparse.Namespace) -> int:
    """``--campaign``: run it, print its figures; the last line as the module docstring
    says."""
    fig = one_campaign(args.clusters, args.namespaces, args.bake, args.interval,
                       args.port_base, args.timeout or 1800.0, args.max_concurrency, args.soak,
                       args.timeline)
    wall, unavoidable = fig.wall[0], fig.unavoidable[0]
    print(f"campaign of {fig.runs} clusters: {fig.phase}; cluster runs {dict(fig.children)}"
          + (f"; clicked {', '.join(fig.clicks)}" if fig.clicks else ""))
    for st in fig.stages:
        print(f"  stage {st.name}: {st.clusters} clusters, {st.max_concurrency} at a time: "
              f"{st.rounds} × {st.cluster_s:.1f}s + soak {st.soak_s:.0f}s = "
              f"{st.unavoidable:.1f}s")
    print(f"  wall {wall:.1f}s, unavoidable {unavoidable:.1f}s; tick lag p50 "
          f"{pct(fig.lag, 0.5):.2f}s p90 {pct(fig.lag, 0.9):.2f}s; Slack calls per minute "
          f"(highest) {fig.per_minute}; most posts in one channel in one second "
          f"{fig.channel_second}; 429s {fig.throttled}", flush=True)
    print(f"fleet: campaign of {fig.runs} clusters, wall/unavoidable {fig.ratio:.2f}, "
          f"chat.update per minute {fig.per_minute.get('chat.update', 0)}, max posts per "
          f"channel per second {fig.channel_second}, 429s {fig.throttled}")
    return 0 if fig.phase == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
