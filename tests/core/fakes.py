"""An in-memory world behind the core's ports, for pure tests of the workflow.

It stands for ARM, Kubernetes and Prometheus (external systems), never for meshops' own code.
Rollouts finish at the next observation; every write is counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from workflows.errors import MetricsUnavailable, TemporaryError
from workflows.model import NamespaceMetrics
from workflows.ports import (
    MeshState,
    Namespace,
    OperationStatus,
    Pod,
    RevisionProfile,
    Workload,
)


@dataclass
class FakeWorld:
    revisions: list[str] = field(default_factory=lambda: ["asm-1-25"])
    targets: list[str] = field(default_factory=lambda: ["asm-1-26"])
    mode: str = "Istio"
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    workloads: dict[tuple[str, str], str | None] = field(default_factory=dict)
    metrics_by_rev: dict[tuple[str, str], NamespaceMetrics] = field(default_factory=dict)
    metrics_down: bool = False
    conflict_once: bool = False
    conflicts_left: int = 0  # this many PUTs answered 409 (with ``retry_after`` seconds)
    retry_after: float = 5.0
    op_polls_left: int = 0
    writes: Counter[str] = field(default_factory=Counter)
    versions: dict[str, str] = field(default_factory=dict)  # revision → patch new pods get
    osm: bool = False
    outside: list[str] = field(default_factory=list)
    region: list[RevisionProfile] = field(default_factory=lambda: [
        RevisionProfile("asm-1-25", ("asm-1-26",), ("1.30", "1.31")),
        RevisionProfile("asm-1-26", (), ("1.30", "1.31"))])
    op_fails: bool = False
    ingress: set[str] = field(default_factory=set)
    pod_versions: dict[tuple[str, str], str] = field(default_factory=dict)

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
        state = "Updating" if self.op_polls_left > 0 else "Succeeded"
        return MeshState(self.mode, list(self.revisions), state, "1.30.4", "westus2",
                         osm_enabled=self.osm, ingress=tuple(sorted(self.ingress)))

    def set_ingress(self, cluster: str, mode: str, enabled: bool) -> str | None:
        self.writes[f"ingress:{mode}:{enabled}"] += 1
        (self.ingress.add if enabled else self.ingress.discard)(mode)
        self.op_polls_left = 1
        return "https://arm/operations/3"

    def ingress_gateways(self) -> dict[str, bool]:
        return {m: True for m in self.ingress} if self.op_polls_left == 0 else {}

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

    def set_revisions(self, cluster: str, revisions: list[str]) -> str | None:
        if self.conflict_once or self.conflicts_left > 0:
            self.conflict_once = False
            self.conflicts_left = max(0, self.conflicts_left - 1)
            raise TemporaryError("ARM answered 409: another operation is in progress",
                                 self.retry_after)
        self.writes["put:" + ",".join(revisions)] += 1
        self.revisions = list(revisions)
        self.op_polls_left = 1
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

    def list_namespaces(self) -> list[Namespace]:
        return [Namespace(n, dict(lbl)) for n, lbl in self.namespaces.items()]

    def set_namespace_revision(self, namespace: str, revision: str) -> None:
        self.writes[f"label:{namespace}:{revision}"] += 1
        self.namespaces[namespace]["istio.io/rev"] = revision

    def list_workloads(self, namespaces: list[str]) -> list[Workload]:
        return [Workload("Deployment", ns, n, tok, 1, 1, 1, 1, 1)
                for (ns, n), tok in self.workloads.items() if ns in namespaces]

    def restart_workload(self, workload: Workload, token: str) -> None:
        rev = self.namespaces[workload.namespace]["istio.io/rev"]
        self.writes[f"restart:{workload.namespace}/{workload.name}:{rev}"] += 1
        self.workloads[(workload.namespace, workload.name)] = token
        self.pod_versions[(workload.namespace, workload.name)] = self.versions.get(rev, "1.x")

    def list_pods(self, namespaces: list[str]) -> list[Pod]:
        return [Pod(ns, n + "-x", self.namespaces[ns].get("istio.io/rev"),
                    self.pod_versions.get((ns, n), "1.x"), "Running")
                for (ns, n) in self.workloads if ns in namespaces]

    def control_plane_revisions(self) -> dict[str, bool]:
        return {r: True for r in self.revisions}

    # MetricsApi
    def metrics(self, cluster: str) -> FakeWorld:
        return self

    def sample(self, namespaces: list[str], window_s: float) -> dict[str, NamespaceMetrics]:
        if self.metrics_down:
            raise MetricsUnavailable("Prometheus at http://prom is unreachable")
        out = {}
        for ns in namespaces:
            rev = self.namespaces[ns].get("istio.io/rev", "")
            out[ns] = self.metrics_by_rev.get(
                (ns, rev), NamespaceMetrics(requests=1000, success_rate=100.0, p99_ms=50.0))
        return out
