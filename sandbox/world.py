"""The sandbox's world: managed clusters, their Kubernetes objects, operations and faults.

One lock guards everything; every emulator calls :meth:`World.reconcile` before it reads, so
time-driven behaviour (an ARM operation finishing, pods being replaced after a pod-template
change) happens at the moment it is due, whoever looks first. A background thread also
reconciles so watches see changes without a request.

What it models (DESIGN.md §1, §8):
- ``serviceMeshProfile.istio.revisions`` per cluster, changed only through a long-running
  PUT that takes ``operation_s`` seconds; ``istiod-<revision>`` Deployments in
  ``aks-istio-system`` follow the revision list when the operation ends.
- Namespaces, Deployments, StatefulSets, DaemonSets and their pods. A changed pod template
  bumps ``metadata.generation``; ``rollout_s`` seconds later the pods are replaced, and a new
  pod gets the sidecar of its namespace's ``istio.io/rev`` label (revision label,
  ``sidecar.istio.io/status`` annotation, ``istio-proxy`` container with the revision's
  patch version as image tag).
- Counters of what changed, for tests: namespace relabels per (namespace, revision) and
  workload restarts per (workload, revision), and faults per (cluster, namespace, revision).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from sandbox.resources import cluster_body

REV_LABEL = "istio.io/rev"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
ISTIO_NS = "aks-istio-system"
PROXY_IMAGE = "mcr.microsoft.com/oss/istio/proxyv2:{version}-distroless"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


def load_revisions() -> list[dict[str, Any]]:
    text = resources.files("sandbox").joinpath("data/revisions.yaml").read_text()
    return list(yaml.safe_load(text)["revisions"])


def load_bookinfo() -> list[dict[str, Any]]:
    text = resources.files("sandbox").joinpath("data/bookinfo.yaml").read_text()
    return [d for d in yaml.safe_load_all(text) if d]


@dataclass
class Fault:
    """Behaviour of the canary (or any) revision in one namespace, for staging a bad canary."""

    error_rate: float = 0.0  # fraction of requests answered 5xx
    latency_ms: float | None = None  # median latency; None: the workload's default
    crashloop: bool = False


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


@dataclass
class Cluster:
    name: str  # the AKS resource name
    subscription: str
    resource_group: str
    location: str
    kubernetes_version: str
    arm: dict[str, Any]  # the managedCluster body, as ARM returns it
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    pending_rollouts: dict[tuple[str, str, str], float] = field(default_factory=dict)
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    #: (kind, namespace, name) of a workload → names of its pods, so status is cheap
    pods_by_owner: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    token: str = field(default_factory=lambda: "k8s-" + uuid.uuid4().hex)
    operation: Operation | None = None

    @property
    def revisions(self) -> list[str]:
        mesh = self.arm["properties"].get("serviceMeshProfile") or {}
        return list((mesh.get("istio") or {}).get("revisions") or [])


class World:
    def __init__(self, operation_s: float = 2.0, rollout_s: float = 1.0,
                 rps_per_pod: float = 10.0) -> None:
        self.lock = threading.RLock()
        self.operation_s = operation_s
        self.rollout_s = rollout_s
        self.rps_per_pod = rps_per_pod
        self.catalog: dict[str, dict[str, Any]] = {r["revision"]: r for r in load_revisions()}
        self.clusters: dict[str, Cluster] = {}
        self.operations: dict[str, Operation] = {}
        self.faults: dict[tuple[str, str, str], Fault] = {}
        self.relabels: Counter[str] = Counter()
        self.restarts: Counter[str] = Counter()
        self.arm_faults: list[int] = []  # statuses to answer the next ARM writes with
        self.failing_operations = 0  # the next operations end Failed, the cluster unchanged
        self.held: dict[str, dict[str, Any]] = {}  # revisions not yet released to ARM
        self._rv = itertools.count(1000)

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
                    namespaces: dict[str, dict[str, str]], bookinfo_in: list[str]) -> Cluster:
        """Create a managed cluster from the shape of the REST spec's create example."""
        body = cluster_body(subscription, resource_group, name, location, kubernetes_version,
                            revisions)
        c = Cluster(name, subscription, resource_group, location, kubernetes_version, body)
        with self.lock:
            self.clusters[name] = c
            for ns in ("default", "kube-system", ISTIO_NS, *namespaces):
                self._put(c, "Namespace", "", ns, {
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns, "labels": dict(namespaces.get(ns, {}))},
                    "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
            self._deployment(c, "kube-system", "coredns", {"k8s-app": "kube-dns"}, 2,
                             "mcr.microsoft.com/oss/kubernetes/coredns:v1.11.3")
            for ns in bookinfo_in:
                for doc in load_bookinfo():
                    if doc["kind"] == "Deployment":
                        d = copy.deepcopy(doc)
                        d["metadata"]["namespace"] = ns
                        self._new_workload(c, d)
            self._sync_istiod(c)
        return c

    def _deployment(self, c: Cluster, ns: str, name: str, labels: dict[str, str],
                    replicas: int, image: str) -> None:
        self._new_workload(c, {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)},
                                  "spec": {"containers": [{"name": name, "image": image}]}}}})

    def _new_workload(self, c: Cluster, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        meta.setdefault("labels", {})
        meta.update(uid=str(uuid.uuid4()), generation=1,
                    creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        obj["spec"].setdefault("replicas", 1)
        if obj["kind"] == "StatefulSet":
            obj["spec"].setdefault("serviceName", meta["name"])
        key = (obj["kind"], meta["namespace"], meta["name"])
        self._put(c, obj["kind"], meta["namespace"], meta["name"], obj)
        self._replace_pods(c, key)

    # ------------------------------------------------------------------ objects

    def _put(self, c: Cluster, kind: str, ns: str, name: str, obj: dict[str, Any],
             event: str | None = None) -> None:
        key = (kind, ns, name)
        existed = key in c.objects
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        c.objects[key] = obj
        if kind == "Pod":
            owner = _owner(obj)
            if owner:
                c.pods_by_owner.setdefault(owner, set()).add(name)
        c.events.append((int(obj["metadata"]["resourceVersion"]),
                         event or ("MODIFIED" if existed else "ADDED"), copy.deepcopy(obj)))
        del c.events[:-5000]

    def _delete(self, c: Cluster, key: tuple[str, str, str]) -> None:
        obj = c.objects.pop(key, None)
        if obj is not None and key[0] == "Pod":
            owner = _owner(obj)
            if owner:
                c.pods_by_owner.get(owner, set()).discard(key[2])
        if obj is not None:
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
            c.events.append((int(obj["metadata"]["resourceVersion"]), "DELETED", obj))

    def list_objects(self, cluster: str, kind: str, ns: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            self.reconcile()
            c = self.clusters[cluster]
            return [copy.deepcopy(o) for (k, n, _), o in sorted(c.objects.items())
                    if k == kind and (ns is None or n == ns)]

    def get(self, cluster: str, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            self.reconcile()
            obj = self.clusters[cluster].objects.get((kind, ns, name))
            return copy.deepcopy(obj) if obj else None

    def patch(self, cluster: str, kind: str, ns: str, name: str,
              patch: dict[str, Any]) -> dict[str, Any] | None:
        """Apply a JSON merge patch (RFC 7386) and the controllers' reaction to it."""
        with self.lock:
            self.reconcile()
            c = self.clusters[cluster]
            key = (kind, ns, name)
            obj = c.objects.get(key)
            if obj is None:
                return None
            before = copy.deepcopy(obj)
            merged: dict[str, Any] = merge_patch(copy.deepcopy(obj), patch)  # an object
            if kind == "Namespace":
                old = (before["metadata"].get("labels") or {}).get(REV_LABEL)
                new = (merged["metadata"].get("labels") or {}).get(REV_LABEL)
                if old != new:
                    self.relabels[f"{cluster}/{name}:{new}"] += 1
            if kind in WORKLOAD_KINDS and merged["spec"].get("template") != \
                    before["spec"].get("template"):
                merged["metadata"]["generation"] = before["metadata"].get("generation", 1) + 1
                rev = self._ns_revision(c, ns)
                self.restarts[f"{cluster}/{ns}/{kind}/{name}:{rev}"] += 1
                c.pending_rollouts[key] = time.time() + self.rollout_s
            self._put(c, kind, ns, name, merged)
            return copy.deepcopy(merged)

    def _ns_revision(self, c: Cluster, ns: str) -> str | None:
        obj = c.objects.get(("Namespace", "", ns))
        return ((obj or {}).get("metadata", {}).get("labels") or {}).get(REV_LABEL)

    def workload_status(self, c: Cluster, obj: dict[str, Any]) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        replicas = obj["spec"].get("replicas", 1)
        pods = self.pods_of(c, key)
        ready = sum(1 for p in pods if p["status"]["containerStatuses"][0]["ready"])
        updating = key in c.pending_rollouts
        gen = obj["metadata"]["generation"]
        if obj["kind"] == "DaemonSet":
            return {"currentNumberScheduled": replicas, "desiredNumberScheduled": replicas,
                    "numberReady": ready, "numberAvailable": ready,
                    "updatedNumberScheduled": 0 if updating else len(pods),
                    "observedGeneration": gen, "numberMisscheduled": 0}
        return {"observedGeneration": gen, "replicas": replicas,
                "updatedReplicas": 0 if updating else len(pods),
                "readyReplicas": ready, "availableReplicas": ready,
                **({"currentReplicas": replicas} if obj["kind"] == "StatefulSet" else {})}

    def pods_of(self, c: Cluster, key: tuple[str, str, str]) -> list[dict[str, Any]]:
        ns = key[1]
        return [c.objects[("Pod", ns, p)] for p in sorted(c.pods_by_owner.get(key, ()))
                if ("Pod", ns, p) in c.objects]

    def _replace_pods(self, c: Cluster, key: tuple[str, str, str]) -> None:
        kind, ns, name = key
        obj = c.objects[key]
        for pod in self.pods_of(c, key):
            self._delete(c, ("Pod", ns, pod["metadata"]["name"]))
        rev = self._ns_revision(c, ns) if ns != ISTIO_NS else None
        fault = self.faults.get((c.name, ns, rev or ""), Fault())
        template = obj["spec"]["template"]
        h = hashlib.sha1(json.dumps(template, sort_keys=True).encode()).hexdigest()[:9]
        for _ in range(obj["spec"].get("replicas", 1)):
            pname = f"{name}-{h}-{uuid.uuid4().hex[:5]}"
            labels = dict(template["metadata"].get("labels") or {})
            annotations = dict(template["metadata"].get("annotations") or {})
            annotations["sandbox.meshops/owner"] = f"{kind}/{name}"
            containers = copy.deepcopy(template["spec"]["containers"])
            if rev and rev in self.catalog:
                version = self.catalog[rev]["version"]
                labels[REV_LABEL] = rev
                labels["service.istio.io/canonical-name"] = labels.get("app", name)
                annotations["sidecar.istio.io/status"] = json.dumps({
                    "initContainers": ["istio-init"], "containers": ["istio-proxy"],
                    "volumes": ["istio-envoy", "istio-data", "istio-podinfo", "istio-token",
                                "istiod-ca-cert"], "revision": rev})
                containers.append({"name": "istio-proxy",
                                   "image": PROXY_IMAGE.format(version=version)})
            statuses = []
            for ctr in containers:
                st: dict[str, Any] = {"name": ctr["name"], "image": ctr["image"], "ready": True,
                                      "restartCount": 0, "imageID": "",
                                      "state": {"running": {"startedAt": _now_iso()}}}
                if fault.crashloop and ctr["name"] != "istio-proxy":
                    st.update(ready=False, restartCount=4, state={"waiting": {
                        "reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}})
                statuses.append(st)
            self._put(c, "Pod", ns, pname, {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pname, "namespace": ns, "labels": labels,
                             "annotations": annotations, "uid": str(uuid.uuid4()),
                             "creationTimestamp": _now_iso()},
                "spec": {"containers": containers, "nodeName": "aks-nodepool1-0"},
                "status": {"phase": "Running", "containerStatuses": statuses,
                           "podIP": "10.244.0.10"}})

    def _sync_istiod(self, c: Cluster) -> None:
        """``istiod-<revision>`` exists for exactly the revisions of the ARM profile, and
        ``aks-istio-ingressgateway-<mode>-<revision>`` for each enabled ingress gateway."""
        self._sync_gateways(c)
        wanted = set(c.revisions)
        for (kind, ns, name) in list(c.objects):
            if kind == "Deployment" and ns == ISTIO_NS and name.startswith("istiod-") \
                    and name[len("istiod-"):] not in wanted:
                for pod in self.pods_of(c, (kind, ns, name)):
                    self._delete(c, ("Pod", ns, pod["metadata"]["name"]))
                self._delete(c, (kind, ns, name))
        for rev in sorted(wanted):
            if ("Deployment", ISTIO_NS, f"istiod-{rev}") not in c.objects and rev in self.catalog:
                labels = {"app": "istiod", REV_LABEL: rev}
                self._deployment(c, ISTIO_NS, f"istiod-{rev}", labels, 2,
                                 f"mcr.microsoft.com/oss/istio/pilot:"
                                 f"{self.catalog[rev]['version']}-distroless")

    def _sync_gateways(self, c: Cluster) -> None:
        ns = "aks-istio-ingress"
        mesh = c.arm["properties"].get("serviceMeshProfile") or {}
        gateways = ((mesh.get("istio") or {}).get("components") or {}).get(
            "ingressGateways") or []
        modes = {str(g.get("mode", "")).lower() for g in gateways if g.get("enabled")}
        wanted = {f"aks-istio-ingressgateway-{m}-{r}" for m in modes for r in c.revisions}
        if wanted and ("Namespace", "", ns) not in c.objects:
            self._put(c, "Namespace", "", ns, {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {}},
                "spec": {}, "status": {"phase": "Active"}})
        for (kind, n, name) in list(c.objects):
            if kind == "Deployment" and n == ns and name not in wanted:
                for pod in self.pods_of(c, (kind, n, name)):
                    self._delete(c, ("Pod", n, pod["metadata"]["name"]))
                self._delete(c, (kind, n, name))
        for name in sorted(wanted):
            if ("Deployment", ns, name) not in c.objects:
                rev = name.rsplit("-", 3)[-3:]
                version = self.catalog.get("-".join(rev), {}).get("version", "1.0.0")
                self._deployment(c, ns, name, {"app": name, "istio": "ingressgateway"}, 2,
                                 PROXY_IMAGE.format(version=version))

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
                    c.operation = None
                    self._sync_istiod(c)
            for c in self.clusters.values():
                for key, due in list(c.pending_rollouts.items()):
                    if now >= due:
                        del c.pending_rollouts[key]
                        if key in c.objects:
                            self._replace_pods(c, key)

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

    # ------------------------------------------------------------------ traffic

    def workloads_traffic(self) -> list[tuple[str, str, str, dict[str | None, int]]]:
        """(cluster, namespace, workload, {sidecar revision: ready pods}) for every workload."""
        out = []
        with self.lock:
            self.reconcile()
            for c in self.clusters.values():
                for (kind, ns, name), _obj in c.objects.items():
                    if kind not in WORKLOAD_KINDS or ns in (ISTIO_NS, "kube-system"):
                        continue
                    revs: Counter[str | None] = Counter()
                    for pod in self.pods_of(c, (kind, ns, name)):
                        if all(s["ready"] for s in pod["status"]["containerStatuses"]):
                            revs[pod["metadata"]["labels"].get(REV_LABEL)] += 1
                    out.append((c.name, ns, name, dict(revs)))
        return out

    def start_background(self) -> None:
        def loop() -> None:
            while True:
                time.sleep(0.1)
                self.reconcile()
        threading.Thread(target=loop, name="sandbox-reconcile", daemon=True).start()


def _owner(pod: dict[str, Any]) -> tuple[str, str, str] | None:
    owner = (pod["metadata"].get("annotations") or {}).get("sandbox.meshops/owner")
    if not owner:
        return None
    kind, name = owner.split("/", 1)
    return (kind, pod["metadata"]["namespace"], name)


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
