"""The Kubernetes emulator's faults (issue 11, item 8) through the product's adapter: API
Priority and Fairness 429s with Retry-After, 5xx, write conflicts and a hung API server are
all temporary errors, the 429 carrying the server's Retry-After, the hang cut by the
adapter's timeout."""

from __future__ import annotations

import time

import pytest
import requests

from sandbox.app import Sandbox
from workers.kube.cluster import KubernetesClusterApi
from workers.wiring import FleetPorts
from workflows.errors import TemporaryError


def stage(sandbox: Sandbox, *faults: dict[str, object]) -> None:
    requests.post(sandbox.url["control"] + "/_sandbox/kube-faults",
                  json={"faults": list(faults)}, timeout=5).raise_for_status()


def test_429_5xx_and_conflicts_are_temporary(ports: FleetPorts, sandbox: Sandbox) -> None:
    capi = ports.cluster_api("dev")
    stage(sandbox, {"status": 429, "retry_after": 3, "path": "/pods"})
    with pytest.raises(TemporaryError, match="429 TooManyRequests") as throttled:
        capi.list_pods(["checkout"])
    assert throttled.value.delay_s == 3.0
    stage(sandbox, {"status": 503})
    with pytest.raises(TemporaryError, match="503 ServiceUnavailable"):
        capi.list_namespaces()
    stage(sandbox, {"status": 409, "method": "PATCH"})
    with pytest.raises(TemporaryError, match="409 Conflict"):
        capi.set_namespace_revision("checkout", "asm-1-25")
    assert [ns.name for ns in capi.list_namespaces()]  # each fault taken once


def test_a_hung_api_server_is_cut_by_the_timeout(ports: FleetPorts, sandbox: Sandbox) -> None:
    capi = ports.cluster_api("dev")
    assert isinstance(capi, KubernetesClusterApi)
    short = KubernetesClusterApi(capi.core.api_client, "dev", timeout=(2.0, 1.0))
    stage(sandbox, {"hang_s": 3, "path": "namespaces"})
    started = time.monotonic()
    with pytest.raises(TemporaryError, match="Kubernetes API unreachable"):
        short.list_namespaces()
    assert time.monotonic() - started < 2.5
