"""``KubernetesClusterApi``: one cluster's Kubernetes API on the official ``kubernetes`` client.

Converging writes are absolute: the namespace label ``istio.io/rev=<revision>`` (with
``istio-injection`` removed, which the add-on ignores) and the pod-template annotation
``kubectl.kubernetes.io/restartedAt=<token>``, exactly what ``kubectl label`` and
``kubectl rollout restart`` write (AKS doc ``istio-upgrade.md``). A pod's revision is its
``sidecar.istio.io/status`` revision (else its ``istio.io/rev`` label) and its patch version
the ``istio-proxy`` image tag.
"""

from __future__ import annotations

import json
from typing import Any

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from workflows.errors import ClusterApiError, MeshopsError, TemporaryError
from workflows.ports import INJECTION_LABEL, REV_LABEL, Namespace, Pod, Workload

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
ISTIO_NS = "aks-istio-system"
PER_NAMESPACE_LIMIT = 25  # up to this many namespaces: one list each; else one list of all


def translate(exc: Exception, what: str) -> MeshopsError:
    if isinstance(exc, ApiException):
        if exc.status in (409, 429) or (exc.status or 0) >= 500:
            return TemporaryError(f"{what}: Kubernetes API answered {exc.status}", 5)
        if exc.status in (401, 403):
            return ClusterApiError(f"{what}: Kubernetes API refused meshops ({exc.status}); "
                                   "grant its identity access to namespaces and workloads.")
        reason = exc.reason
        try:
            reason = json.loads(exc.body or "{}").get("message", reason)
        except ValueError:
            pass
        return ClusterApiError(f"{what}: {reason}")
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return TemporaryError(f"{what}: Kubernetes API unreachable ({exc})", 5)
    return ClusterApiError(f"{what}: {exc}")


def api_client_from_kubeconfig(kubeconfig: bytes | str, context: str | None = None
                               ) -> k8s.ApiClient:
    data = yaml.safe_load(kubeconfig)
    return k8s_config.new_client_from_config_dict(data, context=context)


class KubernetesClusterApi:
    """Implements :class:`workflows.ports.ClusterApi`."""

    KINDS = ("Deployment", "StatefulSet", "DaemonSet")

    def __init__(self, api_client: k8s.ApiClient, name: str = ""):
        self.name = name
        self.core = k8s.CoreV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)
        self.calls = 0

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise translate(exc, f"{what} on {self.name}") from exc

    def list_namespaces(self) -> list[Namespace]:
        items = self._call("listing namespaces", self.core.list_namespace).items
        return [Namespace(n.metadata.name, dict(n.metadata.labels or {})) for n in items]

    def set_namespace_revision(self, namespace: str, revision: str) -> None:
        body = {"metadata": {"labels": {REV_LABEL: revision, INJECTION_LABEL: None}}}
        self._call(f"labelling namespace {namespace}", self.core.patch_namespace, namespace, body)

    def remove_namespace_revision(self, namespace: str) -> None:
        body = {"metadata": {"labels": {REV_LABEL: None, INJECTION_LABEL: None}}}
        self._call(f"unlabelling namespace {namespace}", self.core.patch_namespace, namespace,
                   body)

    def _list(self, kind: str, namespaces: list[str]) -> list[Any]:
        snake = {"Deployment": "deployment", "StatefulSet": "stateful_set",
                 "DaemonSet": "daemon_set"}[kind]
        if len(namespaces) <= PER_NAMESPACE_LIMIT:
            fn = getattr(self.apps, f"list_namespaced_{snake}")
            return [i for ns in namespaces
                    for i in self._call(f"listing {kind}s in {ns}", fn, ns).items]
        fn = getattr(self.apps, f"list_{snake}_for_all_namespaces")
        wanted = set(namespaces)
        return [i for i in self._call(f"listing {kind}s", fn).items
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
        self._call(f"restarting {workload.kind} {workload.namespace}/{workload.name}", fn,
                   workload.name, workload.namespace, body)

    def list_pods(self, namespaces: list[str]) -> list[Pod]:
        if len(namespaces) <= PER_NAMESPACE_LIMIT:
            items = [p for ns in namespaces for p in self._call(
                f"listing pods in {ns}", self.core.list_namespaced_pod, ns).items]
        else:
            wanted = set(namespaces)
            items = [p for p in self._call("listing pods", self.core.list_pod_for_all_namespaces
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
            items = self.apps.list_namespaced_deployment("aks-istio-ingress").items
        except ApiException as exc:
            if exc.status == 404:
                return {}
            raise translate(exc, f"listing ingress gateways on {self.name}") from exc
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
        what = f"looking for Istio outside the add-on on {self.name}"
        signs = []
        try:
            items = self.apps.list_namespaced_deployment("istio-system").items
            signs += [f"namespace istio-system runs Deployment {d.metadata.name}"
                      for d in items if d.metadata.name.startswith("istiod")]
        except ApiException as exc:
            if exc.status != 404:
                raise translate(exc, what) from exc
        except Exception as exc:
            raise translate(exc, what) from exc
        crds = sorted(c.metadata.name for c in self._call(
            what, k8s.ApiextensionsV1Api(self.core.api_client)
            .list_custom_resource_definition).items
            if c.spec.group == "istio.io" or c.spec.group.endswith(".istio.io"))
        if crds:
            signs.append("Istio CRDs from another installation: " + ", ".join(crds[:5])
                         + (f" and {len(crds) - 5} more" if len(crds) > 5 else ""))
        return signs

    def control_plane_revisions(self) -> dict[str, bool]:
        items = self._call("listing istiod", self.apps.list_namespaced_deployment, ISTIO_NS,
                           label_selector="app=istiod").items
        out = {}
        for d in items:
            if d.metadata.name.startswith("istiod-"):
                rev = d.metadata.name[len("istiod-"):]
                out[rev] = (d.status.available_replicas or 0) >= 1
        return out
