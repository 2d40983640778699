"""API errors counted by system and code (workers/apierrors.py): each SDK raises its own
exception against a local server that answers like the service, the adapter translates it,
and the engine's ports (or the worker's Slack client) count it once in Redis, where
``meshops_api_errors_total{system, code}`` reads it. A run's tick that meets ARM's 409 is
counted too, and errors meshops raises on its own are not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from prometheus_client import generate_latest
from slack_sdk.errors import SlackApiError

from tests.adapters.test_arm_polling import LocalArm, aks
from tests.adapters.test_error_seams import Service, status
from tests.adapters.test_metrics import value
from workers.apierrors import CountedPorts, counted_slack_client
from workers.engine import Engine
from workers.kube.cluster import KubernetesClusterApi
from workers.metrics import RunMetrics, registry
from workers.prom.metrics import PrometheusMetricsApi
from workers.slack.client import make_client
from workers.store.runs import RedisRunStore
from workflows.errors import (
    ArmBusy,
    ArmError,
    ClusterApiError,
    MetricsUnavailable,
    TemporaryError,
)
from workflows.kind import StartRun


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[LocalArm]:
    server = LocalArm(tmp_path / "tls")
    yield server
    server.server.shutdown()


class LocalPorts:
    """The fleet's adapters for cluster ``dev``, each on its local server."""

    def __init__(self, arm: LocalArm, service: Service):
        self.mesh = aks(arm)
        self.service = service

    def cluster_api(self, cluster: str) -> KubernetesClusterApi:
        cfg = k8s.Configuration(host=self.service.url)
        cfg.retries = False
        return KubernetesClusterApi(k8s.ApiClient(cfg), cluster)

    def metrics(self, cluster: str) -> PrometheusMetricsApi:
        return PrometheusMetricsApi(self.service.url, {}, None)


def errors(store: RedisRunStore) -> str:
    return generate_latest(registry(store)).decode()


def test_errors_of_arm_kubernetes_and_prometheus_are_counted_by_code(
        store: RedisRunStore, arm: LocalArm, service: Service) -> None:
    ports = CountedPorts(LocalPorts(arm, service), RunMetrics(store.r, store.p))
    arm.answer(409, {"error": {"code": "OperationNotAllowed", "message": "busy"}})
    with pytest.raises(ArmBusy):
        ports.mesh.get_mesh("dev")
    arm.answer(404, {"error": {"code": "ResourceNotFound", "message": "no aks-dev"}})
    with pytest.raises(ArmError):
        ports.mesh.get_mesh("dev")
    service.answer(403, status(403, "Forbidden", "namespaces is forbidden"))
    with pytest.raises(ClusterApiError):
        ports.cluster_api("dev").list_namespaces()
    service.answer(403, status(403, "Forbidden", "pods is forbidden"))
    with pytest.raises(ClusterApiError):
        ports.cluster_api("dev").list_pods(["shop"])
    for _ in range(2):  # the adapter's one quick retry of a 503 meets another
        service.answer(503, {"status": "error", "errorType": "unavailable", "error": "later"})
    with pytest.raises(MetricsUnavailable):
        ports.metrics("dev").windows(["shop"], [], 0, 600, 60)
    service.answer(400, {"status": "error", "errorType": "bad_data", "error": "parse error"})
    with pytest.raises(MetricsUnavailable):
        ports.metrics("dev").windows(["shop"], [], 0, 600, 60)

    text = errors(store)
    assert value(text, "meshops_api_errors_total", system="arm", code="409") == 1
    assert value(text, "meshops_api_errors_total", system="arm", code="404") == 1
    assert value(text, "meshops_api_errors_total", system="kubernetes", code="403") == 2
    assert value(text, "meshops_api_errors_total", system="prometheus", code="503") == 1
    assert value(text, "meshops_api_errors_total", system="prometheus", code="400") == 1


def test_what_meshops_raises_on_its_own_is_not_an_api_error(store: RedisRunStore) -> None:
    class Refusing:
        def get_mesh(self, cluster: str) -> Any:
            raise TemporaryError("meshops' own wait")  # no SDK exception behind it

    class Ports:
        mesh = Refusing()

    ports = CountedPorts(Ports(), RunMetrics(store.r, store.p))  # type: ignore[arg-type]
    with pytest.raises(TemporaryError):
        ports.mesh.get_mesh("dev")
    assert "meshops_api_errors_total{" not in errors(store)


def test_a_ticks_arm_409_is_counted_through_the_engine(
        store: RedisRunStore, arm: LocalArm, service: Service) -> None:
    from workers.config import Fleet

    fleet = Fleet.model_validate({
        "clusters": {"dev": {
            "subscription": "00000000-0000-0000-0000-000000000000", "resource_group": "rg-dev",
            "name": "aks-dev", "location": "westus2", "channel": "C0DEV",
            "approvers": ["U0APPROVER"], "prometheus": {"url": service.url}}}})
    engine = Engine(fleet, store, LocalPorts(arm, service))  # type: ignore[arg-type]
    run = engine.start(StartRun("upgrade", "dev", "asm-1-26"), "U0REQUESTER", "C0DEV")
    arm.answer(409, {"error": {"code": "OperationNotAllowed", "message": "busy"}})
    advanced = engine.advance(run.id, run.seq)
    assert advanced is not None and advanced.run.retry is not None  # retried with backoff
    assert value(errors(store), "meshops_api_errors_total", system="arm", code="409") == 1


def test_slack_errors_are_counted_by_slacks_code(store: RedisRunStore,
                                                 service: Service) -> None:
    client = counted_slack_client(make_client("xoxb-test", service.url + "/"),
                                  RunMetrics(store.r, store.p))
    assert client.retry_handlers  # make_client's retries are kept
    service.answer(200, {"ok": False, "error": "not_in_channel"})
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C0DEV", text="hello")
    service.answer(200, {"ok": False, "error": "not_in_channel"})
    with pytest.raises(SlackApiError):
        client.chat_update(channel="C0DEV", ts="1.2", text="hello")
    service.answer(200, {"ok": True, "channel": "C0DEV", "ts": "1.3"})
    client.chat_postMessage(channel="C0DEV", text="hello")  # a success counts nothing
    assert value(errors(store), "meshops_api_errors_total", system="slack",
                 code="not_in_channel") == 2
