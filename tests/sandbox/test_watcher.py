"""The release watcher against the sandbox's GitHub feed, ARM and Slack emulators, with a
real Redis: conditional polling, faults, routing per cluster, restarts without duplicates."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import redis
import requests

from sandbox.app import Sandbox
from tests.conftest import REDIS_URL
from workers.github.feed import ReleaseFeed
from workers.slack.client import make_client
from workers.watcher import Watcher, pushed_events, verify_push
from workers.wiring import FleetPorts
from workflows.errors import ClusterBusy, TemporaryError
from workflows.kind import StartRun
from workflows.maintenance import parse_config_window
from workflows.model import POLICY_REQUESTER, Run

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


def test_notices_slack_could_not_take_go_out_at_the_next_poll_though_the_feed_says_304(  # type: ignore[no-untyped-def]
        world) -> None:
    """The feed's ETag is remembered as a poll reads it, so the next poll is answered 304:
    the events a poll could not post (Slack down) are kept and posted then, once each."""
    sb, make, r = world
    make().run_once()  # the first poll only learns
    publish(sb, NOTE)
    sb.slack.outage_until = time.time() + 60
    try:
        with pytest.raises(TemporaryError):
            make().run_once()
    finally:
        sb.slack.outage_until = 0.0
    assert not posts(sb)
    assert make().feed.poll() == []  # the feed has nothing new for the next poll
    new, channels = make().run_once()
    assert [e.revision for e in new] == ["asm-1-26"]
    assert channels == {"C0DEVMESH", "C0STGMESH", "C0PRDMESH"}
    made = posts(sb)
    assert {p["channel"] for p in made} == channels
    assert all("asm-1-26*" in p["text"] for p in made)
    assert make().run_once() == ([], set())  # and never again
    assert len(posts(sb)) == len(made)


class Killed(BaseException):
    """The worker process dying (not an Exception: nothing may catch it)."""


def test_a_notice_posted_just_before_a_kill_is_not_posted_again(  # type: ignore[no-untyped-def]
        world, ports: FleetPorts, prefix: str) -> None:
    """The post's record is lost with the worker; the next poll finds the notice in the
    channel by its message metadata instead of posting it again."""
    sb, make, r = world
    make().run_once()  # the first poll only learns
    publish(sb, NOTE)
    rel = ports.fleet.releases

    class Dying(Watcher):
        def _record_posted(self, posted_key: str) -> None:
            raise Killed(posted_key)

    dying = Dying(ports.fleet, r, prefix, ports.mesh,
                  make_client(sb.bot_token, ports.fleet.slack.api_url),
                  ReleaseFeed(r, prefix, rel.feed_url, rel.changelog_url))
    with pytest.raises(Killed):
        dying.run_once()
    (first,) = posts(sb)
    assert first["metadata"]["event_type"] == "meshops_notice"
    make().run_once()  # the next worker: the feed says 304, the event was kept
    made = posts(sb)
    assert {p["channel"] for p in made} == {"C0DEVMESH", "C0STGMESH", "C0PRDMESH"}
    assert len(made) == 3, [p["channel"] for p in made]  # the first one not again
    assert not r.hgetall(f"{prefix}:releases:notice_pending")
    assert not r.hgetall(f"{prefix}:releases:unposted")


def test_a_first_poll_killed_after_reading_the_feed_posts_no_history_later(  # type: ignore[no-untyped-def]
        world, ports: FleetPorts, prefix: str) -> None:
    """The first poll only learns what exists; killed after the feed's answer (its ETag
    stored), the next first poll is answered 304, and a later release must still not bring
    the history with it."""
    sb, make, r = world
    publish(sb, "* Istio add-on revision asm-1-25 is patched to 1.25.9.", "2026-11-01")
    rel = ports.fleet.releases

    class Dying(Watcher):
        def arm_events(self, today: str, keep: object = None) -> list:  # type: ignore[override]
            raise Killed("after the feed's answer")

    dying = Dying(ports.fleet, r, prefix, ports.mesh,
                  make_client(sb.bot_token, ports.fleet.slack.api_url),
                  ReleaseFeed(r, prefix, rel.feed_url, rel.changelog_url))
    with pytest.raises(Killed):
        dying.run_once()
    assert make().run_once() == ([], set())  # the first poll again: 304, nothing to learn
    publish(sb, NOTE)
    new, _ = make().run_once()
    assert [e.revision for e in new] == ["asm-1-26"]
    assert posts(sb) and not [p for p in posts(sb) if "1.25.9" in p["text"]]


def test_a_push_kept_before_the_first_poll_is_told_after_it(  # type: ignore[no-untyped-def]
        world) -> None:
    """The first poll only learns history, but not what a push kept meanwhile (a push that
    found Slack down, or another worker polling)."""
    from workers.watcher import event_key
    from workflows.releases import ReleaseEvent

    sb, make, r = world
    publish(sb, NOTE)
    pushed = ReleaseEvent("2026-11-20", "available", "asm-1-26")
    make().keep([(event_key(pushed), pushed)])
    assert make().run_once() == ([], set())  # the first poll: learns, posts nothing
    new, channels = make().run_once()
    assert new == [pushed] and channels == {"C0DEVMESH", "C0STGMESH", "C0PRDMESH"}


def test_events_are_kept_before_the_feed_is_told_they_were_read(  # type: ignore[no-untyped-def]
        world) -> None:
    """A poll killed between reading the feed and keeping its events must not have stored
    the feed's ETag: the next poll reads them again (not a 304)."""
    sb, make, _ = world
    w = make()
    publish(sb, NOTE)

    def killed(events: object) -> None:
        raise Killed("keeping")

    with pytest.raises(Killed):
        w.feed.poll(keep=killed)
    assert [e.revision for e in w.feed.poll()] == ["asm-1-26"]  # read again, then 304
    assert w.feed.poll() == []


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


# ------------------------------------------------------------------ policy upgrades (auto)

PATCH = "* Istio add-on revision asm-1-25 is patched to 1.25.9."
#: 03:00–07:00 UTC every day
DAILY_3AM = {"schedule": {"daily": {"interval_days": 1}}, "duration_hours": 4,
             "start_time": "03:00", "start_date": "2026-11-01"}
NOON = datetime(2026, 12, 3, 12, 0, tzinfo=UTC).timestamp()  # outside the window
FOUR_AM = datetime(2026, 12, 4, 4, 0, tzinfo=UTC).timestamp()  # inside the next one


class Starts:
    """The watcher's ``start_run`` (the worker's engine in production), recording each
    request; ``busy`` clusters refuse as a run holding the cluster's lease would."""

    def __init__(self) -> None:
        self.requests: list[tuple[StartRun, str]] = []
        self.busy: set[str] = set()

    def __call__(self, request: StartRun, channel: str) -> Run:
        if request.cluster in self.busy:
            raise ClusterBusy(request.cluster, "r-0ther00000")
        self.requests.append((request, channel))
        return Run(id=f"r-{len(self.requests):010x}", kind=request.kind,
                   cluster=request.cluster, requester=POLICY_REQUESTER, channel=channel,
                   canary_revision=request.revision, created_at=0.0, updated_at=0.0)

    def made(self) -> list[tuple[str, str, str, dict, str]]:
        return [(q.kind, q.cluster, q.revision, q.fields, ch) for q, ch in self.requests]


def policy_fleet(fleet, campaigns: bool = False, **auto: object):  # type: ignore[no-untyped-def]
    """``fleet`` with ``auto`` per cluster (``dev="patch"``, or ``(mode, window)``), and
    campaigns (the edge cluster's channel standing in for theirs) if asked."""
    from workers.config import CampaignsConfig, StageConfig

    clusters = dict(fleet.clusters)
    for name, value in auto.items():
        mode, window = value if isinstance(value, tuple) else (value, None)
        clusters[name] = clusters[name].model_copy(update={
            "auto": mode, "maintenance_window": parse_config_window(window) if window
            else None})
    update: dict[str, object] = {"clusters": clusters, "campaigns": None}
    if campaigns:
        update["campaigns"] = CampaignsConfig(channel="C0EDGMESH", approvers=["U0BEN"],
                                              stages=[StageConfig(name="all",
                                                                  clusters=["dev", "prod"])])
    return fleet.model_copy(update=update)


def policy_watcher(sb: Sandbox, fleet, r, prefix: str, ports: FleetPorts,  # type: ignore[no-untyped-def]
                   starts: Starts):
    rel = fleet.releases

    def make() -> Watcher:
        return Watcher(fleet, r, prefix, ports.mesh, make_client(sb.bot_token,
                                                                 fleet.slack.api_url),
                       ReleaseFeed(r, prefix, rel.feed_url, rel.changelog_url),
                       start_run=starts)
    return make


def test_auto_patch_starts_the_rollover_once_and_auto_none_only_offers_it(  # type: ignore[no-untyped-def]
        world, ports: FleetPorts, prefix: str) -> None:
    sb, _, r = world
    starts = Starts()
    make = policy_watcher(sb, policy_fleet(ports.fleet, dev="patch"), r, prefix, ports, starts)
    make().run_once(now=NOON)  # the first poll only learns
    publish(sb, PATCH, "2026-11-22")
    make().run_once(now=NOON)  # dev has no window: any time will do
    assert starts.made() == [("rollover", "dev", "asm-1-25", {"target_version": "1.25.9"},
                              "C0DEVMESH")]
    (dev,) = [p for p in posts(sb) if p["channel"] == "C0DEVMESH" and "1.25.9" in p["text"]]
    assert "meshops started the restart of the workloads as run `r-0000000001`" in dev["text"]
    assert "auto: patch" in dev["text"] and "meshops_rollover" not in str(dev["blocks"])
    offers = [p for p in posts(sb) if "1.25.9" in p["text"] and p["channel"] != "C0DEVMESH"]
    assert {p["channel"] for p in offers} == {"C0STGMESH", "C0PRDMESH"}
    assert all("meshops_rollover" in str(p["blocks"]) and "started" not in p["text"]
               for p in offers)  # auto: none (the default): the button, nothing started
    # a restarted watcher starts nothing twice, even when the patch is pushed again and its
    # memory of events seen and notices posted is lost: the start is recorded in Redis
    make().run_once(now=NOON + 60)
    r.delete(f"{prefix}:releases:seen", f"{prefix}:releases:posted")
    replay = json.dumps({"tag_name": "2026-11-22", "body": PATCH}).encode()
    make().run_once(now=NOON + 120, pushed=pushed_events(replay))
    assert len(starts.requests) == 1
    again = [p for p in posts(sb) if p["channel"] == "C0DEVMESH" and "1.25.9" in p["text"]]
    assert len(again) == 2 and "run `r-0000000001`" in again[-1]["text"]


def test_auto_patch_outside_the_window_waits_and_starts_once_it_opens(  # type: ignore[no-untyped-def]
        world, ports: FleetPorts, prefix: str) -> None:
    sb, _, r = world
    starts = Starts()
    make = policy_watcher(sb, policy_fleet(ports.fleet, dev=("patch", DAILY_3AM)), r, prefix,
                          ports, starts)
    make().run_once(now=NOON)
    publish(sb, PATCH, "2026-11-22")
    make().run_once(now=NOON)
    assert starts.requests == []
    (waiting,) = [p for p in posts(sb) if p["channel"] == "C0DEVMESH"]
    assert "inside the maintenance window (the fleet file's maintenance window" in (
        waiting["text"]) and "it opens 2026-12-04 03:00 UTC" in waiting["text"]
    assert "meshops_rollover" not in str(waiting["blocks"])
    make().run_once(now=NOON + 3600)  # still outside: nothing started, nothing told again
    assert starts.requests == [] and len([p for p in posts(sb)
                                          if p["channel"] == "C0DEVMESH"]) == 1
    starts.busy.add("dev")  # inside, but a person's run holds the cluster: tried again later
    make().run_once(now=FOUR_AM)
    assert starts.requests == []
    starts.busy.clear()
    make().run_once(now=FOUR_AM + 60)
    assert starts.made() == [("rollover", "dev", "asm-1-25", {"target_version": "1.25.9"},
                              "C0DEVMESH")]
    assert "as run `r-0000000001`" in posts(sb)[-1]["text"]
    make().run_once(now=FOUR_AM + 120)
    assert len(starts.requests) == 1


def test_auto_minor_proposes_a_campaign_of_its_clusters_once_per_event(  # type: ignore[no-untyped-def]
        world, ports: FleetPorts, prefix: str) -> None:
    sb, _, r = world
    starts = Starts()
    make = policy_watcher(sb, policy_fleet(ports.fleet, campaigns=True, dev="minor",
                                           staging="patch"), r, prefix, ports, starts)
    make().run_once(now=NOON)
    publish(sb, NOTE)  # asm-1-26, offered in dev's region: a campaign of dev to it
    make().run_once(now=NOON)
    assert starts.made() == [("campaign", "@fleet", "asm-1-26",
                              {"params": {"only": ["dev"]}}, "C0EDGMESH")]
    make().run_once(now=NOON + 60)  # once per event, across restarts and replays
    r.delete(f"{prefix}:releases:seen")
    replay = json.dumps({"tag_name": "2026-11-20", "body": NOTE}).encode()
    make().run_once(now=NOON + 90, pushed=pushed_events(replay))
    assert len(starts.requests) == 1
    publish(sb, "* Istio-based service mesh add-on revision asm-1-25 will no longer be "
                "supported after January 15, 2027.", "2026-11-23")
    make().run_once(now=NOON + 120)  # dev runs it: a campaign to what meshops proposes
    assert starts.made()[1:] == [("campaign", "@fleet", "", {"params": {"only": ["dev"]}},
                                  "C0EDGMESH")]


def test_auto_minor_without_campaigns_starts_nothing(  # type: ignore[no-untyped-def]
        world, ports: FleetPorts, prefix: str) -> None:
    sb, _, r = world
    starts = Starts()
    make = policy_watcher(sb, policy_fleet(ports.fleet, dev="minor"), r, prefix, ports, starts)
    make().run_once(now=NOON)
    publish(sb, NOTE)
    make().run_once(now=NOON)
    assert starts.requests == []
    assert [p for p in posts(sb) if "asm-1-26* is available" in p["text"]]  # notices as ever


def test_auto_minor_waits_until_the_region_offers_the_revision(  # type: ignore[no-untyped-def]
        world, ports: FleetPorts, prefix: str) -> None:
    """A note of a revision ARM does not list yet starts no campaign (it would plan nothing);
    the region listing it does, once for both regions that list it."""
    sb, _, r = world
    starts = Starts()
    make = policy_watcher(sb, policy_fleet(ports.fleet, campaigns=True, dev="minor"), r,
                          prefix, ports, starts)
    held = sb.world.catalog.pop("asm-1-27")
    try:
        make().run_once(now=NOON)
        publish(sb, "* Istio-based service mesh add-on revision asm-1-27 is now available.")
        make().run_once(now=NOON)
        assert starts.requests == []
        sb.world.catalog["asm-1-27"] = held
        new, _ = make().run_once(now=NOON + 60)
        assert [e.revision for e in new] == ["asm-1-27", "asm-1-27"]  # eastus, westus2
        assert starts.made() == [("campaign", "@fleet", "asm-1-27",
                                  {"params": {"only": ["dev"]}}, "C0EDGMESH")]
    finally:
        sb.world.catalog["asm-1-27"] = held


def test_a_policy_start_claimed_by_a_watcher_that_died_is_offered_to_people(  # type: ignore[no-untyped-def]
        world, ports: FleetPorts, prefix: str) -> None:
    """At most once: a claim without a run (the process died between the claim and the
    start) starts nothing; once stale it becomes the ordinary *Restart workloads* offer."""
    from workers.watcher import CLAIM_STALE_S

    sb, _, r = world
    starts = Starts()
    make = policy_watcher(sb, policy_fleet(ports.fleet, dev="patch"), r, prefix, ports, starts)
    make().run_once(now=NOON)
    r.hset(f"{prefix}:releases:auto_rollover", "dev|asm-1-25|1.25.9", f"starting|{NOON}")
    publish(sb, PATCH, "2026-11-22")
    make().run_once(now=NOON + 1)  # a watcher may be starting it right now: nothing
    assert starts.requests == [] and not [p for p in posts(sb) if p["channel"] == "C0DEVMESH"]
    make().run_once(now=NOON + CLAIM_STALE_S + 1)
    assert starts.requests == []
    (offer,) = [p for p in posts(sb) if p["channel"] == "C0DEVMESH"]
    assert "meshops_rollover" in str(offer["blocks"]) and "cannot tell whether it started" in (
        offer["text"])
    make().run_once(now=NOON + CLAIM_STALE_S + 60)  # offered once, then forgotten
    assert len([p for p in posts(sb) if p["channel"] == "C0DEVMESH"]) == 1
    assert not r.hgetall(f"{prefix}:releases:patch_pending")
