"""A cluster with AKS-managed Entra ID and local accounts disabled, as AKS serves it: the user
credential runs kubelogin for the AKS Entra server application, the API server takes only
tokens for that audience, the admin credential is refused; meshops' adapter gets in with a
token from its azure-identity credential."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from sandbox.app import Sandbox
from sandbox.arm import ENTRA_SERVER_ID
from tests.conftest import FIXTURES, free_port_base
from tests.sandbox.conftest import running
from workers.config import load_fleet
from workers.wiring import FleetPorts

MC = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-entra/providers/"
      "Microsoft.ContainerService/managedClusters/aks-entra-neu")


@pytest.fixture(scope="module")
def entra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running(Sandbox(Path(tmp_path_factory.mktemp("entra")),
                         free_port_base(16000, 18900, 10), operation_s=0.5, rollout_s=0.3,
                         with_prometheus=False,
                         world_file=FIXTURES / "worlds" / "entra.yaml")) as sb:
        yield sb


def test_entra_credentials_and_audiences(entra: Sandbox) -> None:
    arm_token = entra.arm.mint("https://management.azure.com/")[0]
    verify = str(entra.state_dir / "tls" / "arm.pem")

    def post(action: str) -> requests.Response:
        return requests.post(f"{entra.url['arm']}{MC}/{action}?api-version=2026-08-01",
                             headers={"Authorization": f"Bearer {arm_token}"}, verify=verify,
                             timeout=5)
    user = post("listClusterUserCredential")
    kubeconfig = yaml.safe_load(base64.b64decode(user.json()["kubeconfigs"][0]["value"]))
    exec_ = kubeconfig["users"][0]["user"]["exec"]
    assert exec_["command"] == "kubelogin"
    assert exec_["args"][exec_["args"].index("--server-id") + 1] == ENTRA_SERVER_ID
    admin = post("listClusterAdminCredential")
    assert admin.status_code == 400 and "disable local accounts" in admin.json()["error"][
        "message"]
    api = entra.url["kube"] + "/clusters/aks-entra-neu/api/v1/namespaces"
    ca = str(entra.state_dir / "tls" / "kube-ca.pem")
    c = entra.world.clusters["aks-entra-neu"]
    for token, code in ((c.token, 401), (arm_token, 401),
                        (entra.arm.mint(ENTRA_SERVER_ID, ttl_s=-1)[0], 401),
                        (entra.arm.mint(ENTRA_SERVER_ID)[0], 200)):
        got = requests.get(api, headers={"Authorization": f"Bearer {token}"}, verify=ca,
                           timeout=5)
        assert got.status_code == code, (token, got.text)
    people = yaml.safe_load(entra.kubeconfig_path.read_text())  # a token, no kubelogin
    assert requests.get(api, headers={"Authorization": "Bearer " + people["users"][0]["user"][
        "token"]}, verify=ca, timeout=5).status_code == 200


def test_meshops_adapter_gets_in_with_an_entra_token(entra: Sandbox) -> None:
    ports = FleetPorts(load_fleet(entra.state_dir / "fleet.yaml"))
    names = {ns.name for ns in ports.cluster_api("entra").list_namespaces()}
    assert {"shop", "blog"} <= names
