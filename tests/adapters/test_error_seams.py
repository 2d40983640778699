"""One error seam per SDK: each SDK's own exceptions, raised by the SDK itself against a local
HTTP server that answers like the service, become the core's ``TemporaryError`` (with the
service's ``Retry-After``) or ``PermanentError`` (with the service's code and message)."""

from __future__ import annotations

import json
import socket
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import urllib3
from azure.core import PipelineClient
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    map_error,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from workers.arm.errors import translate_azure_error
from workers.github.errors import translate_github_error
from workers.kube.cluster import KubernetesClusterApi, api_client_from_kubeconfig
from workers.kube.errors import translate_kubernetes_error
from workers.prom.errors import translate_prometheus_error
from workers.prom.metrics import PrometheusMetricsApi
from workers.retry_after import retry_after_s
from workers.slack.errors import SlackRateLimited, SlackRefused, translate_slack_error
from workflows.errors import (
    ArmBusy,
    ArmError,
    ClusterApiError,
    MetricsUnavailable,
    PermanentError,
    TemporaryError,
)

Answer = tuple[int, dict[str, str], Any]


class Service:
    """A local HTTP server answering every request with the next canned answer."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.paths: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                service.paths.append(self.path)
                status, headers, body = service.answers.pop(0) if service.answers else \
                    (500, {}, {"error": "no answer left"})
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", headers.pop("Content-Type",
                                                             "application/json"))
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = _answer  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, status: int, body: Any, **headers: str) -> Service:
        self.answers.append((status, {k.replace("_", "-"): v for k, v in headers.items()}, body))
        return self


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_retry_after_reads_seconds_milliseconds_and_http_dates() -> None:
    assert retry_after_s({"Retry-After": "12"}) == 12
    assert retry_after_s({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    assert retry_after_s({"retry-after": ["4"]}) == 4  # slack_sdk keeps lists of values
    now = time.time()
    assert retry_after_s({"Retry-After": formatdate(now + 30, usegmt=True)}, now) \
        == pytest.approx(30, abs=1)
    assert retry_after_s({"Retry-After": "soon"}) == retry_after_s(None) == 0


# ---------------------------------------------------------------------------- azure-core

def arm_error(service: Service, status: int, code: str, message: str,
              error_map: dict[int, type[HttpResponseError]] | None = None,
              **headers: str) -> HttpResponseError:
    """What a management SDK raises for this answer of ARM: ``map_error`` first, then
    ``HttpResponseError`` with ARM's error format (as azure-mgmt-containerservice does)."""
    service.answer(status, {"error": {"code": code, "message": message}}, **headers)
    client = PipelineClient(service.url, policies=[])
    response = client.send_request(HttpRequest("GET", service.url + "/subscriptions/x"))
    try:
        map_error(status, response, error_map or {})
        raise HttpResponseError(response=response, error_format=ARMErrorFormat)
    except HttpResponseError as exc:
        return exc


def test_arm_409_is_temporary_with_arms_code_message_and_retry_after(service: Service) -> None:
    exc = arm_error(service, 409, "OperationNotAllowed", "Another operation is in progress.",
                    {409: ResourceExistsError}, Retry_After="30")
    assert isinstance(exc, ResourceExistsError)
    err = translate_azure_error(exc, "setting revisions on aks-dev")
    assert type(err) is ArmBusy and err.delay_s == 30  # a TemporaryError: wait for it
    assert str(err) == ("setting revisions on aks-dev: ARM answered 409 OperationNotAllowed: "
                        "Another operation is in progress.")


def test_arm_429_and_5xx_are_temporary(service: Service) -> None:
    err = translate_azure_error(arm_error(service, 429, "TooManyRequests", "slow down",
                                          x_ms_retry_after_ms="2500"), "reading aks-dev")
    assert type(err) is TemporaryError and err.delay_s == 2.5 and "429" in str(err)
    err = translate_azure_error(arm_error(service, 503, "ServiceUnavailable", "later"), "x")
    assert type(err) is TemporaryError and err.delay_s == 0 and "503 ServiceUnavailable" in \
        str(err)


def test_arm_4xx_is_permanent_with_arms_code(service: Service) -> None:
    err = translate_azure_error(arm_error(service, 400, "InvalidParameter",
                                          "Revision asm-1-99 is not supported."), "setting")
    assert isinstance(err, ArmError) and err.code == "InvalidParameter"
    assert "Revision asm-1-99 is not supported." in str(err)
    err = translate_azure_error(arm_error(service, 404, "ResourceNotFound", "no aks-x",
                                          {404: ResourceNotFoundError}), "reading aks-x")
    assert isinstance(err, ArmError) and err.code == "ResourceNotFound"
    assert "not found in Azure (no aks-x)" in str(err)
    err = translate_azure_error(arm_error(service, 401, "InvalidAuthenticationToken", "bad",
                                          {401: ClientAuthenticationError}), "reading")
    assert isinstance(err, ArmError) and "could not authenticate" in str(err)


def test_arm_unreachable_is_temporary(closed_port: int) -> None:
    client = PipelineClient(f"http://127.0.0.1:{closed_port}",
                            policies=[RetryPolicy(retry_total=0)])
    with pytest.raises(ServiceRequestError) as raised:
        client.send_request(HttpRequest("GET", f"http://127.0.0.1:{closed_port}/"))
    err = translate_azure_error(raised.value, "reading aks-dev")
    assert type(err) is TemporaryError and "ARM unreachable" in str(err)
    assert isinstance(translate_azure_error(AzureError("garbled"), "x"), ArmError)


# ---------------------------------------------------------------------------- kubernetes

def kube(service: Service) -> KubernetesClusterApi:
    cfg = k8s.Configuration(host=service.url)
    cfg.retries = False
    return KubernetesClusterApi(k8s.ApiClient(cfg), "dev")


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
            "reason": reason, "message": message}


def test_kubernetes_429_and_409_are_temporary_with_retry_after(service: Service) -> None:
    service.answer(429, status(429, "TooManyRequests", "too many requests"), Retry_After="3")
    with pytest.raises(ApiException) as raised:
        kube(service).core.list_namespaced_pod("shop")
    err = translate_kubernetes_error(raised.value, "list", "pods", "shop", "dev")
    assert type(err) is TemporaryError and err.delay_s == 3
    assert str(err) == ("list pods in namespace shop on dev: Kubernetes API answered 429 "
                        "TooManyRequests: too many requests")
    service.answer(409, status(409, "Conflict", "the object has been modified"))
    with pytest.raises(TemporaryError, match="409 Conflict") as translated:
        kube(service).restart_workload(_workload(), "2025-01-01T00:00:00Z")
    assert isinstance(translated.value.__cause__, ApiException)
    assert "patch Deployment web in namespace shop on dev" in str(translated.value)


def _workload() -> Any:
    from workflows.ports import Workload

    return Workload(kind="Deployment", namespace="shop", name="web", restarted_at=None,
                    generation=1, observed_generation=1, replicas=1, updated=1, available=1)


def test_kubernetes_refusals_are_permanent_naming_verb_resource_namespace(service: Service
                                                                          ) -> None:
    service.answer(403, status(403, "Forbidden", 'namespaces "shop" is forbidden: User '
                               '"meshops" cannot patch resource "namespaces"'))
    with pytest.raises(ClusterApiError) as raised:
        kube(service).set_namespace_revision("shop", "asm-1-26")
    assert "patch namespace shop on dev" in str(raised.value)
    assert "403 Forbidden" in str(raised.value) and "cannot patch" in str(raised.value)
    assert "grant meshops' identity `patch` on namespace" in str(raised.value)
    service.answer(404, status(404, "NotFound", 'namespaces "nope" not found'))
    with pytest.raises(ClusterApiError, match='404 NotFound: namespaces "nope" not found'):
        kube(service).set_namespace_revision("nope", "asm-1-26")


def test_a_hung_kubernetes_api_costs_one_timeout_not_a_worker() -> None:
    """An API server that accepts and never answers (issue 11, item 8): every call has a
    read timeout, and running past it is temporary."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        cfg = k8s.Configuration(host=f"http://127.0.0.1:{listener.getsockname()[1]}")
        cfg.retries = False
        api = KubernetesClusterApi(k8s.ApiClient(cfg), "dev", timeout=(1.0, 1.0))
        started = time.monotonic()
        with pytest.raises(TemporaryError, match="list namespaces on dev: Kubernetes API "
                                                 "unreachable"):
            api.list_namespaces()
        assert time.monotonic() - started < 5


def test_kubernetes_unreachable_and_bad_kubeconfig(closed_port: int) -> None:
    cfg = k8s.Configuration(host=f"http://127.0.0.1:{closed_port}")
    cfg.retries = False
    with pytest.raises(TemporaryError, match="unreachable") as raised:
        KubernetesClusterApi(k8s.ApiClient(cfg), "dev").list_namespaces()
    assert isinstance(raised.value.__cause__, urllib3.exceptions.HTTPError)
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [],
                  "contexts": [], "current-context": "missing"}
    with pytest.raises(ClusterApiError, match="kubeconfig cannot be used"):
        api_client_from_kubeconfig(json.dumps(kubeconfig))
    err = translate_kubernetes_error(ApiException(status=0, reason="SSLError"), "list", "pods")
    assert type(err) is TemporaryError


def _kubeconfig(**changes: Any) -> dict[str, Any]:
    kubeconfig: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config", "current-context": "aks",
        "clusters": [{"name": "aks", "cluster": {"server": "https://aks-one:443"}}],
        "contexts": [{"name": "aks", "context": {"cluster": "aks", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}
    return {**kubeconfig, **changes}


@pytest.mark.parametrize(("changes", "says"), [
    ({"contexts": 5}, r"contexts is not a list \(int\): a list of \{name, context"),
    ({"contexts": ["aks"]}, r"contexts holds an entry that is not \{name, context: \{…\}\} "
                            r"\(it is str"),
    ({"contexts": [{"name": "aks", "context": ""}]}, r"entry .*\(its context is str"),
    ({"clusters": [{"name": "aks", "cluster": 0}]}, r"entry .*\(its cluster is int"),
    ({"clusters": [{"name": "aks", "cluster": []}]}, r"entry .*\(its cluster is list"),
    # a user's entry holds credentials: named by type, never quoted
    ({"users": [{"name": "u", "user": "s3cr3t-token"}]}, r"^(?!.*s3cr3t).*its user is str"),
    ({"current-context": ["aks"]}, "current-context is not a name .*one of its contexts"),
    ({"clusters": [{"name": "aks", "cluster": {"server": "https://aks-one:443",
                                               "certificate-authority-data": "!!notbase64"}}]},
     "cluster 'aks': certificate-authority-data is not base64"),
    ({"clusters": [{"name": "aks", "cluster": {"server": "https://aks-one:443",
                                               "certificate-authority-data": "!!!!QUJD"}}]},
     "cluster 'aks': certificate-authority-data is not base64"),
    ({"users": [{"name": "u", "user": {"client-key-data": "QUJD$$"}}]},
     "user 'u': client-key-data is not base64"),
    # base64, but of no certificate
    ({"clusters": [{"name": "aks", "cluster": {"server": "https://aks-one:443",
                                               "certificate-authority-data": "aGVsbG8="}}]},
     "cluster 'aks': certificate-authority-data is base64 but not of a PEM certificate"),
    ({"clusters": [{"name": "aks", "cluster": {}}]}, r"cluster 'aks' has no server URL \(its "),
    ({"clusters": [{"name": "aks", "cluster": {"server": 443}}]}, "has no server URL"),
])
def test_a_malformed_kubeconfig_says_what_a_kubeconfig_holds(changes: dict[str, Any], says: str
                                                              ) -> None:
    """A kubeconfig of the wrong shape (hand-written in the fleet file, cut short) is a
    ClusterApiError saying what kubectl's Config holds there, not a TypeError from inside
    the Kubernetes client."""
    with pytest.raises(ClusterApiError, match=says):
        api_client_from_kubeconfig(json.dumps(_kubeconfig(**changes)))
    # the well-formed one loads
    assert api_client_from_kubeconfig(json.dumps(_kubeconfig())).configuration.host == \
        "https://aks-one:443"


def test_what_kubectl_accepts_loads() -> None:
    """Shapes kubectl takes that a stricter check would refuse: a user with no
    credentials written ``user: null``, lists left null, a context chosen by name."""
    loaded = api_client_from_kubeconfig(json.dumps(_kubeconfig(
        users=[{"name": "u", "user": None}], preferences={}, extensions=None)))
    assert loaded.configuration.host == "https://aks-one:443"
    two = _kubeconfig(contexts=[{"name": "aks", "context": {"cluster": "aks", "user": "u"}},
                                {"name": "other", "context": {"cluster": "gone", "user": "u"}}],
                      **{"current-context": "other"})
    assert api_client_from_kubeconfig(json.dumps(two), context="aks").configuration.host == \
        "https://aks-one:443"


# ---------------------------------------------------------------------------- prometheus

def test_prometheus_error_answer_is_metrics_unavailable_with_its_own_words(service: Service
                                                                            ) -> None:
    service.answer(400, {"status": "error", "errorType": "bad_data",
                         "error": "invalid parameter \"query\": parse error"})
    prom = PrometheusConnect(service.url, disable_ssl=True)
    with pytest.raises(PrometheusApiClientException) as raised:
        prom.custom_query("up{")
    err = translate_prometheus_error(raised.value, service.url)
    assert type(err) is MetricsUnavailable and isinstance(err, TemporaryError)
    assert str(err) == (f"Prometheus at {service.url} could not be queried: HTTP 400 "
                        "bad_data: invalid parameter \"query\": parse error")


def test_prometheus_http_error_keeps_retry_after_and_the_adapter_translates(
        service: Service, closed_port: int) -> None:
    service.answer(429, {"status": "error"}, Retry_After="20")
    with pytest.raises(requests.HTTPError) as raised:
        requests.get(service.url + "/api/v1/query", timeout=5).raise_for_status()
    err = translate_prometheus_error(raised.value, service.url)
    assert err.delay_s == 20 and "HTTP 429" in str(err)
    with pytest.raises(MetricsUnavailable, match="could not be queried: no answer") as down:
        PrometheusMetricsApi(f"http://127.0.0.1:{closed_port}").windows(["shop"], [], 0, 600, 60)
    assert isinstance(down.value.__cause__, requests.RequestException)


# ---------------------------------------------------------------------------- slack-sdk

def slack_error(service: Service, status: int, body: dict[str, Any],
                **headers: str) -> SlackApiError:
    service.answer(status, body, **headers)
    with pytest.raises(SlackApiError) as raised:
        WebClient(token="xoxb-test", base_url=service.url + "/api/").chat_postMessage(
            channel="C1", text="hi")
    return raised.value


def test_slack_rate_limit_and_outage_are_temporary(service: Service) -> None:
    err = translate_slack_error(slack_error(service, 429, {"ok": False, "error": "ratelimited"},
                                            Retry_After="12"), "chat.postMessage")
    # a TemporaryError that names the method, so the Slack budget backs every worker off it
    assert isinstance(err, SlackRateLimited) and isinstance(err, TemporaryError)
    assert err.delay_s == 12 and err.method == "chat.postMessage"
    assert str(err) == "Slack chat.postMessage: ratelimited"
    err = translate_slack_error(slack_error(service, 200, {"ok": False,
                                                           "error": "service_unavailable"}),
                                "chat.update")
    assert type(err) is TemporaryError and err.delay_s == 0


def test_slack_refusals_are_permanent_with_slacks_code(service: Service) -> None:
    err = translate_slack_error(slack_error(service, 200, {"ok": False,
                                                           "error": "channel_not_found"}),
                                "chat.postMessage")
    assert isinstance(err, SlackRefused) and err.code == "channel_not_found"
    assert str(err) == "Slack chat.postMessage refused: channel_not_found"
    err = translate_slack_error(slack_error(service, 200, {
        "ok": False, "error": "missing_scope", "needed": "usergroups:read"}),
        "usergroups.users.list")
    assert "needs the usergroups:read scope" in str(err)


def test_slack_unreachable_is_temporary(closed_port: int) -> None:
    with pytest.raises(OSError) as raised:
        WebClient(token="x", base_url=f"http://127.0.0.1:{closed_port}/api/").auth_test()
    err = translate_slack_error(raised.value, "auth.test")
    assert type(err) is TemporaryError and "unreachable" in str(err)


# ---------------------------------------------------------------------------- GitHub

def github_error(service: Service, status: int, body: Any, **headers: str
                 ) -> requests.RequestException:
    service.answer(status, body, **headers)
    with pytest.raises(requests.HTTPError) as raised:
        requests.get(service.url + "/repos/Azure/AKS/releases", timeout=5).raise_for_status()
    return raised.value


def test_github_rate_limits_are_temporary_until_reset_or_retry_after(service: Service) -> None:
    now = time.time()
    exc = github_error(service, 403, {"message": "API rate limit exceeded for 10.0.0.1."},
                       X_RateLimit_Remaining="0", X_RateLimit_Reset=str(int(now) + 120))
    err = translate_github_error(exc, "reading the AKS feed", now)
    assert type(err) is TemporaryError and err.delay_s == pytest.approx(120, abs=1)
    assert "API rate limit exceeded" in str(err)
    exc = github_error(service, 403, {"message": "You have exceeded a secondary rate limit."},
                       Retry_After="60")
    assert translate_github_error(exc, "feed", now).delay_s == 60  # type: ignore[union-attr]
    exc = github_error(service, 502, b"<html>Bad gateway</html>", Content_Type="text/html")
    err = translate_github_error(exc, "feed", now)
    assert type(err) is TemporaryError and "502" in str(err)


def test_github_other_refusals_are_permanent_and_no_answer_temporary(
        service: Service, closed_port: int) -> None:
    exc = github_error(service, 403, {"message": "Resource not accessible by integration"})
    err = translate_github_error(exc, "reading the AKS feed")
    assert type(err) is PermanentError
    assert "403 Forbidden: Resource not accessible by integration" in str(err)
    err = translate_github_error(github_error(service, 404, {"message": "Not Found"}), "feed")
    assert type(err) is PermanentError and "404" in str(err)
    with pytest.raises(requests.ConnectionError) as raised:
        requests.get(f"http://127.0.0.1:{closed_port}/", timeout=5)
    err = translate_github_error(raised.value, "feed")
    assert type(err) is TemporaryError and "unreachable" in str(err)


# ---------------------------------------------------------------------------- the watcher

class OneRevisionMesh:
    """Every cluster on asm-1-25, the only revision of its region."""

    def get_mesh(self, cluster: str) -> Any:
        from workflows.ports import MeshState

        return MeshState(mode="Istio", revisions=["asm-1-25"], provisioning_state="Succeeded")

    def revision_profiles(self, cluster: str) -> list[Any]:
        from workflows.ports import RevisionProfile

        return [RevisionProfile("asm-1-25")]

    def upgrade_targets(self, cluster: str) -> list[str]:
        return []


def test_the_watcher_skips_a_channel_slack_refuses_and_retries_when_slack_is_down(
        service: Service, prefix: str) -> None:
    import redis

    from tests.conftest import REDIS_URL
    from workers.config import Fleet
    from workers.watcher import Watcher
    from workflows.releases import ReleaseEvent

    cluster = {"subscription": "11111111-2222-3333-4444-555555555555", "resource_group": "rg",
               "location": "westeurope", "approvers": ["U0LEAD001"],
               "prometheus": {"url": "http://127.0.0.1:9"}}
    fleet = Fleet.model_validate({"clusters": {
        "a-gone": {**cluster, "name": "aks-a", "channel": "C0GONE001"},
        "b-dev": {**cluster, "name": "aks-b", "channel": "C0MESH001"}}})
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    watcher = Watcher(fleet, r, prefix, OneRevisionMesh(),
                      WebClient(token="xoxb-test", base_url=service.url + "/api/"), None)  # type: ignore[arg-type]
    try:
        service.answer(200, {"ok": False, "error": "channel_not_found"})
        service.answer(200, {"ok": True, "channel": "C0MESH001", "ts": "1.1"})
        patched = ReleaseEvent("2025-01-10", "patched", "asm-1-25", "1.25.3")
        new, channels = watcher.run_once(pushed=[patched])
        assert new == [patched] and channels == {"C0MESH001"}

        service.answer(429, {"ok": False, "error": "ratelimited"}, Retry_After="30")
        deprecated = ReleaseEvent("2025-01-11", "deprecated", "asm-1-25")
        with pytest.raises(TemporaryError, match="ratelimited") as raised:
            watcher.run_once(pushed=[deprecated])
        assert raised.value.delay_s == 30
        service.answer(200, {"ok": True, "channel": "C0GONE001", "ts": "1.2"})
        service.answer(200, {"ok": True, "channel": "C0MESH001", "ts": "1.3"})
        new, channels = watcher.run_once(pushed=[deprecated])  # not marked seen: posted now
        assert new == [deprecated] and channels == {"C0GONE001", "C0MESH001"}
    finally:
        keys = list(r.scan_iter(prefix + "*"))
        if keys:
            r.delete(*keys)
