"""``/mesh campaign plan`` as a worker answers it: every cluster of the campaign world read
through the real adapters (ARM's managedClusters, meshUpgradeProfiles, meshRevisionProfiles
and maintenanceConfigurations), planned by stage (tests/fixtures/worlds/campaign.yaml)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from sandbox.app import Sandbox
from tests.conftest import FIXTURES, free_port_base
from tests.sandbox.conftest import running
from workers.campaigns import cluster_facts
from workers.config import Fleet, load_fleet
from workers.views import campaign_plan_text
from workers.wiring import FleetPorts


@pytest.fixture(scope="module")
def campaign_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running(Sandbox(Path(tmp_path_factory.mktemp("campaign")),
                         free_port_base(10000, 15000, 10), with_prometheus=False,
                         world_file=FIXTURES / "worlds" / "campaign.yaml")) as sb:
        yield sb


@pytest.fixture(scope="module")
def fleet(campaign_world: Sandbox) -> tuple[Fleet, FleetPorts]:
    fleet = load_fleet(campaign_world.state_dir / "fleet.yaml")
    return fleet, FleetPorts(fleet)


def line(text: str, cluster: str) -> str:
    (found,) = [ln for ln in text.splitlines() if f"`{cluster}`" in ln]
    return found


def test_the_sandbox_fleet_file_carries_the_worlds_rings_and_labels(fleet) -> None:  # type: ignore[no-untyped-def]
    f, ports = fleet
    assert f.campaigns is not None and f.campaigns.channel == "C0FLEET"
    assert [(s.name, s.selector, s.approval, s.soak) for s in f.campaigns.stages] == [
        ("dev", {"env": "dev"}, False, 0), ("prod", {"env": "prod"}, True, 30)]
    facts = {x.name: x for x in cluster_facts(f, ports)}
    assert facts["prod-a"].labels == {"env": "prod", "region": "eastus"}
    # prod-a's own AKS window, read from ARM; the others have none
    assert facts["prod-a"].window_source == "AKS aksManagedAutoUpgradeSchedule"
    assert facts["prod-a"].window is not None
    assert facts["prod-a"].window.schedule.weekly is not None
    assert facts["dev-a"].window is None
    assert facts["dev-b"].upgrades == ("asm-1-25", "asm-1-26")  # meshUpgradeProfiles
    assert facts["lab"].mesh is not None and facts["lab"].mesh.mode != "Istio"


def test_a_named_revision_plans_hops_blocks_and_windows(fleet) -> None:  # type: ignore[no-untyped-def]
    f, ports = fleet
    now = datetime.now(UTC)
    text = campaign_plan_text(f, ports, "asm-1-27", {}, now)
    assert text.startswith("*Fleet campaign plan (dry run, nothing changed)*: → asm-1-27")
    assert "asm-1-26 → asm-1-27" in line(text, "dev-a")
    assert line(text, "dev-b").count(" → ") == 2  # asm-1-24 goes through one revision
    assert "asm-1-24 → asm-1-2" in line(text, "dev-b")
    prod_a = line(text, "prod-a")
    assert "asm-1-26 → asm-1-27" in prod_a and "aksManagedAutoUpgradeSchedule" in prod_a
    assert "window opens" in prod_a or "in window now" in prod_a
    prod_b = line(text, "prod-b")  # asm-1-27 is not compatible with Kubernetes 1.30
    assert ":no_entry:" in prod_b and "1.31, 1.32, 1.33, 1.34" in prod_b and "1.30" in prod_b
    assert text.index("*Stage dev*") < text.index("`dev-b`") < text.index("*Stage prod*") \
        < text.index("`prod-b`") < text.index("*Not in any stage*") < text.index("`lab`")
    assert "approval first" in text


def test_without_a_revision_it_proposes_the_default_and_avoids_one_near_its_end(fleet) -> None:  # type: ignore[no-untyped-def]
    f, ports = fleet
    now = datetime.now(UTC)
    text = campaign_plan_text(f, ports, None, {}, now)
    # every region offers asm-1-24 … asm-1-27; AKS installs n-1 by default: asm-1-26
    assert text.startswith("*Fleet campaign plan (dry run, nothing changed)*: → asm-1-26")
    assert "asm-1-24 → asm-1-26" in line(text, "dev-b")  # a direct upgrade
    assert ":white_check_mark:" in line(text, "dev-a")  # already there
    ending = {"asm-1-26": date.today() + timedelta(days=20)}
    text = campaign_plan_text(f, ports, None, ending, now)
    assert text.startswith("*Fleet campaign plan (dry run, nothing changed)*: → asm-1-25")
    assert "asm-1-26" in text.splitlines()[0]  # says why asm-1-26 was left out


def test_a_revision_no_region_offers_is_refused_with_what_is_offered(fleet) -> None:  # type: ignore[no-untyped-def]
    f, ports = fleet
    text = campaign_plan_text(f, ports, "asm-1-30", {}, datetime.now(UTC))
    assert ":no_entry:" in line(text, "dev-a") and "asm-1-30" in line(text, "dev-a")


def test_the_workers_campaign_api_starts_finds_and_decides_cluster_runs(fleet, prefix) -> None:  # type: ignore[no-untyped-def]
    """EngineCampaigns over the real engine and store: a child run is an ordinary upgrade
    run (lease, policy, audit), found again after a crash rather than started twice."""
    from tests.conftest import REDIS_URL
    from workers.campaigns import EngineCampaigns
    from workers.engine import Engine
    from workers.store.runs import RedisRunStore
    from workflows.errors import ClusterBusy, DecisionRefused
    from workflows.kind import StartRun
    from workflows.model import FLEET_SCOPE, Phase

    f, ports = fleet
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    ticks: list[tuple[str, int]] = []
    notes: list[str] = []
    engine = Engine(f, store, ports)
    api = EngineCampaigns(engine, lambda: {}, lambda i, s: ticks.append((i, s)), notes.append)
    try:
        campaign = engine.start(StartRun("campaign", FLEET_SCOPE, "asm-1-27"), "U0ANA", "C0X")
        assert campaign.channel == "C0FLEET"  # the campaigns' channel, not a cluster's
        assert [s.name for s in api.stages()] == ["dev", "prod"]
        assert api.find_child(campaign.id, "dev-a", "asm-1-27") is None
        child = api.start_child(campaign, "dev-a", "asm-1-27")
        assert (child.kind, child.cluster, child.canary_revision) == ("upgrade", "dev-a",
                                                                       "asm-1-27")
        assert child.params == {"campaign": campaign.id} and child.requester == "U0ANA"
        assert child.channel == f.clusters["dev-a"].channel
        assert ticks == [(child.id, child.seq)] and notes == [child.id]
        found = api.find_child(campaign.id, "dev-a", "asm-1-27")
        assert found is not None and found.id == child.id
        assert api.find_child(campaign.id, "dev-a", "asm-1-26") is None
        with pytest.raises(ClusterBusy):
            api.start_child(campaign, "dev-a", "asm-1-27")  # the cluster's lease holds
        # decided as a click is: a run not yet planned has nothing to approve, and a person
        # outside the cluster's policy may not cancel it; its requester may
        with pytest.raises(DecisionRefused, match="not possible now"):
            api.decide(child.id, "approve", "U0BEN")
        with pytest.raises(DecisionRefused, match="Only the requester"):
            api.decide(child.id, "cancel", "U0NOBODY")
        cancelled = api.decide(child.id, "cancel", "U0ANA")
        assert cancelled.phase == Phase.CANCELLED and notes[-1] == child.id
        assert api.get_run(child.id).phase == Phase.CANCELLED
    finally:
        keys = list(store.r.scan_iter(prefix + "*"))
        if keys:
            store.r.delete(*keys)


def test_the_fleet_at_a_glance(fleet, campaign_world, prefix) -> None:  # type: ignore[no-untyped-def]
    """/mesh fleet: support from the release notes, what each cluster can move to and what
    its Kubernetes version keeps it from, sidecars left on an older patch, runs."""
    import requests

    from tests.conftest import REDIS_URL, eventually
    from workers.engine import Engine
    from workers.store.runs import RedisRunStore
    from workers.views import fleet_text

    f, ports = fleet
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    engine = Engine(f, store, ports)
    today = datetime.now(UTC)
    ends = {"asm-1-24": date(2025, 10, 6), "asm-1-25": today.date() + timedelta(days=40)}
    text = fleet_text(engine, ends, today)
    assert text.startswith("*Fleet*: 5 clusters")
    assert "asm-1-26 supported; Kubernetes 1.32.4; can move to asm-1-27" in line(text, "dev-a")
    assert "out of support since 2025-10-06" in line(text, "dev-b")
    prod_b = line(text, "prod-b")
    assert "support ends" in prod_b and "(in 40 d)" in prod_b
    assert "not with its Kubernetes: asm-1-27 (needs Kubernetes 1.31+)" in prod_b
    assert "mesh off" in line(text, "lab")
    assert "older patch" not in text
    # AKS rolls a new patch of asm-1-26 out: the control planes move, running sidecars stay
    requests.post(campaign_world.url["control"] + "/_sandbox/revisions/asm-1-26/patch",
                  json={"version": "1.26.9"}, timeout=5).raise_for_status()
    dev_a = eventually(lambda: "older patch" in (t := line(fleet_text(engine, ends, today),
                                                          "dev-a")) and t, timeout=20)
    assert "on asm-1-26 (control plane 1.26.9)" in dev_a

