"""Counting the errors of the APIs meshops calls, in one place, by system and code.

The adapters translate each SDK's exceptions into :mod:`workflows.errors` with
``raise … from exc`` (``workers/*/errors.py``), so the SDK's exception is the translated
error's ``__cause__``. Rather than teach every adapter to count, the callers' side wraps the
adapters once: :class:`CountedPorts` around the ports the engine uses (ARM through
``mesh``, each cluster's Kubernetes API, each cluster's Prometheus), and
:class:`CountedWebClient` around the Slack Web API client of the worker. Each error that
reaches meshops' code is counted once, as ``meshops_api_errors_total{system, code}``
(:mod:`workers.metrics`):

- **what is counted**: an error an adapter raises to its caller whose cause is the SDK's own
  exception, i.e. the service answered with an error or did not answer — after the SDK's
  own retries (azure-core's retry policy, slack_sdk's retry handlers), once per failed call
  that meshops sees, whether the run then retries it (temporary) or stops (permanent);
- **not counted**: errors an adapter handles itself (a 404 that means "absent"), an
  operation ARM reports as Failed in its status (that is an answer, not an API error),
  meshops' own refusals (an unknown cluster, a refused decision), and errors of the
  bot's process (the worker counts; the bot keeps no counters);
- **system**: ``arm`` | ``kubernetes`` | ``prometheus`` | ``slack``;
- **code**: the HTTP status (``409``, ``429``, ``503``) for ARM, Kubernetes and Prometheus,
  Slack's error code (``ratelimited``, ``not_in_channel``) for Slack, ``unreachable`` when
  the service did not answer, ``auth`` when no token could be had, ``config`` for an
  unusable kubeconfig, ``unreadable`` for an answer that could not be read.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, Protocol, cast

import requests
import structlog
import urllib3
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from prometheus_api_client.exceptions import PrometheusApiClientException
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from workflows.errors import PermanentError, TemporaryError
from workflows.ports import ClusterApi, ClusterPorts, MeshApi, MetricsApi

log = structlog.get_logger("meshops.metrics")

SYSTEMS = ("arm", "kubernetes", "prometheus", "slack")

_PROMETHEUS_STATUS = re.compile(r"^HTTP Status Code (\d+)")
#: urllib3's retries gave up on a status in their forcelist (requests' ``RetryError``)
_RETRIED_STATUS = re.compile(r"too many (\d{3}) error responses")


class ErrorCounter(Protocol):
    """Where counted errors go (:class:`workers.metrics.RunMetrics`)."""

    def api_error(self, system: str, code: str) -> None: ...


def _sdk_cause(exc: BaseException) -> BaseException | None:
    """The first SDK exception in ``exc``'s chain of causes (adapters translate with
    ``raise … from exc``), or None when meshops raised it on its own."""
    seen = 0
    cause = exc.__cause__
    while cause is not None and seen < 5:
        if not isinstance(cause, TemporaryError | PermanentError):
            return cause
        cause, seen = cause.__cause__, seen + 1
    return None


def error_code(system: str, cause: BaseException) -> str:
    """The ``code`` label of an SDK exception of ``system`` (see the module docstring)."""
    if isinstance(cause, SlackApiError):
        response = cause.response
        data = response.data if response is not None and isinstance(response.data, dict) \
            else {}
        status = response.status_code if response is not None else 0
        return str(data.get("error") or (status or "unknown"))
    if isinstance(cause, ClientAuthenticationError) and not cause.status_code:
        return "auth"
    if isinstance(cause, ServiceRequestError | ServiceResponseError):
        return "unreachable"
    if isinstance(cause, DecodeError):
        return "unreadable"
    if isinstance(cause, HttpResponseError):
        return str(cause.status_code or "unknown")
    if isinstance(cause, AzureError):  # a credential that could not get a token
        return "auth"
    if isinstance(cause, ApiException):
        return str(cause.status) if cause.status else "unreachable"
    if isinstance(cause, ConfigException):
        return "config"
    if isinstance(cause, PrometheusApiClientException):
        m = _PROMETHEUS_STATUS.match(str(cause))
        return m.group(1) if m else "unreadable"
    if isinstance(cause, requests.exceptions.RetryError):
        m = _RETRIED_STATUS.search(str(cause))
        return m.group(1) if m else "unreachable"
    if isinstance(cause, requests.RequestException):
        if cause.response is not None:
            return str(cause.response.status_code)
        if isinstance(cause, requests.ConnectionError | requests.Timeout):
            return "unreachable"
        return "unreadable"
    if isinstance(cause, urllib3.exceptions.HTTPError | OSError):
        return "unreachable"
    return type(cause).__name__


def count_error(errors: ErrorCounter, system: str, exc: BaseException) -> None:
    """Count ``exc`` (a translated error) if an SDK exception caused it."""
    cause = _sdk_cause(exc)
    if cause is not None:
        errors.api_error(system, error_code(system, cause))


class _Counted:
    """An adapter whose every method counts the API errors it raises, then re-raises them."""

    def __init__(self, target: Any, system: str, errors: ErrorCounter):
        self._target = target
        self._system = system
        self._errors = errors

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except (TemporaryError, PermanentError) as exc:
                count_error(self._errors, self._system, exc)
                raise

        return call


class CountedPorts:
    """Implements :class:`workflows.ports.ClusterPorts`: the same adapters, every API error
    they raise counted (:func:`count_error`). Anything else of the wrapped ports (e.g.
    ``FleetPorts.aks``) is reached through it unchanged."""

    def __init__(self, ports: ClusterPorts, errors: ErrorCounter):
        self.inner = ports
        self.errors = errors
        self.mesh: MeshApi = cast(MeshApi, _Counted(ports.mesh, "arm", errors))

    def cluster_api(self, cluster: str) -> ClusterApi:
        # getting the client may itself call ARM (listClusterUserCredential)
        api = self._making("arm", self.inner.cluster_api, cluster)
        return cast(ClusterApi, _Counted(api, "kubernetes", self.errors))

    def metrics(self, cluster: str) -> MetricsApi:
        api = self._making("arm", self.inner.metrics, cluster)
        return cast(MetricsApi, _Counted(api, "prometheus", self.errors))

    def _making(self, system: str, make: Callable[[str], Any], cluster: str) -> Any:
        try:
            return make(cluster)
        except (TemporaryError, PermanentError) as exc:
            count_error(self.errors, system, exc)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CountedWebClient(WebClient):
    """A slack_sdk ``WebClient`` that counts what its Web API calls raise (``SlackApiError``
    with Slack's error code, ``OSError`` as ``unreachable``) after its retry handlers gave
    up; every method of the client goes through :meth:`api_call`."""

    errors: ErrorCounter | None = None

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:
        try:
            return super().api_call(api_method, **kwargs)
        except (SlackApiError, OSError) as exc:
            if self.errors is not None:
                self.errors.api_error("slack", error_code("slack", exc))
            raise


def counted_slack_client(client: WebClient, errors: ErrorCounter) -> CountedWebClient:
    """A :class:`CountedWebClient` configured as ``client`` (token, base URL, timeout,
    retry handlers, logger), counting into ``errors``."""
    counted = CountedWebClient(token=client.token, base_url=client.base_url,
                               timeout=client.timeout, ssl=client.ssl, proxy=client.proxy,
                               headers={k: v for k, v in client.headers.items()
                                        if k != "User-Agent"},
                               logger=client.logger, retry_handlers=client.retry_handlers)
    counted.default_params = dict(client.default_params)
    counted.errors = errors
    return counted
