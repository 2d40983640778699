"""The traffic simulator: Istio's standard metrics of every proxy, as a real Prometheus reads them.

First the simulator on its own (world file settings, production noise, the weather's
schedule), then a sandbox whose real Prometheus (Debian's ``prometheus``) scrapes every proxy
as its own target: series of both reporters with Istio's labels, gRPC failures inside HTTP
200, TCP connections failed with ``UF``, errors only the caller's proxy sees, a fleet-wide
incident, production noise, and meshops' own reader (``PrometheusMetricsApi.windows``)
telling reporters and revisions apart.
"""

from __future__ import annotations

import math
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from sandbox.app import Sandbox
from sandbox.traffic import BUCKETS, P99_RATIO_TAIL, TrafficSimulator, bucket_shares
from sandbox.world import RecurringIncident, Weather, World
from sandbox.worldfile import DEFAULT_WORLD, WorldError, build, load
from tests.conftest import FIXTURES, free_port_base
from tests.sandbox.conftest import running
from workers.prom.metrics import PrometheusMetricsApi

BOOKINFO = str(DEFAULT_WORLD.parent / "bookinfo.yaml")
BOUTIQUE = str(FIXTURES / "worlds" / "apps" / "online-boutique.yaml")
TRAFFIC, STORM = "aks-traffic-weu", "aks-storm-weu"
GW25, GW26 = ("aks-istio-ingressgateway-external-asm-1-25",
              "aks-istio-ingressgateway-external-asm-1-26")
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None,
                                      reason="no prometheus: apt-get install -y prometheus")

#: an Istio Gateway on the add-on's external ingress gateway and a VirtualService routing
#: /productpage to Bookinfo's productpage (AKS doc istio-deploy-ingress.md)
INGRESS = [
    {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
     "metadata": {"name": "bookinfo-gateway-external"},
     "spec": {"selector": {"istio": "aks-istio-ingressgateway-external"},
              "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                           "hosts": ["*"]}]}},
    {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
     "metadata": {"name": "bookinfo-vs-external"},
     "spec": {"hosts": ["*"], "gateways": ["bookinfo-gateway-external"],
              "http": [{"match": [{"uri": {"exact": "/productpage"}}],
                        "route": [{"destination": {"host": "productpage",
                                                   "port": {"number": 9080}}}]}]}},
]


def cluster(name: str, alias: str, namespaces: list[dict[str, Any]]) -> dict[str, Any]:
    """A cluster in the middle of a canary upgrade from asm-1-25 to asm-1-26."""
    return {"name": name, "alias": alias, "location": "westeurope",
            "kubernetes_version": "1.32.6", "revisions": ["asm-1-25", "asm-1-26"],
            "namespaces": namespaces}


def write_world(path: Path, spec: dict[str, Any]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "ingress.yaml").write_text(yaml.safe_dump_all(INGRESS))
    (path / "world.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return path / "world.yaml"


# --- the simulator on its own --------------------------------------------------------------

def test_world_file_traffic_settings(tmp_path: Path) -> None:
    path = write_world(tmp_path, {
        "traffic": {"noise": "production", "seed": 3,
                    "diurnal": {"amplitude": 0.4, "peak_hour": 20},
                    "incidents": [
                        {"at_s": 60, "duration_s": 30, "error_rate": 0.05, "clusters": ["t"]},
                        {"every_s": 600, "duration_s": 90, "latency_x": 3}]},
        "clusters": [cluster(TRAFFIC, "t", [
            {"name": "shop", "labels": {"istio.io/rev": "asm-1-25"}, "manifests": BOOKINFO,
             "traffic": {"rps": 20, "noise": "none"},
             "faults": [{"workload": "productpage-v1", "revision": "asm-1-26",
                         "source_error_rate": 0.2},
                        {"workload": "details-v1", "revision": "asm-1-26",
                         "error_rate": 0.1, "grpc_status": 4}]}])]})
    world = World(rollout_s=0)
    before = time.time()
    build(world, load(path))
    weather = world.weather
    assert (weather.noise, weather.seed, weather.diurnal_amplitude, weather.peak_hour) == (
        "production", 3, 0.4, 20)
    [once] = weather.incidents
    assert once.clusters == (TRAFFIC,) and once.error_rate == 0.05
    assert before + 60 <= once.start <= time.time() + 60 and once.end == once.start + 30
    assert weather.recurring == [RecurringIncident(600, 90, 0.0, 3.0, None)]
    assert world.traffic[(TRAFFIC, "shop")].noise == "none"
    src = world.fault(TRAFFIC, "shop", "productpage-v1", "asm-1-26")
    assert (src.source_error_rate, src.error_rate) == (0.2, 0.0)
    assert world.fault(TRAFFIC, "shop", "details-v1", "asm-1-26").grpc_status == 4


@pytest.mark.parametrize(("traffic", "needle"), [
    ({"noise": "loud"}, "traffic.noise: Input should be 'none' or 'production'"),
    ({"incidents": [{"at_s": 1, "every_s": 5, "duration_s": 3, "error_rate": 0.1}]},
     "either at_s (once) or every_s (recurring)"),
    ({"incidents": [{"at_s": 1, "duration_s": 3}]}, "needs an error_rate or a latency_x"),
    ({"incidents": [{"at_s": 1, "duration_s": 3, "error_rate": 0.1, "clusters": ["nope"]}]},
     "traffic.incidents[0].clusters: 'nope' is not a cluster of this world"),
    ({"diurnal": {"amplitude": 1.5}}, "traffic.diurnal.amplitude: Input should be less than"),
])
def test_wrong_traffic_settings_say_what(tmp_path: Path, traffic: dict[str, Any],
                                         needle: str) -> None:
    path = write_world(tmp_path, {"traffic": traffic, "clusters": [cluster(TRAFFIC, "t", [])]})
    with pytest.raises(WorldError) as err:
        load(path)
    assert needle in str(err.value)


def test_a_fault_needs_an_effect(tmp_path: Path) -> None:
    path = write_world(tmp_path, {"clusters": [cluster(TRAFFIC, "t", [
        {"name": "shop", "manifests": BOOKINFO,
         "faults": [{"workload": "details-v1", "revision": "*", "grpc_status": 14}]}])]})
    with pytest.raises(WorldError, match="a source_error_rate or a latency_ms"):
        load(path)


def _bookinfo_sim(tmp_path: Path, noise: str) -> tuple[World, TrafficSimulator]:
    path = write_world(tmp_path, {"traffic": {"seed": 11}, "clusters": [cluster(TRAFFIC, "t", [
        {"name": "shop", "labels": {"istio.io/rev": "asm-1-25"}, "manifests": BOOKINFO,
         "traffic": {"rps": 600, "p99_ms": 200, "noise": noise}}])]})
    world = World(rollout_s=0)
    build(world, load(path))
    return world, TrafficSimulator(world)


def _p99(increments: list[float]) -> float:
    """histogram_quantile(0.99) of non-cumulative bucket counts, +Inf last."""
    total, rank, below = sum(increments), 0.99 * sum(increments), 0.0
    for i, c in enumerate(increments[:-1]):
        if below + c >= rank:
            lo = BUCKETS[i - 1] if i else 0.0
            return lo + (BUCKETS[i] - lo) * (rank - below) / c
        below += c
    return math.inf if total else math.nan


def _steps(sim: TrafficSimulator, workload: str, seconds: int) -> tuple[list[float], list[
        float], list[list[float]]]:
    """Per-second increments of ``workload``'s destination-reported requests (all codes):
    counts, the counters' values, and the bucket increments."""
    counts, values, buckets = [], [], []
    prev_total, prev_buckets = 0.0, [0.0] * (len(BUCKETS) + 1)
    for _ in range(seconds):
        sim.advance(sim.last + 1)
        rows = [row for t in sim.targets.values() if t.pod.workload == workload
                for labels, row in t.requests.items() if 'reporter="destination"' in labels]
        total = sum(r[0] for r in rows)
        bks = [sum(r[2 + i] for r in rows) for i in range(len(BUCKETS) + 1)]
        counts.append(total - prev_total)
        values += [r[0] for r in rows]
        buckets.append([b - p for b, p in zip(bks, prev_buckets, strict=True)])
        prev_total, prev_buckets = total, bks
    return counts, values, buckets


def test_production_noise_is_overdispersed_whole_and_heavy_tailed(tmp_path: Path) -> None:
    _, sim = _bookinfo_sim(tmp_path / "noisy", "production")
    counts, values, buckets = _steps(sim, "details-v1", 120)
    mean = statistics.mean(counts)
    assert 80 <= mean <= 120  # 600 rps over Bookinfo's six workloads: 100 a second each
    assert statistics.variance(counts) > 3 * mean  # gamma–Poisson: far beyond Poisson's
    assert all(v == int(v) for v in values)  # whole requests
    p99s = [_p99(b) for b in buckets]
    assert len({round(p, 3) for p in p99s}) > 30  # not constant
    assert statistics.median(p99s) == pytest.approx(200, rel=0.5)  # the namespace's p99_ms
    # the tail is heavy: beyond 10 × the median (≈ 300 ms) much more than a log-normal has
    median = 200 / P99_RATIO_TAIL
    over = sum(sum(b[i + 1:]) for b in buckets for i, le in enumerate(BUCKETS)
               if le == 500) / sum(map(sum, buckets))
    lognormal_over = sum(bucket_shares(median, False)[BUCKETS.index(500) + 1:])
    assert over > 10 * lognormal_over

    _, exact = _bookinfo_sim(tmp_path / "exact", "none")
    counts, _, buckets = _steps(exact, "details-v1", 20)
    assert counts == pytest.approx([100.0] * 20)  # exact rates: no noise at all
    assert max(map(_p99, buckets)) == pytest.approx(min(map(_p99, buckets)))


def test_diurnal_load_and_recurring_incidents(tmp_path: Path) -> None:
    world, sim = _bookinfo_sim(tmp_path, "none")
    world.weather = Weather(diurnal_amplitude=0.5, peak_hour=14,
                            recurring=[RecurringIncident(100, 10, error_rate=0.2)])

    def at_hour(hour: float) -> float:  # the wall time when the sandbox clock shows hour
        day = world.sandbox_time(world.clock_origin) // 86400 * 86400 + 86400
        return world.wall_time(day + hour * 3600)

    assert sim.diurnal(at_hour(14)) == pytest.approx(1.5)
    assert sim.diurnal(at_hour(2)) == pytest.approx(0.5)
    assert sim.diurnal(at_hour(8)) == pytest.approx(1.0)
    origin = world.clock_origin
    active = [sim.incident(TRAFFIC, origin + s)[0] for s in range(0, 20_000)]
    assert {round(a, 9) for a in active} == {0.0, 0.2}
    assert 0.05 < sum(1 for a in active if a) / len(active) < 0.15  # 10 s of every ~110 s


def test_gateway_api_gateways_call_their_routes_backends() -> None:
    """A Gateway of class istio and its HTTPRoute (AKS doc istio-gateway-api.md): the
    gateway's proxies report the calls as source; a backend without a sidecar (lobby, not
    injected) reports nothing, its caller still does."""
    world = World(rollout_s=0)
    build(world, load(FIXTURES / "worlds" / "tags-and-gateways.yaml"))
    sim = TrafficSimulator(world)
    sim.advance(sim.last + 1)
    reports: dict[tuple[str, str], float] = {}
    for (_, ns, _), t in sim.targets.items():
        for labels, row in t.requests.items():
            reporter = labels.split('"')[1]
            assert f'source_workload="httpbin-gateway-istio",source_workload_namespace="{ns}"' \
                in labels or reporter == "destination"
            reports[(ns, reporter)] = reports.get((ns, reporter), 0.0) + row[0]
    assert reports == pytest.approx({("shop", "source"): 10, ("shop", "destination"): 10,
                                     ("edge", "source"): 10, ("edge", "destination"): 10,
                                     ("lobby", "source"): 10})


def test_the_default_worlds_dev_has_an_external_ingress_gateway_in_front_of_storefront() -> None:
    """``ingress_gateways: [external]`` and the AKS doc's Gateway and VirtualService for
    Bookinfo: dev runs ``aks-istio-ingressgateway-external-asm-1-25``, whose proxies call
    storefront's productpage (source reporter); staging has no gateway."""
    world = World(rollout_s=0)
    build(world, load(DEFAULT_WORLD))
    dev = world.clusters["aks-dev-westus2"]
    assert dev.arm["properties"]["serviceMeshProfile"]["istio"]["components"][
        "ingressGateways"] == [{"mode": "External", "enabled": True}]
    assert ("Deployment", "aks-istio-ingress", GW25) in dev.objects
    staging = world.clusters["aks-staging-eastus"]
    assert not [k for k in staging.objects if k[1] == "aks-istio-ingress"]
    sim = TrafficSimulator(world)
    sim.advance(sim.last + 1)
    gateway_calls = [labels for (cl, ns, _), t in sim.targets.items()
                     if cl == "aks-dev-westus2" and ns == "aks-istio-ingress"
                     for labels in t.requests]
    assert gateway_calls and all('destination_service_namespace="storefront"' in labels
                                 for labels in gateway_calls), gateway_calls[:2]


def test_ingress_gateways_need_the_mesh_on(tmp_path: Path) -> None:
    spec = cluster("aks-off", "off", [])
    spec.update(revisions=[], ingress_gateways=["external"])
    with pytest.raises(WorldError, match="ingress_gateways: the add-on's ingress gateways "
                                         "need the mesh on"):
        load(write_world(tmp_path, {"clusters": [spec]}))


# --- a sandbox and its real Prometheus -----------------------------------------------------

SHOP_RPS = 60


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox with its Prometheus; the traffic cluster's external ingress gateway on."""
    if shutil.which("prometheus") is None:
        pytest.skip("no prometheus: apt-get install -y prometheus")
    path = write_world(tmp_path_factory.mktemp("traffic-world"), {
        # exact rates where a namespace sets none (its own noise: production is tested here)
        "traffic": {"seed": 7, "noise": "none", "rps_per_pod": 10},
        "clusters": [
            cluster(TRAFFIC, "traffic", [
                {"name": "shop", "labels": {"istio.io/rev": "asm-1-25"},
                 "manifests": [BOOKINFO, "ingress.yaml"],
                 "traffic": {"rps": SHOP_RPS, "error_rate": 0.01, "p99_ms": 120}},
                {"name": "web", "labels": {"istio.io/rev": "asm-1-26"}, "manifests": BOOKINFO,
                 "traffic": {"rps": SHOP_RPS, "p99_ms": 120},
                 "faults": [{"workload": "productpage-v1", "revision": "asm-1-26",
                             "source_error_rate": 0.2}]},
                {"name": "boutique", "labels": {"istio.io/rev": "asm-1-26"},
                 "manifests": BOUTIQUE, "traffic": {"rps": 120},
                 "faults": [{"workload": "currencyservice", "revision": "asm-1-26",
                             "error_rate": 0.25},
                            {"workload": "redis-cart", "revision": "asm-1-26",
                             "error_rate": 0.25}]},
                {"name": "noisy", "labels": {"istio.io/rev": "asm-1-25"},
                 "manifests": BOOKINFO,
                 "traffic": {"rps": 600, "p99_ms": 200, "noise": "production"}}]),
            cluster(STORM, "storm", [
                {"name": "old", "labels": {"istio.io/rev": "asm-1-25"}, "manifests": BOOKINFO,
                 "traffic": {"rps": 60}},
                {"name": "new", "labels": {"istio.io/rev": "asm-1-26"}, "manifests": BOOKINFO,
                 "traffic": {"rps": 60}}])]})
    with running(Sandbox(Path(tmp_path_factory.mktemp("traffic")),
                         free_port_base(10000, 15000, 10), operation_s=0.5, rollout_s=0.2,
                         world_file=path)) as s:
        w = s.world
        with w.lock:  # as `az aks mesh enable-ingress-gateway --ingress-gateway-type external`
            c = w.clusters[TRAFFIC]
            c.arm["properties"]["serviceMeshProfile"]["istio"]["components"][
                "ingressGateways"] = [{"mode": "External", "enabled": True}]
            w._sync_mesh(c)
        s.started = time.time()  # type: ignore[attr-defined]
        yield s


def history(sb: Sandbox, seconds: float) -> float:
    """Wait until Prometheus holds ``seconds`` of the sandbox's traffic; now (Unix s)."""
    started: float = sb.started  # type: ignore[attr-defined]
    time.sleep(max(0.0, started + seconds - time.time()))
    return time.time()


def query(sb: Sandbox, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    params: dict[str, str | float] = {"query": expr}
    if at is not None:
        params["time"] = at
    resp = requests.get(sb.url["prometheus"] + "/api/v1/query", params=params, timeout=10)
    resp.raise_for_status()
    result: list[dict[str, Any]] = resp.json()["data"]["result"]
    return result


def value(sb: Sandbox, expr: str, at: float | None = None) -> float:
    result = query(sb, expr, at)
    assert len(result) == 1, (expr, result)
    return float(result[0]["value"][1])


def by(sb: Sandbox, label: str, expr: str, at: float | None = None) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in query(sb, expr, at)}


@needs_prometheus
def test_every_proxy_is_a_scrape_target_with_its_istio_build(sb: Sandbox) -> None:
    history(sb, 6)
    state = requests.get(sb.url["control"] + "/_sandbox/state", timeout=5).json()
    for alias, name in (("traffic", TRAFFIC), ("storm", STORM)):
        pods = [p for p in state[alias]["pods"] if p["revision"]]
        builds = query(sb, f'istio_build{{cluster="{name}",component="proxy"}}')
        assert {b["metric"]["job"] for b in builds} == {"workload"}
        instances = [b["metric"]["instance"] for b in builds]
        assert len(set(instances)) == len(instances)
        assert all(i.startswith("10.244.") and i.endswith(":15020") for i in instances)
        gateways = 4 if alias == "traffic" else 0  # two pods per revision
        assert len(builds) == len(pods) + gateways
        tags = by(sb, "tag", f'count by (tag) (istio_build{{cluster="{name}"}})')
        per_rev = {r: sum(1 for p in pods if p["revision"] == r) + gateways // 2
                   for r in ("asm-1-25", "asm-1-26")}
        assert tags == {"1.25.5": per_rev["asm-1-25"], "1.26.4": per_rev["asm-1-26"]}
    assert value(sb, 'sum(up{job="workload"})') == value(sb, 'count(up{job="workload"})')


@needs_prometheus
def test_both_reporters_with_istio_labels_and_plausible_counts(sb: Sandbox) -> None:
    at = history(sb, 12)
    c = f'cluster="{TRAFFIC}"'
    # the destination's proxies: productpage's calls come in through both gateways
    dest = query(sb, f'istio_requests_total{{{c},reporter="destination",'
                     f'destination_workload_namespace="shop"}}', at)
    callers = {(s["metric"]["destination_workload"], s["metric"]["source_workload"])
               for s in dest}
    assert {("productpage-v1", GW25), ("productpage-v1", GW26), ("details-v1", "productpage-v1"),
            ("reviews-v2", "productpage-v1"), ("ratings-v1", "reviews-v3")} <= callers
    one = next(s["metric"] for s in dest if s["metric"]["destination_workload"] == "details-v1")
    assert one | {"instance": "", "__name__": ""} == {
        "__name__": "", "cluster": TRAFFIC, "job": "workload", "instance": "",
        "reporter": "destination", "source_workload": "productpage-v1",
        "source_workload_namespace": "shop",
        "source_principal": "spiffe://cluster.local/ns/shop/sa/bookinfo-productpage",
        "source_app": "productpage", "source_version": "v1",
        "source_canonical_service": "productpage", "source_canonical_revision": "v1",
        "source_cluster": "Kubernetes", "destination_workload": "details-v1",
        "destination_workload_namespace": "shop",
        "destination_principal": "spiffe://cluster.local/ns/shop/sa/bookinfo-details",
        "destination_app": "details", "destination_version": "v1",
        "destination_service": "details.shop.svc.cluster.local",
        "destination_service_name": "details", "destination_service_namespace": "shop",
        "destination_canonical_service": "details", "destination_canonical_revision": "v1",
        "destination_cluster": "Kubernetes", "request_protocol": "http",
        "response_code": one["response_code"], "response_flags": "-",
        "connection_security_policy": "mutual_tls"}
    # the callers' proxies report the same calls
    source = by(sb, "destination_workload",
                f'sum by (destination_workload) (rate(istio_requests_total{{{c},'
                f'reporter="source",source_workload_namespace="shop"}}[6s]))', at)
    assert set(source) == {"details-v1", "reviews-v1", "reviews-v2", "reviews-v3",
                           "ratings-v1"}
    assert source["details-v1"] == pytest.approx(SHOP_RPS / 6, rel=0.3)
    gateways = by(sb, "source_workload",
                  f'sum by (source_workload) (rate(istio_requests_total{{{c},reporter="source",'
                  f'source_workload_namespace="aks-istio-ingress"}}[6s]))', at)
    assert set(gateways) == {GW25, GW26}
    assert sum(gateways.values()) == pytest.approx(SHOP_RPS / 6, rel=0.3)
    # counts: the namespace's rate, its error rate, Istio's buckets and p99
    ns = f'{c},reporter="destination",destination_workload_namespace="shop"'
    assert value(sb, f"sum(rate(istio_requests_total{{{ns}}}[6s]))", at) == pytest.approx(
        SHOP_RPS, rel=0.2)
    assert value(sb, f'sum(increase(istio_requests_total{{{ns},response_code="503"}}[6s])) / '
                     f"sum(increase(istio_requests_total{{{ns}}}[6s]))", at) == pytest.approx(
        0.01, rel=0.1)
    les = {s["metric"]["le"] for s in query(
        sb, f'istio_request_duration_milliseconds_bucket{{{ns},destination_workload="details-v1",'
            f'source_workload="productpage-v1",response_code="200"}}', at)}
    assert les == {str(b) for b in BUCKETS} | {"+Inf"}
    p99 = value(sb, f"histogram_quantile(0.99, sum by (le) "
                    f"(rate(istio_request_duration_milliseconds_bucket{{{ns}}}[6s])))", at)
    assert 100 < p99 <= 250  # p99_ms 120 ms, interpolated inside Istio's (100, 250] bucket


@needs_prometheus
def test_grpc_failures_in_http_200_tcp_resets_and_errors_only_the_caller_sees(
        sb: Sandbox) -> None:
    at = history(sb, 12)
    c = f'cluster="{TRAFFIC}"'
    grpc = {(r["metric"]["reporter"], r["metric"]["response_code"],
             r["metric"]["grpc_response_status"]): float(r["value"][1]) for r in query(
        sb, f"sum by (reporter, response_code, grpc_response_status) (increase("
            f'istio_requests_total{{{c},destination_workload="currencyservice"}}[6s]))', at)}
    assert set(grpc) == {(rep, "200", s) for rep in ("destination", "source")
                         for s in ("0", "14")}
    for rep in ("destination", "source"):
        failed = grpc[(rep, "200", "14")] / (grpc[(rep, "200", "14")] + grpc[(rep, "200", "0")])
        assert failed == pytest.approx(0.25, rel=0.2)
    tcp = {(r["metric"]["reporter"], r["metric"]["response_flags"]): float(r["value"][1])
           for r in query(sb, f"sum by (reporter, response_flags) (increase("
                              f'istio_tcp_connections_closed_total{{{c},'
                              f'destination_workload="redis-cart"}}[6s]))', at)}
    assert set(tcp) == {("destination", "-"), ("destination", "UF"), ("source", "-")}
    assert tcp[("destination", "UF")] / (tcp[("destination", "UF")] + tcp[
        ("destination", "-")]) == pytest.approx(0.25, rel=0.2)
    opened = query(sb, f'istio_tcp_connections_opened_total{{{c},destination_workload='
                       f'"redis-cart",reporter="destination"}}', at)
    assert opened and {o["metric"]["request_protocol"] for o in opened} == {"tcp"}
    assert not query(sb, f'istio_requests_total{{{c},destination_workload="redis-cart"}}', at)
    # web's productpage on asm-1-26 fails a fifth of its calls in its own proxy
    web = {(r["metric"]["reporter"], r["metric"]["response_code"],
            r["metric"]["response_flags"]): float(r["value"][1]) for r in query(
        sb, f"sum by (reporter, response_code, response_flags) (increase(istio_requests_total"
            f'{{{c},source_workload="productpage-v1",source_workload_namespace="web"}}[6s]))',
        at)}
    assert set(web) == {("destination", "200", "-"), ("source", "200", "-"),
                        ("source", "503", "UF")}
    assert web[("source", "503", "UF")] / (web[("source", "503", "UF")] + web[
        ("source", "200", "-")]) == pytest.approx(0.2, rel=0.2)


@needs_prometheus
def test_meshops_reads_windows_of_both_reporters_and_their_revisions(sb: Sandbox) -> None:
    end = history(sb, 16)
    api = PrometheusMetricsApi(sb.url["prometheus"], {"cluster": TRAFFIC},
                               scrape_interval_s=1.0)
    windows = api.windows(["shop", "web", "boutique"], [f"gateway/{GW25}", f"gateway/{GW26}"],
                          end - 12, end, 4)
    assert api.queries == 2  # the wave's scrape targets, then its windows
    last = max(w.end for w in windows)
    seen = {(w.subject, w.revision, w.reporter): w for w in windows if w.end == last}
    assert set(seen) == {
        ("shop", "asm-1-25", "destination"), ("shop", "asm-1-25", "source"),
        ("web", "asm-1-26", "destination"), ("web", "asm-1-26", "source"),
        ("boutique", "asm-1-26", "destination"), ("boutique", "asm-1-26", "source"),
        (f"gateway/{GW25}", "asm-1-25", "source"), (f"gateway/{GW26}", "asm-1-26", "source")}
    shop = seen[("shop", "asm-1-25", "destination")]
    assert shop.end - shop.start == 4
    assert shop.requests == pytest.approx(SHOP_RPS * 4, rel=0.25)
    assert abs(shop.buckets[math.inf] - shop.requests) <= 1  # each rounded on its own
    assert 0 < shop.errors < shop.requests * 0.05
    # the errors only productpage's proxy sees, the gRPC Unavailable in 200s, the resets
    assert seen[("web", "asm-1-26", "destination")].errors == 0
    assert seen[("web", "asm-1-26", "source")].errors > 0
    boutique = seen[("boutique", "asm-1-26", "destination")]
    assert boutique.codes.get("grpc:14", 0) > 0 and boutique.errors > 0
    assert 0 < boutique.tcp_failed < boutique.tcp_opened


@needs_prometheus
def test_an_incident_raises_errors_in_every_namespace(sb: Sandbox) -> None:
    history(sb, 8)
    c = f'cluster="{STORM}",reporter="destination"'
    errors = (f"sum by (destination_workload_namespace) (increase(istio_requests_total{{{c},"
              f'response_code="503"}}[4s]))')
    assert by(sb, "destination_workload_namespace", errors) == {}
    before = by(sb, "destination_workload_namespace",
                f"histogram_quantile(0.99, sum by (destination_workload_namespace, le) (rate("
                f"istio_request_duration_milliseconds_bucket{{{c}}}[4s])))")
    resp = requests.post(sb.url["control"] + "/_sandbox/incidents", json={
        "seconds": 10, "error_rate": 0.3, "latency_x": 4, "clusters": ["storm"]}, timeout=5)
    assert resp.status_code == 200, resp.text
    time.sleep(7)
    at = time.time()
    rates = by(sb, "destination_workload_namespace",
               f"{errors} / sum by (destination_workload_namespace) (increase("
               f"istio_requests_total{{{c}}}[4s]))", at)
    assert set(rates) == {"old", "new"}  # migrated and not alike
    assert all(r == pytest.approx(0.3, rel=0.2) for r in rates.values())
    during = by(sb, "destination_workload_namespace",
                f"histogram_quantile(0.99, sum by (destination_workload_namespace, le) (rate("
                f"istio_request_duration_milliseconds_bucket{{{c}}}[4s])))", at)
    assert all(during[ns] > 2 * before[ns] for ns in ("old", "new"))
    assert not query(sb, f'istio_requests_total{{cluster="{TRAFFIC}",reporter="destination",'
                         f'destination_workload_namespace="web",response_code="503"}}', at)
    requests.delete(sb.url["control"] + "/_sandbox/incidents", timeout=5).raise_for_status()


@needs_prometheus
def test_production_noise_as_prometheus_reads_it(sb: Sandbox) -> None:
    # 24 two-second windows: a burst level lasts a second, so each window's count is
    # negative binomial with variance ≈ 5 × its mean; a sample variance of 24 falls under
    # 1.5 × the mean with a chance of about 1 in 2,000 (χ² with 23 degrees of freedom);
    # 12 windows fell under 2 × in about 1 in 20 (the strict check is the simulator's own)
    end = history(sb, 56)
    start = end - 48
    ns = f'cluster="{TRAFFIC}",reporter="destination",destination_workload="details-v1"'

    def series(namespace: str, expr: str) -> list[float]:
        params: dict[str, str | float] = {
            "query": expr.format(ns=f'{ns},destination_workload_namespace="{namespace}"'),
            "start": start, "end": end, "step": 2}
        resp = requests.get(sb.url["prometheus"] + "/api/v1/query_range", params=params,
                            timeout=10)
        resp.raise_for_status()
        [result] = resp.json()["data"]["result"]
        return [float(v) for _, v in result["values"]]

    counts = series("noisy", "sum(increase(istio_requests_total{{{ns}}}[2s]))")
    assert statistics.variance(counts) > 1.5 * statistics.mean(counts)  # overdispersed
    raw = query(sb, f'istio_requests_total{{{ns},destination_workload_namespace="noisy"}}')
    assert all(float(r["value"][1]) == int(float(r["value"][1])) for r in raw)  # whole
    p99 = "histogram_quantile(0.99, sum by (le) (rate(" \
          "istio_request_duration_milliseconds_bucket{{{ns}}}[2s])))"
    assert len({round(v, 1) for v in series("noisy", p99)}) > 5  # p99 is not constant
    exact = series("shop", p99)
    assert max(exact) == pytest.approx(min(exact), rel=0.02)  # noise off: it is
