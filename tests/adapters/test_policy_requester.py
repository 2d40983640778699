"""Engine.start for a run a fleet-file policy starts (``auto: patch|minor``, issue 14): the
requester check is the fleet file's own and does not apply to ``POLICY_REQUESTER``; a person
outside ``requesters`` is still refused."""

from __future__ import annotations

import pytest

from tests.conftest import REDIS_URL, ROOT
from workers.config import load_fleet
from workers.engine import Engine
from workers.store.runs import RedisRunStore
from workers.wiring import FleetPorts
from workflows.errors import ClusterBusy, DecisionRefused
from workflows.kind import StartRun
from workflows.model import FLEET_SCOPE, POLICY_REQUESTER, Phase


def test_the_fleet_policy_may_request_where_only_named_people_may(prefix: str) -> None:
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    prod = fleet.clusters["prod-weu"].model_copy(update={"requesters": ["U0ALICE"]})
    fleet = fleet.model_copy(update={"clusters": {**fleet.clusters, "prod-weu": prod}})
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    engine = Engine(fleet, store, FleetPorts(fleet), clock=lambda: 1_000_000.0)
    try:
        # only U0ALICE (and the approvers) may request changes of prod-weu
        with pytest.raises(DecisionRefused, match="You may not request changes of `prod-weu`"):
            engine.start(StartRun("rollover", "prod-weu", "asm-1-25"), "U0STRANGER", "C0X1")
        run = engine.start(StartRun("rollover", "prod-weu", "asm-1-25",
                                    fields={"target_version": "1.25.9"}),
                           POLICY_REQUESTER, "C0123456789")
        assert (run.requester, run.phase, run.target_version) == (
            POLICY_REQUESTER, Phase.PLANNING, "1.25.9")
        assert store.active_run("prod-weu") == run.id
        with pytest.raises(ClusterBusy):  # the lease still holds for the policy
            engine.start(StartRun("rollover", "prod-weu", "asm-1-25"), POLICY_REQUESTER,
                         "C0123456789")
        campaign = engine.start(StartRun("campaign", FLEET_SCOPE, "",
                                         fields={"params": {"only": ["dev-weu"]}}),
                                POLICY_REQUESTER, "C0FLEET0001")
        assert campaign.params == {"only": ["dev-weu"]} and campaign.channel == "C0FLEET0001"
    finally:
        keys = list(store.r.scan_iter(prefix + "*"))
        if keys:
            store.r.delete(*keys)
