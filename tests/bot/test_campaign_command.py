"""``/mesh campaign plan``: acked at once, answered by a worker (it reads ARM for every
cluster); refused with what to add when the fleet file has no campaigns."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

from slack_sdk import WebClient

from bot.app import create_app
from tests.bot.test_payloads import PAYLOADS, SECRET, dispatch, slack, slash_body  # noqa: F401
from tests.conftest import REDIS_URL, ROOT, eventually
from workers.config import load_fleet
from workers.engine import Engine
from workers.store.runs import RedisRunStore
from workers.wiring import FleetPorts


def app_for(fleet_path: Path, prefix: str, api_url: str):  # type: ignore[no-untyped-def]
    fleet = load_fleet(fleet_path)
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    answers: list[tuple[str, ...]] = []
    app = create_app(fleet, Engine(fleet, store, FleetPorts(fleet)),
                     WebClient(token="xoxb-test", base_url=api_url), SECRET,
                     lambda run_id, seq: None, lambda run_id: None,
                     lambda *args: answers.append(args))
    return app, store, answers


def test_campaign_plan_is_acked_and_answered_by_a_worker(prefix: str, slack) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    app, store, answers = app_for(ROOT / "examples" / "fleet.azure.yaml", prefix,
                                  slack.base_url + "/api/")
    try:
        body = slash_body(PAYLOADS["project"]["slash"].read_text(), "campaign plan asm-1-27")
        answer = json.loads(dispatch(app, body).body)
        assert answer["response_type"] == "ephemeral"
        assert answer["text"].startswith("Planning a campaign across 2 clusters")
        (text, response_url), = eventually(lambda: answers)  # published after the answer
        assert text == "campaign plan asm-1-27" and response_url.startswith("https://")
        assert store.list_runs() == []  # a dry run: nothing started
    finally:
        keys = list(store.r.scan_iter(prefix + "*"))
        if keys:
            store.r.delete(*keys)


def test_without_campaigns_in_the_fleet_file_it_says_what_to_add(  # type: ignore[no-untyped-def]
        prefix: str, tmp_path: Path, slack) -> None:  # noqa: F811
    text = (ROOT / "examples" / "fleet.azure.yaml").read_text()
    path = tmp_path / "fleet.yaml"
    path.write_text(text[:text.index("campaigns:")])
    app, store, answers = app_for(path, prefix, slack.base_url + "/api/")
    try:
        body = slash_body(PAYLOADS["project"]["slash"].read_text(), "campaign plan")
        answer = json.loads(dispatch(app, body).body)
        assert "The fleet file has no `campaigns:` section" in answer["text"]
        assert "examples/fleet.azure.yaml" in answer["text"]
        assert answers == []
    finally:
        keys = list(store.r.scan_iter(prefix + "*"))
        if keys:
            store.r.delete(*keys)


def test_plan_fleet_campaign_on_a_release_notice_is_answered_by_a_worker(  # type: ignore[no-untyped-def]
        prefix: str, slack) -> None:  # noqa: F811
    app, store, answers = app_for(ROOT / "examples" / "fleet.azure.yaml", prefix,
                                  slack.base_url + "/api/")
    try:
        payload = json.loads(PAYLOADS["project"]["button"].read_text())
        payload["api_app_id"] = "A0123456789"  # the example fleet's app
        payload["actions"][0].update(action_id="meshops_plan_campaign", value="asm-1-27")
        body = "payload=" + urllib.parse.quote(json.dumps(payload))
        assert dispatch(app, body).status == 200
        (text, response_url), = eventually(lambda: answers)
        assert text == "campaign plan asm-1-27" and response_url == payload["response_url"]
        # a value that is not a revision is dropped, never planned
        answers.clear()
        payload["actions"][0]["value"] = "asm-1-27; rm -rf"
        assert dispatch(app, "payload=" + urllib.parse.quote(json.dumps(payload))).status \
            == 200
        time.sleep(0.3)
        assert answers == []
    finally:
        keys = list(store.r.scan_iter(prefix + "*"))
        if keys:
            store.r.delete(*keys)


def test_fleet_is_acked_and_answered_by_a_worker(prefix: str, slack) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    app, store, answers = app_for(ROOT / "examples" / "fleet.azure.yaml", prefix,
                                  slack.base_url + "/api/")
    try:
        body = slash_body(PAYLOADS["project"]["slash"].read_text(), "fleet")
        assert "Looking at ARM and Kubernetes for `/mesh fleet`" in json.loads(
            dispatch(app, body).body)["text"]
        (text, _), = eventually(lambda: answers)
        assert text == "fleet"
        body = slash_body(PAYLOADS["project"]["slash"].read_text(), "fleet prod-weu")
        assert "`fleet` takes no arguments" in json.loads(dispatch(app, body).body)["text"]
    finally:
        keys = list(store.r.scan_iter(prefix + "*"))
        if keys:
            store.r.delete(*keys)
