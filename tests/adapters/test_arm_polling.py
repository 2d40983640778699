"""Following ARM's long-running operations with azure-core's poller, one poll a tick.

``AksMeshApi`` against a local HTTPS server that answers like ARM (the ARM asynchronous
operations contract: a PUT answered with ``Azure-AsyncOperation``, or without it the
resource's ``provisioningState``; status bodies ``{"status", "error"}``; ``Retry-After``),
in the cases the sandbox does not play: ``Retry-After`` on a status answer, a poll that is
refused, an operation without a status URL. The contract test replays the real answers in
``../shared/data/aks/arm/``.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from sandbox.certs import make_certificate
from workers.arm.aks import AksMeshApi
from workers.config import Fleet
from workflows.errors import ArmError, TemporaryError
from workflows.model import Operation, Run
from workflows.operations import (
    OPERATION_FIRST_LOOK_S,
    OPERATION_LEAST_S,
    converge_revisions,
    next_poll_at,
    operation_recheck_s,
    operation_wait_s,
)
from workflows.ports import OperationStatus

SUB = "00000000-0000-0000-0000-000000000000"
CLUSTER = f"/subscriptions/{SUB}/resourceGroups/rg-dev/providers/Microsoft.ContainerService/" \
          "managedClusters/aks-dev"
OPERATION = f"/subscriptions/{SUB}/providers/Microsoft.ContainerService/locations/westus2/" \
            "operations/4c6c494a-baab-4e64-9cd4-9e59b0b6e385?api-version=2016-03-30"

Answer = tuple[int, dict[str, str], Any]


class LocalArm:
    """HTTPS on loopback, answering each request with the next canned answer; ``seen``
    keeps (method, path) of every request."""

    def __init__(self, tls_dir: Path) -> None:
        self.answers: list[Answer] = []
        self.seen: list[tuple[str, str]] = []
        self.cert, key = make_certificate(tls_dir)
        arm = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arm.seen.append((self.command, self.path))
                status, headers, body = arm.answers.pop(0) if arm.answers else \
                    (500, {}, {"error": {"code": "NoAnswerLeft", "message": self.path}})
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v.replace("{arm}", arm.url))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = _answer  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, status: int, body: Any, **headers: str) -> LocalArm:
        """Queue an answer; ``{arm}`` in a header value is this server's URL."""
        self.answers.append((status, {k.replace("_", "-"): v for k, v in headers.items()},
                             body))
        return self

    def polls(self) -> list[str]:
        """The paths of the status GETs (everything but the cluster's own URL)."""
        return [p for m, p in self.seen if m == "GET" and not p.startswith(CLUSTER)]


class StaticCredential:
    """A TokenCredential with one token (the local ARM checks none)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("local-arm-token", int(time.time()) + 3600)


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[LocalArm]:
    server = LocalArm(tmp_path / "tls")
    yield server
    server.server.shutdown()


def aks(arm: LocalArm) -> AksMeshApi:
    """A new adapter, as a worker that starts has: nothing shared with the one that PUT."""
    fleet = Fleet.model_validate({
        "azure": {"arm_endpoint": arm.url, "ca_bundle": str(arm.cert)},
        "clusters": {"dev": {
            "subscription": SUB, "resource_group": "rg-dev", "name": "aks-dev",
            "location": "westus2", "channel": "C0DEV", "approvers": ["U0APPROVER"],
            "prometheus": {"url": "http://127.0.0.1:9"}}}})
    return AksMeshApi(fleet, credential=StaticCredential())  # type: ignore[arg-type]


def cluster(state: str, revisions: list[str]) -> dict[str, Any]:
    """A managedCluster body with the fields meshops reads."""
    return {"id": CLUSTER, "name": "aks-dev", "type": "Microsoft.ContainerService/ManagedClusters",
            "location": "westus2",
            "properties": {"provisioningState": state, "kubernetesVersion": "1.30",
                           "currentKubernetesVersion": "1.30.5",
                           "serviceMeshProfile": {"mode": "Istio",
                                                  "istio": {"revisions": revisions}}}}


STABLE, BOTH = ["asm-1-25"], ["asm-1-25", "asm-1-26"]


def start(arm: LocalArm, status: int = 200, **headers: str) -> str:
    """``set_revisions`` answered by a GET of the cluster and the PUT's answer; the token."""
    arm.answer(200, cluster("Succeeded", STABLE))
    arm.answer(status, cluster("Updating", BOTH), **headers)
    token = aks(arm).set_revisions("dev", BOTH)
    assert token
    return token


def run_with(token: str) -> Run:
    """A run that started the operation of ``token``, as the store gives it back."""
    run = Run(id="r-1", cluster="dev", requester="U1", channel="C0DEV",
              canary_revision="asm-1-26", stable_revision="asm-1-25", created_at=1.0,
              updated_at=1.0, operation=Operation(revisions=BOTH, token=token, started_at=1.0))
    return Run.model_validate_json(run.model_dump_json())


def test_retry_after_of_a_status_answer_is_the_delay_of_the_next_tick(arm: LocalArm) -> None:
    token = start(arm, Azure_AsyncOperation="{arm}" + OPERATION, Retry_After="99")
    assert arm.polls() == []  # the PUT is not polled when it is sent
    arm.answer(200, {"name": "op", "status": "InProgress"}, Retry_After="17")
    status = aks(arm).operation_status("dev", token)
    assert (status.status, status.done, status.retry_after_s) == ("InProgress", False, 17)
    assert arm.polls() == [OPERATION]  # Azure-AsyncOperation's URL, once
    # the core waits that long before its next tick (and a poll without one: its own pace);
    # while the operation runs, its poll is the only read (no GET of the cluster)
    ports = SimpleNamespace(mesh=aks(arm))
    arm.answer(200, {"name": "op", "status": "InProgress"}, retry_after_ms="42000")
    assert converge_revisions(run_with(token), ports, BOTH, 2.0)[1] == 42
    # none: the next point of a schedule fixed from the PUT (at 1.0): 1, 1.5, 2, 2.5, …
    # each as long again as the one before times a quarter, at least OPERATION_LEAST_S, at
    # most POLL_S: a 2 s operation is seen done within 0.5 s
    for now, wait in [(3.0, OPERATION_LEAST_S), (9.0, 9.537 - 8.0),
                      (3600.0, 3599.901 - 3599.0)]:
        arm.answer(200, {"name": "op", "status": "InProgress"})
        assert converge_revisions(run_with(token), ports, BOTH, now)[1] == \
            pytest.approx(wait, abs=1e-3)
    arm.answer(200, {"name": "op", "status": "Succeeded"})
    arm.answer(200, cluster("Succeeded", BOTH))
    assert converge_revisions(run_with(token), ports, BOTH, 4.0)[1] is None
    assert arm.polls() == [OPERATION] * 6
    assert [m for m, _ in arm.seen].count("GET") == 1 + 6 + 1  # set_revisions', the
    # polls, and the one that found the operation done
    assert [m for m, _ in arm.seen].count("PUT") == 1


def test_a_late_poll_does_not_push_the_later_ones_back() -> None:
    """The schedule is fixed from the PUT, as a ticker's: a poll that a busy worker ran 0.3 s
    late (at 2.3 s, for the point at 2.0) still has the next at 2.5, not 0.5 s after it."""
    op = Operation(revisions=BOTH, token="t", started_at=100.0)
    status = OperationStatus(status="InProgress")
    assert operation_recheck_s(status, op, 102.3) == pytest.approx(0.2)
    assert operation_recheck_s(status, op, 100.0) == pytest.approx(OPERATION_FIRST_LOOK_S)
    # a poll so late it missed points: the next point after now, not the ones missed
    assert operation_recheck_s(status, op, 104.0) == pytest.approx(next_poll_at(4.0) - 4.0)
    assert [round(next_poll_at(e), 3) for e in (0, 1.0, 2.0, 2.6, 20.0)] == \
        [1.0, 1.5, 2.5, 3.125, 20.901]
    # ARM's Retry-After wins over the schedule
    assert operation_recheck_s(OperationStatus(status="InProgress",
                                               retry_after_s=7), op, 102.3) == 7


def test_a_failed_operation_keeps_arms_code_and_message(arm: LocalArm) -> None:
    token = start(arm, Azure_AsyncOperation="{arm}" + OPERATION)
    arm.answer(200, {"name": "op", "status": "Failed", "error": {
        "code": "IstioAddonInstallationFailed", "message": "istiod did not become ready"}})
    status = aks(arm).operation_status("dev", token)
    assert (status.status, status.error_code, status.error_message) == (
        "Failed", "IstioAddonInstallationFailed", "istiod did not become ready")
    arm.answer(200, {"name": "op", "status": "Canceled", "error": {
        "code": "OperationCanceled", "message": "canceled by a newer PUT"}})
    with pytest.raises(ArmError) as raised:
        operation_wait_s(run_with(token), SimpleNamespace(mesh=aks(arm)), "enabling the mesh",
                         2.0)
    assert raised.value.code == "OperationCanceled"
    assert str(raised.value) == ("enabling the mesh ended Canceled: OperationCanceled: "
                                 "canceled by a newer PUT")


@pytest.mark.parametrize(("answers", "error", "delay", "needle"), [
    ([(429, {"retry-after-ms": "20"})] * 3, TemporaryError, 0.02, "429"),
    ([(503, {"retry-after-ms": "10"})] * 3, TemporaryError, 0.01, "503 ServiceUnavailable"),
    ([(404, {})], ArmError, None, "not found in Azure"),
])
def test_a_refused_poll_goes_through_the_error_translation(
        arm: LocalArm, answers: list[tuple[int, dict[str, str]]], error: type[Exception],
        delay: float | None, needle: str) -> None:
    token = start(arm, Azure_AsyncOperation="{arm}" + OPERATION)
    codes = {429: "TooManyRequests", 503: "ServiceUnavailable", 404: "NotFound"}
    for status, headers in answers:  # azure-core retries 429 and 5xx twice, as configured
        arm.answer(status, {"error": {"code": codes[status], "message": "from the poll"}},
                   **headers)
    with pytest.raises(error, match=needle) as raised:
        aks(arm).operation_status("dev", token)
    assert type(raised.value) is error
    if isinstance(raised.value, TemporaryError):
        assert raised.value.delay_s == delay
    else:
        assert isinstance(raised.value, ArmError) and raised.value.code == "NotFound"
    assert "following the ARM operation on aks-dev" in str(raised.value)


def test_a_status_answer_without_a_status_is_a_permanent_error(arm: LocalArm) -> None:
    token = start(arm, Azure_AsyncOperation="{arm}" + OPERATION)
    arm.answer(200, {"name": "op"})
    with pytest.raises(ArmError, match="could not be read \\(No status found in body\\)"):
        aks(arm).operation_status("dev", token)


def test_without_a_status_url_the_resources_provisioning_state_is_followed(
        arm: LocalArm) -> None:
    """ARM's third way (no Azure-AsyncOperation, no Location): GET the resource itself."""
    token = start(arm)
    arm.answer(200, cluster("Updating", BOTH))
    assert aks(arm).operation_status("dev", token).status == "Updating"
    arm.answer(200, cluster("Succeeded", BOTH))
    assert aks(arm).operation_status("dev", token).status == "Succeeded"
    assert [p.split("?")[0] for m, p in arm.seen if m == "GET"][-2:] == [CLUSTER] * 2


def test_a_put_that_ended_at_once_is_not_polled(arm: LocalArm) -> None:
    arm.answer(200, cluster("Succeeded", STABLE))
    arm.answer(200, cluster("Succeeded", BOTH))  # no Azure-AsyncOperation: nothing to wait for
    token = aks(arm).set_revisions("dev", BOTH)
    assert token
    worker = aks(arm)
    assert worker.operation_status("dev", token).status == "Succeeded"
    assert worker.calls == 0 and len(arm.seen) == 2


def test_a_run_stored_with_the_status_url_is_followed_by_provisioning_state(
        arm: LocalArm) -> None:
    """Runs stored before tokens hold ``url``: the Azure-AsyncOperation URL."""
    stored = run_with("x").model_dump()
    stored["operation"] = {"revisions": BOTH, "url": arm.url + OPERATION, "started_at": 1.0}
    run = Run.model_validate_json(json.dumps(stored))
    arm.answer(200, cluster("Updating", BOTH))
    assert operation_wait_s(run, SimpleNamespace(mesh=aks(arm)), "x", 3.0) == 0.5  # running
    arm.answer(200, cluster("Succeeded", BOTH))
    assert operation_wait_s(run, SimpleNamespace(mesh=aks(arm)), "x", 3.0) is None  # done
    arm.answer(200, cluster("Failed", BOTH))
    with pytest.raises(ArmError, match="ended Failed: None: ARM's error is not known here"):
        operation_wait_s(run, SimpleNamespace(mesh=aks(arm)), "x", 3.0)
    assert arm.polls() == []


@pytest.mark.contract
def test_the_real_answers_of_arm_are_followed_to_the_end(arm: LocalArm,
                                                         shared_data: Path) -> None:
    """The PUT answered as in the recording (201 Created, ``azure-asyncoperation``, the
    cluster Creating), then the recorded status bodies, the preempted one included."""
    real = json.loads((shared_data / "aks/arm/real_async_operation_bodies_from_cli_recording"
                                      ".json").read_text())
    token = start(arm, 201, azure_asyncoperation="{arm}" + OPERATION)
    for body in (real["poll_in_progress"], real["poll_in_progress_preempted"],
                 real["poll_succeeded"]):
        arm.answer(200, body)
    statuses = [aks(arm).operation_status("dev", token) for _ in range(3)]
    assert [(s.status, s.error_code) for s in statuses] == [
        ("InProgress", None), ("InProgress", "NotLatestOperation"), ("Succeeded", None)]
    assert [s.done for s in statuses] == [False, False, True]
    assert arm.polls() == [OPERATION] * 3
