"""The forms of ``/mesh upgrade`` and ``/mesh campaign`` typed without arguments (issue 14):
what the bot opens, who sees what, how a submission becomes the typed command and how its
refusals land on the fields; the worker's fill (``meshops.form``) from ARM. The bot is the
real Bolt app, its Slack the sandbox's (``views.open`` with the trigger Slack issued)."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from slack_sdk import WebClient

from bot.app import create_app
from sandbox.slack import SlackEmulator
from tests.bot.test_app_home import World, worker_context
from tests.bot.test_payloads import PAYLOADS, SECRET, dispatch, slack, slash_body  # noqa: F401
from tests.conftest import REDIS_URL, ROOT, eventually
from workers.config import load_fleet
from workers.engine import Engine
from workers.forms import (
    CAMPAIGN_FORM,
    MAX_OPTIONS,
    UPGRADE_FORM,
    FormFills,
    Origin,
    campaign_view,
    command_text,
    upgrade_view,
)
from workers.store.runs import RedisRunStore
from workers.wiring import FleetPorts
from workflows.commands import parse

USER = "U0ZOE00001"  # the project's slash-command fixture's person
EXAMPLE = ROOT / "examples" / "fleet.azure.yaml"


class Bot(SimpleNamespace):
    app: Any
    store: RedisRunStore
    engine: Engine
    forms: list[tuple[Any, ...]]
    answers: list[tuple[Any, ...]]
    ticks: list[tuple[Any, ...]]


@pytest.fixture
def fleet_file(tmp_path: Path) -> Path:
    """The example fleet, ``dev-weu`` limited to ``U0BBBBBBB`` and the campaigns to
    ``U0AAAAAAA`` (``prod-weu`` takes S0PLATFORM, which has no members here)."""
    text = EXAMPLE.read_text()
    text = text.replace("    approvers: [U0AAAAAAA, U0BBBBBBB]\n",
                        "    approvers: [U0AAAAAAA, U0BBBBBBB]\n    requesters: [U0BBBBBBB, "
                        f"{USER}]\n")
    text = text.replace("  approvers: [S0MESHLEADS]             # approve a campaign",
                        "  requesters: [U0AAAAAAA]\n  approvers: [S0MESHLEADS]  # approve")
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def bot(prefix: str, slack: SlackEmulator, fleet_file: Path):  # type: ignore[no-untyped-def]  # noqa: F811
    fleet = load_fleet(fleet_file)
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    engine = Engine(fleet, store, FleetPorts(fleet))
    b = Bot(store=store, engine=engine, forms=[], answers=[], ticks=[])
    b.app = create_app(fleet, engine, WebClient(token="xoxb-test",
                                                base_url=slack.base_url + "/api/"), SECRET,
                       lambda *args: b.ticks.append(args), lambda run_id: None,
                       lambda *args: b.answers.append(args), lambda user_id: None,
                       lambda *args: b.forms.append(args))
    yield b
    keys = list(store.r.scan_iter(prefix + "*"))
    if keys:
        store.r.delete(*keys)


def typed(slack: SlackEmulator, text: str, user: str = USER,  # noqa: F811
          trigger: str | None = None) -> dict[str, Any]:
    fields = dict(urllib.parse.parse_qsl(slash_body(PAYLOADS["project"]["slash"].read_text(),
                                                    text, user)))
    fields["trigger_id"] = trigger or slack.issue_trigger(user)
    fields["response_url"] = slack.response_url_for()
    return fields


def submission(view: dict[str, Any], user: str = USER) -> str:
    """A view_submission as Slack posts it (bolt-python's fixture's shape)."""
    return "payload=" + urllib.parse.quote(json.dumps({
        "type": "view_submission", "team": {"id": "T0123456789", "domain": "x"},
        "user": {"id": user, "username": "zoe", "name": "zoe", "team_id": "T0123456789"},
        "api_app_id": "A0123456789", "token": "x", "trigger_id": "1.2.3",
        "view": view, "response_urls": []}))


def select(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"text": {"type": "plain_text",
                                                                  "text": value},
                                                         "value": value}}


def options(view: dict[str, Any], block_id: str) -> list[str]:
    block = next(b for b in view["blocks"] if b.get("block_id") == block_id)
    return [o["value"] for o in block["element"]["options"]]


def opened_view(slack: SlackEmulator) -> dict[str, Any]:  # noqa: F811
    view_id = eventually(lambda: list(slack.modals))[0]
    return cast(dict[str, Any], slack.modals[view_id])


# ------------------------------------------------------------------ the views alone


def test_the_views_are_modals_slack_takes() -> None:
    origin = Origin("C0987654321", "https://hooks.slack.com/commands/T0/1/x")
    views = [upgrade_view(["dev-weu", "prod-weu"], origin),
             upgrade_view(["dev-weu"], origin, cluster="dev-weu"),
             upgrade_view(["dev-weu"], origin, cluster="dev-weu", targets=[]),
             upgrade_view(["dev-weu"], origin, cluster="dev-weu",
                          targets=["asm-1-26", "asm-1-27"], note="`dev-weu` runs asm-1-25"),
             upgrade_view([f"c{i:03}" for i in range(130)], origin),
             campaign_view(origin, True), campaign_view(origin, False, ["asm-1-26"],
                                                        "asm-1-26", "why")]
    for view in views:
        shown, refusal = SlackEmulator._modal_problem({"view": json.dumps(view)})
        assert shown is not None, refusal
        assert Origin.load(view["private_metadata"]) == origin
    many = views[4]
    assert len(options(many, "cluster")) == MAX_OPTIONS
    assert "30 more clusters are not in the menu" in json.dumps(many)
    assert Origin.load("not json") == Origin() and Origin.load("[1]") == Origin()


def test_a_submitted_form_is_the_command_it_stands_for() -> None:
    values = {"cluster": {"meshops_form_cluster": select("dev-weu")},
              "revision": {"revision": select("asm-1-26")},
              "bake": {"bake": {"type": "plain_text_input", "value": " 6s "}},
              "interval": {"interval": {"type": "plain_text_input", "value": None}},
              "wave_size": {"wave_size": {"type": "number_input", "value": "2"}},
              "pilot": {"pilot": {"type": "plain_text_input", "value": "shop, cart"}},
              "approve_waves": {"approve_waves": {"type": "checkboxes", "selected_options": [
                  {"value": "yes"}]}}}
    text, fields = command_text(UPGRADE_FORM, values)
    assert text == ("upgrade dev-weu asm-1-26 --bake=6s --wave-size=2 --pilot=shop,cart "
                    "--approve-waves")
    assert fields["--pilot"] == "pilot" and fields["revision"] == "revision"
    cmd = parse(text, "/mesh")
    assert cmd.options == {"bake_s": 6.0, "wave_size": 2,  # type: ignore[union-attr]
                           "pilot": ["shop", "cart"], "approve_waves": True}
    values["approve_waves"]["approve_waves"]["selected_options"] = []
    assert "--approve-waves" not in command_text(UPGRADE_FORM, values)[0]
    assert command_text(CAMPAIGN_FORM, {"action": {"action": select("start")},
                                        "revision": {"revision": select("asm-1-27")}}
                        )[0] == "campaign start asm-1-27"
    assert command_text(CAMPAIGN_FORM, {"action": {"action": select("plan")}})[0] \
        == "campaign plan"


# ------------------------------------------------------------------ the bot


def test_the_upgrade_form_offers_only_the_clusters_the_person_may_request(
        bot: Bot, slack: SlackEmulator) -> None:  # noqa: F811
    resp = dispatch(bot.app, urllib.parse.urlencode(typed(slack, "upgrade")))
    assert resp.status == 200 and resp.body == ""  # type: ignore[attr-defined]
    view = opened_view(slack)
    # dev-weu lists zoe as a requester; prod-weu takes S0PLATFORM only
    assert options(view, "cluster") == ["dev-weu"] and view["user"] == USER
    # the one cluster is chosen, and a worker asked to fill in its revisions at once
    (form, view_id, user, cluster, metadata, fill), = eventually(lambda: bot.forms)
    assert (form, view_id, user, cluster, fill) == (UPGRADE_FORM, view["id"], USER,
                                                   "dev-weu", 1)
    assert Origin.load(metadata).channel == "G0PLATFORM"  # where the fixture's command was typed
    # bake placeholder: the cluster's own default (its fleet-file `upgrade: bake: 3m`)
    assert "3m" in json.dumps(view["blocks"])


def test_a_person_who_may_request_nothing_is_told_and_no_form_opens(
        bot: Bot, slack: SlackEmulator) -> None:  # noqa: F811
    resp = dispatch(bot.app, urllib.parse.urlencode(typed(slack, "upgrade", user="U111")))
    assert "You may not request changes of any cluster" in json.loads(resp.body)["text"]  # type: ignore[attr-defined]
    assert slack.modals == {} and bot.forms == []


def test_a_trigger_that_expired_is_answered_with_what_to_type(
        bot: Bot, slack: SlackEmulator) -> None:  # noqa: F811
    stale = slack.issue_trigger(USER)
    slack.triggers[stale] = (USER, slack.clock() - 10)  # the ack took longer than 3 s
    dispatch(bot.app, urllib.parse.urlencode(typed(slack, "upgrade", trigger=stale)))
    reply = eventually(lambda: [e["text"] for e in slack.log if e["kind"] == "response"])
    assert reply[0].startswith(":warning: Slack did not open the form (expired_trigger_id)")
    assert "`/mesh help`" in reply[0] and slack.modals == {}


def test_choosing_a_cluster_asks_a_worker_for_its_revisions_latest_wins(
        bot: Bot, slack: SlackEmulator) -> None:  # noqa: F811
    fields = typed(slack, "upgrade", user="U0BBBBBBB")
    # U0BBBBBBB may request dev-weu only too; pretend two clusters by a second choice
    dispatch(bot.app, urllib.parse.urlencode(fields))
    view = opened_view(slack)
    eventually(lambda: bot.forms)

    def choose(cluster: str, at: str) -> None:
        payload = {"type": "block_actions", "user": {"id": "U0BBBBBBB"},
                   "api_app_id": "A0123456789", "token": "x",
                   "container": {"type": "view", "view_id": view["id"]},
                   "trigger_id": "1.2.3", "team": {"id": "T0123456789"},
                   "view": {k: v for k, v in view.items() if k != "user"},
                   "actions": [{**select(cluster), "action_id": "meshops_form_cluster",
                                "block_id": "cluster", "action_ts": at}]}
        resp = dispatch(bot.app, "payload=" + urllib.parse.quote(json.dumps(payload)))
        assert resp.status == 200  # type: ignore[attr-defined]

    choose("dev-weu", "1.0")
    choose("prod-weu", "2.0")  # one they may not request (a crafted payload): ignored
    choose("dev-weu", "3.0")
    fills = eventually(lambda: len(bot.forms) == 3 and bot.forms)
    assert [f[5] for f in fills] == [1, 2, 3]
    fills_store = FormFills(bot.store.r, bot.store.p)
    assert not fills_store.is_latest(view["id"], 2) and fills_store.is_latest(view["id"], 3)


def test_a_submission_is_the_typed_command_and_its_refusals_land_on_fields(
        bot: Bot, slack: SlackEmulator) -> None:  # noqa: F811
    origin = Origin("C0123456789", slack.response_url_for())
    view = upgrade_view(["dev-weu"], origin, cluster="dev-weu", targets=["asm-1-26"])
    view["state"] = {"values": {"cluster": {"meshops_form_cluster": select("prod-weu")},
                                "revision": {"revision": select("asm-1-26")}}}
    # a cluster this person may not request: the engine's refusal, on the cluster field
    answer = json.loads(dispatch(bot.app, submission(view)).body)  # type: ignore[attr-defined]
    assert answer["response_action"] == "errors"
    assert answer["errors"]["cluster"].startswith("You may not request changes of `prod-weu`")
    # no revision menu yet (ARM not read): the refusal goes on an input the view has
    bare = upgrade_view(["dev-weu"], origin, cluster="dev-weu")
    bare["state"] = {"values": {"cluster": {"meshops_form_cluster": select("dev-weu")}}}
    answer = json.loads(dispatch(bot.app, submission(bare)).body)  # type: ignore[attr-defined]
    assert list(answer["errors"]) == ["cluster"]
    assert "takes a cluster and a revision" in answer["errors"]["cluster"]
    # several bad options: each on its own field at once
    view["state"]["values"].update(
        cluster={"meshops_form_cluster": select("dev-weu")},
        bake={"bake": {"type": "plain_text_input", "value": "forever"}},
        wave_size={"wave_size": {"type": "number_input", "value": "0"}})
    answer = json.loads(dispatch(bot.app, submission(view)).body)  # type: ignore[attr-defined]
    assert sorted(answer["errors"]) == ["bake", "wave_size"]
    assert bot.store.list_runs() == []
    # good: the modal closes (an empty answer), the run is stored and ticked, and the
    # accepted text goes to the command's response_url, as a typed command's ack would
    view["state"]["values"].pop("wave_size")
    view["state"]["values"]["bake"]["bake"]["value"] = "6s"
    view["state"]["values"]["interval"] = {"interval": {"type": "plain_text_input",
                                                        "value": "3s"}}
    resp = dispatch(bot.app, submission(view))
    assert resp.status == 200 and resp.body == ""  # type: ignore[attr-defined]
    run, = bot.store.list_runs()
    assert (run.cluster, run.canary_revision, run.options.bake_s, run.requester) == (
        "dev-weu", "asm-1-26", 6.0, USER)
    assert eventually(lambda: bot.ticks) == [(run.id, run.seq)]
    reply = eventually(lambda: [e["text"] for e in slack.log if e["kind"] == "response"])
    assert run.id in reply[0]
    # recorded after the answer, as a typed command's
    audit = eventually(lambda: len(found := [e for e in bot.engine.audit.read()
                                             if e["kind"] == "command"]) == 4 and found)
    assert [e["outcome"].split(":")[0] for e in audit] == ["refused"] * 3 + ["ok"]
    assert audit[-1]["what"].endswith("(form)")


def test_the_campaign_form_starts_only_for_its_requesters_and_plans_for_anyone(
        bot: Bot, slack: SlackEmulator) -> None:  # noqa: F811
    dispatch(bot.app, urllib.parse.urlencode(typed(slack, "campaign")))
    view = opened_view(slack)
    assert options(view, "action") == ["plan"]  # zoe is not a campaigns requester
    assert eventually(lambda: bot.forms)[0][:4] == (CAMPAIGN_FORM, view["id"], USER, "")
    slack.close_modal(view["id"])
    dispatch(bot.app, urllib.parse.urlencode(typed(slack, "campaign", user="U0AAAAAAA")))
    view = opened_view(slack)
    assert options(view, "action") == ["plan", "start"]
    # a submitted plan is /mesh campaign plan: answered by a worker through response_url
    view["state"] = {"values": {"action": {"action": select("plan")},
                                "revision": {"revision": select("asm-1-27")}}}
    resp = dispatch(bot.app, submission({k: v for k, v in view.items() if k != "user"},
                                        user="U0AAAAAAA"))
    assert resp.status == 200 and resp.body == ""  # type: ignore[attr-defined]
    (text, response_url), = eventually(lambda: bot.answers)
    assert text == "campaign plan asm-1-27"
    assert response_url == Origin.load(view["private_metadata"]).response_url


# ------------------------------------------------------------------ the worker's fill


def test_the_worker_fills_in_the_revisions_arm_offers(
        prefix: str, slack: SlackEmulator, fleet_file: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.tasks import app as tasks

    fleet = load_fleet(fleet_file)
    world = World.seeded(["a", "b"])
    engine = Engine(fleet, RedisRunStore.from_url(REDIS_URL, prefix), world)  # type: ignore[arg-type]
    try:
        monkeypatch.setattr(tasks, "context", lambda: worker_context(engine, slack))
        origin = Origin("C0123456789", "https://hooks.slack.com/commands/T0/1/x")
        opened = WebClient(token="xoxb-test", base_url=slack.base_url + "/api/").views_open(
            trigger_id=slack.issue_trigger(USER), view=upgrade_view(["dev-weu"], origin)
        )["view"]
        fills = FormFills(engine.store.r, engine.store.p)  # type: ignore[attr-defined]
        first, second = fills.ask(opened["id"]), fills.ask(opened["id"])
        # a fill the person has since superseded changes nothing
        tasks.form_task.apply(args=(UPGRADE_FORM, opened["id"], USER, "dev-weu",
                                    origin.dump(), first)).get()
        assert slack.modals[opened["id"]]["hash"] == opened["hash"]
        tasks.form_task.apply(args=(UPGRADE_FORM, opened["id"], USER, "dev-weu",
                                    origin.dump(), second)).get()
        view = slack.modals[opened["id"]]
        assert options(view, "revision") == world.upgrade_targets("dev-weu")
        assert options(view, "cluster") == ["dev-weu"]
        assert "`dev-weu` runs asm-1-25" in json.dumps(view["blocks"])
        # the campaign form: the regions' revisions and the one meshops proposes
        opened = WebClient(token="xoxb-test", base_url=slack.base_url + "/api/").views_open(
            trigger_id=slack.issue_trigger(USER), view=campaign_view(origin, False))["view"]
        tasks.form_task.apply(args=(CAMPAIGN_FORM, opened["id"], USER, "", origin.dump(),
                                    0)).get()
        view = slack.modals[opened["id"]]
        assert "Proposed: `" in json.dumps(view["blocks"])
        assert options(view, "revision")
    finally:
        keys = list(engine.store.r.scan_iter(prefix + "*"))  # type: ignore[attr-defined]
        if keys:
            engine.store.r.delete(*keys)  # type: ignore[attr-defined]


@pytest.mark.contract
def test_a_real_view_submission_reaches_the_form(bot: Bot, slack: SlackEmulator,  # noqa: F811
                                                 shared_data: Path) -> None:
    """bolt-python's view_submission fixture (Slack's full modern view object), made ours by
    its callback_id and state: Bolt routes it to the form, which answers Slack's errors
    shape on the view's input."""
    body = json.loads((shared_data / "slack/payloads/view_submission.bolt_python_fixture"
                       ".json").read_text())
    origin = Origin("C0123456789", slack.response_url_for())
    ours = upgrade_view(["dev-weu"], origin, cluster="dev-weu", targets=["asm-1-26"])
    body["view"].update(callback_id=ours["callback_id"], blocks=ours["blocks"],
                        private_metadata=ours["private_metadata"],
                        state={"values": {
                            "cluster": {"meshops_form_cluster": select("dev-weu")},
                            "revision": {"revision": {"type": "static_select",
                                                      "selected_option": None}},
                            "bake": {"bake": {"type": "plain_text_input", "value": None}}}})
    body["user"]["id"] = USER
    body["api_app_id"] = bot.engine.fleet.slack.app_id  # ours (another app's is refused)
    resp = dispatch(bot.app, "payload=" + urllib.parse.quote(json.dumps(body)))
    answer = json.loads(resp.body)  # type: ignore[attr-defined]
    assert answer["response_action"] == "errors"
    assert list(answer["errors"]) == ["revision"]  # nothing chosen there
    assert bot.store.list_runs() == []
