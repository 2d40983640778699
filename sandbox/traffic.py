"""The Istio traffic simulator: Istio's standard metrics of every sandbox proxy, pod by pod.

Why: meshops' gates read Istio's standard metrics from Prometheus, so the sandbox must give
its Prometheus the series a real AKS cluster gives Azure Monitor managed Prometheus — the
same names, labels, reporters and scrape targets, and (on request) the same weather.

**Scrape targets.** Every pod with an Istio proxy (an injected sidecar, an add-on ingress
gateway, a Gateway API gateway) is a scrape target of its own, as the proxy's merged
endpoint ``:15020/stats/prometheus`` is (Istio doc "Prometheus", "Option 1: Metrics
merging"): ``instance="<pod IP>:15020"``, ``job="workload"`` (the scrape job of the AKS doc
``istio-metrics-managed-prometheus.md``), and ``cluster`` as Azure Monitor's managed
Prometheus adds it to every series. Prometheus discovers them through HTTP service discovery
(``GET /sd/targets``, Prometheus docs ``http_sd_config``), which lists the pods of the moment
as Kubernetes service discovery does, so a replaced pod's series end (staleness) and the new
pod's start from zero; each target is served at ``/stats/prometheus/<cluster>/<ns>/<pod>``.
Pods without a proxy export nothing. ``/metrics`` shows every target at once, each series
with its target's ``cluster``, ``job`` and ``instance`` (for people; Prometheus does not
scrape it).

**Series** (Istio doc "Istio Standard Metrics", istio.io/latest/docs/reference/config/
metrics/), each labelled with Istio's standard labels (``reporter``, ``source_workload``,
``source_workload_namespace``, ``source_principal``, ``source_app``, ``source_version``,
``source_canonical_service``, ``source_canonical_revision``, ``source_cluster``, the same
for ``destination_*`` plus ``destination_service``, ``destination_service_name``,
``destination_service_namespace``, ``request_protocol``, ``response_flags``,
``connection_security_policy``):

- ``istio_requests_total`` (counter; ``response_code``, and ``grpc_response_status`` for
  gRPC) and ``istio_request_duration_milliseconds`` (histogram, Istio's buckets 0.5 ms …
  3 600 000 ms, the same labels) for HTTP and gRPC services;
- ``istio_tcp_connections_opened_total`` / ``istio_tcp_connections_closed_total``
  (``response_flags``: Envoy's ``%RESPONSE_FLAGS%``, "-" for none, ``UF`` upstream
  connection failure; Envoy doc "Access logging") for TCP services;
- ``istio_build{component="proxy", tag="<Istio version>"}`` on every target (the version
  of its istio-proxy image), which readers join on (``job``, ``instance``) to tell a
  series' mesh revision.

Both reporters report each call: the callee's inbound proxy as ``reporter="destination"``,
the caller's outbound proxy as ``reporter="source"`` (with ``connection_security_policy``
"unknown", as Istio leaves it there). A caller outside the mesh (a pod without a proxy, or
traffic from outside the cluster) is ``unknown`` to the destination and reports nothing.

**Protocols** (Istio doc "Protocol Selection"): a Service port's ``appProtocol``, else its
name's prefix (``<protocol>[-<suffix>]``): ``grpc``/``grpc-web`` are gRPC; ``tcp``, ``tls``,
``https``, ``mongo``, ``mysql``, ``redis`` (Istio's Redis filter is off by default) are TCP;
``http``, ``http2`` and unnamed ports (Istio sniffs HTTP) are HTTP. The first port decides.

**Who calls whom.** How much each workload serves is the world's
(:meth:`sandbox.world.World.workloads_traffic`: ready pods behind a Service, ``rps_per_pod``
each or the namespace's ``traffic.rps`` split evenly). The calls come from, split evenly
over them and then over their ready pods:

- the workloads whose containers name one of its Services in an environment variable
  (``cartservice:7070``, ``http://orders.shop.svc.cluster.local:3000/``: how Online
  Boutique and AKS Store wire their services), or whose image is known to call it
  (:data:`KNOWN_CALLS`: Bookinfo's productpage calls details and reviews, reviews v2/v3
  call ratings, in its code, istio/istio ``samples/bookinfo/src``);
- the add-on's ingress gateways, where a VirtualService bound to an Istio ``Gateway``
  selecting ``istio: aks-istio-ingressgateway-<external|internal>`` routes to the Service
  (AKS doc ``istio-deploy-ingress.md``): every revision's gateway Deployment of that mode,
  by ready pods, as the mode's LoadBalancer Service spreads them during a canary upgrade;
- a Gateway API gateway (class ``istio``) whose HTTPRoute has the Service as a backend;
- else from outside the mesh (``unknown``).

**Errors by protocol** (a fault's ``error_rate``, the namespace's ``traffic.error_rate``
and incidents): HTTP servers answer 503; gRPC servers answer HTTP 200 with
``grpc_response_status`` 14 (Unavailable; the fault's ``grpc_status``), as gRPC carries its
status in trailers; a TCP service's connections fail with ``UF`` at the destination (its
inbound proxy cannot reach the app) while the caller sees a normal close. A fault's
``source_error_rate`` fails the calls that the workload's pods on that revision *make*, in
their outbound proxy (503 / gRPC 14 in HTTP 200, ``response_flags="UF"``, or a TCP
connection closed ``UF``): only the source reporter counts them; the callee never sees
them. The source reporter's latency is the destination's plus 1 ms (two proxy hops).

**Exact or production traffic.** ``noise: none`` (a world built in code; world files default
to production): counters advance by elapsed time × rate, fractional and free of random noise;
latencies are log-normal (σ = 0.5, p99 = 3.2 × median). ``noise: production``: counts are
whole numbers drawn at every tick (at most every :data:`TICK_S`) as Poisson counts of a rate
that a gamma-distributed burst factor multiplies (shape :data:`BURST_SHAPE`, one level per
namespace every :data:`BURST_S` wall seconds): gamma–Poisson, i.e. negative binomial,
overdispersed as production request counts are; error rates jitter the same way per
workload (shape :data:`ERROR_SHAPE`); latency is a log-normal body with a Pareto tail
(:data:`TAIL_SHARE` of requests beyond :data:`TAIL_START` × median, index
:data:`TAIL_ALPHA`), whose median jitters per workload and burst, binned into Istio's
buckets by Poisson counts per bucket; a namespace's ``p99_ms`` sets the median that gives
that p99 with the tail. Independent of the noise, the world's weather
(:class:`sandbox.world.Weather`) adds a diurnal swing of load on the sandbox clock (latency
rising a quarter as much, as queues grow) and fleet-wide incidents: error rate and latency
up in every namespace of the clusters they hit, migrated or not.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sandbox import istio
from sandbox.http import Page, PublishedServer, Request, Response, Router
from sandbox.world import (
    INGRESS_NS,
    SYSTEM_NAMESPACES,
    WORKLOAD_KINDS,
    Cluster,
    Fault,
    RecurringIncident,
    Traffic,
    Weather,
    World,
    _ready,
    _terminating,
    proxy_revision,
)

log = logging.getLogger(__name__)

#: Istio's default buckets of istio_request_duration_milliseconds (ms), +Inf not included
#: (istio/proxy source/extensions/filters/http/istio_stats: 0.5 ms up to one hour)
BUCKETS: tuple[float, ...] = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
                              30000, 60000, 300000, 600000, 1800000, 3600000)
SIGMA = 0.5  # log-normal spread of latencies: p99 ≈ 3.2 × median
P99_RATIO = math.exp(2.3263478740408408 * SIGMA)  # p99 / median of the log-normal
PROXY_PORT = 15020  # the proxy's merged Prometheus endpoint
JOB = "workload"  # the scrape job of AKS doc istio-metrics-managed-prometheus.md
ISTIO_CLUSTER_ID = "Kubernetes"  # Istio's default cluster ID (source_/destination_cluster)
SCRAPE_PATH = "/stats/prometheus"  # a proxy's endpoint is SCRAPE_PATH/<cluster>/<ns>/<pod>
EXPOSITION = b"text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text format
TICK_S = 0.5  # scrapes within this long of the last advance see the same counters
BURST_S = 1.0  # a namespace's burst level lasts this long (wall s): a gate window holds several
# The jitters are those of the gate benchmark's production model (benchmarks/gate.py: load
# CV 0.2 per window, error-rate CV 0.3, latency scale σ 0.05), so that the demos meet the
# noise the gate is measured against.
BURST_SHAPE = 25.0  # gamma shape of the burst factor (CV 20 %): variance m + m² / 25
ERROR_SHAPE = 11.0  # gamma shape of a workload's error-rate jitter (CV 30 %)
MEDIAN_SHAPE = 400.0  # gamma shape of a workload's median-latency jitter (CV 5 %)
TAIL_SHARE = 0.02  # share of requests in the Pareto tail
TAIL_START = 2.0  # the tail starts at this multiple of the median
TAIL_ALPHA = 1.5  # Pareto index of the tail (heavy: infinite variance)
SOURCE_OVERHEAD_MS = 1.0  # the caller's proxy sees the callee's latency plus this
LOAD_LATENCY = 0.25  # latency rises this fraction of the diurnal rise of load
UNKNOWN = "unknown"
#: images whose code calls these Services by their default names (no configuration to read)
KNOWN_CALLS: dict[str, tuple[str, ...]] = {
    "examples-bookinfo-productpage-v1": ("details", "reviews"),
    "examples-bookinfo-reviews-v2": ("ratings",),
    "examples-bookinfo-reviews-v3": ("ratings",),
}
_TCP_PROTOCOLS = {"tcp", "tls", "https", "mongo", "mysql", "redis"}
_HOST = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?([a-z0-9]([-a-z0-9.]*[a-z0-9])?)(?::\d+)?(?:/.*)?$")
_ADDON_GATEWAY = re.compile(r"^(aks-istio-ingressgateway-(?:external|internal))-(asm-1-\d+)$")
_VS_KEY = "VirtualService.networking.istio.io"
_ISTIO_GATEWAY_KEY = "Gateway.networking.istio.io"
_HTTPROUTE_KEY = "HTTPRoute.gateway.networking.k8s.io"


def default_latency_ms(workload: str) -> float:
    """A stable median latency per workload, 10–40 ms."""
    return 10.0 + int(hashlib.sha1(workload.encode()).hexdigest()[:4], 16) % 30


def lognormal_cdf(x: float, median: float) -> float:
    return 0.5 * (1 + math.erf((math.log(x) - math.log(median)) / (SIGMA * math.sqrt(2))))


def latency_cdf(x: float, median: float, tail: bool) -> float:
    """P(latency ≤ x ms): log-normal, with production noise's Pareto tail mixed in."""
    body = lognormal_cdf(x, median)
    if not tail:
        return body
    start = TAIL_START * median
    pareto = 0.0 if x <= start else 1 - (x / start) ** -TAIL_ALPHA
    return (1 - TAIL_SHARE) * body + TAIL_SHARE * pareto


def _p99_ratio_with_tail() -> float:
    lo, hi = 1.0, 1000.0
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if latency_cdf(mid, 1.0, True) < 0.99 else (lo, mid)
    return lo


P99_RATIO_TAIL = _p99_ratio_with_tail()  # p99 / median with the tail (≈ 6.5)


@functools.lru_cache(maxsize=8192)
def bucket_shares(median: float, tail: bool) -> tuple[float, ...]:
    """The share of requests in each bucket (not cumulative), +Inf last."""
    cdf = [latency_cdf(le, median, tail) for le in BUCKETS]
    return tuple(b - a for a, b in zip([0.0, *cdf[:-1]], cdf, strict=True)) + (1 - cdf[-1],)


#: a representative latency per bucket (ms), for the histogram's _sum with noise
_MIDPOINTS = tuple(math.sqrt(lo * hi) for lo, hi in zip((0.25, *BUCKETS[:-1]), BUCKETS,
                                                         strict=True)) + (2 * BUCKETS[-1],)


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (Knuth's product method; the normal approximation from 30 on)."""
    if mean <= 0:
        return 0
    if mean >= 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def service_protocol(svc: dict[str, Any]) -> str:
    """"http", "grpc" or "tcp" of a Service, by Istio's protocol selection (first port)."""
    ports = (svc.get("spec") or {}).get("ports") or [{}]
    port = ports[0] if isinstance(ports[0], dict) else {}
    declared = str(port.get("appProtocol") or port.get("name") or "").lower()
    proto = declared.split("-", 1)[0].rsplit("/", 1)[-1]
    if proto == "grpc":
        return "grpc"
    if proto in _TCP_PROTOCOLS:
        return "tcp"
    return "http"


def proxy_version(pod: dict[str, Any]) -> str | None:
    """The Istio version of a pod's proxy, from its image tag (``…/proxyv2:1.26.4-distroless``
    → ``1.26.4``), as its ``istio_build`` reports it."""
    spec = pod.get("spec") or {}
    for ctr in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        image = str(ctr.get("image", ""))
        if ctr.get("name") == "istio-proxy" or "/proxyv2:" in image:
            tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
            return tag.removesuffix("-distroless") or None
    return None


@dataclass(frozen=True)
class Peer:
    """One side of a call as Istio labels it (``source_*`` or ``destination_*``)."""

    workload: str
    namespace: str
    principal: str
    app: str
    version: str
    canonical_service: str
    canonical_revision: str
    cluster: str = ISTIO_CLUSTER_ID


OUTSIDE = Peer(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, "latest", UNKNOWN)


def peer_of(pod: dict[str, Any], workload: str) -> Peer:
    """Istio's peer labels of a pod: the workload (its top owner), the SPIFFE principal of
    its service account, ``app``/``version``, and the canonical service and revision
    (``service.istio.io/canonical-*``, else ``app.kubernetes.io/*``, else ``app`` /
    ``version``, else the workload and ``latest``)."""
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    ns = meta["namespace"]
    sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
    return Peer(
        workload=workload, namespace=ns,
        principal=f"spiffe://cluster.local/ns/{ns}/sa/{sa}",
        app=labels.get("app", UNKNOWN), version=labels.get("version", UNKNOWN),
        canonical_service=labels.get("service.istio.io/canonical-name") or labels.get(
            "app.kubernetes.io/name") or labels.get("app") or workload,
        canonical_revision=labels.get("service.istio.io/canonical-revision") or labels.get(
            "app.kubernetes.io/version") or labels.get("version") or "latest")


@dataclass(frozen=True)
class PodView:
    """A pod as traffic sees it; ``version`` None: no proxy (no target, no reports)."""

    cluster: str
    namespace: str
    name: str
    ip: str
    workload: str
    peer: Peer
    revision: str | None
    version: str | None
    serving: bool  # ready and not terminating: gets and makes calls

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.cluster, self.namespace, self.name)


WorkloadKey = tuple[str, str]  # (namespace, workload) within a cluster
CallerGroup = tuple[WorkloadKey, ...]  # workloads sharing calls by ready pods


@dataclass
class Callee:
    """A serving workload: its Service, protocol, rate per revision, pods and callers."""

    cluster: str
    namespace: str
    workload: str
    service: str
    protocol: str
    rates: dict[str | None, float]
    pods: dict[str | None, list[PodView]]
    callers: list[CallerGroup]


@dataclass
class _View:
    targets: dict[tuple[str, str, str], PodView] = field(default_factory=dict)
    callees: list[Callee] = field(default_factory=list)
    serving: dict[tuple[str, str, str], list[PodView]] = field(default_factory=dict)

    def group_pods(self, cluster: str, group: CallerGroup) -> list[PodView]:
        return [p for ns, wl in group for p in self.serving.get((cluster, ns, wl), [])]


@dataclass
class _Target:
    """The counters one proxy exports, by rendered label set."""

    pod: PodView
    #: labels → [count, sum, bucket counts (not cumulative), +Inf bucket last]
    requests: dict[str, list[float]] = field(default_factory=dict)
    tcp_opened: dict[str, float] = field(default_factory=dict)
    tcp_closed: dict[str, float] = field(default_factory=dict)

    def add_requests(self, labels: str, counts: list[float], latency_sum: float) -> None:
        total = sum(counts)
        if total <= 0:
            return
        row = self.requests.get(labels)
        if row is None:
            row = self.requests[labels] = [0.0] * (len(BUCKETS) + 3)
        row[0] += total
        row[1] += latency_sum
        for i, c in enumerate(counts):
            row[2 + i] += c


class TrafficSimulator:
    """Istio's metrics of a :class:`World`'s proxies; :meth:`router` serves them."""

    def __init__(self, world: World):
        self.world = world
        self.lock = threading.Lock()
        self.last = time.time()
        self.targets: dict[tuple[str, str, str], _Target] = {}
        self.rng = random.Random(world.weather.seed)
        self._view_cache: tuple[Any, _View] | None = None
        self._labels: dict[tuple[Any, ...], str] = {}
        self._epoch: dict[tuple[Any, ...], float] = {}
        self._weather: Weather | None = None
        self._recurring: dict[int, list[Any]] = {}
        self.tick_s = TICK_S
        #: what the last tick rendered: every target's body, the SD target groups
        self._exposed: tuple[dict[tuple[str, str, str], bytes], list[dict[str, str]]] | None \
            = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        #: :meth:`serve`'s process and its address (host:port)
        self._published: PublishedServer | None = None
        self._address = ""

    # ------------------------------------------------------------------ the mesh

    def view(self) -> _View:
        """Targets, serving workloads with their callers; rebuilt when the world changed."""
        w = self.world
        with w.lock:
            w.reconcile()
            stamp = tuple((name, c.events[-1][0] if c.events else 0, len(c.objects))
                          for name, c in w.clusters.items())
            if self._view_cache is not None and self._view_cache[0] == stamp:
                return self._view_cache[1]
            rates: dict[str, list[tuple[str, str, dict[str | None, float]]]] = {}
            for cluster, ns, name, revs in w.workloads_traffic():
                rates.setdefault(cluster, []).append((ns, name, revs))
            view = _View()
            for c in w.clusters.values():
                self._cluster_view(c, rates.get(c.name, []), view)
            self._view_cache = (stamp, view)
            return view

    def _cluster_view(self, c: Cluster, rates: list[tuple[str, str, dict[str | None, float]]],
                      view: _View) -> None:
        w = self.world
        by_ip: dict[str, tuple[str, PodView]] = {}
        by_workload: dict[WorkloadKey, list[PodView]] = {}
        for key in sorted(c.index.get("Pod", ())):
            pod = c.objects[key]
            ns = key[1]
            if ns in SYSTEM_NAMESPACES and ns != INGRESS_NS:
                continue
            status = pod.get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed") or not status.get("podIP"):
                continue
            _, workload = w._workload_of(c, pod)
            revision = proxy_revision(pod)
            gateway = _ADDON_GATEWAY.match(workload) if ns == INGRESS_NS else None
            if gateway:
                revision = gateway.group(2)
            elif ns == INGRESS_NS:
                continue
            version = proxy_version(pod) if revision or gateway else None
            pv = PodView(c.name, ns, key[2], status["podIP"], workload, peer_of(pod, workload),
                         revision, version, _ready(pod) and not _terminating(pod))
            if pv.serving:
                by_workload.setdefault((ns, workload), []).append(pv)
            if version is not None:
                created = str(pod["metadata"].get("creationTimestamp", ""))
                prior = by_ip.get(pv.ip)
                if prior is None or prior[0] <= created:  # a reused IP: the newer pod
                    by_ip[pv.ip] = (created, pv)
        for _, pv in by_ip.values():
            view.targets[pv.key] = pv
        for (ns, wl), serving in by_workload.items():
            view.serving[(c.name, ns, wl)] = serving
        services = {k: c.objects[k] for k in c.index.get("Service", ()) if k[1] not in
                    SYSTEM_NAMESPACES and (c.objects[k].get("spec") or {}).get("selector")}
        callers = self._callers(c, services)
        by_ns: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for k, svc_obj in sorted(services.items()):
            by_ns.setdefault(k[1], []).append((k[2], svc_obj["spec"]["selector"]))
        for ns, name, revs in rates:
            obj = next((c.objects[(k, ns, name)] for k in WORKLOAD_KINDS
                        if (k, ns, name) in c.objects), None)
            if obj is None:
                continue
            template = ((obj["spec"].get("template") or {}).get("metadata") or {}).get(
                "labels") or {}
            selecting = [svc_name for svc_name, sel in by_ns.get(ns, []) if all(
                template.get(a) == b for a, b in sel.items())]
            if not selecting:
                continue
            groups: list[CallerGroup] = []
            for svc in selecting:
                for g in callers.get((ns, svc), []):
                    if g not in groups and g != ((ns, name),):
                        groups.append(g)
            pods: dict[str | None, list[PodView]] = {}
            for pv in by_workload.get((ns, name), []):
                pods.setdefault(pv.revision, []).append(pv)
            view.callees.append(Callee(
                c.name, ns, name, selecting[0],
                service_protocol(services[("Service", ns, selecting[0])]), revs, pods, groups))

    def _callers(self, c: Cluster, services: dict[Any, dict[str, Any]]
                 ) -> dict[WorkloadKey, list[CallerGroup]]:
        """(namespace, Service) → the caller groups that call it (see the module docstring)."""
        out: dict[WorkloadKey, list[CallerGroup]] = {}
        names = {(k[1], k[2]) for k in services}

        def add(ns: str, svc: str, group: CallerGroup) -> None:
            if (ns, svc) in names and group not in out.setdefault((ns, svc), []):
                out[(ns, svc)].append(group)

        for kind in (*WORKLOAD_KINDS, "CronJob"):
            for key in sorted(c.index.get(kind, ())):
                if key[1] in SYSTEM_NAMESPACES:
                    continue
                for ns, svc in _references(c.objects[key], key[1]):
                    add(ns, svc, ((key[1], key[2]),))
        addon = sorted(k[2] for k in c.index.get("Deployment", ()) if k[1] == INGRESS_NS
                       and _ADDON_GATEWAY.match(k[2]))
        for key in sorted(c.index.get(_VS_KEY, ())):
            spec = c.objects[key].get("spec") or {}
            groups = []
            for ref in spec.get("gateways") or []:
                gw_ns, _, gw_name = str(ref).rpartition("/")
                gw = c.objects.get((_ISTIO_GATEWAY_KEY, gw_ns or key[1], gw_name))
                mode = str(((gw or {}).get("spec") or {}).get("selector", {}).get("istio", ""))
                members = tuple((INGRESS_NS, d) for d in addon if d.startswith(mode + "-asm-"))
                if mode and members:
                    groups.append(members)
            for route in spec.get("http") or []:
                for dest in route.get("route") or []:
                    host = str((dest.get("destination") or {}).get("host", ""))
                    parts = host.split(".")
                    ns = parts[1] if len(parts) > 1 else key[1]
                    for g in groups:
                        add(ns, parts[0], g)
        for key in sorted(c.index.get(_HTTPROUTE_KEY, ())):
            spec = c.objects[key].get("spec") or {}
            gateways: list[CallerGroup] = []
            for ref in spec.get("parentRefs") or []:
                gw_ns, gw_name = str(ref.get("namespace") or key[1]), str(ref.get("name", ""))
                deploys = sorted({k[2] for k in c.index.get("Deployment", ()) if k[1] == gw_ns
                                  and ((c.objects[k]["metadata"].get("labels") or {}).get(
                                      istio.GATEWAY_NAME_LABEL) == gw_name)})
                gateways += [((gw_ns, d),) for d in deploys]
            for rule in spec.get("rules") or []:
                for backend in rule.get("backendRefs") or []:
                    if backend.get("kind", "Service") == "Service":
                        for g in gateways:
                            add(str(backend.get("namespace") or key[1]),
                                str(backend.get("name", "")), g)
        return out

    # ------------------------------------------------------------------ the weather

    def _gamma(self, shape: float, *key: Any) -> float:
        """A gamma(shape, mean 1) level of ``key`` for the current burst epoch; the same for
        every caller within it (all series of a namespace burst together)."""
        cached = self._epoch.get(key)
        if cached is None:
            if len(self._epoch) > 50_000:
                self._epoch.clear()
            rng = random.Random(f"{self.world.weather.seed}/{key}")
            cached = self._epoch[key] = rng.gammavariate(shape, 1 / shape)
        return cached

    def diurnal(self, now: float) -> float:
        """The load factor of the time of day on the sandbox clock (1 ± amplitude)."""
        weather = self.world.weather
        if not weather.diurnal_amplitude:
            return 1.0
        hour = (self.world.sandbox_time(now) % 86400) / 3600
        return 1 + weather.diurnal_amplitude * math.cos(
            2 * math.pi * (hour - weather.peak_hour) / 24)

    def incident(self, cluster: str, now: float) -> tuple[float, float]:
        """(added error rate, latency factor) of the incidents on ``cluster`` at ``now``."""
        weather = self.world.weather
        if weather is not self._weather:
            self._weather, self._recurring = weather, {}
        ok, slow = 1.0, 1.0
        active = [i for i in weather.incidents if i.start <= now < i.end
                  and (i.clusters is None or cluster in i.clusters)]
        for n, r in enumerate(weather.recurring):
            if (r.clusters is None or cluster in r.clusters) and self._recurs(n, r, now):
                ok, slow = ok * (1 - r.error_rate), slow * r.latency_x
        for i in active:
            ok, slow = ok * (1 - i.error_rate), slow * i.latency_x
        return 1 - ok, slow

    def _recurs(self, n: int, r: RecurringIncident, now: float) -> bool:
        state = self._recurring.get(n)
        if state is None:
            rng = random.Random(f"{self.world.weather.seed}/incident/{n}")
            origin = self.world.clock_origin
            state = self._recurring[n] = [rng, origin + rng.expovariate(1 / r.every_s), None]
        rng, start, current = state
        while start <= now:
            current = (start, start + r.duration_s)
            start = current[1] + rng.expovariate(1 / r.every_s)
        state[1], state[2] = start, current
        return current is not None and current[0] <= now < current[1]

    def _noise(self, cluster: str, ns: str) -> bool:
        tr: Traffic | None = self.world.traffic.get((cluster, ns))
        return ((tr.noise if tr and tr.noise else None) or self.world.weather.noise) \
            == "production"

    # ------------------------------------------------------------------ advancing

    def advance(self, now: float | None = None) -> None:
        """Add the traffic since the last advance to every target's counters."""
        now = time.time() if now is None else now
        with self.lock:
            dt, self.last = max(0.0, now - self.last), max(self.last, now)
            view = self.view()
            for key in [k for k in self.targets if k not in view.targets]:
                del self.targets[key]  # the pod is gone: so is its endpoint
            for key, pv in view.targets.items():
                t = self.targets.get(key)
                if t is None or t.pod != pv:
                    self.targets[key] = _Target(pv) if t is None else _Target(
                        pv, t.requests, t.tcp_opened, t.tcp_closed)
            if dt <= 0:
                return
            epoch = int(now // BURST_S)
            diurnal = self.diurnal(now)
            for callee in view.callees:
                self._serve(view, callee, dt, now, epoch, diurnal)

    def maybe_advance(self) -> None:
        if time.time() - self.last >= TICK_S:
            self.advance()

    def start(self, tick_s: float = TICK_S) -> None:
        """Advance every ``tick_s`` seconds in a thread of its own, and render every
        proxy's endpoint and the service discovery answer once per advance. Scrapes then
        cost a lookup and never wait for an advance: at 2,000 namespaces an advance takes
        about a second, which a scrape that advanced would spend inside its
        ``scrape_timeout`` (then Prometheus records ``up`` 0 and the target's samples are
        lost). As a real proxy's counters, each endpoint shows its counters as of the last
        advance. Without :meth:`start`, each scrape advances when :data:`TICK_S` passed."""
        if self._ticker is not None:
            return
        self.tick_s = tick_s
        self._stopping.clear()
        self._tick()
        self._ticker = threading.Thread(target=self._tick_loop, name="traffic-ticker",
                                        daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        """Stop :meth:`start`'s thread."""
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(10)
        self._ticker, self._exposed = None, None
        if self._published is not None:
            self._published.publish(None)  # scrapes advance on demand again

    def _tick_loop(self) -> None:
        due = time.time() + self.tick_s
        while not self._stopping.wait(max(0.0, due - time.time())):
            due = max(due + self.tick_s, time.time())
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - a world mid-reset; the next tick sees it whole
                log.exception("traffic.tick_failed")

    def _tick(self) -> None:
        self.advance()
        with self.lock:
            bodies = {key: "".join(_render(t)).encode() for key, t in self.targets.items()}
            sd = self._sd_groups(self._view_cache[1] if self._view_cache else _View())
        self._exposed = (bodies, sd)
        self._publish(bodies, sd)

    def _publish(self, bodies: dict[tuple[str, str, str], bytes],
                 sd: list[dict[str, str]]) -> None:
        """Hand one tick's endpoints and service discovery answer to :meth:`serve`'s
        process, all at once (a scrape sees one tick or the next, never a mix)."""
        server, address = self._published, self._address
        if server is None:
            return
        pages: dict[str, Page] = {f"{SCRAPE_PATH}/{c}/{ns}/{pod}": (EXPOSITION, body)
                                  for (c, ns, pod), body in bodies.items()}
        pages["/sd/targets"] = (b"application/json", json.dumps(
            [{"targets": [address], "labels": labels} for labels in sd]).encode())
        server.publish(pages, owned=(SCRAPE_PATH + "/",))

    def _serve(self, view: _View, callee: Callee, dt: float, now: float, epoch: int,
               diurnal: float) -> None:
        w = self.world
        cl, ns, wl = callee.cluster, callee.namespace, callee.workload
        noise = self._noise(cl, ns)
        tr = w.traffic.get((cl, ns))
        incident_error, incident_latency = self.incident(cl, now)
        load = diurnal * (self._gamma(BURST_SHAPE, "burst", cl, ns, epoch) if noise else 1.0)
        groups = [pods for g in callee.callers if (pods := view.group_pods(cl, g))]
        callers: list[list[PodView | None]] = [list(g) for g in groups] or [[None]]
        for rev, rps in callee.rates.items():
            dest_pods = callee.pods.get(rev) or []
            if rps <= 0 or not dest_pods:
                continue
            fault = w.fault(cl, ns, wl, rev)
            error = 1 - (1 - (tr.error_rate if tr else 0.0)) * (1 - fault.error_rate) * (
                1 - incident_error)
            if fault.latency_ms:
                median = fault.latency_ms
            elif tr and tr.p99_ms:
                median = tr.p99_ms / (P99_RATIO_TAIL if noise else P99_RATIO)
            else:
                median = default_latency_ms(wl)
            median *= incident_latency * (1 + LOAD_LATENCY * (diurnal - 1))
            if noise:
                error = min(1.0, error * self._gamma(ERROR_SHAPE, "error", cl, ns, wl, epoch))
                median *= self._gamma(MEDIAN_SHAPE, "median", cl, ns, wl, epoch)
                median = float(f"{median:.3g}")  # a bounded set of shapes to cache
            shares = bucket_shares(median, noise)
            mean = median * math.exp(SIGMA ** 2 / 2)
            per_pod = rps * load * dt / len(dest_pods)
            for group in callers:
                share = per_pod / len(callers) / len(group)
                for src in group:
                    src_fault = w.fault(cl, src.namespace, src.workload, src.revision) \
                        if src is not None else Fault()
                    for dst in dest_pods:
                        if callee.protocol == "tcp":
                            self._connections(src, dst, callee, share, error,
                                              src_fault.source_error_rate, noise)
                        else:
                            self._requests(src, dst, callee, share, error,
                                           src_fault.source_error_rate, shares, mean,
                                           fault.grpc_status, noise)

    def _draw(self, mean: float, noise: bool) -> float:
        return float(poisson(self.rng, mean)) if noise else mean

    def _requests(self, src: PodView | None, dst: PodView, callee: Callee, n: float,
                  error: float, source_error: float, shares: tuple[float, ...],
                  mean_ms: float, grpc_status: int, noise: bool) -> None:
        delivered = n * (1 - source_error)
        ok = [self._draw(delivered * (1 - error) * s, noise) for s in shares]
        bad = [self._draw(delivered * error * s, noise) for s in shares]
        failed = self._draw(n * source_error, noise)
        grpc = callee.protocol == "grpc"
        codes = [(("200", "0") if grpc else ("200", ""), ok),
                 (("200", str(grpc_status)) if grpc else ("503", ""), bad)]

        def latency_sum(counts: list[float]) -> float:
            if noise:
                return sum(c * m for c, m in zip(counts, _MIDPOINTS, strict=True))
            return sum(counts) * mean_ms

        src_peer = src.peer if src is not None and src.version else OUTSIDE
        dest_target = self.targets.get(dst.key) if dst.version else None
        src_target = self.targets.get(src.key) if src is not None and src.version else None
        for (code, status), counts in codes:
            if dest_target is not None:
                security = "mutual_tls" if src_peer is not OUTSIDE else "none"
                dest_target.add_requests(self._label_text(
                    "destination", src_peer, dst.peer, callee, code, status, "-", security),
                    counts, latency_sum(counts))
            if src_target is not None:
                src_target.add_requests(self._label_text(
                    "source", src_peer, dst.peer, callee, code, status, "-", UNKNOWN),
                    counts, latency_sum(counts) + SOURCE_OVERHEAD_MS * sum(counts))
        if src_target is not None and failed > 0:
            code, status = ("200", "14") if grpc else ("503", "")
            fast = [0.0] * (len(BUCKETS) + 1)
            fast[BUCKETS.index(5)] = failed  # a refused connection fails within ms
            src_target.add_requests(self._label_text(
                "source", src_peer, dst.peer, callee, code, status, "UF", UNKNOWN),
                fast, 2.0 * failed)

    def _connections(self, src: PodView | None, dst: PodView, callee: Callee, n: float,
                     error: float, source_error: float, noise: bool) -> None:
        delivered = self._draw(n * (1 - source_error) * (1 - error), noise)
        refused = self._draw(n * (1 - source_error) * error, noise)
        failed = self._draw(n * source_error, noise)
        src_peer = src.peer if src is not None and src.version else OUTSIDE
        if dst.version and (target := self.targets.get(dst.key)) is not None:
            security = "mutual_tls" if src_peer is not OUTSIDE else "none"
            for flags, count, opened in (("-", delivered, delivered + refused),
                                         ("UF", refused, 0.0)):
                labels = self._label_text("destination", src_peer, dst.peer, callee, None,
                                          None, flags, security)
                if opened:
                    target.tcp_opened[labels] = target.tcp_opened.get(labels, 0.0) + opened
                if count:
                    target.tcp_closed[labels] = target.tcp_closed.get(labels, 0.0) + count
        if src is not None and src.version and (
                target := self.targets.get(src.key)) is not None:
            for flags, count, opened in (("-", delivered + refused,
                                          delivered + refused + failed), ("UF", failed, 0.0)):
                labels = self._label_text("source", src_peer, dst.peer, callee, None, None,
                                          flags, UNKNOWN)
                if opened:
                    target.tcp_opened[labels] = target.tcp_opened.get(labels, 0.0) + opened
                if count:
                    target.tcp_closed[labels] = target.tcp_closed.get(labels, 0.0) + count

    def _label_text(self, reporter: str, src: Peer, dst: Peer, callee: Callee,
                    code: str | None, grpc_status: str | None, flags: str,
                    security: str) -> str:
        key = (reporter, src, dst, callee.service, callee.namespace, callee.protocol, code,
               grpc_status, flags, security)
        text = self._labels.get(key)
        if text is None:
            svc = f"{callee.service}.{callee.namespace}.svc.cluster.local"
            pairs = [("reporter", reporter),
                     ("source_workload", src.workload),
                     ("source_workload_namespace", src.namespace),
                     ("source_principal", src.principal), ("source_app", src.app),
                     ("source_version", src.version),
                     ("source_canonical_service", src.canonical_service),
                     ("source_canonical_revision", src.canonical_revision),
                     ("source_cluster", src.cluster),
                     ("destination_workload", dst.workload),
                     ("destination_workload_namespace", dst.namespace),
                     ("destination_principal", dst.principal),
                     ("destination_app", dst.app), ("destination_version", dst.version),
                     ("destination_service", svc),
                     ("destination_service_name", callee.service),
                     ("destination_service_namespace", callee.namespace),
                     ("destination_canonical_service", dst.canonical_service),
                     ("destination_canonical_revision", dst.canonical_revision),
                     ("destination_cluster", dst.cluster),
                     ("request_protocol", callee.protocol)]
            if code is not None:
                pairs.append(("response_code", code))
            if grpc_status:
                pairs.append(("grpc_response_status", grpc_status))
            pairs += [("response_flags", flags), ("connection_security_policy", security)]
            text = ",".join(f'{k}="{v}"' for k, v in pairs)
            if len(self._labels) > 100_000:
                self._labels.clear()
            self._labels[key] = text
        return text

    # ------------------------------------------------------------------ exposition

    def service_discovery(self, address: str) -> list[dict[str, Any]]:
        """Prometheus' HTTP SD answer: one target group per proxy, each scraped at
        ``address`` under its own path, labelled with its ``instance`` and ``cluster``."""
        exposed = self._exposed
        if exposed is not None:
            groups = exposed[1]
        else:
            with self.lock:
                groups = self._sd_groups(self.view())
        return [{"targets": [address], "labels": labels} for labels in groups]

    @staticmethod
    def _sd_groups(view: _View) -> list[dict[str, str]]:
        return [{"__metrics_path__": f"{SCRAPE_PATH}/{c}/{ns}/{pod}",
                 "instance": f"{pv.ip}:{PROXY_PORT}", "cluster": c}
                for (c, ns, pod), pv in sorted(view.targets.items())]

    def render_target(self, key: tuple[str, str, str], prefix: str = "") -> str | None:
        """One proxy's endpoint in the Prometheus text format; None for no such proxy."""
        with self.lock:
            t = self.targets.get(key)
            if t is None:
                return None
            return "".join(_render(t, prefix))

    def render(self) -> str:
        """Every target at once, each series with its target's labels."""
        self.advance()
        with self.lock:
            out: list[str] = []
            for key, t in sorted(self.targets.items()):
                prefix = (f'cluster="{key[0]}",job="{JOB}",'
                          f'instance="{t.pod.ip}:{PROXY_PORT}",')
                out += _render(t, prefix)
            return "".join(out)

    def serve(self, host: str, port: int) -> PublishedServer:
        """Serve :meth:`router` on ``host:port``; once :meth:`start` renders the proxies'
        endpoints, a process of its own answers Prometheus' scrapes and service discovery
        (:class:`sandbox.http.PublishedServer`: HTTP/1.1 keep-alive, a listen backlog of
        1024, a dictionary lookup a scrape), so that thousands of scrapes an interval are
        never held up by this process computing the traffic. Raises OSError when the port
        is taken."""
        server = PublishedServer(self.router(), "traffic", host, port)
        with self.lock:
            self._address, self._published = f"{host}:{port}", server
        if self._exposed is not None:
            self._publish(*self._exposed)
        return server

    def router(self) -> Router:
        r = Router()
        text = EXPOSITION.decode()
        r.add("GET", "/metrics", lambda req: Response(200, self.render(), content_type=text))

        def sd(req: Request) -> Response:
            if self._exposed is None:
                self.maybe_advance()
            return Response(200, json.dumps(self.service_discovery(
                req.headers.get("Host", "127.0.0.1"))))

        def scrape(req: Request) -> Response:
            key = (req.params["cluster"], req.params["ns"], req.params["pod"])
            exposed = self._exposed
            body: str | bytes | None
            if exposed is not None:  # rendered by the ticker: a lookup
                body = exposed[0].get(key)
            else:
                self.maybe_advance()
                body = self.render_target(key)
            if body is None:
                return Response(404, "no such proxy\n", content_type="text/plain")
            return Response(200, body, content_type=text)

        r.add("GET", "/sd/targets", sd)
        r.add("GET", SCRAPE_PATH + r"/(?P<cluster>[^/]+)/(?P<ns>[^/]+)/(?P<pod>[^/]+)",
              scrape)
        return r


def _num(v: float) -> str:
    return str(int(v)) if v == int(v) else f"{v:.3f}"


def _render(t: _Target, prefix: str = "") -> Iterable[str]:
    """One target's families, each with its TYPE line, its series together."""
    pv = t.pod
    yield "# TYPE istio_build gauge\n"
    yield f'istio_build{{{prefix}component="proxy",tag="{pv.version}"}} 1\n'
    if t.requests:
        yield "# TYPE istio_requests_total counter\n"
        for labels, row in sorted(t.requests.items()):
            yield f"istio_requests_total{{{prefix}{labels}}} {_num(row[0])}\n"
        yield "# TYPE istio_request_duration_milliseconds histogram\n"
        for labels, row in sorted(t.requests.items()):
            cumulative = 0.0
            for le, c in zip(BUCKETS, row[2:], strict=False):
                cumulative += c
                yield (f'istio_request_duration_milliseconds_bucket{{{prefix}{labels},'
                       f'le="{le}"}} {_num(cumulative)}\n')
            yield (f'istio_request_duration_milliseconds_bucket{{{prefix}{labels},le="+Inf"}}'
                   f" {_num(row[0])}\n")
            yield f"istio_request_duration_milliseconds_sum{{{prefix}{labels}}} {row[1]:.3f}\n"
            yield (f"istio_request_duration_milliseconds_count{{{prefix}{labels}}} "
                   f"{_num(row[0])}\n")
    for name, series in (("istio_tcp_connections_opened_total", t.tcp_opened),
                         ("istio_tcp_connections_closed_total", t.tcp_closed)):
        if series:
            yield f"# TYPE {name} counter\n"
            for labels, v in sorted(series.items()):
                yield f"{name}{{{prefix}{labels}}} {_num(v)}\n"


def _references(obj: dict[str, Any], ns: str) -> set[tuple[str, str]]:
    """(namespace, Service name) pairs a workload's containers call: hosts in environment
    values, and the Services an image of :data:`KNOWN_CALLS` calls."""
    spec = obj.get("spec") or {}
    template = spec.get("template") or (spec.get("jobTemplate") or {}).get("spec", {}).get(
        "template") or {}
    pod_spec = template.get("spec") or {}
    out: set[tuple[str, str]] = set()
    for ctr in (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or []):
        if not isinstance(ctr, dict):
            continue
        repo = str(ctr.get("image", "")).rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
        out |= {(ns, svc) for svc in KNOWN_CALLS.get(repo, ())}
        for env in ctr.get("env") or []:
            value = str((env or {}).get("value", "")).strip().lower() if isinstance(
                env, dict) else ""
            m = _HOST.match(value)
            if not m:
                continue
            parts = m.group(1).split(".")
            if len(parts) <= 2 or parts[2] == "svc":  # svc, svc.ns, svc.ns.svc[.cluster…]
                out.add((parts[1] if len(parts) > 1 else ns, parts[0]))
    return out

