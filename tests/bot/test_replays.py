"""A signed slash command or click replayed unchanged within Slack's five minutes is refused
(409) and changes nothing, across bot processes (two apps on one Redis); with Redis down the
answer is "could not take that now", never a 500."""

from __future__ import annotations

import json
import time
import urllib.parse

from slack_bolt.request import BoltRequest

from bot.app import create_app
from meshops.demo import sign
from tests.bot.test_payloads import (  # noqa: F401
    PAYLOADS,
    SECRET,
    bolt,
    dispatch,
    slack,
    slash_body,
)
from tests.conftest import REDIS_URL, ROOT, eventually
from workers.config import load_fleet
from workers.engine import Engine
from workers.slack.client import make_client
from workers.store.runs import RedisRunStore
from workers.wiring import FleetPorts

FORM = "application/x-www-form-urlencoded"


def signed(body: str, timestamp: int | None = None) -> BoltRequest:
    headers = {k.lower(): [v] for k, v in sign(SECRET, body, timestamp).items()}
    return BoltRequest(body=body, headers={"content-type": [FORM], **headers})


def another_process(slack, store: RedisRunStore, enqueued: list):  # type: ignore[no-untyped-def]  # noqa: F811
    """A second bot process: its own app and engine on the same Redis and prefix."""
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    engine = Engine(fleet, RedisRunStore.from_url(REDIS_URL, store.p), FleetPorts(fleet))
    return create_app(fleet, engine, make_client("xoxb-test", slack.base_url + "/api/"), SECRET,
                      lambda run_id, seq: enqueued.append((run_id, seq)), lambda run_id: None)


def test_a_replayed_upgrade_is_refused_and_starts_nothing(bolt, slack) -> None:  # noqa: F811
    app, store, enqueued = bolt
    body = slash_body(PAYLOADS["project"]["slash"].read_text(), "upgrade prod-weu asm-1-26",
                      user="U0AAAAAAA")
    ts = int(time.time()) - 60
    first = app.dispatch(signed(body, ts))
    assert first.status == 200 and "Planning the upgrade" in json.loads(first.body)["text"]
    runs = store.list_runs()
    assert len(runs) == 1 and len(eventually(lambda: enqueued)) == 1  # after the answer

    for replayer in (app, another_process(slack, store, enqueued)):
        again = replayer.dispatch(signed(body, ts))
        assert again.status == 409
        assert json.loads(again.body) == {
            "error": "this signed request was already taken; a replay changes nothing"}
    assert store.list_runs() == runs and len(enqueued) == 1
    # remembered until the timestamp leaves Slack's five minutes, and no longer
    key = f"{store.p}:replay:{ts}:{sign(SECRET, body, ts)['X-Slack-Signature']}"
    assert 230 <= store.r.ttl(key) <= 241


def test_the_same_command_typed_again_is_a_new_request(bolt) -> None:  # noqa: F811
    """Slack signs each request anew: the same text a second later is not a replay."""
    app, store, enqueued = bolt
    body = slash_body(PAYLOADS["project"]["slash"].read_text(), "help")
    now = int(time.time())
    assert app.dispatch(signed(body, now - 1)).status == 200
    assert app.dispatch(signed(body, now)).status == 200


def test_a_replayed_click_is_refused(bolt, slack) -> None:  # noqa: F811
    app, store, enqueued = bolt
    payload = json.loads(PAYLOADS["project"]["button"].read_text())
    payload["api_app_id"] = "A0123456789"
    payload["actions"][0].update(action_id="meshops_approve", value="r-0123456789")
    payload["response_url"] = slack.base_url + "/_sandbox/slack/response/abc"
    body = "payload=" + urllib.parse.quote(json.dumps(payload))
    ts = int(time.time())
    assert app.dispatch(signed(body, ts)).status == 200
    assert app.dispatch(signed(body, ts)).status == 409


def test_redis_down_is_could_not_take_that_now(slack, prefix) -> None:  # noqa: F811
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    store = RedisRunStore.from_url("redis://127.0.0.1:1/0", prefix)  # nobody listens there
    engine = Engine(fleet, store, FleetPorts(fleet))
    enqueued: list[tuple[str, int]] = []
    app = create_app(fleet, engine, make_client("xoxb-test", slack.base_url + "/api/"), SECRET,
                     lambda run_id, seq: enqueued.append((run_id, seq)), lambda run_id: None)
    body = slash_body(PAYLOADS["project"]["slash"].read_text(), "upgrade prod-weu asm-1-26",
                      user="U0AAAAAAA")
    resp = app.dispatch(signed(body))
    assert resp.status == 200
    answer = json.loads(resp.body)
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].startswith(":warning: meshops could not take that now (Redis "
                                     "unavailable while checking that a request is new")
    assert answer["text"].endswith("Nothing changed.")

    payload = json.loads(PAYLOADS["project"]["button"].read_text())
    payload["api_app_id"] = "A0123456789"
    payload["actions"][0].update(action_id="meshops_approve", value="r-0123456789")
    payload["response_url"] = slack.base_url + "/_sandbox/slack/response/abc"
    click = app.dispatch(signed("payload=" + urllib.parse.quote(json.dumps(payload))))
    assert click.status == 200
    deadline = time.time() + 5
    while time.time() < deadline and not slack.log:
        time.sleep(0.05)
    assert slack.log[-1]["kind"] == "response" and slack.log[-1]["replace_original"] is False
    assert "meshops could not take that now" in slack.log[-1]["text"]
    assert enqueued == []
