"""A form is a slash command unless it has a ``payload`` field (issue 11): Bolt took any
form whose text holds the word "payload" for an interaction and answered it 404, so
``/mesh status payload-prod`` never reached the command. Through the whole WSGI stack the
bot serves, signed, against a real Redis run store."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from bot.http import SlackRequest, slack_body
from tests.bot.test_bad_requests import FORM, front, slack_post  # noqa: F401
from tests.bot.test_payloads import PAYLOADS, bolt, form_fields, slack, slash_body  # noqa: F401
from tests.conftest import eventually
from workflows.model import Phase

REQUESTER = "U0AAAAAAA"  # a requester and approver of prod-weu (examples/fleet.azure.yaml)


def command(text: str, **fields: str) -> str:
    """A ``/mesh <text>`` form as Slack posts it, with ``fields`` changed."""
    form = form_fields(slash_body(PAYLOADS["project"]["slash"].read_text(), text, REQUESTER))
    return urllib.parse.urlencode({**form, **fields})


@pytest.mark.parametrize(("text", "cluster"), [
    ("status payload-prod", "payload-prod"),
    ("plan payload-x asm-1-26", "payload-x"),
    ("upgrade payload-x asm-1-26", "payload-x"),
    ("revisions payload", "payload"),
])
def test_a_command_naming_an_unknown_cluster_with_payload_in_it_is_refused_clearly(
        front, text: str, cluster: str) -> None:  # noqa: F811
    app, store, enqueued, _ = front
    body = command(text)
    assert "payload" in body and "payload" not in form_fields(body)
    status, answer = slack_post(app, body)
    assert status == 200
    assert answer["response_type"] == "ephemeral"
    assert answer["text"] == (f":warning: Unknown cluster `{cluster}`. Known clusters: "
                              "`dev-weu`, `prod-weu`.")
    assert enqueued == [] and store.list_runs() == []


def test_a_command_from_a_channel_or_user_named_payload_is_taken(front) -> None:  # noqa: F811
    app, store, enqueued, _ = front
    status, answer = slack_post(app, command("status prod-weu", channel_name="payload-ops",
                                             user_name="payload"))
    assert status == 200
    assert answer["text"].startswith("Looking at ARM and Kubernetes for `/mesh status "
                                     "prod-weu`")
    status, answer = slack_post(app, command("upgrade prod-weu asm-1-26 --bake=5m",
                                             team_domain="payload"))
    assert status == 200 and "Planning the upgrade" in answer["text"]
    (run,) = store.list_runs()
    assert (run.cluster, run.canary_revision, run.requester) == ("prod-weu", "asm-1-26",
                                                                 REQUESTER)
    assert eventually(lambda: enqueued) == [(run.id, run.seq)]  # published after the answer


def test_an_interaction_is_still_read_from_its_payload_field(front) -> None:  # noqa: F811
    app, store, _, _ = front
    status, answer = slack_post(app, command("upgrade prod-weu asm-1-26"))
    assert status == 200 and "Planning the upgrade" in answer["text"]
    (run,) = store.list_runs()
    click = json.loads(PAYLOADS["project"]["button"].read_text())
    click["api_app_id"] = "A0123456789"  # our app
    click["user"].update(id=REQUESTER, username="payload")
    click["actions"][0].update(action_id="meshops_cancel", value=run.id)
    body = "payload=" + urllib.parse.quote(json.dumps(click))
    status, _ = slack_post(app, body)
    assert status == 200
    assert store.get(run.id).phase == Phase.CANCELLED


@pytest.mark.parametrize(("raw", "content_type", "parsed"), [
    ("command=%2Fmesh&text=status+payload-prod", None,
     {"command": "/mesh", "text": "status payload-prod"}),
    ("payload=%7B%22type%22%3A%22block_actions%22%7D", None, {"type": "block_actions"}),
    ("payload=%7B%22text%22%3A%22payload%22%7D&x=1", None, {"text": "payload"}),
    ("text=&payloads=1", None, {"text": "", "payloads": "1"}),
    ('{"type": "url_verification"}', "application/json", {"type": "url_verification"}),
    ("", None, {}),
])
def test_slack_body_reads_a_form_by_its_fields(raw: str, content_type: str | None,
                                               parsed: dict[str, str]) -> None:
    assert slack_body(raw, content_type) == parsed


def test_a_copy_for_a_lazy_listener_reads_the_body_alike() -> None:
    raw = "command=%2Fmesh&text=status+payload-prod&user_id=U0AAAAAAA&team_id=T0MESHTEAM"
    request = SlackRequest(body=raw, headers={"content-type": FORM})
    copy = request.to_copyable()
    assert isinstance(copy, SlackRequest)
    for req in (request, copy):
        assert req.raw_body == raw  # what the signature covers
        assert req.body["text"] == "status payload-prod"
        assert req.context.team_id == "T0MESHTEAM" and req.context.user_id == "U0AAAAAAA"
