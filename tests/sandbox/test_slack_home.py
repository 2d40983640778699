"""The sandbox's Slack publishes App Home tabs as Slack's ``views.publish`` does
(https://docs.slack.dev/reference/methods/views.publish), called through the real
``slack_sdk.WebClient``: a known user, a view of type ``home``, at most 100 blocks and
section texts of 3,000 characters; Tier 4 (100 calls a minute). The emulator's clock is the
test's, so no test waits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox.http import serve
from sandbox.slack import SlackEmulator
from tests.conftest import free_port_base
from tests.sandbox.test_slack_limits import Clock

HEADER = {"type": "header", "text": {"type": "plain_text", "text": "Mesh fleet"}}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


@pytest.fixture
def slack() -> Iterator[tuple[SlackEmulator, WebClient, Clock]]:
    clock = Clock()
    port = free_port_base(16000, 17000)
    emu = SlackEmulator("xoxb-test", {"C1": "mesh"}, {"U1": "ana", "U2": "ben"},
                        base_url=f"http://127.0.0.1:{port}", clock=clock)
    server = serve(emu.router(), "slack", "127.0.0.1", port)
    yield emu, WebClient(token="xoxb-test", base_url=emu.base_url + "/api/"), clock
    server.shutdown()


def error_of(call: Any) -> str:
    with pytest.raises(SlackApiError) as caught:
        call()
    return str(caught.value.response["error"])


def test_a_home_view_is_published_kept_per_user_and_logged(slack) -> None:  # type: ignore[no-untyped-def]
    emu, client, _ = slack
    blocks = [HEADER, section("`dev-weu` (westeurope): asm-1-25 supported")]
    resp = client.views_publish(user_id="U1", view={"type": "home", "blocks": blocks})
    view = resp["view"]
    assert resp["ok"] and view["type"] == "home" and view["blocks"] == blocks
    assert view["id"].startswith("V")
    assert emu.homes["U1"]["blocks"] == blocks and "U2" not in emu.homes
    assert [(e["kind"], e["user"], e["blocks"]) for e in emu.log] == [("home", "U1", blocks)]
    # published again: the same view, its blocks replaced
    again = client.views_publish(user_id="U1", view={"type": "home", "blocks": [HEADER]})
    assert again["view"]["id"] == view["id"] and emu.homes["U1"]["blocks"] == [HEADER]


def test_what_slack_refuses(slack) -> None:  # type: ignore[no-untyped-def]
    emu, client, _ = slack
    home = {"type": "home", "blocks": [HEADER]}
    assert error_of(lambda: client.views_publish(user_id="U404", view=home)) == \
        "user_not_found"
    assert error_of(lambda: client.views_publish(
        user_id="U1", view={"type": "modal", "blocks": [HEADER]})) == "invalid_arguments"
    too_many = [section(f"line {i}") for i in range(101)]
    assert error_of(lambda: client.views_publish(
        user_id="U1", view={"type": "home", "blocks": too_many})) == "invalid_blocks"
    assert error_of(lambda: client.views_publish(
        user_id="U1", view={"type": "home", "blocks": [section("x" * 3001)]})) == \
        "invalid_blocks"
    assert emu.homes == {} and emu.log == []  # nothing refused was kept
    # a view holds 100 blocks (a message only 50), a section 3,000 characters
    client.views_publish(user_id="U1", view={"type": "home", "blocks": too_many[:100]})
    client.views_publish(user_id="U2", view={"type": "home", "blocks": [section("x" * 3000)]})
    # a hash other than the current view's: another publisher came first
    current = emu.homes["U1"]["hash"]
    assert error_of(lambda: client.views_publish(user_id="U1", view=home,
                                                 hash="stale")) == "hash_conflict"
    client.views_publish(user_id="U1", view=home, hash=current)
    assert emu.homes["U1"]["blocks"] == [HEADER]


def test_tier_4_one_hundred_a_minute(slack) -> None:  # type: ignore[no-untyped-def]
    emu, client, clock = slack
    home = {"type": "home", "blocks": [HEADER]}
    for _ in range(100):
        client.views_publish(user_id="U1", view=home)
    with pytest.raises(SlackApiError) as caught:
        client.views_publish(user_id="U1", view=home)
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "60"
    assert [t["method"] for t in emu.throttled] == ["views.publish"]
    clock.now += 60  # the minute has passed
    assert client.views_publish(user_id="U1", view=home)["ok"]
