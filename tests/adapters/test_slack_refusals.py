"""Slack errors that will not heal (a channel the app is not in, one that does not exist or
was archived, a revoked token): the run goes on, the refusal is recorded once — in the
run's Slack state, shown by /mesh status, and in the audit — and tried again only every
ten minutes, so a fixed channel heals by itself. Against the sandbox's Slack emulator."""

from __future__ import annotations

from sandbox.slack import SlackEmulator
from tests.core.test_workflow import new_run
from workers.slack.client import make_client
from workers.slack.notifier import REFUSED_RETRY_S, SlackNotifier
from workers.store.audit import AuditLog
from workers.store.runs import RedisRunStore


def test_a_channel_slack_refuses_is_recorded_once_and_retried_only_later(
        slack: SlackEmulator, store: RedisRunStore, prefix: str) -> None:
    audit = AuditLog(store.r, prefix)
    notifier = SlackNotifier(make_client("xoxb-test", slack.base_url + "/api/"), store,
                             lambda c: ["UAPPROVER"], audit=audit)
    run = new_run().evolve(id="r-0a0a0a0a0a", channel="C404")  # not a channel Slack knows
    store.r.hset(store.key("run", run.id), mapping={"seq": 0, "data": run.model_dump_json()})
    notifier.sync(run, now=1000.0)  # no exception: the run goes on
    state = store.slack_state(run.id)
    assert state["error"] == "chat.postMessage: channel_not_found"
    assert float(state["error_at"]) == 1000.0
    calls = len(slack.calls)
    notifier.sync(run, now=1000.0 + REFUSED_RETRY_S - 1)  # not retried before its time
    assert len(slack.calls) == calls
    notifier.sync(run, now=1000.0 + REFUSED_RETRY_S + 1)  # tried again, still refused
    assert len(slack.calls) == calls + 1
    refusals = [e for e in audit.read(run=run.id) if "Slack refused" in e["what"]]
    assert len(refusals) == 1  # recorded once, not per attempt
    slack.channels["C404"] = "mesh-fixed"  # the channel was fixed
    notifier.sync(run, now=1000.0 + 2 * REFUSED_RETRY_S + 2)
    state = store.slack_state(run.id)
    assert "error" not in state and state["root_ts"]
