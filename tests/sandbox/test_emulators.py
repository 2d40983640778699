"""The sandbox's Slack emulator, traffic simulator and selectors on their own."""

from __future__ import annotations

import time

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox.app import Sandbox
from sandbox.kube import matches, parse_selector
from sandbox.traffic import BUCKETS, TrafficSimulator
from sandbox.world import Fault, World, merge_patch
from sandbox.worldfile import DEFAULT_WORLD, load_documents


def test_slack_emulator_checks_tokens_channels_and_block_kit(sandbox: Sandbox) -> None:
    api = sandbox.url["slack"] + "/api/"
    with pytest.raises(SlackApiError, match="invalid_auth"):
        WebClient(token="xoxb-wrong", base_url=api).chat_postMessage(channel="C0DEVMESH",
                                                                     text="hi")
    client = WebClient(token=sandbox.bot_token, base_url=api)
    with pytest.raises(SlackApiError, match="channel_not_found"):
        client.chat_postMessage(channel="C0NOPE", text="hi")
    with pytest.raises(SlackApiError, match="invalid_blocks"):
        client.chat_postMessage(channel="C0DEVMESH", text="x",
                                blocks=[{"type": "section", "text": {"type": "mrkdwn",
                                                                     "text": "y" * 3001}}])
    with pytest.raises(SlackApiError, match="invalid_blocks"):
        client.chat_postMessage(channel="C0DEVMESH", text="x",
                                blocks=[{"type": "divider"}] * 51)
    posted = client.chat_postMessage(channel="C0DEVMESH", text="root")
    client.chat_postMessage(channel="C0DEVMESH", text="reply", thread_ts=posted["ts"])
    client.chat_update(channel="C0DEVMESH", ts=posted["ts"], text="root, edited")
    thread = client.conversations_replies(channel="C0DEVMESH", ts=posted["ts"])["messages"]
    assert [m["text"] for m in thread] == ["root, edited", "reply"]
    with pytest.raises(SlackApiError, match="message_not_found"):
        client.chat_update(channel="C0DEVMESH", ts="1.000000", text="nope")


def test_traffic_follows_pods_revisions_and_faults() -> None:
    world = World(rollout_s=0)
    c = world.add_cluster("c1", subscription="s", resource_group="rg", location="westus2",
                          kubernetes_version="1.31.2", revisions=["asm-1-25"])
    world.ensure_namespace(c, "shop", {"istio.io/rev": "asm-1-25"})
    world.seeding = True
    for doc in load_documents(DEFAULT_WORLD.parent / "bookinfo.yaml", "bookinfo"):
        if doc.body:
            world.create("c1", doc.body, "shop")
    world.faults[("c1", "shop", "asm-1-25")] = Fault(error_rate=0.25, latency_ms=200)
    sim = TrafficSimulator(world)
    sim.advance(sim.last + 10)  # ten seconds of traffic
    rows = [(labels, row) for t in sim.targets.values() for labels, row in t.requests.items()
            if 'reporter="destination"' in labels]
    ok = sum(row[0] for labels, row in rows if 'response_code="200"' in labels)
    bad = sum(row[0] for labels, row in rows if 'response_code="503"' in labels)
    assert ok + bad == pytest.approx(6 * world.rps_per_pod * 10)  # six Bookinfo pods
    assert bad / (ok + bad) == pytest.approx(0.25)
    assert len(sim.targets) == 6  # a scrape target per proxy
    text = sim.render()
    assert 'istio_requests_total{cluster="c1",job="workload",instance="10.244.' in text
    assert text.count("istio_build{") == 6 and len(BUCKETS) == 19
    for _, row in rows:
        assert all(c >= 0 for c in row[2:])  # bucket increments: cumulative when rendered


def test_label_selectors_and_merge_patch() -> None:
    labels = {"app": "x", "istio.io/rev": "asm-1-25"}
    assert matches(labels, parse_selector("app=x,istio.io/rev in (asm-1-25,asm-1-26)"))
    assert not matches(labels, parse_selector("app!=x"))
    assert matches(labels, parse_selector("!missing,app"))
    assert not matches(labels, parse_selector("istio.io/rev notin (asm-1-25)"))
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {
        "a": {"c": 2, "d": 3}}


def test_a_rolling_update_replaces_pods_max_surge_at_a_time() -> None:
    """The Deployment controller's ``rolloutRolling``: two replicas and the default 25 %
    (maxSurge rounds up to 1, maxUnavailable down to 0) make one new pod at a time and
    take an old one away only once a new one is ready, so the rollout takes two pod
    start-ups, as ``kubectl describe deployment`` shows on a real cluster."""
    world = World(rollout_s=1.0)
    c = world.add_cluster("c1", subscription="s", resource_group="rg", location="westus2",
                          kubernetes_version="1.31.2", revisions=["asm-1-25"])
    world.ensure_namespace(c, "shop", {})
    world.seeding = True
    world.create("c1", {"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web"},
                        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                                 "template": {"metadata": {"labels": {"app": "web"}},
                                              "spec": {"containers": [{"name": "web",
                                                                       "image": "nginx"}]}}}},
                 "shop")
    world.reconcile()
    world.seeding = False
    t0 = time.time()
    world.patch("c1", "Deployment", "shop", "web", {"spec": {"template": {"metadata": {
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-04T12:00:00Z"}}}}})
    key = ("Deployment", "shop", "web")

    def state() -> tuple[list[int], int, bool]:
        d = c.objects[key]
        sets = sorted(world.owned(c, d, "ReplicaSet"), key=lambda rs: int(
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))
        pods = [p for rs in sets for p in world.owned(c, rs, "Pod")
                if "deletionTimestamp" not in p["metadata"]]
        status = d["status"]
        done = status.get("updatedReplicas") == 2 and status.get("readyReplicas") == 2 \
            and status.get("replicas") == 2
        return [rs["spec"]["replicas"] for rs in sets], len(pods), done

    world.reconcile(t0 + 0.1)
    assert state() == ([2, 1], 3, False)  # one surge pod beside the two old ones
    world.reconcile(t0 + 1.2)  # the first new pod is ready: one old goes, the second new comes
    assert state() == ([1, 2], 3, False)
    world.reconcile(t0 + 2.4)
    assert state() == ([0, 2], 2, True)
    scaled = [world.get("c1", "Event", k[1], k[2])["message"] for k in c.event_keys
              if world.get("c1", "Event", k[1], k[2])["reason"] == "ScalingReplicaSet"]
    assert [m.split(" replica set ")[0] + " " + m.rsplit(" from ", 1)[1] for m in scaled] == [
        "Scaled up 0 to 1", "Scaled down 2 to 1", "Scaled up 1 to 2", "Scaled down 1 to 0"]
