"""Admission webhooks as the API server handles them: which webhooks of the
``MutatingWebhookConfiguration`` objects intercept a request, and what the API server checks
and defaults when such an object is written.

Sources: Kubernetes docs "Dynamic Admission Control" (matching requests: ``rules``,
``namespaceSelector``, ``objectSelector``; ``failurePolicy``; webhooks called in the order of
their configurations' names), the API reference of ``MutatingWebhookConfiguration``
(``admissionregistration.k8s.io/v1``: required ``sideEffects`` and
``admissionReviewVersions``, defaults), and ``metav1.LabelSelector`` ("Labels and
Selectors": ``matchLabels`` and ``matchExpressions`` with ``In``, ``NotIn``, ``Exists``,
``DoesNotExist``; an empty selector matches everything).

Nothing here reaches a backend: :mod:`sandbox.world` decides what calling one does.
"""

from __future__ import annotations

import re
from typing import Any

WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
_QUALIFIED = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?){2,}$")


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Does a ``metav1.LabelSelector`` select ``labels``? ``None`` or ``{}``: everything."""
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), set(e.get("values") or [])
        has = key in labels
        if op == "In" and (not has or labels[key] not in values):
            return False
        if op == "NotIn" and has and labels[key] in values:
            return False
        if op == "Exists" and not has:
            return False
        if op == "DoesNotExist" and has:
            return False
    return True


def _rule_matches(rule: dict[str, Any], operation: str, group: str, version: str,
                  resource: str) -> bool:
    def has(field: str, value: str) -> bool:
        items = rule.get(field) or []
        return "*" in items or value in items
    return has("operations", operation) and has("apiGroups", group) and \
        has("apiVersions", version) and has("resources", resource)


def intercepting(configurations: list[dict[str, Any]], operation: str, group: str,
                 version: str, resource: str, namespace_labels: dict[str, str],
                 object_labels: dict[str, str]) -> list[dict[str, Any]]:
    """The webhooks that intercept a request, in the order the API server calls them: the
    configurations sorted by name, each one's webhooks in order. A webhook intercepts when
    one of its ``rules`` names the operation and resource and both its ``namespaceSelector``
    (against the namespace's labels) and ``objectSelector`` (the object's) select."""
    out = []
    for conf in sorted(configurations, key=lambda o: o["metadata"]["name"]):
        for wh in conf.get("webhooks") or []:
            if not any(_rule_matches(r, operation, group, version, resource)
                       for r in wh.get("rules") or []):
                continue
            if selector_matches(wh.get("namespaceSelector"), namespace_labels) and \
                    selector_matches(wh.get("objectSelector"), object_labels):
                out.append(wh)
    return out


def call_url(webhook: dict[str, Any]) -> str:
    """The URL the API server posts an ``AdmissionReview`` to (``?timeout=`` included), as
    its error messages show it."""
    cc = webhook.get("clientConfig") or {}
    timeout = webhook.get("timeoutSeconds", 10)
    if cc.get("url"):
        return f"{cc['url']}?timeout={timeout}s"
    svc = cc.get("service") or {}
    return (f"https://{svc.get('name')}.{svc.get('namespace')}.svc:{svc.get('port', 443)}"
            f"{svc.get('path') or ''}?timeout={timeout}s")


def call_error(webhook: dict[str, Any], reason: str) -> str:
    """The API server's message when calling a webhook failed (``failurePolicy: Fail``)."""
    return (f'Internal error occurred: failed calling webhook "{webhook.get("name")}": '
            f'failed to call webhook: Post "{call_url(webhook)}": {reason}')


def default_configuration(obj: dict[str, Any]) -> None:
    """The API server's defaulting of a webhook configuration (``admissionregistration/v1``
    defaults): ``failurePolicy: Fail``, ``matchPolicy: Equivalent``, empty selectors,
    ``timeoutSeconds: 10``, service port 443, rule scope ``*`` and, for mutating webhooks,
    ``reinvocationPolicy: Never``."""
    mutating = obj.get("kind") == "MutatingWebhookConfiguration"
    for wh in obj.get("webhooks") or []:
        if not isinstance(wh, dict):
            continue
        wh.setdefault("failurePolicy", "Fail")
        wh.setdefault("matchPolicy", "Equivalent")
        wh.setdefault("namespaceSelector", {})
        wh.setdefault("objectSelector", {})
        wh.setdefault("timeoutSeconds", 10)
        if mutating:
            wh.setdefault("reinvocationPolicy", "Never")
        svc = (wh.get("clientConfig") or {}).get("service")
        if isinstance(svc, dict):
            svc.setdefault("port", 443)
        for rule in wh.get("rules") or []:
            if isinstance(rule, dict):
                rule.setdefault("scope", "*")


def validate_configuration(obj: dict[str, Any]) -> list[str]:
    """What the API server refuses in a webhook configuration (``ValidateMutatingWebhook
    Configuration``), as ``field: reason`` strings; empty when valid."""
    errors: list[str] = []
    names: set[str] = set()
    webhooks = obj.get("webhooks") or []
    if not isinstance(webhooks, list):
        return ["webhooks: Invalid value: must be a list"]
    for i, wh in enumerate(webhooks):
        at = f"webhooks[{i}]"
        if not isinstance(wh, dict):
            errors.append(f"{at}: Invalid value: must be an object")
            continue
        name = wh.get("name")
        if not isinstance(name, str) or not name:
            errors.append(f"{at}.name: Required value")
        elif not _QUALIFIED.match(name):
            errors.append(f'{at}.name: Invalid value: "{name}": should be a domain with at '
                          "least three segments separated by dots")
        elif name in names:
            errors.append(f'{at}.name: Duplicate value: "{name}"')
        else:
            names.add(name)
        cc = wh.get("clientConfig") or {}
        if bool(cc.get("url")) == bool(cc.get("service")):
            errors.append(f"{at}.clientConfig: Required value: exactly one of url or service "
                          "is required")
        svc = cc.get("service")
        if isinstance(svc, dict):
            if not svc.get("name"):
                errors.append(f"{at}.clientConfig.service.name: Required value: service "
                              "name is required")
            if not svc.get("namespace"):
                errors.append(f"{at}.clientConfig.service.namespace: Required value: "
                              "service namespace is required")
            port = svc.get("port", 443)
            if not isinstance(port, int) or not 1 <= port <= 65535:
                errors.append(f"{at}.clientConfig.service.port: Invalid value: {port!r}: "
                              "port is not valid: must be between 1 and 65535, inclusive")
        if wh.get("sideEffects") not in ("None", "NoneOnDryRun"):
            errors.append(f"{at}.sideEffects: " + (
                "Required value: must specify one of None, NoneOnDryRun"
                if wh.get("sideEffects") is None else
                f'Unsupported value: "{wh.get("sideEffects")}": supported values: '
                '"None", "NoneOnDryRun"'))
        versions = wh.get("admissionReviewVersions")
        if not versions:
            errors.append(f"{at}.admissionReviewVersions: Required value: must specify one "
                          "of v1, v1beta1")
        elif not set(versions) & {"v1", "v1beta1"}:
            errors.append(f"{at}.admissionReviewVersions: Invalid value: {versions!r}: must "
                          "include at least one of v1, v1beta1")
        if wh.get("failurePolicy", "Fail") not in ("Fail", "Ignore"):
            errors.append(f'{at}.failurePolicy: Unsupported value: '
                          f'"{wh.get("failurePolicy")}": supported values: "Fail", "Ignore"')
        for field in ("namespaceSelector", "objectSelector"):
            for j, e in enumerate((wh.get(field) or {}).get("matchExpressions") or []):
                op = e.get("operator")
                if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
                    errors.append(f'{at}.{field}.matchExpressions[{j}].operator: Invalid '
                                  f'value: "{op}": not a valid selector operator')
                elif op in ("In", "NotIn") and not e.get("values"):
                    errors.append(f"{at}.{field}.matchExpressions[{j}].values: Required "
                                  "value: must be specified when `operator` is 'In' or "
                                  "'NotIn'")
    return errors
