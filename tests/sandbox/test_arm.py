"""The ARM emulator through the product's AksMeshApi on azure-mgmt-containerservice with
DefaultAzureCredential; contract tests compare its bodies with the real examples in
../shared/data/aks/arm/ when they are there."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
from azure.mgmt.containerservice.models import ManagedCluster, MeshUpgradeProfile

from sandbox.app import Sandbox
from workers.wiring import FleetPorts
from workflows.errors import ArmError, TemporaryError

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


def operation_body(sandbox: Sandbox, ports: FleetPorts, url: str) -> dict:
    token = ports.mesh.credential.get_token("https://management.azure.com/.default").token
    return requests.get(url, headers={"Authorization": f"Bearer {token}"},
                        verify=str(sandbox.state_dir / "tls" / "arm.pem"), timeout=5).json()


@pytest.mark.contract
def test_operation_status_bodies_have_the_keys_of_the_real_recording(
        sandbox: Sandbox, ports: FleetPorts, shared_data: Path) -> None:
    real = json.loads((shared_data / ARM / "real_async_operation_bodies_from_cli_recording.json")
                      .read_text())
    url = ports.mesh.set_revisions("dev", ["asm-1-25", "asm-1-26"])
    assert url
    assert set(operation_body(sandbox, ports, url)) == set(real["poll_in_progress"])
    time.sleep(0.7)
    assert set(operation_body(sandbox, ports, url)) == set(real["poll_succeeded"])


def test_canary_lifecycle_with_long_running_operations(sandbox: Sandbox, ports: FleetPorts
                                                       ) -> None:
    mesh = ports.mesh
    url = mesh.set_revisions("dev", ["asm-1-25", "asm-1-26"])
    assert url and "/operations/" in url
    assert mesh.get_mesh("dev").provisioning_state == "Updating"
    with pytest.raises(TemporaryError, match="409 OperationNotAllowed"):
        mesh.set_revisions("dev", ["asm-1-25", "asm-1-27"])
    body = operation_body(sandbox, ports, url)  # Azure-AsyncOperation's status body
    assert (set(body), body["status"]) == ({"name", "status", "startTime"}, "InProgress")
    time.sleep(0.7)
    status = mesh.operation_status("dev", url)
    assert status.status == "Succeeded"
    state = mesh.get_mesh("dev")
    assert (state.revisions, state.provisioning_state) == (["asm-1-25", "asm-1-26"], "Succeeded")
    assert ports.cluster_api("dev").control_plane_revisions() == {"asm-1-25": True,
                                                                  "asm-1-26": True}
    mesh.set_revisions("dev", ["asm-1-26"])
    time.sleep(0.7)
    assert mesh.get_mesh("dev").revisions == ["asm-1-26"]
    assert ports.cluster_api("dev").control_plane_revisions() == {"asm-1-26": True}


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
    requests.post(sandbox.url["control"] + "/_sandbox/arm-faults", json={"statuses": [429] * 5},
                  timeout=5)
    try:
        with pytest.raises(TemporaryError, match="429"):
            ports.mesh.set_revisions("dev", ["asm-1-25", "asm-1-26"])
    finally:
        requests.post(sandbox.url["control"] + "/_sandbox/arm-faults", json={"statuses": []},
                      timeout=5)
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
