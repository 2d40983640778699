"""The sandbox's Slack enforces Slack's published rate limits
(https://docs.slack.dev/apis/web-api/rate-limits) as Slack answers them: HTTP 429,
``{"ok": false, "error": "ratelimited"}`` and ``Retry-After`` in seconds, the call not made.
The emulator's clock is the test's, so no test waits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.http import serve
from sandbox.slack import SlackEmulator
from tests.conftest import free_port_base
from workers.slack.client import make_client
from workers.slack.errors import SlackRateLimited, translate_slack_error


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Slack:
    """An emulator with channels C1 and C2 on a local port, its clock in the test's hand."""

    def __init__(self, **limits: Any) -> None:
        self.clock = Clock()
        self.port = free_port_base(16000, 17000)
        self.emu = SlackEmulator("xoxb-test", {"C1": "one", "C2": "two"}, {"U1": "ana"},
                                 base_url=f"http://127.0.0.1:{self.port}", clock=self.clock,
                                 **limits)
        self.server = serve(self.emu.router(), "slack", "127.0.0.1", self.port)

    def call(self, method: str, **args: str) -> requests.Response:
        return requests.post(f"http://127.0.0.1:{self.port}/api/{method}", data=args,
                             headers={"Authorization": "Bearer xoxb-test"}, timeout=10)

    def post(self, channel: str, text: str = "hi", **args: str) -> requests.Response:
        return self.call("chat.postMessage", channel=channel, text=text, **args)


@pytest.fixture
def slack() -> Iterator[Slack]:
    s = Slack()  # Slack's published numbers, the emulator's defaults
    yield s
    s.server.shutdown()


def assert_ratelimited(resp: requests.Response, retry_after: int) -> None:
    assert resp.status_code == 429
    assert resp.json() == {"ok": False, "error": "ratelimited"}
    assert resp.headers["Retry-After"] == str(retry_after)


def test_a_channel_takes_one_post_a_second_after_a_short_burst(slack: Slack) -> None:
    for i in range(3):  # the burst
        assert slack.post("C1", f"line {i}").json()["ok"]
    assert_ratelimited(slack.post("C1", "one too many"), 1)
    # a thread reply is a post into the channel too
    root_ts = [e for e in slack.emu.log if e["kind"] == "post"][0]["ts"]
    assert_ratelimited(slack.post("C1", "reply", thread_ts=root_ts), 1)
    assert slack.post("C2", "another channel").json()["ok"]  # per channel
    posted = [e["text"] for e in slack.emu.log if e["kind"] == "post"]
    assert posted == ["line 0", "line 1", "line 2", "another channel"]  # 429s post nothing
    slack.clock.now += 1.0
    assert slack.post("C1", "a second later").json()["ok"]
    assert_ratelimited(slack.post("C1", "and at once again"), 1)
    assert [t["method"] for t in slack.emu.throttled] == ["chat.postMessage"] * 3


def test_chat_update_is_tier_3_fifty_a_minute_for_the_workspace(slack: Slack) -> None:
    ts = slack.post("C1", "root").json()["ts"]
    for i in range(50):
        slack.clock.now += 0.5
        assert slack.call("chat.update", channel="C1", ts=ts, text=f"v{i}").json()["ok"]
    # the first update was made 24.5 s ago: its slot frees in 35.5 s, whole seconds up
    assert_ratelimited(slack.call("chat.update", channel="C1", ts=ts, text="v50"), 36)
    other = slack.post("C2", "root").json()["ts"]  # the limit is the workspace's
    assert_ratelimited(slack.call("chat.update", channel="C2", ts=other, text="x"), 36)
    assert slack.emu.messages[("C1", ts)]["text"] == "v49"
    slack.clock.now += 35.5
    assert slack.call("chat.update", channel="C1", ts=ts, text="v50").json()["ok"]


def test_other_tiers_and_configurable_numbers() -> None:
    s = Slack(per_minute={"chat.update": 2, "conversations.replies": 1},
              channel_burst=1, channel_posts_per_s=0.1)
    try:
        ts = s.post("C1").json()["ts"]
        assert_ratelimited(s.post("C1"), 10)  # one post each 10 s, no burst
        for _ in range(2):
            assert s.call("chat.update", channel="C1", ts=ts, text="x").json()["ok"]
        assert_ratelimited(s.call("chat.update", channel="C1", ts=ts, text="x"), 60)
        assert s.call("conversations.replies", channel="C1", ts=ts).json()["ok"]
        assert_ratelimited(s.call("conversations.replies", channel="C1", ts=ts), 60)
    finally:
        s.server.shutdown()
    off = Slack(enforce_limits=False)
    try:
        assert all(off.post("C1").json()["ok"] for _ in range(10))
        assert off.emu.throttled == []
    finally:
        off.server.shutdown()


def test_usergroups_users_list_is_tier_2(slack: Slack) -> None:
    slack.emu.usergroups["S1"] = ["U1"]
    for _ in range(20):
        assert slack.call("usergroups.users.list", usergroup="S1").json()["ok"]
    assert_ratelimited(slack.call("usergroups.users.list", usergroup="S1"), 60)


def test_slack_sdk_reads_the_429_as_slack_sends_it(slack: Slack) -> None:
    client = make_client("xoxb-test", f"http://127.0.0.1:{slack.port}/api/",
                         rate_limit_wait_s=0)
    for _ in range(3):
        client.chat_postMessage(channel="C1", text="x")
    from slack_sdk.errors import SlackApiError

    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel="C1", text="x")
    error = translate_slack_error(caught.value, "chat.postMessage")
    assert isinstance(error, SlackRateLimited) and error.delay_s == 1.0
    assert slack.emu.calls.count("chat.postMessage") == 4  # not retried: no sleep


def test_the_429s_are_listed_for_benchmarks(slack: Slack) -> None:
    for _ in range(4):
        slack.post("C1")
    listed = requests.get(f"http://127.0.0.1:{slack.port}/_sandbox/slack/throttled",
                          timeout=10).json()
    assert listed["count"] == 1
    assert listed["entries"][0]["method"] == "chat.postMessage"
    assert listed["entries"][0]["channel"] == "C1"


def test_a_refused_post_is_not_counted_against_the_channel(slack: Slack) -> None:
    for _ in range(3):  # invalid_blocks: nothing posted
        assert slack.post("C1", blocks='[{"type": "nope"}]').json()["error"] == "invalid_blocks"
    for _ in range(3):
        assert slack.post("C1").json()["ok"]
    assert_ratelimited(slack.post("C1"), 1)
