"""A sandbox that scales: generated worlds, the Kubernetes emulator's index and pagination,
and a Prometheus configuration that keeps every sample of a big mesh (issue 13)."""

from __future__ import annotations

import base64
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from meshops.cli import main
from sandbox.app import SCRAPE_INTERVALS, Sandbox, scrape_interval_for, wave_size_for
from sandbox.http import Request, Response, Router
from sandbox.kube import decode_continue, encode_continue
from sandbox.prom import scrape_config
from sandbox.traffic import TrafficSimulator
from sandbox.world import Cluster, KeyIndex, World, storage_key
from sandbox.worldfile import (
    MAX_NAMESPACES,
    GeneratedCampaign,
    WorldError,
    build,
    generate,
    ring_sizes,
)
from tests.conftest import free_port_base
from tests.sandbox.conftest import running
from workers.campaigns import stage_specs
from workers.config import load_fleet
from workflows.campaign import stage_members

NAMESPACES = 50  # a built world: big enough to tell a namespace's cost from the cluster's


def name_of(obj: k8s.V1Pod | k8s.V1Namespace | k8s.V1ConfigMap) -> str:
    assert obj.metadata is not None and obj.metadata.name is not None
    return obj.metadata.name


def namespace_of(pod: k8s.V1Pod) -> str:
    assert pod.metadata is not None and pod.metadata.namespace is not None
    return pod.metadata.namespace


def page_meta(page: k8s.V1PodList | k8s.V1NamespaceList | k8s.V1ConfigMapList
              ) -> k8s.V1ListMeta:
    assert page.metadata is not None
    return page.metadata


class CountingObjects(dict):  # type: ignore[type-arg]
    """A cluster's object store that counts the objects read out of it."""

    reads = 0

    def __getitem__(self, key: Any) -> Any:
        CountingObjects.reads += 1
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        CountingObjects.reads += 1
        return super().get(key, default)

    def items(self) -> Any:
        CountingObjects.reads += len(self)
        return super().items()

    def values(self) -> Any:
        CountingObjects.reads += len(self)
        return super().values()


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    port_base = free_port_base(10000, 15000, 10)
    sb = Sandbox(Path(tmp_path_factory.mktemp("scale")), port_base, operation_s=0.5,
                 rollout_s=0.3, with_prometheus=False, generated=(NAMESPACES, 2))
    with running(sb):
        yield sb


@pytest.fixture(scope="module")
def v1(big: Sandbox) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        str(big.kubeconfig_path), context="scale-01"))


# ---------------------------------------------------------------------- generated worlds


def test_a_generated_world_is_a_world_file_s_spec() -> None:
    world = generate(2000, 3)
    spec = world.spec
    assert [c.key for c in spec.clusters] == ["scale-01", "scale-02", "scale-03"]
    assert len({c.slack.id for c in spec.clusters}) == 3
    for c in spec.clusters:
        assert c.revisions == ["asm-1-25"]
        assert len(c.namespaces) == 2000
        assert c.namespaces[0].name == "app-0001" and c.namespaces[-1].name == "app-2000"
        assert all(ns.labels == {"istio.io/rev": "asm-1-25"} for ns in c.namespaces)
        assert c.node_count * 110 >= 2 * 2000  # room for every pod (AKS: 110 per node)
    kinds = sorted(d.body["kind"] for d in world.manifests[(0, 0)])
    assert kinds == ["Deployment", "Service"]


@pytest.mark.parametrize(("namespaces", "clusters", "says"), [
    (0, 1, "1 to 5000 app namespaces"),
    (-3, 1, "1 to 5000 app namespaces"),
    (MAX_NAMESPACES + 1, 1, "1 to 5000 app namespaces"),
    (10, 0, "1 to 50 clusters"),
    (10, 51, "1 to 50 clusters"),
    (5000, 3, "15000 namespaces in all"),
])
def test_generate_refuses_worlds_out_of_bounds(namespaces: int, clusters: int,
                                               says: str) -> None:
    with pytest.raises(WorldError, match=says):
        generate(namespaces, clusters)
    with pytest.raises(WorldError, match="--replicas 11: a generated app runs 1 to 10 pods"):
        generate(10, 1, 11)


def test_a_generated_world_has_no_campaign_unless_asked() -> None:
    spec = generate(2, 12).spec
    assert spec.campaigns is None
    assert all(c.labels == {} for c in spec.clusters)


@pytest.mark.parametrize(("clusters", "sizes"), [
    (1, (1, 0, 0)), (3, (1, 1, 1)), (12, (2, 3, 7)), (50, (5, 15, 30)),
])
def test_campaign_rings_take_the_first_tenth_then_three_tenths_then_the_rest(
        clusters: int, sizes: tuple[int, int, int]) -> None:
    assert ring_sizes(clusters) == sizes
    spec = generate(1, clusters, campaign=GeneratedCampaign()).spec
    rings = [c.labels["ring"] for c in spec.clusters]
    assert rings == ["dev"] * sizes[0] + ["staging"] * sizes[1] + ["prod"] * sizes[2]


def test_campaign_world_s_fleet_file_stages_select_its_rings(tmp_path: Path) -> None:
    """A generated campaign world (``meshops sandbox --namespaces 2 --clusters 12
    --campaign``): the fleet file the sandbox writes loads, and its stages take the
    clusters by their ring labels, in order."""
    rings = GeneratedCampaign(max_concurrency=(1, 2, 3), max_failures=2, soak="7s")
    sb = Sandbox(tmp_path, free_port_base(10000, 15000, 10), operation_s=0.5, rollout_s=0.3,
                 with_prometheus=False, generated=(2, 12), campaign=rings)
    with running(sb):
        fleet = load_fleet(sb.state_dir / "fleet.yaml")
    assert fleet.campaigns is not None and fleet.campaigns.channel == "C0FLEET"
    assert [(s.name, s.selector, s.max_concurrency, s.max_failures, s.approval, s.soak)
            for s in fleet.campaigns.stages] == [
        ("dev", {"ring": "dev"}, 1, 2, False, 7), ("staging", {"ring": "staging"}, 2, 2,
                                                   False, 7),
        ("prod", {"ring": "prod"}, 3, 2, False, 7)]
    members = stage_members(stage_specs(fleet), {name: c.labels
                                                 for name, c in fleet.clusters.items()})
    assert members == {f"scale-{i:02d}": "dev" if i <= 2 else "staging" if i <= 5 else "prod"
                       for i in range(1, 13)}


def test_campaign_options_of_the_sandbox_command_are_checked() -> None:
    runner = CliRunner()
    for args, says in [
        (["--campaign"], "generate one with --namespaces"),
        (["--namespaces", "2", "--campaign-soak", "5s"], "add --campaign"),
        (["--namespaces", "2", "--campaign", "--campaign-concurrency", "5,10"],
         "three whole numbers from 1 to 50"),
        (["--namespaces", "2", "--campaign", "--campaign-concurrency", "5,10,51"],
         "three whole numbers from 1 to 50"),
        (["--namespaces", "2", "--campaign", "--campaign-soak", "soon"], "not a duration"),
    ]:
        result = runner.invoke(main, ["sandbox", *args])
        assert result.exit_code == 2, (args, result.output)
        assert says in result.output, (args, result.output)


def test_a_generated_world_of_one_pod_per_namespace() -> None:
    world = World(operation_s=0.5, rollout_s=0.3)
    build(world, generate(NAMESPACES, 1, 1))
    c = world.clusters["aks-scale-01"]
    pods = [c.objects[k] for k in c.index["Pod"] if k[1].startswith("app-")]
    assert len(pods) == NAMESPACES  # one in each namespace
    assert len({p["metadata"]["namespace"] for p in pods}) == NAMESPACES


def test_a_generated_world_builds_with_an_address_for_every_pod() -> None:
    world = World(operation_s=0.5, rollout_s=0.3)
    build(world, generate(NAMESPACES * 2))
    c = world.clusters["aks-scale-01"]
    pods = [c.objects[k] for k in c.index["Pod"] if k[1].startswith("app-")]
    assert len(pods) == 4 * NAMESPACES
    assert all(p["status"]["phase"] == "Running" for p in pods)
    assert all(p["spec"]["containers"][-1]["name"] == "istio-proxy" or any(
        ctr["name"] == "istio-proxy" for ctr in p["spec"].get("initContainers") or [])
        for p in pods)
    # a node's pod CIDR never gives one address to two pods (else a proxy's scrape target
    # would hide another's)
    assert len({p["status"]["podIP"] for p in pods}) == len(pods)


# ---------------------------------------------------------------------- the index


def index_is_whole(c: Cluster) -> None:
    by_kind: dict[str, set[Any]] = {}
    for key in c.objects:
        by_kind.setdefault(key[0], set()).add(key)
    assert {k: set(v) for k, v in c.index.items() if len(v)} == by_kind
    for kind, index in c.index.items():
        keys = index.keys()
        assert keys == sorted(keys, key=storage_key), kind
        for ns in index.namespaces():
            assert index.keys(ns) == sorted((k for k in keys if k[1] == ns),
                                            key=lambda k: k[2])


def test_the_index_keeps_every_kind_in_the_api_server_s_order(big: Sandbox,
                                                              v1: k8s.CoreV1Api) -> None:
    c = big.world.clusters["aks-scale-01"]
    with big.world.lock:
        index_is_whole(c)
        assert len(c.index["Namespace"].keys()) == NAMESPACES + 5  # and the system ones
    # create and delete paths keep it whole: a deleted pod is replaced, a namespace goes
    pod = name_of(v1.list_namespaced_pod("app-0003").items[0])
    v1.delete_namespaced_pod(pod, "app-0003", grace_period_seconds=0)
    v1.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="app-0003-extra")))
    v1.create_namespaced_config_map("app-0003-extra", k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(name="settings"), data={"a": "b"}))
    v1.delete_namespaced_config_map("settings", "app-0003-extra")
    with big.world.lock:
        index_is_whole(c)


def test_etcd_key_order_puts_a_longer_namespace_first() -> None:
    # etcd orders "/registry/pods/app-1/x" after "/registry/pods/app-1-b/x" ('-' < '/')
    index = KeyIndex([("Pod", "app-1", "x"), ("Pod", "app-1-b", "x"), ("Pod", "app-0", "z")])
    assert index.keys() == [("Pod", "app-0", "z"), ("Pod", "app-1-b", "x"),
                            ("Pod", "app-1", "x")]
    assert index.keys("app-1") == [("Pod", "app-1", "x")]
    assert index.keys(None, "app-1-b/x\x00") == [("Pod", "app-1", "x")]
    index.discard(("Pod", "app-1-b", "x"))
    assert list(index) == [("Pod", "app-0", "z"), ("Pod", "app-1", "x")]
    assert index.namespaces() == ["app-0", "app-1"]


def test_listing_one_namespace_reads_only_its_objects(big: Sandbox,
                                                      v1: k8s.CoreV1Api) -> None:
    c = big.world.clusters["aks-scale-01"]
    with big.world.lock:
        c.objects = CountingObjects(c.objects)
    try:
        CountingObjects.reads = 0
        pods = v1.list_namespaced_pod("app-0042").items
        one_namespace = CountingObjects.reads
        CountingObjects.reads = 0
        everything = v1.list_pod_for_all_namespaces().items
        all_namespaces = CountingObjects.reads
    finally:
        with big.world.lock:
            c.objects = dict(c.objects)
    assert [namespace_of(p) for p in pods] == ["app-0042", "app-0042"]
    assert len(everything) >= 2 * NAMESPACES
    # the namespace's own pods (and a few reads of the reconcile loop), not the cluster's
    assert one_namespace <= 10
    assert all_namespaces >= 2 * NAMESPACES


def settled(sb: Sandbox, cluster: str = "aks-scale-01", timeout: float = 20) -> None:
    """Wait until no pod of ``cluster`` terminates (an earlier test deleted one), so that
    two reads a moment apart see the same pods."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with sb.world.lock:
            c = sb.world.clusters[cluster]
            if not any(c.objects[k]["metadata"].get("deletionTimestamp")
                       for k in c.index["Pod"]):
                return
        time.sleep(0.1)
    raise AssertionError(f"pods of {cluster} still terminating after {timeout:.0f} s")


def test_label_selectors_select_what_a_full_scan_selects(big: Sandbox,
                                                        v1: k8s.CoreV1Api) -> None:
    c = big.world.clusters["aks-scale-01"]
    settled(big)
    v1.patch_namespace("app-0040", {"metadata": {"labels": {"team": "blue"}}})
    v1.patch_namespace("app-0007", {"metadata": {"labels": {"team": "blue"}}})
    selected = [name_of(n) for n in v1.list_namespace(label_selector="team=blue").items]
    assert selected == ["app-0007", "app-0040"]
    web = v1.list_pod_for_all_namespaces(label_selector="app=web,version in (v1)").items
    with big.world.lock:
        expected = sorted(
            (k for k, o in c.objects.items() if k[0] == "Pod" and
             (o["metadata"].get("labels") or {}).get("app") == "web"), key=storage_key)
    assert [(namespace_of(p), name_of(p)) for p in web] == [
        (k[1], k[2]) for k in expected]


# ---------------------------------------------------------------------- pagination


def test_the_official_client_pages_through_namespaces(v1: k8s.CoreV1Api) -> None:
    whole = [name_of(n) for n in v1.list_namespace().items]
    pages, names, token = 0, [], None
    while True:
        page = v1.list_namespace(limit=40, _continue=token)
        pages += 1
        names += [name_of(n) for n in page.items]
        if pages == 1:
            assert page_meta(page).remaining_item_count == len(whole) - 40
            first_rv = page_meta(page).resource_version
        else:
            assert page_meta(page).resource_version == first_rv  # one consistent list
        token = page_meta(page)._continue
        if not token:
            break
    assert names == whole and pages == -(-len(whole) // 40)


def test_pages_keep_the_first_page_s_snapshot(big: Sandbox, v1: k8s.CoreV1Api) -> None:
    first = v1.list_namespaced_pod("app-0011", limit=1)
    assert len(first.items) == 1 and page_meta(first)._continue
    # a change after the first page is not in the next ones (etcd reads at its revision)
    v1.create_namespaced_config_map("app-0011", k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(name="zz-late")))
    cms = v1.list_namespaced_config_map("app-0011", limit=1)
    rest = v1.list_namespaced_config_map("app-0011", limit=10,
                                         _continue=page_meta(cms)._continue)
    assert "zz-late" not in [name_of(c) for c in cms.items + rest.items] or \
        page_meta(cms)._continue is None
    second = v1.list_namespaced_pod("app-0011", limit=5, _continue=page_meta(first)._continue)
    assert len(second.items) == 1 and page_meta(second)._continue is None
    assert name_of(second.items[0]) != name_of(first.items[0])


def test_a_selector_pages_by_what_it_read(v1: k8s.CoreV1Api) -> None:
    page = v1.list_pod_for_all_namespaces(label_selector="app=web", limit=3)
    assert len(page.items) == 3
    assert page_meta(page).remaining_item_count is None  # unknown with a selector
    rest = v1.list_pod_for_all_namespaces(label_selector="app=web", limit=1000,
                                          _continue=page_meta(page)._continue)
    # the pages are the list at the first page's revision: every app pod, and the one an
    # earlier test deleted while it terminates
    live = [p for p in page.items + rest.items
            if p.metadata is not None and p.metadata.deletion_timestamp is None]
    assert len(live) == 2 * NAMESPACES


def test_continue_tokens_as_the_api_server_reads_them(big: Sandbox,
                                                      v1: k8s.CoreV1Api) -> None:
    token = page_meta(v1.list_namespace(limit=2))._continue
    assert token
    rv, start = decode_continue(token)
    raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    assert raw == {"v": "meta.k8s.io/v1", "rv": rv, "start": start}
    assert start.endswith("\x00")
    for bad in ("not base64!", encode_continue(0, "a"), encode_continue(5, "")):
        with pytest.raises(ApiException) as exc:
            v1.list_namespace(limit=2, _continue=bad)
        assert exc.value.status == 400
        assert "continue" in json.loads(str(exc.value.body))["message"]
    with pytest.raises(ApiException) as exc:
        v1.list_namespace(limit=2, _continue=token, resource_version="12")
    assert exc.value.status == 400
    # compacted: 410 Expired, with a token that goes on at the latest state
    with big.world.lock:
        big.kube.snapshots.clear()
    with pytest.raises(ApiException) as exc:
        v1.list_namespace(limit=2, _continue=token)
    assert exc.value.status == 410
    status = json.loads(str(exc.value.body))
    assert status["reason"] == "Expired"
    assert decode_continue(status["metadata"]["continue"]) == (-1, start)
    onward = v1.list_namespace(limit=1000, _continue=status["metadata"]["continue"])
    assert [name_of(n) for n in onward.items] == [
        name_of(n) for n in v1.list_namespace().items][2:]


def test_kubectl_s_table_pages_carry_the_continue_token(big: Sandbox) -> None:
    c = big.world.clusters["aks-scale-01"]
    resp = requests.get(
        f"{big.url['kube']}/clusters/{c.name}/api/v1/pods?limit=50",
        headers={"Authorization": f"Bearer {c.token}",
                 "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
        verify=str(big.state_dir / "tls" / "kube-ca.pem"), timeout=10)  # the cluster CA
    doc = resp.json()
    assert doc["kind"] == "Table" and len(doc["rows"]) == 50
    assert doc["metadata"]["continue"] and doc["metadata"]["remainingItemCount"] > 0


# ---------------------------------------------------------------------- Prometheus


def test_prometheus_may_take_the_whole_interval_and_any_number_of_samples() -> None:
    config = scrape_config([], "http://127.0.0.1:1/sd/targets", "5s")
    assert config["global"]["scrape_timeout"] == config["global"]["scrape_interval"] == "5s"
    for job in config["scrape_configs"]:
        assert not job.get("sample_limit") and not job.get("body_size_limit")
    # 1,500 namespaces of 2 proxies: scraped every 10 s, not every second; 2,000: every
    # 30 s, as managed Prometheus does by default
    assert scrape_interval_for(10) == 1 and scrape_interval_for(3000) == 10
    assert scrape_interval_for(4000) == 30
    assert [s for _, s in SCRAPE_INTERVALS] == sorted(s for _, s in SCRAPE_INTERVALS)


def test_a_big_cluster_s_fleet_entry_has_waves_a_big_cluster_would_have(big: Sandbox) -> None:
    # 2,000 namespaces: a pilot and 20 waves of 100, not 667 waves of 3
    assert wave_size_for(2000) == 100 and wave_size_for(61) == 4
    assert wave_size_for(NAMESPACES) == wave_size_for(1) == 3
    fleet = big.fleet(Path("/ca.pem"))
    assert fleet["defaults"]["upgrade"]["wave_size"] == 3
    assert all("upgrade" not in c for c in fleet["clusters"].values())  # 50: the default


def test_a_scrape_does_not_wait_for_the_traffic_to_advance() -> None:
    world = World(operation_s=0.5, rollout_s=0.3)
    build(world, generate(20))
    ts = TrafficSimulator(world)
    ts.start(tick_s=3600)  # one tick now, the next in an hour
    try:
        groups = ts.service_discovery("127.0.0.1:1")
        assert len(groups) == 40
        path = groups[0]["labels"]["__metrics_path__"]
        router = ts.router()
        # the next advance holds the simulator's lock; the scrape is answered meanwhile
        answered: list[Any] = []
        with ts.lock:
            t = threading.Thread(target=lambda: answered.append(scrape(router, path)))
            t.start()
            t.join(5)
            assert answered, "the scrape waited for the advance"
        status, body = answered[0]
        assert status == 200 and b'istio_build{component="proxy"' in body
    finally:
        ts.stop()


def test_scrapes_are_answered_by_a_process_of_their_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(operation_s=0.5, rollout_s=0.3)
    build(world, generate(20))
    ts = TrafficSimulator(world)
    # count the requests that reach the simulator's own process
    calls: list[str] = []
    own = TrafficSimulator.router(ts)
    counted = Router()

    def counting(fn: Callable[[Request], Response], req: Request) -> Response:
        calls.append(req.path)
        return fn(req)

    for method, pattern, fn in own.routes:
        counted.routes.append((method, pattern, functools.partial(counting, fn)))
    monkeypatch.setattr(ts, "router", lambda: counted)
    port = free_port_base(15000, 20000)
    base = f"http://127.0.0.1:{port}"
    server = ts.serve("127.0.0.1", port)
    try:
        with requests.Session() as http:  # one keep-alive connection, as Prometheus keeps
            # nothing rendered yet: this process answers, advancing on demand
            groups = http.get(f"{base}/sd/targets", timeout=10).json()
            assert len(groups) == 40 and calls == ["/sd/targets"]
            paths = [g["labels"]["__metrics_path__"] for g in groups]
            ts.start(tick_s=3600)  # one tick now, rendered and published
            calls.clear()
            exposed = ts._exposed
            assert exposed is not None
            # while this process is busy (an advance holds its locks), the other answers
            # every scrape and the service discovery from the tick's pages
            with ts.lock, world.lock:
                assert http.get(f"{base}/sd/targets", timeout=10).json() == [
                    {"targets": [f"127.0.0.1:{port}"], "labels": g["labels"]}
                    for g in groups]
                for path in paths:
                    resp = http.get(base + path, timeout=10)
                    key = tuple(path.split("/")[3:])
                    assert resp.status_code == 200 and resp.content == exposed[0][key]
                    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                gone = http.get(f"{base}/stats/prometheus/aks-scale-01/app-0001/gone",
                                timeout=10)
                assert gone.status_code == 404
            assert calls == []
            # the next tick's pages replace the last ones whole
            before = http.get(base + paths[0], timeout=10).content
            ts._tick()
            after = http.get(base + paths[0], timeout=10).content
            assert ts._exposed is not None and after != before
            assert after == ts._exposed[0][tuple(paths[0].split("/")[3:])]
            # what is not published is this process' own (/metrics, for people)
            assert http.get(f"{base}/metrics", timeout=30).status_code == 200
            assert calls == ["/metrics"]
            # stopped, the scrapes advance on demand in this process again
            ts.stop()
            calls.clear()
            assert http.get(base + paths[0], timeout=10).status_code == 200
            assert calls == [paths[0]]
    finally:
        ts.stop()
        server.shutdown()
    assert server.proc.poll() is not None  # the serving process is gone with it


def scrape(router: Any, path: str) -> tuple[int, bytes]:
    for method, pattern, fn in router.routes:
        m = pattern.fullmatch(path)
        if method == "GET" and m:
            req = type("Req", (), {"params": m.groupdict(), "headers": {}, "query": {}})()
            resp = fn(req)
            return resp.status, resp.body
    raise AssertionError(f"no route for {path}")


# ---------------------------------------------------------------------- the command line


BOTH = [
    (["--world", "w.yaml", "--namespaces", "10"], "not both"),
    (["--namespaces", "0"], "1 to 5000 app namespaces"),
    (["--namespaces", "5001"], "1 to 5000 app namespaces"),
    (["--clusters", "51"], "1 to 50 clusters"),
    (["--namespaces", "4000", "--clusters", "3"], "12000 namespaces"),
]
#: options only `meshops sandbox` has
SANDBOX_ONLY = [
    (["--namespaces", "10", "--extra-namespaces", "3"], "--namespaces instead"),
    (["--namespaces", "10", "--replicas", "0"], "1 to 10 pods"),
]


@pytest.mark.parametrize(("command", "args", "says"), [
    *[(c, a, s) for c in ("sandbox", "demo") for a, s in BOTH],
    *[("sandbox", a, s) for a, s in SANDBOX_ONLY]])
def test_bad_generated_worlds_are_refused_before_anything_starts(
        command: str, args: list[str], says: str) -> None:
    result = CliRunner().invoke(main, [command, "--state-dir", "/nonexistent/x", *args])
    assert result.exit_code == 2, result.output
    assert says in result.output


def test_a_cluster_wide_list_keeps_one_page_of_typed_objects_at_a_time(
        big: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many namespaces are read in one cluster-wide list, page by page; each page's typed
    objects (a V1Pod is tens of KB) become meshops' own before the next page is asked
    for, so a worker never holds a whole cluster's V1Pods (+98 MB → +31 MB at 2,000
    namespaces). The pods are the ones listed namespace by namespace."""
    from workers.kube import cluster as kube

    settled(big)
    api = kube.KubernetesClusterApi(k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        str(big.kubeconfig_path), context="scale-01"), "scale-01")
    wanted = [f"app-{i:04}" for i in range(0, NAMESPACES, 2)]
    per_namespace = api.list_pods(wanted)
    events: list[str] = []
    calls, pod = api._call, kube.KubernetesClusterApi._pod
    monkeypatch.setattr(kube, "PER_NAMESPACE_LIMIT", 5)  # so: one cluster-wide list
    monkeypatch.setattr(kube, "LIST_PAGE", 7)
    monkeypatch.setattr(api, "_call", lambda *a, **kw: events.append("page") or calls(*a, **kw))
    monkeypatch.setattr(kube.KubernetesClusterApi, "_pod",
                        classmethod(lambda cls, p: events.append("pod") or pod(p)))
    whole = api.list_pods(wanted)
    assert sorted(map(repr, whole)) == sorted(map(repr, per_namespace))
    assert whole and {p.namespace for p in whole} <= set(wanted)  # none of the others'
    pages = events.count("page")
    assert pages >= 2 * NAMESPACES / 7
    # every pod of a page converted before the next page, and none of the others' pods
    runs = "".join("P" if e == "page" else "o" for e in events).split("P")[1:]
    assert all(len(r) <= 7 for r in runs) and sum(map(len, runs)) == len(whole)
