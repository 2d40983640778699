"""Enabling the mesh from Slack, end to end: the happy path with injection, and each
preflight refusal (nothing changes)."""

from __future__ import annotations

import pytest

from meshops.demo import RUN_ID_RE, TERMINAL, Harness, enable_demo
from workers.store.runs import RedisRunStore

pytestmark = pytest.mark.e2e


def refused_with(h: Harness, command: str) -> str:
    before = h.slack_log_len()
    resp = h.slash("requester", command)
    run_id = RUN_ID_RE.search(resp.json()["text"]).group(0)  # type: ignore[union-attr]
    assert h.wait_for_phase(run_id, TERMINAL, 60) == "refused"
    return h._wait(lambda: next((e["text"] for e in h.slack_log(before)
                                 if e["kind"] == "ephemeral"
                                 and f"`{command.split()[1]}`" in e["text"]
                                 and "refused" in e["text"]), None), 30, "the refusal")


def test_preflight_refusals(harness: Harness) -> None:
    h = harness
    before = h.control("GET", "/_sandbox/state")
    assert "Open Service Mesh add-on is enabled and cannot coexist" in refused_with(
        h, "enable osm")
    diy = refused_with(h, "enable diy asm-1-99")
    assert "Istio installed outside the add-on: namespace istio-system runs Deployment " \
           "istiod" in diy and "asm-1-99 is not offered in eastus" in diy
    assert "Istio CRDs from another installation: destinationrules.networking.istio.io, " \
           "peerauthentications.security.istio.io, virtualservices.networking.istio.io" in diy
    assert "already enabled (asm-1-" in refused_with(h, "enable dev")
    after = h.control("GET", "/_sandbox/state")
    assert {c: after[c]["revisions"] for c in after} == {c: before[c]["revisions"]
                                                         for c in before}


def test_arm_failure_while_enabling_leaves_the_cluster_as_it_was(harness: Harness) -> None:
    h = harness
    h.control("POST", "/_sandbox/arm-faults", {"fail_operations": 1})
    try:
        resp = h.slash("requester", "enable edge asm-1-25")
        run_id = RUN_ID_RE.search(resp.json()["text"]).group(0)  # type: ignore[union-attr]
        h.click("approver", run_id, "approve", h.wait_for_button(run_id, "approve", 60))
        assert h.wait_for_phase(run_id, TERMINAL, 60) == "failed"
    finally:
        h.control("POST", "/_sandbox/arm-faults", {})
    run = RedisRunStore.from_url(h.redis_url, h.prefix).get(run_id)
    assert "IstioAddonInstallationFailed: istiod did not become ready" in run.outcome
    state = h.control("GET", "/_sandbox/state")["edge"]
    assert state["revisions"] == [] and state["istiod"] == []
    h._wait(lambda: "IstioAddonInstallationFailed" in str(
        (h.root_message(run_id) or {}).get("blocks")), 30, "ARM's error in the root message")


def approve(h: Harness, command: str) -> str:
    resp = h.slash("requester", command)
    run_id = RUN_ID_RE.search(resp.json()["text"]).group(0)  # type: ignore[union-attr]
    h.click("approver", run_id, "approve", h.wait_for_button(run_id, "approve", 60))
    return h.wait_for_phase(run_id, TERMINAL, 120)


def test_enable_ingress_inject_then_disable(harness: Harness) -> None:
    h = harness
    assert enable_demo(h, "edge", 120) == 0  # enable, external ingress gateway, inject 2
    state = h.control("GET", "/_sandbox/state")["edge"]
    assert state["revisions"] == ["asm-1-26"]  # the sandbox's default for Kubernetes 1.31
    assert state["namespaces"]["shop"] == {"istio.io/rev": "asm-1-26"}
    assert state["gateways"] == ["aks-istio-ingressgateway-external-asm-1-26"]
    assert "already on" in refused_with(h, "ingress edge enable external")
    # running pods keep no sidecar until restarted: --restart does it in gated waves
    assert not any(p["revision"] for p in state["pods"] if p["namespace"] == "shop")
    reply = h.ask("requester", "inject edge shop --restart")
    run_id = RUN_ID_RE.search(reply).group(0)  # type: ignore[union-attr]
    h.click("approver", run_id, "approve", h.wait_for_button(run_id, "approve", 60))
    assert h.wait_for_phase(run_id, TERMINAL, 120) == "completed"
    shop = [p for p in h.control("GET", "/_sandbox/state")["edge"]["pods"]
            if p["namespace"] == "shop"]
    assert shop and {p["revision"] for p in shop} == {"asm-1-26"}
    assert not any(p["revision"] for p in h.control("GET", "/_sandbox/state")["edge"]["pods"]
                   if p["namespace"] == "blog")  # only the named namespaces restart
    # disable: refused while namespaces are labelled, listing them
    assert "istio.io/rev label: blog, shop" in refused_with(h, "disable edge")
    assert "no longer injected" in h.ask("requester", "uninject edge shop blog")
    assert approve(h, "ingress edge disable external") == "completed"
    assert h.control("GET", "/_sandbox/state")["edge"]["gateways"] == []
    resp = h.slash("requester", "disable edge")
    run_id = RUN_ID_RE.search(resp.json()["text"]).group(0)  # type: ignore[union-attr]
    root = h.wait_for_button(run_id, "approve", 60)
    approve_button = next(e for b in root["blocks"] if b["type"] == "actions"
                          for e in b["elements"] if e["action_id"] == "meshops_approve")
    assert approve_button["confirm"]["title"]["text"] == "Disable the mesh?"
    h.click("approver", run_id, "approve", root)
    assert h.wait_for_phase(run_id, TERMINAL, 120) == "completed"
    state = h.control("GET", "/_sandbox/state")["edge"]
    assert state["revisions"] == [] and state["istiod"] == []


@pytest.mark.parametrize(("command", "needle"), [
    ("inject dev kube-system", "system namespaces never get sidecars"),
    ("inject dev aks-istio-system", "system namespaces never get sidecars"),
    ("inject dev nowhere", "No namespace nowhere on `dev`"),
    ("inject osm shop", "injection needs exactly one revision"),
])
def test_inject_refusals(harness: Harness, command: str, needle: str) -> None:
    before = harness.control("GET", "/_sandbox/counters")
    assert needle in harness.ask("requester", command)
    assert harness.control("GET", "/_sandbox/counters") == before


def test_inject_refused_during_an_upgrade(harness: Harness) -> None:
    h = harness
    resp = h.slash("requester", "upgrade staging asm-1-26")
    run_id = RUN_ID_RE.search(resp.json()["text"]).group(0)  # type: ignore[union-attr]
    try:
        h.wait_for_button(run_id, "approve", 60)
        assert f"Run `{run_id}` is acting on `staging`" in h.ask("requester",
                                                                  "uninject staging catalog")
        assert h.control("GET", "/_sandbox/state")["staging"]["namespaces"]["catalog"] == {
            "istio.io/rev": "asm-1-25"}
    finally:
        h.slash("requester", f"cancel {run_id}")
    assert RedisRunStore.from_url(h.redis_url, h.prefix).get(run_id).phase.value == "cancelled"
