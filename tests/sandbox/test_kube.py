"""The Kubernetes emulator through the product's KubernetesClusterApi (official client),
with the kubeconfig of listClusterUserCredential."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
import requests
import yaml
from cryptography import x509
from kubernetes import client as k8s
from kubernetes import watch
from urllib3.util.connection import is_connection_dropped

from sandbox.app import Sandbox
from sandbox.certs import make_cluster_ca
from workers.wiring import FleetPorts
from workflows.errors import ClusterApiError


def wait(cond, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met")


def start_canary(sandbox: Sandbox, cluster: str, revision: str) -> None:
    """The add-on runs ``revision`` next to the stable one (as after ARM's PUT): only then
    does its injector give new pods that sidecar."""
    w = sandbox.world
    with w.lock:
        c = w.clusters[cluster]
        istio = c.arm["properties"]["serviceMeshProfile"]["istio"]
        istio["revisions"] = [istio["revisions"][0], revision]
        w._sync_mesh(c)
        w._settle()


def test_seed_fleet(ports: FleetPorts) -> None:
    capi = ports.cluster_api("dev")
    labels = {ns.name: ns.labels for ns in capi.list_namespaces()}
    assert {ns for ns, lbl in labels.items() if lbl.get("istio.io/rev") == "asm-1-25"} == {
        "accounts", "catalog", "checkout", "storefront"}
    # the API server's own label, and the world's
    assert labels["legacy"] == {"istio-injection": "enabled",
                                "kubernetes.io/metadata.name": "legacy"}
    # read by name, a wave's namespaces alone: the same objects, in the order asked,
    # a namespace that does not exist left out; one GET each, no list of the cluster
    calls = capi.calls  # type: ignore[attr-defined]
    got = capi.get_namespaces(["legacy", "no-such-namespace", "accounts"])
    assert [(n.name, n.labels) for n in got] == [("legacy", labels["legacy"]),
                                                 ("accounts", labels["accounts"])]
    assert capi.calls - calls == 3  # type: ignore[attr-defined]
    # selected by the API server (labelSelector=istio.io/rev in (…)): one list call, what
    # it finds alone; nothing asked, nothing read
    calls = capi.calls  # type: ignore[attr-defined]
    got = capi.list_namespaces(labelled=["asm-1-25", "prod-stable"])
    assert sorted(n.name for n in got) == ["accounts", "catalog", "checkout", "storefront"]
    assert capi.list_namespaces(labelled=["asm-1-99"]) == []
    assert capi.list_namespaces(labelled=[]) == []
    assert capi.calls - calls == 2  # type: ignore[attr-defined]
    workloads = capi.list_workloads(["accounts"])
    assert sorted(w.name for w in workloads) == ["details-v1", "productpage-v1", "ratings-v1",
                                                 "reviews-v1", "reviews-v2", "reviews-v3"]
    assert all(w.rolled_out for w in workloads)
    pods = capi.list_pods(["accounts"])
    assert {(p.revision, p.proxy_version) for p in pods} == {("asm-1-25", "1.25.5")}


def test_relabel_and_restart_move_pods_to_the_new_sidecar(ports: FleetPorts,
                                                          sandbox: Sandbox) -> None:
    capi = ports.cluster_api("dev")
    capi.set_namespace_revision("legacy", "asm-1-25")
    assert {n.name: n.labels for n in capi.list_namespaces()}["legacy"] == {
        "istio.io/rev": "asm-1-25", "kubernetes.io/metadata.name": "legacy"}
    # istio-injection removed, the add-on ignores it
    start_canary(sandbox, "aks-dev-westus2", "asm-1-26")
    capi.set_namespace_revision("catalog", "asm-1-26")
    before = {p.name for p in capi.list_pods(["catalog"])}
    for w in capi.list_workloads(["catalog"]):
        capi.restart_workload(w, "2026-11-22T00:00:00Z")
    pending = capi.list_workloads(["catalog"])
    assert all(w.generation == 2 and not w.rolled_out for w in pending)
    # new pods start (rollout_s), then the old ones terminate
    wait(lambda: all(w.rolled_out for w in capi.list_workloads(["catalog"])) and {
        p.revision for p in capi.list_pods(["catalog"])} == {"asm-1-26"})
    pods = capi.list_pods(["catalog"])
    assert {(p.revision, p.proxy_version) for p in pods} == {("asm-1-26", "1.26.4")}
    assert not before & {p.name for p in pods}
    # restarting again with the same token changes nothing: the template is the same
    w = capi.list_workloads(["catalog"])[0]
    capi.restart_workload(w, "2026-11-22T00:00:00Z")
    assert capi.list_workloads(["catalog"])[0].generation == 2


def test_crash_looping_canary_is_visible(ports: FleetPorts, sandbox: Sandbox) -> None:
    import requests
    requests.post(sandbox.url["control"] + "/_sandbox/faults",
                  json={"cluster": "dev", "namespace": "checkout", "revision": "asm-1-26",
                        "crashloop": True}, timeout=5).raise_for_status()
    start_canary(sandbox, "aks-dev-westus2", "asm-1-26")
    capi = ports.cluster_api("dev")
    capi.set_namespace_revision("checkout", "asm-1-26")
    w = next(w for w in capi.list_workloads(["checkout"]) if w.name == "ratings-v1")
    capi.restart_workload(w, "t1")
    pods = wait(lambda: [p for p in capi.list_pods(["checkout"])
                         if p.name.startswith("ratings-v1") and p.revision == "asm-1-26"
                         and p.phase == "Running"])
    assert pods[0].waiting_reason == "CrashLoopBackOff"
    # the old pod stays while the new one is not ready (maxUnavailable 0 of 1 replica)
    assert [p.revision for p in capi.list_pods(["checkout"])
            if p.name.startswith("ratings-v1")].count("asm-1-25") == 1
    assert not next(x for x in capi.list_workloads(["checkout"])
                    if x.name == "ratings-v1").rolled_out


def test_label_selectors_watch_and_errors(ports: FleetPorts, sandbox: Sandbox) -> None:
    capi = ports.cluster_api("dev")
    core = capi.core
    names = [n.metadata.name for n in
             core.list_namespace(label_selector="istio.io/rev in (asm-1-25),!other").items]
    assert names == ["accounts", "catalog", "checkout", "storefront"]
    assert core.list_namespace(label_selector="istio-injection=enabled").items[0] \
        .metadata.name == "legacy"
    rv = core.list_namespaced_pod("storefront").metadata.resource_version
    start_canary(sandbox, "aks-dev-westus2", "asm-1-26")
    capi.set_namespace_revision("storefront", "asm-1-26")
    for w in capi.list_workloads(["storefront"])[:1]:
        capi.restart_workload(w, "w1")
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_pod, "storefront",
                                      resource_version=rv, timeout_seconds=3):
        seen.append((event["type"], event["object"].metadata.labels.get("istio.io/rev")))
        if ("ADDED", "asm-1-26") in seen and ("DELETED", "asm-1-25") in seen:
            break
    assert ("DELETED", "asm-1-25") in seen and ("ADDED", "asm-1-26") in seen
    with pytest.raises(k8s.ApiException) as err:
        capi.apps.read_namespaced_deployment("nope", "storefront")
    assert err.value.status == 404
    with pytest.raises(ClusterApiError, match="not found"):
        capi.set_namespace_revision("no-such-namespace", "asm-1-26")


def test_lists_page_through_the_api_server_and_start_over_on_410(
        ports: FleetPorts, monkeypatch: pytest.MonkeyPatch) -> None:
    import sandbox.kube
    import workers.kube.cluster as cluster

    capi = ports.cluster_api("dev")
    namespaces = ["accounts", "catalog", "checkout"]
    whole = sorted((p.namespace, p.name) for p in capi.list_pods(namespaces))
    workloads = sorted(w.key for w in capi.list_workloads(namespaces))
    assert len(whole) > 6 and len(workloads) > 6
    # pages of two: the same pods, every namespace read page by page
    monkeypatch.setattr(cluster, "LIST_PAGE", 2)
    calls = capi.calls
    assert sorted((p.namespace, p.name) for p in capi.list_pods(namespaces)) == whole
    assert capi.calls - calls >= len(whole) // 2
    # above the per-namespace limit: one paginated list of the cluster, the same answer
    monkeypatch.setattr(cluster, "PER_NAMESPACE_LIMIT", 1)
    assert sorted((p.namespace, p.name) for p in capi.list_pods(namespaces)) == whole
    assert sorted(w.key for w in capi.list_workloads(namespaces)) == workloads
    # a continue token the API server compacted away (410 Expired): the list starts over
    # without pages, as client-go's pager does, and loses nothing
    monkeypatch.setattr(sandbox.kube, "COMPACTION_S", -1.0)
    assert sorted((p.namespace, p.name) for p in capi.list_pods(namespaces)) == whole
    monkeypatch.setattr(cluster, "PER_NAMESPACE_LIMIT", 250)
    assert sorted(w.key for w in capi.list_workloads(namespaces)) == workloads


def test_the_connection_of_a_finished_watch_serves_the_next_request(ports: FleetPorts
                                                                   ) -> None:
    """A watch's connection stays open after its last chunk, as the API server's (Go's
    net/http) does: the next request is served on it, not on a connection the server
    closed meanwhile without saying so."""
    capi = ports.cluster_api("dev")
    manager = capi.apps.api_client.rest_client.pool_manager
    list(capi.watch_workloads("storefront", "Deployment", None, 1))
    (pool,) = manager.pools._container.values()
    idle = [c for c in pool.pool.queue if c is not None]
    assert len(idle) == 1  # the watch's, back in the pool
    time.sleep(0.3)  # a server that closes after the stream has done so by now
    assert not is_connection_dropped(idle[0])
    assert capi.list_workloads(["storefront"])
    assert [c for c in pool.pool.queue if c is not None] == idle  # served on it


def test_a_rollout_is_followed_by_a_watch_to_its_end(ports: FleetPorts) -> None:
    """``watch_workloads`` through the official client: the objects as they are, then each
    change; the follower calls back once every restarted workload is rolled out, which a
    list made at that moment confirms, and well before a fixed 3 s poll would have."""
    from workers.kube.follow import RolloutFollower

    capi = ports.cluster_api("dev")
    now = [w for w in capi.watch_workloads("storefront", "Deployment", None, 1)]
    assert sorted(w.name for w in now) == sorted(
        w.name for w in capi.list_workloads(["storefront"]) if w.kind == "Deployment")
    assert all(w.rolled_out for w in now)
    restarted = [w for w in capi.list_workloads(["storefront"]) if w.kind == "Deployment"][:2]
    for w in restarted:
        capi.restart_workload(w, "2026-12-04T13:00:00Z")
    t0 = time.monotonic()
    settled: list[tuple[float, list[bool]]] = []

    def on_settled() -> None:
        listed = {w.name: w.rolled_out for w in capi.list_workloads(["storefront"])}
        settled.append((time.monotonic() - t0, [listed[w.name] for w in restarted]))

    follower = RolloutFollower()
    assert follower.follow("r-1", capi, tuple(restarted), 3.0, on_settled)
    assert follower.started == 1  # one watch: the same namespace and kind
    wait(lambda: settled, timeout=4)
    time.sleep(0.3)
    assert len(settled) == 1
    at, rolled_out = settled[0]
    assert rolled_out == [True, True] and at < 2.0  # two replicas: two pod start-ups of 0.3 s
    wait(lambda: not follower.following("r-1"))
    # one workload alone is watched by name (fieldSelector metadata.name)
    only = [w for w in capi.watch_workloads("storefront", "Deployment", restarted[0].name, 1)]
    assert [w.name for w in only] == [restarted[0].name]


def test_a_local_accounts_kubeconfig_has_a_client_certificate_the_api_server_verifies(
        sandbox: Sandbox, tmp_path: Path) -> None:
    """listClusterUserCredential of a cluster with local accounts gives a token and a client
    certificate signed by the cluster CA (O=system:masters, CN=masterclient, as AKS's);
    the API server takes a client that presents none, and refuses the handshake of one
    whose certificate another CA signed (``--client-ca-file``)."""
    c = sandbox.world.clusters[next(iter(sandbox.world.clusters))]
    arm_token = sandbox.arm.mint("https://management.azure.com/")[0]
    resp = requests.post(f"{sandbox.url['arm']}{c.arm['id']}/listClusterUserCredential"
                         "?api-version=2026-08-01",
                         headers={"Authorization": f"Bearer {arm_token}"},
                         verify=str(sandbox.state_dir / "tls" / "arm.pem"), timeout=5)
    kubeconfig = yaml.safe_load(base64.b64decode(resp.json()["kubeconfigs"][0]["value"]))
    user = kubeconfig["users"][0]["user"]
    assert set(user) == {"client-certificate-data", "client-key-data", "token"}
    cert = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
    assert cert.subject.rfc4514_string() == "CN=masterclient,O=system:masters"
    (tmp_path / "client.pem").write_bytes(base64.b64decode(user["client-certificate-data"]))
    (tmp_path / "client-key.pem").write_bytes(base64.b64decode(user["client-key-data"]))
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    ca = str(sandbox.state_dir / "tls" / "kube-ca.pem")
    auth = {"Authorization": f"Bearer {user['token']}"}
    mine = (str(tmp_path / "client.pem"), str(tmp_path / "client-key.pem"))
    assert requests.get(f"{server}/api/v1/namespaces", headers=auth, verify=ca, cert=mine,
                        timeout=5).status_code == 200
    assert requests.get(f"{server}/api/v1/namespaces", headers=auth, verify=ca,
                        timeout=5).status_code == 200
    other = make_cluster_ca(tmp_path / "other")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{server}/api/v1/namespaces", headers=auth, verify=ca, timeout=5,
                     cert=(str(other.client_cert), str(other.client_key)))
