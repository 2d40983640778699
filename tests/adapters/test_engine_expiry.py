"""Engine.expire_due on a real Redis store: a plan nobody approves expires into a cancelled
run, releases the cluster and is audited; a fresh one does not."""

from __future__ import annotations

from tests.conftest import REDIS_URL, ROOT
from workers.config import load_fleet
from workers.engine import Engine
from workers.store.audit import AuditLog
from workers.store.runs import RedisRunStore
from workers.wiring import FleetPorts
from workflows.kind import StartRun
from workflows.model import Phase


def test_expire_due(prefix: str) -> None:
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    clock = {"now": 1_000_000.0}
    engine = Engine(fleet, store, FleetPorts(fleet), clock=lambda: clock["now"])
    try:
        run = engine.start(StartRun("upgrade", "prod-weu", "asm-1-26"), "U0AAAAAAA", "C0123456789")
        assert run.options.approval_timeout_s == 4 * 3600  # from the fleet file
        parked = run.to(Phase.AWAITING_APPROVAL, clock["now"], "plan: …",
                        stable_revision="asm-1-25")
        store.save(parked, run.seq)
        clock["now"] += 3600
        assert engine.expire_due() == []
        clock["now"] += 3 * 3600
        (expired,) = engine.expire_due()
        assert expired.phase == Phase.CANCELLED
        assert store.active_run("prod-weu") is None
        assert engine.expire_due() == []
        trail = [(e["kind"], e["who"], e["what"]) for e in AuditLog(store.r, prefix).read(
            run=run.id)]
        assert ("decision", "meshops", "expire") in trail
    finally:
        keys = list(store.r.scan_iter(prefix + "*"))
        if keys:
            store.r.delete(*keys)
