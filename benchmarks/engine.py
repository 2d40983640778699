"""Engine benchmark: one upgrade through the whole worker path, against a plain script.

For each size (200 and 2,000 namespaces by default) a sandbox of one generated cluster
(``meshops sandbox --namespaces N --replicas 1``: a Deployment of one pod behind a Service
in each namespace; one pod each so that at 2,000 namespaces the sandbox's Prometheus,
on the same two cores, still scrapes every 5 s) with the real Prometheus, and meshops as
it runs in production: the bot over HTTP, one Celery worker (4 pool processes, the CLI's
default) and beat, Redis, the sandbox's Slack enforcing Slack's limits. Two sides, each
upgrading the cluster from its revision to the next, the sandbox re-seeded before each
trial (``POST /_sandbox/reset``):

1. **meshops** — ``/mesh upgrade scale-01 <next> --bake B --interval I``, *Approve* and
   *Complete* clicked as soon as their buttons show. Timed from the approval click to the
   later of the run's terminal phase and its last Slack call (thread lines and charts are
   drawn off the tick's path), less the time the run waited for the *Complete* click and
   the time its baseline steps waited for Prometheus' data (:func:`data_wait`: a
   Prometheus younger than the baseline's hour holding too few requests for a bake to
   decide, a namespace with less history than a bake). Those are the gate's decisions on
   what the benchmark's fresh Prometheus holds (a cluster's Prometheus of a day holds the
   hour and waits for none of them); they differ between trials as Prometheus ages, so
   each trial's own are taken out of the run's end (and printed) rather than replayed by
   the plain script, which does not wait; Slack's tail after the run's end (its last
   lines and chart) is added as measured. A wait for a control (no later wave left, the
   earlier ones moved less than a baseline ago) is the plan's timing and stays in.
2. **plain script** — the same ARM, Kubernetes, PromQL and Slack calls in a straight loop
   with the same SDK adapters, no engine, no Celery, no store, no charts drawn: the canary's
   ARM PUT, polled at its Retry-After (else every second); per wave the baseline read,
   the labels, the restarts, the rollout polled every 0.5 s, then the gate's reads at the
   run's interval, as many as the meshops run took, on the same namespaces, control and
   gateways; the completion's PUT. Its Slack calls are as many posts, updates and file
   shares as the meshops run made in the same channel (a fixed PNG for each chart), made
   in order by a thread per lane (off the upgrade's path, as meshops makes them), paced
   under Slack's published limits (a message a second in a channel, 50 ``chat.update`` a
   minute) and waiting out any 429 as slack_sdk's
   ``RateLimitErrorRetryHandler`` does; timed to the later of the completion and its last
   Slack call.

Both sides wait the same bakes and rollouts, so the ratio is meshops' overhead on top of
what any orchestration must spend. Trials alternate (meshops, plain, plain, meshops, …),
after a warm-up of both (a ``/mesh status`` through the bot and worker; one read of each
API in this process); a plain trial replays the meshops trial before it (the previous
round's when it goes first), and each line prints its gate looks, so a round whose
gates decided differently shows. Also printed: per-tick cost in the first and last third of the
waves (the worker's ``meshops.tick`` task times: flat means a tick does not grow with the
run), beside the plain script's time per Prometheus read (a wave's baseline read, a look's
read) in the same thirds: the same queries, so what grows on both sides is Prometheus' own
cost (a Prometheus started with the benchmark holds more of each wave's baseline hour as
the run goes on), not meshops'; and the worker's peak RSS (the largest ``VmHWM`` of the
worker's processes, sampled each second, and the peak each pool process logs as it ends:
one replaced past ``--max-memory-per-child``, workers/heap.py, counts with the peak that
replaced it).

Targets (issue 13): ratio ≤ 1.2 at both sizes, peak worker RSS ≤ 200 MB at 2,000
namespaces. Last line:

    engine: ratio X at 200 ns, Y at 2000 ns, peak RSS Z MB

    .venv/bin/python benchmarks/engine.py [--sizes 200,2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fleet import person_wait  # noqa: E402
from meshops.demo import RUN_ID_RE, TERMINAL, Harness, newest  # noqa: E402
from workers.config import load_fleet  # noqa: E402
from workers.store.runs import RedisRunStore  # noqa: E402
from workers.wiring import FleetPorts  # noqa: E402
from workflows.errors import MetricsUnavailable  # noqa: E402
from workflows.model import Event  # noqa: E402
from workflows.waves import restart_token, wave_label  # noqa: E402

CLUSTER = "scale-01"
#: the plain script's pacing: messages into one channel (posts and file shares) about one a
#: second ("Rate limits": chat.postMessage), chat.update 50 a minute (Tier 3)
SLACK_GAP_S = {"post": 1.05, "update": 60 / 50}
#: the smallest valid PNG (1×1): the plain script shares it where meshops shares a chart
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")
#: the worker's log line of a finished task (Celery's ``celery.app.trace``)
TASK_DONE = re.compile(r"^(\S+ \S+) INFO celery\.app\.trace Task meshops\.tick\[[^\]]+\] "
                       r"succeeded in ([0-9.e-]+)s")


@dataclass
class Calls:
    """Slack calls of one run in its channel: posts (thread lines), updates, file shares."""

    posts: int = 0
    updates: int = 0
    files: int = 0


@dataclass
class Record:
    """What the meshops trial did, for the plain script to do the same."""

    stable: str
    canary: str
    waves: list[list[str]]
    controls: list[list[str]]
    gateways: list[list[str]]
    looks: list[int]
    interval_s: float
    baseline_s: float
    slack: Calls
    #: per wave, how long its baseline step waited for data (s): out of the run's wall
    waits: list[float] = field(default_factory=list)
    #: how long after the run's end its last Slack call came (s): in the wall
    slack_tail: float = 0.0
    wave_spans: list[tuple[float, float]] = field(default_factory=list)


def slack_calls(h: Harness, channel: str, after_seq: int, root_ts: str | None
                ) -> tuple[Calls, float]:
    """The Slack calls in ``channel`` since ``after_seq`` and the time of the last one."""
    calls, last = Calls(), 0.0
    for e in h.slack_log(after_seq):
        if e.get("channel") != channel:
            continue
        if e["kind"] == "post" and e.get("thread_ts") == root_ts:
            calls.posts += 1
        elif e["kind"] == "update" and e.get("ts") == root_ts:
            calls.updates += 1
        elif e["kind"] == "file":
            calls.files += 1
        else:
            continue
        last = max(last, e["at"])
    return calls, last


def settle(h: Harness, channel: str, after_seq: int, root_ts: str | None, quiet_s: float = 5.0
           ) -> tuple[Calls, float]:
    """Wait until the run's channel has been quiet ``quiet_s`` (its last thread lines and
    chart come after its terminal phase), then its calls and the last one's time."""
    calls, last = slack_calls(h, channel, after_seq, root_ts)
    while time.time() - max(last, 0.0) < quiet_s:
        time.sleep(0.5)
        calls, last = slack_calls(h, channel, after_seq, root_ts)
    return calls, last


def meshops_trial(h: Harness, bake: str, interval: str, timeline: bool = False
                  ) -> tuple[float, Record]:
    """One upgrade through bot, worker and beat; (seconds, what it did). ``timeline``:
    print the run's history, seconds from the approval click."""
    store = RedisRunStore.from_url(h.redis_url, h.prefix)
    state = h.control("GET", "/_sandbox/state")[CLUSTER]
    target = newest(state["upgrades"])
    channel = h.channel_of(CLUSTER)
    resp = h.slash("requester", f"upgrade {CLUSTER} {target} --bake={bake} "
                                f"--interval={interval}", channel=channel)
    m = RUN_ID_RE.search(resp.text)
    if resp.status_code != 200 or not m:
        raise SystemExit(f"the upgrade was not accepted: HTTP {resp.status_code} {resp.text}")
    run_id = m.group(0)
    root = h.wait_for_button(run_id, "approve", 300)
    seq = h.slack_log_len()
    t0 = time.time()
    h.click("approver", run_id, "approve", root)
    root = h.wait_for_button(run_id, "complete", 7200)
    h.click("approver", run_id, "complete", root)
    phase = h.wait_for_phase(run_id, TERMINAL, 600)
    if phase != "completed":
        run = store.get(run_id)
        raise SystemExit(f"run {run_id} ended {phase}: {run.pause_reason or run.outcome}")
    run = store.get(run_id)
    if timeline:
        for e in run.history:
            print(f"    {e.at - t0:7.2f} {e.kind:6} {e.text[:100]!r}")
    calls, last_call = settle(h, channel, seq, root["ts"])
    gate_looks = [max([int(e.data.get("look") or 0) for e in run.history if e.kind == "gate"
                       and e.data.get("wave") == w.index] or [len(w.samples)])
                  for w in run.waves]
    waits = [data_wait(run.history, wave_label(w)) for w in run.waves]
    # the waits come out of the run's own timeline; Slack's tail after the run's end (its
    # last thread lines and chart) is added as it was
    wall = (run.updated_at - t0 - person_wait(run.history) - sum(waits)
            + max(0.0, last_call - run.updated_at))
    spans = []
    for w in run.waves:
        at = [e.at for e in run.history if e.data.get("wave") == w.index]
        spans.append((min(at, default=t0), max(at, default=t0)))
    return wall, Record(
        stable=run.stable_revision or state["revisions"][0], canary=run.canary_revision,
        waves=[w.namespaces for w in run.waves], controls=[w.control for w in run.waves],
        gateways=[w.gateways for w in run.waves], looks=gate_looks,
        interval_s=run.options.interval_s, baseline_s=run.thresholds.canary.baseline_s,
        slack=calls, waits=waits, slack_tail=max(0.0, last_call - run.updated_at),
        wave_spans=spans)


def data_wait(history: list[Event], label: str) -> float:
    """How long the wave ``label``'s baseline step waited for Prometheus' data (s): from
    each of its "waiting … for a baseline" lines (:func:`workflows.waves.migrate_wave`:
    a namespace with less history than the longest bake, a young baseline no bake could
    decide on) to the wave's next line. Not a wait for a control (the earlier waves'
    timing, not Prometheus' age: that stays in the wall)."""
    lines = [e for e in history if e.text.startswith(f"{label}: ")]
    total = 0.0
    for line, after in zip(lines, lines[1:], strict=False):
        if line.text.startswith(f"{label}: waiting ") and " for a baseline" in line.text:
            total += after.at - line.at
    return total


def spread(calls: Calls, looks: list[int]) -> list[list[list[str]]]:
    """The run's Slack calls laid out as the plain script makes them: per wave (one per
    entry of ``looks``, its gate's look count), slot 0 after the restarts and slot *j*
    after look *j*; each wave's share as even as the totals divide, in the order meshops
    makes them (posts, updates, the chart). Every call of ``calls`` appears once."""
    waves = len(looks)

    def share(total: int, i: int) -> int:
        return total // waves + (i < total % waves)

    plan = []
    for i, n_looks in enumerate(looks):
        kinds = [*["post"] * share(calls.posts, i), *["update"] * share(calls.updates, i),
                 *["file"] * share(calls.files, i)]
        slots = n_looks + 1
        plan.append([kinds[j * len(kinds) // slots:(j + 1) * len(kinds) // slots]
                     for j in range(slots)])
    return plan


def plain_trial(ports: FleetPorts, slack: WebClient, channel: str, rec: Record
                ) -> tuple[float, list[list[float]]]:
    """The same calls as ``rec``'s run, in a straight loop: (seconds, per wave the seconds
    each of its Prometheus reads took, the baseline's first)."""
    mesh, capi, metrics = ports.mesh, ports.cluster_api(CLUSTER), ports.metrics(CLUSTER)
    # the run's root message exists before its approval: so does the plain script's
    root = slack.chat_postMessage(channel=channel, text=f"plain upgrade to {rec.canary}")
    ts = root["ts"]
    plan = spread(rec.slack, rec.looks)

    # Slack off the upgrade's path, as meshops keeps it: a thread per lane (messages into
    # the channel; chat.update) takes its calls in order, paced under Slack's published
    # limits as a careful script would (a message a second in a channel, chat.update's
    # Tier 3 of 50 a minute), so it meets no 429 and its backlog is never longer than the
    # limits make it; a 429 would still wait out Retry-After (the retry handler)
    lanes: dict[str, queue.Queue[tuple[str, int] | None]] = {"post": queue.Queue(),
                                                             "update": queue.Queue()}
    slack_done = {"at": 0.0}

    def sender(lane: str) -> None:
        last = 0.0
        while (item := lanes[lane].get()) is not None:
            kind, i = item
            time.sleep(max(0.0, SLACK_GAP_S[lane] - (time.time() - last)))
            last = time.time()
            if kind == "post":
                slack.chat_postMessage(channel=channel, thread_ts=ts, text=f"wave {i}: step")
            elif kind == "update":
                slack.chat_update(channel=channel, ts=ts, text=f"plain upgrade: wave {i}")
            else:
                slack.files_upload_v2(channel=channel, thread_ts=ts, content=PNG,
                                      filename=f"wave-{i}.png", title=f"wave {i}")
            slack_done["at"] = max(slack_done["at"], time.time())

    def call(kind: str, i: int) -> None:
        lanes["update" if kind == "update" else "post"].put((kind, i))

    threads = [threading.Thread(target=sender, args=(lane,), name=f"slack-{lane}",
                                daemon=True) for lane in lanes]
    for thread in threads:
        thread.start()
    t0 = time.time()

    def until(cond: Any, what: str, every: float) -> None:
        deadline = time.time() + 600
        while not cond():
            if time.time() > deadline:
                raise SystemExit(f"plain script: {what} did not happen in 600 s")
            time.sleep(every)

    def put(revisions: list[str]) -> None:
        mesh.get_mesh(CLUSTER)
        token = mesh.set_revisions(CLUSTER, revisions) or ""
        wait = {"s": 1.0}

        def done() -> bool:
            status = mesh.operation_status(CLUSTER, token)
            wait["s"] = status.retry_after_s or 1.0
            return bool(status.done)

        while not done():
            time.sleep(wait["s"])
        mesh.get_mesh(CLUSTER)

    reads: list[list[float]] = []

    def read(*args: Any, **kwargs: Any) -> None:
        """A look's read, as meshops' gate takes one: Prometheus not answering in time is
        that look's error (meshops records an error sample and looks again), not the end."""
        t = time.perf_counter()
        try:
            metrics.windows(*args, **kwargs)
        except MetricsUnavailable as exc:
            print(f"  plain: a look could not read Prometheus ({str(exc)[:80]}…)", flush=True)
        reads[-1].append(time.perf_counter() - t)

    put([rec.stable, rec.canary])
    capi.control_plane_revisions()
    token = restart_token(time.time())
    for i, (wave, control, gateways, looks) in enumerate(zip(
            rec.waves, rec.controls, rec.gateways, rec.looks, strict=True)):
        now = time.time()
        reads.append([])
        read(wave, [], now - rec.baseline_s, now, rec.interval_s)
        for ns in wave:
            capi.set_namespace_revision(ns, rec.canary)
        moved = time.time()
        for w in capi.list_workloads(wave):
            capi.restart_workload(w, token)

        def rolled_over(wave: list[str] = wave) -> bool:
            pending = [w for w in capi.list_workloads(wave) if not w.rolled_out]
            pods = capi.list_pods(wave)
            return not pending and all(p.revision == rec.canary for p in pods if p.revision)

        chunks = plan[i]
        for kind in chunks[0]:
            call(kind, i)
        until(rolled_over, f"the rollout of wave {i}", 0.5)
        capi.revision_gateways()
        baked = time.time()
        for look in range(1, looks + 1):
            time.sleep(max(0.0, baked + look * rec.interval_s - time.time()))
            # as meshops' looks read: through the same window cache (the same PromQL)
            read([*wave, *control], gateways, moved - rec.baseline_s, time.time(),
                 rec.interval_s, repeat=True)
            for kind in chunks[look]:
                call(kind, i)
    put([rec.canary])
    capi.control_plane_revisions()
    done = time.time()
    for lane in lanes.values():
        lane.put(None)
    for thread in threads:
        thread.join()
    return max(done, slack_done["at"]) - t0, reads


def thirds(per_wave: list[list[float]]) -> tuple[float, float]:
    """The mean of the values of the first and of the last third of the waves (s)."""
    third = max(1, len(per_wave) // 3)
    early = [x for wave in per_wave[:third] for x in wave]
    late = [x for wave in per_wave[-third:] for x in wave]
    return (statistics.mean(early) if early else math.nan,
            statistics.mean(late) if late else math.nan)


def tick_times(log: Path, spans: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean ``meshops.tick`` task time (s) in the first and in the last third of the
    waves (by when each tick finished)."""
    third = max(1, len(spans) // 3)
    first = (spans[0][0], spans[third - 1][1])
    last = (spans[-third][0], spans[-1][1])
    early, late = [], []
    for line in log.read_text(errors="replace").splitlines():
        m = TASK_DONE.match(line)
        if not m:
            continue
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if first[0] <= at <= first[1]:
            early.append(float(m.group(2)))
        elif last[0] <= at <= last[1]:
            late.append(float(m.group(2)))
    def mean(xs: list[float]) -> float:
        return statistics.mean(xs) if xs else math.nan

    return mean(early), mean(late)


#: a pool process' last line (workers/tasks/app.py): its peak as ``ru_maxrss``, KiB
EXITED = re.compile(r"event='worker\.process_exit' pid=(\d+) exitcode=(-?\d+) "
                    r"peak_rss_kib=(\d+)")


def group_peak_kib(pgid: int) -> int:
    """The largest peak resident set (``VmHWM``, KiB) among the live processes of the
    process group ``pgid`` (the worker: its main process, pool processes, chart
    interpreters)."""
    peak = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except (OSError, ProcessLookupError):
            continue
        m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if m:
            peak = max(peak, int(m.group(1)))
    return peak


class PeakSampler(threading.Thread):
    """:func:`group_peak_kib` of the worker every ``every_s`` seconds, its largest kept: a
    pool process replaced past ``--max-memory-per-child`` (workers/heap.py) takes its
    chart interpreter along, whose peak only a sample taken before saw."""

    def __init__(self, pgid: int, every_s: float = 1.0) -> None:
        super().__init__(daemon=True, name="peak-sampler")
        self.pgid, self.every_s, self.peak_kib = pgid, every_s, 0
        self._halt = threading.Event()  # not ``_stop``: a method of Thread's own

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak_kib = max(self.peak_kib, group_peak_kib(self.pgid))
            self._halt.wait(self.every_s)

    def stop(self) -> None:
        """Stop sampling (again: nothing more); ``peak_kib`` is final after it."""
        self._halt.set()
        if self.is_alive():
            self.join()


#: billiard.pool.EX_RECYCLE: the exit code of a pool process Celery replaces on purpose
EX_RECYCLE = 0x9B


def worker_peak_mb(h: Harness, sampled_kib: int = 0) -> tuple[float, int]:
    """(the largest peak resident set of the worker's processes, MB; how many pool
    processes were replaced): the live ones' ``VmHWM`` now, ``sampled_kib`` (a
    :class:`PeakSampler`'s) and the peak each pool process that ended logged as it did,
    so a process replaced for its memory counts with the peak that replaced it."""
    log = h.state_dir / "worker.log"
    exits = [m.groups() for m in EXITED.finditer(log.read_text(errors="replace"))] \
        if log.exists() else []
    peak = max([group_peak_kib(h.procs["worker"].pid), sampled_kib,
                *(int(kib) for _, _, kib in exits)])
    return peak / 1024, sum(int(code) == EX_RECYCLE for _, code, _ in exits)


def one_size(namespaces: int, rounds: int, bake: str, interval: str, port_base: int,
             timeline: bool = False) -> tuple[float, float]:
    """(ratio meshops/plain, worker peak RSS MB) at ``namespaces``."""
    state_dir = Path(tempfile.mkdtemp(prefix=f"meshops-engine-{namespaces}-"))
    h = Harness(state_dir, port_base, port_base + 80, generated=(namespaces, 1, 1),
                echo=lambda line: None)
    sampler: PeakSampler | None = None
    try:
        h.start()
        sampler = PeakSampler(h.procs["worker"].pid)
        sampler.start()
        os.environ.update(h.info["env"])
        fleet = load_fleet(Path(h.info["env"]["MESHOPS_FLEET"]))
        slack = WebClient(token=h.info["env"]["SLACK_BOT_TOKEN"], base_url=fleet.slack.api_url,
                          retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=20)])
        channel = h.channel_of(CLUSTER)
        # warm both: the bot's and worker's imports, clients and connections; this
        # process's adapters
        h.ask("requester", f"status {CLUSTER}", timeout=120)
        ports = FleetPorts(fleet)
        ports.mesh.get_mesh(CLUSTER)
        ports.cluster_api(CLUSTER).list_namespaces()
        now = time.time()
        ports.metrics(CLUSTER).windows(["app-0001"], [], now - 60, now, 5)
        # the first wave reads a baseline as long as the bake: give Prometheus that history
        time.sleep(2 * parse_s(bake) + 5)
        sides: dict[str, list[float]] = {"meshops": [], "plain": []}
        record: Record | None = None
        for r in range(rounds):
            for side in (("meshops", "plain") if r % 2 == 0 else ("plain", "meshops")):
                h.control("POST", "/_sandbox/reset")
                if side == "meshops":
                    wall, record = meshops_trial(h, bake, interval, timeline and r == 0)
                    early, late = tick_times(state_dir / "worker.log", record.wave_spans)
                    print(f"  {namespaces} ns, round {r + 1}, meshops: {wall:7.1f} s, "
                          f"{len(record.waves)} waves, {sum(record.looks)} looks, after "
                          f"{sum(record.waits):.0f} s "
                          f"waiting for baseline data taken out, Slack {record.slack} "
                          f"ending {record.slack_tail:.1f} s after the run, tick "
                          f"{early * 1000:.0f} ms early / {late * 1000:.0f} ms late",
                          flush=True)
                else:
                    if record is None:  # plain first: it needs meshops' record of calls
                        raise SystemExit("the first trial must be meshops'")
                    wall, reads = plain_trial(FleetPorts(fleet), slack, channel, record)
                    base_early, base_late = thirds([w[:1] for w in reads])
                    look_early, look_late = thirds([w[1:] for w in reads])
                    # the same PromQL as meshops' ticks: what Prometheus' own cost does
                    # as the run goes on (a fresh Prometheus holds more of each baseline
                    # hour wave after wave), beside meshops' tick times
                    print(f"  {namespaces} ns, round {r + 1}, plain:   {wall:7.1f} s, "
                          f"{sum(record.looks)} looks, "
                          f"baseline read {base_early * 1000:.0f} ms early / "
                          f"{base_late * 1000:.0f} ms late, look read "
                          f"{look_early * 1000:.0f} ms early / {look_late * 1000:.0f} ms late",
                          flush=True)
                sides[side].append(wall)
        ratio = sum(sides["meshops"]) / sum(sides["plain"])
        sampler.stop()
        peak, replaced = worker_peak_mb(h, sampler.peak_kib)
        print(f"{namespaces} namespaces: meshops {statistics.mean(sides['meshops']):.1f} s, "
              f"plain {statistics.mean(sides['plain']):.1f} s, ratio {ratio:.2f} "
              f"(target ≤ 1.2); worker peak RSS {peak:.0f} MB, {replaced} pool processes "
              f"replaced past --max-memory-per-child", flush=True)
        return ratio, peak
    finally:
        if sampler is not None:
            sampler.stop()
        h.stop()
        shutil.rmtree(state_dir, ignore_errors=True)  # Prometheus' data: hundreds of MB


def parse_s(text: str) -> float:
    from workflows.syntax import parse_duration

    return parse_duration(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="200,2000", help="namespaces, comma-separated")
    ap.add_argument("--rounds", type=int, default=2,
                    help="rounds of both sides (odd rounds meshops first, even plain first)")
    ap.add_argument("--bake", default=None,
                    help="bake per wave (default: 6s, or 20s beyond 1,000 namespaces, where "
                         "the sandbox's Prometheus scrapes every 5 s)")
    ap.add_argument("--interval", default=None, help="gate look interval (default bake/2)")
    ap.add_argument("--port-base", type=int, default=19600)
    ap.add_argument("--timeline", action="store_true",
                    help="print the first meshops run's history, timed")
    args = ap.parse_args(argv)
    results: dict[int, tuple[float, float]] = {}
    for n in (int(x) for x in args.sizes.split(",")):
        bake = args.bake or ("20s" if n > 1000 else "6s")
        interval = args.interval or f"{parse_s(bake) / 2:g}s"
        results[n] = one_size(n, args.rounds, bake, interval, args.port_base, args.timeline)
    ratios = ", ".join(f"{r:.2f} at {n} ns" for n, (r, _) in results.items())
    peak = results[max(results)][1]
    print(f"engine: ratio {ratios}, peak RSS {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
