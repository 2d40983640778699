"""The one translation of the ``kubernetes`` client's exceptions into meshops'.

The official client raises ``kubernetes.client.exceptions.ApiException`` (and its 4xx/5xx
subclasses) for an answer outside 2xx, with the API server's ``Status`` object as its body
(``{"kind": "Status", "reason": "NotFound", "message": "namespaces \\"x\\" not found"}``);
``ApiException(status=0)`` when the request could not be made (TLS); urllib3's errors (and
``OSError``) when the server did not answer; ``ConfigException`` for an unusable kubeconfig.

Temporary (:class:`TemporaryError`, ``delay_s`` = the server's ``Retry-After``, which API
Priority and Fairness sends with its 429s): 409 (a conflicting write), 429, 5xx, status 0,
no answer. Permanent (:class:`ClusterApiError`): every other status, naming the verb, the
resource and the namespace, with the server's own reason and message.
"""

from __future__ import annotations

import json

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from workers.retry_after import retry_after_s
from workflows.errors import ClusterApiError, TemporaryError

#: what the client raises that we translate (anything else is a bug and propagates)
KUBERNETES_ERRORS = (ApiException, ConfigException, urllib3.exceptions.HTTPError, OSError)


def translate_kubernetes_error(
    exc: ApiException | ConfigException | urllib3.exceptions.HTTPError | OSError,
    verb: str, resource: str, namespace: str | None = None, cluster: str | None = None,
) -> TemporaryError | ClusterApiError:
    """A ``kubernetes`` client exception as a meshops error naming what was asked.

    Args:
        exc: what the client raised.
        verb: the Kubernetes verb: ``list``, ``patch``, ``get``.
        resource: the resource, with its name when there is one: ``deployments``,
            ``namespace storefront``, ``deployment web``.
        namespace: the namespace of a namespaced request.
        cluster: the cluster's short name in the fleet.

    Returns:
        :class:`TemporaryError` for 409, 429, 5xx, status 0 and no answer (``delay_s`` the
        ``Retry-After`` or 0); else :class:`ClusterApiError` with the status, the Status
        reason and message of the API server, and for 401/403 what to grant.
    """
    what = f"{verb} {resource}" + (f" in namespace {namespace}" if namespace else "") \
        + (f" on {cluster}" if cluster else "")
    if isinstance(exc, ConfigException):
        return ClusterApiError(f"{what}: the kubeconfig cannot be used ({exc}). Check "
                               "kubernetes.kubeconfig / context in the fleet file.")
    if not isinstance(exc, ApiException):
        return TemporaryError(f"{what}: Kubernetes API unreachable ({exc})")
    status = exc.status or 0
    reason, message = exc.reason or "", ""
    try:
        body = json.loads(exc.body or "{}")
        if isinstance(body, dict):
            reason = str(body.get("reason") or reason)
            message = str(body.get("message") or "")
    except ValueError:
        message = (exc.body or "")[:200]
    said = f"{status} {reason}" + (f": {message}" if message else "")
    if status in (0, 409, 429) or status >= 500:
        return TemporaryError(f"{what}: Kubernetes API answered {said}",
                              retry_after_s(exc.headers))
    if status == 401:
        return ClusterApiError(f"{what}: Kubernetes API did not accept meshops' credentials "
                               f"({said}); for a cluster with Microsoft Entra ID, meshops' "
                               "identity needs a token for the cluster's server application.")
    if status == 403:
        where = f"in namespace {namespace}" if namespace else "cluster-wide"
        return ClusterApiError(f"{what}: Kubernetes RBAC refused meshops ({said}); grant "
                               f"meshops' identity `{verb}` on {resource.split()[0]} {where} "
                               "(a Role/ClusterRole binding, or an Azure RBAC role such as "
                               "Azure Kubernetes Service RBAC Writer).")
    return ClusterApiError(f"{what}: Kubernetes API answered {said}")
