"""The ARM emulator through the product's AksMeshApi on azure-mgmt-containerservice with
DefaultAzureCredential; contract tests compare its bodies with the real examples in
../shared/data/aks/arm/ when they are there."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
import requests
from azure.mgmt.containerservice.models import ManagedCluster, MeshUpgradeProfile

from sandbox.app import Sandbox
from workers.arm.aks import TickPolling
from workers.wiring import FleetPorts
from workflows.errors import ArmError, TemporaryError
from workflows.model import Operation, Run
from workflows.operations import OPERATION_FIRST_LOOK_S, converge_revisions

ARM = "aks/arm"


def arm_get(sb: Sandbox, ports: FleetPorts, path: str) -> requests.Response:
    token = ports.mesh.credential.get_token("https://management.azure.com/.default").token
    return requests.get(sb.url["arm"] + path, params={"api-version": "2026-08-01"},
                        headers={"Authorization": f"Bearer {token}"},
                        verify=str(sb.state_dir / "tls" / "arm.pem"), timeout=5)


DEV = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-mesh-dev/"
       "providers/Microsoft.ContainerService/managedClusters/aks-dev-westus2")


def spec_example(shared_data: Path, name: str) -> dict:
    """The 200 body of a REST spec example in ../shared/data/aks/arm/."""
    return json.loads((shared_data / ARM / name).read_text())["responses"]["200"]["body"]


def shape(value: object) -> object:
    """The keys of a JSON document, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


REVISION_PROFILES = ("/subscriptions/00000000-0000-0000-0000-000000000000/providers/"
                     "Microsoft.ContainerService/locations/westus2/meshRevisionProfiles")


def test_mesh_revision_profiles(sandbox: Sandbox, ports: FleetPorts) -> None:
    ours = arm_get(sandbox, ports, REVISION_PROFILES).json()
    assert shape(ours) == {"value": [{
        "id": "str", "name": "str", "type": "str",
        "properties": {"meshRevisions": [{
            "revision": "str", "upgrades": ["str"],
            "compatibleWith": [{"name": "str", "versions": ["str"]}]}]}}]}
    revisions = ours["value"][0]["properties"]["meshRevisions"]
    assert [r["revision"] for r in revisions] == ["asm-1-24", "asm-1-25", "asm-1-26", "asm-1-27"]
    assert "upgrades" not in revisions[-1]  # the newest revision has none, as in the recording
    assert {c["name"] for c in revisions[0]["compatibleWith"]} == {"KubernetesOfficial",
                                                                   "AKSLongTermSupport"}


@pytest.mark.contract
def test_mesh_revision_profiles_have_the_shape_of_the_real_recording(
        sandbox: Sandbox, ports: FleetPorts, shared_data: Path) -> None:
    real = json.loads((shared_data / ARM / "real_meshRevisionProfiles_westus2_2024-07-03_from_"
                                           "cli_recording.json").read_text())
    assert shape(arm_get(sandbox, ports, REVISION_PROFILES).json()) == shape(real)


def test_mesh_upgrade_profile(sandbox: Sandbox, ports: FleetPorts) -> None:
    ours = arm_get(sandbox, ports, DEV + "/meshUpgradeProfiles/istio").json()
    assert shape(ours) == {"id": "str", "name": "str", "type": "str", "properties": {
        "revision": "str", "upgrades": ["str"],
        "compatibleWith": [{"name": "str", "versions": ["str"]}]}}
    assert MeshUpgradeProfile(ours).properties.upgrades == ["asm-1-26", "asm-1-27"]
    assert ports.mesh.upgrade_targets("dev") == ["asm-1-26", "asm-1-27"]


@pytest.mark.contract
def test_mesh_upgrade_profile_matches_the_spec_example(sandbox: Sandbox, ports: FleetPorts,
                                                       shared_data: Path) -> None:
    example = spec_example(shared_data, "ManagedClustersGet_MeshUpgradeProfile.json")
    ours = arm_get(sandbox, ports, DEV + "/meshUpgradeProfiles/istio").json()
    assert shape(ours) == shape(example)
    # the SDK reads both the same way
    assert MeshUpgradeProfile(example).properties.upgrades == ["asm-1-18"]
    assert MeshUpgradeProfile(ours).properties.upgrades == ["asm-1-26", "asm-1-27"]


def test_managed_cluster_body(sandbox: Sandbox, ports: FleetPorts) -> None:
    ours = arm_get(sandbox, ports, DEV).json()
    our_mesh = ManagedCluster(ours).service_mesh_profile
    assert (our_mesh.mode, our_mesh.istio.revisions) == ("Istio", ["asm-1-25"])
    assert ours["id"] == DEV and ours["properties"]["provisioningState"] == "Succeeded"
    assert set(ours["properties"]["serviceMeshProfile"]) == {"mode", "istio"}


@pytest.mark.contract
def test_managed_cluster_body_reads_like_the_spec_example(sandbox: Sandbox, ports: FleetPorts,
                                                          shared_data: Path) -> None:
    example = spec_example(shared_data, "ManagedClustersCreate_AzureServiceMesh.json")
    ours = arm_get(sandbox, ports, DEV).json()
    real_mesh = ManagedCluster(example).service_mesh_profile
    our_mesh = ManagedCluster(ours).service_mesh_profile
    assert (real_mesh.mode, real_mesh.istio.revisions) == ("Istio", ["asm-1-17"])
    assert (our_mesh.mode, our_mesh.istio.revisions) == ("Istio", ["asm-1-25"])
    assert set(ours) <= set(example) | {"identity", "sku", "tags"}
    assert set(ours["properties"]["serviceMeshProfile"]) == \
        set(example["properties"]["serviceMeshProfile"])


def poll(ports: FleetPorts, token: str) -> tuple[str, dict]:
    """One poll of ``token``'s operation by azure-core's ARM poller: the URL it chose to
    poll and the status body ARM answered."""
    cfg = ports.fleet.cluster("dev")
    polling = TickPolling()
    ports.aks.client(cfg.subscription).managed_clusters.begin_create_or_update(
        cfg.resource_group, cfg.name, None, continuation_token=token, polling=polling)
    assert polling.step()
    response = polling.last_response().http_response
    return response.request.url, response.json()


def fault(sandbox: Sandbox, **body: object) -> None:
    requests.post(sandbox.url["control"] + "/_sandbox/arm-faults", json=body,
                  timeout=5).raise_for_status()


@pytest.mark.contract
def test_operation_status_bodies_have_the_keys_of_the_real_recording(
        sandbox: Sandbox, ports: FleetPorts, shared_data: Path) -> None:
    real = json.loads((shared_data / ARM / "real_async_operation_bodies_from_cli_recording.json")
                      .read_text())
    token = ports.mesh.set_revisions("dev", ["asm-1-25", "asm-1-26"])
    assert token
    url, body = poll(ports, token)
    assert "/operations/" in url and "api-version=2016-03-30" in url  # Azure-AsyncOperation's
    assert set(body) == set(real["poll_in_progress"])
    time.sleep(0.7)
    assert set(poll(ports, token)[1]) == set(real["poll_succeeded"])


def test_canary_lifecycle_with_long_running_operations(sandbox: Sandbox, ports: FleetPorts
                                                       ) -> None:
    mesh = ports.mesh
    token = mesh.set_revisions("dev", ["asm-1-25", "asm-1-26"])
    assert token
    assert mesh.get_mesh("dev").provisioning_state == "Updating"
    with pytest.raises(TemporaryError, match="409 OperationNotAllowed"):
        mesh.set_revisions("dev", ["asm-1-25", "asm-1-27"])
    assert mesh.operation_status("dev", token).status == "InProgress"
    time.sleep(0.7)
    status = mesh.operation_status("dev", token)
    assert status.status == "Succeeded"
    state = mesh.get_mesh("dev")
    assert (state.revisions, state.provisioning_state) == (["asm-1-25", "asm-1-26"], "Succeeded")
    assert ports.cluster_api("dev").control_plane_revisions() == {"asm-1-25": True,
                                                                  "asm-1-26": True}
    mesh.set_revisions("dev", ["asm-1-26"])
    time.sleep(0.7)
    assert mesh.get_mesh("dev").revisions == ["asm-1-26"]
    assert ports.cluster_api("dev").control_plane_revisions() == {"asm-1-26": True}


def test_an_operation_is_followed_by_its_token_from_any_worker(sandbox: Sandbox,
                                                               ports: FleetPorts) -> None:
    """The token is all a worker needs: each poll here is a new AksMeshApi (a worker after a
    restart), asks ARM once and returns at once, InProgress until ARM says Succeeded."""
    token = ports.mesh.set_revisions("dev", ["asm-1-25", "asm-1-26"])
    assert token and not token.startswith("https://")  # the token, not the status URL
    json.loads(base64.b64decode(token))  # azure-core 1.41's tokens are JSON, never pickle
    seen = []
    deadline = time.monotonic() + 10
    while not seen or seen[-1] != "Succeeded":
        assert time.monotonic() < deadline, f"still {seen[-1]} after 10 s"
        worker = FleetPorts(ports.fleet).aks
        status = worker.operation_status("dev", token)
        assert worker.calls == 1  # one GET of the status URL
        assert (status.error_code, status.retry_after_s) == (None, 0.0)
        seen.append(status.status)
        time.sleep(0.1)
    # the first poll came back while the operation ran (0.5 s): nothing waited for it
    assert seen[0] == "InProgress" and set(seen) == {"InProgress", "Succeeded"}
    assert ports.mesh.get_mesh("dev").provisioning_state == "Succeeded"
    worker = FleetPorts(ports.fleet).aks
    assert worker.operation_status("dev", token).status == "Succeeded"  # asking again is fine


def test_converge_revisions_follows_its_operation_across_json_round_trips_of_the_run(
        sandbox: Sandbox, ports: FleetPorts) -> None:
    """The run as the store keeps it (JSON in Redis) carries the token from the PUT to the
    tick that sees the operation succeed, each tick in a fresh worker."""
    now = time.time()
    run = Run(id="r-1", cluster="dev", requester="U1", channel="C1",
              canary_revision="asm-1-26", stable_revision="asm-1-25",
              created_at=now, updated_at=now)
    desired = ["asm-1-25", "asm-1-26"]
    run, wait = converge_revisions(run, FleetPorts(ports.fleet), desired, now)
    assert wait == 0.0 and run.operation is not None and run.operation.token
    assert not run.operation.answered
    assert [e.kind for e in run.history] == ["arm"]
    # the step chained after the PUT: the poll schedule counts from its start, after the
    # answer
    answered_at = time.time()
    run, wait = converge_revisions(run, FleetPorts(ports.fleet), desired, answered_at)
    assert wait == OPERATION_FIRST_LOOK_S and run.operation is not None
    assert run.operation.answered and run.operation.started_at == answered_at
    stored = run.model_dump_json()
    assert json.loads(stored)["operation"]["token"] == run.operation.token
    ticks = 0
    while wait is not None:
        ticks += 1
        assert ticks < 50, "the operation was never seen to end"
        time.sleep(0.1)
        run = Run.model_validate_json(stored)
        run, wait = converge_revisions(run, FleetPorts(ports.fleet), desired, time.time())
        stored = run.model_dump_json()
    assert ticks > 1  # polled while InProgress, not only after the end
    assert [e.kind for e in run.history] == ["arm"]  # one PUT, never re-sent
    assert ports.mesh.get_mesh("dev").revisions == desired


def test_a_failed_operation_reports_arms_code_and_message(sandbox: Sandbox,
                                                          ports: FleetPorts) -> None:
    fault(sandbox, fail_operations=1)
    token = ports.mesh.set_revisions("dev", ["asm-1-25", "asm-1-26"])
    assert token
    time.sleep(0.7)
    status = FleetPorts(ports.fleet).mesh.operation_status("dev", token)
    assert (status.status, status.done) == ("Failed", True)
    assert status.error_code == "IstioAddonInstallationFailed"
    assert status.error_message and "istiod did not become ready" in status.error_message
    now = time.time()
    run = Run(id="r-2", cluster="dev", requester="U1", channel="C1", canary_revision="asm-1-26",
              stable_revision="asm-1-25", created_at=now, updated_at=now,
              operation=Operation(revisions=["asm-1-25", "asm-1-26"], token=token,
                                  started_at=now))
    with pytest.raises(ArmError, match="ended Failed: IstioAddonInstallationFailed: istiod "
                                       "did not become ready") as raised:
        converge_revisions(Run.model_validate_json(run.model_dump_json()), ports,
                           ["asm-1-25", "asm-1-26"], now)
    assert raised.value.code == "IstioAddonInstallationFailed"


def test_an_unreadable_token_is_a_permanent_error(sandbox: Sandbox, ports: FleetPorts) -> None:
    with pytest.raises(ArmError, match="operation token cannot be read"):
        ports.mesh.operation_status("dev", "not-a-token")


@pytest.mark.parametrize(("revisions", "needle"), [
    (["asm-1-25", "asm-1-24"], "not allowed"),
    (["asm-1-26"], "Cannot change revisions"),
    (["asm-1-25", "asm-1-99"], "not supported in westus2"),
])
def test_invalid_revision_changes_are_refused_by_arm(sandbox: Sandbox, ports: FleetPorts,
                                                     revisions: list[str], needle: str) -> None:
    with pytest.raises(ArmError, match=needle):
        ports.mesh.set_revisions("dev", revisions)
    assert ports.mesh.get_mesh("dev").revisions == ["asm-1-25"]


def test_throttling_and_unknown_clusters(sandbox: Sandbox, ports: FleetPorts) -> None:
    fault(sandbox, statuses=[429] * 5)
    try:
        with pytest.raises(TemporaryError, match="429") as raised:
            ports.mesh.set_revisions("dev", ["asm-1-25", "asm-1-26"])
        assert raised.value.delay_s == 1  # ARM's Retry-After, for the engine's next tick
    finally:
        fault(sandbox, statuses=[])
    fleet = ports.fleet.model_copy(deep=True)
    cfg = fleet.clusters["dev"].model_copy(update={"name": "aks-missing"})
    fleet = fleet.model_copy(update={"clusters": {**fleet.clusters, "dev": cfg}})
    with pytest.raises(ArmError, match="not found in Azure"):
        FleetPorts(fleet).mesh.get_mesh("dev")


def test_arm_refuses_tokens_it_did_not_issue(sandbox: Sandbox) -> None:
    resp = requests.get(sandbox.url["arm"] + DEV,
                        params={"api-version": "2026-08-01"},
                        headers={"Authorization": "Bearer forged"},
                        verify=str(sandbox.state_dir / "tls" / "arm.pem"), timeout=5)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "AuthenticationFailed"
