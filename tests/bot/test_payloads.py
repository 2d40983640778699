"""The Bolt app with Slack's payload shapes, signed, in process, against a real Redis run
store and the sandbox's Slack Web API emulator. Each payload test runs on the project's own
payloads (tests/fixtures/slack/) and, as a contract test, on the real examples of
../shared/data/slack/payloads/ when they are there."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from slack_bolt.request import BoltRequest
from slack_sdk.signature import SignatureVerifier

from bot.app import create_app
from meshops.demo import sign
from sandbox.http import serve
from sandbox.slack import SlackEmulator
from tests.conftest import FIXTURES, REDIS_URL, ROOT, eventually, free_port_base
from workers.config import load_fleet
from workers.engine import Engine
from workers.slack.client import make_client
from workers.store.runs import RedisRunStore
from workers.wiring import FleetPorts

SECRET = "test-signing-secret"
#: a slash command's form body and a block_actions payload of a message button: the project's
#: own (tests/fixtures/slack/), and the real examples in ../shared/data (contract tests)
PAYLOADS = {"project": {"slash": FIXTURES / "slack/slash_command.form.txt",
                        "button": FIXTURES / "slack/block_actions.message_button.json"},
            "real": {"slash": Path("slack/payloads/slash_command.signing_vector.form.txt"),
                     "button": Path("slack/payloads/block_actions.message_button.bolt_python"
                                    ".json")}}


@pytest.fixture(params=["project", pytest.param("real", marks=pytest.mark.contract)])
def payload_of(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """The text of a Slack payload by kind (``slash``, ``button``): the project's own, or the
    real example (a contract test)."""
    files = PAYLOADS[request.param]
    data = request.getfixturevalue("shared_data") if request.param == "real" else ROOT
    return lambda kind: (data / files[kind]).read_text()


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    port = free_port_base(15000, 16000)  # below the ephemeral port range
    emu = SlackEmulator("xoxb-test", {"C0123456789": "mesh", "C111": "x"},
                        {"U0AAAAAAA": "ana", "U111": "x", "U2CERLKJA": "roadrunner",
                         "U0ZOE00001": "zoe"},
                        base_url=f"http://127.0.0.1:{port}")
    server = serve(emu.router(), "slack", "127.0.0.1", port)
    yield emu
    server.shutdown()


@pytest.fixture
def bolt(slack: SlackEmulator, prefix: str):  # type: ignore[no-untyped-def]
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    engine = Engine(fleet, store, FleetPorts(fleet))
    enqueued: list[tuple[str, int]] = []
    app = create_app(fleet, engine, make_client("xoxb-test", slack.base_url + "/api/"), SECRET,
                     lambda run_id, seq: enqueued.append((run_id, seq)), lambda run_id: None)
    yield app, store, enqueued
    keys = list(store.r.scan_iter(prefix + "*"))
    if keys:
        store.r.delete(*keys)


def dispatch(app, body: str, content_type: str = "application/x-www-form-urlencoded",
             **sig) -> object:  # type: ignore[no-untyped-def]
    headers = {"content-type": [content_type], **{k.lower(): [v] for k, v in
                                                    sign(SECRET, body, **sig).items()}}
    return app.dispatch(BoltRequest(body=body, headers=headers))


def form_fields(form: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(form.strip(), keep_blank_values=True))


def slash_body(form: str, text: str, user: str | None = None) -> str:
    """``form`` (a slash command's form body) as ``/mesh <text>``, by ``user`` if given."""
    fields = form_fields(form)
    fields.update(command="/mesh", text=text, user_id=user or fields["user_id"])
    return urllib.parse.urlencode(fields)


def test_signatures_are_what_slack_sdk_verifies() -> None:
    body = PAYLOADS["project"]["slash"].read_text().strip()
    headers = sign(SECRET, body)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"],
                             headers["X-Slack-Signature"])
    assert headers["X-Slack-Signature"] == verifier.generate_signature(
        timestamp=headers["X-Slack-Request-Timestamp"], body=body)


@pytest.mark.contract
def test_signing_matches_slacks_worked_example(shared_data: Path) -> None:
    vector = json.loads((shared_data / "slack/payloads/slash_command.signing_vector.json")
                        .read_text())
    headers = sign(vector["signing_secret"], vector["raw_body"],
                   int(vector["x_slack_request_timestamp"]))
    assert headers["X-Slack-Signature"] == vector["x_slack_signature"]


def paths(value: object, at: str = "") -> set[str]:
    """The key paths of a JSON document (lists by their first item)."""
    if isinstance(value, dict):
        return {at + k for k in value} | {p for k, v in value.items()
                                          for p in paths(v, f"{at}{k}.")}
    if isinstance(value, list) and value:
        return paths(value[0], at + "0.")
    return set()


@pytest.mark.contract
def test_the_projects_payloads_have_the_fields_of_the_real_ones(shared_data: Path) -> None:
    project, real = PAYLOADS["project"], PAYLOADS["real"]
    assert set(form_fields((shared_data / real["slash"]).read_text())) <= set(
        form_fields(project["slash"].read_text()))
    assert paths(json.loads((shared_data / real["button"]).read_text())) <= paths(
        json.loads(project["button"].read_text()))


def test_slash_command_gets_help_and_upgrade_is_stored(bolt, payload_of) -> None:
    app, store, enqueued = bolt
    form = payload_of("slash")
    resp = dispatch(app, slash_body(form, "help"))
    assert resp.status == 200 and "/mesh upgrade <cluster> <revision>" in json.loads(
        resp.body)["text"]
    resp = dispatch(app, slash_body(form, "upgrade prod-weu asm-1-26 --bake=5m",
                                    user="U0AAAAAAA"))
    body = json.loads(resp.body)
    assert body["response_type"] == "ephemeral" and "Planning the upgrade" in body["text"]
    run = store.get(eventually(lambda: enqueued)[-1][0])  # published after the answer
    assert (run.cluster, run.canary_revision, run.options.bake_s) == ("prod-weu", "asm-1-26",
                                                                      300)
    assert run.origin_channel == form_fields(form)["channel_id"]
    assert run.channel == "C0123456789"


def test_stale_or_forged_requests_are_401_and_store_nothing(bolt) -> None:
    app, store, enqueued = bolt
    body = slash_body(PAYLOADS["project"]["slash"].read_text(), "upgrade prod-weu asm-1-26")
    assert dispatch(app, body, timestamp=int(time.time()) - 301).status == 401
    headers = {"content-type": ["application/x-www-form-urlencoded"],
               "x-slack-request-timestamp": [str(int(time.time()))],
               "x-slack-signature": ["v0=" + "0" * 64]}
    assert app.dispatch(BoltRequest(body=body, headers=headers)).status == 401
    assert enqueued == [] and store.list_runs() == []


def test_block_actions_refused_click_answers_ephemerally(bolt, slack, payload_of) -> None:
    app, store, _ = bolt
    payload = json.loads(payload_of("button"))
    payload["api_app_id"] = "A0123456789"  # our app (the payload's is another app's)
    payload["actions"][0].update(action_id="meshops_approve", value="r-0123456789")
    payload["response_url"] = slack.base_url + "/_sandbox/slack/response/abc"
    body = "payload=" + urllib.parse.quote(json.dumps(payload))
    assert dispatch(app, body).status == 200
    deadline = time.time() + 5
    while time.time() < deadline and not slack.log:
        time.sleep(0.05)
    assert slack.log[-1]["kind"] == "response"
    assert "No run `r-0123456789`" in slack.log[-1]["text"]
    assert slack.log[-1]["replace_original"] is False


def test_a_button_of_another_app_changes_nothing(bolt, slack, payload_of) -> None:
    app, store, enqueued = bolt
    payload = json.loads(payload_of("button"))  # its api_app_id is not ours
    payload["actions"][0].update(action_id="meshops_approve", value="r-0123456789")
    resp = dispatch(app, "payload=" + urllib.parse.quote(json.dumps(payload)))
    assert resp.status == 200 and "another Slack app" in resp.body
    time.sleep(0.3)
    assert slack.log == [] and enqueued == []


def test_user_groups_are_expanded_and_refused_when_slack_cannot_say(slack, prefix) -> None:
    from workers.slack.client import UserGroups
    from workflows.errors import DecisionRefused

    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    client = make_client("xoxb-test", slack.base_url + "/api/")
    groups = UserGroups(client, fleet)
    slack.usergroups["S0MESHLEADS"] = ["U0LEAD", "U0LEAD2"]
    slack.usergroups["S0PLATFORM"] = ["U0DEV"]
    policy = fleet.policy("prod-weu", groups("prod-weu"))
    assert policy.approvers == {"U0AAAAAAA", "U0LEAD", "U0LEAD2"}
    assert policy.operators == frozenset()  # S0ONCALL unreadable: grants nothing, blocks nobody
    assert policy.may_request("U0DEV") and not policy.may_request("U0STRANGER")
    calls = slack.calls.count("usergroups.users.list")
    groups("prod-weu")
    assert slack.calls.count("usergroups.users.list") == calls  # cached
    fresh = UserGroups(client, fleet)
    del slack.usergroups["S0MESHLEADS"]
    with pytest.raises(DecisionRefused, match="Slack could not say who is in user group"):
        fresh("prod-weu")


def test_rate_limited_slack_is_retried_after_retry_after(slack, prefix) -> None:
    from workers.slack.notifier import SlackNotifier
    from workflows.model import Run

    store = RedisRunStore.from_url(REDIS_URL, prefix)
    run = Run(id="r-00000000aa", cluster="prod-weu", requester="U0AAAAAAA",
              channel="C0123456789", canary_revision="asm-1-26", created_at=0, updated_at=0)
    run = run.log(1, "phase", "requested")
    slack.rate_limit_next = 2
    try:
        SlackNotifier(make_client("xoxb-test", slack.base_url + "/api/"), store,
                      lambda c: ["U0AAAAAAA"]).sync(run)
        assert slack.calls.count("chat.postMessage") == 4  # 2 × 429, then root and thread
        assert [e["kind"] for e in slack.log] == ["post", "post"]
    finally:
        keys = list(store.r.scan_iter(prefix + "*"))
        if keys:
            store.r.delete(*keys)
