"""What the mesh add-on's istiod and ``istioctl`` write into a cluster, as objects: the
sidecar-injector webhooks of a revision and of a revision tag, the Gateway API CRDs of AKS's
Managed Gateway API, and what istiod's gateway deployment controller renders for a Gateway.

Pure functions building Kubernetes objects; :mod:`sandbox.world` stores them and runs the
controllers. Sources, per function:

- revision webhooks: Istio's ``istio-discovery`` chart (``templates/mutatingwebhook.yaml``,
  webhooks ``rev.namespace.`` / ``rev.object.sidecar-injector.istio.io``) as AKS installs it:
  ``istio-sidecar-injector-<revision>-aks-istio-system``, labels of its Helm release;
- revision tags: ``istioctl tag set <tag> --revision <rev> --istioNamespace
  aks-istio-system [--overwrite]`` (istio/istio ``istioctl/pkg/tag/generate.go``: the tag
  webhook is rendered from ``revision-tags-mwc.yaml`` and takes the canonical revision
  webhook's labels but ``app``; the name is ``istio-revision-tag-<tag>-<istio namespace>``
  outside ``istio-system``); the AKS upgrade guide (``istio-upgrade.md``) for the workflow;
- gateways: istio/istio ``pilot/pkg/config/kube/gateway/deploymentcontroller.go`` and the
  ``kube-gateway`` template (``istio-discovery/files/kube-gateway.yaml``, Istio 1.24+: the
  proxy is rendered into the Deployment, not injected; the pod template is annotated
  ``istio.io/rev: <revision of the rendering istiod>``); the class defaults ConfigMap AKS
  provisions (AKS doc ``istio-gateway-api.md``); status conditions after
  ``conditions.go``/``conversion.go`` (``Programmed`` once the Service has an address).
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from sandbox.admission import selector_matches

REV_LABEL = "istio.io/rev"
TAG_LABEL = "istio.io/tag"
INJECT_LABEL = "sidecar.istio.io/inject"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
GATEWAY_CLASS_LABEL = "gateway.networking.k8s.io/gateway-class-name"
GATEWAY_MANAGED_LABEL = "gateway.istio.io/managed"
GATEWAY_MANAGED = "istio.io-gateway-controller"
GATEWAY_CONTROLLER = "istio.io/gateway-controller"
CLASS_DEFAULTS_LABEL = "gateway.istio.io/defaults-for-class"
CLASS_DEFAULTS = "istio-gateway-class-defaults"
CONTROLLER_VERSION = "gateway.istio.io/controller-version"
GATEWAY_GROUP = "gateway.networking.k8s.io"
#: the revision the add-on first supports the Gateway API with (``istio-gateway-api.md``)
GATEWAY_API_MIN_MINOR = 26
_OMITTED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",
                        "gateway.istio.io/name-override", "gateway.istio.io/service-account",
                        CONTROLLER_VERSION)


def revision_minor(revision: str) -> int:
    """``asm-1-26`` → 26 (0 for anything else)."""
    tail = revision.rsplit("-", 1)[-1]
    return int(tail) if revision.startswith("asm-1-") and tail.isdigit() else 0


def ca_bundle(revision: str) -> str:
    """The (sandbox) root certificate istiod patches into its webhooks, base64 as the API
    serves ``caBundle``."""
    body = base64.b64encode(f"sandbox root CA of istiod-{revision}".encode()).decode()
    pem = f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"
    return base64.b64encode(pem.encode()).decode()


def _injection_webhook(prefix: str, service: str, istio_ns: str, ca: str,
                       namespace_selector: list[dict[str, Any]],
                       object_selector: list[dict[str, Any]]) -> dict[str, Any]:
    """One webhook of the chart's ``core`` template (``revision-tags-mwc.yaml``)."""
    return {"name": f"{prefix}sidecar-injector.istio.io",
            "clientConfig": {"service": {"name": service, "namespace": istio_ns,
                                         "path": "/inject", "port": 443},
                             "caBundle": ca},
            "sideEffects": "None",
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"]}],
            "failurePolicy": "Fail", "reinvocationPolicy": "Never",
            "admissionReviewVersions": ["v1"],
            "namespaceSelector": {"matchExpressions": namespace_selector},
            "objectSelector": {"matchExpressions": object_selector}}


def _selecting_webhooks(value: str, service: str, istio_ns: str, ca: str
                        ) -> list[dict[str, Any]]:
    """``rev.namespace.``: namespaces labelled ``istio.io/rev=<value>`` (without
    ``istio-injection``); ``rev.object.``: pods labelled so in namespaces with neither label.
    A pod labelled ``sidecar.istio.io/inject=false`` is never selected."""
    not_false = {"key": INJECT_LABEL, "operator": "NotIn", "values": ["false"]}
    return [
        _injection_webhook("rev.namespace.", service, istio_ns, ca, [
            {"key": REV_LABEL, "operator": "In", "values": [value]},
            {"key": "istio-injection", "operator": "DoesNotExist"}], [not_false]),
        _injection_webhook("rev.object.", service, istio_ns, ca, [
            {"key": REV_LABEL, "operator": "DoesNotExist"},
            {"key": "istio-injection", "operator": "DoesNotExist"}],
            [not_false, {"key": REV_LABEL, "operator": "In", "values": [value]}])]


def revision_webhook_name(revision: str, istio_ns: str) -> str:
    return f"istio-sidecar-injector-{revision}-{istio_ns}"


def revision_webhook(revision: str, istio_ns: str) -> dict[str, Any]:
    """The add-on's sidecar injector webhook configuration for ``revision``, as AKS's Helm
    release installs it (``kubectl get mutatingwebhookconfigurations --show-labels`` on an
    AKS cluster: ``istio-sidecar-injector-asm-1-22-aks-istio-system``)."""
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": revision_webhook_name(revision, istio_ns), "labels": {
                "app": "sidecar-injector", REV_LABEL: revision,
                "admissions.enforcer/disabled": "true",
                "app.kubernetes.io/managed-by": "Helm",
                "helm.toolkit.fluxcd.io/name": "azure-service-mesh-istio-discovery-helmrelease",
                "install.operator.istio.io/owning-resource": "unknown",
                "operator.istio.io/component": "Pilot",
                "release": "azure-service-mesh-istio-discovery"}},
            "webhooks": _selecting_webhooks(revision, f"istiod-{revision}", istio_ns,
                                            ca_bundle(revision))}


def tag_webhook_name(tag: str, istio_ns: str) -> str:
    """``istio-revision-tag-<tag>`` in ``istio-system``, else ``…-<tag>-<namespace>``."""
    return f"istio-revision-tag-{tag}" if istio_ns == "istio-system" else \
        f"istio-revision-tag-{tag}-{istio_ns}"


def tag_webhook(tag: str, canonical: dict[str, Any], istio_ns: str) -> dict[str, Any]:
    """What ``istioctl tag set <tag> --revision <rev> --istioNamespace <istio_ns>`` applies:
    the tag's webhook configuration, built from ``canonical`` (the revision's own injector
    webhook configuration: its revision label, service, path and CA bundle; its labels but
    ``app`` are carried over)."""
    labels = canonical["metadata"].get("labels") or {}
    revision = labels[REV_LABEL]
    first = next(w for w in canonical.get("webhooks") or []
                 if w["name"].endswith("sidecar-injector.istio.io"))
    svc = first["clientConfig"]["service"]
    whs = _selecting_webhooks(tag, svc["name"], svc["namespace"],
                              first["clientConfig"].get("caBundle", ""))
    for wh in whs:
        wh["clientConfig"]["service"]["path"] = svc.get("path", "/inject")
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": tag_webhook_name(tag, istio_ns), "labels": {
                TAG_LABEL: tag, REV_LABEL: revision,
                "install.operator.istio.io/owning-resource": "unknown",
                "operator.istio.io/component": "Pilot", "app": "sidecar-injector",
                "release": "istio", "app.kubernetes.io/name": "istiod",
                "app.kubernetes.io/part-of": "istio",
                **{k: v for k, v in labels.items() if k != "app"}}},
            "webhooks": whs}


# ---------------------------------------------------------------------- Gateway API

#: The standard channel of the Gateway API (v1.2) that AKS's Managed Gateway API installs:
#: kind, plural, scope, versions (storage first), short names, printer columns.
GATEWAY_API_CRDS: tuple[tuple[str, str, str, str, str, tuple[tuple[str, str, str], ...]],
                        ...] = (
    ("GatewayClass", "gatewayclasses", "Cluster", "v1 v1beta1", "gc", (
        ("Controller", "string", ".spec.controllerName"),
        ("Accepted", "string", '.status.conditions[?(@.type=="Accepted")].status'),
        ("Age", "date", ".metadata.creationTimestamp"))),
    ("Gateway", "gateways", "Namespaced", "v1 v1beta1", "gtw", (
        ("Class", "string", ".spec.gatewayClassName"),
        ("Address", "string", ".status.addresses[*].value"),
        ("Programmed", "string", '.status.conditions[?(@.type=="Programmed")].status'),
        ("Age", "date", ".metadata.creationTimestamp"))),
    ("HTTPRoute", "httproutes", "Namespaced", "v1 v1beta1", "", (
        ("Hostnames", "string", ".spec.hostnames"),
        ("Age", "date", ".metadata.creationTimestamp"))),
    ("GRPCRoute", "grpcroutes", "Namespaced", "v1", "", (
        ("Hostnames", "string", ".spec.hostnames"),
        ("Age", "date", ".metadata.creationTimestamp"))),
    ("ReferenceGrant", "referencegrants", "Namespaced", "v1beta1", "refgrant", (
        ("Age", "date", ".metadata.creationTimestamp"),)),
)
GATEWAY_API_VERSION = "v1.2.1"


def gateway_api_crd(kind: str, plural: str, scope: str, versions: str, short: str,
                    columns: tuple[tuple[str, str, str], ...]) -> dict[str, Any]:
    """A Gateway API CustomResourceDefinition as the standard-install manifest defines it
    (status subresource, ``gateway-api`` category, printer columns)."""
    vs = versions.split()
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GATEWAY_GROUP}",
                     "annotations": {
                         "api-approved.kubernetes.io":
                             "https://github.com/kubernetes-sigs/gateway-api/pull/2997",
                         "gateway.networking.k8s.io/bundle-version": GATEWAY_API_VERSION,
                         "gateway.networking.k8s.io/channel": "standard"},
                     "labels": {"kubernetes.azure.com/managedby": "aks"}},
        "spec": {"group": GATEWAY_GROUP, "scope": scope,
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                           "listKind": f"{kind}List", "shortNames": short.split(),
                           "categories": ["gateway-api"]},
                 "versions": [{"name": v, "served": True, "storage": i == 0,
                               "subresources": {"status": {}},
                               "additionalPrinterColumns": [
                                   {"name": n, "type": t, "jsonPath": p}
                                   for n, t, p in columns],
                               "schema": {"openAPIV3Schema": {
                                   "type": "object",
                                   "x-kubernetes-preserve-unknown-fields": True}}}
                              for i, v in enumerate(vs)]},
        "status": {"conditions": [{"type": "Established", "status": "True"}]},
    }


def default_gateway_api(kind: str, obj: dict[str, Any]) -> None:
    """The defaults of the Gateway API CRDs' structural schemas, which the API server writes
    on create and update: a listener's ``allowedRoutes`` (routes from the same namespace),
    a parent reference's ``group``/``kind`` (a Gateway), a backend reference's
    ``group``/``kind``/``weight`` (a Service, 1), a rule's ``matches`` (path prefix ``/``)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if kind == "Gateway":
        for lst in spec.get("listeners") or []:
            if isinstance(lst, dict):
                lst.setdefault("allowedRoutes", {"namespaces": {"from": "Same"}})
    if kind in ("HTTPRoute", "GRPCRoute"):
        for ref in spec.get("parentRefs") or []:
            if isinstance(ref, dict):
                ref.setdefault("group", GATEWAY_GROUP)
                ref.setdefault("kind", "Gateway")
        for rule in spec.get("rules") or []:
            if not isinstance(rule, dict):
                continue
            if kind == "HTTPRoute":
                rule.setdefault("matches", [{"path": {"type": "PathPrefix", "value": "/"}}])
                for m in rule["matches"] or []:
                    if isinstance(m, dict) and isinstance(m.get("path"), dict):
                        m["path"].setdefault("type", "PathPrefix")
            for b in rule.get("backendRefs") or []:
                if isinstance(b, dict):
                    b.setdefault("group", "")
                    b.setdefault("kind", "Service")
                    b.setdefault("weight", 1)


def gateway_class() -> dict[str, Any]:
    """The ``istio`` GatewayClass istiod creates when the Gateway API CRDs are there
    (``builtinClasses``, ``gatewayclass.go``)."""
    return {"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "GatewayClass",
            "metadata": {"name": "istio"},
            "spec": {"controllerName": GATEWAY_CONTROLLER,
                     "description": "The default Istio GatewayClass"}}


def class_defaults(istio_ns: str) -> dict[str, Any]:
    """The GatewayClass-level defaults ConfigMap AKS provisions in ``aks-istio-system`` when
    the Managed Gateway API and the add-on are on (AKS doc ``istio-gateway-api.md``)."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CLASS_DEFAULTS, "namespace": istio_ns,
                         "labels": {CLASS_DEFAULTS_LABEL: "istio",
                                    "kubernetes.azure.com/managedby": "aks"}},
            "data": {"horizontalPodAutoscaler": "spec:\n  minReplicas: 2\n  maxReplicas: 5\n",
                     "podDisruptionBudget": "spec:\n  minAvailable: 1\n"}}


def gateway_ports(gw: dict[str, Any]) -> list[dict[str, Any]]:
    """The Service ports of a Gateway (``extractServicePorts``): the status port, then one
    per distinct listener port, named after the listener."""
    ports: list[dict[str, Any]] = [{"name": "status-port", "port": 15021, "protocol": "TCP",
                                    "appProtocol": "tcp"}]
    seen: set[int] = set()
    for i, listener in enumerate((gw.get("spec") or {}).get("listeners") or []):
        port = listener.get("port")
        if not isinstance(port, int) or port in seen:
            continue
        seen.add(port)
        protocol = str(listener.get("protocol", "TCP")).lower()
        name = str(listener.get("name") or f"{protocol}-{i}")
        ports.append({"name": name, "port": port, "protocol": "TCP",
                      "appProtocol": protocol})
    return ports


def _infrastructure(gw: dict[str, Any], field: str) -> dict[str, str]:
    """``spec.infrastructure.labels|annotations`` (without ``gateway.networking.k8s.io/``
    keys) or, without them, a copy of the Gateway's own
    (``ENABLE_GATEWAY_API_COPY_LABELS_ANNOTATIONS``, on by default)."""
    infra = (gw.get("spec") or {}).get("infrastructure") or {}
    if infra.get(field) is not None:
        return {k: str(v) for k, v in infra[field].items()
                if not k.startswith(f"{GATEWAY_GROUP}/")}
    return dict(gw["metadata"].get(field) or {})


def _merge(target: Any, overlay: Any) -> Any:
    """The class defaults' overlay (a strategic merge patch of maps: maps merge, the rest
    replaces)."""
    if not isinstance(overlay, dict) or not isinstance(target, dict):
        return copy.deepcopy(overlay)
    out = dict(target)
    for k, v in overlay.items():
        out[k] = _merge(out.get(k), v)
    return out


def render_gateway(gw: dict[str, Any], revision: str, proxy_image: str, istio_ns: str,
                   overlays: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """What the istiod of ``revision`` applies for a Gateway of class ``istio``:
    ServiceAccount, Deployment and Service ``<name>-istio`` (``gateway.istio.io/name-override``
    and ``gateway.istio.io/service-account`` annotations honoured), and the
    HorizontalPodAutoscaler and PodDisruptionBudget when ``overlays`` (the parsed class
    defaults ConfigMap) has them. All are owned by the Gateway."""
    meta = gw["metadata"]
    name, ns = meta["name"], meta["namespace"]
    annotations = meta.get("annotations") or {}
    deploy = annotations.get("gateway.istio.io/name-override") or f"{name}-istio"
    sa = annotations.get("gateway.istio.io/service-account") or deploy
    cls = (gw.get("spec") or {}).get("gatewayClassName", "istio")
    infra_labels = _infrastructure(gw, "labels")
    infra_labels.setdefault("istio.io/dataplane-mode", "none")
    infra_annotations = {k: v for k, v in _infrastructure(gw, "annotations").items()
                         if k not in _OMITTED_ANNOTATIONS}
    owner = [{"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "Gateway", "name": name,
              "uid": meta["uid"]}]
    base = {**infra_labels, GATEWAY_NAME_LABEL: name, GATEWAY_CLASS_LABEL: cls}
    managed = {**base, GATEWAY_MANAGED_LABEL: GATEWAY_MANAGED}

    def m(obj_name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {"name": obj_name, "namespace": ns, "labels": dict(labels),
                "annotations": dict(infra_annotations), "ownerReferences": copy.deepcopy(owner)}

    env = [{"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
           {"name": "CA_ADDR", "value": f"istiod-{revision}.{istio_ns}.svc:15012"},
           {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
           {"name": "INSTANCE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "SERVICE_ACCOUNT",
            "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
           {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"},
           {"name": "ISTIO_META_WORKLOAD_NAME", "value": deploy},
           {"name": "ISTIO_META_OWNER",
            "value": f"kubernetes://apis/apps/v1/namespaces/{ns}/deployments/{deploy}"},
           {"name": "ISTIO_META_MESH_ID", "value": "cluster.local"},
           {"name": "TRUST_DOMAIN", "value": "cluster.local"}]
    probe = {"httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"}}
    container = {
        "name": "istio-proxy", "image": proxy_image,
        "args": ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
                 "--proxyLogLevel", "warning", "--proxyComponentLogLevel", "misc:error",
                 "--log_output_level", "default:info"],
        "env": env,
        "ports": [{"containerPort": 15020, "name": "metrics", "protocol": "TCP"},
                  {"containerPort": 15021, "name": "status-port", "protocol": "TCP"},
                  {"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "startupProbe": {**probe, "failureThreshold": 30, "initialDelaySeconds": 1,
                         "periodSeconds": 1, "successThreshold": 1, "timeoutSeconds": 1},
        "readinessProbe": {**probe, "failureThreshold": 4, "initialDelaySeconds": 0,
                           "periodSeconds": 15, "successThreshold": 1, "timeoutSeconds": 1},
        "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                            "readOnlyRootFilesystem": True, "runAsUser": 1337,
                            "runAsGroup": 1337, "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": v, "mountPath": p} for v, p in (
            ("workload-socket", "/var/run/secrets/workload-spiffe-uds"),
            ("credential-socket", "/var/run/secrets/credential-uds"),
            ("workload-certs", "/var/run/secrets/workload-spiffe-credentials"),
            ("istiod-ca-cert", "/var/run/secrets/istio"),
            ("istio-data", "/var/lib/istio/data"), ("istio-envoy", "/etc/istio/proxy"),
            ("istio-token", "/var/run/secrets/tokens"), ("istio-podinfo", "/etc/istio/pod"))]}
    template = {
        "metadata": {
            "annotations": {**infra_annotations, REV_LABEL: revision,
                            "prometheus.io/path": "/stats/prometheus",
                            "prometheus.io/port": "15020", "prometheus.io/scrape": "true"},
            "labels": {INJECT_LABEL: "false", "service.istio.io/canonical-name": deploy,
                       "service.istio.io/canonical-revision": "latest", **managed}},
        "spec": {
            "securityContext": {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start",
                                             "value": "0"}]},
            "serviceAccountName": sa, "containers": [container],
            "volumes": [{"name": "workload-socket", "emptyDir": {}},
                        {"name": "credential-socket", "emptyDir": {}},
                        {"name": "workload-certs", "emptyDir": {}},
                        {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
                        {"name": "istio-data", "emptyDir": {}},
                        {"name": "istio-podinfo", "downwardAPI": {"items": [
                            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                            {"path": "annotations",
                             "fieldRef": {"fieldPath": "metadata.annotations"}}]}},
                        {"name": "istio-token", "projected": {"sources": [
                            {"serviceAccountToken": {"path": "istio-token",
                                                     "expirationSeconds": 43200,
                                                     "audience": "istio-ca"}}]}},
                        {"name": "istiod-ca-cert",
                         "configMap": {"name": "istio-ca-root-cert"}}]}}
    service_type = annotations.get("networking.istio.io/service-type", "LoadBalancer")
    out: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": m(sa, base)},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": m(deploy, managed),
         "spec": {"selector": {"matchLabels": {GATEWAY_NAME_LABEL: name}},
                  "template": template}},
        {"apiVersion": "v1", "kind": "Service", "metadata": m(deploy, base),
         "spec": {"ipFamilyPolicy": "PreferDualStack", "ports": gateway_ports(gw),
                  "selector": {GATEWAY_NAME_LABEL: name}, "type": service_type}},
    ]
    if "horizontalPodAutoscaler" in overlays:
        out.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                    "metadata": m(deploy, base),
                    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": deploy}, "maxReplicas": 1}})
    if "podDisruptionBudget" in overlays:
        out.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                    "metadata": m(deploy, base),
                    "spec": {"selector": {"matchLabels": {GATEWAY_NAME_LABEL: name}}}})
    keys = {"ServiceAccount": "serviceAccount", "Deployment": "deployment",
            "Service": "service", "HorizontalPodAutoscaler": "horizontalPodAutoscaler",
            "PodDisruptionBudget": "podDisruptionBudget"}
    for i, obj in enumerate(out):
        overlay = overlays.get(keys[obj["kind"]])
        if isinstance(overlay, dict):
            merged = _merge(obj, overlay)
            merged["metadata"].update({k: obj["metadata"][k] for k in (
                "name", "namespace", "ownerReferences")})  # overlays may not change these
            out[i] = merged
    return out


def condition(kind: str, ok: bool, reason: str, message: str, generation: int,
              previous: list[dict[str, Any]] | None, now: str) -> dict[str, Any]:
    """A ``metav1.Condition``; its ``lastTransitionTime`` kept while its status is."""
    prev = next((c for c in previous or [] if c.get("type") == kind), None)
    status = "True" if ok else "False"
    since = prev["lastTransitionTime"] if prev and prev.get("status") == status else now
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": since}


def human_join(items: list[str]) -> str:
    """``humanReadableJoin``: ``a``, ``a and b``, ``a, b, and c``."""
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f", and {items[-1]}"


def route_kinds(protocol: str) -> list[dict[str, str]]:
    """The route kinds a listener of ``protocol`` takes (Istio's ``supportedKinds``)."""
    if protocol in ("HTTP", "HTTPS"):
        return [{"group": GATEWAY_GROUP, "kind": "HTTPRoute"},
                {"group": GATEWAY_GROUP, "kind": "GRPCRoute"}]
    if protocol == "TLS":
        return [{"group": GATEWAY_GROUP, "kind": "TLSRoute"}]
    return [{"group": GATEWAY_GROUP, "kind": "TCPRoute"}]


def route_parents(route: dict[str, Any], gw: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``parentRefs`` of ``route`` that name ``gw`` (a Gateway, in the route's namespace
    unless one is given)."""
    gmeta = gw["metadata"]
    out = []
    for ref in (route.get("spec") or {}).get("parentRefs") or []:
        if ref.get("group", GATEWAY_GROUP) != GATEWAY_GROUP or \
                ref.get("kind", "Gateway") != "Gateway":
            continue
        if ref.get("name") == gmeta["name"] and ref.get(
                "namespace", route["metadata"]["namespace"]) == gmeta["namespace"]:
            out.append(ref)
    return out


def listener_allows(listener: dict[str, Any], gw_ns: str, route_ns: str,
                    route_ns_labels: dict[str, str]) -> bool:
    """``allowedRoutes.namespaces.from``: Same (the default), All, or Selector."""
    allowed = ((listener.get("allowedRoutes") or {}).get("namespaces") or {})
    how = allowed.get("from", "Same")
    if how == "All":
        return True
    if how == "Selector":
        return selector_matches(allowed.get("selector") or {}, route_ns_labels)
    return route_ns == gw_ns
