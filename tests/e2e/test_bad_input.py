"""Bad input through the real bot: each gets a clear answer and changes nothing."""

from __future__ import annotations

import time
import urllib.parse

import pytest

from meshops.demo import TERMINAL, Harness
from tests.e2e.test_scenarios import request_upgrade
from workers.store.runs import RedisRunStore

pytestmark = pytest.mark.e2e


def text(resp) -> str:  # type: ignore[no-untyped-def]
    assert resp.status_code == 200, resp.text
    return str(resp.json()["text"])


def test_bad_signature_and_old_timestamp_are_401(harness: Harness) -> None:
    body = urllib.parse.urlencode({"command": "/mesh", "text": "status", "user_id": "U0ANA",
                                   "channel_id": "C0DEVMESH", "team_id": "T0SANDBOX"})
    assert harness.post_signed(body, secret="not-the-secret").status_code == 401
    assert harness.post_signed(body, timestamp=int(time.time()) - 600).status_code == 401
    assert harness.post_signed(body).status_code == 200


@pytest.mark.parametrize(("command", "needle"), [
    ("upgrade nope asm-1-26", "Unknown cluster `nope`. Known clusters: `dev`, `diy`, `edge`, "
                              "`osm`, `prod`, `staging`."),
    ("upgrade dev 1.26", "Did you mean `asm-1-26`?"),
    ("upgrade dev", "Usage: `/mesh upgrade <cluster> <revision>"),
    ("frobnicate", "Unknown command `frobnicate`"),
    ("approve r-0000000000", "No run `r-0000000000`"),
    ("runs r-0000000000", "No run `r-0000000000`"),
    ("upgrade <@U0BEN> asm-1-26", "not mentions or links"),
    ("status " + "x" * 4000, "4,007 characters long"),
    ("approve r-0123456789 now", "`approve` takes one run id"),
])
def test_commands_refused_with_what_would_be_right(harness: Harness, command: str,
                                                   needle: str) -> None:
    store = RedisRunStore.from_url(harness.redis_url, harness.prefix)
    before = len(store.list_runs())
    assert needle in text(harness.slash("requester", command))
    assert len(store.list_runs()) == before


def test_invalid_target_is_refused_with_the_valid_ones(harness: Harness) -> None:
    h = harness
    resp = h.slash("requester", "upgrade staging asm-1-24")
    run_id = text(resp).split("run `")[1].split("`")[0]
    assert h.wait_for_phase(run_id, TERMINAL, 60) == "refused"
    # a refusal before the run's message is posted goes to the requester alone
    # (ephemeral); once the message is in the channel (the plan was being drawn) it is a
    # line of the run's thread: which one depends on how soon the worker synced Slack
    def refusals() -> list[dict[str, str]]:
        return [e for e in h.slack_log() if "asm-1-24" in e["text"]
                and "Valid targets" in e["text"]
                and (e["kind"] == "ephemeral" or e.get("thread_ts") not in (None, "None"))]

    h._wait(lambda: refusals(), 30, "the refusal, to the requester or in the run's thread")
    refusal = refusals()[-1]
    if refusal["kind"] == "ephemeral":
        assert refusal["user"] == "U0ANA"
    else:
        assert "requested by <@U0ANA>" in refusal["text"]
    assert "Valid targets: `asm-1-26`, `asm-1-27`" in refusal["text"]
    assert h.control("GET", "/_sandbox/state")["staging"]["revisions"] == ["asm-1-25"]
    store = RedisRunStore.from_url(h.redis_url, h.prefix)
    assert store.active_run("staging") is None  # the lease is released


def test_clicks_that_may_not_change_anything(harness: Harness) -> None:
    h = harness
    store = RedisRunStore.from_url(h.redis_url, h.prefix)
    run_id = request_upgrade(h, "dev")
    root = h.wait_for_button(run_id, "approve", 60)
    seq = store.get(run_id).seq

    # a second upgrade of the same cluster while this one holds it
    assert f"Run `{run_id}` is already acting on cluster `dev`" in text(
        h.slash("requester", "upgrade dev asm-1-26"))

    def replies() -> list[str]:
        return [e["text"] for e in h.slack_log() if e["kind"] == "response"]

    n = len(replies())
    assert h.click("bystander", run_id, "approve", root).status_code == 200
    assert h.click("requester", run_id, "approve", root).status_code == 200
    h._wait(lambda: len(replies()) >= n + 2, 20, "two ephemeral replies")
    got = replies()[n:]
    assert any("Only approvers of `dev` may approve" in r for r in got)
    assert any("another approver must approve it (four eyes)" in r for r in got)
    assert store.get(run_id).seq == seq and store.get(run_id).phase.value == "awaiting_approval"

    # the requester cancels by typing; a late click on the finished run is told what happened
    assert "cancelled" in text(h.slash("requester", f"cancel {run_id}"))
    n = len(replies())
    h.click("approver", run_id, "approve", root)
    h._wait(lambda: len(replies()) > n, 20, "the reply to a late click")
    assert "has already ended: cancelled (cancelled by <@U0ANA>)" in replies()[-1]
    assert store.get(run_id).phase.value == "cancelled"
    assert store.active_run("dev") is None

    # the audit stream kept all of it, refusals included, after the run ended
    from workers.store.audit import AuditLog
    trail = [(e["kind"], e["who"], e["what"], e["outcome"].split(":")[0])
             for e in AuditLog(store.r, h.prefix).read(run=run_id)]
    assert ("click", "U0CARL", "approve", "refused") in trail
    assert ("click", "U0ANA", "approve", "refused") in trail
    assert ("decision", "U0ANA", "cancel", "ok") in trail
    assert ("click", "U0BEN", "approve", "refused") in trail
    assert any(k == "step" and "plan:" in what for k, _, what, _ in trail)
    assert h.control("GET", "/_sandbox/state")["dev"]["revisions"] in (["asm-1-25"],
                                                                        ["asm-1-26"])


def test_read_only_commands_change_nothing(harness: Harness) -> None:
    h = harness
    before = h.control("GET", "/_sandbox/counters")
    plan = h.ask("requester", "plan prod asm-1-27 --wave-size=3 --bake=5m")
    assert "Plan (dry run, nothing changed)" in plan and "asm-1-25 → asm-1-27" in plan
    assert "wave 0 (pilot): accounts — 6 workloads" in plan
    assert "wave 1: catalog, checkout, storefront — 18 workloads" in plan
    assert "not migrated (istio-injection=enabled is ignored by the add-on): legacy" in plan
    assert "estimated duration: about" in plan
    assert "No plan" in h.ask("requester", "plan prod asm-1-24")
    revisions = h.ask("requester", "revisions prod")
    assert "`asm-1-27` Kubernetes 1.31, 1.32, 1.33, 1.34; newest, no upgrade yet" in revisions
    assert "can upgrade to: `asm-1-26`, `asm-1-27`" in revisions
    assert "Unknown cluster `nope`" in text(h.slash("requester", "revisions nope"))
    store = RedisRunStore.from_url(h.redis_url, h.prefix)
    assert store.active_run("prod") is None
    assert h.control("GET", "/_sandbox/counters") == before
    assert h.control("GET", "/_sandbox/state")["prod"]["revisions"] == ["asm-1-25"]
