"""The release watcher against the sandbox's GitHub feed, ARM and Slack emulators, with a
real Redis: conditional polling, faults, routing per cluster, restarts without duplicates."""

from __future__ import annotations

import time

import pytest
import redis
import requests

from sandbox.app import Sandbox
from tests.conftest import REDIS_URL
from workers.github.feed import ReleaseFeed
from workers.slack.client import make_client
from workers.watcher import Watcher, pushed_events, verify_push
from workers.wiring import FleetPorts

NOTE = "* Features:\n  * Istio-based service mesh add-on revision asm-1-26 is now available."


@pytest.fixture
def world(sandbox: Sandbox, ports: FleetPorts, prefix: str):  # type: ignore[no-untyped-def]
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    sandbox.releases.clear()
    sandbox.github_faults.clear()
    sandbox.slack.log.clear()
    rel = ports.fleet.releases

    def make(**kwargs: object) -> Watcher:
        feed = ReleaseFeed(r, prefix, rel.feed_url, rel.changelog_url)
        return Watcher(ports.fleet, r, prefix, ports.mesh,
                       make_client(sandbox.bot_token, ports.fleet.slack.api_url), feed,
                       **kwargs)  # type: ignore[arg-type]

    yield sandbox, make, r
    keys = list(r.scan_iter(prefix + "*"))
    if keys:
        r.delete(*keys)


def publish(sb: Sandbox, body: str, date: str = "2026-11-20") -> None:
    requests.post(sb.url["control"] + "/_sandbox/releases", json={"date": date, "body": body},
                  timeout=5).raise_for_status()


def posts(sb: Sandbox) -> list[dict]:
    return [e for e in sb.slack.log if e["kind"] == "post"]


def test_conditional_polling_and_faults(world) -> None:  # type: ignore[no-untyped-def]
    sb, make, r = world
    w = make()
    publish(sb, NOTE)
    assert [e.revision for e in w.feed.poll()] == ["asm-1-26"]
    assert w.feed.poll() == []  # 304 Not Modified: one request, nothing parsed
    publish(sb, "* Istio add-on revision asm-1-24 is no longer supported.", "2026-11-21")
    sb.github_faults[:] = ["403"]  # rate limited: the CHANGELOG answers instead
    kinds = {(e.kind, e.revision) for e in w.feed.poll()}
    assert ("deprecated", "asm-1-24") in kinds
    for fault in ("500", "html", "malformed"):
        sb.github_faults[:] = [fault]
        publish(sb, f"* Istio add-on revision asm-1-2{len(fault)} is no longer supported.",
                f"2026-11-2{len(fault)}")
        events = w.feed.poll()  # never raises; falls back to the changelog
        assert ("deprecated", f"asm-1-2{len(fault)}") in {(e.kind, e.revision) for e in events}
    assert make().feed.poll()  # the feed changed since its last good answer: 200, all events
    # validators survive a restart: a new feed object sends If-None-Match and gets a 304
    assert make().feed.poll() == []


def test_routing_and_no_duplicates_across_restarts(world) -> None:  # type: ignore[no-untyped-def]
    sb, make, r = world
    make().run_once()  # the first poll only learns: nothing is posted for history
    assert posts(sb) == []
    publish(sb, NOTE + "\n  * Istio add-on revision asm-1-25 is patched to 1.25.6.\n"
                "  * Istio revision asm-1-24 is no longer supported.")
    new, channels = make().run_once()
    assert {(e.kind, e.revision) for e in new} == {("available", "asm-1-26"),
                                                     ("patched", "asm-1-25"),
                                                     ("deprecated", "asm-1-24")}
    texts = [(p["channel"], p["text"]) for p in posts(sb)]
    # every seed cluster runs asm-1-25: each hears of asm-1-26 and of its patch, none of
    # asm-1-24's deprecation (no cluster runs it)
    assert len([t for c, t in texts if "asm-1-26* is available" in t]) == 3
    assert len([t for c, t in texts if "patched to *1.25.6*" in t]) == 3
    assert not [t for c, t in texts if "asm-1-24" in t]
    assert channels == {"C0DEVMESH", "C0STGMESH", "C0PRDMESH"}
    button = posts(sb)[0]["blocks"][1]["elements"][0]
    assert button["action_id"] == "meshops_plan_upgrade" and button["value"].endswith(
        "|asm-1-26")
    n = len(posts(sb))
    assert make().run_once() == ([], set())  # a restarted watcher posts nothing twice
    assert len(posts(sb)) == n


def test_revision_in_arm_without_a_note_and_note_before_arm(world) -> None:  # type: ignore[no-untyped-def]
    sb, make, r = world
    held = sb.world.catalog.pop("asm-1-27")
    try:
        make().run_once()  # baseline
        publish(sb, "* Istio-based service mesh add-on revision asm-1-27 is now available.")
        make().run_once()
        pending = [p for p in posts(sb) if "asm-1-27" in p["text"]]
        assert len(pending) == 3 and all("not yet offered in" in p["text"] for p in pending)
        assert all(len(p["blocks"]) == 1 for p in pending)  # no button yet
        sb.world.catalog["asm-1-27"] = held  # ARM lists it now, without another note
        new, channels = make().run_once()
        assert [e.revision for e in new] == ["asm-1-27", "asm-1-27"]  # one per region
        ready = [p for p in posts(sb) if "asm-1-27* is available" in p["text"]]
        assert len(ready) == 3 and all(p["blocks"][1]["type"] == "actions" for p in ready)
    finally:
        sb.world.catalog["asm-1-27"] = held


def test_push_signature() -> None:
    body = b'{"tag_name": "2026-11-22", "body": "* Istio revision asm-1-27 is now available."}'
    ts = str(int(time.time()))
    import hashlib
    import hmac
    sig = "v0=" + hmac.new(b"s3cret", f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    assert verify_push("s3cret", body, ts, sig)
    assert not verify_push("other", body, ts, sig)
    assert not verify_push("s3cret", body + b" ", ts, sig)
    assert not verify_push("s3cret", body, str(int(ts) - 301), sig)
    assert not verify_push("s3cret", body, "soon", sig)
    assert [e.revision for e in pushed_events(body)] == ["asm-1-27"]


def test_a_patch_is_offered_once_the_control_plane_runs_it(  # type: ignore[no-untyped-def]
        world, ports: FleetPorts) -> None:
    sb, make, r = world
    w = make(clusters=ports.cluster_api)
    w.run_once()  # the first poll learns the history
    publish(sb, "* Istio add-on revision asm-1-25 is patched to 1.25.9.", "2026-11-22")
    w.run_once()
    told = [p for p in posts(sb) if "1.25.9" in p["text"]]
    assert told, "no patch notice"
    assert all("offers to restart the workloads once istiod-asm-1-25 runs 1.25.9" in p["text"]
               and "meshops_rollover" not in str(p["blocks"]) for p in told)
    w.run_once()  # nothing new, the control plane not there yet: nothing offered
    assert [p for p in posts(sb) if "1.25.9" in p["text"]] == told
    # AKS rolls istiod-asm-1-25 to the patch
    requests.post(sb.url["control"] + "/_sandbox/revisions/asm-1-25/patch",
                  json={"version": "1.25.9"}, timeout=5).raise_for_status()
    clusters = {c for c, cfg in ports.fleet.clusters.items()
                if cfg.channel in {p["channel"] for p in told}}
    deadline = time.time() + 20
    while time.time() < deadline and not all(
            ports.cluster_api(c).control_plane_versions().get("asm-1-25") == "1.25.9"
            for c in clusters):
        time.sleep(0.2)
    w.run_once()
    offers = [p for p in posts(sb) if "1.25.9" in p["text"] and "meshops_rollover" in
              str(p["blocks"])]
    assert {p["channel"] for p in offers} == {p["channel"] for p in told}
    assert all("the control plane of" in p["text"] and "runs it" in p["text"] for p in offers)
    w.run_once()  # offered once
    assert len([p for p in posts(sb) if "meshops_rollover" in str(p["blocks"])]) == len(offers)


def test_the_end_of_support_of_deprecated_revisions_is_kept_from_the_notes(world) -> None:  # type: ignore[no-untyped-def]
    """Campaigns never propose a revision near its end of support: the watcher keeps the
    date from each deprecation it reads, the earliest winning, already in the baseline poll."""
    from datetime import date

    from workers.watcher import end_of_support

    sb, make, r = world
    publish(sb, "* Istio-based service mesh add-on revision asm-1-24 is no longer supported.",
            "2025-10-06")
    publish(sb, "* Istio-based service mesh add-on revision asm-1-25 will no longer be "
                "supported after January 15, 2026.", "2025-11-20")
    publish(sb, "* Istio-based service mesh add-on revision asm-1-25 will no longer be "
                "supported after February 28, 2026.", "2025-12-10")  # a later date: ignored
    watcher = make()
    watcher.run_once()  # the first poll only learns, but keeps the dates
    prefix = watcher.key.removesuffix(":releases")
    ends = end_of_support(r, prefix)
    assert ends["asm-1-24"] == date(2025, 10, 6)
    assert ends["asm-1-25"] == date(2026, 1, 15)
    assert "asm-1-26" not in ends


def test_a_new_revision_offers_a_fleet_campaign_once_in_the_campaigns_channel(  # type: ignore[no-untyped-def]
        world, ports: FleetPorts, prefix: str) -> None:
    from workers.config import CampaignsConfig, StageConfig

    sb, _, r = world
    # the edge cluster's channel stands in for the campaigns' (edge has the mesh off: no
    # notice of its own there)
    fleet = ports.fleet.model_copy(update={"campaigns": CampaignsConfig(
        channel="C0EDGMESH", approvers=["U0BEN"], stages=[StageConfig(name="all",
                                                                      clusters=["dev"])])})
    rel = fleet.releases

    def make() -> Watcher:
        return Watcher(fleet, r, prefix, ports.mesh,
                       make_client(sb.bot_token, fleet.slack.api_url),
                       ReleaseFeed(r, prefix, rel.feed_url, rel.changelog_url))

    make().run_once()  # the first poll only learns
    publish(sb, NOTE)
    make().run_once()
    fleet_posts = [p for p in posts(sb) if p["channel"] == "C0EDGMESH"]
    assert len(fleet_posts) == 1, fleet_posts
    assert "*asm-1-26* is available" in fleet_posts[0]["text"]
    assert "6 clusters in eastus, westus2" in fleet_posts[0]["text"]
    (button,) = fleet_posts[0]["blocks"][1]["elements"]
    assert (button["action_id"], button["value"]) == ("meshops_plan_campaign", "asm-1-26")
    # the cluster channels still get their own notices; a restart posts nothing twice
    assert len([p for p in posts(sb) if "asm-1-26* is available" in p["text"]]) == 4
    make().run_once()
    assert len([p for p in posts(sb) if p["channel"] == "C0EDGMESH"]) == 1
