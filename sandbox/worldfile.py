"""Worlds from files: the clusters, namespaces, real Kubernetes manifests, traffic and faults
the sandbox starts with (DESIGN.md §8). The default fleet is ``data/worlds/default.yaml``.

A world file is YAML::

    clock_speed: 60                   # optional: the sandbox clock (CronJobs) vs the wall clock
    traffic:                          # optional: what every namespace's traffic shares
      noise: production               #   "production" (the default) or "none" (exact rates)
      rps_per_pod: 2000               #   each serving pod, where a namespace sets no rps
      diurnal: {amplitude: 0.3, peak_hour: 14}   # load × (1 ± 0.3) over a sandbox day
      incidents:                      #   fleet-wide: errors and latency up everywhere
        - {at_s: 300, duration_s: 120, error_rate: 0.05, latency_x: 3}
        - {every_s: 1800, duration_s: 90, error_rate: 0.02, clusters: [shop]}
      seed: 7                         #   of the noise and of recurring incidents
    campaigns:                        # optional: the fleet file's `campaigns:` (issue 14)
      channel: {id: C0FLEET, name: mesh-fleet}   # optional (this is the default)
      stages:                         # in order; as in the fleet file
        - {name: dev, selector: {env: dev}, max_concurrency: 2}
        - {name: prod, clusters: [shop], approval: true, soak: 30s}
    clusters:
      - name: aks-shop-weu            # the managedCluster name
        alias: shop                   # optional: the name in /mesh commands (default: name)
        subscription: 0000…           # optional
        resource_group: rg-shop       # optional (default: rg-<name>)
        location: westeurope
        kubernetes_version: "1.33.2"
        revisions: [asm-1-25]         # the add-on's revisions; [] = mesh off
        revision_tags:                # optional: Istio revision tags, as made by
          prod-stable: asm-1-25       #   istioctl tag set prod-stable --revision asm-1-25
                                      #   --istioNamespace aks-istio-system
        gateway_api: true             # optional: AKS's Managed Gateway API is on (the
                                      # Gateway API CRDs; Gateways of class istio get a
                                      # gateway deployed from asm-1-26)
        ingress_gateways: [external]  # optional: the add-on's ingress gateways on
                                      # (external, internal), one Deployment per revision
        entra_id:                     # optional: AKS-managed Entra ID integration
          disable_local_accounts: true
        open_service_mesh: false      # optional: the OSM add-on is on
        node_count: 3                 # optional
        channel: {id: C0SHOP, name: mesh-shop}   # optional: its Slack channel; add
                                      # member: false (the app was never invited) or
                                      # archived: true for a channel Slack refuses posts to
        mesh_config:                  # optional: the team's MeshConfig overrides per
          asm-1-25:                   #   revision, as istio-shared-configmap-asm-1-25
            accessLogFile: /dev/stdout   #   in aks-istio-system (data key `mesh`)
            defaultConfig: {holdApplicationUntilProxyStarts: true}
        maintenance:                  # optional: AKS planned maintenance configurations,
          aksManagedAutoUpgradeSchedule:   # by name: a maintenanceWindow as ARM writes it
            schedule: {weekly: {intervalWeeks: 1, dayOfWeek: Saturday}}
            durationHours: 6
            utcOffset: "+01:00"
            startTime: "22:00"
            notAllowedDates: [{start: "2026-12-20", end: "2027-01-03"}]
        labels: {env: dev}            # optional: the cluster's labels in the fleet file
                                      # (campaign stages select by them)
        operation_in_progress:        # optional: someone's node pool operation, running
          kind: update node pool      #   from the world's start for `seconds` (wall clock)
          seconds: 30                 #   or, with starts: approval, from the moment the
                                      #   demo clicks Approve (POST /_sandbox/operations)
        namespaces:
          - name: store
            labels: {istio.io/rev: asm-1-25}     # the namespace's labels, exactly (a tag
                                                 # works too: istio.io/rev: prod-stable)
            manifests: apps/store.yaml           # optional: one file or a list, relative to
                                                 # the world file, applied as
                                                 # `kubectl apply -n store -f` would
            traffic: {rps: 20, error_rate: 0.001, p99_ms: 150}   # optional; also
                                                 # noise: production | none (the world's)
            faults:                              # optional
              - {workload: reports, crashloop: true, revision: "*"}
              - {workload: checkout, error_rate: 0.3, latency_ms: 800, revision: asm-1-26}
              - {workload: payments, error_rate: 0.2, grpc_status: 14, revision: asm-1-26}
              - {workload: frontend, source_error_rate: 0.1, revision: asm-1-26}

Manifests are applied into their namespace as ``kubectl apply -n <namespace>`` would: the
namespace is set on namespaced kinds, and one that names another namespace is refused
(kubectl: "the namespace from the provided object ... does not match"); cluster-scoped kinds
keep none. Every kind must be one the cluster serves: built-in, a CRD of the world's
manifests (applied first), an Istio CRD where the mesh is on, or a Gateway API kind where
``gateway_api`` is on. Revision tags are made before the manifests are applied, so pods of
a namespace labelled with a tag start with the tagged revision's sidecar. A fault's ``revision`` is
``"*"`` (any revision, and none: already failing before the upgrade) or one revision (a bad
canary); ``latency_ms`` is the median latency on it; ``crashloop`` makes new pods of the
workload crash-loop (its Jobs' pods fail). ``error_rate`` fails that fraction of what the
workload serves, as its protocol fails (Istio's metrics, :mod:`sandbox.traffic`): an HTTP
Service answers 503; a gRPC one (port ``grpc…``) HTTP 200 with ``grpc_response_status``
``grpc_status`` (default 14, Unavailable); a TCP one (``tcp…``, ``redis``, ``mongo``…)
closes the connections with Envoy's ``UF`` at the destination. ``source_error_rate`` fails
that fraction of the calls the workload *makes*, in its own outbound proxy (503 / gRPC 14,
``response_flags="UF"``, or a TCP ``UF``): only the source reporter sees them, the callee
never gets them.

Traffic (:mod:`sandbox.traffic`): a namespace's ``traffic.rps`` is split evenly over its
workloads behind a Service (without it, each ready pod serves ``traffic.rps_per_pod``);
``error_rate`` and ``p99_ms`` are its baseline. ``noise`` (per namespace, else the world's
``traffic.noise``): ``none`` gives exact rates; ``production``, the default, draws every
tick's counts as gamma–Poisson (negative binomial) counts — a burst level per namespace
every second (gamma, CV 20 %) times Poisson noise, so their variance exceeds their mean as
production traffic's does — jitters error rates and median latencies the same way, and gives
latencies a heavy (Pareto) tail binned into Istio's buckets. ``diurnal`` swings load over
the day of the sandbox clock (``clock_speed``: at 60, a day lasts 24 minutes), peaking at
``peak_hour``, with latency rising a quarter as much. An incident (``at_s`` after the start,
once, or again and again every ``every_s`` on average, exponential gaps) lasts
``duration_s`` and adds ``error_rate`` and multiplies latency by ``latency_x`` in every
namespace of its ``clusters`` (names or aliases; default every cluster), migrated to a
canary or not, as a shared dependency failing does. ``POST /_sandbox/incidents`` starts one
now. Diurnal swings and incidents apply with either noise.

``mesh_config`` is made as a team makes it (AKS doc ``istio-meshconfig.md``): a ConfigMap
``istio-shared-configmap-<revision>`` in ``aks-istio-system`` whose ``mesh`` is the given
MeshConfig as YAML, for a revision the cluster runs or one it can upgrade to (prepared
before a canary upgrade, as the doc asks); the add-on's admission control denies blocked
fields, and so does the world file. ``maintenance`` gives the cluster's maintenance
configurations (ARM ``managedClusters/{name}/maintenanceConfigurations``;
:mod:`sandbox.maintenance`): each name one of ``default``, ``aksManagedAutoUpgradeSchedule``,
``aksManagedNodeOSUpgradeSchedule``, its value the ``maintenanceWindow`` object in ARM's
camelCase, checked as AKS checks a PUT (``startDate`` defaults to the day the world starts,
``utcOffset`` to ``+00:00``). ``campaigns`` and a cluster's ``labels`` go to the fleet file
the sandbox writes, with the sandbox's approver as the campaigns' approver; a stage names
clusters by their name in ``/mesh`` commands (the alias, else the name).
``operation_in_progress`` makes the cluster busy from
the world's start: ARM shows it ``Updating`` and answers a managedCluster PUT with 409
``OperationNotAllowed`` until it ends (:meth:`sandbox.world.World.start_node_pool_operation`
says why only ``update node pool``). A channel with ``member: false`` answers
``chat.postMessage`` with ``not_in_channel``, an archived one with ``is_archived``
(:mod:`sandbox.slack`).

A wrong file fails at start with the file, the field path (or the manifest's document number
and line) and what was expected: :class:`WorldError`.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sandbox import maintenance as maintenance_configs
from sandbox.world import (
    ISTIO_NS,
    NODE_POOL_OPERATIONS,
    SHARED_MESH_CONFIG,
    ApiError,
    Fault,
    Incident,
    RecurringIncident,
    Traffic,
    Weather,
    World,
    load_revisions,
    mesh_config_problems,
)

DEFAULT_WORLD = Path(__file__).resolve().parent / "data" / "worlds" / "default.yaml"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


class WorldError(Exception):
    """A world file that cannot be loaded: the message names the file, where and why."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Noise = Literal["none", "production"]


class TrafficSpec(Strict):
    rps: float = Field(gt=0, description="requests a second to the namespace")
    error_rate: float = Field(0.0, ge=0, le=1)
    p99_ms: float | None = Field(None, gt=0)
    noise: Noise | None = None  # None: the world's traffic.noise


class FaultSpec(Strict):
    workload: str = Field(min_length=1)
    revision: str = Field(pattern=r"^(\*|asm-1-\d+)$")
    crashloop: bool = False
    error_rate: float | None = Field(None, ge=0, le=1)
    latency_ms: float | None = Field(None, gt=0)
    source_error_rate: float | None = Field(None, ge=0, le=1)
    grpc_status: int = Field(14, ge=1, le=16)

    @model_validator(mode="after")
    def _does_something(self) -> FaultSpec:
        if not self.crashloop and self.error_rate is None and self.latency_ms is None \
                and self.source_error_rate is None:
            raise ValueError("a fault needs crashloop: true, an error_rate, a "
                             "source_error_rate or a latency_ms")
        return self


class DiurnalSpec(Strict):
    amplitude: float = Field(gt=0, le=0.9)  # load × (1 ± amplitude) over a sandbox day
    peak_hour: float = Field(14.0, ge=0, lt=24)  # sandbox clock, UTC


class IncidentSpec(Strict):
    at_s: float | None = Field(None, ge=0)  # once, this long after the world starts
    every_s: float | None = Field(None, gt=0)  # or again and again, mean gap (exponential)
    duration_s: float = Field(gt=0)
    error_rate: float = Field(0.0, ge=0, le=1)
    latency_x: float = Field(1.0, ge=1, le=100)
    clusters: list[str] | None = None  # names or aliases; None: every cluster

    @model_validator(mode="after")
    def _when(self) -> IncidentSpec:
        if (self.at_s is None) == (self.every_s is None):
            raise ValueError("an incident has either at_s (once) or every_s (recurring)")
        if self.error_rate == 0 and self.latency_x == 1:
            raise ValueError("an incident needs an error_rate or a latency_x above 1")
        return self


class WorldTrafficSpec(Strict):
    noise: Noise = "production"
    #: requests a second each ready pod behind a Service serves, in namespaces that set no
    #: ``traffic.rps`` of their own (enough for the canary gate to decide within the
    #: seconds-long bakes of demos)
    rps_per_pod: float = Field(2000.0, gt=0, le=100000)
    diurnal: DiurnalSpec | None = None
    incidents: list[IncidentSpec] = Field(default_factory=list)
    seed: int = 0


class NamespaceSpec(Strict):
    name: str = Field(pattern=DNS_LABEL)
    labels: dict[str, str] = Field(default_factory=dict)
    manifests: str | list[str] | None = None
    traffic: TrafficSpec | None = None
    faults: list[FaultSpec] = Field(default_factory=list)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not LABEL_KEY.match(k) or len(k.rsplit("/", 1)[-1]) > 63:
                raise ValueError(f"{k!r} is not a valid label key")
            if len(val) > 63 or not LABEL_VALUE.match(val):
                raise ValueError(f"{val!r} (label {k}) is not a valid label value: at most 63 "
                                 "characters, alphanumerics, '-', '_' or '.' inside")
        return v


class EntraIdSpec(Strict):
    disable_local_accounts: bool = False
    azure_rbac: bool = False
    admin_group_object_ids: list[str] = Field(default_factory=list)


class ChannelSpec(Strict):
    id: str = Field(pattern=r"^[CG][A-Z0-9]{2,}$")
    name: str = Field(pattern=r"^[a-z0-9_-]{1,80}$")
    member: bool = True  # the app is in the channel (invited)
    archived: bool = False


class OperationSpec(Strict):
    kind: str
    seconds: float = Field(gt=0, le=3600)
    # when it starts: with the world, or when `meshops demo` clicks Approve (someone's node
    # pool update just before the canary's PUT, however long the demo took to get there)
    starts: Literal["world", "approval"] = "world"

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in NODE_POOL_OPERATIONS:
            raise ValueError(f"{v!r} is not a node pool operation the sandbox emulates "
                             f"({', '.join(NODE_POOL_OPERATIONS)}; an upgrade would drain "
                             "and replace the nodes, which it does not)")
        return v


class ClusterSpec(Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9]([-_a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$")
    alias: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    subscription: str = Field(SUBSCRIPTION, pattern=r"^[0-9a-fA-F-]{36}$")
    resource_group: str | None = Field(None, pattern=r"^[-\w._()]{1,90}$")
    location: str = Field(pattern=r"^[a-z0-9]+$")
    kubernetes_version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    revisions: list[str] = Field(max_length=2)
    entra_id: EntraIdSpec | None = None
    open_service_mesh: bool = False
    node_count: int = Field(3, ge=1, le=100)
    revision_tags: dict[str, str] = Field(default_factory=dict)
    gateway_api: bool = False
    ingress_gateways: list[Literal["external", "internal"]] = Field(default_factory=list)
    channel: ChannelSpec | None = None
    mesh_config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    operation_in_progress: OperationSpec | None = None
    #: maintenance configuration name → its maintenanceWindow, in ARM's camelCase
    maintenance: dict[str, dict[str, Any]] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    namespaces: list[NamespaceSpec] = Field(default_factory=list)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v)

    @field_validator("revisions")
    @classmethod
    def _revisions(cls, v: list[str]) -> list[str]:
        for r in v:
            if not re.match(r"^asm-1-\d+$", r):
                raise ValueError(f"{r!r} is not a revision (asm-1-NN)")
        return v

    @property
    def key(self) -> str:
        """The cluster's name in /mesh commands and the fleet file."""
        return self.alias or self.name

    @property
    def rg(self) -> str:
        return self.resource_group or f"rg-{self.name}"

    @property
    def slack(self) -> ChannelSpec:
        if self.channel:
            return self.channel
        digest = re.sub(r"[^A-Z0-9]", "", self.key.upper())[:8] or "X"
        return ChannelSpec(id=f"C0{digest}", name=f"mesh-{self.key}"[:80])


def _check_labels(v: dict[str, str]) -> dict[str, str]:
    bad = [k for k, val in v.items() if not LABEL_KEY.match(k)
           or not LABEL_VALUE.match(str(val))]
    if bad:
        raise ValueError(f"not Kubernetes-style label keys or values: {', '.join(bad)}")
    return v


class StageSpec(Strict):
    """A campaign stage as the fleet file writes it (meshops checks it again at start)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")
    clusters: list[str] = Field(default_factory=list)
    selector: dict[str, str] = Field(default_factory=dict)
    max_concurrency: int = Field(1, ge=1, le=50)
    max_failures: int = Field(0, ge=0)
    approval: bool = False
    soak: str | float = 0

    @field_validator("selector")
    @classmethod
    def _selector(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v)


class CampaignsSpec(Strict):
    channel: ChannelSpec = ChannelSpec(id="C0FLEET", name="mesh-fleet")
    stages: list[StageSpec] = Field(min_length=1)


class WorldSpec(Strict):
    clock_speed: float = Field(60.0, gt=0, le=3600)
    traffic: WorldTrafficSpec = WorldTrafficSpec()
    campaigns: CampaignsSpec | None = None
    clusters: list[ClusterSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _stage_clusters(self) -> WorldSpec:
        keys = [c.key for c in self.clusters]
        for i, stage in enumerate(self.campaigns.stages if self.campaigns else []):
            unknown = [c for c in stage.clusters if c not in keys]
            if unknown:
                raise ValueError(f"campaigns.stages[{i}].clusters: no cluster "
                                 f"{', '.join(unknown)} in the world (its clusters: "
                                 f"{', '.join(keys)})")
        return self


@dataclass
class Document:
    """One document of a manifest file: where it is, and what it holds."""

    path: Path
    number: int  # 1-based, counting empty documents as ``---`` separates them
    line: int  # 1-based
    body: Any

    @property
    def where(self) -> str:
        return f"{self.path} document {self.number} (line {self.line})"


@dataclass
class LoadedWorld:
    """A loaded world: its spec, the file it came from and the manifests it references."""

    path: Path
    spec: WorldSpec
    manifests: dict[tuple[int, int], list[Document]]  # (cluster, namespace index) → docs


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def _read_yaml(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorldError(f"{what}: no file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorldError(f"{what}: cannot read {path}: {exc}") from None


def _yaml_error(path: Path, exc: yaml.YAMLError) -> WorldError:
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return WorldError(f"{path}:{where}: not valid YAML: {problem}")


def load_documents(path: Path, what: str) -> list[Document]:
    """The documents of a multi-document YAML file, numbered, with their lines."""
    text = _read_yaml(path, what)
    docs = []
    try:
        for i, node in enumerate(yaml.compose_all(text, Loader=yaml.SafeLoader), start=1):
            body = yaml.SafeLoader("").construct_document(node) if node is not None else None
            docs.append(Document(path, i, (node.start_mark.line + 1) if node else 1, body))
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from None
    return docs


def load(path: Path) -> LoadedWorld:
    """Load and check a world file and the manifests it references; :class:`WorldError`."""
    path = Path(path)
    text = _read_yaml(path, "world file")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from None
    if not isinstance(raw, dict):
        raise WorldError(f"{path}: a world file is a mapping with `clusters:` (a list of "
                         f"clusters); got {type(raw).__name__}")
    spec = _validated(raw, path)
    manifests: dict[tuple[int, int], list[Document]] = {}
    for ci, c in enumerate(spec.clusters):
        for ni, ns in enumerate(c.namespaces):
            files = [ns.manifests] if isinstance(ns.manifests, str) else ns.manifests or []
            docs: list[Document] = []
            for f in files:
                where = f"{path}: clusters[{ci}].namespaces[{ni}].manifests"
                docs += load_documents((path.parent / f).resolve(), where)
            manifests[(ci, ni)] = docs
    world = LoadedWorld(path, spec, manifests)
    _check_manifests(world)
    return world


#: bounds of a generated world (``meshops sandbox --namespaces N --clusters K``): Kubernetes'
#: tested limit is 10,000 namespaces per cluster (sig-scalability "Kubernetes Scalability
#: thresholds"); a generated cluster runs 2 pods per namespace on at most 100 nodes
#: (``node_count``) of 110 pods (AKS's default maximum with kubenet), and one sandbox process
#: carries about 10,000 namespaces in all; 50 clusters is issue 14's campaign benchmark
MAX_NAMESPACES = 5000
MAX_CLUSTERS = 50
MAX_TOTAL_NAMESPACES = 10000
PODS_PER_NODE = 110
GENERATED_REVISION = "asm-1-25"
#: the most pods of a generated namespace's Deployment
MAX_REPLICAS = 10


def generated_app(replicas: int = 2) -> list[dict[str, Any]]:
    """The small app of each generated namespace: a Deployment ``web`` of ``replicas`` pods
    (labelled ``app``/``version`` as Istio's canonical service and revision read them)
    behind a Service ``web`` on an ``http`` port, as ``kubectl apply -n <ns>`` applies it."""
    labels = {"app": "web", "version": "v1"}
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "web", "labels": {"app": "web", "service": "web"}},
         "spec": {"selector": {"app": "web"},
                  "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "web", "labels": dict(labels)},
         "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                  "template": {"metadata": {"labels": dict(labels)},
                               "spec": {"containers": [{
                                   "name": "web",
                                   "image": "mcr.microsoft.com/azuredocs/aks-helloworld:v1",
                                   "ports": [{"containerPort": 8080}],
                                   "resources": {"requests": {"cpu": "10m",
                                                              "memory": "32Mi"}}}]}}}},
    ]


#: a generated campaign's rings, in order: the ``ring`` label value and the share of the
#: clusters it takes, the first clusters first (the rest go to the last ring)
RINGS = (("dev", 0.1), ("staging", 0.3), ("prod", 0.6))


@dataclass(frozen=True)
class GeneratedCampaign:
    """The campaign a generated world carries (``meshops sandbox --campaign``): each
    generated cluster labelled ``ring: dev|staging|prod`` (:func:`ring_sizes`) and the
    world's ``campaigns:`` three stages selecting them by that label, in that order.

    Args:
        max_concurrency: the dev, staging and prod stages' ``max_concurrency`` (clusters
            upgrading at once), 1 to 50 each.
        max_failures: each stage's failure budget (more failed clusters halt the campaign).
        soak: each stage's soak after its last cluster, a duration (``"5s"``, ``"2m"``).
    """

    max_concurrency: tuple[int, int, int] = (5, 10, 15)
    max_failures: int = 1
    soak: str = "5s"

    def stages(self) -> list[dict[str, Any]]:
        """The ``campaigns.stages`` of the world file, one a ring."""
        return [{"name": ring, "selector": {"ring": ring}, "max_concurrency": concurrency,
                 "max_failures": self.max_failures, "soak": self.soak}
                for (ring, _), concurrency in zip(RINGS, self.max_concurrency, strict=True)]


def ring_sizes(clusters: int) -> tuple[int, int, int]:
    """How many of ``clusters`` generated clusters each ring of :data:`RINGS` takes, in
    order: the first ⌈10 %⌉ dev, up to ⌈40 %⌉ staging, the rest prod (12 → 2, 3, 7;
    50 → 5, 15, 30; 1 → 1, 0, 0)."""
    dev = math.ceil(clusters * RINGS[0][1])
    staging = math.ceil(clusters * (RINGS[0][1] + RINGS[1][1])) - dev
    return dev, staging, clusters - dev - staging


def ring_of(index: int, clusters: int) -> str:
    """The ring of the ``index``-th (1-based) of ``clusters`` generated clusters."""
    dev, staging, _ = ring_sizes(clusters)
    return RINGS[0][0] if index <= dev else RINGS[1][0] if index <= dev + staging \
        else RINGS[2][0]


def generate(namespaces: int, clusters: int = 1, replicas: int = 2,
             campaign: GeneratedCampaign | None = None) -> LoadedWorld:
    """A world of ``clusters`` clusters (``aks-scale-01``…, aliases ``scale-01``…; the mesh
    on :data:`GENERATED_REVISION`) with ``namespaces`` app namespaces each (``app-0001``…,
    labelled ``istio.io/rev``, each running :func:`generated_app` of ``replicas`` pods, 1 to
    :data:`MAX_REPLICAS`), built as the world file
    loader builds a file's (the same spec, the same checks), so
    ``meshops sandbox --namespaces N --clusters K`` needs no YAML. With ``campaign``
    (``--campaign``), the clusters carry ``ring`` labels and the world a ``campaigns:``
    section (:class:`GeneratedCampaign`); without it, neither. :class:`WorldError` for
    counts out of bounds (:data:`MAX_NAMESPACES`, :data:`MAX_CLUSTERS`,
    :data:`MAX_TOTAL_NAMESPACES`), saying what is allowed, and for a campaign the world
    file's checks refuse (``campaigns.stages[i]…``)."""
    problems = []
    if not 1 <= namespaces <= MAX_NAMESPACES:
        problems.append(f"--namespaces {namespaces}: a generated cluster has 1 to "
                        f"{MAX_NAMESPACES} app namespaces")
    if not 1 <= clusters <= MAX_CLUSTERS:
        problems.append(f"--clusters {clusters}: a generated world has 1 to {MAX_CLUSTERS} "
                        "clusters")
    if not problems and namespaces * clusters > MAX_TOTAL_NAMESPACES:
        problems.append(f"--namespaces {namespaces} --clusters {clusters}: "
                        f"{namespaces * clusters} namespaces in all; one sandbox carries at "
                        f"most {MAX_TOTAL_NAMESPACES} (fewer namespaces or fewer clusters)")
    if not 1 <= replicas <= MAX_REPLICAS:
        problems.append(f"--replicas {replicas}: a generated app runs 1 to {MAX_REPLICAS} "
                        "pods")
    if problems:
        raise WorldError("cannot generate that world: " + "; ".join(problems))
    path = Path(f"(generated: {clusters} cluster{'s' if clusters > 1 else ''} of "
                f"{namespaces} namespace{'s' if namespaces > 1 else ''})")
    width = max(4, len(str(namespaces)))
    app = generated_app(replicas)
    nodes = min(100, max(3, math.ceil((replicas * namespaces + 20) / PODS_PER_NODE)))
    raw = {"traffic": {"noise": "production", "seed": 7}, "clusters": [{
        "name": f"aks-scale-{i:02d}", "alias": f"scale-{i:02d}",
        "resource_group": f"rg-scale-{i:02d}",
        "location": ("westus2", "eastus", "westeurope")[(i - 1) % 3],
        "kubernetes_version": "1.31.2", "revisions": [GENERATED_REVISION],
        "node_count": nodes,
        **({"labels": {"ring": ring_of(i, clusters)}} if campaign is not None else {}),
        "namespaces": [{"name": f"app-{n:0{width}d}",
                        "labels": {"istio.io/rev": GENERATED_REVISION}}
                       for n in range(1, namespaces + 1)],
    } for i in range(1, clusters + 1)]}
    if campaign is not None:
        raw["campaigns"] = {"stages": campaign.stages()}
    spec = _validated(raw, path)
    docs = [Document(path, n, 1, body) for n, body in enumerate(app, start=1)]
    manifests = {(ci, ni): docs for ci, c in enumerate(spec.clusters)
                 for ni in range(len(c.namespaces))}
    world = LoadedWorld(path, spec, manifests)
    _check_manifests(world)
    return world


def _validated(raw: dict[str, Any], path: Path) -> WorldSpec:
    """A world's spec from its YAML mapping, validated (fields, then the rules across them:
    revisions, tags, names); :class:`WorldError` naming ``path`` and each field."""
    try:
        spec = WorldSpec.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            got = f" (got {e['input']!r})" if not isinstance(e.get("input"), dict | list) \
                and e["type"] not in ("missing",) else ""
            msg = e["msg"].removeprefix("Value error, ")
            if e["loc"] and e["loc"][-1] == "kubernetes_version":
                msg += ': a version "MAJOR.MINOR.PATCH", quoted'
            lines.append(f"  {_loc(e['loc'])}: {msg}{got}")
        raise WorldError(f"{path}: not a valid world file:\n" + "\n".join(lines)) from None
    catalog = {r["revision"]: r for r in load_revisions()}
    problems = _check(spec, catalog)
    if problems:
        raise WorldError(f"{path}: not a valid world file:\n" + "\n".join(
            f"  {p}" for p in problems))
    return spec


def _check(spec: WorldSpec, catalog: dict[str, dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    for ci, c in enumerate(spec.clusters):
        at = f"clusters[{ci}]"
        for what, value in (("name", c.name), ("alias", c.key), ("channel", c.slack.id)):
            if value in seen and not (what == "alias" and value == c.name):
                problems.append(f"{at}.{what}: {value!r} is already used by {seen[value]}")
            seen.setdefault(value, f"{at} ({c.name})")
        minor = ".".join(c.kubernetes_version.split(".")[:2])
        for ri, rev in enumerate(c.revisions):
            entry = catalog.get(rev)
            if entry is None:
                problems.append(f"{at}.revisions[{ri}]: {rev} is not a revision the sandbox "
                                f"knows ({', '.join(sorted(catalog))})")
            elif minor not in entry["kubernetes"]:
                problems.append(f"{at}.revisions[{ri}]: {rev} is not compatible with "
                                f"Kubernetes {minor} (it supports "
                                f"{', '.join(entry['kubernetes'])})")
        if len(c.revisions) == 2 and c.revisions[0] in catalog and c.revisions[1] not in (
                catalog[c.revisions[0]].get("upgrades") or []):
            problems.append(f"{at}.revisions: {c.revisions[1]} is not an upgrade of "
                            f"{c.revisions[0]} (two revisions: a canary upgrade in progress)")
        if len(set(c.revisions)) != len(c.revisions):
            problems.append(f"{at}.revisions: the same revision twice")
        for tag, rev in c.revision_tags.items():
            where = f"{at}.revision_tags.{tag}"
            if not re.match(DNS_LABEL, tag):
                problems.append(f"{where}: {tag!r} is not a valid tag name: a lowercase DNS "
                                "label (a-z, 0-9, '-'; at most 63 characters), as it becomes "
                                "the istio.io/rev label value and the webhook's name")
            elif tag == "default":
                problems.append(f"{where}: the `default` tag (istioctl's default revision, "
                                "which takes over istio-injection=enabled) is not modelled")
            elif tag in c.revisions:
                problems.append(f"{where}: cannot create revision tag {tag!r}: found "
                                "existing control plane revision with same name")
            if rev not in c.revisions:
                runs = ", ".join(c.revisions) or "none, the mesh is off"
                problems.append(f"{where}: {rev} is not a revision this cluster runs (its "
                                f"revisions: {runs}), so istioctl finds no webhook to tag")
        if c.ingress_gateways and not c.revisions:
            problems.append(f"{at}.ingress_gateways: the add-on's ingress gateways need the "
                            "mesh on (revisions: [] turns it off); AKS refuses them otherwise")
        if len(set(c.ingress_gateways)) != len(c.ingress_gateways):
            problems.append(f"{at}.ingress_gateways: the same mode twice")
        upgrades = (catalog.get(c.revisions[0], {}).get("upgrades") or []) \
            if len(c.revisions) == 1 else []
        for rev, mesh in c.mesh_config.items():
            where = f"{at}.mesh_config.{rev}"
            if rev not in c.revisions and rev not in upgrades:
                runs = ", ".join(c.revisions) or "none, the mesh is off"
                problems.append(f"{where}: {rev} is neither a revision this cluster runs (its "
                                f"revisions: {runs}) nor one it can upgrade to"
                                + (f" ({', '.join(upgrades)})" if upgrades else ""))
            problems += [f"{where}: {p} (AKS doc istio-meshconfig.md: admission control "
                         "denies it)" for p in mesh_config_problems(mesh)]
        for name, window in c.maintenance.items():
            where = f"{at}.maintenance.{name}"
            if name not in maintenance_configs.CONFIG_NAMES:
                problems.append(f"{where}: not a maintenance configuration name AKS accepts "
                                f"({', '.join(maintenance_configs.CONFIG_NAMES)})")
                continue
            problems += maintenance_configs.window_problems(name, window, where)
        names: set[str] = set()
        for ni, ns in enumerate(c.namespaces):
            if ns.name in names:
                problems.append(f"{at}.namespaces[{ni}].name: {ns.name!r} is already there")
            names.add(ns.name)
            if ns.name in ("aks-istio-system", "aks-istio-ingress"):
                problems.append(f"{at}.namespaces[{ni}].name: {ns.name} belongs to the mesh "
                                "add-on, which makes it")
            for fi, f in enumerate(ns.faults):
                if f.revision != "*" and f.revision not in catalog:
                    problems.append(f"{at}.namespaces[{ni}].faults[{fi}].revision: "
                                    f"{f.revision} is not a revision the sandbox knows")
    known = {c.key for c in spec.clusters} | {c.name for c in spec.clusters}
    for ii, incident in enumerate(spec.traffic.incidents):
        for name in incident.clusters or []:
            if name not in known:
                problems.append(f"traffic.incidents[{ii}].clusters: {name!r} is not a cluster "
                                f"of this world ({', '.join(sorted(known))})")
    return problems


def _check_manifests(world: LoadedWorld) -> None:
    """Each document: a mapping with apiVersion, kind, metadata.name, in this namespace."""
    for (ci, ni), docs in world.manifests.items():
        ns = world.spec.clusters[ci].namespaces[ni]
        names: set[str] = set()
        for d in docs:
            if d.body is None:
                continue
            b = d.body
            if not isinstance(b, dict):
                raise WorldError(f"{d.where}: a Kubernetes object is a mapping; got "
                                 f"{type(b).__name__}")
            for fld in ("apiVersion", "kind"):
                if not isinstance(b.get(fld), str) or not b[fld]:
                    raise WorldError(f"{d.where}: {fld} is missing (every object needs "
                                     "apiVersion, kind and metadata.name)")
            meta = b.get("metadata")
            if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) \
                    or not meta["name"]:
                raise WorldError(f"{d.where}: {b['kind']} has no metadata.name")
            other = meta.get("namespace")
            if other is not None and other != ns.name:
                raise WorldError(
                    f"{d.where}: the namespace from the provided object {other!r} does not "
                    f"match the namespace {ns.name!r} the world applies it to (kubectl apply "
                    f"-n {ns.name} refuses it too); remove metadata.namespace or move it")
            names.add(b["metadata"]["name"])
        for fi, f in enumerate(ns.faults):
            if f.workload not in names:
                kinds = sorted(n for n in names)
                raise WorldError(
                    f"{world.path}: clusters[{ci}].namespaces[{ni}].faults[{fi}].workload: "
                    f"no object named {f.workload!r} in the manifests of namespace {ns.name}"
                    + (f" ({', '.join(kinds[:12])})" if kinds else " (it has none)"))


def build(world: World, loaded: LoadedWorld) -> None:
    """Make the world's clusters in ``world``; :class:`WorldError` if a manifest cannot be
    applied (unknown kind, invalid object), naming its document."""
    spec = loaded.spec
    world.clock_speed = spec.clock_speed
    world.weather = weather(loaded)
    world.rps_per_pod = spec.traffic.rps_per_pod
    world.seeding = True
    try:
        for ci, c in enumerate(spec.clusters):
            cl = world.add_cluster(
                c.name, subscription=c.subscription, resource_group=c.rg,
                location=c.location, kubernetes_version=c.kubernetes_version,
                revisions=list(c.revisions),
                entra_id=c.entra_id.model_dump() if c.entra_id else None,
                open_service_mesh=c.open_service_mesh, node_count=c.node_count,
                gateway_api=c.gateway_api, ingress_gateways=tuple(c.ingress_gateways))
            for tag, rev in c.revision_tags.items():
                world.set_revision_tag(c.name, tag, rev)
            for rev, mesh in c.mesh_config.items():
                try:  # as `kubectl apply -f istio-shared-configmap-<rev>.yaml` (AKS doc)
                    world.create(c.name, {
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": SHARED_MESH_CONFIG + rev, "namespace": ISTIO_NS},
                        "data": {"mesh": yaml.safe_dump(mesh, sort_keys=False)}})
                except ApiError as exc:
                    raise WorldError(f"{loaded.path}: clusters[{ci}].mesh_config.{rev}: "
                                     f"{exc.message}") from None
            with world.lock:
                for name, window in c.maintenance.items():
                    cl.maintenance[name] = {"maintenanceWindow": maintenance_configs.stored_window(
                        window, time.time())}
            if c.operation_in_progress is not None and c.operation_in_progress.starts == "world":
                world.start_node_pool_operation(cl, c.operation_in_progress.kind,
                                                c.operation_in_progress.seconds)
            with world.lock:
                for ns in c.namespaces:
                    world.ensure_namespace(cl, ns.name, ns.labels)
                    if ns.traffic:
                        world.traffic[(c.name, ns.name)] = Traffic(
                            ns.traffic.rps, ns.traffic.error_rate, ns.traffic.p99_ms,
                            ns.traffic.noise)
            apply_faults(world, loaded)
            docs = [(ni, d) for ni in range(len(c.namespaces))
                    for d in loaded.manifests.get((ci, ni), []) if d.body is not None]
            docs.sort(key=lambda x: x[1].body.get("kind") != "CustomResourceDefinition")
            for ni, d in docs:
                try:
                    world.create(c.name, d.body, c.namespaces[ni].name)
                except ApiError as exc:
                    raise WorldError(f"{d.where}: {exc.message}") from None
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise WorldError(f"{d.where}: {d.body.get('kind')} "
                                     f"{d.body['metadata']['name']} is not a valid object "
                                     f"({type(exc).__name__}: {exc})") from None
            with world.lock:
                # the world has been running for long: a rollout that is not complete has
                # passed its progress deadline
                for key in list(cl.index.get("Deployment", ())):
                    cl.progress[key] = time.time() - 10 ** 6
                    world._dirty.append((cl, key))
                world._settle()
    finally:
        world.seeding = False


def apply_faults(world: World, loaded: LoadedWorld) -> None:
    """Stage the world file's faults (again, after the control API cleared them)."""
    with world.lock:
        for c in loaded.spec.clusters:
            for ns in c.namespaces:
                for f in ns.faults:
                    world.workload_faults[(c.name, ns.name, f.workload, f.revision)] = Fault(
                        error_rate=f.error_rate or 0.0, latency_ms=f.latency_ms,
                        crashloop=f.crashloop, source_error_rate=f.source_error_rate or 0.0,
                        grpc_status=f.grpc_status)


def weather(loaded: LoadedWorld, now: float | None = None) -> Weather:
    """The world file's ``traffic:`` as the world's :class:`~sandbox.world.Weather`; a
    one-off incident's ``at_s`` counts from ``now`` (the world's start)."""
    spec = loaded.spec.traffic
    now = time.time() if now is None else now
    names = {c.key: c.name for c in loaded.spec.clusters} | {
        c.name: c.name for c in loaded.spec.clusters}
    once, recurring = [], []
    for i in spec.incidents:
        clusters = tuple(names[c] for c in i.clusters) if i.clusters is not None else None
        if i.at_s is not None:
            once.append(Incident(now + i.at_s, now + i.at_s + i.duration_s, i.error_rate,
                                 i.latency_x, clusters))
        elif i.every_s is not None:
            recurring.append(RecurringIncident(i.every_s, i.duration_s, i.error_rate,
                                               i.latency_x, clusters))
    return Weather(noise=spec.noise,
                   diurnal_amplitude=spec.diurnal.amplitude if spec.diurnal else 0.0,
                   peak_hour=spec.diurnal.peak_hour if spec.diurnal else 14.0,
                   incidents=once, recurring=recurring, seed=spec.seed)


def load_default() -> LoadedWorld:
    return load(DEFAULT_WORLD)
