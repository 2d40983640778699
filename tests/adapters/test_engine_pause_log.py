"""A run that pauses for a person says why in the worker's log line of the change, not only
in Slack and the store: an operator reading the logs of a stalled campaign sees the reason
(real Redis store, the engine's own ticks, a gate that cannot decide on a trickle of
requests)."""

from __future__ import annotations

from structlog.testing import capture_logs

from tests.conftest import REDIS_URL, ROOT
from tests.core.fakes import FakeWorld, NamespaceMetrics
from workers.config import load_fleet
from workers.engine import Engine
from workers.store.runs import RedisRunStore
from workflows.kind import StartRun
from workflows.model import Phase


def test_a_pause_is_logged_with_its_reason(prefix: str) -> None:
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    world = FakeWorld.seeded(["a"])
    for rev in ("asm-1-25", "asm-1-26"):  # far too few requests for any bake
        world.metrics_by_rev[("a", rev)] = NamespaceMetrics(requests=3, success_rate=100.0,
                                                            p99_ms=50)
    clock = {"now": 1_800_000_000.0}
    engine = Engine(load_fleet(ROOT / "examples" / "fleet.azure.yaml"), store, world,
                    clock=lambda: clock["now"])
    run = engine.start(StartRun("upgrade", "dev-weu", "asm-1-26"), "U0AAAAAAA", "C0")
    with capture_logs() as logs:
        for _ in range(2000):
            run = store.get(run.id)
            if run.phase == Phase.AWAITING_APPROVAL:
                run = engine.decide(run.id, "approve", "U0BBBBBBB")
            if run.phase == Phase.PAUSED:
                break
            advanced = engine.advance(run.id, run.seq)
            clock["now"] += max(1.0, advanced.recheck_after or 0.0) if advanced else 1.0
    assert run.phase == Phase.PAUSED and "could not be decided" in run.pause_reason
    changes = [e for e in logs if e["event"] == "run.phase_changed"]
    assert changes[-1]["phase"] == "paused" and changes[-1]["reason"] == run.pause_reason
    # the other changes carry no reason: none is pending then
    assert all("reason" not in e for e in changes[:-1]), changes
