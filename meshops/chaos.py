"""Chaos: the upgrade and rollback scenarios while processes die and systems fail.

Each round plays one scenario on the sandbox's default fleet (upgrade, then rollback, in
turn) while a monkey, every few seconds, SIGKILLs the worker, the bot or beat (a supervisor
starts them again, as docker compose or a Deployment would), kills Redis (started with the
append-only file, ``appendfsync always``, and started again on the same files), or stages
a fault: ARM 429/500 on the next PUT, a Kubernetes 429 with Retry-After, 500 or a hang, a
Slack outage. People keep trying their commands and clicks until one is acknowledged.

After each round it checks what a platform team would check:

- the run ended as it should (completed; rolled back when the canary is bad) and the
  cluster is as the scenario says (:func:`meshops.demo.check_outcome`);
- every side effect happened exactly once, counted by the sandbox: each namespace
  relabel, each workload restart, each ARM PUT;
- every history line of the run is in its Slack thread exactly once, with one root message;
- no acknowledged decision was lost: every click answered 200 without a "could not take
  that now" is in the run's approvals.

``meshops chaos --rounds N`` (``scripts/chaos``) prints the figures; its last line is
``chaos: <rounds> rounds, <kills> kills, <faults> faults, <inputs> inputs, losses 0``.
The test suite runs a short version (tests/e2e/test_chaos.py).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from meshops.demo import RUN_ID_RE, TERMINAL, Harness, check_outcome
from workers.slack.render import render_event
from workers.store.runs import RedisRunStore
from workflows.errors import MeshopsError
from workflows.model import Run

CLUSTERS = {"dev": "aks-dev-westus2", "staging": "aks-staging-eastus",
            "prod": "aks-prod-eastus"}
VICTIMS = ("worker", "bot", "beat", "redis", "fault")


class RedisServer:
    """A redis-server of the chaos run's own, with the append-only file on and fsynced at
    every write, so a SIGKILL loses nothing it acknowledged (Redis doc "Persistence")."""

    def __init__(self, port: int, directory: Path):
        self.port, self.directory = port, directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("no redis-server binary (./scripts/setup installs it)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                client.ping()
                return
            except redis.RedisError:
                time.sleep(0.05)  # loading the append-only file
        raise RuntimeError("redis-server did not come back")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class Figures:
    """What a chaos run tried and what went wrong (every list must stay empty)."""

    rounds: int = 0
    kills: Counter[str] = field(default_factory=Counter)  # victim → times
    kill_phases: Counter[str] = field(default_factory=Counter)  # the run's phase then
    faults: Counter[str] = field(default_factory=Counter)
    inputs: int = 0  # commands and clicks sent
    acknowledged: int = 0
    lost_decisions: list[str] = field(default_factory=list)
    doubled_effects: list[str] = field(default_factory=list)
    missing_lines: list[str] = field(default_factory=list)
    doubled_lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def losses(self) -> int:
        return (len(self.lost_decisions) + len(self.doubled_effects) + len(self.missing_lines)
                + len(self.doubled_lines) + len(self.failures))

    def report(self) -> list[str]:
        lines = [
            f"kills: {dict(self.kills)}; in phases {dict(self.kill_phases)}",
            f"faults: {dict(self.faults)}",
            f"inputs: {self.inputs} commands and clicks, {self.acknowledged} acknowledged",
            f"lost decisions: {self.lost_decisions or 0}",
            f"doubled side effects: {self.doubled_effects or 0}",
            f"thread lines missing: {self.missing_lines or 0}; doubled: "
            f"{self.doubled_lines or 0}",
        ]
        lines += [f"failed: {f}" for f in self.failures]
        lines.append(f"chaos: {self.rounds} rounds, {sum(self.kills.values())} kills, "
                     f"{sum(self.faults.values())} faults, {self.inputs} inputs, "
                     f"losses {self.losses}")
        return lines


class Monkey(threading.Thread):
    """Kills a process or stages a fault every ``every`` seconds (uniform) until stopped."""

    def __init__(self, h: Harness, rds: RedisServer, figures: Figures, rng: random.Random,
                 every: tuple[float, float], phase: Callable[[], str]):
        super().__init__(daemon=True, name="chaos-monkey")
        self.h, self.rds, self.figures, self.rng = h, rds, figures, rng
        self.every, self.phase = every, phase
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.rng.uniform(*self.every)):
            victim = self.rng.choice(VICTIMS)
            if victim == "fault":
                self.fault()
                continue
            self.figures.kills[victim] += 1
            self.figures.kill_phases[self.phase()] += 1
            if victim == "redis":
                self.rds.kill()
                time.sleep(self.rng.uniform(0.5, 2.0))
                self.rds.start()
            else:
                self.h.crash(victim)

    def fault(self) -> None:
        kind = self.rng.choice(["arm-429", "arm-500", "kube-429", "kube-500", "kube-hang",
                                "slack-outage"])
        self.figures.faults[kind] += 1
        try:
            if kind.startswith("arm"):
                self.h.control("POST", "/_sandbox/arm-faults",
                               {"statuses": [int(kind[-3:])]})
            elif kind == "kube-429":
                self.h.control("POST", "/_sandbox/kube-faults",
                               {"faults": [{"status": 429, "retry_after": 2}]})
            elif kind == "kube-500":
                self.h.control("POST", "/_sandbox/kube-faults", {"faults": [{"status": 500}]})
            elif kind == "kube-hang":
                self.h.control("POST", "/_sandbox/kube-faults", {"faults": [{"hang_s": 8}]})
            else:
                self.h.control("POST", "/_sandbox/slack-outage", {"seconds": 4})
        except requests.RequestException:
            pass


class Round:
    """One scenario under chaos: the person's side (retrying until acknowledged) and the
    checks."""

    def __init__(self, h: Harness, figures: Figures, store: RedisRunStore, timeout: float):
        self.h, self.figures, self.store, self.timeout = h, figures, store, timeout
        self.acked: list[tuple[str, str, str]] = []  # (run, action, user) acknowledged
        self.run_id: str | None = None
        self.arm_seen = len(h.control("GET", "/_sandbox/arm-requests")["requests"])

    def run_of(self, run_id: str) -> Run | None:
        try:
            return self.store.get(run_id)
        except (MeshopsError, redis.RedisError):
            return None  # Redis is being restarted

    def phase(self, run_id: str | None) -> str:
        run = self.run_of(run_id) if run_id else None
        return run.phase.value if run else "unknown"

    def request(self, text: str, channel: str) -> str:
        """Type the command until meshops takes it; the run id."""
        deadline = time.time() + 120
        while time.time() < deadline:
            self.figures.inputs += 1
            try:
                resp = self.h.slash("requester", text, channel=channel)
            except requests.RequestException:
                time.sleep(1)
                continue  # the bot is down: not acknowledged, type it again
            m = RUN_ID_RE.search(resp.text or "")
            if resp.status_code == 200 and m:  # accepted, or "already in progress: r-…"
                self.figures.acknowledged += 1
                return m.group(0)
            time.sleep(1)
        raise TimeoutError(f"/mesh {text} was never taken")

    def decide(self, run_id: str, action: str, waiting: str) -> None:
        """Click ``action`` until the run has left ``waiting`` (the phase asking for it)."""
        deadline = time.time() + self.timeout
        self._wait(lambda: self.phase(run_id) not in ("planning", "unknown"), self.timeout)
        while time.time() < deadline:
            run = self.run_of(run_id)
            if run is not None and run.phase.value != waiting:
                return
            root = self.h.root_message(run_id)
            has_button = root is not None and any(
                el.get("action_id") == f"meshops_{action}"
                for b in root.get("blocks") or [] if b.get("type") == "actions"
                for el in b["elements"])
            if run is None or not has_button:
                time.sleep(0.5)
                continue
            seen = self.h.slack_log_len()
            self.figures.inputs += 1
            try:
                resp = self.h.click("approver", run_id, action, root)  # type: ignore[arg-type]
            except requests.RequestException:
                time.sleep(1)
                continue
            if resp.status_code != 200:
                time.sleep(1)
                continue
            time.sleep(1.0)  # an answer through the response_url, if any
            told = " ".join(e.get("text", "") for e in self.h.slack_log(seen)
                            if e["kind"] == "response")
            if "could not take that now" in told:
                continue  # the person was told nothing changed: try again
            self.figures.acknowledged += 1
            self.acked.append((run_id, action, self.h.person("approver")))
            self._wait(lambda: (r := self.run_of(run_id)) is not None
                       and r.phase.value != waiting, 45)
            return
        raise TimeoutError(f"run {run_id} never left {waiting}")

    def _wait(self, cond: Callable[[], Any], timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return True
            time.sleep(0.3)
        return False

    def play(self, scenario: str, cluster: str, bake: str, interval: str) -> str:
        h = self.h
        state = h.control("GET", "/_sandbox/state")[cluster]
        stable, target = state["revisions"][0], "asm-1-26"
        if scenario == "rollback":
            h.control("POST", "/_sandbox/faults", {"cluster": cluster, "namespace": "checkout",
                                                   "revision": target, "error_rate": 0.3})
        run_id = self.request(f"upgrade {cluster} {target} --bake={bake} "
                              f"--interval={interval}", h.channel_of(cluster))
        self.run_id = run_id
        self.decide(run_id, "approve", "awaiting_approval")
        if scenario == "upgrade":
            self._wait(lambda: self.phase(run_id) in ("awaiting_completion", *TERMINAL),
                       self.timeout)
            if self.phase(run_id) == "awaiting_completion":
                self.decide(run_id, "complete", "awaiting_completion")
        if not self._wait(lambda: self.phase(run_id) in TERMINAL, self.timeout):
            self.figures.failures.append(f"{run_id}: still {self.phase(run_id)} after "
                                         f"{self.timeout:.0f}s")
            return run_id
        self.check(run_id, scenario, cluster, stable, target)
        return run_id

    def check(self, run_id: str, scenario: str, cluster: str, stable: str, target: str
              ) -> None:
        h, f = self.h, self.figures
        want = "completed" if scenario == "upgrade" else "rolled_back"
        run = self.run_of(run_id)
        phase = run.phase.value if run else "unknown"
        f.failures += [f"{run_id}: {p}" for p in check_outcome(
            h, scenario, cluster, run_id, phase, stable, target, "checkout")]
        if phase != want:
            return
        counters = h.control("GET", "/_sandbox/counters")
        name = CLUSTERS[cluster]
        for kind in ("relabels", "restarts"):
            f.doubled_effects += [f"{run_id}: {kind} {k} ×{v}"
                                  for k, v in counters[kind].items()
                                  if k.startswith(name + "/") and v > 1]
        puts = [r for r in h.control("GET", "/_sandbox/arm-requests")["requests"][self.arm_seen:]
                if r[0] == "PUT" and r[1].endswith(f"/managedClusters/{name}") and r[2] == 200]
        if len(puts) != 2:  # [stable, canary], then [canary] or [stable]
            f.doubled_effects.append(f"{run_id}: {len(puts)} ARM PUTs, not 2")
        for (rid, action, user) in self.acked:
            if rid == run_id and run is not None and not any(
                    a.decision == action and a.user == user for a in run.approvals):
                f.lost_decisions.append(f"{run_id}: {action} by {user}")
        self._thread_exactly_once(run_id)

    def _thread_exactly_once(self, run_id: str) -> None:
        """Each history line once in the thread; one root (after Slack has caught up)."""
        f = self.figures

        def caught_up() -> bool:
            try:
                # read only: the sweep's unsynced() moves what it returns to now, and
                # polling it here would keep the sweep from ever re-syncing the run
                return not self.store.is_unsynced(run_id)
            except (MeshopsError, redis.RedisError):
                return False

        # a slow machine (CI under load) may take a while to sync two runs' last lines; say
        # so when it never did, so a missing line is not mistaken for a lost one
        synced = self._wait(caught_up, 120)
        run = self.run_of(run_id)
        if run is None:
            f.failures.append(f"{run_id}: unreadable after the round")
            return
        log = self.h.slack_log()
        roots = [e for e in log if e["kind"] == "post" and not e.get("thread_ts")
                 and f"(run {run_id})" in e["text"]]
        if len(roots) != 1:
            f.doubled_lines.append(f"{run_id}: {len(roots)} root messages")
            return
        # a thread message shows one history line, or (the channel's budget short) the
        # lines `line`..`last` of its metadata, joined by newlines
        posted: Counter[str] = Counter()
        for e in log:
            if e["kind"] != "post" or e.get("thread_ts") != roots[0]["ts"]:
                continue
            payload = (e.get("metadata") or {}).get("event_payload") or {}
            first, last = payload.get("line"), payload.get("last")
            if isinstance(first, int) and isinstance(last, int) and last > first and \
                    e["text"] == "\n".join(render_event(run, i) for i in range(first, last + 1)
                                            if i < len(run.history)):
                posted.update(render_event(run, i) for i in range(first, last + 1))
            else:
                posted[e["text"]] += 1
        expected = Counter(render_event(run, i) for i in range(len(run.history)))
        f.missing_lines += [f"{run_id}: {t[:80]}" + ("" if synced else " (still unsynced)")
                            for t in expected - posted]
        f.doubled_lines += [f"{run_id}: {t[:80]}" for t in posted - expected]


def run_chaos(state_dir: Path, port_base: int, rounds: int = 2, seed: int | None = None,
              every: tuple[float, float] = (3.0, 7.0), bake: str = "6s",
              interval: str = "3s", timeout: float = 300, parallel: int = 1,
              echo: Callable[[str], None] | None = None) -> Figures:
    """Play ``rounds`` scenarios under chaos, ``parallel`` at a time (on different
    clusters, as a fleet's runs go on side by side); the figures (``losses`` must be 0)."""
    say = echo or (lambda line: print(line, flush=True))
    rng = random.Random(seed)
    figures = Figures()
    order = ["dev", "staging", "prod"]
    parallel = max(1, min(parallel, len(order)))
    rds = RedisServer(port_base + 95, state_dir / "redis")
    rds.start()
    h = Harness(state_dir, port_base, port_base + 80, redis_url=rds.url, echo=lambda _: None)
    try:
        h.start()
        h.supervise("worker", "beat", "bot")
        store = RedisRunStore.from_url(rds.url, h.prefix)
        used: set[str] = set()
        for first in range(0, rounds, parallel):
            batch = [(i, "upgrade" if i % 2 == 0 else "rollback", order[i % len(order)])
                     for i in range(first, min(rounds, first + parallel))]
            if used & {c for _, _, c in batch}:
                h.control("POST", "/_sandbox/reset")  # the clusters on asm-1-25 again
                used.clear()
            used |= {c for _, _, c in batch}
            for line in _play_batch(h, rds, figures, rng, every, store, timeout, batch,
                                    bake, interval, rounds):
                say(line)
            h.control("DELETE", "/_sandbox/kube-faults")
            h.control("POST", "/_sandbox/arm-faults", {"statuses": []})
    finally:
        h.stop()
        rds.kill()
    for line in figures.report():
        say(line)
    return figures


def _play_batch(h: Harness, rds: RedisServer, figures: Figures, rng: random.Random,
                every: tuple[float, float], store: RedisRunStore, timeout: float,
                batch: list[tuple[int, str, str]], bake: str, interval: str,
                rounds: int) -> list[str]:
    """Play the batch's scenarios side by side under one monkey; a line per round."""
    plays = [Round(h, figures, store, timeout) for _ in batch]
    outcome: dict[int, str] = {}

    def play(i: int, scenario: str, cluster: str, one: Round) -> None:
        try:
            outcome[i] = one.play(scenario, cluster, bake, interval)
        except (TimeoutError, requests.RequestException) as exc:
            figures.failures.append(f"round {i} ({scenario} {cluster}): {exc}")
            outcome[i] = "?"

    monkey = Monkey(h, rds, figures, rng, every,
                    lambda: next((p.phase(p.run_id) for p in plays if p.run_id), "unknown"))
    threads = [threading.Thread(target=play, args=(*b, one), daemon=True)
               for b, one in zip(batch, plays, strict=True)]
    monkey.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * 3)
    monkey.stopped.set()
    monkey.join(30)
    lines = []
    for (i, scenario, cluster), one in zip(batch, plays, strict=True):
        figures.rounds += 1
        run_id = outcome.get(i, "?")
        lines.append(f"round {i + 1}/{rounds}: {scenario} of {cluster}, run {run_id}: "
                     f"{one.phase(run_id) if run_id != '?' else 'not started'}")
    return lines


def demo_under_redis_restarts(state_dir: Path, port_base: int, period: float = 30.0,
                              scenario: str = "upgrade") -> int:
    """``meshops demo`` against a Redis with persistence that is SIGKILLed and started
    again every ``period`` seconds throughout the run; the demo's exit code (0: the run
    ended as the scenario says)."""
    from meshops.demo import run_demo

    rds = RedisServer(port_base + 95, state_dir / "redis")
    rds.start()
    os.environ["REDIS_URL"] = rds.url
    done = threading.Event()

    def restarts() -> None:
        n = 0
        while not done.wait(period):
            rds.kill()
            n += 1
            print(f"(chaos: Redis killed, {n}; starting it again on its append-only file)",
                  flush=True)
            time.sleep(1.0)
            rds.start()

    killer = threading.Thread(target=restarts, daemon=True)
    killer.start()
    try:
        return run_demo(scenario, state_dir, port_base, port_base + 80, "10s", "5s", None,
                        900)
    finally:
        done.set()
        killer.join(10)
        rds.kill()
