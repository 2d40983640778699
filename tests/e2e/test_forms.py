"""``/mesh upgrade`` without arguments opens a form (issue 14), through the real bot, worker
and the sandbox's Slack: the form offers the clusters the person may act on, a worker fills
in the revisions ARM offers the chosen one, and submitting it is typing the command — the
same checks (shown on the field), the same run."""

from __future__ import annotations

from typing import Any

import pytest

from meshops.demo import RUN_ID_RE, TERMINAL, Harness
from tests.conftest import eventually

pytestmark = pytest.mark.e2e


def block(view: dict[str, Any], block_id: str) -> dict[str, Any] | None:
    return next((b for b in view["blocks"] if b.get("block_id") == block_id), None)


def options(view: dict[str, Any], block_id: str) -> list[str]:
    found = block(view, block_id)
    assert found is not None, [b.get("block_id") for b in view["blocks"]]
    return [o["value"] for o in found["element"]["options"]]


def chosen(value: str) -> dict[str, Any]:
    return {"type": "static_select",
            "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value}}


def typed(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def test_the_upgrade_form_offers_what_arm_offers_and_submits_the_command(
        harness: Harness) -> None:
    h = harness
    before = h.slack_log_len()
    resp = h.slash("requester", "upgrade")
    assert resp.status_code == 200 and not resp.text.strip()  # nothing to say: a form opens
    view = h.modal_of("requester", before)
    assert view["callback_id"] == "meshops_upgrade_form"
    assert options(view, "cluster") == ["dev", "diy", "edge", "osm", "prod", "staging"]
    assert block(view, "revision") is None  # not before a cluster is chosen

    # choosing a cluster has a worker read ARM and fill in what it may move to
    h.choose("requester", view, "cluster", chosen("dev"))
    view = eventually(lambda: (v := h.modal(view["id"])) and block(v, "revision") and v, 30)
    # ARM's meshUpgradeProfiles for asm-1-25: both minors ahead; nothing chosen for them
    assert options(view, "revision") == ["asm-1-26", "asm-1-27"]
    assert "initial_option" not in block(view, "revision")["element"]  # type: ignore[index]
    notes = " ".join(e["text"] for b in view["blocks"] if b["type"] == "context"
                     for e in b["elements"])
    assert "`dev` runs asm-1-25 on Kubernetes" in notes
    # what the person chose is still chosen after the worker's views.update
    assert view["state"]["values"]["cluster"]["meshops_form_cluster"]["selected_option"][
        "value"] == "dev"

    # no revision chosen: said on the revision field
    answer = h.submit("requester", view["id"])
    assert list(answer["errors"]) == ["revision"], answer
    # a bad bake: the parser's refusal on the bake field, the form stays open, no run
    h.choose("requester", view, "revision", chosen("asm-1-26"))
    h.choose("requester", view, "bake", typed("soon"))
    answer = h.submit("requester", view["id"])
    assert answer["response_action"] == "errors"
    assert answer["errors"] == {"bake": "`soon` is not a duration; write it like `30s`, `10m` "
                                       "or `1h`."}
    # an interval longer than the bake: on the interval field
    h.choose("requester", view, "bake", typed("6s"))
    h.choose("requester", view, "interval", typed("1m"))
    answer = h.submit("requester", view["id"])
    assert list(answer["errors"]) == ["interval"], answer

    # fixed: accepted, the form closes and the answer is the typed command's
    h.choose("requester", view, "interval", typed("3s"))
    after = h.slack_log_len()
    assert h.submit("requester", view["id"]) == {}
    reply = eventually(lambda: [e["text"] for e in h.slack_log(after)
                                if e["kind"] == "response"], 30)
    m = RUN_ID_RE.search(reply[0])
    assert m, reply
    run_id = m.group(0)
    root = h.wait_for_button(run_id, "approve", 60)  # an ordinary run of dev
    assert "awaiting approval" in root["text"]
    h.slash("requester", f"cancel {run_id}")
    assert h.wait_for_phase(run_id, TERMINAL, 60) == "cancelled"
