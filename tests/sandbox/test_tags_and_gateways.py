"""Istio revision tags and Gateway API gateways in the sandbox's Kubernetes API, through the
official ``kubernetes`` client and kubectl, as AKS and istiod behave: a tag is a
MutatingWebhookConfiguration (``istioctl tag set``) whose webhooks call the tagged
revision's istiod; moving it (``--overwrite``) and restarting moves pods; a tag left pointing
at a removed revision fails pod creation (``failurePolicy: Fail``); a Gateway of class
``istio`` gets a ``<name>-istio`` Deployment rendered by the istiod that controls it, which a
namespace relabel or a moved tag rolls to the other revision."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from sandbox.app import Sandbox
from sandbox.world import World, proxy_revision
from sandbox.worldfile import WorldError, build, load
from tests.conftest import FIXTURES, free_port_base
from tests.sandbox.conftest import running
from tests.sandbox.test_kubectl import KUBECTL

CLUSTER = "aks-tags-wus2"
TAG_HOOK = "istio-revision-tag-prod-stable-aks-istio-system"
GROUP, VERSION = "gateway.networking.k8s.io", "v1"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running(Sandbox(Path(tmp_path_factory.mktemp("tags")),
                         free_port_base(10000, 15000, 10), operation_s=0.5, rollout_s=0.2,
                         with_prometheus=False,
                         world_file=FIXTURES / "worlds" / "tags-and-gateways.yaml")) as s:
        yield s


@pytest.fixture
def api(sb: Sandbox) -> k8s.ApiClient:
    """The official client with the kubeconfig ``meshops sandbox`` writes, on a world just
    re-seeded."""
    requests.post(sb.url["control"] + "/_sandbox/reset", timeout=10).raise_for_status()
    return k8s_config.new_client_from_config(config_file=str(sb.kubeconfig_path),
                                             context="tags")


def until(cond: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("condition not met")
        time.sleep(0.1)


def live_pods(api: k8s.ApiClient, ns: str, selector: str) -> list[dict[str, Any]]:
    pods = api.sanitize_for_serialization(
        k8s.CoreV1Api(api).list_namespaced_pod(ns, label_selector=selector).items)
    return [p for p in pods if "deletionTimestamp" not in p["metadata"]]


def proxies(pods: list[dict[str, Any]]) -> set[tuple[str | None, str]]:
    """(revision, istio-proxy image tag) of each pod."""
    return {(proxy_revision(p), next(
        ct["image"].rsplit(":", 1)[1] for ct in p["spec"]["containers"]
        + (p["spec"].get("initContainers") or []) if ct["name"] == "istio-proxy"))
        for p in pods}


def restart(api: k8s.ApiClient, ns: str, name: str, at: str) -> None:
    """``kubectl rollout restart``: the restartedAt annotation of the pod template."""
    k8s.AppsV1Api(api).patch_namespaced_deployment(name, ns, {"spec": {"template": {
        "metadata": {"annotations": {RESTARTED_AT: at}}}}})


def rolled_out(api: k8s.ApiClient, ns: str, name: str) -> bool:
    d = k8s.AppsV1Api(api).read_namespaced_deployment(name, ns)
    st = d.status
    return bool(st.observed_generation == d.metadata.generation and
                (st.updated_replicas or 0) == d.spec.replicas == (st.replicas or 0) ==
                (st.available_replicas or 0))


def move_tag(api: k8s.ApiClient, revision: str) -> k8s.V1MutatingWebhookConfiguration:
    """What ``istioctl tag set prod-stable --revision <revision> --overwrite`` changes in the
    tag's webhook configuration: its revision label and the istiod its webhooks call."""
    adm = k8s.AdmissionregistrationV1Api(api)
    hook = adm.read_mutating_webhook_configuration(TAG_HOOK)
    hook.metadata.labels["istio.io/rev"] = revision
    for wh in hook.webhooks:
        wh.client_config.service.name = f"istiod-{revision}"
    return adm.replace_mutating_webhook_configuration(TAG_HOOK, hook)


def complete_upgrade(sb: Sandbox, keep: str) -> None:
    """AKS after the PUT of ``revisions: [keep]`` (completion or rollback): the other
    revision's istiod, Service and injector webhooks are gone."""
    w = sb.world
    with w.lock:
        c = w.clusters[CLUSTER]
        c.arm["properties"]["serviceMeshProfile"]["istio"]["revisions"] = [keep]
        w._sync_mesh(c)
        w._settle()


# ------------------------------------------------------------------------- revision tags

def test_a_tag_is_a_webhook_configuration_that_injects_its_revision(api: k8s.ApiClient) -> None:
    adm = k8s.AdmissionregistrationV1Api(api)
    resources = {r.name for r in adm.get_api_resources().resources}
    assert "mutatingwebhookconfigurations" in resources
    tags = adm.list_mutating_webhook_configuration(label_selector="istio.io/tag").items
    assert [t.metadata.name for t in tags] == [TAG_HOOK]
    tag = tags[0]
    assert {k: tag.metadata.labels[k] for k in ("istio.io/tag", "istio.io/rev", "app")} == {
        "istio.io/tag": "prod-stable", "istio.io/rev": "asm-1-26", "app": "sidecar-injector"}
    assert [w.name for w in tag.webhooks] == ["rev.namespace.sidecar-injector.istio.io",
                                              "rev.object.sidecar-injector.istio.io"]
    for wh in tag.webhooks:
        svc = wh.client_config.service
        assert (svc.name, svc.namespace, svc.path, svc.port) == (
            "istiod-asm-1-26", "aks-istio-system", "/inject", 443)
        assert (wh.failure_policy, wh.side_effects) == ("Fail", "None")
        assert "v1" in wh.admission_review_versions
    ns_sel = tag.webhooks[0].namespace_selector.match_expressions
    assert [(e.key, e.operator, e.values) for e in ns_sel] == [
        ("istio.io/rev", "In", ["prod-stable"]), ("istio-injection", "DoesNotExist", None)]
    # the add-on's own injector webhooks, one per revision
    canonical = adm.list_mutating_webhook_configuration(
        label_selector="app=sidecar-injector,!istio.io/tag").items
    assert sorted(c.metadata.labels["istio.io/rev"] for c in canonical) == [
        "asm-1-26", "asm-1-27"]

    # pods of the tagged namespace get the tagged revision's sidecar
    assert proxies(live_pods(api, "shop", "app=httpbin")) == {("asm-1-26", "1.26.4-distroless")}
    # a pod labelled with the tag in a namespace without one: the tag's object webhook
    core = k8s.CoreV1Api(api)
    pod = core.create_namespaced_pod("lobby", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "curl", "labels": {"app": "curl", "istio.io/rev": "prod-stable"}},
        "spec": {"containers": [{"name": "curl", "image": "curlimages/curl:8.11.0"}]}})
    assert pod.metadata.labels["istio.io/rev"] == "asm-1-26"
    assert json.loads(pod.metadata.annotations["sidecar.istio.io/status"])["revision"] == \
        "asm-1-26"


def test_moving_the_tag_and_restarting_moves_pods(api: k8s.ApiClient) -> None:
    adm = k8s.AdmissionregistrationV1Api(api)
    stale = adm.read_mutating_webhook_configuration(TAG_HOOK)
    moved = move_tag(api, "asm-1-27")
    assert moved.metadata.labels["istio.io/rev"] == "asm-1-27"
    assert moved.metadata.resource_version != stale.metadata.resource_version
    # a replace with the resourceVersion read before: the API server's optimistic concurrency
    stale.metadata.labels["istio.io/rev"] = "asm-1-26"
    with pytest.raises(ApiException) as err:
        adm.replace_mutating_webhook_configuration(TAG_HOOK, stale)
    assert err.value.status == 409
    assert json.loads(err.value.body)["reason"] == "Conflict"
    # a merge patch carrying a stale resourceVersion is refused too; without one it applies
    with pytest.raises(ApiException) as err:
        adm.patch_mutating_webhook_configuration(TAG_HOOK, {"metadata": {
            "resourceVersion": stale.metadata.resource_version, "labels": {"team": "mesh"}}})
    assert err.value.status == 409
    patched = adm.patch_mutating_webhook_configuration(TAG_HOOK, {"metadata": {
        "labels": {"team": "mesh"}}})
    assert patched.metadata.labels["team"] == "mesh" and \
        patched.metadata.labels["istio.io/rev"] == "asm-1-27"

    # relabelling nothing: pods change only when restarted
    assert proxies(live_pods(api, "shop", "app=httpbin")) == {("asm-1-26", "1.26.4-distroless")}
    restart(api, "shop", "httpbin", "2026-12-01T00:00:00Z")
    until(lambda: rolled_out(api, "shop", "httpbin") and proxies(
        live_pods(api, "shop", "app=httpbin")) == {("asm-1-27", "1.27.1-distroless")})
    # asm-1-27 on Kubernetes 1.33: istio-proxy is a native sidecar
    pod = live_pods(api, "shop", "app=httpbin")[0]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["istio-init", "istio-proxy"]
    # the namespace's gateway follows the tag without a restart: asm-1-27's istiod controls
    # it now and renders its own proxy
    until(lambda: rolled_out(api, "shop", "httpbin-gateway-istio") and proxies(
        live_pods(api, "shop", "gateway.networking.k8s.io/gateway-name=httpbin-gateway"))
        == {("asm-1-27", "1.27.1-distroless")})


def test_a_tag_left_on_a_removed_revision_fails_pod_creation(api: k8s.ApiClient,
                                                               sb: Sandbox) -> None:
    complete_upgrade(sb, "asm-1-27")
    adm = k8s.AdmissionregistrationV1Api(api)
    # AKS removed asm-1-26's istiod and its own webhook; the user's tag stays, pointing at it
    assert [h.metadata.name for h in adm.list_mutating_webhook_configuration(
        label_selector="app=sidecar-injector").items] == [
        TAG_HOOK, "istio-sidecar-injector-asm-1-27-aks-istio-system"]
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("shop", {"apiVersion": "v1", "kind": "Pod",
                                            "metadata": {"name": "curl"},
                                            "spec": {"containers": [{"name": "curl",
                                                                     "image": "curl:8"}]}})
    assert err.value.status == 500
    body = json.loads(err.value.body)
    assert body["reason"] == "InternalError"
    assert body["message"] == (
        'Internal error occurred: failed calling webhook "rev.namespace.sidecar-injector.'
        'istio.io": failed to call webhook: Post "https://istiod-asm-1-26.aks-istio-system.'
        'svc:443/inject?timeout=10s": service "istiod-asm-1-26" not found')

    before = {p["metadata"]["name"] for p in live_pods(api, "shop", "app=httpbin")}
    restart(api, "shop", "httpbin", "2026-12-02T00:00:00Z")

    def failed_create() -> list[Any]:
        return [e for e in core.list_namespaced_event(
            "shop", field_selector="reason=FailedCreate").items
            if e.involved_object.kind == "ReplicaSet"]
    events = until(failed_create)
    assert events[0].type == "Warning"
    assert events[0].message.startswith("Error creating: Internal error occurred: failed "
                                        'calling webhook "rev.namespace.sidecar-injector')
    d = until(lambda: next((c for c in apps.read_namespaced_deployment(
        "httpbin", "shop").status.conditions or [] if c.type == "ReplicaFailure"), None))
    assert (d.status, d.reason) == ("True", "FailedCreate")
    # the rolling update keeps the old pod: nothing is unavailable
    assert {p["metadata"]["name"] for p in live_pods(api, "shop", "app=httpbin")} == before
    assert apps.read_namespaced_deployment("httpbin", "shop").status.available_replicas == 1

    # pointing the tag at the revision that runs: the ReplicaSet's retries get through
    move_tag(api, "asm-1-27")
    until(lambda: rolled_out(api, "shop", "httpbin") and proxies(
        live_pods(api, "shop", "app=httpbin")) == {("asm-1-27", "1.27.1-distroless")},
        timeout=30)
    assert not any(c.type == "ReplicaFailure" for c in apps.read_namespaced_deployment(
        "httpbin", "shop").status.conditions)


def test_webhook_configurations_are_validated(api: k8s.ApiClient, sb: Sandbox) -> None:
    """The client refuses such a body itself; the API server does too (raw request)."""
    cfg = api.configuration
    got = requests.post(f"{cfg.host}/apis/admissionregistration.k8s.io/v1/"
                        "mutatingwebhookconfigurations",
                        headers={"Authorization": cfg.auth_settings()["BearerToken"]["value"]},
                        verify=cfg.ssl_ca_cert, timeout=10,
                        json={"apiVersion": "admissionregistration.k8s.io/v1",
                              "kind": "MutatingWebhookConfiguration",
                              "metadata": {"name": "bad"},
                              "webhooks": [{"name": "bad.example.com", "clientConfig": {
                                  "service": {"name": "x", "namespace": "y"}}}]})
    assert got.status_code == 422
    message = got.json()["message"]
    assert message.startswith('MutatingWebhookConfiguration.admissionregistration.k8s.io '
                              '"bad" is invalid: [')
    assert "webhooks[0].sideEffects: Required value" in message
    assert "webhooks[0].admissionReviewVersions: Required value" in message
    assert "bad" not in {h.metadata.name for h in k8s.AdmissionregistrationV1Api(
        api).list_mutating_webhook_configuration().items}


def test_istioctl_tag_set_rules() -> None:
    world = World(rollout_s=0.05, termination_s=0.05)
    build(world, load(FIXTURES / "worlds" / "tags-and-gateways.yaml"))
    before = world.get(CLUSTER, "MutatingWebhookConfiguration", "", TAG_HOOK)
    assert before is not None
    for args, message in ((("prod-stable", "asm-1-27"), 'revision tag "prod-stable" already '
                           "exists, and --overwrite is false"),
                          (("asm-1-26", "asm-1-27"), 'cannot create revision tag "asm-1-26": '
                           "found existing control plane revision with same name"),
                          (("prod-canary", "asm-1-25"), "cannot modify tag: cannot find "
                           'MutatingWebhookConfiguration with revision "asm-1-25"')):
        with pytest.raises(ValueError, match=message):
            world.set_revision_tag(CLUSTER, *args)
    moved = world.set_revision_tag(CLUSTER, "prod-stable", "asm-1-27", overwrite=True)
    assert moved["metadata"]["labels"]["istio.io/rev"] == "asm-1-27"
    assert {w["clientConfig"]["service"]["name"] for w in moved["webhooks"]} == {
        "istiod-asm-1-27"}
    assert moved["metadata"]["creationTimestamp"] == before["metadata"]["creationTimestamp"]
    canary = world.set_revision_tag(CLUSTER, "prod-canary", "asm-1-27")
    assert canary["metadata"]["name"] == "istio-revision-tag-prod-canary-aks-istio-system"


# ------------------------------------------------------------------------- gateways

def test_a_gateway_gets_a_deployment_on_its_namespace_revision(api: k8s.ApiClient) -> None:
    crd = k8s.CustomObjectsApi(api)
    gws = crd.list_namespaced_custom_object(GROUP, VERSION, "edge", "gateways")["items"]
    assert [g["metadata"]["name"] for g in gws] == ["httpbin-gateway"]
    gw = gws[0]
    conditions = {c["type"]: c for c in gw["status"]["conditions"]}
    assert conditions["Accepted"]["status"] == conditions["Programmed"]["status"] == "True"
    assert conditions["Programmed"]["message"] == (
        "Resource programmed, assigned to service(s) "
        "httpbin-gateway-istio.edge.svc.cluster.local:80")
    assert gw["status"]["addresses"][0]["type"] == "IPAddress"
    assert gw["status"]["listeners"][0]["attachedRoutes"] == 1
    route = crd.get_namespaced_custom_object(GROUP, VERSION, "edge", "httproutes", "httpbin")
    parent = route["status"]["parents"][0]
    assert parent["controllerName"] == "istio.io/gateway-controller"
    assert {c["type"]: c["status"] for c in parent["conditions"]} == {
        "Accepted": "True", "ResolvedRefs": "True"}
    assert crd.get_cluster_custom_object(GROUP, VERSION, "gatewayclasses", "istio")["spec"][
        "controllerName"] == "istio.io/gateway-controller"

    apps = k8s.AppsV1Api(api)
    d = apps.read_namespaced_deployment("httpbin-gateway-istio", "edge")
    assert d.metadata.labels["gateway.networking.k8s.io/gateway-name"] == "httpbin-gateway"
    assert d.metadata.owner_references[0].kind == "Gateway"
    t = d.spec.template
    assert t.metadata.annotations["istio.io/rev"] == "asm-1-26"
    assert t.metadata.labels["sidecar.istio.io/inject"] == "false"
    assert [(c.name, c.image) for c in t.spec.containers] == [
        ("istio-proxy", "mcr.microsoft.com/oss/istio/proxyv2:1.26.4-distroless")]
    # AKS's class defaults: an autoscaler (at least 2) and a disruption budget
    assert d.spec.replicas == 2
    hpa = k8s.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(
        "httpbin-gateway-istio", "edge")
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 5)
    assert k8s.PolicyV1Api(api).read_namespaced_pod_disruption_budget(
        "httpbin-gateway-istio", "edge").spec.min_available == 1
    svc = k8s.CoreV1Api(api).read_namespaced_service("httpbin-gateway-istio", "edge")
    assert svc.spec.type == "LoadBalancer"
    assert [(p.name, p.port) for p in svc.spec.ports] == [("status-port", 15021), ("http", 80)]
    pods = live_pods(api, "edge", "gateway.networking.k8s.io/gateway-name=httpbin-gateway")
    assert len(pods) == 2 and proxies(pods) == {("asm-1-26", "1.26.4-distroless")}
    assert all([c["name"] for c in p["spec"]["containers"]] == ["istio-proxy"] for p in pods)
    # no revision label on namespace or Gateway: the default revision, the higher one
    assert proxies(live_pods(api, "lobby", "gateway.networking.k8s.io/gateway-name="
                                           "httpbin-gateway")) == {("asm-1-27",
                                                                    "1.27.1-distroless")}


def test_relabelling_the_namespace_rolls_the_gateway(api: k8s.ApiClient) -> None:
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    gw_pods = "gateway.networking.k8s.io/gateway-name=httpbin-gateway"
    before = {p["metadata"]["name"] for p in live_pods(api, "edge", gw_pods)}
    core.patch_namespace("edge", {"metadata": {"labels": {"istio.io/rev": "asm-1-27"}}})
    d = apps.read_namespaced_deployment("httpbin-gateway-istio", "edge")
    assert d.spec.template.metadata.annotations["istio.io/rev"] == "asm-1-27"
    assert d.spec.replicas == 2  # the autoscaler's, left alone by istiod's apply
    until(lambda: rolled_out(api, "edge", "httpbin-gateway-istio") and proxies(
        live_pods(api, "edge", gw_pods)) == {("asm-1-27", "1.27.1-distroless")})
    assert not before & {p["metadata"]["name"] for p in live_pods(api, "edge", gw_pods)}
    # the app's pods keep their sidecar until restarted
    assert proxies(live_pods(api, "edge", "app=httpbin")) == {("asm-1-26", "1.26.4-distroless")}
    # a rollout restart works on the gateway too, and istiod's next apply keeps it
    restart(api, "edge", "httpbin-gateway-istio", "2026-12-03T00:00:00Z")
    generation = apps.read_namespaced_deployment("httpbin-gateway-istio",
                                                 "edge").metadata.generation
    core.patch_namespace("edge", {"metadata": {"labels": {"team": "edge"}}})
    until(lambda: rolled_out(api, "edge", "httpbin-gateway-istio"))
    d = apps.read_namespaced_deployment("httpbin-gateway-istio", "edge")
    assert d.spec.template.metadata.annotations[RESTARTED_AT] == "2026-12-03T00:00:00Z"
    assert d.metadata.generation == generation  # istiod's apply changed nothing


def test_kubectl_lists_tags_and_gateways(sb: Sandbox, api: k8s.ApiClient,
                                         tmp_path: Path) -> None:
    if KUBECTL is None:
        pytest.skip("no kubectl binary")
    env = {**os.environ, "KUBECONFIG": str(sb.kubeconfig_path), "HOME": str(tmp_path)}

    def kubectl(*args: str) -> str:
        r = subprocess.run([KUBECTL, "--context", "tags", *args], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    hooks = kubectl("get", "mutatingwebhookconfigurations").splitlines()
    assert hooks[0].split() == ["NAME", "WEBHOOKS", "AGE"]
    assert [line.split()[:2] for line in hooks[1:]] == [
        [TAG_HOOK, "2"], ["istio-sidecar-injector-asm-1-26-aks-istio-system", "2"],
        ["istio-sidecar-injector-asm-1-27-aks-istio-system", "2"]]
    gws = kubectl("get", "gateways.gateway.networking.k8s.io", "-n", "edge").splitlines()
    assert gws[0].split() == ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"]
    assert gws[1].split()[:2] == ["httpbin-gateway", "istio"] and \
        gws[1].split()[3] == "True"
    assert "condition met" in kubectl("wait", "--for=condition=programmed", "-n", "edge",
                                      "gateways.gateway.networking.k8s.io/httpbin-gateway")
    routes = kubectl("get", "httproutes", "-n", "edge").splitlines()
    assert routes[1].split()[:2] == ["httpbin", '["httpbin.example.com"]']


# ------------------------------------------------------------------------- world files

def write(tmp_path: Path, cluster: dict[str, Any], files: dict[str, str] | None = None
          ) -> Path:
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump({"clusters": [{
        "name": "aks-x", "location": "westeurope", "kubernetes_version": "1.33.2",
        "revisions": ["asm-1-26"], **cluster}]}))
    return path


GATEWAY = ("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
           "spec: {gatewayClassName: istio, listeners: [{name: http, port: 80, "
           "protocol: HTTP}]}\n")


@pytest.mark.parametrize(("cluster", "files", "needles"), [
    ({"revision_tags": {"Prod_Stable": "asm-1-26"}}, {},
     ["clusters[0].revision_tags.Prod_Stable: 'Prod_Stable' is not a valid tag name"]),
    ({"revision_tags": {"prod-stable": "asm-1-25"}}, {},
     ["clusters[0].revision_tags.prod-stable: asm-1-25 is not a revision this cluster runs "
      "(its revisions: asm-1-26)"]),
    ({"revisions": [], "revision_tags": {"prod-stable": "asm-1-26"}}, {},
     ["asm-1-26 is not a revision this cluster runs (its revisions: none, the mesh is off)"]),
    ({"revision_tags": {"asm-1-26": "asm-1-26"}}, {},
     ["clusters[0].revision_tags.asm-1-26: cannot create revision tag 'asm-1-26': found "
      "existing control plane revision with same name"]),
    ({"revision_tags": {"prod": ["asm-1-26"]}}, {},
     ["clusters[0].revision_tags.prod: Input should be a valid string"]),
    ({"namespaces": [{"name": "shop", "manifests": "gw.yaml"}]}, {"gw.yaml": GATEWAY},
     ["gw.yaml document 1 (line 1)", 'no matches for kind "Gateway" in version '
      '"gateway.networking.k8s.io/v1"; ensure CRDs are installed first']),
])
def test_a_wrong_tag_or_gateway_in_a_world_file(tmp_path: Path, cluster: dict[str, Any],
                                               files: dict[str, str],
                                               needles: list[str]) -> None:
    path = write(tmp_path, cluster, files)
    with pytest.raises(WorldError) as err:
        build(World(), load(path))
    message = str(err.value)
    assert str(path.parent) in message  # the world file, or the manifest's document
    for needle in needles:
        assert needle in message, message


def test_gateways_wait_for_a_revision_that_runs_them(tmp_path: Path) -> None:
    """asm-1-25 runs no gateway controller on AKS (the Gateway API needs asm-1-26): the
    Gateway is stored but not deployed until the canary revision takes it."""
    world = World(rollout_s=0.05, termination_s=0.05)
    build(world, load(write(tmp_path, {
        "kubernetes_version": "1.31.2", "revisions": ["asm-1-25"], "gateway_api": True,
        "namespaces": [{"name": "shop", "labels": {"istio.io/rev": "asm-1-25"},
                        "manifests": "gw.yaml"}]}, {"gw.yaml": GATEWAY})))
    gw = world.get("aks-x", "Gateway.gateway.networking.k8s.io", "shop", "gw")
    assert gw is not None and "status" not in gw
    assert world.get("aks-x", "Deployment", "shop", "gw-istio") is None
    c = world.clusters["aks-x"]
    assert c.arm["properties"]["ingressProfile"] == {"gatewayAPI": {"installation": "Standard"}}
    with world.lock:
        c.arm["properties"]["serviceMeshProfile"]["istio"]["revisions"] = [
            "asm-1-25", "asm-1-26"]
        world._sync_mesh(c)
    ns = world.get("aks-x", "Namespace", "", "shop")
    assert ns is not None
    world.update("aks-x", "Namespace", "", "shop", {**ns, "metadata": {
        **ns["metadata"], "labels": {**ns["metadata"]["labels"], "istio.io/rev": "asm-1-26"}}})
    d = world.get("aks-x", "Deployment", "shop", "gw-istio")
    assert d is not None and d["spec"]["template"]["metadata"]["annotations"][
        "istio.io/rev"] == "asm-1-26"
