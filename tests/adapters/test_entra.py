"""Clusters with Microsoft Entra ID: the user kubeconfig AKS returns runs the kubelogin exec
plugin; meshops instead sends a token for the plugin's ``--server-id`` from its own
azure-identity credential, renewed before it expires, and says what to grant on 401/403."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from azure.core.credentials import AccessToken

from tests.conftest import send_json
from workers.kube.cluster import KubernetesClusterApi, api_client_from_kubeconfig
from workflows.errors import ClusterApiError

SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"  # AKS's Entra server application


def kubelogin_kubeconfig(server: str) -> str:
    """A user kubeconfig shaped as listClusterUserCredential returns it for an Entra
    cluster (AKS doc kubelogin-authentication.md)."""
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "aks-shop",
        "clusters": [{"name": "aks-shop", "cluster": {"server": server}}],
        "contexts": [{"name": "aks-shop", "context": {
            "cluster": "aks-shop", "user": "clusterUser_rg_aks-shop"}}],
        "users": [{"name": "clusterUser_rg_aks-shop", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "kubelogin",
            "args": ["get-token", "--environment", "AzurePublicCloud", "--server-id",
                     SERVER_ID, "--client-id", "80faf920-1908-4b52-b5ef-a8e7bedfc67a",
                     "--tenant-id", "72f988bf-0000-0000-0000-000000000000", "--login",
                     "devicecode"],
            "interactiveMode": "IfAvailable", "provideClusterInfo": False}}}]})


class FakeCredential:
    def __init__(self) -> None:
        self.issued: list[str] = []
        self.now = time.time()

    def get_token(self, *scopes: str, **_: object) -> AccessToken:
        self.issued.append(scopes[0])
        return AccessToken(f"token-{len(self.issued)}", int(self.now + 3600))


@pytest.fixture
def apiserver() -> Iterator[tuple[str, list[str], list[int]]]:
    seen: list[str] = []
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Authorization", ""))
            body = ({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": [
                {"metadata": {"name": "shop", "labels": {"istio.io/rev": "asm-1-25"}}}]}
                if status[0] == 200 else {"kind": "Status", "apiVersion": "v1",
                                          "status": "Failure", "reason": "Forbidden",
                                          "message": "namespaces is forbidden", "code": 403})
            send_json(self, body, status[0])

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen, status
    server.shutdown()


def test_the_kubelogin_user_is_replaced_by_a_token_of_meshops_credential(
        apiserver: tuple[str, list[str], list[int]], monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen, _ = apiserver
    cred = FakeCredential()
    capi = KubernetesClusterApi(api_client_from_kubeconfig(kubelogin_kubeconfig(url),
                                                           credential=cred), "shop")
    assert [n.name for n in capi.list_namespaces()] == ["shop"]
    assert seen == ["Bearer token-1"] and cred.issued == [f"{SERVER_ID}/.default"]
    capi.list_namespaces()
    assert seen[-1] == "Bearer token-1" and len(cred.issued) == 1  # cached
    # five minutes before it expires, the token is renewed
    monkeypatch.setattr("workers.kube.cluster.time.time", lambda: cred.now + 3600 - 200)
    capi.list_namespaces()
    assert seen[-1] == "Bearer token-2" and len(cred.issued) == 2


def test_without_a_credential_the_kubeconfig_is_refused_with_what_to_configure() -> None:
    with pytest.raises(ClusterApiError, match="Microsoft Entra ID"):
        api_client_from_kubeconfig(kubelogin_kubeconfig("http://127.0.0.1:1"))


def test_rbac_refusal_names_the_verb_resource_and_namespace(
        apiserver: tuple[str, list[str], list[int]]) -> None:
    url, _, status = apiserver
    status[0] = 403
    capi = KubernetesClusterApi(api_client_from_kubeconfig(
        kubelogin_kubeconfig(url), credential=FakeCredential()), "shop")
    with pytest.raises(ClusterApiError) as raised:
        capi.list_namespaces()
    text = str(raised.value)
    assert "Kubernetes RBAC refused meshops" in text
    assert "grant meshops' identity `list` on namespaces cluster-wide" in text
