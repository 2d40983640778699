"""Fleet campaign planning (workflows/campaign.py): stages, the proposed revision, each
cluster's path, its window, and the Slack text.

Revision profiles are built from the real shape of ARM's ``meshRevisionProfiles``: the westus2
values below are copied from an ``az aks mesh get-revisions`` recording of 2024-07-03
(revision, upgrades, compatibleWith); other regions are variations of it written for these
tests. Expected answers are worked out by hand from the AKS support policy
(learn.microsoft.com/azure/aks/istio-support-policy), not by the code under test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from workflows.campaign import (
    NEAR_END_OF_SUPPORT,
    STATUSES,
    CampaignPlan,
    ClusterFacts,
    StageSpec,
    hop_path,
    plan_campaign,
    plan_text,
    propose_revision,
    stage_members,
)
from workflows.errors import InvalidRevision, PermanentError
from workflows.maintenance import MaintenanceWindow, parse_config_window
from workflows.ports import MeshState, RevisionProfile

# ARM's meshRevisions of westus2 on 2024-07-03 (real recording)
WESTUS2_ARM: list[dict[str, Any]] = [
    {"revision": "asm-1-20", "upgrades": ["asm-1-21"], "compatibleWith": [
        {"name": "KubernetesOfficial", "versions": ["1.25", "1.26", "1.27", "1.28", "1.29"]},
        {"name": "AKSLongTermSupport", "versions": ["1.25", "1.26", "1.27", "1.28", "1.29"]}]},
    {"revision": "asm-1-21", "upgrades": ["asm-1-22"], "compatibleWith": [
        {"name": "KubernetesOfficial", "versions": ["1.26", "1.27", "1.28", "1.29", "1.30"]},
        {"name": "AKSLongTermSupport", "versions": ["1.26", "1.27", "1.28", "1.29", "1.30"]}]},
    {"revision": "asm-1-22", "compatibleWith": [
        {"name": "KubernetesOfficial", "versions": ["1.27", "1.28", "1.29", "1.30"]},
        {"name": "AKSLongTermSupport", "versions": ["1.27", "1.28", "1.29", "1.30"]}]},
]
# a later region for these tests: asm-1-23 rolled out (support policy table: 1.27 - 1.32),
# asm-1-20 gone
EASTUS_ARM: list[dict[str, Any]] = WESTUS2_ARM[1:2] + [
    {**WESTUS2_ARM[2], "upgrades": ["asm-1-23"]},
    {"revision": "asm-1-23", "compatibleWith": [
        {"name": "KubernetesOfficial",
         "versions": ["1.27", "1.28", "1.29", "1.30", "1.31", "1.32"]}]},
]

TODAY = date(2026, 12, 3)
NOW = datetime(2026, 12, 3, 22, 0, tzinfo=UTC)  # a Thursday


def profiles(arm: Sequence[Mapping[str, Any]]) -> tuple[RevisionProfile, ...]:
    """ARM's meshRevisions as RevisionProfiles (both compatibleWith lists together)."""
    out = []
    for r in arm:
        versions = sorted({v for c in r.get("compatibleWith", []) for v in c["versions"]},
                          key=lambda v: tuple(int(x) for x in v.split(".")))
        out.append(RevisionProfile(revision=r["revision"], upgrades=tuple(r.get("upgrades", [])),
                                   kubernetes=tuple(versions)))
    return tuple(out)


WESTUS2 = profiles(WESTUS2_ARM)
EASTUS = profiles(EASTUS_ARM)


def upgrades_of(revision: str, region: Sequence[RevisionProfile]) -> tuple[str, ...]:
    """meshUpgradeProfiles of a cluster on ``revision``: what its region's profile offers."""
    return next(p.upgrades for p in region if p.revision == revision)


def cluster(name: str, revision: str | None = "asm-1-20", location: str = "westus2",
            k8s: str = "1.28.9", labels: Mapping[str, str] | None = None,
            region: tuple[RevisionProfile, ...] | None = None, **kw: Any) -> ClusterFacts:
    region = WESTUS2 if region is None else region
    mesh = MeshState(mode="Istio" if revision else "Disabled",
                     revisions=[revision] if revision else [], provisioning_state="Succeeded",
                     kubernetes_version=k8s, location=location)
    ups = upgrades_of(revision, region) if revision in {p.revision for p in region} else ()
    fields: dict[str, Any] = {"upgrades": ups, "profiles": region, **kw}
    return ClusterFacts(name=name, location=location, labels=labels or {}, mesh=mesh, **fields)


def sunday_window(**extra: Any) -> MaintenanceWindow:
    return parse_config_window({
        "schedule": {"weekly": {"interval_weeks": 1, "day_of_week": "Sunday"}},
        "duration_hours": 4, "start_time": "01:00", "start_date": "2026-11-01", **extra})


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# ------------------------------------------------------------------ stages

LABELS = {"aks-dev-1": {"env": "dev"}, "aks-dev-2": {"env": "dev", "region": "westus2"},
          "aks-prod-1": {"env": "prod", "region": "westus2"}, "aks-prod-2": {"env": "prod"}}


def test_stage_members_by_names_and_by_labels() -> None:
    stages = [StageSpec("canary", clusters=("aks-prod-2",)),
              StageSpec("dev", selector={"env": "dev"}),
              StageSpec("prod-west", selector={"env": "prod", "region": "westus2"})]
    assert stage_members(stages, LABELS) == {"aks-prod-2": "canary", "aks-dev-1": "dev",
                                             "aks-dev-2": "dev", "aks-prod-1": "prod-west"}


def test_the_first_stage_wins_and_an_empty_stage_takes_nothing() -> None:
    stages = [StageSpec("empty"),
              StageSpec("west", selector={"region": "westus2"}),
              StageSpec("dev", clusters=("aks-dev-2",), selector={"env": "dev"})]
    members = stage_members(stages, LABELS)
    assert members == {"aks-dev-2": "west", "aks-prod-1": "west", "aks-dev-1": "dev"}
    assert "aks-prod-2" not in members  # matched by no stage: every selector pair must match


def test_a_stage_naming_an_unknown_cluster_is_refused() -> None:
    with pytest.raises(PermanentError) as err:
        stage_members([StageSpec("dev", clusters=("aks-dev-1", "aks-typo"))], LABELS)
    text = str(err.value)
    assert "`dev`" in text and "`aks-typo`" in text and "aks-prod-2" in text


def test_stage_spec_keeps_its_own_copy_of_the_selector() -> None:
    selector = {"env": "dev"}
    spec = StageSpec("dev", selector=selector)
    selector["env"] = "prod"
    assert spec.selector == {"env": "dev"}
    assert spec in {spec}  # hashable, though it holds a mapping


# ------------------------------------------------------------------ proposal


def test_proposal_is_the_n_minus_1_default_not_the_newest() -> None:
    revision, why = propose_revision([cluster("a")], {}, TODAY)
    assert revision == "asm-1-21"
    assert "asm-1-22 is newest in westus2 but AKS installs n-1 by default" in why
    assert "westus2" in why


def test_proposal_is_offered_in_every_region_and_no_newer_than_any_default() -> None:
    # eastus defaults to asm-1-22, westus2 to asm-1-21: the older default caps the proposal
    facts = [cluster("a"), cluster("b", "asm-1-21", location="eastus", region=EASTUS)]
    revision, why = propose_revision(facts, {}, TODAY)
    assert revision == "asm-1-21"
    assert "eastus, westus2" in why
    # a region without asm-1-21: the newest revision under the cap offered everywhere is 1-20
    no_21 = tuple(p for p in WESTUS2 if p.revision != "asm-1-21") + EASTUS[2:]
    facts = [cluster("a"), cluster("b", location="northeurope", region=no_21)]
    revision, why = propose_revision(facts, {}, TODAY)
    assert revision == "asm-1-20"
    assert "asm-1-21 is not offered in northeurope" in why


def test_proposal_leaves_out_deprecated_and_nearly_unsupported_revisions() -> None:
    facts = [cluster("a")]
    assert propose_revision(facts, {"asm-1-21": None}, TODAY)[0] == "asm-1-20"
    near = TODAY + NEAR_END_OF_SUPPORT
    revision, why = propose_revision(facts, {"asm-1-21": near}, TODAY)
    assert revision == "asm-1-20"
    assert f"asm-1-21 ends support {near.isoformat()}" in why
    later = near + timedelta(days=1)
    assert propose_revision(facts, {"asm-1-21": later}, TODAY)[0] == "asm-1-21"


def test_no_candidate_is_an_error_saying_what_was_left_out() -> None:
    with pytest.raises(PermanentError) as err:
        propose_revision([cluster("a")], {"asm-1-21": None, "asm-1-20": date(2026, 12, 1)},
                         TODAY)
    text = str(err.value)
    assert "asm-1-21 is deprecated" in text
    assert "asm-1-20 ended support 2026-12-01" in text
    assert "asm-1-22 is newest in westus2" in text


def test_unreadable_clusters_are_ignored_and_none_readable_is_an_error() -> None:
    unreadable = ClusterFacts(name="x", location="brazilsouth", labels={}, mesh=None,
                              error="403 AuthorizationFailed")
    assert propose_revision([unreadable, cluster("a")], {}, TODAY)[0] == "asm-1-21"
    with pytest.raises(PermanentError, match="No cluster's mesh could be read"):
        propose_revision([unreadable], {}, TODAY)


# ------------------------------------------------------------------ hop paths


def test_hop_paths() -> None:
    assert hop_path("asm-1-21", "asm-1-22", ["asm-1-22"], WESTUS2) == ["asm-1-22"]
    assert hop_path("asm-1-20", "asm-1-22", ["asm-1-21"], WESTUS2) == ["asm-1-21", "asm-1-22"]
    assert hop_path("asm-1-22", "asm-1-22", [], WESTUS2) == []
    assert hop_path("asm-1-22", "asm-1-20", [], WESTUS2) is None  # older: no path
    # the first hop is only what the cluster's meshUpgradeProfiles offers
    assert hop_path("asm-1-20", "asm-1-22", [], WESTUS2) is None
    assert hop_path("asm-1-21", "asm-1-23", ["asm-1-22"], EASTUS) == ["asm-1-22", "asm-1-23"]


def test_plan_statuses_for_a_path_current_and_newer_clusters() -> None:
    facts = [cluster("two-hops", "asm-1-20"), cluster("on-target", "asm-1-21"),
             cluster("newer", "asm-1-22")]
    plan = plan_campaign(facts, [StageSpec("all", clusters=("two-hops", "on-target", "newer"))],
                         "asm-1-22", {}, NOW)
    by = {p.cluster: p for p in plan.stages[0].clusters}
    assert by["two-hops"].status == "upgrade"
    assert by["two-hops"].hops == ("asm-1-21", "asm-1-22")
    assert by["two-hops"].current == "asm-1-20"
    assert by["on-target"].hops == ("asm-1-22",)
    assert by["newer"].status == "current" and "already on asm-1-22" in by["newer"].reason
    plan = plan_campaign(facts, [], "asm-1-21", {}, NOW)
    by = {p.cluster: p for p in plan.unstaged}
    assert by["newer"].status == "current" and "newer than asm-1-21" in by["newer"].reason
    assert by["two-hops"].status == "upgrade" and by["two-hops"].stage is None
    assert plan.to_upgrade == []  # unstaged clusters are never upgraded


def test_blocked_by_kubernetes_on_an_intermediate_hop_names_the_versions_that_would_do() -> None:
    # asm-1-20 and asm-1-22 aside, asm-1-21 does not support 1.25
    plan = plan_campaign([cluster("old-k8s", "asm-1-20", k8s="1.25.11")], [], "asm-1-22", {},
                         NOW)
    p = plan.unstaged[0]
    assert p.status == "blocked" and p.hops == ()
    assert p.reason == ("asm-1-21 supports Kubernetes 1.26, 1.27, 1.28, 1.29, 1.30 (this "
                        "cluster runs 1.25): upgrade Kubernetes to one of those first")


def test_no_path_because_of_kubernetes_says_so_with_the_versions_that_would_do() -> None:
    # meshUpgradeProfiles of a cluster leaves out upgrades its Kubernetes cannot run: the
    # reason is the Kubernetes version, not a missing path
    plan = plan_campaign([cluster("old-k8s", "asm-1-21", k8s="1.26.3", upgrades=())], [],
                         "asm-1-22", {}, NOW)
    p = plan.unstaged[0]
    assert p.status == "blocked"
    assert p.reason == ("asm-1-22 supports Kubernetes 1.27, 1.28, 1.29, 1.30 (this cluster "
                        "runs 1.26): upgrade Kubernetes to one of those first")


def test_blocked_when_no_path_or_the_target_is_not_offered_in_the_region() -> None:
    stuck = cluster("stuck", "asm-1-20", upgrades=())
    plan = plan_campaign([stuck, cluster("east", "asm-1-22", location="eastus",
                                         region=EASTUS)], [], "asm-1-22", {}, NOW)
    assert plan.unstaged[0].status == "blocked"
    assert plan.unstaged[0].reason == ("no upgrade path from asm-1-20 to asm-1-22: its "
                                       "meshUpgradeProfiles offers nothing")
    plan = plan_campaign([cluster("west", "asm-1-21")], [], "asm-1-23", {}, NOW)
    assert plan.unstaged[0].status == "blocked"
    assert plan.unstaged[0].reason == "asm-1-23 is not offered in westus2 yet"


def test_busy_no_mesh_and_unreachable() -> None:
    busy = ClusterFacts("busy", "westus2", {}, MeshState("Istio", ["asm-1-21", "asm-1-20"],
                                                         "Succeeded", "1.28.9"),
                        profiles=WESTUS2)
    updating = ClusterFacts("updating", "westus2", {}, MeshState("Istio", ["asm-1-20"],
                                                                 "Updating", "1.28.9"),
                            upgrades=("asm-1-21",), profiles=WESTUS2)
    off = cluster("off", None)
    gone = ClusterFacts("gone", "westus2", {}, None, error="ResourceNotFound: cluster deleted")
    plan = plan_campaign([busy, updating, off, gone], [], "asm-1-21", {}, NOW)
    by = {p.cluster: p for p in plan.unstaged}
    assert by["busy"].status == "busy" and by["busy"].current == "asm-1-20"
    assert "asm-1-21, asm-1-20 are both installed" in by["busy"].reason
    assert "roll it back" in by["busy"].reason
    assert by["updating"].status == "busy" and "Updating" in by["updating"].reason
    assert by["off"].status == "no mesh" and by["off"].current is None
    assert by["gone"].status == "unreachable"
    assert by["gone"].reason == "ResourceNotFound: cluster deleted"
    assert {p.status for p in plan.unstaged} <= set(STATUSES)


def test_a_badly_shaped_revision_is_refused() -> None:
    with pytest.raises(InvalidRevision, match="asm-1-26"):
        plan_campaign([cluster("a")], [], "1.26", {}, NOW)


def test_asked_revision_and_proposed_one_explain_themselves() -> None:
    plan = plan_campaign([cluster("a")], [], "asm-1-21", {"asm-1-21": date(2027, 1, 10)}, NOW)
    assert plan.why == "asm-1-21 was asked for (note: asm-1-21 ends support 2027-01-10)."
    plan = plan_campaign([cluster("a")], [], None, {}, NOW)
    assert plan.revision == "asm-1-21" and "n-1" in plan.why


# ------------------------------------------------------------------ windows


def test_window_next_occurrence_and_in_window_now() -> None:
    facts = [cluster("w", window=sunday_window(),
                     window_source="AKS aksManagedAutoUpgradeSchedule")]
    plan = plan_campaign(facts, [StageSpec("dev", clusters=("w",))], "asm-1-21", {}, NOW)
    p = plan.to_upgrade[0]
    # Thursday 2026-12-03 22:00: the next Sunday 01:00 is 2026-12-06, 2 d 3 h later
    assert p.window == (utc(2026, 12, 6, 1), utc(2026, 12, 6, 5))
    assert p.window_note == ("AKS aksManagedAutoUpgradeSchedule: every Sunday at 01:00 "
                             "(UTC+00:00) for 4 h")
    text = plan_text(plan, NOW)
    assert ("• `w` asm-1-20 → asm-1-21, window opens 2026-12-06 01:00Z (in 2 d 3 h) — AKS "
            "aksManagedAutoUpgradeSchedule: every Sunday at 01:00 (UTC+00:00) for 4 h") in text
    inside = utc(2026, 12, 6, 2, 30)
    plan = plan_campaign(facts, [StageSpec("dev", clusters=("w",))], "asm-1-21", {}, inside)
    assert plan.to_upgrade[0].window == (utc(2026, 12, 6, 1), utc(2026, 12, 6, 5))
    assert "in window now until 2026-12-06 05:00Z (2 h 30 m left)" in plan_text(plan, inside)


def test_no_window_is_any_time_and_a_window_that_never_opens_blocks() -> None:
    never = sunday_window(not_allowed_dates=[{"start": "2026-01-01", "end": "2033-12-31"}])
    facts = [cluster("free"), cluster("never", window=never, window_source="fleet file"),
             cluster("off", None, window=never, window_source="fleet file")]
    plan = plan_campaign(facts, [StageSpec("all", selector={"all": "yes"})], "asm-1-21", {},
                         NOW)
    by = {p.cluster: p for p in plan.unstaged}
    assert by["free"].window is None and by["free"].status == "upgrade"
    assert by["never"].status == "blocked" and by["never"].window is None
    assert by["never"].window_note.startswith("fleet file: the maintenance window")
    assert "no occurrence" in by["never"].window_note
    assert by["off"].status == "no mesh"  # other statuses stay as computed
    plan = plan_campaign(facts[:1], [StageSpec("s", clusters=("free",))], "asm-1-21", {}, NOW)
    assert "• `free` asm-1-20 → asm-1-21, any time (no maintenance window)" in plan_text(
        plan, NOW)


# ------------------------------------------------------------------ order and text


def test_to_upgrade_follows_the_stages_not_the_fleet_order() -> None:
    facts = [cluster("prod-1", labels={"env": "prod"}), cluster("dev-1", labels={"env": "dev"}),
             cluster("prod-2", labels={"env": "prod"}), cluster("dev-2", labels={"env": "dev"})]
    stages = [StageSpec("dev", selector={"env": "dev"}),
              StageSpec("prod", selector={"env": "prod"})]
    plan = plan_campaign(facts, stages, "asm-1-21", {}, NOW)
    assert [p.cluster for p in plan.to_upgrade] == ["dev-1", "dev-2", "prod-1", "prod-2"]
    assert [p.stage for p in plan.to_upgrade] == ["dev", "dev", "prod", "prod"]


def test_plan_text_key_lines() -> None:
    facts = [cluster("aks-dev-1", labels={"env": "dev"}),
             cluster("aks-dev-2", "asm-1-20", k8s="1.25.3", labels={"env": "dev"}),
             cluster("aks-prod-1", "asm-1-21", labels={"env": "prod"}),
             cluster("aks-lab")]
    stages = [StageSpec("dev", selector={"env": "dev"}, approval=True, soak_s=1800),
              StageSpec("prod", selector={"env": "prod"}, max_concurrency=2, max_failures=1)]
    plan = plan_campaign(facts, stages, "asm-1-22", {}, NOW)
    lines = plan_text(plan, NOW).splitlines()
    assert lines[0] == ("*Fleet campaign plan (dry run, nothing changed)*: → asm-1-22 — "
                        "asm-1-22 was asked for.")
    assert ("*Stage dev* (2 clusters, 1 at a time, halt after 1 failure, approval first, "
            "soak 30m)") in lines
    assert "*Stage prod* (1 cluster, 2 at a time, halt after 2 failures, no approval)" in lines
    assert any(line.startswith("• :no_entry: `aks-dev-2` (asm-1-20) blocked: asm-1-21 "
                               "supports Kubernetes") for line in lines)
    assert lines.index("*Not in any stage* (listed, never upgraded)") < len(lines) - 2
    assert "`aks-lab` asm-1-20 → asm-1-21 → asm-1-22 possible, but not in any stage" in (
        lines[-2])
    assert lines[-1] == ("2 clusters to upgrade (3 hops), 1 blocked, 0 current, 0 unreachable, "
                         "1 not in any stage")


def test_plan_text_stays_under_slack_limit_for_80_clusters() -> None:
    facts = [cluster(f"aks-{env}-{i:02d}", labels={"env": env}, window=sunday_window(),
                     window_source="AKS aksManagedAutoUpgradeSchedule")
             for env in ("dev", "prod") for i in range(40)]
    # one cluster late in the dev ring needs a person: clipping keeps it in view
    facts[35] = cluster("aks-dev-35", k8s="1.25.3", labels={"env": "dev"})
    stages = [StageSpec("dev", selector={"env": "dev"}),
              StageSpec("prod", selector={"env": "prod"})]
    plan = plan_campaign(facts, stages, None, {}, NOW)
    assert len(plan.to_upgrade) == 79
    text = plan_text(plan, NOW)
    assert len(text) < 3_900
    assert text.count("more clusters)") == 2
    assert "*Stage prod* (40 clusters" in text
    assert "• :no_entry: `aks-dev-35` (asm-1-20) blocked: asm-1-21 supports" in text
    assert text.splitlines()[-1] == ("79 clusters to upgrade (79 hops), 1 blocked, 0 current, "
                                     "0 unreachable")
    shown = sum(line.startswith("• `aks-dev-") for line in text.splitlines())
    assert 0 < shown < 39 and f"… ({39 - shown} more clusters)" in text


def test_campaign_plan_is_a_value() -> None:
    plan = plan_campaign([cluster("a")], [], "asm-1-21", {}, NOW)
    assert isinstance(plan, CampaignPlan)
    with pytest.raises(AttributeError):
        plan.revision = "asm-1-22"  # type: ignore[misc]
