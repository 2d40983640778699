"""A new workflow kind is one module and one registration: nothing else changes.

``Ping`` below is a whole kind — its verb and usage, its steps, its decisions and who may
take them, its buttons and texts — registered in the registry and nowhere else. It is then
driven as people would: typed as a signed ``/mesh ping`` through the real Bolt app, stored
in a real Redis run store, ticked by the engine, rendered to the Slack emulator by the
notifier, approved with a signed button click, and completed.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator

import pytest

from bot.app import create_app
from sandbox.http import serve
from sandbox.slack import SlackEmulator
from tests.bot.test_payloads import SECRET, dispatch, slash_body
from tests.conftest import FIXTURES, REDIS_URL, ROOT, eventually, free_port_base
from workers.config import load_fleet
from workers.engine import Engine
from workers.slack.client import make_client
from workers.slack.notifier import SlackNotifier
from workers.store.runs import RedisRunStore
from workers.wiring import FleetPorts
from workflows.errors import InvalidCommand
from workflows.kind import (
    KINDS,
    Button,
    Decision,
    StartRun,
    StepResult,
    WorkflowKind,
)
from workflows.model import Phase, Run
from workflows.policy import Role
from workflows.ports import ClusterPorts


def plan_ping(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    return StepResult(run.to(Phase.AWAITING_APPROVAL, now, f"plan: ping {run.cluster} "
                             f"{run.params['times']} times"), None)


def ping(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    done = int(run.params.get("done", 0)) + 1
    run = run.evolve(params={**run.params, "done": done}).log(now, "step", f"ping {done}")
    if done < int(run.params["times"]):
        return StepResult(run, 0.0)
    return StepResult(run.to(Phase.COMPLETED, now, "completed: pinged",
                             outcome=f"pinged {done} times"), None)


class Ping(WorkflowKind):
    name = "ping"
    verb = "ping"
    usage = "ping <cluster> [times]"
    steps = {Phase.PLANNING: plan_ping, Phase.APPLYING: ping}
    decisions = {"approve": Decision(frozenset({Phase.AWAITING_APPROVAL}), Role.APPROVER),
                 "cancel": Decision(frozenset({Phase.AWAITING_APPROVAL}))}
    buttons = {Phase.AWAITING_APPROVAL: (Button("approve", "Ping it", "primary"),
                                         Button("cancel", "Never mind"))}

    def parse(self, args: list[str], wrong: Callable[[str], InvalidCommand]) -> StartRun:
        if not 1 <= len(args) <= 2 or (len(args) == 2 and not args[1].isdigit()):
            raise wrong("`ping` takes a cluster and a number.")
        return StartRun(self.name, args[0], fields={"params": {
            "times": int(args[1]) if len(args) == 2 else 1}})

    def title(self, run: Run) -> str:
        return f"Ping {run.cluster}"

    def approve(self, run: Run, by: str, now: float) -> Run:
        return run.to(Phase.APPLYING, now, f"approved {by}")


@pytest.fixture
def ping_kind() -> Iterator[None]:
    KINDS.register(Ping())  # the one registration
    yield
    KINDS.unregister("ping")


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    port = free_port_base(15000, 16000)
    emu = SlackEmulator("xoxb-test", {"C0987654321": "mesh-dev", "C111": "x"},
                        {"U0AAAAAAA": "ana", "U2CERLKJA": "roadrunner"},
                        base_url=f"http://127.0.0.1:{port}")
    server = serve(emu.router(), "slack", "127.0.0.1", port)
    yield emu
    server.shutdown()


def test_a_tiny_kind_runs_end_to_end_through_the_registry_alone(
        ping_kind: None, slack: SlackEmulator, prefix: str) -> None:
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    engine = Engine(fleet, store, FleetPorts(fleet))
    client = make_client("xoxb-test", slack.base_url + "/api/")
    enqueued: list[tuple[str, int]] = []
    app = create_app(fleet, engine, client, SECRET,
                     lambda run_id, seq: enqueued.append((run_id, seq)), lambda run_id: None)
    notifier = SlackNotifier(client, store, lambda c: fleet.clusters[c].approvers)
    form = (FIXTURES / "slack/slash_command.form.txt").read_text()
    try:
        help_text = json.loads(dispatch(app, slash_body(form, "help")).body)["text"]
        assert "`/mesh ping <cluster> [times]`" in help_text
        bad = json.loads(dispatch(app, slash_body(form, "ping dev-weu often")).body)["text"]
        assert "Usage: `/mesh ping <cluster> [times]`" in bad

        resp = json.loads(dispatch(app, slash_body(form, "ping dev-weu 2",
                                                   user="U2CERLKJA")).body)
        assert "Checking `dev-weu`" in resp["text"]
        run_id = eventually(lambda: enqueued)[-1][0]  # published after the answer
        advanced = engine.advance(run_id, enqueued[-1][1])
        assert advanced is not None and advanced.run.phase == Phase.AWAITING_APPROVAL
        assert advanced.run.history[0].text == "requested by <@U2CERLKJA>: ping dev-weu"
        notifier.sync(store.get(run_id))
        root = next(e for e in slack.log if e["kind"] == "post"
                    and not e.get("thread_ts"))
        blocks = json.dumps(root["blocks"])
        assert "Ping dev-weu" in blocks and "Ping it" in blocks and "Never mind" in blocks

        payload = json.loads((FIXTURES / "slack/block_actions.message_button.json").read_text())
        payload["api_app_id"] = "A0123456789"
        payload["user"]["id"] = "U0AAAAAAA"
        payload["actions"][0].update(action_id="meshops_approve", value=run_id)
        payload["response_url"] = slack.base_url + "/_sandbox/slack/response/x"
        assert dispatch(app, "payload=" + urllib.parse.quote(json.dumps(payload))).status == 200
        deadline = time.time() + 5
        while store.get(run_id).phase != Phase.APPLYING and time.time() < deadline:
            time.sleep(0.05)  # the click is applied by Bolt's lazy listener
        run = store.get(run_id)
        assert run.phase == Phase.APPLYING and run.approvals[-1].user == "U0AAAAAAA"
        while not run.phase.terminal and time.time() < deadline + 5:
            advanced = engine.advance(run.id, run.seq)
            if advanced is None:  # the click's listener still holds the run's lock
                time.sleep(0.05)
                continue
            run = advanced.run
        assert run.phase == Phase.COMPLETED and run.outcome == "pinged 2 times"
        notifier.sync(run)
        assert any(e["kind"] == "update" and "pinged 2 times" in
                   json.dumps(e.get("blocks")) for e in slack.log)
        # a decision the kind does not declare is refused with what the kind allows
        with pytest.raises(Exception, match="has already ended"):
            engine.decide(run.id, "rollback", "U0AAAAAAA")
    finally:
        keys = list(store.r.scan_iter(prefix + "*"))
        if keys:
            store.r.delete(*keys)
