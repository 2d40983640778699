"""World fields for what real clusters and channels hold (issue 10): a team's MeshConfig
(AKS doc ``istio-meshconfig.md``), a node pool operation that keeps the cluster busy (ARM
409 ``OperationNotAllowed``), Slack channels the app cannot post to (``not_in_channel``,
``is_archived``). Each behaves as the real system does, through meshops' own adapters."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox.app import Sandbox
from sandbox.slack import SlackEmulator
from sandbox.world import ApiError, World
from sandbox.worldfile import WorldError, build, load
from tests.conftest import FIXTURES, free_port_base
from tests.sandbox.conftest import running
from workers.config import load_fleet
from workers.wiring import FleetPorts
from workflows.errors import TemporaryError
from workflows.model import Run
from workflows.operations import BUSY_POLL_S, converge_revisions

WORLDS = FIXTURES / "worlds"
MC = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-busy/providers/"
      "Microsoft.ContainerService/managedClusters/aks-busy")


def cluster(**kw: Any) -> dict[str, Any]:
    return {"name": "aks-x", "location": "westeurope", "kubernetes_version": "1.31.2",
            "revisions": ["asm-1-25"], **kw}


def write(tmp_path: Path, world: dict[str, Any]) -> Path:
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(world))
    return path


# ------------------------------------------------------------------ MeshConfig


def test_mesh_config_is_the_shared_configmap_a_team_applies(tmp_path: Path) -> None:
    mesh = {"accessLogFile": "/dev/stdout",
            "defaultConfig": {"holdApplicationUntilProxyStarts": True}}
    world = World()
    build(world, load(write(tmp_path, {"clusters": [cluster(mesh_config={
        "asm-1-25": mesh, "asm-1-26": {"accessLogFile": ""}})]})))
    cm = world.get("aks-x", "ConfigMap", "aks-istio-system", "istio-shared-configmap-asm-1-25")
    assert cm is not None and yaml.safe_load(cm["data"]["mesh"]) == mesh
    prepared = world.get("aks-x", "ConfigMap", "aks-istio-system",
                         "istio-shared-configmap-asm-1-26")  # for the canary, ahead of it
    assert prepared is not None and yaml.safe_load(prepared["data"]["mesh"]) == {
        "accessLogFile": ""}


def test_the_add_on_denies_blocked_meshconfig_fields() -> None:
    world = World()
    world.add_cluster("c1", subscription="s", resource_group="rg", location="westeurope",
                      kubernetes_version="1.31.2", revisions=["asm-1-25"])

    def shared(mesh: str, name: str = "istio-shared-configmap-asm-1-26") -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "aks-istio-system"},
                "data": {"mesh": mesh}}
    for mesh, needle in (("configSources: []", "'configSources' is blocked"),
                         ("defaultConfig:\n  image: {}", "defaultConfig.'image' is blocked"),
                         ("accessLogFile:\t/dev/stdout\n\tx: 1", "mesh is not valid YAML"),
                         ("- a", "mesh must be a MeshConfig mapping")):
        with pytest.raises(ApiError) as err:
            world.create("c1", shared(mesh))
        assert err.value.code == 400, mesh
        assert 'admission webhook "azure-service-mesh-ccp-validating-webhook.azmk8s.io" ' \
               "denied the request" in err.value.message and needle in err.value.message
    # the canary's may be made before its revision runs (the doc asks for exactly that)
    world.create("c1", shared("accessLogFile: /dev/stdout"))
    with pytest.raises(ApiError, match="'outboundTrafficPolcy' is blocked"):
        world.patch("c1", "ConfigMap", "aks-istio-system", "istio-shared-configmap-asm-1-26",
                    {"data": {"mesh": "outboundTrafficPolcy: {mode: REGISTRY_ONLY}"}})
    world.patch("c1", "ConfigMap", "aks-istio-system", "istio-shared-configmap-asm-1-26",
                {"data": {"mesh": "outboundTrafficPolicy: {mode: REGISTRY_ONLY}"}})
    # other ConfigMaps are not the add-on's business
    world.create("c1", shared("configSources: []", name="istio-asm-1-25-mine"))


@pytest.mark.parametrize(("mesh_config", "needles"), [
    ({"asm-1-24": {"accessLogFile": "/dev/stdout"}},
     ["clusters[0].mesh_config.asm-1-24: asm-1-24 is neither a revision this cluster runs "
      "(its revisions: asm-1-25) nor one it can upgrade to (asm-1-26"]),
    ({"asm-1-25": {"configSources": []}},
     ["clusters[0].mesh_config.asm-1-25: MeshConfig field 'configSources' is blocked",
      "admission control denies it"]),
    ({"asm-1-25": {"defaultConfig": "hold"}},
     ["defaultConfig must be a ProxyConfig mapping, got str"]),
    ({"asm-1-25": ["accessLogFile"]}, ["clusters[0].mesh_config.asm-1-25: Input should be a "
                                       "valid dictionary"]),
])
def test_a_wrong_mesh_config_says_where_and_what(tmp_path: Path, mesh_config: Any,
                                                 needles: list[str]) -> None:
    with pytest.raises(WorldError) as err:
        load(write(tmp_path, {"clusters": [cluster(mesh_config=mesh_config)]}))
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_mesh_config_of_a_cluster_without_the_mesh_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorldError, match="its revisions: none, the mesh is off"):
        load(write(tmp_path, {"clusters": [cluster(revisions=[], mesh_config={
            "asm-1-25": {"accessLogFile": "/dev/stdout"}})]}))


# ------------------------------------------------------------------ a busy cluster


@pytest.mark.parametrize(("operation", "needle"), [
    ({"kind": "upgrade node pool", "seconds": 20},
     "'upgrade node pool' is not a node pool operation the sandbox emulates (update node "
     "pool; an upgrade would drain and replace the nodes"),
    ({"kind": "update node pool", "seconds": 0}, "seconds: Input should be greater than 0"),
])
def test_a_wrong_operation_in_progress_says_what(tmp_path: Path, operation: dict[str, Any],
                                                 needle: str) -> None:
    with pytest.raises(WorldError) as err:
        load(write(tmp_path, {"clusters": [cluster(operation_in_progress=operation)]}))
    assert needle in str(err.value) and "operation_in_progress" in str(err.value)


BUSY_S = 60.0  # the test moves the world's clock to its end rather than wait


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    path = tmp_path_factory.mktemp("busy-world") / "world.yaml"
    path.write_text(yaml.safe_dump({"clusters": [cluster(
        name="aks-busy", alias="busy", resource_group="rg-busy",
        operation_in_progress={"kind": "update node pool", "seconds": BUSY_S})]}))
    with running(Sandbox(Path(tmp_path_factory.mktemp("busy")),
                         free_port_base(16000, 18900, 10), operation_s=0.5, rollout_s=0.3,
                         with_prometheus=False, world_file=path)) as sb:
        yield sb


def test_a_node_pool_update_keeps_the_cluster_busy_until_it_ends(busy: Sandbox) -> None:
    ports = FleetPorts(load_fleet(busy.state_dir / "fleet.yaml"))
    token = busy.arm.mint("https://management.azure.com/")[0]
    body = busy.world.clusters["aks-busy"].arm
    put = requests.put(busy.url["arm"] + MC, params={"api-version": "2026-08-01"}, json=body,
                       headers={"Authorization": f"Bearer {token}"},
                       verify=str(busy.state_dir / "tls" / "arm.pem"), timeout=5)
    assert put.status_code == 409, put.text
    error = put.json()["error"]
    assert error["code"] == "OperationNotAllowed"
    assert error["message"].startswith(
        "Operation is not allowed because there's an in progress update node pool operation "
        "(operation ID: ")
    assert "on the agent pool nodepool1 started on UTC " in error["message"]
    assert error["message"].endswith(
        "Please wait for it to finish before starting a new operation. You can also use "
        "'az aks nodepool operation-abort ...' to abort the ongoing operation.")
    mesh = ports.mesh.get_mesh("busy")
    assert mesh.provisioning_state == "Updating"
    assert body["properties"]["agentPoolProfiles"][0]["provisioningState"] == "Updating"
    with pytest.raises(TemporaryError, match="409 OperationNotAllowed"):
        ports.mesh.set_revisions("busy", ["asm-1-25", "asm-1-26"])
    # meshops waits, saying so once, and goes on when the node pool update has ended
    now = time.time()
    run = Run(id="r-1", cluster="busy", requester="U1", channel="C1",
              canary_revision="asm-1-26", stable_revision="asm-1-25",
              created_at=now, updated_at=now)
    desired = ["asm-1-25", "asm-1-26"]
    run, wait = converge_revisions(run, ports, desired, now)
    assert wait == BUSY_POLL_S
    run, wait = converge_revisions(run, ports, desired, now + 1)
    assert [e.text for e in run.history] == [
        "waiting: the cluster is Updating (another operation runs on it); meshops looks "
        f"again every {BUSY_POLL_S:.0f}s and goes on when it has finished"]
    op = busy.world.clusters["aks-busy"].operation
    assert op is not None and op.kind == "update node pool"
    busy.world.reconcile(now=op.due)  # the node pool update ends
    assert ports.mesh.get_mesh("busy").provisioning_state == "Succeeded"
    assert body["properties"]["agentPoolProfiles"][0]["provisioningState"] == "Succeeded"
    run, wait = converge_revisions(run, ports, desired, time.time())
    assert run.history[-1].kind == "arm" and run.operation is not None


def test_an_operation_that_starts_at_approval_waits_for_the_demo(tmp_path: Path) -> None:
    """``starts: approval``: the cluster is idle until the demo (as it clicks Approve)
    starts the node pool update through the control API; a second one while it runs is
    refused with 409, as ARM refuses it; a cluster not in the world is 404."""
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump({"clusters": [cluster(
        name="aks-later", alias="later", resource_group="rg-later",
        operation_in_progress={"kind": "update node pool", "seconds": 30,
                               "starts": "approval"})]}))
    with running(Sandbox(tmp_path / "sb", free_port_base(16000, 18900, 10), operation_s=0.5,
                         rollout_s=0.3, with_prometheus=False, world_file=path)) as sb:
        assert sb.world.clusters["aks-later"].operation is None
        info = json.loads((sb.state_dir / "sandbox.json").read_text())
        assert info["clusters"]["later"]["operation_at_approval"] == {
            "kind": "update node pool", "seconds": 30.0}
        control = sb.url["control"] + "/_sandbox/operations"
        started = requests.post(control, json={"cluster": "later", "seconds": 30,
                                               "kind": "update node pool"}, timeout=5)
        assert started.status_code == 200, started.text
        op = sb.world.clusters["aks-later"].operation
        assert op is not None and op.kind == "update node pool" and op.due > time.time() + 20
        again = requests.post(control, json={"cluster": "later"}, timeout=5)
        assert again.status_code == 409 and "busy: update node pool" in again.text
        unknown = requests.post(control, json={"cluster": "nope"}, timeout=5)
        assert unknown.status_code == 404 and "no cluster 'nope'" in unknown.text


# ------------------------------------------------------------------ Slack channels


def test_slack_refuses_posts_where_the_app_is_not_and_in_archived_channels() -> None:
    slack = SlackEmulator("xoxb-t", {"C0IN": "in", "C0OUT": "out", "C0OLD": "old"}, {"U1": "u"},
                          not_member={"C0OUT"}, archived={"C0OLD"})
    post = {"text": "hi"}
    assert slack.m_chat_postMessage({"channel": "C0IN", **post})["ok"]
    assert slack.m_chat_postMessage({"channel": "C0OUT", **post}) == {
        "ok": False, "error": "not_in_channel"}
    assert slack.m_chat_postMessage({"channel": "C0OLD", **post}) == {
        "ok": False, "error": "is_archived"}
    for channel, error in (("C0OUT", "not_in_channel"), ("C0OLD", "is_archived")):
        assert slack.m_chat_postEphemeral({"channel": channel, "user": "U1", **post})[
            "error"] == error
    assert slack.m_chat_update({"channel": "C0OLD", "ts": "1.0", **post})["error"] == \
        "is_inactive"
    assert slack.m_conversations_history({"channel": "C0OUT"})["error"] == "not_in_channel"
    assert slack.m_conversations_replies({"channel": "C0OUT", "ts": "1.0"})["error"] == \
        "not_in_channel"
    assert slack.m_conversations_history({"channel": "C0OLD"})["ok"]  # archived: readable
    assert not [e for e in slack.log if e.get("channel") != "C0IN"]


def test_a_world_channel_the_app_cannot_post_to(tmp_path: Path) -> None:
    with running(Sandbox(tmp_path, free_port_base(16000, 18900, 10), with_prometheus=False,
                         world_file=WORLDS / "unreachable-channels.yaml")) as sb:
        client = WebClient(token=sb.bot_token, base_url=sb.url["slack"] + "/api/")
        with pytest.raises(SlackApiError, match="not_in_channel"):
            client.chat_postMessage(channel="C0QUIET", text="plan")
        with pytest.raises(SlackApiError, match="is_archived"):
            client.chat_postMessage(channel="C0GONE", text="plan")
        info = yaml.safe_load((sb.state_dir / "sandbox.json").read_text())
        assert {k: c["app_can_post"] for k, c in info["clusters"].items()} == {
            "quiet": False, "gone": False}
