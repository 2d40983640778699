"""The sandbox's world: managed clusters, their Kubernetes objects, controllers and faults.

One lock guards everything; every emulator calls :meth:`World.reconcile` before it reads, so
time-driven behaviour (an ARM operation finishing, a pod starting, a CronJob firing) happens
at the moment it is due, whoever looks first. A background thread also reconciles so that
watches see changes without a request.

Objects are stored as the API server stores them: any kind the cluster serves
(:mod:`sandbox.kinds`), with ``uid``, ``resourceVersion``, ``creationTimestamp``,
``generation`` and ``ownerReferences``; every change is an event for watches. Controllers
behave as Kubernetes' own (each docstring names its source); what they simplify is said
there. Time: a pod starts ``rollout_s`` after it is created (instantly while a world is
being seeded, which starts settled); a terminating pod is gone ``termination_s`` later;
CronJob schedules and Job TTLs run on the **sandbox clock**, ``clock_speed`` times faster
than the wall clock (60: a sandbox minute per second, so ``*/5 * * * *`` fires every five
seconds).

Istio: ``serviceMeshProfile.istio.revisions`` per cluster, changed only through a
long-running PUT that takes ``operation_s`` seconds; the add-on's ``aks-istio-system``,
``istiod-<revision>``, ingress gateways and Istio CRDs follow the revision list when the
operation ends, and are removed with the mesh (AKS doc ``istio-uninstall-addon.md``). New
pods get the sidecar the injector would give them: the API server calls the mutating
webhooks that select them, the add-on's per revision and any revision tag's
(:meth:`World.set_revision_tag`, ``istioctl tag set``), and a webhook whose istiod is gone
fails the pod's creation (:meth:`World._inject`). With the Gateway API's CRDs, istiod's
gateway controller deploys each Gateway of class ``istio`` and moves it to the revision
that controls it (:meth:`World._sync_gateway_gateway_networking_k8s_io`). A team's MeshConfig
(``istio-shared-configmap-<revision>``) passes the add-on's admission control
(:meth:`World._admit_mesh_config`). Someone else's node pool operation can keep a cluster
busy (:meth:`World.start_node_pool_operation`).

Counters of what changed, for tests: namespace relabels per (namespace, revision) and
workload restarts per (workload, revision).
"""

from __future__ import annotations

import base64
import bisect
import copy
import hashlib
import heapq
import itertools
import json
import marshal
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, MutableSet
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

import yaml

from sandbox import istio
from sandbox.admission import (
    WEBHOOK_KINDS,
    call_error,
    default_configuration,
    intercepting,
    validate_configuration,
)
from sandbox.cron import CronError
from sandbox.cron import parse as parse_cron
from sandbox.kinds import (
    ISTIO_CRDS,
    ApiResource,
    Registry,
    istio_crd,
    kind_key,
    split_api_version,
)
from sandbox.resources import cluster_body

REV_LABEL = "istio.io/rev"
INJECTION_LABEL = "istio-injection"
INJECT = "sidecar.istio.io/inject"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
ISTIO_NS = "aks-istio-system"
INGRESS_NS = "aks-istio-ingress"
PROXY_IMAGE = "mcr.microsoft.com/oss/istio/proxyv2:{version}-distroless"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", ISTIO_NS, INGRESS_NS)
TENANT = "00000000-0000-0000-0000-000000000002"
GATEWAY_KEY = kind_key(istio.GATEWAY_GROUP, "Gateway")
GATEWAY_CLASS_KEY = kind_key(istio.GATEWAY_GROUP, "GatewayClass")
HTTPROUTE_KEY = kind_key(istio.GATEWAY_GROUP, "HTTPRoute")
WEBHOOK_KEY = "MutatingWebhookConfiguration"

Key = tuple[str, str, str]  # (kind key, namespace, name)
_T = TypeVar("_T")


def json_copy(obj: _T) -> _T:
    """A deep copy of a JSON value (dicts, lists and scalars: every object the emulators
    keep) through :mod:`marshal`, about four times faster than :func:`copy.deepcopy`, whose
    memo and per-type dispatch in Python were most of the time of building a world of
    thousands of namespaces; a value marshal cannot carry (a dict subclass, an object) is
    copied by :func:`copy.deepcopy`."""
    try:
        copied: _T = marshal.loads(marshal.dumps(obj))  # type: ignore[arg-type]
    except ValueError:
        return copy.deepcopy(obj)
    return copied


def storage_key(key: Key) -> str:
    """Where the API server keeps an object, below its resource's prefix in etcd:
    ``<namespace>/<name>``, or ``<name>`` for a cluster-scoped kind (k8s.io/apiserver
    ``registry/generic/registry/store.go``: ``NamespaceKeyFunc``, ``NoNamespaceKeyFunc``).
    etcd returns a range in byte order of its keys, so this is the order of list results
    and of a watch's initial events."""
    return f"{key[1]}/{key[2]}" if key[1] else key[2]


def _name_of(key: Key) -> str:
    return key[2]


class KeyIndex(MutableSet[Key]):
    """The keys of one kind in a cluster, kept in the API server's order
    (:func:`storage_key`), whole and per namespace, so that a list or a watch of one kind
    (in one namespace) visits only its objects: what an etcd range read over
    ``/registry/<resource>/[<namespace>/]`` does. A set: ``in`` is O(1); adding or removing
    a key is a binary search and a move of the keys after it."""

    __slots__ = ("_keys", "_all", "_by_ns")

    def __init__(self, keys: Iterable[Key] = ()) -> None:
        self._keys: set[Key] = set()
        self._all: list[Key] = []
        self._by_ns: dict[str, list[Key]] = {}
        for key in keys:
            self.add(key)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self._all))

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyIndex({self._all!r})"

    def add(self, key: Key) -> None:
        if key in self._keys:
            return
        self._keys.add(key)
        bisect.insort(self._all, key, key=storage_key)
        bisect.insort(self._by_ns.setdefault(key[1], []), key, key=_name_of)

    def discard(self, key: Key) -> None:
        if key not in self._keys:
            return
        self._keys.remove(key)
        i = bisect.bisect_left(self._all, storage_key(key), key=storage_key)
        del self._all[i]
        names = self._by_ns[key[1]]
        del names[bisect.bisect_left(names, key[2], key=_name_of)]
        if not names:
            del self._by_ns[key[1]]

    def namespaces(self) -> list[str]:
        """The namespaces that have objects of the kind, in order."""
        return sorted(self._by_ns)

    def keys(self, ns: str | None = None, start: str = "") -> list[Key]:
        """The keys in namespace ``ns`` (None: all), in the API server's order, from the
        first whose :func:`storage_key` (without ``<ns>/`` when ``ns`` is given) is at least
        ``start`` (a list's ``continue`` point). Costs the keys it returns."""
        if ns is None:
            keys, at = self._all, storage_key
        else:
            keys, at = self._by_ns.get(ns, []), _name_of
        i = bisect.bisect_left(keys, start, key=at) if start else 0
        return keys[i:]

#: node pool operations a world may find running, and the provisioningState AKS shows on
#: the managed cluster and the agent pool meanwhile (:meth:`World.start_node_pool_operation`)
NODE_POOL_OPERATIONS = {"update node pool": "Updating"}

#: the team's MeshConfig overrides of a revision (AKS doc ``istio-meshconfig.md``)
SHARED_MESH_CONFIG = "istio-shared-configmap-"
#: the add-on's validating webhook, as AKS names it when it denies a request
MESH_WEBHOOK = "azure-service-mesh-ccp-validating-webhook.azmk8s.io"
#: MeshConfig and ProxyConfig (``defaultConfig``) fields the add-on allows or supports
#: (AKS doc ``istio-meshconfig.md``, "Allowed, supported, and blocked MeshConfig values");
#: every other field is blocked and admission control denies it
MESH_CONFIG_FIELDS = frozenset({
    "proxyListenPort", "proxyInboundListenPort", "proxyHttpPort", "connectTimeout",
    "tcpKeepalive", "defaultConfig", "outboundTrafficPolicy", "extensionProviders",
    "defaultProviders", "accessLogFile", "accessLogFormat", "accessLogEncoding",
    "enableTracing", "enableEnvoyAccessLogService", "disableEnvoyListenerLog", "trustDomain",
    "trustDomainAliases", "caCertificates", "defaultServiceExportTo",
    "defaultVirtualServiceExportTo", "defaultDestinationRuleExportTo", "localityLbSetting",
    "dnsRefreshRate", "h2UpgradePolicy", "enablePrometheusMerge", "discoverySelectors",
    "pathNormalization", "defaultHttpRetryPolicy", "serviceSettings", "meshMTLS",
    "tlsDefaults", "ingressService", "ingressSelector"})
PROXY_CONFIG_FIELDS = frozenset({
    "tracingServiceName", "drainDuration", "statsUdpAddress", "proxyAdminPort", "tracing",
    "concurrency", "envoyAccessLogService", "envoyMetricsService", "proxyMetadata",
    "statusPort", "extraStatTags", "gatewayTopology", "proxyStatsMatcher",
    "terminationDrainDuration", "meshId", "holdApplicationUntilProxyStarts",
    "caCertificatesPem", "privateKeyProvider", "proxyHeaders"})


def mesh_config_problems(mesh: Any) -> list[str]:
    """Why the add-on's admission control denies ``mesh`` (the parsed ``mesh`` key of an
    ``istio-shared-configmap-<revision>``): not a mapping, a blocked MeshConfig field, a
    ``defaultConfig`` that is not a mapping or holds a blocked ProxyConfig field (AKS doc
    ``istio-meshconfig.md``). Empty when it is admitted."""
    if mesh is None:
        return []
    if not isinstance(mesh, dict):
        return [f"mesh must be a MeshConfig mapping, got {type(mesh).__name__}"]
    problems = [f"MeshConfig field {k!r} is blocked (not in the add-on's allowed fields)"
                for k in mesh if k not in MESH_CONFIG_FIELDS]
    proxy = mesh.get("defaultConfig")
    if proxy is not None and not isinstance(proxy, dict):
        problems.append(f"defaultConfig must be a ProxyConfig mapping, got "
                        f"{type(proxy).__name__}")
    elif proxy:
        problems += [f"ProxyConfig field defaultConfig.{k!r} is blocked (not in the add-on's "
                     "allowed fields)" for k in proxy if k not in PROXY_CONFIG_FIELDS]
    return problems


def load_revisions() -> list[dict[str, Any]]:
    text = resources.files("sandbox").joinpath("data/revisions.yaml").read_text()
    return list(yaml.safe_load(text)["revisions"])


class ApiError(Exception):
    """An error as the API server answers it: HTTP code, reason, message."""

    def __init__(self, code: int, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


@dataclass
class Fault:
    """Behaviour of a revision's pods in one namespace (or of one workload there).

    ``error_rate`` is what the pods fail as servers, in their protocol's way
    (:mod:`sandbox.traffic`): HTTP 503, gRPC ``grpc_status`` inside HTTP 200, TCP
    connections closed with Envoy's ``UF``; both Istio reporters see it.
    ``source_error_rate`` is what their own outbound proxy fails of the calls they make
    (503 / gRPC 14 with ``UF``, or a TCP ``UF``): only the source reporter sees it, the
    callee never gets the call.
    """

    error_rate: float = 0.0  # fraction of requests (connections) failed as a server
    latency_ms: float | None = None  # median latency; None: the workload's default
    crashloop: bool = False
    source_error_rate: float = 0.0  # fraction of its outbound calls its proxy fails
    grpc_status: int = 14  # the gRPC status of a gRPC server's failures (14: Unavailable)


@dataclass
class Traffic:
    """A namespace's requests: ``rps`` a second in all, split evenly over the workloads a
    Service selects; a base error rate; p99 latency (the median is p99 / 3.2, or what gives
    that p99 with production noise's heavy tail); ``noise``: "production" or "none", None
    for the world's (:class:`Weather`)."""

    rps: float
    error_rate: float = 0.0
    p99_ms: float | None = None
    noise: str | None = None


@dataclass(frozen=True)
class Incident:
    """A fleet-wide incident (a shared dependency failing): from ``start`` to ``end`` (Unix
    s, wall clock) every namespace of ``clusters`` (None: every cluster), migrated or not,
    fails ``error_rate`` more of its requests and is ``latency_x`` times slower."""

    start: float
    end: float
    error_rate: float = 0.0
    latency_x: float = 1.0
    clusters: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RecurringIncident:
    """Incidents that recur with exponential gaps of mean ``every_s`` (wall s) from the
    world's start, each lasting ``duration_s``."""

    every_s: float
    duration_s: float
    error_rate: float = 0.0
    latency_x: float = 1.0
    clusters: tuple[str, ...] | None = None


@dataclass
class Weather:
    """What every namespace's traffic shares (:mod:`sandbox.traffic`): the default noise
    ("none": exact rates; "production": overdispersed counts, heavy-tailed latency), the
    diurnal swing of load on the sandbox clock (amplitude 0 = none; load peaks at
    ``peak_hour``), incidents, and the seed of the noise."""

    noise: str = "none"
    diurnal_amplitude: float = 0.0
    peak_hour: float = 14.0
    incidents: list[Incident] = field(default_factory=list)
    recurring: list[RecurringIncident] = field(default_factory=list)
    seed: int = 0


@dataclass
class Operation:
    id: str
    cluster: str
    started: float
    due: float
    revisions: list[str]
    status: str = "InProgress"
    error: dict[str, str] | None = None
    before: dict[str, Any] | None = None  # the mesh profile to restore if it fails
    #: what AKS calls the operation in its 409 ("update managed cluster", "update node
    #: pool"), and the agent pool a node pool operation runs on
    kind: str = "update managed cluster"
    agent_pool: str | None = None


@dataclass
class Cluster:
    name: str  # the AKS resource name
    subscription: str
    resource_group: str
    location: str
    kubernetes_version: str
    arm: dict[str, Any]  # the managedCluster body, as ARM returns it
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    #: (resourceVersion, ADDED|MODIFIED|DELETED, the object then, its key), oldest first
    events: list[tuple[int, str, dict[str, Any], Key]] = field(default_factory=list)
    #: owner uid → keys of the objects it owns (ownerReferences), and uid → key
    children: dict[str, set[Key]] = field(default_factory=dict)
    uids: dict[str, Key] = field(default_factory=dict)
    token: str = field(default_factory=lambda: "k8s-" + uuid.uuid4().hex)
    operation: Operation | None = None
    registry: Registry = field(default_factory=lambda: Registry([]))
    #: CronJob → the last sandbox-clock minute it was checked at
    cron_checked: dict[Key, float] = field(default_factory=dict)
    #: Deployment → when its current rollout last made progress (for the progress deadline)
    progress: dict[Key, float] = field(default_factory=dict)
    ips: itertools.count[int] = field(default_factory=lambda: itertools.count(10))
    node_names: list[str] = field(default_factory=list)
    #: Deployment → ready new pods last seen, and when its progress deadline is checked
    ready_seen: dict[Key, int] = field(default_factory=dict)
    event_keys: list[Key] = field(default_factory=list)
    deadline_at: dict[Key, float] = field(default_factory=dict)
    #: pod IP → the pod given it last (the IPAM's allocations; stale once that pod is gone)
    pod_ips: dict[str, Key] = field(default_factory=dict)
    #: kind key → the keys of the objects of that kind, in the API server's order, whole
    #: and per namespace (an index of ``objects``, kept by ``_put`` and ``_remove``)
    index: dict[str, KeyIndex] = field(default_factory=dict)
    #: what istiod's gateway controller last applied per object (its server-side apply
    #: field ownership: what it stops rendering, it removes)
    applied: dict[Key, dict[str, Any]] = field(default_factory=dict)
    #: owner → (failed pod creations in a row, the last error): FailedCreate and backoff
    create_failures: dict[Key, tuple[int, str]] = field(default_factory=dict)
    #: AKS planned maintenance configurations: name → ``properties`` as ARM returns them
    #: (``{"maintenanceWindow": {...}}``; :mod:`sandbox.maintenance`)
    maintenance: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def revisions(self) -> list[str]:
        mesh = self.arm["properties"].get("serviceMeshProfile") or {}
        return list((mesh.get("istio") or {}).get("revisions") or [])

    @property
    def nodes(self) -> list[str]:
        return self.node_names


def now_iso(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def parse_iso(text: str) -> float:
    import calendar
    return float(calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")))


def _suffix(n: int = 5) -> str:
    """The random suffix of generated names (``apiserver``'s ``SimpleNameGenerator``)."""
    return "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=n))


def template_hash(template: Any) -> str:
    """A stable hash of a pod template, as the controllers' ``pod-template-hash``: ten
    characters of apimachinery's ``rand.SafeEncodeString`` alphabet."""
    n = int(hashlib.sha1(json.dumps(template, sort_keys=True).encode()).hexdigest(), 16)
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    out = ""
    for _ in range(10):
        n, r = divmod(n, len(alphabet))
        out += alphabet[r]
    return out


def int_or_percent(value: Any, total: int, round_up: bool, default: str) -> int:
    """``intstr.GetScaledValueFromIntOrPercent``: 1, or "25%" of ``total`` rounded."""
    if value is None:
        value = default
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        scaled = float(text[:-1]) * total / 100
        return int(-(-scaled // 1)) if round_up else int(scaled)
    return int(text)


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in pod.get("status", {}).get("conditions") or [])


def _terminating(obj: dict[str, Any]) -> bool:
    return "deletionTimestamp" in obj["metadata"]


def _active(pod: dict[str, Any]) -> bool:
    """``controller.FilterActivePods``: not terminating, not Succeeded or Failed."""
    return not _terminating(pod) and pod.get("status", {}).get("phase") not in (
        "Succeeded", "Failed")


class World:
    def __init__(self, operation_s: float = 2.0, rollout_s: float = 1.0,
                 rps_per_pod: float = 10.0, termination_s: float = 0.3,
                 job_run_s: float = 2.0, clock_speed: float = 60.0) -> None:
        self.lock = threading.RLock()
        self.operation_s = operation_s
        self.rollout_s = rollout_s
        self.rps_per_pod = rps_per_pod
        self.termination_s = termination_s
        self.job_run_s = job_run_s
        self.clock_speed = clock_speed
        self.clock_origin = time.time()
        self.catalog: dict[str, dict[str, Any]] = {r["revision"]: r for r in load_revisions()}
        self.clusters: dict[str, Cluster] = {}
        self.operations: dict[str, Operation] = {}
        #: (cluster, namespace, revision or "" or "*") → fault of the whole namespace
        self.faults: dict[tuple[str, str, str], Fault] = {}
        #: (cluster, namespace, workload, revision or "" or "*") → fault of one workload
        self.workload_faults: dict[tuple[str, str, str, str], Fault] = {}
        self.traffic: dict[tuple[str, str], Traffic] = {}
        self.weather = Weather()
        self.relabels: Counter[str] = Counter()
        self.restarts: Counter[str] = Counter()
        self.arm_faults: list[int] = []  # statuses to answer the next ARM writes with
        self.failing_operations = 0  # the next operations end Failed, the cluster unchanged
        self.held: dict[str, dict[str, Any]] = {}  # revisions not yet released to ARM
        self.seeding = False  # pods start at once while a world is being built
        self._rv = itertools.count(1000)
        self._timers: list[tuple[float, int, str, str, Key]] = []
        self._seq = itertools.count()
        self._dirty: list[tuple[Cluster, Key]] = []

    # ------------------------------------------------------------------ clocks

    def sandbox_time(self, t: float | None = None) -> float:
        """The sandbox clock: ``clock_speed`` times faster than the wall clock."""
        t = time.time() if t is None else t
        return self.clock_origin + (t - self.clock_origin) * self.clock_speed

    def wall_time(self, sandbox_t: float) -> float:
        return self.clock_origin + (sandbox_t - self.clock_origin) / self.clock_speed

    def _at(self, due: float, action: str, c: Cluster, key: Key) -> None:
        heapq.heappush(self._timers, (due, next(self._seq), action, c.name, key))

    # ------------------------------------------------------------------ seeding

    def hold_back(self, revisions: list[str]) -> None:
        """Keep ``revisions`` out of ARM until :meth:`release` (a revision not yet out)."""
        self.held = {r: self.catalog.pop(r) for r in revisions if r in self.catalog}

    def release(self, revision: str) -> bool:
        with self.lock:
            entry = self.held.pop(revision, None)
            if entry is None:
                return False
            self.catalog[revision] = entry
            return True

    def add_cluster(self, name: str, *, subscription: str, resource_group: str, location: str,
                    kubernetes_version: str, revisions: list[str] | None,
                    entra_id: dict[str, Any] | None = None, open_service_mesh: bool = False,
                    node_count: int = 3, gateway_api: bool = False,
                    ingress_gateways: tuple[str, ...] = ()) -> Cluster:
        """A managed cluster after the REST spec's create example, with AKS's namespaces,
        nodes, CoreDNS and (with revisions) the mesh add-on's control plane.
        ``gateway_api``: AKS's Managed Gateway API installation is on
        (``ingressProfile.gatewayAPI.installation: Standard``; AKS doc
        ``istio-gateway-api.md``): the Gateway API's standard CRDs are installed.
        ``ingress_gateways``: the add-on's ingress gateways enabled, by mode (``external``,
        ``internal``), as ``az aks mesh enable-ingress-gateway`` leaves them
        (``serviceMeshProfile.istio.components.ingressGateways``; AKS doc
        ``istio-deploy-ingress.md``): ``aks-istio-ingressgateway-<mode>-<revision>`` in
        ``aks-istio-ingress``. Only with the mesh on."""
        body = cluster_body(subscription, resource_group, name, location, kubernetes_version,
                            revisions)
        if ingress_gateways and revisions:
            body["properties"]["serviceMeshProfile"]["istio"]["components"][
                "ingressGateways"] = [{"mode": m.capitalize(), "enabled": True}
                                      for m in ingress_gateways]
        body["properties"]["agentPoolProfiles"][0]["count"] = node_count
        if entra_id is not None:
            # AKS REST API ManagedClusterAADProfile; disableLocalAccounts on the cluster
            body["properties"]["aadProfile"] = {
                "managed": True, "enableAzureRBAC": bool(entra_id.get("azure_rbac")),
                "adminGroupObjectIDs": list(entra_id.get("admin_group_object_ids") or []),
                "tenantID": TENANT}
            body["properties"]["disableLocalAccounts"] = bool(
                entra_id.get("disable_local_accounts"))
        if open_service_mesh:
            body["properties"]["addonProfiles"]["openServiceMesh"] = {"enabled": True,
                                                                      "config": {}}
        if gateway_api:
            body["properties"]["ingressProfile"] = {"gatewayAPI": {"installation": "Standard"}}
        c = Cluster(name, subscription, resource_group, location, kubernetes_version, body)
        with self.lock:
            self.clusters[name] = c
            for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                self.ensure_namespace(c, ns, {})
            vmss = hashlib.sha1(name.encode()).hexdigest()[:8]
            for i in range(node_count):
                node = f"aks-nodepool1-{int(vmss, 16) % 10**8:08d}-vmss{i:06d}"
                self._create(c, {
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": node, "labels": {
                        "kubernetes.io/hostname": node, "kubernetes.io/os": "linux",
                        "kubernetes.azure.com/agentpool": "nodepool1",
                        "node.kubernetes.io/instance-type": "Standard_DS2_v2",
                        "topology.kubernetes.io/region": location,
                        "kubernetes.io/role": "agent"}},
                    "spec": {"podCIDR": f"10.244.{i}.0/24"},
                    "status": {"conditions": [{"type": "Ready", "status": "True",
                                               "reason": "KubeletReady",
                                               "message": "kubelet is posting ready status"}],
                               "addresses": [{"type": "InternalIP", "address": f"10.224.0.{4 + i}"},
                                             {"type": "Hostname", "address": node}],
                               "nodeInfo": {"kubeletVersion": f"v{kubernetes_version}",
                                            "osImage": "Ubuntu 22.04.5 LTS",
                                            "containerRuntimeVersion": "containerd://1.7.27",
                                            "kernelVersion": "5.15.0-1089-azure",
                                            "operatingSystem": "linux",
                                            "architecture": "amd64"}}})
            self._workload(c, "kube-system", "coredns", {"k8s-app": "kube-dns"}, 2,
                           "mcr.microsoft.com/oss/kubernetes/coredns:v1.11.3")
            if gateway_api:
                for spec in istio.GATEWAY_API_CRDS:
                    self._create(c, istio.gateway_api_crd(*spec))
            self._sync_mesh(c)
            self._settle()
        return c

    def ensure_namespace(self, c: Cluster, name: str, labels: dict[str, str]) -> None:
        """Create namespace ``name`` with ``labels``, or add ``labels`` to it."""
        existing = c.objects.get(("Namespace", "", name))
        if existing is None:
            self._create(c, {"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": name, "labels": dict(labels)}})
        elif labels:
            merged = json_copy(existing)
            merged["metadata"].setdefault("labels", {}).update(labels)
            self._put(c, ("Namespace", "", name), merged)

    def _workload(self, c: Cluster, ns: str, name: str, labels: dict[str, str],
                  replicas: int, image: str) -> None:
        self._create(c, {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)},
                                  "spec": {"containers": [{"name": name, "image": image}]}}}})

    # ------------------------------------------------------------------ the store

    def resource(self, c: Cluster, api_version: str, kind: str) -> ApiResource:
        r = c.registry.by_kind(api_version, kind)
        if r is None:
            raise ApiError(404, "NotFound", f'no matches for kind "{kind}" in version '
                           f'"{api_version}"; ensure CRDs are installed first')
        return r

    def _put(self, c: Cluster, key: Key, obj: dict[str, Any], event: str | None = None) -> None:
        existed = key in c.objects
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        c.objects[key] = obj
        if not existed:
            kind_index = c.index.get(key[0])
            if kind_index is None:
                kind_index = c.index[key[0]] = KeyIndex()
            kind_index.add(key)
        uid = obj["metadata"].get("uid")
        if uid:
            c.uids[uid] = key
        for ref in obj["metadata"].get("ownerReferences") or []:
            c.children.setdefault(ref["uid"], set()).add(key)
        c.events.append((int(obj["metadata"]["resourceVersion"]),
                         event or ("MODIFIED" if existed else "ADDED"), json_copy(obj), key))
        del c.events[:-20000]

    def _remove(self, c: Cluster, key: Key) -> None:
        """Remove an object now, and (background cascading deletion) what it owns."""
        obj = c.objects.pop(key, None)
        if obj is None:
            return
        kind_index = c.index.get(key[0])
        if kind_index is not None:
            kind_index.discard(key)
        c.applied.pop(key, None)
        uid = obj["metadata"].get("uid", "")
        c.uids.pop(uid, None)
        for ref in obj["metadata"].get("ownerReferences") or []:
            c.children.get(ref["uid"], set()).discard(key)
        obj = json_copy(obj)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        c.events.append((int(obj["metadata"]["resourceVersion"]), "DELETED", obj, key))
        for child in sorted(c.children.pop(uid, set())):
            if child[0] == "Pod":
                self._delete_pod(c, child)
            else:
                self._remove(c, child)
        c.cron_checked.pop(key, None)
        c.progress.pop(key, None)
        if key[0] == "CustomResourceDefinition":
            self._refresh_registry(c)
        if key[0] == "Node" and key[2] in c.node_names:
            c.node_names.remove(key[2])
        self._owner_dirty(c, obj)
        self._watch_mesh(c, key, obj, None)

    def _event(self, c: Cluster, obj: dict[str, Any], reason: str, message: str,
               component: str, kind: str = "Normal", aggregate: bool = False) -> None:
        """A ``v1`` Event about ``obj``, as the controllers and the kubelet record them
        (``kubectl describe`` and ``kubectl get events`` show them). Events live an hour on
        a real cluster; the sandbox keeps each cluster's last 1000, and records none while
        a world is being seeded. ``aggregate``: the same event again only counts up
        (``count``, ``lastTimestamp``), as client-go's ``EventCorrelator`` does for repeats."""
        if self.seeding:
            return
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        t = now_iso()
        if aggregate:
            for k in reversed(c.event_keys[-200:]):
                old = c.objects.get(k)
                if old is not None and old["reason"] == reason and \
                        old["message"] == message and \
                        old["involvedObject"].get("uid") == meta.get("uid", ""):
                    again = json_copy(old)
                    again.update(count=old.get("count", 1) + 1, lastTimestamp=t)
                    self._put(c, k, again)
                    return
        name = f"{meta['name']}.{uuid.uuid4().hex[:16]}"
        ev = {"apiVersion": "v1", "kind": "Event",
              "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4()),
                           "creationTimestamp": t},
              "involvedObject": {"kind": obj["kind"], "namespace": meta.get("namespace", ""),
                                 "name": meta["name"], "uid": meta.get("uid", ""),
                                 "apiVersion": obj["apiVersion"],
                                 "resourceVersion": meta.get("resourceVersion", "")},
              "reason": reason, "message": message, "source": {"component": component},
              "firstTimestamp": t, "lastTimestamp": t, "count": 1, "type": kind,
              "reportingComponent": component, "reportingInstance": ""}
        key = ("Event", ns, name)
        self._put(c, key, ev)
        c.event_keys.append(key)
        while len(c.event_keys) > 1000:
            self._remove(c, c.event_keys.pop(0))

    def _owner_dirty(self, c: Cluster, obj: dict[str, Any]) -> None:
        for ref in obj["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref["uid"] in c.uids:
                self._dirty.append((c, c.uids[ref["uid"]]))

    def _refresh_registry(self, c: Cluster) -> None:
        c.registry = Registry([o for (k, _, _), o in c.objects.items()
                               if k == "CustomResourceDefinition"])

    def list_objects(self, cluster: str, kind: str, ns: str | None = None) -> list[dict[str, Any]]:
        """Copies of the objects of ``kind`` (a kind key) in ``ns`` (None: every namespace),
        in the API server's order (:func:`storage_key`); costs only those objects."""
        with self.lock:
            self.reconcile()
            c = self.clusters[cluster]
            index = c.index.get(kind)
            return [json_copy(c.objects[k]) for k in index.keys(ns)] if index else []

    def get(self, cluster: str, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            self.reconcile()
            obj = self.clusters[cluster].objects.get((kind, ns, name))
            return json_copy(obj) if obj else None

    # ------------------------------------------------------------------ writes

    def create(self, cluster: str, obj: dict[str, Any], namespace: str | None = None
               ) -> dict[str, Any]:
        """``POST``: create ``obj`` (in ``namespace`` for a namespaced kind)."""
        with self.lock:
            self.reconcile()
            c = self.clusters[cluster]
            created = self._create(c, obj, namespace)
            self._settle()
            return json_copy(c.objects.get(self._key_of(created), created))

    def _key_of(self, obj: dict[str, Any]) -> Key:
        group, _ = split_api_version(obj["apiVersion"])
        return (kind_key(group, obj["kind"]), obj["metadata"].get("namespace", ""),
                obj["metadata"]["name"])

    def _create(self, c: Cluster, obj: dict[str, Any], namespace: str | None = None
                ) -> dict[str, Any]:
        obj = json_copy(obj)
        if not isinstance(obj.get("metadata"), dict):
            raise ApiError(422, "Invalid", "metadata: Required value")
        r = self.resource(c, str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + _suffix()
        if not isinstance(meta.get("name"), str) or not meta["name"]:
            raise ApiError(422, "Invalid", f"{r.kind}: metadata.name: Required value: name "
                           "or generateName is required")
        if r.namespaced:
            ns = meta.get("namespace") or namespace or "default"
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does "
                               "not match the namespace sent on the request")
            meta["namespace"] = ns
            nso = c.objects.get(("Namespace", "", ns))
            if nso is None:
                raise ApiError(404, "NotFound", f'namespaces "{ns}" not found',
                               name=ns, kind="namespaces")
            if _terminating(nso):
                raise ApiError(403, "Forbidden", f'{r.plural} "{meta["name"]}" is forbidden: '
                               f"unable to create new content in namespace {ns} because it "
                               "is being terminated")
        else:
            meta.pop("namespace", None)
        key = (r.key, meta.get("namespace", ""), meta["name"])
        if key in c.objects:
            raise ApiError(409, "AlreadyExists", f'{r.plural} "{meta["name"]}" already exists',
                           name=meta["name"], kind=r.plural)
        t = time.time()
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_iso(t))
        meta.pop("resourceVersion", None)
        meta.pop("deletionTimestamp", None)
        if meta.get("labels") is None:
            meta.pop("labels", None)
        if "spec" in obj or r.kind in WORKLOAD_KINDS:
            meta["generation"] = 1
        self._defaults(c, r, obj)
        if r.kind == "Pod":
            self._admit(c, obj)
        if r.kind == "ConfigMap":
            self._admit_mesh_config(obj)
        self._put(c, key, obj)
        self._watch_mesh(c, key, None, obj)
        if r.kind == "CustomResourceDefinition":
            self._refresh_registry(c)
        if r.kind == "Node":
            c.node_names.append(meta["name"])
        if r.kind == "Pod":
            if self.seeding:
                self._run_pod(c, key)
            else:
                self._at(time.time() + self.rollout_s, "start", c, key)
        if r.kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job",
                      "HorizontalPodAutoscaler"):
            self._dirty.append((c, key))
        if r.kind == "CronJob":
            c.cron_checked[key] = self.sandbox_time() // 60 * 60
        return obj

    def _defaults(self, c: Cluster, r: ApiResource, obj: dict[str, Any]) -> None:
        """What the API server adds on create (defaulting, allocation)."""
        needs_spec = r.kind in ("Namespace", "Service", "Pod", "Job", "CronJob", "ReplicaSet",
                                *WORKLOAD_KINDS)
        if needs_spec and not isinstance(obj.get("spec"), dict):
            obj["spec"] = {}
        spec: dict[str, Any] | None = obj["spec"] if needs_spec else None
        if r.kind == "Namespace":
            obj["metadata"].setdefault("labels", {})[
                "kubernetes.io/metadata.name"] = obj["metadata"]["name"]
            assert spec is not None
            spec.setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        elif r.kind == "Secret":
            obj.setdefault("type", "Opaque")
            for k, v in (obj.pop("stringData", None) or {}).items():
                obj.setdefault("data", {})[k] = base64.b64encode(str(v).encode()).decode()
        elif r.kind == "Service" and spec is not None:
            spec.setdefault("type", "ClusterIP")
            if spec.get("clusterIP") != "None" and spec["type"] != "ExternalName":
                n = next(c.ips)
                spec["clusterIP"] = f"10.0.{n // 250 % 250}.{n % 250 + 2}"
                spec["clusterIPs"] = [spec["clusterIP"]]
            spec.setdefault("sessionAffinity", "None")
            spec.setdefault("ipFamilies", ["IPv4"])
            for p in spec.get("ports") or []:
                p.setdefault("protocol", "TCP")
                p.setdefault("targetPort", p.get("port"))
            status: dict[str, Any] = {"loadBalancer": {}}
            if spec["type"] == "LoadBalancer":
                n = next(c.ips)
                status["loadBalancer"] = {"ingress": [{"ip": f"20.{n % 200 + 10}.{n // 200 % 250}"
                                                             f".{n % 250 + 1}",
                                                       "ipMode": "VIP"}]}
            obj["status"] = status
        if spec is not None and r.kind in WORKLOAD_KINDS + ("ReplicaSet", "Job"):
            tspec = (spec.get("template") or {}).get("spec")
            if isinstance(tspec, dict):
                default_pod_spec(tspec)
        if spec is not None and r.kind == "CronJob":
            tspec = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
                     or {}).get("spec")
            if isinstance(tspec, dict):
                default_pod_spec(tspec)
                tspec["restartPolicy"] = tspec.get("restartPolicy") or "OnFailure"
        if r.kind in WORKLOAD_KINDS + ("ReplicaSet",) and spec is not None:
            if r.kind != "DaemonSet":
                spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            if r.kind == "Deployment":
                spec.setdefault("progressDeadlineSeconds", 600)
                strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
                if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                    strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%",
                                                          "maxSurge": "25%"})
            elif r.kind == "StatefulSet":
                spec.setdefault("podManagementPolicy", "OrderedReady")
                strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
                if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                    strategy.setdefault("rollingUpdate", {"partition": 0})
                spec.setdefault("serviceName", obj["metadata"]["name"])
            elif r.kind == "DaemonSet":
                strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
                if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                    strategy.setdefault("rollingUpdate", {"maxUnavailable": 1, "maxSurge": 0})
            obj["status"] = {"observedGeneration": 0, "replicas": 0} \
                if r.kind != "DaemonSet" else {"observedGeneration": 0}
        elif r.kind == "Job" and spec is not None:
            uid = obj["metadata"]["uid"]
            name = obj["metadata"]["name"]
            if not spec.get("manualSelector"):
                # the API server's Job defaulting: a selector on the controller uid
                spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
                tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
                tmeta.setdefault("labels", {}).update({
                    "batch.kubernetes.io/controller-uid": uid,
                    "batch.kubernetes.io/job-name": name, "controller-uid": uid,
                    "job-name": name})
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completions", spec.get("parallelism") or 1)
            spec.setdefault("parallelism", 1)
            spec.setdefault("completionMode", "NonIndexed")
            spec.setdefault("suspend", False)
            obj["status"] = {}
        elif r.kind == "CronJob" and spec is not None:
            try:
                parse_cron(str(spec.get("schedule", "")))
            except CronError as exc:
                raise ApiError(422, "Invalid", f'CronJob.batch "{obj["metadata"]["name"]}" '
                               f'is invalid: spec.schedule: Invalid value: '
                               f'"{spec.get("schedule", "")}": {exc}') from None
            spec.setdefault("concurrencyPolicy", "Allow")
            spec.setdefault("suspend", False)
            spec.setdefault("successfulJobsHistoryLimit", 3)
            spec.setdefault("failedJobsHistoryLimit", 1)
            obj["status"] = {}
        elif r.kind == "Pod" and spec is not None:
            default_pod_spec(spec)
            spec.setdefault("serviceAccountName", "default")
        elif r.kind in WEBHOOK_KINDS:
            self._admit_webhooks(r, obj)
        elif r.group == istio.GATEWAY_GROUP:
            istio.default_gateway_api(r.kind, obj)

    @staticmethod
    def _admit_webhooks(r: ApiResource, obj: dict[str, Any]) -> None:
        """Validation and defaulting of a webhook configuration (:mod:`sandbox.admission`);
        ApiError 422 as the API server answers an invalid one."""
        errors = validate_configuration(obj)
        if errors:
            name = obj["metadata"].get("name", "")
            raise ApiError(422, "Invalid", f'{r.kind}.{r.group} "{name}" is invalid: '
                           + (errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"),
                           name=name, group=r.group, kind=r.kind)
        default_configuration(obj)

    @staticmethod
    def _admit_mesh_config(obj: dict[str, Any]) -> None:
        """The add-on's admission control of a team's MeshConfig: an
        ``istio-shared-configmap-<revision>`` in ``aks-istio-system`` whose ``mesh`` is not
        YAML (tabs, say) or holds a blocked field is denied (AKS doc ``istio-meshconfig.md``,
        "Common errors": "admission control denies such configurations"); ApiError 400 as
        the API server reports a validating webhook's denial. The webhook exists only with
        the mesh on, as does ``aks-istio-system``."""
        meta = obj["metadata"]
        if meta.get("namespace") != ISTIO_NS or not str(meta.get("name", "")).startswith(
                SHARED_MESH_CONFIG):
            return
        text = (obj.get("data") or {}).get("mesh")
        try:
            mesh = yaml.safe_load(text) if isinstance(text, str) else None
        except yaml.YAMLError as exc:
            problems = [f"mesh is not valid YAML: {getattr(exc, 'problem', None) or exc}"]
        else:
            problems = mesh_config_problems(mesh)
        if problems:
            raise ApiError(400, "BadRequest", f'admission webhook "{MESH_WEBHOOK}" denied the '
                           f"request: ConfigMap {meta['name']}: " + "; ".join(problems))

    def roll_control_plane(self, revision: str, version: str) -> None:
        """AKS rolling ``istiod-<revision>`` of every cluster to a new patch: the
        Deployment's pilot image changes and its controller replaces the pods."""
        with self.lock:
            self.reconcile()
            for c in self.clusters.values():
                key = ("Deployment", ISTIO_NS, f"istiod-{revision}")
                obj = c.objects.get(key)
                if obj is None:
                    continue
                merged = json_copy(obj)
                for ctr in merged["spec"]["template"]["spec"]["containers"]:
                    if "/pilot:" in ctr.get("image", ""):
                        ctr["image"] = f"mcr.microsoft.com/oss/istio/pilot:{version}-distroless"
                self._update(c, key, merged)

    def patch(self, cluster: str, kind: str, ns: str, name: str,
              patch: dict[str, Any]) -> dict[str, Any] | None:
        """Apply a JSON merge patch (RFC 7386) and the controllers' reaction to it."""
        with self.lock:
            self.reconcile()
            c = self.clusters[cluster]
            obj = c.objects.get((kind, ns, name))
            if obj is None:
                return None
            merged: dict[str, Any] = merge_patch(json_copy(obj), patch)
            return self._update(c, (kind, ns, name), merged)

    def update(self, cluster: str, kind: str, ns: str, name: str, new: dict[str, Any],
               keep_status: bool = True) -> dict[str, Any] | None:
        """``PUT``: replace the object (server-set metadata kept; the status too unless
        ``keep_status`` is false, as a write to the ``status`` subresource)."""
        with self.lock:
            self.reconcile()
            c = self.clusters[cluster]
            obj = c.objects.get((kind, ns, name))
            if obj is None:
                return None
            rv = (new.get("metadata") or {}).get("resourceVersion")
            if rv and rv != obj["metadata"]["resourceVersion"]:
                r = c.registry.by_key(kind)
                what = (f"{r.plural}.{r.group}" if r.group else r.plural) if r else kind
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {what} '
                               f'"{name}": the object has been modified; please apply your '
                               "changes to the latest version and try again", name=name,
                               group=r.group if r else "", kind=r.plural if r else kind)
            merged = json_copy(new)
            meta = merged.setdefault("metadata", {})
            for k in ("uid", "creationTimestamp", "namespace", "name"):  # immutable
                if k in obj["metadata"]:
                    meta[k] = obj["metadata"][k]
            for k in ("generation", "ownerReferences", "deletionTimestamp"):  # server-set
                if k in obj["metadata"] and k not in meta:
                    meta[k] = obj["metadata"][k]
            if keep_status and "status" in obj:
                merged["status"] = obj["status"]
            elif not keep_status:
                merged = {**json_copy(obj), "status": merged.get("status")}
            return self._update(c, (kind, ns, name), merged)

    def _update(self, c: Cluster, key: Key, merged: dict[str, Any]) -> dict[str, Any]:
        kind, ns, name = key
        before = c.objects[key]
        merged["metadata"]["uid"] = before["metadata"]["uid"]
        if kind in WEBHOOK_KINDS:
            r = c.registry.by_key(kind)
            assert r is not None
            merged.setdefault("apiVersion", before["apiVersion"])
            merged.setdefault("kind", kind)
            self._admit_webhooks(r, merged)
        elif kind.endswith("." + istio.GATEWAY_GROUP):
            istio.default_gateway_api(kind.split(".", 1)[0], merged)
        elif kind == "ConfigMap":
            self._admit_mesh_config(merged)
        if kind == "Namespace":
            old = (before["metadata"].get("labels") or {}).get(REV_LABEL)
            new = (merged["metadata"].get("labels") or {}).get(REV_LABEL)
            if old != new:
                self.relabels[f"{c.name}/{name}:{new}"] += 1
        if merged.get("spec") != before.get("spec") and "generation" in before["metadata"]:
            merged["metadata"]["generation"] = before["metadata"]["generation"] + 1
        if kind in WORKLOAD_KINDS and (merged.get("spec") or {}).get("template") != \
                (before.get("spec") or {}).get("template"):
            rev = self._ns_revision(c, ns)
            self.restarts[f"{c.name}/{ns}/{kind}/{name}:{rev}"] += 1
            c.progress[key] = time.time()
        self._put(c, key, merged)
        self._watch_mesh(c, key, before, merged)
        if kind == "CustomResourceDefinition":
            self._refresh_registry(c)
        if kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job",
                    "HorizontalPodAutoscaler"):
            self._dirty.append((c, key))
        self._settle()
        return json_copy(c.objects[key])

    def delete(self, cluster: str, kind: str, ns: str, name: str,
               propagation: str = "Background") -> dict[str, Any] | None:
        """``DELETE``: a pod terminates gracefully (``deletionTimestamp``, gone
        ``termination_s`` later); a namespace terminates with its content; anything else is
        removed at once with its dependents (background cascading deletion), or orphans them
        with ``propagationPolicy=Orphan`` (Kubernetes docs "Garbage Collection")."""
        with self.lock:
            self.reconcile()
            c = self.clusters[cluster]
            key = (kind, ns, name)
            obj = c.objects.get(key)
            if obj is None:
                return None
            if kind == "Pod":
                self._delete_pod(c, key)
            elif kind == "Namespace":
                if name in ("default", "kube-system", "kube-public", "kube-node-lease"):
                    raise ApiError(403, "Forbidden", f'namespaces "{name}" is forbidden: this '
                                   "namespace may not be deleted")
                term = json_copy(obj)
                term["metadata"]["deletionTimestamp"] = now_iso()
                term["status"] = {"phase": "Terminating"}
                self._put(c, key, term)
                for k in [k for k in c.objects if k[1] == name]:
                    if k[0] == "Pod":
                        self._delete_pod(c, k)
                    else:
                        self._remove(c, k)
                self._at(time.time() + self.termination_s * 2, "gone", c, key)
            else:
                if propagation == "Orphan":
                    uid = obj["metadata"]["uid"]
                    for child in sorted(c.children.pop(uid, set())):
                        o = json_copy(c.objects[child])
                        o["metadata"]["ownerReferences"] = [
                            r for r in o["metadata"].get("ownerReferences") or []
                            if r["uid"] != uid]
                        self._put(c, child, o)
                self._remove(c, key)
            self._settle()
            out = c.objects.get(key)
            return json_copy(out if out is not None else obj)

    def _delete_pod(self, c: Cluster, key: Key) -> None:
        pod = c.objects.get(key)
        if pod is None or _terminating(pod):
            return
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") or \
                pod["spec"].get("nodeName") is None:
            self._remove(c, key)
            return
        term = json_copy(pod)
        term["metadata"]["deletionTimestamp"] = now_iso(time.time() + self.termination_s)
        term["metadata"]["deletionGracePeriodSeconds"] = \
            pod["spec"].get("terminationGracePeriodSeconds", 30)
        self._put(c, key, term)
        for ctr in pod["spec"].get("containers") or []:
            self._event(c, term, "Killing", f"Stopping container {ctr.get('name')}", "kubelet")
        self._at(time.time() + self.termination_s, "gone", c, key)
        self._owner_dirty(c, term)

    def _ns_revision(self, c: Cluster, ns: str) -> str | None:
        obj = c.objects.get(("Namespace", "", ns))
        return ((obj or {}).get("metadata", {}).get("labels") or {}).get(REV_LABEL)

    # ------------------------------------------------------------------ pods

    def _inject(self, c: Cluster, pod: dict[str, Any]) -> str | None:
        """Call the mutating admission webhooks that intercept a new pod (:mod:`sandbox.
        admission`) and return the revision whose sidecar injector mutated it, or None.

        The add-on's webhooks are Istio's revision webhooks (``istio-sidecar-injector-<rev>-
        aks-istio-system``; Istio docs "Installing the Sidecar", "Controlling the injection
        policy"; AKS doc ``istio-deploy-addon.md``: injection by ``istio.io/rev`` only, never
        by ``istio-injection=enabled``) and any revision tag's (``istioctl tag set``): a
        namespace labelled ``istio.io/rev=R`` without ``istio-injection``, or a pod labelled
        so in a namespace with neither label, where R is a revision or a tag. The injecting
        revision is that of the istiod whose Service the webhook calls
        (``clientConfig.service``): the called istiod injects its own proxy. A webhook whose
        Service is missing or has no ready endpoints fails the request under
        ``failurePolicy: Fail`` (:class:`ApiError` 500 ``InternalError``, the API server's
        "failed calling webhook" message) and is skipped under ``Ignore``; a URL webhook is
        unreachable from the sandbox. The injector leaves a pod alone that is annotated
        ``sidecar.istio.io/inject: "false"``, runs on the host network, or is already
        injected. The add-on's own namespaces and kube-system are never intercepted.
        """
        meta = pod["metadata"]
        ns = meta["namespace"]
        if ns in SYSTEM_NAMESPACES:
            return None
        nso = c.objects.get(("Namespace", "", ns))
        nsl = ((nso or {}).get("metadata") or {}).get("labels") or {}
        webhooks = intercepting(self._of_kind(c, "MutatingWebhookConfiguration"), "CREATE",
                                "", "v1", "pods", nsl, meta.get("labels") or {})
        injected: str | None = None
        for wh in webhooks:
            svc_ref = (wh.get("clientConfig") or {}).get("service")
            failure, rev = None, None
            if not isinstance(svc_ref, dict):
                failure = "dial tcp: i/o timeout"
            else:
                svc = c.objects.get(("Service", str(svc_ref.get("namespace", "")),
                                     str(svc_ref.get("name", ""))))
                if svc is None:
                    failure = f'service "{svc_ref.get("name")}" not found'
                elif not self._endpoints(c, svc):
                    failure = f'no endpoints available for service "{svc_ref.get("name")}"'
                else:
                    rev = self._istiod_of(svc)
            if failure is not None:
                if wh.get("failurePolicy", "Fail") == "Ignore":
                    continue
                raise ApiError(500, "InternalError", call_error(wh, failure))
            annotations = meta.get("annotations") or {}
            if rev is None or "sidecar.istio.io/status" in annotations or \
                    str(annotations.get(INJECT, "")).lower() == "false" or \
                    pod["spec"].get("hostNetwork"):
                continue
            self._add_sidecar(c, pod, rev)
            injected = rev
        return injected

    def _endpoints(self, c: Cluster, svc: dict[str, Any]) -> list[dict[str, Any]]:
        """The ready pods a Service selects (its endpoints)."""
        sel = (svc.get("spec") or {}).get("selector") or {}
        if not sel:
            return []
        ns = svc["metadata"]["namespace"]
        return [p for p in self._of_kind(c, "Pod", ns) if _ready(p) and not _terminating(p)
                and all((p["metadata"].get("labels") or {}).get(k) == v
                        for k, v in sel.items())]

    def _istiod_of(self, svc: dict[str, Any]) -> str | None:
        """The revision of the istiod behind a Service (``app: istiod``, ``istio.io/rev``),
        or None for any other backend."""
        sel = (svc.get("spec") or {}).get("selector") or {}
        rev = sel.get(REV_LABEL)
        if svc["metadata"]["namespace"] == ISTIO_NS and sel.get("app") == "istiod" and \
                rev in self.catalog:
            return str(rev)
        return None

    def _of_kind(self, c: Cluster, kind: str, ns: str | None = None) -> list[dict[str, Any]]:
        """The stored objects of one kind (key), in one namespace (by name, from the index:
        it costs that namespace's objects) or all (by namespace, then name)."""
        index = c.index.get(kind)
        if index is None:
            return []
        if ns is not None:
            return [c.objects[k] for k in index.keys(ns)]
        return [c.objects[k] for k in sorted(index)]

    def _add_sidecar(self, c: Cluster, pod: dict[str, Any], rev: str) -> None:
        """The mutation of the ``rev`` istiod's sidecar injector: revision labels, istio-init
        and istio-proxy (a native sidecar where :meth:`_native_sidecar`), the
        ``sidecar.istio.io/status`` annotation."""
        meta, spec = pod["metadata"], pod["spec"]
        version = self.catalog[rev]["version"]
        labels = meta.setdefault("labels", {})
        labels[REV_LABEL] = rev
        labels.setdefault("security.istio.io/tlsMode", "istio")
        labels.setdefault("service.istio.io/canonical-name", labels.get(
            "app.kubernetes.io/name", labels.get("app", meta["name"])))
        labels.setdefault("service.istio.io/canonical-revision", labels.get(
            "app.kubernetes.io/version", labels.get("version", "latest")))
        native = self._native_sidecar(c, rev)
        proxy: dict[str, Any] = {
            "name": "istio-proxy", "image": PROXY_IMAGE.format(version=version),
            "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
            "ports": [{"containerPort": 15090, "name": "http-envoy-prom",
                       "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}}}
        init = {"name": "istio-init", "image": PROXY_IMAGE.format(version=version),
                "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337"]}
        inits = spec.setdefault("initContainers", [])
        inits.insert(0, init)
        if native:
            proxy["restartPolicy"] = "Always"
            inits.insert(1, proxy)
        else:
            spec.setdefault("containers", []).insert(1, proxy)
        meta.setdefault("annotations", {}).update({
            "sidecar.istio.io/status": json.dumps({
                "initContainers": ["istio-init"] + (["istio-proxy"] if native else []),
                "containers": [] if native else ["istio-proxy"],
                "volumes": ["workload-socket", "credential-socket", "workload-certs",
                            "istio-envoy", "istio-data", "istio-podinfo", "istio-token",
                            "istiod-ca-cert"],
                "imagePullSecrets": None, "revision": rev}),
            "kubectl.kubernetes.io/default-container": spec["containers"][0]["name"]})

    def _native_sidecar(self, c: Cluster, rev: str) -> bool:
        """istio-proxy as a native sidecar (an init container with ``restartPolicy:
        Always``): Istio 1.27 turns it on by default on Kubernetes 1.33+ (Istio 1.27 change
        notes, ``ENABLE_NATIVE_SIDECARS``)."""
        minor = int(rev.rsplit("-", 1)[1]) if rev.startswith("asm-1-") else 0
        k8s_minor = int(c.kubernetes_version.split(".")[1])
        return minor >= 27 and k8s_minor >= 33

    def new_pod(self, c: Cluster, ns: str, name: str, template: dict[str, Any],
                owner: dict[str, Any] | None, extra_labels: dict[str, str] | None = None,
                node: str | None = None) -> Key | None:
        """Create a pod from ``template`` owned by ``owner`` (the controller's
        ``ownerReferences``, ``controller: true``), admitted by the sidecar injector.

        A create the API server refuses (a webhook that fails, :meth:`_inject`) is the
        controllers' ``FailedCreate``: a Warning event on the owner, the owner synced again
        after the workqueue's backoff (5 ms doubling per failure in a row, at most 1000 s:
        client-go's ``DefaultControllerRateLimiter``), and None."""
        tmeta = template.get("metadata") or {}
        meta: dict[str, Any] = {"name": name, "namespace": ns,
                                "labels": {**(tmeta.get("labels") or {}),
                                           **(extra_labels or {})},
                                "annotations": dict(tmeta.get("annotations") or {})}
        if owner is not None:
            meta["ownerReferences"] = [_owner_ref(owner)]
        pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                               "spec": json_copy(template.get("spec") or {})}
        if node:
            pod["spec"]["nodeName"] = node
        component = {"ReplicaSet": "replicaset-controller", "Job": "job-controller",
                     "StatefulSet": "statefulset-controller",
                     "DaemonSet": "daemonset-controller"}.get(
                         (owner or {}).get("kind", ""), "controller")
        try:
            obj = self._create(c, pod)
        except ApiError as exc:
            if owner is None:
                raise
            okey = self._key_of(owner)
            n = c.create_failures.get(okey, (0, ""))[0] + 1
            c.create_failures[okey] = (n, exc.message)
            msg = f"create Pod {name} in StatefulSet {owner['metadata']['name']} failed " \
                  f"error: {exc.message}" if owner["kind"] == "StatefulSet" \
                else f"Error creating: {exc.message}"
            self._event(c, owner, "FailedCreate", msg, component, "Warning", aggregate=True)
            if not self.seeding:
                self._at(time.time() + min(0.005 * 2 ** (n - 1), 1000.0), "sync", c, okey)
            return None
        if owner is not None:
            c.create_failures.pop(self._key_of(owner), None)
            msg = f"create Pod {name} in StatefulSet {owner['metadata']['name']} successful" \
                if owner["kind"] == "StatefulSet" else f"Created pod: {obj['metadata']['name']}"
            self._event(c, owner, "SuccessfulCreate", msg, component)
        return ("Pod", ns, obj["metadata"]["name"])

    @staticmethod
    def _pod_ip(c: Cluster, node_index: int, key: Key) -> str:
        """An address of the node's pod CIDR (kubenet: a /24 per node, ``10.244.<node>.0``)
        that no pod on it holds, as the host-local IPAM plugin hands them out: the next in
        turn, skipping those in use (a node has far fewer pods than addresses: AKS allows
        at most 250 per node)."""
        for _ in range(250):
            ip = f"10.244.{node_index}.{next(c.ips) % 250 + 2}"
            held_by = c.pod_ips.get(ip)
            holder = c.objects.get(held_by) if held_by and held_by != key else None
            if holder is None or (holder.get("status") or {}).get("podIP") != ip:
                break
        c.pod_ips[ip] = key
        return ip

    def _admit(self, c: Cluster, pod: dict[str, Any]) -> None:
        """Scheduling and the mutating webhooks: node, sidecar, IPs, Pending status."""
        meta, spec = pod["metadata"], pod["spec"]
        self._inject(c, pod)
        default_pod_spec(spec)
        if not spec.get("nodeName"):
            nodes = c.nodes or ["aks-nodepool1-00000000-vmss000000"]
            spec["nodeName"] = nodes[int(hashlib.sha1(meta["name"].encode()).hexdigest(), 16)
                                     % len(nodes)]
        node_index = c.nodes.index(spec["nodeName"]) if spec["nodeName"] in c.nodes else 0
        ip = self._pod_ip(c, node_index, ("Pod", meta.get("namespace", ""), meta["name"]))
        pod["status"] = {
            "phase": "Pending", "qosClass": _qos(spec),
            "hostIP": f"10.224.0.{4 + node_index}",
            "hostIPs": [{"ip": f"10.224.0.{4 + node_index}"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now_iso(),
            "conditions": [_cond("PodScheduled", True), _cond("Initialized", False),
                           _cond("Ready", False), _cond("ContainersReady", False)],
            "initContainerStatuses": [_status(ctr, {"waiting": {"reason": "PodInitializing"}})
                                      for ctr in spec.get("initContainers") or []],
            "containerStatuses": [_status(ctr, {"waiting": {"reason": "PodInitializing"
                                                            if spec.get("initContainers")
                                                            else "ContainerCreating"}})
                                  for ctr in spec.get("containers") or []]}
        if not pod["status"]["initContainerStatuses"]:
            del pod["status"]["initContainerStatuses"]

    def _workload_of(self, c: Cluster, pod: dict[str, Any]) -> tuple[str, str]:
        """(kind, name) of the workload a pod belongs to: the top of its owner chain."""
        kind, name = "Pod", pod["metadata"]["name"]
        obj = pod
        for _ in range(3):
            refs = [r for r in obj["metadata"].get("ownerReferences") or []
                    if r.get("controller")]
            if not refs or refs[0]["uid"] not in c.uids:
                break
            obj = c.objects[c.uids[refs[0]["uid"]]]
            kind, name = obj["kind"], obj["metadata"]["name"]
        return kind, name

    def fault(self, cluster: str, ns: str, workload: str, rev: str | None) -> Fault:
        """The fault of a workload's pods on a sidecar revision ("" for none); ``"*"``
        matches any revision, including none."""
        r = rev or ""
        for k in ((cluster, ns, workload, r), (cluster, ns, workload, "*")):
            if k in self.workload_faults:
                return self.workload_faults[k]
        for k3 in ((cluster, ns, r), (cluster, ns, "*")):
            if k3 in self.faults:
                return self.faults[k3]
        return Fault()

    def _pod_fault(self, c: Cluster, pod: dict[str, Any]) -> Fault:
        ns = pod["metadata"]["namespace"]
        rev = (pod["metadata"].get("labels") or {}).get(REV_LABEL) if \
            "sidecar.istio.io/status" in (pod["metadata"].get("annotations") or {}) else None
        kind, name = self._workload_of(c, pod)
        f = self.fault(c.name, ns, name, rev)
        if f == Fault() and kind == "CronJob":  # a fault may name the Job too
            job = next((r["name"] for r in pod["metadata"].get("ownerReferences") or []), "")
            f = self.fault(c.name, ns, job, rev)
        return f

    def _run_pod(self, c: Cluster, key: Key) -> None:
        """Pending → Running: init containers done, containers started (kubelet), or
        crash-looping under a ``crashloop`` fault (``CrashLoopBackOff``, not ready)."""
        pod = c.objects.get(key)
        if pod is None or _terminating(pod) or pod["status"]["phase"] != "Pending":
            return
        pod = json_copy(pod)
        st, spec = pod["status"], pod["spec"]
        crash = self._pod_fault(c, pod).crashloop
        started = now_iso()
        job_pod = any(r.get("kind") == "Job" for r in pod["metadata"].get("ownerReferences")
                      or [])
        statuses = []
        for ctr in spec.get("initContainers") or []:
            if ctr.get("restartPolicy") == "Always":  # a native sidecar keeps running
                statuses.append(_status(ctr, {"running": {"startedAt": started}}, ready=True))
            else:
                statuses.append(_status(ctr, {"terminated": {
                    "exitCode": 0, "reason": "Completed", "startedAt": started,
                    "finishedAt": started}}))
        if statuses:
            st["initContainerStatuses"] = statuses
        st["containerStatuses"] = []
        for ctr in spec.get("containers") or []:
            if crash and ctr["name"] != "istio-proxy" and not job_pod:
                cs = _status(ctr, {"waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off 40s restarting failed container={ctr['name']} "
                               f"pod={pod['metadata']['name']}"}})
                cs.update(restartCount=4, lastState={"terminated": {
                    "exitCode": 1, "reason": "Error", "startedAt": started,
                    "finishedAt": started}})
            else:
                cs = _status(ctr, {"running": {"startedAt": started}}, ready=True)
            st["containerStatuses"].append(cs)
        ready = all(cs["ready"] for cs in st["containerStatuses"])
        st["phase"] = "Running"
        st["conditions"] = [_cond("PodReadyToStartContainers", True),
                            _cond("Initialized", True), _cond("Ready", ready),
                            _cond("ContainersReady", ready), _cond("PodScheduled", True)]
        self._put(c, key, pod)
        self._event(c, pod, "Scheduled", f"Successfully assigned {key[1]}/{key[2]} to "
                    f"{spec.get('nodeName')}", "default-scheduler")
        for cs in st["containerStatuses"]:
            if "running" in cs["state"]:
                self._event(c, pod, "Started", f"Started container {cs['name']}", "kubelet")
            else:
                self._event(c, pod, "BackOff", "Back-off restarting failed container "
                            f"{cs['name']} in pod {key[2]}", "kubelet", "Warning")
        self._owner_dirty(c, pod)
        if job_pod:
            self._at(time.time() + (0 if self.seeding else self.job_run_s), "finish", c, key)

    def _finish_pod(self, c: Cluster, key: Key) -> None:
        """A Job's pod's containers exit (0, or 1 under a ``crashloop`` fault). The pod ends
        ``Succeeded``/``Failed`` only once every container has exited: a classic istio-proxy
        sidecar keeps running, so the pod stays ``Running``, not ready, and its Job never
        finishes (Istio docs "Sidecar injection problems" / istio/istio#11659); a native
        sidecar is stopped by the kubelet after the containers exit (KEP-753)."""
        pod = c.objects.get(key)
        if pod is None or _terminating(pod) or pod["status"]["phase"] != "Running":
            return
        pod = json_copy(pod)
        st = pod["status"]
        failed = self._pod_fault(c, pod).crashloop
        done = now_iso()
        code, reason = (1, "Error") if failed else (0, "Completed")
        running_sidecar = False
        for cs in st["containerStatuses"]:
            if cs["name"] == "istio-proxy":
                running_sidecar = True
                continue
            started = (cs["state"].get("running") or {}).get("startedAt", done)
            cs.update(ready=False, started=False, state={"terminated": {
                "exitCode": code, "reason": reason, "startedAt": started,
                "finishedAt": done}})
        if not running_sidecar:
            for cs in st.get("initContainerStatuses") or []:
                if "running" in cs["state"]:
                    cs.update(ready=False, started=False, state={"terminated": {
                        "exitCode": 0, "reason": "Completed",
                        "startedAt": cs["state"]["running"]["startedAt"],
                        "finishedAt": done}})
            st["phase"] = "Failed" if failed else "Succeeded"
        st["conditions"] = [_cond("PodReadyToStartContainers", not running_sidecar),
                            _cond("Initialized", True),
                            _cond("Ready", False, "PodCompleted" if not running_sidecar
                                  else "ContainersNotReady"),
                            _cond("ContainersReady", False, "PodCompleted"
                                  if not running_sidecar else "ContainersNotReady"),
                            _cond("PodScheduled", True)]
        self._put(c, key, pod)
        self._owner_dirty(c, pod)

    def owned(self, c: Cluster, obj: dict[str, Any], kind: str | None = None
              ) -> list[dict[str, Any]]:
        keys = sorted(c.children.get(obj["metadata"]["uid"], ()))
        return [c.objects[k] for k in keys if k in c.objects and (kind is None or k[0] == kind)]

    def pods_of(self, c: Cluster, key: Key) -> list[dict[str, Any]]:
        """The pods of a workload (a Deployment's through its ReplicaSets)."""
        obj = c.objects.get(key)
        if obj is None:
            return []
        if key[0] == "Deployment":
            return [p for rs in self.owned(c, obj, "ReplicaSet")
                    for p in self.owned(c, rs, "Pod")]
        if key[0] == "CronJob":
            return [p for j in self.owned(c, obj, "Job") for p in self.owned(c, j, "Pod")]
        return self.owned(c, obj, "Pod")

    # ------------------------------------------------------------------ controllers

    def _settle(self) -> None:
        """Run the controllers of every object marked dirty until nothing changes."""
        for _ in range(10000):
            if not self._dirty:
                return
            c, key = self._dirty.pop(0)
            if key not in c.objects or self.clusters.get(c.name) is not c:
                continue
            sync = getattr(self, f"_sync_{key[0].lower().replace('.', '_')}", None)
            if sync is not None:
                sync(c, key)

    def _set_status(self, c: Cluster, key: Key, status: dict[str, Any]) -> None:
        obj = c.objects[key]
        if obj.get("status") != status:
            new = json_copy(obj)
            new["status"] = status
            self._put(c, key, new)
            self._owner_dirty(c, new)

    def _set_spec(self, c: Cluster, key: Key, field_: str, value: Any) -> None:
        obj = c.objects[key]
        if obj["spec"].get(field_) != value:
            owner = next((c.objects[c.uids[r["uid"]]] for r in
                          obj["metadata"].get("ownerReferences") or []
                          if r.get("kind") == "Deployment" and r["uid"] in c.uids), None)
            if owner is not None and field_ == "replicas":
                before = obj["spec"].get(field_, 0)
                self._event(c, owner, "ScalingReplicaSet",
                            f"Scaled {'up' if value > before else 'down'} replica set "
                            f"{key[2]} from {before} to {value}", "deployment-controller")
            new = json_copy(obj)
            new["spec"][field_] = value
            new["metadata"]["generation"] = new["metadata"].get("generation", 1) + 1
            self._put(c, key, new)
            self._dirty.append((c, key))

    def _sync_deployment(self, c: Cluster, key: Key) -> None:
        """The Deployment controller (``pkg/controller/deployment``): a ReplicaSet per pod
        template (``pod-template-hash``), the newest scaled to ``replicas``; with
        ``RollingUpdate`` the old ones keep ``replicas - maxUnavailable - ready new pods``
        (so old pods stay until the new ones are ready; old pods that are not ready go
        first, ``cleanupUnhealthyReplicas``) and the new one grows by ``maxSurge`` steps
        (:meth:`_roll`); with ``Recreate`` the new ReplicaSet scales up once the old pods
        are gone.
        Status and conditions as ``kubectl rollout status`` reads them
        (``Progressing``/``ProgressDeadlineExceeded`` after ``progressDeadlineSeconds``)."""
        d = c.objects[key]
        spec = d["spec"]
        replicas = int(spec.get("replicas", 1))
        template = json_copy(spec.get("template") or {})
        h = template_hash(template)
        rss = self.owned(c, d, "ReplicaSet")

        def stripped(rs: dict[str, Any]) -> Any:
            t = json_copy(rs["spec"]["template"])
            (t.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
            return t

        def revision(rs: dict[str, Any]) -> int:
            return int((rs["metadata"].get("annotations") or {}).get(
                "deployment.kubernetes.io/revision", 0))

        new_rs = next((rs for rs in rss if stripped(rs) == template), None)
        top = max((revision(rs) for rs in rss), default=0)
        if new_rs is None:
            t = json_copy(template)
            t.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
            selector = json_copy(spec.get("selector") or {"matchLabels": {}})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = h
            name = f"{key[2]}-{h}"
            rs_obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                      "metadata": {"name": name, "namespace": key[1],
                                   "labels": dict(t["metadata"]["labels"]),
                                   "annotations": {
                                       "deployment.kubernetes.io/revision": str(top + 1),
                                       "deployment.kubernetes.io/desired-replicas":
                                           str(replicas)},
                                   "ownerReferences": [_owner_ref(d)]},
                      "spec": {"replicas": 0, "selector": selector, "template": t}}
            if ("ReplicaSet", key[1], name) in c.objects:  # a hash collision: start anew
                self._remove(c, ("ReplicaSet", key[1], name))
            self._create(c, rs_obj)
            new_rs = c.objects[("ReplicaSet", key[1], name)]
            rss = self.owned(c, d, "ReplicaSet")
            if key not in c.progress:
                c.progress[key] = time.time()
        elif revision(new_rs) != top and len(rss) > 1:  # rolled back to an older template
            rs2 = json_copy(new_rs)
            rs2["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(top + 1)
            self._put(c, ("ReplicaSet", key[1], new_rs["metadata"]["name"]), rs2)
            new_rs = rs2
        new_key = ("ReplicaSet", key[1], new_rs["metadata"]["name"])
        old = [rs for rs in rss if rs["metadata"]["name"] != new_rs["metadata"]["name"]]
        old.sort(key=revision, reverse=True)
        new_pods = [p for p in self.owned(c, new_rs, "Pod") if _active(p)]
        new_ready = sum(1 for p in new_pods if _ready(p))
        strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
        if strategy == "Recreate":
            for rs in old:
                self._set_spec(c, ("ReplicaSet", key[1], rs["metadata"]["name"]), "replicas", 0)
            old_left = any(p for rs in old for p in self.owned(c, rs, "Pod"))
            self._set_spec(c, new_key, "replicas", 0 if old_left else replicas)
        else:
            ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
            surge = int_or_percent(ru.get("maxSurge"), replicas, True, "25%")
            unavailable = int_or_percent(ru.get("maxUnavailable"), replicas, False, "25%")
            if surge == 0 and unavailable == 0:
                unavailable = 1
            self._roll(c, key[1], replicas, surge, unavailable, new_key, new_ready, old)
        # history: old ReplicaSets beyond revisionHistoryLimit that have no pods
        limit = int(spec.get("revisionHistoryLimit", 10))
        empty_old = [rs for rs in old if not rs["spec"].get("replicas")
                     and not self.owned(c, rs, "Pod")]
        for rs in empty_old[limit:]:
            self._remove(c, ("ReplicaSet", key[1], rs["metadata"]["name"]))
        self._settle_children(c, [("ReplicaSet", key[1], rs["metadata"]["name"])
                                  for rs in self.owned(c, d, "ReplicaSet")])
        self._deployment_status(c, key)

    def _roll(self, c: Cluster, namespace: str, replicas: int, surge: int, unavailable: int,
              new_key: Key, new_ready: int, old: list[dict[str, Any]]) -> None:
        """One pass of ``rolloutRolling`` (``pkg/controller/deployment/rolling.go``).

        ``reconcileNewReplicaSet``: the new ReplicaSet grows to at most ``replicas +
        maxSurge`` pods counted over every ReplicaSet's ``spec.replicas``
        (``NewRSNewReplicas``), so with two replicas and the default 25 % a rollout makes one
        new pod at a time. ``reconcileOldReplicaSets``: old pods that are not ready go first
        (``cleanupUnhealthyReplicas``), then old ReplicaSets, oldest first, shrink while the
        ready pods stay at least ``replicas - maxUnavailable``
        (``scaleDownOldReplicaSetsForRollingUpdate``). The real controller does one of the
        two per sync and syncs again on every ReplicaSet change; here syncs repeat until
        one scales nothing down, which is where the real one settles too. ``old`` is newest
        first; "ready" stands for "available" (``minReadySeconds`` 0)."""
        def count(rs: dict[str, Any]) -> int:
            return int(rs["spec"].get("replicas", 0))

        def ready(rs: dict[str, Any]) -> int:
            # pods beyond spec.replicas are on their way out (the ReplicaSet controller
            # deletes not-ready ones first): what stays available is at most spec.replicas
            return min(count(rs), sum(1 for p in self.owned(c, rs, "Pod")
                                      if _active(p) and _ready(p)))

        # each scale-down frees room for the new ReplicaSet: the real controller syncs again
        # on the ReplicaSet's update (``updateReplicaSet`` enqueues its Deployment)
        while self._roll_once(c, namespace, replicas, surge, unavailable, new_key, new_ready,
                              old, count, ready):
            pass

    def _roll_once(self, c: Cluster, namespace: str, replicas: int, surge: int,
                   unavailable: int, new_key: Key, new_ready: int, old: list[dict[str, Any]],
                   count: Callable[[dict[str, Any]], int],
                   ready: Callable[[dict[str, Any]], int]) -> bool:
        """One sync of :meth:`_roll`; True when it scaled an old ReplicaSet down."""
        new_count = count(c.objects[new_key])
        oldest_first = [c.objects[("ReplicaSet", namespace, rs["metadata"]["name"])]
                        for rs in reversed(old)]
        if new_count > replicas:
            new_count = replicas
        elif new_count < replicas:
            total = new_count + sum(count(rs) for rs in oldest_first)
            room = replicas + surge - total
            if room > 0:
                new_count += min(room, replicas - new_count)
        self._set_spec(c, new_key, "replicas", new_count)
        if not sum(count(rs) for rs in oldest_first):
            return False
        min_available = replicas - unavailable
        all_count = new_count + sum(count(rs) for rs in oldest_first)
        max_down = all_count - min_available - (new_count - new_ready)
        if max_down <= 0:
            return False
        cleaned = 0
        for rs in oldest_first:  # cleanupUnhealthyReplicas
            n = min(max_down - cleaned, count(rs) - ready(rs))
            if n > 0:
                self._set_spec(c, ("ReplicaSet", namespace, rs["metadata"]["name"]), "replicas",
                               count(rs) - n)
                cleaned += n
        old_now = [c.objects[("ReplicaSet", namespace, rs["metadata"]["name"])]
                   for rs in oldest_first]
        down = new_ready + sum(ready(rs) for rs in old_now) - min_available
        scaled = cleaned > 0
        for rs in old_now:  # scaleDownOldReplicaSetsForRollingUpdate
            n = min(count(rs), down)
            if n > 0:
                self._set_spec(c, ("ReplicaSet", namespace, rs["metadata"]["name"]), "replicas",
                               count(rs) - n)
                down -= n
                scaled = True
        return scaled

    def _settle_children(self, c: Cluster, keys: list[Key]) -> None:
        for k in keys:
            if k in c.objects:
                self._sync_replicaset(c, k, notify=False)

    def _deployment_status(self, c: Cluster, key: Key) -> None:
        d = c.objects[key]
        spec = d["spec"]
        replicas = int(spec.get("replicas", 1))
        rss = self.owned(c, d, "ReplicaSet")
        template = spec.get("template") or {}
        pods_all = [p for rs in rss for p in self.owned(c, rs, "Pod") if _active(p)]
        new_pods = [p for rs in rss for p in self.owned(c, rs, "Pod") if _active(p)
                    and rs["metadata"]["name"] == f"{key[2]}-{template_hash(template)}"]
        ready = sum(1 for p in pods_all if _ready(p))
        updated = len(new_pods)
        ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        unavailable = int_or_percent(ru.get("maxUnavailable"), replicas, False, "25%")
        prev = {cd["type"]: cd for cd in (d.get("status") or {}).get("conditions") or []}
        t = time.time()
        complete = updated == replicas and len(pods_all) == replicas and ready == replicas
        new_ready = sum(1 for p in new_pods if _ready(p))
        last = c.progress.get(key)
        if last is None:
            last = c.progress[key] = t
        deadline = float(spec.get("progressDeadlineSeconds", 600))
        if complete:
            progressing = ("True", "NewReplicaSetAvailable",
                           f'ReplicaSet "{key[2]}-{template_hash(template)}" has successfully '
                           "progressed.")
        elif t - last > deadline:
            progressing = ("False", "ProgressDeadlineExceeded",
                           f'ReplicaSet "{key[2]}-{template_hash(template)}" has timed out '
                           "progressing.")
        else:
            progressing = ("True", "ReplicaSetUpdated",
                           f'ReplicaSet "{key[2]}-{template_hash(template)}" is progressing.')
            if c.deadline_at.get(key) != last + deadline:
                c.deadline_at[key] = last + deadline
                self._at(last + deadline + 0.01, "sync", c, key)
        available_ok = ready >= replicas - unavailable
        conditions = [
            _dcond(prev.get("Available"), "Available", "True" if available_ok else "False",
                   "MinimumReplicasAvailable" if available_ok else "MinimumReplicasUnavailable",
                   "Deployment has minimum availability." if available_ok else
                   "Deployment does not have minimum availability.", t),
            _dcond(prev.get("Progressing"), "Progressing", *progressing, t)]
        # the ReplicaSets' ``ReplicaFailure`` (the new one's first), as ``getReplicaFailures``
        failures = [cd for rs in sorted(rss, key=lambda r: r["metadata"]["name"] != (
            f"{key[2]}-{template_hash(template)}"))
            for cd in (rs.get("status") or {}).get("conditions") or []
            if cd.get("type") == "ReplicaFailure" and cd.get("status") == "True"]
        if failures:
            conditions.append(_dcond(prev.get("ReplicaFailure"), "ReplicaFailure", "True",
                                     failures[0]["reason"], failures[0]["message"], t))
        status: dict[str, Any] = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": len(pods_all), "updatedReplicas": updated, "readyReplicas": ready,
            "availableReplicas": ready, "conditions": conditions}
        if replicas - ready > 0:
            status["unavailableReplicas"] = replicas - ready
        for k in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
            if not status[k]:
                del status[k]
        if new_ready > c.ready_seen.get(key, 0):
            c.progress[key] = t  # progress made: the deadline starts again
        c.ready_seen[key] = new_ready
        self._set_status(c, key, status)

    def _sync_replicaset(self, c: Cluster, key: Key, notify: bool = True) -> None:
        """The ReplicaSet controller: ``replicas`` active pods named ``<rs>-<suffix>``;
        surplus pods are deleted not-ready and newest first (``getPodsToDelete``)."""
        rs = c.objects[key]
        want = int(rs["spec"].get("replicas", 1))
        pods = [p for p in self.owned(c, rs, "Pod") if _active(p)]
        if len(pods) < want:
            for _ in range(want - len(pods)):
                if self.new_pod(c, key[1], f"{key[2]}-{_suffix()}", rs["spec"]["template"],
                                rs) is None:
                    break  # slowStartBatch stops at the first error
        elif len(pods) > want:
            pods.sort(key=lambda p: (_ready(p), p["metadata"]["creationTimestamp"]))
            for p in pods[:len(pods) - want]:
                self._delete_pod(c, ("Pod", key[1], p["metadata"]["name"]))
        pods = [p for p in self.owned(c, rs, "Pod") if _active(p)]
        ready = sum(1 for p in pods if _ready(p))
        status: dict[str, Any] = {"replicas": len(pods), "fullyLabeledReplicas": len(pods),
                                  "readyReplicas": ready, "availableReplicas": ready,
                                  "observedGeneration": rs["metadata"].get("generation", 1)}
        for k in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
            if not status[k]:
                del status[k]
        failure = c.create_failures.get(key)
        if failure is not None and len(pods) < want:
            # ``ReplicaFailure`` while pods cannot be created (replica_set_utils.go)
            prev = next((cd for cd in (rs.get("status") or {}).get("conditions") or []
                         if cd.get("type") == "ReplicaFailure"), None)
            status["conditions"] = [{
                "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": failure[1], "lastTransitionTime": (prev or {}).get(
                    "lastTransitionTime") or now_iso()}]
        obj = c.objects[key]
        if obj.get("status") != status:
            new = json_copy(obj)
            new["status"] = status
            self._put(c, key, new)
            if notify:
                self._owner_dirty(c, new)

    def _claim(self, c: Cluster, ns: str, name: str, template: dict[str, Any],
               sts: dict[str, Any]) -> None:
        """A StatefulSet pod's PersistentVolumeClaim from ``volumeClaimTemplates``, made
        once and kept (``persistentVolumeClaimRetentionPolicy`` Retain, the default), bound
        at once as AKS's CSI driver binds it."""
        if ("PersistentVolumeClaim", ns, name) in c.objects:
            return
        spec = json_copy(template.get("spec") or {})
        spec.setdefault("volumeMode", "Filesystem")
        spec["volumeName"] = f"pvc-{uuid.uuid4()}"
        labels = dict((sts["spec"].get("selector") or {}).get("matchLabels") or {})
        self._create(c, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "metadata": {"name": name, "namespace": ns, "labels": labels},
                         "spec": spec,
                         "status": {"phase": "Bound",
                                    "accessModes": spec.get("accessModes", []),
                                    "capacity": (spec.get("resources") or {}).get(
                                        "requests", {})}})

    def _revision_of(self, c: Cluster, owner: dict[str, Any]) -> str:
        """The ``ControllerRevision`` of an owner's current template, made if new (the
        StatefulSet and DaemonSet controllers' history, ``controller-revision-hash``)."""
        template = owner["spec"].get("template") or {}
        name = f"{owner['metadata']['name']}-{template_hash(template)}"
        ns = owner["metadata"]["namespace"]
        if ("ControllerRevision", ns, name) not in c.objects:
            revs = [o for o in self.owned(c, owner, "ControllerRevision")]
            top = max((int(o.get("revision", 0)) for o in revs), default=0)
            self._create(c, {"apiVersion": "apps/v1", "kind": "ControllerRevision",
                             "metadata": {"name": name, "namespace": ns,
                                          "labels": dict((template.get("metadata") or {})
                                                         .get("labels") or {}),
                                          "ownerReferences": [_owner_ref(owner)]},
                             "data": {"spec": {"template": json_copy(template)}},
                             "revision": top + 1})
        return name

    def _template_at(self, c: Cluster, ns: str, revision: str, fallback: dict[str, Any]
                     ) -> dict[str, Any]:
        cr = c.objects.get(("ControllerRevision", ns, revision))
        if cr is None:
            return fallback
        t: dict[str, Any] = cr["data"]["spec"]["template"]
        return t

    def _sync_statefulset(self, c: Cluster, key: Key) -> None:
        """The StatefulSet controller (Kubernetes docs "StatefulSets"): pods
        ``<name>-<ordinal>``; ``OrderedReady`` creates them one at a time, each Running and
        Ready before the next (``Parallel``: all at once). ``RollingUpdate`` replaces pods
        from the highest ordinal down to ``partition``, one at a time, each updated pod
        Ready before the next; pods below ``partition`` stay on (or are recreated at) the
        current revision. ``OnDelete``: a changed template replaces nothing; a deleted pod
        comes back from the update revision."""
        sts = c.objects[key]
        ns, name = key[1], key[2]
        spec = sts["spec"]
        replicas = int(spec.get("replicas", 1))
        update_rev = self._revision_of(c, sts)
        status = sts.get("status") or {}
        current_rev = status.get("currentRevision") or update_rev
        strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
        partition = int(((spec.get("updateStrategy") or {}).get("rollingUpdate") or {})
                        .get("partition", 0)) if strategy == "RollingUpdate" else 0
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        pods = {p["metadata"]["name"]: p for p in self.owned(c, sts, "Pod")}

        def rev_of(p: dict[str, Any]) -> str:
            return str((p["metadata"].get("labels") or {}).get("controller-revision-hash", ""))

        for i in range(replicas):
            pname = f"{name}-{i}"
            p = pods.get(pname)
            if p is None:
                if ("Pod", ns, pname) in c.objects:
                    break  # a pod of that name is still terminating
                for vct in spec.get("volumeClaimTemplates") or []:
                    self._claim(c, ns, f"{(vct.get('metadata') or {}).get('name')}-{pname}",
                                vct, sts)
                rev = current_rev if strategy == "RollingUpdate" and i < partition \
                    else update_rev
                t = self._template_at(c, ns, rev, spec.get("template") or {})
                made = self.new_pod(c, ns, pname, t, sts, {
                    "controller-revision-hash": rev, "statefulset.kubernetes.io/pod-name": pname,
                    "apps.kubernetes.io/pod-index": str(i)})
                if ordered or made is None:
                    break
            elif ordered and not (_ready(p) and not _terminating(p)):
                break
        for pname in list(pods):  # scale down: the highest ordinals beyond replicas
            if int(pname.rsplit("-", 1)[1]) >= replicas:
                self._delete_pod(c, ("Pod", ns, pname))
        pods = {p["metadata"]["name"]: p for p in self.owned(c, sts, "Pod")}
        if strategy == "RollingUpdate" and len(pods) == replicas and all(
                _ready(p) and not _terminating(p) for p in pods.values()):
            for i in reversed(range(partition, replicas)):
                p = pods.get(f"{name}-{i}")
                if p is not None and rev_of(p) != update_rev:
                    self._delete_pod(c, ("Pod", ns, p["metadata"]["name"]))
                    break
        pods = {p["metadata"]["name"]: p for p in self.owned(c, sts, "Pod")}
        live = [p for p in pods.values() if not _terminating(p)]
        ready = sum(1 for p in live if _ready(p))
        updated = sum(1 for p in live if rev_of(p) == update_rev)
        if updated == replicas and len(live) == replicas:
            current_rev = update_rev
        new_status: dict[str, Any] = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(live), "readyReplicas": ready, "availableReplicas": ready,
            "currentReplicas": sum(1 for p in live if rev_of(p) == current_rev),
            "updatedReplicas": updated, "currentRevision": current_rev,
            "updateRevision": update_rev, "collisionCount": 0}
        for k in ("readyReplicas", "currentReplicas", "updatedReplicas"):
            if not new_status[k]:
                del new_status[k]
        self._set_status(c, key, new_status)

    def _sync_daemonset(self, c: Cluster, key: Key) -> None:
        """The DaemonSet controller: one pod per node; ``RollingUpdate`` deletes old pods
        up to ``maxUnavailable`` (default 1) at a time and makes each node's new pod once its
        old one is gone; ``OnDelete`` replaces only deleted pods."""
        ds = c.objects[key]
        ns, spec = key[1], ds["spec"]
        update_rev = self._revision_of(c, ds)
        nodes = c.nodes
        pods = self.owned(c, ds, "Pod")
        by_node: dict[str, list[dict[str, Any]]] = {}
        for p in pods:
            by_node.setdefault(p["spec"].get("nodeName", ""), []).append(p)
        for node in nodes:
            if not by_node.get(node):
                if self.new_pod(c, ns, f"{key[2]}-{_suffix()}", spec.get("template") or {},
                                ds, {"controller-revision-hash": update_rev.rsplit("-", 1)[1],
                                     "pod-template-generation": str(
                                         ds["metadata"].get("generation", 1))},
                                node=node) is None:
                    break
        pods = self.owned(c, ds, "Pod")

        def hash_of(p: dict[str, Any]) -> str:
            return str((p["metadata"].get("labels") or {}).get("controller-revision-hash"))

        new_hash = update_rev.rsplit("-", 1)[1]
        strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
        if strategy == "RollingUpdate":
            ru = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
            max_unavailable = max(1, int_or_percent(ru.get("maxUnavailable"), len(nodes),
                                                    True, "1"))
            unavailable = sum(1 for p in pods if not _ready(p) or _terminating(p)) + sum(
                1 for n in nodes if not any(p["spec"].get("nodeName") == n for p in pods))
            for p in pods:
                if unavailable >= max_unavailable:
                    break
                if hash_of(p) != new_hash and not _terminating(p):
                    self._delete_pod(c, ("Pod", ns, p["metadata"]["name"]))
                    unavailable += 1
        live = [p for p in self.owned(c, ds, "Pod") if not _terminating(p)]
        ready = sum(1 for p in live if _ready(p))
        status: dict[str, Any] = {
            "currentNumberScheduled": len({p["spec"].get("nodeName") for p in live}),
            "desiredNumberScheduled": len(nodes), "numberMisscheduled": 0,
            "numberReady": ready, "numberAvailable": ready,
            "updatedNumberScheduled": sum(1 for p in live if hash_of(p) == new_hash),
            "observedGeneration": ds["metadata"].get("generation", 1)}
        if len(nodes) - ready > 0:
            status["numberUnavailable"] = len(nodes) - ready
        if not status["numberAvailable"]:
            del status["numberAvailable"]
        self._set_status(c, key, status)

    def _sync_job(self, c: Cluster, key: Key) -> None:
        """The Job controller (Kubernetes docs "Jobs"): up to ``parallelism`` active pods
        until ``completions`` succeeded (``SuccessCriteriaMet`` then ``Complete``), or
        ``Failed``/``BackoffLimitExceeded`` after more than ``backoffLimit`` failed pods;
        ``ttlSecondsAfterFinished`` (on the sandbox clock) deletes a finished Job.
        ``activeDeadlineSeconds`` and indexed completion are not modelled."""
        job = c.objects[key]
        spec = job["spec"]
        status = json_copy(job.get("status") or {})
        conds = status.get("conditions") or []
        if any(cd["type"] in ("Complete", "Failed") and cd["status"] == "True" for cd in conds):
            return
        pods = self.owned(c, job, "Pod")
        active = [p for p in pods if _active(p)]
        succeeded = sum(1 for p in pods if p["status"].get("phase") == "Succeeded")
        failed = sum(1 for p in pods if p["status"].get("phase") == "Failed")
        completions = int(spec.get("completions", 1))
        t = now_iso()
        status.setdefault("startTime", t)
        finished = None
        if failed > int(spec.get("backoffLimit", 6)):
            for p in active:
                self._delete_pod(c, ("Pod", key[1], p["metadata"]["name"]))
            active = []
            finished = "Failed"
            status["conditions"] = [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit",
                 "lastProbeTime": t, "lastTransitionTime": t},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit",
                 "lastProbeTime": t, "lastTransitionTime": t}]
        elif succeeded >= completions:
            finished = "Complete"
            status["completionTime"] = t
            status["conditions"] = [
                {"type": "SuccessCriteriaMet", "status": "True",
                 "reason": "CompletionsReached", "message": "Reached expected number of "
                 "succeeded pods", "lastProbeTime": t, "lastTransitionTime": t},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods",
                 "lastProbeTime": t, "lastTransitionTime": t}]
        elif not spec.get("suspend"):
            want = min(int(spec.get("parallelism", 1)), completions - succeeded)
            for _ in range(want - len(active)):
                if self.new_pod(c, key[1], f"{key[2]}-{_suffix()}",
                                spec.get("template") or {}, job) is None:
                    break
            active = [p for p in self.owned(c, job, "Pod") if _active(p)]
        status.update(active=len(active), ready=sum(1 for p in active if _ready(p)),
                      terminating=0, uncountedTerminatedPods={})
        for k, v in (("succeeded", succeeded), ("failed", failed)):
            if v:
                status[k] = v
        if not status["active"]:
            del status["active"]
        self._set_status(c, key, status)
        if finished and spec.get("ttlSecondsAfterFinished") is not None:
            ttl = float(spec["ttlSecondsAfterFinished"]) / self.clock_speed
            self._at(time.time() + ttl, "delete", c, key)

    def _sync_cronjob(self, c: Cluster, key: Key) -> None:
        """The CronJob controller (Kubernetes docs "CronJob"), on the sandbox clock: at
        each scheduled minute (only the most recent one missed) a Job
        ``<name>-<minutes since the epoch>`` from ``jobTemplate``; ``concurrencyPolicy``
        Allow / Forbid (skip while one is active) / Replace (delete the active ones);
        ``suspend``; ``status.active``, ``lastScheduleTime``, ``lastSuccessfulTime``; and
        the history limits: only the newest ``successfulJobsHistoryLimit`` (3) complete
        and ``failedJobsHistoryLimit`` (1) failed Jobs are kept."""
        cj = c.objects[key]
        spec = cj["spec"]
        now_v = self.sandbox_time()
        checked = c.cron_checked.get(key, now_v // 60 * 60)
        due = None
        try:
            schedule = parse_cron(str(spec.get("schedule", "")))
        except CronError:
            schedule = None
        minute = checked + 60
        while schedule is not None and minute <= now_v:
            if schedule.matches(minute):
                due = minute
            minute += 60
        c.cron_checked[key] = max(checked, now_v // 60 * 60)
        jobs = self.owned(c, cj, "Job")

        def finished(j: dict[str, Any]) -> str | None:
            for cd in (j.get("status") or {}).get("conditions") or []:
                if cd["type"] in ("Complete", "Failed") and cd["status"] == "True":
                    return str(cd["type"])
            return None

        status = json_copy(cj.get("status") or {})
        if due is not None and not spec.get("suspend"):
            active = [j for j in jobs if finished(j) is None]
            policy = spec.get("concurrencyPolicy", "Allow")
            if policy == "Replace":
                for j in active:
                    self._remove(c, ("Job", key[1], j["metadata"]["name"]))
            if not (policy == "Forbid" and active):
                tmpl = spec.get("jobTemplate") or {}
                name = f"{key[2]}-{int(due // 60)}"
                if ("Job", key[1], name) not in c.objects:
                    tmeta = tmpl.get("metadata") or {}
                    self._create(c, {
                        "apiVersion": "batch/v1", "kind": "Job",
                        "metadata": {"name": name, "namespace": key[1],
                                     "labels": dict(tmeta.get("labels") or {}),
                                     "annotations": {
                                         **(tmeta.get("annotations") or {}),
                                         "batch.kubernetes.io/cronjob-scheduled-timestamp":
                                             now_iso(due)},
                                     "ownerReferences": [_owner_ref(cj)]},
                        "spec": json_copy(tmpl.get("spec") or {})})
                    status["lastScheduleTime"] = now_iso(due)
            jobs = self.owned(c, cj, "Job")
        # history limits
        for kind, limit in (("Complete", spec.get("successfulJobsHistoryLimit", 3)),
                            ("Failed", spec.get("failedJobsHistoryLimit", 1))):
            done = [j for j in jobs if finished(j) == kind]
            done.sort(key=lambda j: j["metadata"]["name"])
            for j in done[:max(0, len(done) - int(limit))]:
                self._remove(c, ("Job", key[1], j["metadata"]["name"]))
        jobs = self.owned(c, cj, "Job")
        active = [j for j in jobs if finished(j) is None]
        status["active"] = [{"kind": "Job", "namespace": key[1], "name": j["metadata"]["name"],
                             "uid": j["metadata"]["uid"], "apiVersion": "batch/v1",
                             "resourceVersion": j["metadata"]["resourceVersion"]}
                            for j in active]
        if not status["active"]:
            del status["active"]
        completed = [j for j in jobs if finished(j) == "Complete"]
        if completed:
            status["lastSuccessfulTime"] = max(
                j["status"].get("completionTime", "") for j in completed)
        self._set_status(c, key, status)

    # ------------------------------------------------------------------ the add-on

    def _sync_mesh(self, c: Cluster) -> None:
        """The add-on's objects follow the ARM profile (AKS docs ``istio-about.md``,
        ``istio-uninstall-addon.md``): ``aks-istio-system`` with ``istiod-<revision>`` for
        exactly the profile's revisions, ``aks-istio-ingressgateway-<mode>-<revision>`` in
        ``aks-istio-ingress`` for each enabled ingress gateway, and Istio's CRDs; with the
        mesh off none of them (the CRDs and their custom resources are removed)."""
        seeding, self.seeding = self.seeding, True  # ARM succeeds once they are ready
        try:
            self._sync_addon(c)
            self._settle()
        finally:
            self.seeding = seeding

    def _sync_addon(self, c: Cluster) -> None:
        revisions = [r for r in c.revisions if r in self.catalog]
        if revisions:
            self.ensure_namespace(c, ISTIO_NS, {})
            for g, versions, kind, plural, short in ISTIO_CRDS:
                if ("CustomResourceDefinition", "", f"{plural}.{g}") not in c.objects:
                    self._create(c, istio_crd(g, versions, kind, plural, short))
        for (kind, ns, name) in list(c.objects):
            if kind in ("Deployment", "Service") and ns == ISTIO_NS and \
                    name.startswith("istiod-") and name[len("istiod-"):] not in revisions:
                self._remove(c, (kind, ns, name))
        for obj in self._of_kind(c, WEBHOOK_KEY):
            labels = obj["metadata"].get("labels") or {}
            # the add-on's own webhooks go with their revision; tags are the user's
            if labels.get("release") == "azure-service-mesh-istio-discovery" and \
                    istio.TAG_LABEL not in labels and labels.get(REV_LABEL) not in revisions:
                self._remove(c, self._key_of(obj))
        for rev in sorted(revisions):
            if ("Deployment", ISTIO_NS, f"istiod-{rev}") not in c.objects:
                labels = {"app": "istiod", REV_LABEL: rev}
                self._workload(c, ISTIO_NS, f"istiod-{rev}", labels, 2,
                               f"mcr.microsoft.com/oss/istio/pilot:"
                               f"{self.catalog[rev]['version']}-distroless")
            if ("Service", ISTIO_NS, f"istiod-{rev}") not in c.objects:
                self._create(c, istiod_service(rev))
            hook = istio.revision_webhook_name(rev, ISTIO_NS)
            if (WEBHOOK_KEY, "", hook) not in c.objects:
                self._create(c, istio.revision_webhook(rev, ISTIO_NS))
        self._sync_gateways(c)
        if any(istio.revision_minor(r) >= istio.GATEWAY_API_MIN_MINOR for r in revisions) \
                and c.registry.by_key(GATEWAY_KEY) is not None:
            # istiod's GatewayClass; AKS's class defaults (Managed Gateway API + add-on)
            if (GATEWAY_CLASS_KEY, "", "istio") not in c.objects:
                self._create(c, istio.gateway_class())
                self._set_status(c, (GATEWAY_CLASS_KEY, "", "istio"), {"conditions": [
                    istio.condition("Accepted", True, "Accepted", "Handled by Istio "
                                    "controller", 1, None, now_iso())]})
            if ("ConfigMap", ISTIO_NS, istio.CLASS_DEFAULTS) not in c.objects:
                self._create(c, istio.class_defaults(ISTIO_NS))
        self._gateways_dirty(c)
        if not revisions:
            for ns in (INGRESS_NS, ISTIO_NS):
                if ("Namespace", "", ns) in c.objects:
                    for k in [k for k in c.objects if k[1] == ns]:
                        self._remove(c, k)
                    self._remove(c, ("Namespace", "", ns))
            for (kind, _, name), obj in list(c.objects.items()):
                crd_labels = obj["metadata"].get("labels") or {}
                if kind == "CustomResourceDefinition" and crd_labels.get(
                        "kubernetes.azure.com/managedby") == "aks" and crd_labels.get(
                        "app.kubernetes.io/part-of") == "istio":
                    group = obj["spec"]["group"]
                    for k in [k for k in c.objects if k[0].endswith("." + group)
                              and k[0].split(".", 1)[0] == obj["spec"]["names"]["kind"]]:
                        self._remove(c, k)
                    self._remove(c, (kind, "", name))

    def _sync_gateways(self, c: Cluster) -> None:
        mesh = c.arm["properties"].get("serviceMeshProfile") or {}
        gateways = ((mesh.get("istio") or {}).get("components") or {}).get(
            "ingressGateways") or []
        modes = {str(g.get("mode", "")).lower() for g in gateways if g.get("enabled")}
        wanted = {f"aks-istio-ingressgateway-{m}-{r}" for m in modes for r in c.revisions}
        if wanted:
            self.ensure_namespace(c, INGRESS_NS, {})
        for (kind, n, name) in list(c.objects):
            if kind == "Deployment" and n == INGRESS_NS and name not in wanted:
                self._remove(c, (kind, n, name))
        for name in sorted(wanted):
            if ("Deployment", INGRESS_NS, name) not in c.objects:
                rev = name.rsplit("-", 3)[-3:]
                version = self.catalog.get("-".join(rev), {}).get("version", "1.0.0")
                self._workload(c, INGRESS_NS, name, {"app": name, "istio": "ingressgateway"},
                               2, PROXY_IMAGE.format(version=version))

    # ------------------------------------------------------------------ istiod

    def set_revision_tag(self, cluster: str, tag: str, revision: str,
                         overwrite: bool = False) -> dict[str, Any]:
        """``istioctl tag set <tag> --revision <revision> --istioNamespace aks-istio-system
        [--overwrite]`` (istio/istio ``istioctl/pkg/tag/generate.go``): create or replace
        the tag's MutatingWebhookConfiguration (:func:`sandbox.istio.tag_webhook`) from the
        revision's own injector webhook. Returns it as stored; ValueError with istioctl's
        message when the tag names a revision, the revision has no webhook, or the tag
        exists and ``overwrite`` is false."""
        with self.lock:
            self.reconcile()
            c = self.clusters[cluster]
            hooks = self._of_kind(c, WEBHOOK_KEY)

            def canonical(rev: str) -> list[dict[str, Any]]:
                return [h for h in hooks if (h["metadata"].get("labels") or {}).get(
                    REV_LABEL) == rev and istio.TAG_LABEL not in (h["metadata"].get("labels")
                                                                  or {})]
            if canonical(tag) and not overwrite and tag != "default":
                raise ValueError(f'cannot create revision tag "{tag}": found existing control '
                                 "plane revision with same name")
            found = canonical(revision)
            if not found:
                raise ValueError("cannot modify tag: cannot find MutatingWebhookConfiguration "
                                 f'with revision "{revision}"')
            if any((h["metadata"].get("labels") or {}).get(istio.TAG_LABEL) == tag
                   for h in hooks) and not overwrite:
                raise ValueError(f'revision tag "{tag}" already exists, and --overwrite is '
                                 "false")
            body = istio.tag_webhook(tag, found[0], ISTIO_NS)
            name = body["metadata"]["name"]
            if (WEBHOOK_KEY, "", name) in c.objects:
                out = self.update(cluster, WEBHOOK_KEY, "", name, body)
                assert out is not None
                return out
            return self.create(cluster, body)

    def _gateways_dirty(self, c: Cluster, ns: str | None = None) -> None:
        for k in sorted(c.index.get(GATEWAY_KEY, ())):
            if ns is None or k[1] == ns:
                self._dirty.append((c, k))

    def _watch_mesh(self, c: Cluster, key: Key, before: dict[str, Any] | None,
                    after: dict[str, Any] | None) -> None:
        """What the controllers that are not the store's own watch, on a write: istiod's
        gateway controller (a Gateway's generation, labels or annotations; the labels of
        its namespace; revision tag webhooks; routes and classes; the class defaults
        ConfigMap; a change to an object a Gateway owns, which it applies again) and the
        HorizontalPodAutoscaler's 15-second resync after its target is scaled."""
        kind, ns, _ = key
        meta_b = (before or {}).get("metadata") or {}
        meta_a = (after or {}).get("metadata") or {}
        labels_b, labels_a = meta_b.get("labels") or {}, meta_a.get("labels") or {}
        if kind == GATEWAY_KEY:
            if after is not None and (before is None or any(
                    meta_b.get(f) != meta_a.get(f)
                    for f in ("generation", "labels", "annotations"))):
                self._dirty.append((c, key))
        elif kind == "Namespace":
            if before is not None and after is not None and labels_b != labels_a:
                self._gateways_dirty(c, key[2])
        elif kind == WEBHOOK_KEY:
            if istio.TAG_LABEL in labels_b or istio.TAG_LABEL in labels_a:
                self._gateways_dirty(c)
        elif kind in (HTTPROUTE_KEY, GATEWAY_CLASS_KEY):
            self._gateways_dirty(c)
        elif kind == "ConfigMap" and ns == ISTIO_NS and (
                istio.CLASS_DEFAULTS_LABEL in labels_b or istio.CLASS_DEFAULTS_LABEL in labels_a):
            self._gateways_dirty(c)
        if before is not None and after is not None:
            for ref in meta_a.get("ownerReferences") or []:
                if ref.get("kind") == "Gateway" and ref.get("uid") in c.uids:
                    self._dirty.append((c, c.uids[ref["uid"]]))
            if kind in ("Deployment", "StatefulSet") and (before.get("spec") or {}).get(
                    "replicas") != (after.get("spec") or {}).get("replicas"):
                for hpa in self._of_kind(c, "HorizontalPodAutoscaler", ns):
                    ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
                    if ref.get("kind") == kind and ref.get("name") == key[2]:
                        self._at(time.time() + 15, "sync", c, self._key_of(hpa))

    def _tags(self, c: Cluster, revision: str) -> set[str]:
        """What names an istiod answers to: its revision and the tags whose webhook
        configuration is labelled with it (``revisions.TagWatcher.GetMyTags``)."""
        out = {revision}
        for h in self._of_kind(c, WEBHOOK_KEY):
            labels = h["metadata"].get("labels") or {}
            if istio.TAG_LABEL in labels and labels.get(REV_LABEL) == revision:
                out.add(labels[istio.TAG_LABEL])
        return out

    def _controlling_revision(self, c: Cluster, gw: dict[str, Any]) -> str | None:
        """The revision of the running istiod that controls a Gateway (``TagWatcher.IsMine``):
        the one whose revision or tags contain the Gateway's ``istio.io/rev`` label, else
        its namespace's; with neither, the default revision, which on AKS is the higher one
        during a canary upgrade (AKS doc ``istio-gateway-api.md``). None when no running
        istiod answers to it (a tag or revision that is gone)."""
        meta = gw["metadata"]
        labels = meta.get("labels") or {}
        if REV_LABEL in labels:
            selected = labels[REV_LABEL]
        else:
            nso = c.objects.get(("Namespace", "", meta["namespace"]))
            selected = ((nso or {}).get("metadata", {}).get("labels") or {}).get(REV_LABEL, "")
        running = sorted((r for r in c.revisions if r in self.catalog and (
            (c.objects.get(("Deployment", ISTIO_NS, f"istiod-{r}")) or {}).get("status")
            or {}).get("readyReplicas")), key=istio.revision_minor, reverse=True)
        for rev in running:
            if selected in self._tags(c, rev):
                return rev
        return running[0] if running and selected == "" else None

    def _sync_gateway_gateway_networking_k8s_io(self, c: Cluster, key: Key) -> None:
        """istiod's gateway deployment controller (``deploymentcontroller.go``) for a
        ``gateway.networking.k8s.io`` Gateway of a class it controls (``istio``): the
        controlling istiod (:meth:`_controlling_revision`; the add-on runs the controller
        from asm-1-26, AKS doc ``istio-gateway-api.md``) takes it over
        (``gateway.istio.io/controller-version: "5"``), applies what it renders
        (:func:`sandbox.istio.render_gateway`, with the class defaults ConfigMap) by
        server-side apply, and writes its status. A Gateway with ``spec.addresses`` of type
        Hostname is not deployed (``IsManaged``). Another istiod taking over re-renders
        the Deployment with its revision and proxy, which rolls the gateway pods."""
        gw = c.objects[key]
        spec = gw.get("spec") or {}
        cls_name = str(spec.get("gatewayClassName", ""))
        cls = c.objects.get((GATEWAY_CLASS_KEY, "", cls_name))
        controller = ((cls or {}).get("spec") or {}).get("controllerName") if cls else (
            istio.GATEWAY_CONTROLLER if cls_name == "istio" else None)
        if controller != istio.GATEWAY_CONTROLLER:
            return
        rev = self._controlling_revision(c, gw)
        if rev is None or istio.revision_minor(rev) < istio.GATEWAY_API_MIN_MINOR:
            return
        if any(a.get("type") == "Hostname" for a in spec.get("addresses") or []):
            return
        annotations = gw["metadata"].get("annotations") or {}
        current = annotations.get(istio.CONTROLLER_VERSION)
        if current is not None and (not str(current).isdigit() or int(current) > 5):
            return  # another (newer) controller owns it
        if current != "5":
            new = json_copy(gw)
            new["metadata"].setdefault("annotations", {})[istio.CONTROLLER_VERSION] = "5"
            self._update(c, key, new)
            gw = c.objects[key]
        overlays: dict[str, dict[str, Any]] = {}
        for cm in self._of_kind(c, "ConfigMap", ISTIO_NS):
            if (cm["metadata"].get("labels") or {}).get(istio.CLASS_DEFAULTS_LABEL) == cls_name:
                for k, text in (cm.get("data") or {}).items():
                    try:
                        parsed = yaml.safe_load(text)
                    except yaml.YAMLError:
                        return  # istiod logs the rendering error and leaves things as they are
                    if isinstance(parsed, dict):
                        overlays[k] = parsed
        version = self.catalog[rev]["version"]
        rendered = istio.render_gateway(gw, rev, PROXY_IMAGE.format(version=version), ISTIO_NS,
                                        overlays)
        for obj in rendered:
            self._apply(c, obj)
        deploy = next(o for o in rendered if o["kind"] == "Deployment")
        self._gateway_status(c, key, deploy["metadata"]["name"])

    def _apply(self, c: Cluster, obj: dict[str, Any]) -> None:
        """Server-side apply by one field manager (:func:`ssa_merge`): create, or change what
        it owns and leave what others set (replicas an autoscaler set, a ``rollout restart``
        annotation, the API server's defaults)."""
        group, _ = split_api_version(obj["apiVersion"])
        key = (kind_key(group, obj["kind"]), obj["metadata"].get("namespace", ""),
               obj["metadata"]["name"])
        live = c.objects.get(key)
        if live is None:
            self._create(c, obj)
            c.applied[key] = json_copy(obj)
            return
        merged = ssa_merge(live, c.applied.get(key), obj)
        c.applied[key] = json_copy(obj)
        if merged != live:
            self._update(c, key, merged)

    def _gateway_status(self, c: Cluster, key: Key, service: str) -> None:
        """The Gateway's status as istiod writes it (``conversion.go``, ``conditions.go``):
        ``Accepted``; ``Programmed`` once its Service has an address (a LoadBalancer's
        ingress IP; else its cluster DNS name), "Resource programmed, assigned to
        service(s) …"; ``addresses``; per listener the route kinds, the routes attached and
        their conditions. The HTTPRoutes that name it get their ``status.parents`` entry
        (``Accepted``; ``ResolvedRefs`` False ``BackendNotFound`` for a missing Service)."""
        gw = c.objects[key]
        meta, spec = gw["metadata"], gw.get("spec") or {}
        ns, gen, t = meta["namespace"], meta.get("generation", 1), now_iso()
        prev = gw.get("status") or {}
        svc = c.objects.get(("Service", ns, service))
        host = f"{service}.{ns}.svc.cluster.local"
        addresses: list[dict[str, str]] = []
        if svc is not None:
            if (svc.get("spec") or {}).get("type") == "LoadBalancer":
                for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get(
                        "ingress") or []:
                    if ing.get("ip"):
                        addresses.append({"type": "IPAddress", "value": ing["ip"]})
                    elif ing.get("hostname"):
                        addresses.append({"type": "Hostname", "value": ing["hostname"]})
            else:
                addresses.append({"type": "Hostname", "value": host})
        ports = sorted({int(lst["port"]) for lst in spec.get("listeners") or []
                        if isinstance(lst.get("port"), int)})
        assigned = [f"{host}:{p}" for p in ports]
        if svc is None:
            programmed = istio.condition("Programmed", False, "Invalid", "Failed to assign "
                                         "to any requested addresses", gen,
                                         prev.get("conditions"), t)
        elif not addresses:
            programmed = istio.condition(
                "Programmed", False, "AddressNotAssigned",
                f"Assigned to service(s) {istio.human_join(assigned)}, but failed to assign "
                f"to all requested addresses: address pending for hostname \"{host}\"", gen,
                prev.get("conditions"), t)
        else:
            programmed = istio.condition(
                "Programmed", True, "Programmed", "Resource programmed, assigned to "
                f"service(s) {istio.human_join(assigned)}", gen, prev.get("conditions"), t)
        routes = self._of_kind(c, HTTPROUTE_KEY)
        listeners = []
        for lst in spec.get("listeners") or []:
            prev_l: dict[str, Any] = next((x for x in prev.get("listeners") or []
                           if x.get("name") == lst.get("name")), {})
            attached = 0
            for route in routes:
                rns = route["metadata"]["namespace"]
                nso = c.objects.get(("Namespace", "", rns)) or {"metadata": {}}
                if any(ref.get("sectionName") in (None, lst.get("name"))
                       for ref in istio.route_parents(route, gw)) and istio.listener_allows(
                        lst, ns, rns, nso["metadata"].get("labels") or {}):
                    attached += 1
            listeners.append({
                "name": lst.get("name"), "attachedRoutes": attached,
                "supportedKinds": istio.route_kinds(str(lst.get("protocol", ""))),
                "conditions": [istio.condition(k, ok, reason, "No errors found", gen,
                                               prev_l.get("conditions"), t)
                               for k, ok, reason in (("Accepted", True, "Accepted"),
                                                     ("Conflicted", False, "NoConflicts"),
                                                     ("Programmed", True, "Programmed"),
                                                     ("ResolvedRefs", True, "ResolvedRefs"))]})
        status = {"addresses": addresses,
                  "conditions": [istio.condition("Accepted", True, "Accepted",
                                                 "Resource accepted", gen,
                                                 prev.get("conditions"), t), programmed],
                  "listeners": listeners}
        self._set_status(c, key, status)
        for route in routes:
            refs = istio.route_parents(route, gw)
            if not refs:
                continue
            rkey = self._key_of(route)
            rprev = route.get("status") or {}
            rgen = route["metadata"].get("generation", 1)
            missing = [b.get("name") for rule in (route.get("spec") or {}).get("rules") or []
                       for b in rule.get("backendRefs") or []
                       if b.get("kind", "Service") == "Service" and b.get("group", "") == ""
                       and ("Service", b.get("namespace", route["metadata"]["namespace"]),
                            b.get("name", "")) not in c.objects]
            parents = [p for p in rprev.get("parents") or []
                       if p.get("parentRef") not in refs]
            for ref in refs:
                old: dict[str, Any] = next((p for p in rprev.get("parents") or []
                            if p.get("parentRef") == ref), {})
                resolved = istio.condition(
                    "ResolvedRefs", not missing,
                    "BackendNotFound" if missing else "ResolvedRefs",
                    f"backend({missing[0]}) not found" if missing else
                    "All references resolved", rgen, old.get("conditions"), t)
                parents.append({"parentRef": ref, "controllerName": istio.GATEWAY_CONTROLLER,
                                "conditions": [istio.condition(
                                    "Accepted", True, "Accepted", "Route was valid", rgen,
                                    old.get("conditions"), t), resolved]})
            self._set_status(c, rkey, {**rprev, "parents": parents})

    def _sync_horizontalpodautoscaler(self, c: Cluster, key: Key) -> None:
        """The HorizontalPodAutoscaler controller's bounds (``podautoscaler/horizontal.go``,
        ``reconcileAutoscaler``): a target below ``minReplicas`` (default 1) is scaled up to
        it, above ``maxReplicas`` down to it, with a ``SuccessfulRescale`` event; a target at
        0 replicas is left alone (autoscaling off). Between the bounds the replicas follow
        the metrics, which the sandbox has none of: the HPA reports ``ScalingActive``
        False (``FailedGetResourceMetric``) and keeps the current count."""
        hpa = c.objects[key]
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        tkey = (str(ref.get("kind", "")), key[1], str(ref.get("name", "")))
        target = c.objects.get(tkey) if tkey[0] in ("Deployment", "StatefulSet") else None
        t = now_iso()
        prev = (hpa.get("status") or {}).get("conditions")
        if target is None:
            self._set_status(c, key, {"currentReplicas": 0, "desiredReplicas": 0,
                                      "conditions": [istio.condition(
                                          "AbleToScale", False, "FailedGetScale",
                                          f"the HPA controller was unable to get the target's "
                                          f'current scale: {tkey[0].lower()}s.apps '
                                          f'"{tkey[2]}" not found', 0, prev, t)]})
            return
        current = int((target.get("spec") or {}).get("replicas", 1))
        low, high = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1))
        desired = current if current == 0 else min(max(current, low), high)
        status: dict[str, Any] = json_copy(hpa.get("status") or {})
        if desired != current:
            new = json_copy(target)
            new["spec"]["replicas"] = desired
            self._update(c, tkey, new)
            why = "below Spec.MinReplicas" if desired > current else "above Spec.MaxReplicas"
            self._event(c, hpa, "SuccessfulRescale", f"New size: {desired}; reason: Current "
                        f"number of replicas {why}", "horizontal-pod-autoscaler")
            status["lastScaleTime"] = t
        status.update(currentReplicas=current, desiredReplicas=desired, conditions=[
            {k: v for k, v in istio.condition(
                "AbleToScale", True, "SucceededRescale" if desired != current else
                "ReadyForNewScale", "the HPA controller was able to update the target scale"
                if desired != current else "recommended size matches current size", 0, prev,
                t).items() if k != "observedGeneration"},
            {k: v for k, v in istio.condition(
                "ScalingActive", False, "FailedGetResourceMetric", "the HPA was unable to "
                "compute the replica count: unable to get metrics for resource cpu: no "
                "metrics returned from resource metrics API", 0, prev, t).items()
             if k != "observedGeneration"}])
        self._set_status(c, key, status)

    # ------------------------------------------------------------------ time

    def reconcile(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.lock:
            for op in self.operations.values():
                if op.status == "InProgress" and now >= op.due:
                    c = self.clusters[op.cluster]
                    if op.before is not None:
                        # failed: ARM reports the error and the cluster is as it was
                        op.status = "Failed"
                        op.error = {"code": "IstioAddonInstallationFailed",
                                    "message": "istiod did not become ready in time "
                                               "(injected by the sandbox)"}
                        c.arm["properties"]["serviceMeshProfile"] = op.before
                        c.arm["properties"]["provisioningState"] = "Failed"
                        c.operation = None
                        continue
                    op.status = "Succeeded"
                    c.arm["properties"]["provisioningState"] = "Succeeded"
                    for pool in c.arm["properties"].get("agentPoolProfiles") or []:
                        if pool.get("name") == op.agent_pool:
                            pool["provisioningState"] = "Succeeded"
                    c.operation = None
                    self._sync_mesh(c)
            while self._timers and self._timers[0][0] <= now:
                _, _, action, cname, key = heapq.heappop(self._timers)
                c_ = self.clusters.get(cname)
                if c_ is None or key not in c_.objects:
                    continue
                if action == "start":
                    self._run_pod(c_, key)
                elif action == "finish":
                    self._finish_pod(c_, key)
                elif action == "gone":
                    if _terminating(c_.objects[key]):
                        self._remove(c_, key)
                elif action == "delete":
                    self._remove(c_, key)
                elif action == "sync":
                    self._dirty.append((c_, key))
            for c in self.clusters.values():
                for key in list(c.cron_checked):
                    if key in c.objects:
                        self._sync_cronjob(c, key)
            self._settle()

    def start_operation(self, c: Cluster, revisions: list[str],
                        before: dict[str, Any] | None = None) -> Operation:
        now = time.time()
        op = Operation(str(uuid.uuid4()), c.name, now, now + self.operation_s, revisions)
        if self.failing_operations > 0 and before is not None:
            self.failing_operations -= 1
            op.before = before
        self.operations[op.id] = op
        c.operation = op
        return op

    def start_node_pool_operation(self, c: Cluster, kind: str, seconds: float,
                                  agent_pool: str = "nodepool1") -> Operation:
        """Someone else's operation on one of the cluster's node pools, from now for
        ``seconds`` (wall clock, as every ARM operation here). Meanwhile AKS shows the
        managed cluster and the agent pool ``Updating`` and refuses a managedCluster PUT
        with 409 ``OperationNotAllowed`` naming the operation (:mod:`sandbox.arm`).

        ``kind``: ``update node pool`` only (``az aks nodepool update``: settings such as
        the autoscaler's, no node replaced). An ``upgrade node pool`` is not offered: it
        cordons, drains and replaces every node, which the sandbox does not emulate, and a
        world must not be easier than AKS."""
        if kind not in NODE_POOL_OPERATIONS:
            raise ValueError(f"{kind!r} is not a node pool operation the sandbox emulates "
                             f"({', '.join(NODE_POOL_OPERATIONS)})")
        pools = [p for p in c.arm["properties"].get("agentPoolProfiles") or []
                 if p.get("name") == agent_pool]
        if not pools:
            raise ValueError(f"{c.name} has no agent pool {agent_pool!r}")
        state = NODE_POOL_OPERATIONS[kind]
        now = time.time()
        with self.lock:
            op = Operation(str(uuid.uuid4()), c.name, now, now + seconds, c.revisions,
                           kind=kind, agent_pool=agent_pool)
            self.operations[op.id] = op
            c.operation = op
            c.arm["properties"]["provisioningState"] = state
            pools[0]["provisioningState"] = state
        return op

    # ------------------------------------------------------------------ traffic

    def workloads_traffic(self) -> list[tuple[str, str, str, dict[str | None, float]]]:
        """(cluster, namespace, workload, {sidecar revision: requests a second}) for every
        workload that serves: a Deployment, StatefulSet or DaemonSet outside the system
        namespaces whose pods a Service of its namespace selects (not a Gateway API
        gateway's proxies: they forward the namespace's requests, they serve none).
        Only ready pods serve.
        Each ready pod serves ``rps_per_pod``, unless the namespace has a :class:`Traffic`,
        whose ``rps`` is split evenly over its serving workloads."""
        out: list[tuple[str, str, str, dict[str | None, float]]] = []
        with self.lock:
            self.reconcile()
            for c in self.clusters.values():
                selectors: dict[str, list[dict[str, str]]] = {}
                for (kind, ns, _), obj in c.objects.items():
                    if kind == "Service" and (obj.get("spec") or {}).get("selector"):
                        selectors.setdefault(ns, []).append(obj["spec"]["selector"])
                serving: dict[str, list[tuple[str, dict[str | None, int]]]] = {}
                for (kind, ns, name), obj in c.objects.items():
                    if kind not in WORKLOAD_KINDS or ns in SYSTEM_NAMESPACES or \
                            (obj["metadata"].get("labels") or {}).get(
                                istio.GATEWAY_MANAGED_LABEL):
                        continue
                    labels = ((obj["spec"].get("template") or {}).get("metadata") or {}).get(
                        "labels") or {}
                    if not any(all(labels.get(k) == v for k, v in sel.items())
                               for sel in selectors.get(ns, [])):
                        continue
                    ready: Counter[str | None] = Counter()
                    for pod in self.pods_of(c, (kind, ns, name)):
                        if _ready(pod) and not _terminating(pod):
                            ready[pod["metadata"].get("labels", {}).get(REV_LABEL)
                                  if "sidecar.istio.io/status" in pod["metadata"].get(
                                      "annotations", {}) else None] += 1
                    serving.setdefault(ns, []).append((name, dict(ready)))
                for ns, workloads in serving.items():
                    tr = self.traffic.get((c.name, ns))
                    for name, revs in workloads:
                        if tr is None:
                            rates = {r: n * self.rps_per_pod for r, n in revs.items()}
                        else:
                            total = sum(revs.values())
                            share = tr.rps / len(workloads)
                            rates = {r: share * n / total for r, n in revs.items()} \
                                if total else {}
                        out.append((c.name, ns, name, rates))
        return out

    def profile(self, cluster: str, ns: str, workload: str, rev: str | None
                ) -> tuple[float, float | None]:
        """(error rate, median latency in ms or None for the default) of a workload's
        requests on a revision: the namespace's traffic, worsened by faults."""
        fault = self.fault(cluster, ns, workload, rev)
        tr = self.traffic.get((cluster, ns))
        base = tr.error_rate if tr else 0.0
        error = 1 - (1 - base) * (1 - fault.error_rate)
        median = fault.latency_ms or (tr.p99_ms / 3.2 if tr and tr.p99_ms else None)
        return error, median

    def start_background(self) -> None:
        def loop() -> None:
            while True:
                time.sleep(0.1)
                self.reconcile()
        threading.Thread(target=loop, name="sandbox-reconcile", daemon=True).start()


def istiod_service(revision: str) -> dict[str, Any]:
    """The Service ``istiod-<revision>`` in ``aks-istio-system`` (Istio's ``istio-discovery``
    chart, ``templates/service.yaml``): xDS, the CA, the injection webhook (443 → 15017) and
    monitoring ports, selecting that revision's istiod pods."""
    labels = {"app": "istiod", "istio": "pilot", REV_LABEL: revision}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"istiod-{revision}", "namespace": ISTIO_NS,
                         "labels": labels},
            "spec": {"selector": {"app": "istiod", REV_LABEL: revision},
                     "ports": [{"name": "grpc-xds", "port": 15010, "protocol": "TCP"},
                               {"name": "https-dns", "port": 15012, "protocol": "TCP"},
                               {"name": "https-webhook", "port": 443, "targetPort": 15017,
                                "protocol": "TCP"},
                               {"name": "http-monitoring", "port": 15014,
                                "protocol": "TCP"}]}}


def _named(items: Any) -> bool:
    return isinstance(items, list) and all(isinstance(i, dict) and "name" in i for i in items)


def ssa_merge(live: Any, applied_before: Any, applied: Any) -> Any:
    """Server-side apply of ``applied`` by a field manager that last applied
    ``applied_before`` (Kubernetes docs "Server-Side Apply"), reduced to what the sandbox's
    controllers need: in maps, the fields it applies are set, those it applied before and
    no longer applies are removed, all others are left to their owners; lists of objects
    with a ``name`` (containers, env, ports, volumes, owner references) are associative by
    name, other lists atomic."""
    if isinstance(applied, dict) and isinstance(live, dict):
        before = applied_before if isinstance(applied_before, dict) else {}
        out = dict(live)
        for k in before:
            if k not in applied:
                out.pop(k, None)
        for k, v in applied.items():
            out[k] = ssa_merge(live.get(k), before.get(k), v)
        return out
    if _named(applied) and _named(live) and applied:
        before_items = {i["name"]: i for i in applied_before} if _named(applied_before) \
            else {}
        live_items = {i["name"]: i for i in live}
        names = {i["name"] for i in applied}
        return [ssa_merge(live_items.get(i["name"]), before_items.get(i["name"]), i)
                for i in applied] + [json_copy(i) for i in live
                                     if i["name"] not in names and i["name"] not in before_items]
    return json_copy(applied)


def proxy_revision(pod: dict[str, Any]) -> str | None:
    """The revision of a pod's Istio proxy: an injected sidecar's (``istio.io/rev`` label
    beside ``sidecar.istio.io/status``), or a gateway's rendered proxy (its
    ``istio.io/rev`` annotation, ``kube-gateway`` template); None without a proxy."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if "sidecar.istio.io/status" in annotations:
        return (meta.get("labels") or {}).get(REV_LABEL)
    if (meta.get("labels") or {}).get(istio.GATEWAY_MANAGED_LABEL) and any(
            ct.get("name") == "istio-proxy" for ct in (pod.get("spec") or {}).get(
                "containers") or []):
        return annotations.get(REV_LABEL)
    return None


def _owner_ref(owner: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


def _cond(kind: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"type": kind, "status": "True" if ok else "False",
                         "lastProbeTime": None, "lastTransitionTime": now_iso()}
    if not ok and kind in ("Ready", "ContainersReady"):
        c["reason"] = reason or "ContainersNotReady"
    return c


def _dcond(prev: dict[str, Any] | None, kind: str, status: str, reason: str, message: str,
           t: float) -> dict[str, Any]:
    same = prev is not None and prev.get("status") == status
    changed_reason = prev is None or prev.get("reason") != reason
    return {"type": kind, "status": status,
            "lastUpdateTime": now_iso(t) if changed_reason or prev is None
            else prev["lastUpdateTime"],
            "lastTransitionTime": prev["lastTransitionTime"] if same and prev else now_iso(t),
            "reason": reason, "message": message}


def _status(ctr: dict[str, Any], state: dict[str, Any], ready: bool = False) -> dict[str, Any]:
    return {"name": ctr.get("name", ""), "image": ctr.get("image", ""),
            "imageID": "", "ready": ready, "started": "running" in state,
            "restartCount": 0, "state": state,
            **({"containerID": "containerd://" + uuid.uuid4().hex * 2} if "waiting" not in
               state else {})}


def default_pod_spec(spec: dict[str, Any]) -> None:
    """The API server's defaulting of a pod spec (``pkg/apis/core/v1/defaults.go``):
    container port protocol, image pull policy, probe timings, termination message."""
    for ctr in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(ctr, dict):
            continue
        for port in ctr.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
        image = str(ctr.get("image", ""))
        tag = image.rsplit("/", 1)[-1]
        ctr.setdefault("imagePullPolicy", "Always" if ":" not in tag or tag.endswith(":latest")
                       else "IfNotPresent")
        ctr.setdefault("terminationMessagePath", "/dev/termination-log")
        ctr.setdefault("terminationMessagePolicy", "File")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            p = ctr.get(probe)
            if isinstance(p, dict):
                for k, v in (("timeoutSeconds", 1), ("periodSeconds", 10),
                             ("successThreshold", 1), ("failureThreshold", 3)):
                    p.setdefault(k, v)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})


def _qos(spec: dict[str, Any]) -> str:
    """The pod's QoS class (Kubernetes docs "Pod Quality of Service Classes")."""
    ctrs = spec.get("containers") or []
    res = [c.get("resources") or {} for c in ctrs]
    if not any(r.get("requests") or r.get("limits") for r in res):
        return "BestEffort"
    if all((r.get("limits") or {}).get("cpu") and (r.get("limits") or {}).get("memory")
           and all((r.get("requests") or {}).get(k, (r.get("limits") or {})[k])
                   == (r.get("limits") or {})[k] for k in ("cpu", "memory")) for r in res):
        return "Guaranteed"
    return "Burstable"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, ``null`` deletes, anything else replaces.

    Strategic merge patches that only touch maps (labels, annotations) mean the same.
    """
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target
