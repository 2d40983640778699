"""A fleet campaign whose worker is SIGKILLed at the moments that matter goes on where it was,
with nothing done twice ("kill any process at any moment").

The campaign is ``meshops demo --scenario fleet-halt``'s on the small fleet of
tests/fixtures/worlds/campaign-halt.yaml: dev-1 moves to asm-1-27; staging-1 and staging-2's
asm-1-27 canaries answer 30 % 5xx, so both roll back; the staging budget is one failure, so
the campaign halts and prod-1 and prod-3 are never touched. A supervisor (as systemd or a
Deployment would) starts the worker again after each kill; beat's sweep re-enqueues the
runs whose ticks died with it (after ``SWEEP_GRACE_S``, 15 s: each kill costs about that).
The worker and its pool are SIGKILLed:

1. as soon as the campaign's first child run (dev-1's) is in the store: the campaign's tick
   has just called ``start_child`` and may not have saved itself yet, so its next tick must
   adopt that run (``find_child``) rather than start a second one; the child's first tick
   and Slack sync, just enqueued, die with the worker too;
2. as soon as staging's first child run is in the store, while the staging stage is
   running: the stage starts its two clusters in one tick, so the kill tends to land
   between the two starts, before the campaign has saved either (the run shows as
   "adopted" in the campaign's history): the same adoption, for two children at once;
3. while a staging child bakes (its wave's step is ``bake``): the gate's look is cut off;
   the next worker must take it again and still roll the bad canary back, once.

Then the campaign must be ``halted`` with exactly one child run per (cluster, revision) hop,
dev-1 on asm-1-27, both staging clusters back on asm-1-26, nothing for prod, no "started
run" line twice for a run in the campaign's history, each failure counted once, each
namespace relabel and workload restart counted once by the sandbox, and the kills must
really have happened (the moments are written to ``kills.txt`` beside the processes' logs).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from meshops.demo import RUN_ID_RE, TERMINAL, Harness
from tests.conftest import FIXTURES, REDIS_URL, free_port_base
from workers.config import load_fleet
from workers.store.runs import RedisRunStore
from workflows.errors import TemporaryError
from workflows.model import Phase, Run, WaveStep

pytestmark = pytest.mark.e2e

TARGET, STABLE = "asm-1-27", "asm-1-26"
BAD_CANARIES = ("staging-1", "staging-2")
STARTED_RE = re.compile(r"^started run (r-[0-9a-f]{10}) on (\S+) ")


def _wait(what: str, cond: Callable[[], Any], timeout: float, poll: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f}s")


@pytest.mark.timeout(420)
def test_a_campaign_goes_on_where_it_was_when_its_worker_is_killed(tmp_path: Path) -> None:
    base = free_port_base(26000, 29000, 100)
    lines: list[str] = []
    h = Harness(tmp_path, base, base + 80, world_file=FIXTURES / "worlds" / "campaign-halt.yaml",
                redis_url=REDIS_URL, echo=lines.append)
    kills: list[str] = []  # the moment of each kill, with what the store said then
    try:
        h.start()
        h.supervise("worker", "beat", "bot")
        store = RedisRunStore.from_url(h.redis_url, h.prefix)
        fleet = load_fleet(h.info["env"]["MESHOPS_FLEET"])
        assert fleet.campaigns is not None
        before = h.control("GET", "/_sandbox/state")
        for cluster in BAD_CANARIES:
            h.control("POST", "/_sandbox/faults", {"cluster": cluster, "namespace": "shop",
                                                   "revision": TARGET, "error_rate": 0.3})

        resp = h.slash("requester", f"campaign start {TARGET}", channel=fleet.campaigns.channel)
        m = RUN_ID_RE.search(resp.text)
        assert resp.status_code == 200 and m, resp.text
        cid = m.group(0)
        click = h.click("approver", cid, "approve", h.wait_for_button(cid, "approve", 120))
        assert click.status_code == 200, click.text

        def campaign() -> Run | None:
            try:
                return store.get(cid)
            except TemporaryError:
                return None

        def children() -> list[Run]:
            try:
                return [r for r in store.list_runs(limit=200)
                        if r.params.get("campaign") == cid]
            except TemporaryError:
                return []

        def kill(moment: str) -> None:
            """SIGKILL the worker once the previous kill's worker is back (the supervisor
            polls every 0.5 s), and count it only if it was alive."""
            _wait("the supervisor to start the worker again",
                  lambda: h.restarts["worker"] >= len(kills), 30)
            proc = h.procs["worker"]
            assert proc.poll() is None, f"the worker died by itself before: {moment}"
            run = campaign()
            seen = ", ".join(f"{c.cluster} {c.phase.value}"
                             + (f"/{c.current_wave.step.value}" if c.current_wave else "")
                             for c in children())
            h.crash("worker")
            kills.append(f"{moment} (campaign {run.phase.value if run else '?'}; {seen})")

        def staging() -> list[Run]:
            return [c for c in children() if c.cluster.startswith("staging-")]

        # 1. the campaign's first child run (dev-1's) has just been started
        _wait("the campaign's first child run", children, 120, poll=0.05)
        kill("first child run started")
        # 2. staging's two clusters are being started in one tick
        _wait("staging's first child run", staging, 120, poll=0.05)
        kill("staging's first child run started")

        # 3. a staging child bakes
        def baking() -> bool:
            return any(c.phase == Phase.MIGRATING and c.current_wave is not None
                       and c.current_wave.step == WaveStep.BAKE for c in staging())
        _wait("a staging child to bake", baking, 120, poll=0.1)
        kill("a staging child bakes")

        phase = h.wait_for_phase(cid, {"halted", *TERMINAL}, 180)
        after = h.control("GET", "/_sandbox/state")
        counters = h.control("GET", "/_sandbox/counters")
        run = store.get(cid)
        kids = children()
    finally:
        h.stop()

    history = [e.text for e in run.history]
    report = "\n".join(["kills:", *kills, f"worker restarts: {h.restarts['worker']}",
                        "children:", *(f"{c.id} {c.cluster} {c.canary_revision} {c.phase.value}"
                                       for c in kids),
                        "campaign history:", *history])
    (tmp_path / "kills.txt").write_text(report + "\n")
    # the kills happened, and the supervisor brought the worker back each time
    assert len(kills) >= 3 and h.restarts["worker"] >= len(kills), report
    assert phase == Phase.HALTED.value, report
    assert any(t.startswith("halted: 2 clusters of stage staging failed") for t in history), \
        report
    # nothing started twice: one child run per (cluster, revision) hop
    hops = Counter((c.cluster, c.canary_revision) for c in kids)
    assert hops == {("dev-1", TARGET): 1, ("staging-1", TARGET): 1, ("staging-2", TARGET): 1}, \
        report
    by_cluster = {c.cluster: c for c in kids}
    assert by_cluster["dev-1"].phase == Phase.COMPLETED, report
    assert after["dev-1"]["revisions"] == [TARGET], report
    for cluster in BAD_CANARIES:
        assert by_cluster[cluster].phase == Phase.ROLLED_BACK, report
        assert after[cluster]["revisions"] == before[cluster]["revisions"] == [STABLE], report
        # the campaign counted each failure once
        assert sum(t.startswith(f"{cluster} failed: ") for t in history) == 1, report
    assert not [c for c in kids if c.cluster.startswith("prod-")], report
    assert after["prod-1"]["revisions"] == after["prod-3"]["revisions"] == [STABLE], report
    # the campaign's own record of its children: each started (or adopted) once
    started = Counter(m.group(1) for t in history if (m := STARTED_RE.match(t)))
    assert all(n == 1 for n in started.values()), report
    named = {rid for t in history for rid in RUN_ID_RE.findall(t)
             if t.startswith(("started run", "adopted run"))}
    assert named == {c.id for c in kids}, report
    entries = [e for s in run.params["stages"] for e in s["clusters"]]
    assert {e["cluster"]: e["runs"] for e in entries if e["runs"]} == {
        c.cluster: [c.id] for c in kids}, report
    # each side effect in the clusters once: relabels and restarts, counted by the sandbox
    doubled = {k: v for kind in ("relabels", "restarts") for k, v in counters[kind].items()
               if v > 1}
    assert not doubled, f"{doubled}\n{report}"
