"""``KubernetesClusterApi``: one cluster's Kubernetes API on the official ``kubernetes`` client.

Converging writes are absolute: the namespace label ``istio.io/rev=<revision>`` (with
``istio-injection`` removed, which the add-on ignores) and the pod-template annotation
``kubectl.kubernetes.io/restartedAt=<token>``, exactly what ``kubectl label`` and
``kubectl rollout restart`` write (AKS doc ``istio-upgrade.md``). A pod's revision is its
``sidecar.istio.io/status`` revision (else its ``istio.io/rev`` label) and its patch version
the ``istio-proxy`` image tag. The client's exceptions, and only those, are translated by
:func:`workers.kube.errors.translate_kubernetes_error`.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from workers.kube.errors import KUBERNETES_ERRORS, translate_kubernetes_error
from workflows.errors import ClusterApiError
from workflows.ports import INJECTION_LABEL, REV_LABEL, Namespace, Pod, Workload

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
ISTIO_NS = "aks-istio-system"
PER_NAMESPACE_LIMIT = 25  # up to this many namespaces: one list each; else one list of all


def _not_found(exc: ClusterApiError) -> bool:
    """The API server answered 404 (translated from the client's ``ApiException``)."""
    return isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404


def api_client_from_kubeconfig(kubeconfig: bytes | str, context: str | None = None
                               ) -> k8s.ApiClient:
    """An API client for a kubeconfig (YAML); ``ClusterApiError`` if it cannot be used."""
    try:
        data = yaml.safe_load(kubeconfig)
    except yaml.YAMLError as exc:
        raise ClusterApiError(f"the kubeconfig is not YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ClusterApiError("the kubeconfig is not a kubeconfig (no mapping)")
    try:
        client: k8s.ApiClient = k8s_config.new_client_from_config_dict(  # type: ignore[no-untyped-call]
            data, context=context)
        return client
    except ConfigException as exc:
        raise translate_kubernetes_error(exc, "load", "kubeconfig") from exc


class KubernetesClusterApi:
    """Implements :class:`workflows.ports.ClusterApi`."""

    KINDS = ("Deployment", "StatefulSet", "DaemonSet")

    def __init__(self, api_client: k8s.ApiClient, name: str = ""):
        self.name = name
        self.core = k8s.CoreV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)
        self.calls = 0

    def _call(self, verb: str, resource: str, namespace: str | None, fn: Any, *args: Any,
              **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, its client errors translated naming verb, resource and
        namespace."""
        self.calls += 1
        try:
            return fn(*args, **kwargs)
        except KUBERNETES_ERRORS as exc:
            raise translate_kubernetes_error(exc, verb, resource, namespace, self.name) from exc

    def list_namespaces(self) -> list[Namespace]:
        items = self._call("list", "namespaces", None, self.core.list_namespace).items
        return [Namespace(n.metadata.name, dict(n.metadata.labels or {})) for n in items]

    def set_namespace_revision(self, namespace: str, revision: str) -> None:
        body = {"metadata": {"labels": {REV_LABEL: revision, INJECTION_LABEL: None}}}
        self._call("patch", f"namespace {namespace}", None, self.core.patch_namespace, namespace,
                   body)

    def remove_namespace_revision(self, namespace: str) -> None:
        body = {"metadata": {"labels": {REV_LABEL: None, INJECTION_LABEL: None}}}
        self._call("patch", f"namespace {namespace}", None, self.core.patch_namespace, namespace,
                   body)

    def _list(self, kind: str, namespaces: list[str]) -> list[Any]:
        snake = {"Deployment": "deployment", "StatefulSet": "stateful_set",
                 "DaemonSet": "daemon_set"}[kind]
        if len(namespaces) <= PER_NAMESPACE_LIMIT:
            fn = getattr(self.apps, f"list_namespaced_{snake}")
            return [i for ns in namespaces
                    for i in self._call("list", f"{kind}s", ns, fn, ns).items]
        fn = getattr(self.apps, f"list_{snake}_for_all_namespaces")
        wanted = set(namespaces)
        return [i for i in self._call("list", f"{kind}s", None, fn).items
                if i.metadata.namespace in wanted]

    def list_workloads(self, namespaces: list[str]) -> list[Workload]:
        out = []
        for kind in self.KINDS:
            for obj in self._list(kind, namespaces):
                tmpl = obj.spec.template.metadata
                st = obj.status
                if kind == "DaemonSet":
                    replicas = st.desired_number_scheduled or 0
                    updated, available = st.updated_number_scheduled or 0, \
                        st.number_available or 0
                else:
                    replicas = obj.spec.replicas if obj.spec.replicas is not None else 1
                    updated = st.updated_replicas or 0
                    available = (st.available_replicas if kind == "Deployment"
                                 else st.ready_replicas) or 0
                out.append(Workload(
                    kind=kind, namespace=obj.metadata.namespace, name=obj.metadata.name,
                    restarted_at=((tmpl.annotations or {}) if tmpl else {}).get(RESTARTED_AT),
                    generation=obj.metadata.generation or 0,
                    observed_generation=st.observed_generation or 0,
                    replicas=replicas, updated=updated, available=available))
        return out

    def restart_workload(self, workload: Workload, token: str) -> None:
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: token}}}}}
        snake = {"Deployment": "deployment", "StatefulSet": "stateful_set",
                 "DaemonSet": "daemon_set"}[workload.kind]
        fn = getattr(self.apps, f"patch_namespaced_{snake}")
        self._call("patch", f"{workload.kind} {workload.name}", workload.namespace, fn,
                   workload.name, workload.namespace, body)

    def list_pods(self, namespaces: list[str]) -> list[Pod]:
        if len(namespaces) <= PER_NAMESPACE_LIMIT:
            items = [p for ns in namespaces for p in self._call(
                "list", "pods", ns, self.core.list_namespaced_pod, ns).items]
        else:
            wanted = set(namespaces)
            items = [p for p in self._call("list", "pods", None,
                                           self.core.list_pod_for_all_namespaces
                                           ).items if p.metadata.namespace in wanted]
        return [self._pod(p) for p in items]

    @staticmethod
    def _pod(p: Any) -> Pod:
        ann = p.metadata.annotations or {}
        revision = None
        if "sidecar.istio.io/status" in ann:
            try:
                revision = json.loads(ann["sidecar.istio.io/status"]).get("revision")
            except ValueError:
                revision = None
            revision = revision or (p.metadata.labels or {}).get(REV_LABEL)
        version = None
        for c in (p.spec.containers or []) + (p.spec.init_containers or []):
            if c.name == "istio-proxy" and c.image and ":" in c.image:
                version = c.image.rsplit(":", 1)[1].removesuffix("-distroless")
        waiting, restarts = None, 0
        for cs in (p.status.container_statuses or []) if p.status else []:
            restarts = max(restarts, cs.restart_count or 0)
            if cs.state and cs.state.waiting and cs.state.waiting.reason:
                waiting = cs.state.waiting.reason
        return Pod(namespace=p.metadata.namespace, name=p.metadata.name, revision=revision,
                   proxy_version=version, phase=(p.status.phase if p.status else None)
                   or "Unknown", waiting_reason=waiting, restarts=restarts)

    def ingress_gateways(self) -> dict[str, bool]:
        """``aks-istio-ingressgateway-<external|internal>-<revision>`` in aks-istio-ingress."""
        try:
            items = self._call("list", "Deployments", "aks-istio-ingress",
                               self.apps.list_namespaced_deployment, "aks-istio-ingress").items
        except ClusterApiError as exc:
            if _not_found(exc):
                return {}
            raise
        out: dict[str, bool] = {}
        for d in items:
            name = d.metadata.name
            for mode in ("External", "Internal"):
                if name.startswith(f"aks-istio-ingressgateway-{mode.lower()}"):
                    out[mode] = out.get(mode, False) or (d.status.available_replicas or 0) >= 1
        return out

    def istio_outside_addon(self) -> list[str]:
        """Signs of an Istio installed outside the add-on, asked before enabling it (so none
        of this can be the add-on's own): an ``istiod`` Deployment in ``istio-system``, and
        Istio CRDs (groups ``*.istio.io``), which an uninstall may leave behind (AKS doc
        ``istio-deploy-addon.md``)."""
        signs = []
        try:
            items = self._call("list", "Deployments", "istio-system",
                               self.apps.list_namespaced_deployment, "istio-system").items
            signs += [f"namespace istio-system runs Deployment {d.metadata.name}"
                      for d in items if d.metadata.name.startswith("istiod")]
        except ClusterApiError as exc:
            if not _not_found(exc):
                raise
        crds = sorted(c.metadata.name for c in self._call(
            "list", "customresourcedefinitions", None,
            k8s.ApiextensionsV1Api(self.core.api_client).list_custom_resource_definition).items
            if c.spec.group == "istio.io" or c.spec.group.endswith(".istio.io"))
        if crds:
            signs.append("Istio CRDs from another installation: " + ", ".join(crds[:5])
                         + (f" and {len(crds) - 5} more" if len(crds) > 5 else ""))
        return signs

    def control_plane_revisions(self) -> dict[str, bool]:
        items = self._call("list", "Deployments app=istiod", ISTIO_NS,
                           self.apps.list_namespaced_deployment, ISTIO_NS,
                           label_selector="app=istiod").items
        out = {}
        for d in items:
            if d.metadata.name.startswith("istiod-"):
                rev = d.metadata.name[len("istiod-"):]
                out[rev] = (d.status.available_replicas or 0) >= 1
        return out
