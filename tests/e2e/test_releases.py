"""Release notices end to end: a note published while the sandbox runs reaches the channels
of the clusters it concerns through a real worker and beat, and its button leads to a plan;
a relay's signed push is accepted, badly signed or malformed ones are refused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from meshops.demo import Harness, sign
from tests.conftest import FIXTURES, REDIS_URL, free_port_base

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def rh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    base = free_port_base(26000, 32000, 100)  # below the ephemeral port range
    h = Harness(Path(tmp_path_factory.mktemp("release")), port_base=base, bot_port=base + 80,
                redis_url=REDIS_URL, echo=lambda line: None, unreleased=["asm-1-27"],
                changelog=FIXTURES / "aks/CHANGELOG.md")
    h.start()
    try:
        yield h
    finally:
        h.stop()


def test_new_revision_reaches_every_channel_and_leads_to_a_plan(rh: Harness) -> None:
    # history (the changelog fixture, 19 events) is learned silently on the first poll
    channels, plan = rh.release_flow("asm-1-27")
    assert channels == {"C0DEVMESH", "C0STGMESH", "C0PRDMESH"}
    assert "Plan (dry run, nothing changed)*: `dev` asm-1-25 → asm-1-27" in plan
    notices = [e for e in rh.slack_log() if e["kind"] == "post" and "asm-1-" in e["text"]]
    assert len(notices) == 3  # nothing from the 2025 history


def test_pushed_release(rh: Harness) -> None:
    url = f"http://127.0.0.1:{rh.bot_port}/releases/push"
    body = json.dumps({"tag_name": "2026-11-22", "name": "Release 2026-11-22",
                       "body": "* Istio add-on revision asm-1-25 is patched to 1.25.7."})

    def push(data: str, secret: str | None = rh.push_secret, ts: int | None = None
             ) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if secret:
            s = sign(secret, data, ts)
            headers.update({"X-Meshops-Request-Timestamp": s["X-Slack-Request-Timestamp"],
                            "X-Meshops-Signature": s["X-Slack-Signature"]})
        return requests.post(url, data=data, headers=headers, timeout=10)

    assert push(body, secret=None).status_code == 401
    assert push(body, secret="wrong").status_code == 401
    assert push(body, ts=int(time.time()) - 600).status_code == 401
    assert push("<html>oops</html>").status_code == 400
    assert push(body).status_code == 202

    def patched() -> list[dict]:
        return [e for e in rh.slack_log() if "patched to *1.25.7*" in e.get("text", "")]

    rh._wait(lambda: len(patched()) == 3, 60, "the patch notices")
    assert push(body).status_code == 202  # a replayed push posts nothing twice
    time.sleep(3)
    assert len(patched()) == 3


def test_restart_workloads_button_rolls_the_patch_over(rh: Harness) -> None:
    """After a patch notice, *Restart workloads* runs a patch rollover: approved, in waves
    behind the metric gate, until every sidecar runs the new patch."""
    h = rh
    def offers() -> list[dict]:
        return [e for e in h.slack_log() if "patched to *1.25.7*" in e.get("text", "")
                and e["channel"] == "C0DEVMESH" and "meshops_rollover" in str(e["blocks"])]

    # the notice came before AKS rolled the control plane: no offer yet (pushed above)
    assert not offers()
    h.control("POST", "/_sandbox/revisions/asm-1-25/patch", {"version": "1.25.7"})
    # once istiod-asm-1-25 runs 1.25.7, the restart is offered
    notice = h._wait(offers, 60, "the patch rollover offer in dev")[0]
    button = next(el for b in notice["blocks"] if b["type"] == "actions"
                  for el in b["elements"] if el["action_id"] == "meshops_rollover")
    assert button["value"] == "dev|asm-1-25|1.25.7"
    before = h.slack_log_len()
    h.click_button("requester", button, notice)
    reply = h._wait(lambda: [e["text"] for e in h.slack_log(before) if e["kind"] == "response"],
                    30, "the reply to the click")[0]
    run_id = reply.split("run `")[1].split("`")[0]
    root = h.wait_for_button(run_id, "approve", 60)
    assert root["text"].startswith("Patch rollover of dev: asm-1-25 → 1.25.7")
    h.click("approver", run_id, "approve", root)
    # bake and interval come from the sandbox fleet defaults (6 s, 3 s)
    assert h.wait_for_phase(run_id, {"completed", "paused", "failed"}, 240) == "completed"
    state = h.control("GET", "/_sandbox/state")["dev"]
    app = [p for p in state["pods"] if p["namespace"] != "default" and p["revision"]]
    assert app and {p["proxy_image"].rsplit(":", 1)[1] for p in app} == {"1.25.7-distroless"}
    assert state["revisions"] == ["asm-1-25"]
