"""Worlds from files: the fixture worlds (real public sample apps, batch and stateful
workloads, Entra ID, a crash loop that was already there) load and behave as the Kubernetes
API and controllers would; wrong files fail with the file, where and what was expected."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.kinds import Registry
from sandbox.world import World
from sandbox.worldfile import DEFAULT_WORLD, WorldError, build, load
from tests.conftest import FIXTURES

WORLDS = FIXTURES / "worlds"


def built(name: str, **kw: Any) -> World:
    world = World(rollout_s=0.05, termination_s=0.05, job_run_s=0.1, **kw)
    build(world, load(WORLDS / f"{name}.yaml"))
    return world


def until(world: World, cond: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        world.reconcile()
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met")


def objects(world: World, cluster: str, kind: str, ns: str | None = None
            ) -> list[dict[str, Any]]:
    return world.list_objects(cluster, kind, ns)


def test_default_world_is_the_six_cluster_fleet() -> None:
    w = load(DEFAULT_WORLD)
    assert [c.key for c in w.spec.clusters] == ["dev", "staging", "prod", "edge", "osm", "diy"]
    assert [c.slack.id for c in w.spec.clusters][:3] == ["C0DEVMESH", "C0STGMESH", "C0PRDMESH"]
    world = World()
    build(world, w)
    assert world.clusters["aks-osm-eastus"].arm["properties"]["addonProfiles"][
        "openServiceMesh"]["enabled"] is True
    assert [o["metadata"]["name"] for o in objects(world, "aks-diy-eastus", "Deployment",
                                                   "istio-system")] == ["istiod"]
    assert objects(world, "aks-edge-westus2", "Namespace", None) and not any(
        o["metadata"]["name"] == "aks-istio-system"
        for o in objects(world, "aks-edge-westus2", "Namespace"))  # mesh off: no add-on


@pytest.mark.parametrize("name", ["online-boutique", "aks-store", "batch-and-stateful",
                                  "entra", "unreachable-channels"])
def test_fixture_worlds_load_with_every_kind_listed(name: str) -> None:
    world = built(name)
    for c in world.clusters.values():
        kinds = {k[0] for k in c.objects}
        assert {"Namespace", "Deployment", "ReplicaSet", "Pod", "Service", "Node",
                "CustomResourceDefinition"} <= kinds
        for key, obj in c.objects.items():
            r = c.registry.by_key(key[0])
            assert r is not None, key  # every stored kind is served (listed by the API)
            assert obj["metadata"]["uid"] and obj["metadata"]["resourceVersion"]
            assert bool(key[1]) == r.namespaced, key


def test_real_apps_keep_their_kinds_and_statuses() -> None:
    world = built("aks-store")
    c = "aks-store-eus2"
    sts = {o["metadata"]["name"]: o for o in objects(world, c, "StatefulSet", "store")}
    assert set(sts) == {"documentdb", "rabbitmq"}
    assert all(o["status"]["readyReplicas"] == 1 for o in sts.values())
    assert [p["metadata"]["name"] for p in objects(world, c, "Pod", "store")
            if p["metadata"]["name"].startswith("rabbitmq")] == ["rabbitmq-0"]
    lbs = {o["metadata"]["name"]: o for o in objects(world, c, "Service", "store")
           if o["spec"]["type"] == "LoadBalancer"}
    # the demo's two, and the one istiod provisions for the Gateway API Gateway
    assert set(lbs) == {"store-front", "store-admin", "store-gateway-istio"}
    assert all(o["status"]["loadBalancer"]["ingress"][0]["ip"] for o in lbs.values())
    gw = world.get(c, "Gateway.gateway.networking.k8s.io", "store", "store-gateway")
    assert gw is not None and {k["type"]: k["status"] for k in gw["status"]["conditions"]} \
        == {"Accepted": "True", "Programmed": "True"}
    # store-staging is labelled with the revision tag prod-stable, which tags asm-1-26
    assert {(p["metadata"]["labels"].get("istio.io/rev"), p["spec"]["containers"][1]["image"])
            for p in objects(world, c, "Pod", "store-staging")
            if p["metadata"]["name"].startswith("store-front")} == {
        ("asm-1-26", "mcr.microsoft.com/oss/istio/proxyv2:1.26.4-distroless")}
    secrets = objects(world, c, "Secret", "store")
    assert {s["metadata"]["name"] for s in secrets} == {"rabbitmq-secrets",
                                                        "order-service-secrets"}
    order = next(p for p in objects(world, c, "Pod", "store")
                 if p["metadata"]["name"].startswith("order-service"))
    # the manifest's init container, after the injector's istio-init
    inits = [i["name"] for i in order["spec"]["initContainers"]]
    assert inits == ["istio-init", "wait-for-rabbitmq"]
    assert order["status"]["phase"] == "Running"
    assert order["spec"]["containers"][1]["name"] == "istio-proxy"  # asm-1-26: classic
    boutique = built("online-boutique")
    pods = objects(boutique, "aks-boutique-weu", "Pod", "boutique")
    assert len(pods) == 12 and all(p["status"]["phase"] == "Running" for p in pods)
    lb = [o for o in objects(boutique, "aks-boutique-weu", "Service", "boutique")
          if o["spec"]["type"] == "LoadBalancer"]
    assert [o["metadata"]["name"] for o in lb] == ["frontend-external"]
    serving = {wl for cl, ns, wl, _ in boutique.workloads_traffic() if ns == "boutique"}
    assert "frontend" in serving and "loadgenerator" not in serving  # no Service selects it


def test_native_sidecar_on_asm_1_27_and_kubernetes_1_33() -> None:
    world = built("aks-store")
    c = world.clusters["aks-store-eus2"]
    with world.lock:
        istio = c.arm["properties"]["serviceMeshProfile"]["istio"]
        istio["revisions"] = ["asm-1-26", "asm-1-27"]
        world._sync_mesh(c)
    world.patch("aks-store-eus2", "Namespace", "", "store",
                {"metadata": {"labels": {"istio.io/rev": "asm-1-27"}}})
    world.patch("aks-store-eus2", "Deployment", "store", "store-front",
                {"spec": {"template": {"metadata": {"annotations": {"r": "1"}}}}})
    pod = until(world, lambda: next(
        (p for p in objects(world, "aks-store-eus2", "Pod", "store")
         if p["metadata"]["name"].startswith("store-front") and p["status"]["phase"] ==
         "Running" and p["metadata"]["labels"].get("istio.io/rev") == "asm-1-27"), None))
    proxy = next(i for i in pod["spec"]["initContainers"] if i["name"] == "istio-proxy")
    assert proxy["restartPolicy"] == "Always"
    assert "istio-proxy" not in [ct["name"] for ct in pod["spec"]["containers"]]


def test_jobs_cronjobs_and_history_limits() -> None:
    world = built("batch-and-stateful", clock_speed=600)  # ten sandbox minutes a second
    c = "aks-batch-wus3"
    migrate = world.get(c, "Job", "payments", "migrate-schema")
    assert migrate is not None
    until(world, lambda: (world.get(c, "Job", "payments", "migrate-schema") or {}).get(
        "status", {}).get("succeeded") == 1)
    job = world.get(c, "Job", "payments", "migrate-schema")
    assert job is not None and [cd["type"] for cd in job["status"]["conditions"]] == [
        "SuccessCriteriaMet", "Complete"]
    pods = [p for p in objects(world, c, "Pod", "payments")
            if p["metadata"]["labels"].get("job-name") == "migrate-schema"]
    assert pods[0]["status"]["phase"] == "Succeeded"  # not injected (annotation)
    assert "istio-proxy" not in [ct["name"] for ct in pods[0]["spec"]["containers"]]

    def cleanup_jobs() -> list[dict[str, Any]]:
        return [j for j in objects(world, c, "Job", "payments")
                if j["metadata"]["name"].startswith("cleanup-")]
    # every sandbox minute a Job; only the 2 newest complete ones are kept
    until(world, lambda: len([j for j in cleanup_jobs() if j["status"].get("succeeded")]) >= 2,
          20)
    time.sleep(1)
    world.reconcile()
    done = [j for j in cleanup_jobs() if j["status"].get("succeeded")]
    assert 1 <= len(done) <= 2
    cj = world.get(c, "CronJob", "payments", "cleanup")
    assert cj is not None and cj["status"].get("lastScheduleTime")
    assert cj["status"].get("lastSuccessfulTime")
    # the reports CronJob's pods get the classic sidecar, which keeps running: its Job never
    # finishes, and Forbid keeps it the only one
    reports = until(world, lambda: [j for j in objects(world, c, "Job", "payments")
                                    if j["metadata"]["name"].startswith("reports-")])
    time.sleep(1.5)
    world.reconcile()
    reports = [j for j in objects(world, c, "Job", "payments")
               if j["metadata"]["name"].startswith("reports-")]
    assert len(reports) == 1 and not reports[0]["status"].get("succeeded")
    pod = until(world, lambda: next(
        (p for p in objects(world, c, "Pod", "payments")
         if p["metadata"]["labels"].get("job-name") == reports[0]["metadata"]["name"]
         and "terminated" in p["status"]["containerStatuses"][0]["state"]), None))
    assert pod["status"]["phase"] == "Running"
    states = {cs["name"]: cs["state"] for cs in pod["status"]["containerStatuses"]}
    assert states["reports"]["terminated"]["reason"] == "Completed"
    assert "running" in states["istio-proxy"]
    assert len((world.get(c, "CronJob", "payments", "reports") or {})["status"]["active"]) == 1


def test_ondelete_statefulset_and_deleted_pods() -> None:
    world = built("batch-and-stateful")
    c = "aks-batch-wus3"
    sts = world.get(c, "StatefulSet", "payments", "ledger")
    assert sts is not None and sts["status"]["readyReplicas"] == 3
    assert {p["metadata"]["name"] for p in objects(world, c, "PersistentVolumeClaim",
                                                   "payments")} == {
        "data-ledger-0", "data-ledger-1", "data-ledger-2"}
    world.patch(c, "StatefulSet", "payments", "ledger",
                {"spec": {"template": {"metadata": {"annotations": {"restart": "1"}}}}})
    time.sleep(0.3)
    world.reconcile()
    sts = world.get(c, "StatefulSet", "payments", "ledger")
    assert sts is not None
    status = sts["status"]
    assert status["updateRevision"] != status["currentRevision"]
    assert status.get("updatedReplicas", 0) == 0  # OnDelete: nothing replaced
    world.delete(c, "Pod", "payments", "ledger-1")
    until(world, lambda: (world.get(c, "StatefulSet", "payments", "ledger") or {}).get(
        "status", {}).get("updatedReplicas") == 1)
    pod = world.get(c, "Pod", "payments", "ledger-1")
    assert pod is not None and pod["metadata"]["labels"]["controller-revision-hash"] == \
        status["updateRevision"]


def test_crashloop_that_was_already_there() -> None:
    world = built("entra")  # the Entra ID cluster also holds a crash loop from before
    c = "aks-entra-neu"
    pods = [p for p in objects(world, c, "Pod", "reviews")
            if p["metadata"]["name"].startswith("ratings-v1")]
    assert len(pods) == 1
    st = {cs["name"]: cs for cs in pods[0]["status"]["containerStatuses"]}
    assert st["ratings"]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert st["istio-proxy"]["ready"]
    d = world.get(c, "Deployment", "reviews", "ratings-v1")
    assert d is not None
    conds = {cd["type"]: cd for cd in d["status"]["conditions"]}
    assert conds["Progressing"]["reason"] == "ProgressDeadlineExceeded"
    assert conds["Available"]["status"] == "False"
    shop = [p for p in objects(world, c, "Pod", "shop") if p["metadata"]["name"].startswith(
        "ratings-v1")]
    assert "running" in shop[0]["status"]["containerStatuses"][0]["state"]  # only in reviews


def test_entra_id_cluster() -> None:
    world = built("entra")
    props = world.clusters["aks-entra-neu"].arm["properties"]
    assert props["aadProfile"]["managed"] is True and props["aadProfile"]["enableAzureRBAC"]
    assert props["disableLocalAccounts"] is True


# ------------------------------------------------------------------ wrong world files


def write(tmp_path: Path, world: Any, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "world.yaml"
    path.write_text(world if isinstance(world, str) else yaml.safe_dump(world))
    return path


def cluster(**kw: Any) -> dict[str, Any]:
    return {"name": "aks-x", "location": "westeurope", "kubernetes_version": "1.31.2",
            "revisions": ["asm-1-25"], **kw}


@pytest.mark.parametrize(("world", "files", "needles"), [
    ("clusters: [", {}, ["world.yaml: line 1 column 12: not valid YAML"]),
    ({"clusterz": []}, {}, ["clusters: Field required", "clusterz: Extra inputs are not "
                                                         "permitted"]),
    ({"clusters": [cluster(kubernetes_version=1.31)]}, {},
     ["clusters[0].kubernetes_version: Input should be a valid string",
      'a version "MAJOR.MINOR.PATCH", quoted', "(got 1.31)"]),
    ({"clusters": [cluster(revisions=["asm-1-99"])]}, {},
     ["clusters[0].revisions[0]: asm-1-99 is not a revision the sandbox knows"]),
    ({"clusters": [cluster(kubernetes_version="1.27.3")]}, {},
     ["clusters[0].revisions[0]: asm-1-25 is not compatible with Kubernetes 1.27"]),
    ({"clusters": [cluster(namespaces=[{"name": "shop", "labels": {"istio.io/rev": True}}])]},
     {}, ["clusters[0].namespaces[0].labels.istio.io/rev: Input should be a valid string"]),
    ({"clusters": [cluster(namespaces=[{"name": "shop", "traffic": {"rps": -1}}])]}, {},
     ["clusters[0].namespaces[0].traffic.rps: Input should be greater than 0"]),
    ({"clusters": [cluster(namespaces=[{"name": "shop", "faults": [
        {"workload": "x", "revision": "*"}]}])]}, {},
     ["clusters[0].namespaces[0].faults[0]: a fault needs crashloop: true, an error_rate"]),
    ({"clusters": [cluster(namespaces=[{"name": "shop", "manifests": "nope.yaml"}])]}, {},
     ["clusters[0].namespaces[0].manifests: no file at", "nope.yaml"]),
    ({"clusters": [cluster(namespaces=[{"name": "shop", "manifests": "app.yaml"}])]},
     {"app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
                  "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"},
     ["app.yaml document 2 (line 5)", 'no matches for kind "Widget" in version '
      '"example.com/v1"; ensure CRDs are installed first']),
    ({"clusters": [cluster(namespaces=[{"name": "shop", "manifests": "app.yaml"}])]},
     {"app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: other}\n"},
     ["app.yaml document 1 (line 1)", "the namespace from the provided object 'other' does "
      "not match the namespace 'shop'"]),
    ({"clusters": [cluster(namespaces=[{"name": "shop", "manifests": "app.yaml"}])]},
     {"app.yaml": "---\napiVersion: v1\nkind: ConfigMap\n"},
     ["app.yaml document 1 (line 2): ConfigMap has no metadata.name"]),
    ({"clusters": [cluster(namespaces=[{"name": "shop", "manifests": "app.yaml"}])]},
     {"app.yaml": "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n"
                  "  schedule: '61 * * * *'\n  jobTemplate: {spec: {template: {spec: "
                  "{containers: []}}}}\n"},
     ["app.yaml document 1 (line 1)", "spec.schedule: Invalid value", "out of range"]),
    ({"clusters": [cluster(namespaces=[{"name": "shop", "manifests": "app.yaml", "faults": [
        {"workload": "ratngs", "crashloop": True, "revision": "*"}]}])]},
     {"app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ratings}\n"},
     ["clusters[0].namespaces[0].faults[0].workload: no object named 'ratngs'",
      "(ratings)"]),
    ({"clusters": [cluster(), cluster()]}, {},
     ["clusters[1].name: 'aks-x' is already used by clusters[0]"]),
    ({"clusters": [cluster(labels={"env": "dev", "ring!": "1"})]}, {},
     ["clusters[0].labels: not Kubernetes-style label keys or values: ring!"]),
    ({"clusters": [cluster()], "campaigns": {"stages": [{"name": "dev", "clusters": ["aks-y"]}]}},
     {}, ["campaigns.stages[0].clusters: no cluster aks-y in the world (its clusters: aks-x)"]),
    ({"clusters": [cluster()], "campaigns": {"stages": [{"name": "dev", "max_concurrency": 0}]}},
     {}, ["campaigns.stages[0].max_concurrency: Input should be greater than or equal to 1"]),
])
def test_a_wrong_world_file_says_where_and_what(tmp_path: Path, world: Any,
                                                files: dict[str, str],
                                                needles: list[str]) -> None:
    path = write(tmp_path, world, **files)
    with pytest.raises(WorldError) as err:
        build(World(), load(path))
    message = str(err.value)
    assert str(path.parent) in message
    for needle in needles:
        assert needle in message, message


def test_istio_kinds_need_the_mesh_or_their_crds(tmp_path: Path) -> None:
    vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\n"
    on = write(tmp_path, {"clusters": [cluster(namespaces=[
        {"name": "shop", "manifests": "vs.yaml"}])]}, **{"vs.yaml": vs})
    world = World()
    build(world, load(on))
    assert world.get("aks-x", "VirtualService.networking.istio.io", "shop", "v")
    off = write(tmp_path, {"clusters": [cluster(revisions=[], namespaces=[
        {"name": "shop", "manifests": "vs.yaml"}])]}, **{"vs.yaml": vs})
    with pytest.raises(WorldError, match="ensure CRDs are installed first"):
        build(World(), load(off))
    assert Registry([]).by_kind("networking.istio.io/v1", "VirtualService") is None
