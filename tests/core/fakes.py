"""An in-memory world behind the core's ports, for pure tests of the workflow.

It stands for ARM, Kubernetes and Prometheus (external systems), never for meshops' own code.
Rollouts finish at the next observation; every write is counted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import NormalDist

from workflows.errors import ArmBusy, MetricsBusy, MetricsUnavailable, TemporaryError
from workflows.maintenance import MaintenanceWindow
from workflows.model import NamespaceMetrics
from workflows.ports import (
    BatchWorkload,
    GatewayApiGateway,
    MeshState,
    Namespace,
    OperationStatus,
    Pod,
    RevisionProfile,
    Workload,
)
from workflows.traffic import ISTIO_BUCKETS_MS, TrafficWindow


def _window(ns: str, rev: str | None, t0: float, t1: float, m: NamespaceMetrics,
            reporter: str = "destination") -> TrafficWindow:
    n = int(m.requests)
    bad = round(n * (100.0 - (m.success_rate or 100.0)) / 100.0)
    median = (m.p99_ms or 50.0) / math.exp(2.3263478740408408 * 0.5)
    buckets = {le: round(n * NormalDist().cdf(math.log(le / median) / 0.5))
               for le in ISTIO_BUCKETS_MS[:-1]}
    buckets[float("inf")] = n
    return TrafficWindow(subject=ns, revision=rev, reporter=reporter, start=t0, end=t1,
                         requests=n, codes={"200": n - bad, "503": bad} if bad else {"200": n},
                         buckets=buckets)


@dataclass
class FakeWorld:
    revisions: list[str] = field(default_factory=lambda: ["asm-1-25"])
    targets: list[str] = field(default_factory=lambda: ["asm-1-26"])
    mode: str = "Istio"
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    # each list_namespaces call: None for every namespace, else the revisions it selected
    namespace_lists: list[list[str] | None] = field(default_factory=list)
    workloads: dict[tuple[str, str], str | None] = field(default_factory=dict)
    metrics_by_rev: dict[tuple[str, str], NamespaceMetrics] = field(default_factory=dict)
    metrics_down: bool = False
    background_busy: bool = False  # reads ahead of need refused (every slot taken)
    scrape_interval_s: float = 1.0  # MetricsApi: a sandbox-fast Prometheus
    conflict_once: bool = False
    conflicts_left: int = 0  # this many PUTs answered 409 (with ``retry_after`` seconds)
    retry_after: float = 5.0
    op_polls_left: int = 0
    writes: Counter[str] = field(default_factory=Counter)
    #: each windows() read: (subjects, gateways, start, end, repeat)
    window_reads: list[tuple[frozenset[str], frozenset[str], float, float, bool]] = field(
        default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)  # revision → patch new pods get
    osm: bool = False
    outside: list[str] = field(default_factory=list)
    region: list[RevisionProfile] = field(default_factory=lambda: [
        RevisionProfile("asm-1-25", ("asm-1-26",), ("1.30", "1.31")),
        RevisionProfile("asm-1-26", (), ("1.30", "1.31"))])
    op_fails: bool = False
    busy_puts: int = 0  # this many revision PUTs answered 409 OperationNotAllowed (ArmBusy)
    revision_puts_fail: int = 0  # this many revision PUTs end Failed
    failed_state: bool = False  # provisioningState Failed (after a failed operation)
    ingress: set[str] = field(default_factory=set)
    pod_versions: dict[tuple[str, str], str] = field(default_factory=dict)
    # StatefulSets: (ns, name) → {replicas, strategy, partition}; their pods keep the revision
    # they were made with until deleted (OnDelete) or replaced from the partition up
    statefulsets: dict[tuple[str, str], dict[str, object]] = field(default_factory=dict)
    sts_pods: dict[tuple[str, str, int], str | None] = field(default_factory=dict)
    crashloop: set[tuple[str, str]] = field(default_factory=set)  # (ns, workload), any rev
    canary_crash: set[tuple[str, str]] = field(default_factory=set)  # only on asm-1-26
    stuck: set[tuple[str, str]] = field(default_factory=set)  # restarted onto asm-1-26: stuck
    no_inject: set[tuple[str, str]] = field(default_factory=set)
    bare_pods: dict[tuple[str, str], str | None] = field(default_factory=dict)
    finished_job_pods: dict[tuple[str, str], str | None] = field(default_factory=dict)
    batch: list[BatchWorkload] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    gateways_late: set[str] = field(default_factory=set)  # revisions whose gateways lag once
    config_maps: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # revision tag → revision
    # metric templates: rendered query → its value on the canary (asm-1-26) revision
    template_values: dict[str, float | None] = field(default_factory=dict)
    gateways: dict[tuple[str, str], str | None] = field(default_factory=dict)  # → own label
    # the time a namespace's workloads were last restarted (from the restartedAt token),
    # and the revision its pods ran before: what the windows' revision follows
    moved: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    history_from: float = -1e12  # Prometheus holds windows from this time on
    outside_mesh: set[str] = field(default_factory=set)  # no Istio metrics before a restart
    # a fleet-wide incident: (from, until, success rate) in every namespace and gateway
    incident: tuple[float, float, float] | None = None
    # the add-on ingress gateways' traffic: deployment name → its metrics (default healthy)
    gateway_metrics: dict[str, NamespaceMetrics] = field(default_factory=dict)
    # AKS maintenance configurations: cluster → configuration name → its window
    maintenance: dict[str, dict[str, MaintenanceWindow]] = field(default_factory=dict)

    @classmethod
    def seeded(cls, names: list[str], per_ns: int = 2) -> FakeWorld:
        w = cls()
        for ns in names:
            w.namespaces[ns] = {"istio.io/rev": "asm-1-25"}
            for i in range(per_ns):
                w.workloads[(ns, f"app{i}")] = None
        w.namespaces["kube-system"] = {}
        return w

    # MeshApi
    mesh = property(lambda self: self)

    def get_mesh(self, cluster: str) -> MeshState:
        state = "Updating" if self.op_polls_left > 0 else (
            "Failed" if self.failed_state else "Succeeded")
        return MeshState(self.mode, list(self.revisions), state, "1.30.4", "westus2",
                         osm_enabled=self.osm, ingress=tuple(sorted(self.ingress)))

    def set_ingress(self, cluster: str, mode: str, enabled: bool) -> str | None:
        self.writes[f"ingress:{mode}:{enabled}"] += 1
        (self.ingress.add if enabled else self.ingress.discard)(mode)
        self.op_polls_left = 1
        return "https://arm/operations/3"

    def ingress_gateways(self) -> dict[str, bool]:
        return {m: True for m in self.ingress} if self.op_polls_left == 0 else {}

    def revision_gateways(self) -> dict[tuple[str, str], bool]:
        # each revision's gateway for every enabled mode; a canary's becomes available one
        # observation after its control plane (gateways_late)
        out = {(m, r): True for m in self.ingress for r in self.revisions}
        for key in list(out):
            if key[1] in self.gateways_late:
                out[key] = False
                self.gateways_late.discard(key[1])
        return out

    def revision_profiles(self, cluster: str) -> list[RevisionProfile]:
        return self.region

    def set_mesh(self, cluster: str, mode: str, revision: str | None) -> str | None:
        self.writes[f"mesh:{mode}:{revision}"] += 1
        if self.op_fails:
            self.op_polls_left = 1
            return "https://arm/operations/failing"
        self.mode = mode
        self.revisions = [revision or "asm-1-25"] if mode == "Istio" else []
        self.op_polls_left = 1
        return "https://arm/operations/2"

    def istio_outside_addon(self) -> list[str]:
        return list(self.outside)

    def upgrade_targets(self, cluster: str) -> list[str]:
        return list(self.targets)

    def maintenance_windows(self, cluster: str) -> dict[str, MaintenanceWindow]:
        return dict(self.maintenance.get(cluster, {}))

    def set_revisions(self, cluster: str, revisions: list[str]) -> str | None:
        if self.busy_puts > 0:
            self.busy_puts -= 1
            raise ArmBusy("ARM answered 409 OperationNotAllowed: Operation is not allowed "
                          "because there's an in progress upgrade node pool operation", 0)
        if self.conflict_once or self.conflicts_left > 0:
            self.conflict_once = False
            self.conflicts_left = max(0, self.conflicts_left - 1)
            raise TemporaryError("ARM answered 409: another operation is in progress",
                                 self.retry_after)
        self.writes["put:" + ",".join(revisions)] += 1
        self.revisions = list(revisions)
        self.op_polls_left = 1
        if self.revision_puts_fail > 0:  # AKS leaves the cluster as the PUT left it, Failed
            self.revision_puts_fail -= 1
            self.failed_state = True
            return "https://arm/operations/failing"
        self.failed_state = False
        return "https://arm/operations/1"

    def operation_status(self, cluster: str, url: str) -> OperationStatus:
        if self.op_polls_left > 0:
            self.op_polls_left -= 1
            return OperationStatus("InProgress")
        if url.endswith("failing"):
            return OperationStatus("Failed", "MeshInstallFailed", "istiod did not start")
        return OperationStatus("Succeeded")

    # ClusterApi
    def cluster_api(self, cluster: str) -> FakeWorld:
        return self

    def _rev(self, ns: str) -> str | None:
        """The revision new pods of ``ns`` get: its label, resolved through a tag."""
        label = self.namespaces[ns].get("istio.io/rev")
        return self.tags.get(label, label) if label else None

    def list_namespaces(self, labelled: Sequence[str] | None = None) -> list[Namespace]:
        self.namespace_lists.append(None if labelled is None else sorted(labelled))
        return [Namespace(n, dict(lbl), self.tags.get(lbl.get("istio.io/rev", "")))
                for n, lbl in self.namespaces.items()
                if labelled is None or lbl.get("istio.io/rev") in labelled]

    def get_namespaces(self, names: list[str]) -> list[Namespace]:
        return [Namespace(n, dict(self.namespaces[n]),
                          self.tags.get(self.namespaces[n].get("istio.io/rev", "")))
                for n in names if n in self.namespaces]

    def revision_tags(self) -> dict[str, str]:
        return dict(self.tags)

    def set_revision_tag(self, tag: str, revision: str) -> None:
        self.writes[f"tag:{tag}:{revision}"] += 1
        self.tags[tag] = revision

    def list_gateways(self, namespaces: list[str]) -> list[GatewayApiGateway]:
        return [GatewayApiGateway(ns, n, lbl) for (ns, n), lbl in self.gateways.items()
                if ns in namespaces]

    def set_gateway_revision(self, namespace: str, name: str, revision: str) -> None:
        self.writes[f"gateway:{namespace}/{name}:{revision}"] += 1
        self.gateways[(namespace, name)] = revision

    def set_namespace_revision(self, namespace: str, revision: str) -> None:
        self.writes[f"label:{namespace}:{revision}"] += 1
        self.namespaces[namespace]["istio.io/rev"] = revision

    def _crashing(self, ns: str, name: str) -> bool:
        return (ns, name) in self.crashloop or (
            (ns, name) in self.canary_crash and self._rev(ns)
            == "asm-1-26")

    def _stuck(self, ns: str, name: str, token: str | None) -> bool:
        return ((ns, name) in self.stuck and token is not None
                and self._rev(ns) == "asm-1-26")

    def add_statefulset(self, ns: str, name: str, replicas: int = 3,
                        strategy: str = "RollingUpdate", partition: int = 0) -> None:
        self.statefulsets[(ns, name)] = {"replicas": replicas, "strategy": strategy,
                                         "partition": partition, "token": None}
        for i in range(replicas):
            self.sts_pods[(ns, name, i)] = self._rev(ns)

    def list_workloads(self, namespaces: list[str]) -> list[Workload]:
        out = [Workload("Deployment", ns, n, tok, 1, 1, 1, 1,
                        0 if self._crashing(ns, n) or self._stuck(ns, n, tok) else 1,
                        progress_deadline_s=600.0, deadline_exceeded=self._stuck(ns, n, tok),
                        injection_disabled=(ns, n) in self.no_inject)
               for (ns, n), tok in self.workloads.items() if ns in namespaces]
        for (ns, n), spec in self.statefulsets.items():
            if ns not in namespaces:
                continue
            replicas, partition = int(str(spec["replicas"])), int(str(spec["partition"]))
            updated = sum(1 for (pns, pn, i), rev in self.sts_pods.items()
                          if (pns, pn) == (ns, n) and rev == self._rev(ns))
            out.append(Workload("StatefulSet", ns, n, spec["token"], 1, 1,  # type: ignore[arg-type]
                                replicas, updated, replicas, ready=replicas,
                                strategy=str(spec["strategy"]), partition=partition))
        return out

    def restart_workload(self, workload: Workload, token: str) -> None:
        rev = self._rev(workload.namespace)
        at = datetime.strptime(token, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        if self.moved.get(workload.namespace, (None,))[0] != at:
            before = self.moved.get(workload.namespace, (0.0, self.stable_of(workload)))[1]
            self.moved[workload.namespace] = (at, before)
        self.writes[f"restart:{workload.namespace}/{workload.name}:{rev}"] += 1
        key = (workload.namespace, workload.name)
        if workload.kind == "StatefulSet":
            spec = self.statefulsets[key]
            spec["token"] = token
            if spec["strategy"] == "RollingUpdate":  # from the partition up, at once
                for (ns, n, i) in list(self.sts_pods):
                    if (ns, n) == key and i >= int(str(spec["partition"])):
                        self.sts_pods[(ns, n, i)] = rev
            return
        self.workloads[key] = token
        self.pod_versions[key] = self.versions.get(rev, "1.x")

    def delete_pod(self, namespace: str, name: str) -> None:
        self.writes[f"delete:{namespace}/{name}"] += 1
        self.deleted.append(f"{namespace}/{name}")
        sts, _, ordinal = name.rpartition("-")
        if (namespace, sts, int(ordinal)) in self.sts_pods:  # the controller makes it anew
            self.sts_pods[(namespace, sts, int(ordinal))] = self._rev(namespace)
        self.bare_pods.pop((namespace, name), None)

    def get_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        data = self.config_maps.get((namespace, name))
        return None if data is None else dict(data)

    def create_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self.writes[f"configmap:{namespace}/{name}"] += 1
        self.config_maps.setdefault((namespace, name), dict(data))

    def list_batch(self, namespaces: list[str]) -> list[BatchWorkload]:
        return [b for b in self.batch if b.namespace in namespaces]

    def list_pods(self, namespaces: list[str]) -> list[Pod]:
        pods = [Pod(ns, n + "-x", None if (ns, n) in self.no_inject
                    else self._rev(ns),
                    self.pod_versions.get((ns, n), "1.x"), "Running",
                    waiting_reason="CrashLoopBackOff" if self._crashing(ns, n) else None,
                    owner_kind="Deployment", owner=n, ready=not self._crashing(ns, n))
                for (ns, n) in self.workloads if ns in namespaces]
        pods += [Pod(ns, f"{n}-{i}", rev, "1.x", "Running", owner_kind="StatefulSet",
                     owner=n, ordinal=i)
                 for (ns, n, i), rev in self.sts_pods.items() if ns in namespaces]
        pods += [Pod(ns, n, rev, "1.x", "Running") for (ns, n), rev in self.bare_pods.items()
                 if ns in namespaces]
        pods += [Pod(ns, n, rev, "1.x", "Succeeded", owner_kind="Job", owner=n.rsplit("-", 1)[0])
                 for (ns, n), rev in self.finished_job_pods.items() if ns in namespaces]
        return pods

    def control_plane_revisions(self) -> dict[str, bool]:
        return {r: True for r in self.revisions}

    # MetricsApi
    def metrics(self, cluster: str) -> FakeWorld:
        return self

    def value(self, query: str) -> float | None:
        if self.metrics_down:
            raise MetricsUnavailable("Prometheus at http://prom is unreachable")
        self.writes[f"query:{query}"] += 1
        return self.template_values.get(query)

    def windows(self, namespaces: list[str], gateways: list[str], start: float, end: float,
                step_s: float, repeat: bool = False, background: bool = False
                ) -> list[TrafficWindow]:
        """Istio's windows as Prometheus would give them: per namespace and aligned window,
        ``metrics_by_rev[(ns, revision)]``'s requests (default 50,000 a window), its success
        rate as 503s and its p99 as a log-normal latency (σ 0.5) in Istio's buckets; the
        revision is what the namespace's pods ran then (its last restart splits the
        windows; a window across it is left out, as its pods were mixed)."""
        self.window_reads.append((frozenset(namespaces), frozenset(gateways), start, end,
                                  repeat))
        if background and self.background_busy:
            raise MetricsBusy("as many reads ahead of need as allowed are under way")
        if self.metrics_down:
            raise MetricsUnavailable("Prometheus at http://prom is unreachable")
        out = []
        step = max(1, math.ceil(step_s))
        t = math.ceil(max(start, self.history_from) / step) * step + step
        while t <= end:
            for gw in gateways:
                rev = gw.rsplit("-", 3)[-3:]
                m = self.gateway_metrics.get(gw) or NamespaceMetrics(
                    requests=50000, success_rate=100.0, p99_ms=50.0)
                out.append(_window(f"gateway/{gw}", "-".join(rev), t - step, t,
                                   self._weather(m, t), "source"))
            for ns in namespaces:
                rev = self._window_revision(ns, t - step, t)
                if rev is False or (ns in self.outside_mesh
                                    and t - step < self.moved.get(ns, (math.inf,))[0]):
                    continue
                # a rollover keeps the revision: the metrics are the new patch's, which only
                # pods restarted since the rollover began run
                at, before = self.moved.get(ns, (None, None))
                old = rev in self.versions and (at is None or t <= at or before != rev)
                m = (None if old else self.metrics_by_rev.get((ns, rev or ""))) or \
                    NamespaceMetrics(requests=50000, success_rate=100.0, p99_ms=50.0)
                out.append(_window(ns, rev, t - step, t, self._weather(m, t)))
            t += step
        return out

    def _weather(self, m: NamespaceMetrics, t: float) -> NamespaceMetrics:
        if self.incident is None or not self.incident[0] < t <= self.incident[1]:
            return m
        return m.evolve(success_rate=min(m.success_rate or 100.0, self.incident[2]))

    def _window_revision(self, ns: str, t0: float, t1: float) -> str | None | bool:
        at, before = self.moved.get(ns, (None, None))
        if at is None or t0 >= at:
            return self._rev(ns)
        return before if t1 <= at else False

    def stable_of(self, workload: Workload) -> str | None:
        return self.revisions[0] if self.revisions else None
