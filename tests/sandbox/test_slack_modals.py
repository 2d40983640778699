"""The sandbox's Slack opens and updates modals as Slack's ``views.open`` and ``views.update``
do (https://docs.slack.dev/reference/methods/views.open, .../views.update), called through
the real ``slack_sdk.WebClient``: a trigger it issued, used once within 3 s; a modal view
(title, submit and close of 24 characters at most, submit required with inputs, 100
blocks); ``hash_conflict`` and ``not_found``; what the person entered kept across an update
of the same input. The emulator's clock is the test's, so no test waits."""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk.errors import SlackApiError

from tests.sandbox.test_slack_home import error_of, slack  # noqa: F401 - the fixture


def text(t: str) -> dict[str, str]:
    return {"type": "plain_text", "text": t}


def select(block_id: str, action_id: str, values: list[str]) -> dict[str, Any]:
    return {"type": "input", "block_id": block_id, "label": text(block_id),
            "element": {"type": "static_select", "action_id": action_id,
                        "options": [{"text": text(v), "value": v} for v in values]}}


def modal(*blocks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "modal", "callback_id": "form", "title": text("Upgrade the mesh"),
            "submit": text("Plan upgrade"), "blocks": list(blocks), **extra}


def test_a_trigger_opens_one_modal_within_three_seconds(slack) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    emu, client, clock = slack
    view = modal(select("cluster", "c", ["dev", "prod"]))
    assert error_of(lambda: client.views_open(trigger_id="123.456.abc", view=view)) \
        == "invalid_trigger_id"  # not one Slack issued
    trigger = emu.issue_trigger("U1")
    opened = client.views_open(trigger_id=trigger, view=view)["view"]
    assert opened["id"].startswith("V") and opened["hash"] and opened["type"] == "modal"
    assert opened["state"] == {"values": {}} and opened["callback_id"] == "form"
    assert emu.modals[opened["id"]]["user"] == "U1"
    assert error_of(lambda: client.views_open(trigger_id=trigger, view=view)) \
        == "exchanged_trigger_id"  # once only
    late = emu.issue_trigger("U1")
    clock.now += 3.5
    assert error_of(lambda: client.views_open(trigger_id=late, view=view)) \
        == "expired_trigger_id"
    assert [e["kind"] for e in emu.log] == ["modal"]


@pytest.mark.parametrize(("view", "error"), [
    ({"type": "home", "blocks": []}, "invalid_arguments"),
    (modal(title=text("A title longer than twenty-four")), "invalid_arguments"),
    ({"type": "modal", "title": text("No submit"), "blocks": [select("x", "y", ["a"])]},
     "invalid_arguments"),
    (modal(private_metadata="x" * 3001), "invalid_arguments"),
    (modal({"type": "section"}), "invalid_blocks"),
    (modal(*[{"type": "divider"}] * 101), "invalid_blocks"),
])
def test_what_slack_refuses_of_a_modal(slack, view: dict[str, Any], error: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    emu, client, _ = slack
    trigger = emu.issue_trigger("U1")
    assert error_of(lambda: client.views_open(trigger_id=trigger, view=view)) == error
    # a refused view does not use the trigger up
    assert client.views_open(trigger_id=trigger, view=modal())["ok"]


def test_an_update_keeps_what_was_entered_and_refuses_a_stale_hash(slack) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    emu, client, _ = slack
    opened = client.views_open(trigger_id=emu.issue_trigger("U1"),
                               view=modal(select("cluster", "c", ["dev", "prod"]),
                                          select("bake", "b", ["6s"])))["view"]
    dev = {"type": "static_select", "selected_option": {"text": text("dev"), "value": "dev"}}
    seen = emu.person_enters(opened["id"], "cluster", "c", dev)
    assert seen["hash"] == opened["hash"]  # choosing does not change the hash
    emu.person_enters(opened["id"], "bake", "b", {"type": "static_select",
                                                  "selected_option": None})
    # the worker's update: the cluster input again, the bake input gone, a revision added
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"],
                                  view=modal(select("cluster", "c", ["dev", "prod"]),
                                             select("revision", "r", ["asm-1-26"])))["view"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    assert updated["state"] == {"values": {"cluster": {"c": dev}}}
    # one that saw the view before the update is refused
    assert error_of(lambda: client.views_update(view_id=opened["id"], hash=opened["hash"],
                                                view=modal())) == "hash_conflict"
    # without a hash the last one wins
    assert client.views_update(view_id=opened["id"], view=modal())["ok"]
    emu.close_modal(opened["id"])
    assert error_of(lambda: client.views_update(view_id=opened["id"], view=modal())) \
        == "not_found"


def test_views_open_and_update_are_tier_4(slack) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    emu, client, clock = slack
    opened = client.views_open(trigger_id=emu.issue_trigger("U1"), view=modal())["view"]
    for _ in range(100):
        client.views_update(view_id=opened["id"], view=modal())
    # the 101st call of the method in a minute (each method has its own count)
    with pytest.raises(SlackApiError) as caught:
        client.views_update(view_id=opened["id"], view=modal())
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"]
    clock.now += 61
    assert client.views_update(view_id=opened["id"], view=modal())["ok"]
