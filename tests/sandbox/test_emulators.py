"""The sandbox's Slack emulator, traffic simulator and selectors on their own."""

from __future__ import annotations

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
