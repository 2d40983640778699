"""The API resources the sandbox's Kubernetes API serves, and their discovery documents.

Built-in resources are those of a Kubernetes 1.3x API server (Kubernetes API reference,
https://kubernetes.io/docs/reference/kubernetes-api/, and ``kubectl api-resources`` on an AKS
cluster): group, versions, kind, plural, singular, short names, namespaced, verbs. Anything
else exists only through a ``CustomResourceDefinition`` in the cluster (or, with the mesh
add-on on, the Istio CRDs the add-on installs), as on a real cluster, where ``kubectl apply``
of an unknown kind fails with "no matches for kind ... ensure CRDs are installed first".

The store keys an object by its kind for the built-in groups and by ``Kind.group`` for any
other group (two groups may define the same kind: Istio's and Gateway API's ``Gateway``).

Discovery is served as the legacy documents (``APIVersions`` at ``/api``, ``APIGroupList``
at ``/apis``, ``APIResourceList`` at ``/api/v1`` and ``/apis/<group>/<version>``; API
reference "Discovery API", https://kubernetes.io/docs/concepts/overview/kubernetes-api/#discovery-api).
Clients that ask for the aggregated form (``apidiscovery.k8s.io/v2``) fall back to these when
the response is plain ``application/json``, as kubectl and client-go do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ApiResource:
    group: str  # "" for the core group
    versions: tuple[str, ...]  # preferred first
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    #: a CRD's additionalPrinterColumns (name, type, jsonPath), for kubectl's table
    printer_columns: tuple[tuple[str, str, str], ...] = field(default=())

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.versions[0]}" if self.group else self.versions[0]

    @property
    def key(self) -> str:
        return kind_key(self.group, self.kind)


BUILTIN_GROUPS = {
    "", "apps", "batch", "autoscaling", "policy", "networking.k8s.io",
    "rbac.authorization.k8s.io", "storage.k8s.io", "apiextensions.k8s.io",
    "scheduling.k8s.io", "admissionregistration.k8s.io", "coordination.k8s.io",
    "discovery.k8s.io", "node.k8s.io", "certificates.k8s.io",
}


def kind_key(group: str, kind: str) -> str:
    """The store's key for a kind: the kind in the built-in groups, else ``Kind.group``."""
    return kind if group in BUILTIN_GROUPS else f"{kind}.{group}"


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` → ("apps", "v1"); ``v1`` → ("", "v1")."""
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


def _r(group: str, versions: str, kind: str, plural: str, namespaced: bool = True,
       short: str = "", categories: str = "", sub: str = "", verbs: tuple[str, ...] = ALL_VERBS
       ) -> ApiResource:
    return ApiResource(group, tuple(versions.split()), kind, plural, namespaced,
                       tuple(short.split()), tuple(categories.split()), verbs,
                       tuple(sub.split()))


_CRUD_NO_COLLECTION = ("create", "delete", "get", "list", "patch", "update", "watch")
#: ``kubectl api-resources -o wide`` of a Kubernetes 1.3x cluster (the resources kept here)
BUILTIN: tuple[ApiResource, ...] = (
    _r("", "v1", "ConfigMap", "configmaps", short="cm"),
    _r("", "v1", "Endpoints", "endpoints", short="ep"),
    _r("", "v1", "Event", "events", short="ev"),
    _r("", "v1", "LimitRange", "limitranges", short="limits"),
    _r("", "v1", "Namespace", "namespaces", False, "ns", sub="status finalize",
       verbs=_CRUD_NO_COLLECTION),
    _r("", "v1", "Node", "nodes", False, "no", sub="status"),
    _r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short="pvc",
       sub="status"),
    _r("", "v1", "PersistentVolume", "persistentvolumes", False, "pv", sub="status"),
    _r("", "v1", "Pod", "pods", short="po", categories="all", sub="status log"),
    _r("", "v1", "PodTemplate", "podtemplates"),
    _r("", "v1", "ReplicationController", "replicationcontrollers", short="rc",
       categories="all", sub="status scale"),
    _r("", "v1", "ResourceQuota", "resourcequotas", short="quota", sub="status"),
    _r("", "v1", "Secret", "secrets"),
    _r("", "v1", "ServiceAccount", "serviceaccounts", short="sa"),
    _r("", "v1", "Service", "services", short="svc", categories="all", sub="status",
       verbs=_CRUD_NO_COLLECTION),
    _r("apps", "v1", "ControllerRevision", "controllerrevisions"),
    _r("apps", "v1", "DaemonSet", "daemonsets", short="ds", categories="all", sub="status"),
    _r("apps", "v1", "Deployment", "deployments", short="deploy", categories="all",
       sub="status scale"),
    _r("apps", "v1", "ReplicaSet", "replicasets", short="rs", categories="all",
       sub="status scale"),
    _r("apps", "v1", "StatefulSet", "statefulsets", short="sts", categories="all",
       sub="status scale"),
    _r("batch", "v1", "CronJob", "cronjobs", short="cj", categories="all", sub="status"),
    _r("batch", "v1", "Job", "jobs", categories="all", sub="status"),
    _r("autoscaling", "v2 v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
       short="hpa", categories="all", sub="status"),
    _r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short="pdb",
       sub="status"),
    _r("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False),
    _r("networking.k8s.io", "v1", "Ingress", "ingresses", short="ing", sub="status"),
    _r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short="netpol"),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _r("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _r("storage.k8s.io", "v1", "CSIDriver", "csidrivers", False),
    _r("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, "sc"),
    _r("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
       False, "crd crds", sub="status"),
    _r("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, "pc"),
    _r("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
       "mutatingwebhookconfigurations", False),
    _r("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
       "validatingwebhookconfigurations", False),
    _r("coordination.k8s.io", "v1", "Lease", "leases"),
    _r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    _r("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", False),
    _r("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests",
       False, "csr", sub="status approval"),
)

#: The Istio CRDs the mesh add-on installs (AKS doc ``istio-about.md``: the add-on manages
#: Istio's CRDs; Istio's ``manifests/charts/base/files/crd-all.gen.yaml``): group, versions,
#: kind, plural, short names.
ISTIO_CRDS: tuple[tuple[str, str, str, str, str], ...] = (
    ("networking.istio.io", "v1 v1beta1 v1alpha3", "DestinationRule", "destinationrules", "dr"),
    ("networking.istio.io", "v1 v1beta1 v1alpha3", "Gateway", "gateways", "gw"),
    ("networking.istio.io", "v1 v1beta1 v1alpha3", "ServiceEntry", "serviceentries", "se"),
    ("networking.istio.io", "v1 v1beta1 v1alpha3", "Sidecar", "sidecars", ""),
    ("networking.istio.io", "v1 v1beta1 v1alpha3", "VirtualService", "virtualservices", "vs"),
    ("networking.istio.io", "v1 v1beta1 v1alpha3", "WorkloadEntry", "workloadentries", "we"),
    ("networking.istio.io", "v1 v1beta1 v1alpha3", "WorkloadGroup", "workloadgroups", "wg"),
    ("networking.istio.io", "v1alpha3", "EnvoyFilter", "envoyfilters", ""),
    ("security.istio.io", "v1 v1beta1", "AuthorizationPolicy", "authorizationpolicies", "ap"),
    ("security.istio.io", "v1 v1beta1", "PeerAuthentication", "peerauthentications", "pa"),
    ("security.istio.io", "v1 v1beta1", "RequestAuthentication", "requestauthentications",
     "ra"),
    ("telemetry.istio.io", "v1 v1alpha1", "Telemetry", "telemetries", "telemetry"),
    ("extensions.istio.io", "v1alpha1", "WasmPlugin", "wasmplugins", ""),
)


def istio_crd(group: str, versions: str, kind: str, plural: str, short: str) -> dict[str, Any]:
    """A CustomResourceDefinition of the add-on, as ``kubectl get crd -o yaml`` shows it."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": {
            "app.kubernetes.io/part-of": "istio", "kubernetes.azure.com/managedby": "aks"}},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                           "listKind": f"{kind}List", "shortNames": short.split(),
                           "categories": ["istio-io", f"{group.split('.')[0]}-istio-io"]},
                 "versions": [{"name": v, "served": True, "storage": i == 0,
                               "schema": {"openAPIV3Schema": {
                                   "type": "object",
                                   "x-kubernetes-preserve-unknown-fields": True}}}
                              for i, v in enumerate(versions.split())]},
        "status": {"conditions": [{"type": "Established", "status": "True"}]},
    }


def from_crd(crd: dict[str, Any]) -> ApiResource | None:
    """The resource a CustomResourceDefinition serves (its served versions, storage first)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, kind, plural = spec.get("group"), names.get("kind"), names.get("plural")
    if not (group and kind and plural):
        return None
    versions = [v for v in spec.get("versions") or [] if v.get("served", True)]
    versions.sort(key=lambda v: not v.get("storage", False))
    if not versions:
        return None
    columns = tuple((c.get("name", ""), c.get("type", "string"), c.get("jsonPath", ""))
                    for c in versions[0].get("additionalPrinterColumns") or [])
    sub = tuple(s for s in ("status", "scale") if s in (versions[0].get("subresources") or {}))
    return ApiResource(group, tuple(v["name"] for v in versions), kind, plural,
                       spec.get("scope", "Namespaced") == "Namespaced",
                       tuple(names.get("shortNames") or ()),
                       tuple(names.get("categories") or ()), ALL_VERBS, sub, columns)


class Registry:
    """The resources one cluster serves: the built-in ones and those of its CRDs."""

    def __init__(self, crds: list[dict[str, Any]]) -> None:
        self.resources: list[ApiResource] = list(BUILTIN)
        for crd in crds:
            r = from_crd(crd)
            if r is not None and not any(x.group == r.group and x.kind == r.kind
                                         for x in self.resources):
                self.resources.append(r)

    def by_kind(self, api_version: str, kind: str) -> ApiResource | None:
        group, version = split_api_version(api_version)
        for r in self.resources:
            if r.group == group and r.kind == kind and version in r.versions:
                return r
        return None

    def by_key(self, key: str) -> ApiResource | None:
        for r in self.resources:
            if r.key == key:
                return r
        return None

    def by_plural(self, group: str, version: str, plural: str) -> ApiResource | None:
        for r in self.resources:
            if r.group == group and r.plural == plural and version in r.versions:
                return r
        return None

    def groups(self) -> dict[str, list[str]]:
        """Non-core groups → their versions, preferred first, in discovery order."""
        out: dict[str, list[str]] = {}
        for r in self.resources:
            if r.group:
                versions = out.setdefault(r.group, [])
                for v in r.versions:
                    if v not in versions:
                        versions.append(v)
        return out

    # ------------------------------------------------------------ discovery documents

    def api_versions(self, server_address: str) -> dict[str, Any]:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}

    def api_group_list(self) -> dict[str, Any]:
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [self.api_group(g) for g in self.groups()]}

    def api_group(self, group: str) -> dict[str, Any]:
        versions = self.groups().get(group, [])
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs,
                "preferredVersion": gvs[0] if gvs else {}}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        items = [r for r in self.resources if r.group == group and version in r.versions]
        if not items:
            return None
        resources: list[dict[str, Any]] = []
        for r in items:
            entry: dict[str, Any] = {"name": r.plural, "singularName": r.singular,
                                     "namespaced": r.namespaced, "kind": r.kind,
                                     "verbs": list(r.verbs)}
            if r.short_names:
                entry["shortNames"] = list(r.short_names)
            if r.categories:
                entry["categories"] = list(r.categories)
            resources.append(entry)
            for sub in r.subresources:
                sub_kind = {"scale": "Scale", "log": "Pod"}.get(sub, r.kind)
                sub_group = {"scale": "autoscaling"}.get(sub)
                sub_entry: dict[str, Any] = {
                    "name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                    "kind": sub_kind,
                    "verbs": ["get"] if sub == "log" else ["get", "patch", "update"]}
                if sub_group:
                    sub_entry.update(group=sub_group, version="v1")
                resources.append(sub_entry)
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources}
