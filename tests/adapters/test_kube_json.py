"""Lists meshops converts at once are read as the API server's JSON (KubeObject), not as the
kubernetes client's models; the converters read them by the models' attribute names. The
list calls themselves are tested against the sandbox's API server (tests/sandbox)."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest

from workers.kube.cluster import KubeObject, KubernetesClusterApi, _json_page
from workflows.errors import TemporaryError

POD = {"metadata": {"name": "web-0", "namespace": "shop",
                    "labels": {"apps.kubernetes.io/pod-index": "0"},
                    "annotations": {"sidecar.istio.io/status": json.dumps(
                        {"revision": "asm-1-26"})},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                         "name": "web", "uid": "u1", "controller": True}],
                    "deletionTimestamp": "2026-12-03T10:00:00Z"},
       "spec": {"initContainers": [{"name": "istio-proxy",
                                    "image": "mcr.microsoft.com/oss/istio/proxyv2:1.26.2"
                                             "-distroless", "restartPolicy": "Always"}],
                "containers": [{"name": "web", "image": "nginx:1.27"}]},
       "status": {"phase": "Running",
                  "initContainerStatuses": [{"name": "istio-proxy", "restartCount": 4,
                                             "ready": False, "image": "proxyv2",
                                             "imageID": "sha256:1",
                                             "state": {"waiting": {
                                                 "reason": "CrashLoopBackOff"}}}],
                  "conditions": [{"type": "Ready", "status": "False"}]}}


def page(body: object) -> KubeObject:
    return _json_page(SimpleNamespace(data=json.dumps(body).encode()))


def test_fields_read_by_the_models_names_and_missing_ones_are_none() -> None:
    got = page({"metadata": {"continue": "abc"}, "items": [POD]})
    pod = got["items"][0]
    assert got.metadata._continue == "abc"
    assert pod.metadata.owner_references[0].controller is True
    assert pod.status.init_container_statuses[0].restart_count == 4
    assert pod.metadata.labels.get("apps.kubernetes.io/pod-index") == "0"  # a dict still
    assert pod.spec.node_name is None and pod.status.pod_ip is None
    with pytest.raises(AttributeError):
        pod.__deepcopy_me__  # noqa: B018
    assert copy.deepcopy(pod) == pod


def test_a_pod_from_json_is_the_pod_the_typed_models_give() -> None:
    from kubernetes import client as k8s

    typed = k8s.ApiClient().deserialize(json.dumps(POD), "V1Pod", "application/json")
    from_json = KubernetesClusterApi._pod(page({"items": [POD]})["items"][0])
    assert from_json == KubernetesClusterApi._pod(typed)
    assert (from_json.revision, from_json.proxy_version, from_json.waiting_reason,
            from_json.owner_kind, from_json.ordinal, from_json.terminating) == (
        "asm-1-26", "1.26.2", "CrashLoopBackOff", "StatefulSet", 0, True)


def test_an_answer_cut_short_is_a_temporary_error() -> None:
    with pytest.raises(TemporaryError, match="not JSON"):
        _json_page(SimpleNamespace(data=b'{"items": [{"metadata"'))
    with pytest.raises(TemporaryError, match="list"):
        _json_page(SimpleNamespace(data=b"[]"))


def test_the_worker_imports_the_api_groups_before_its_pool_forks() -> None:
    """The kubernetes client imports each API group's module on its first use; the worker's
    task module must have imported them, so that Celery's pool processes (forked after the
    tasks are loaded) do not each pay ~0.6 s on their first tick (issue 13)."""
    import subprocess
    import sys

    code = ("import json, sys, workers.tasks.app; "
            "print(json.dumps(sorted(m.rsplit('.', 1)[1] for m in sys.modules "
            "if m.startswith('kubernetes.client.api.') and m.endswith('_api'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == ["admissionregistration_v1_api", "apps_v1_api", "batch_v1_api",
                         "core_v1_api", "custom_objects_api"]


def test_namespaced_lists_share_one_pool_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read's namespaced lists run on the process' one pool of LIST_CONCURRENCY
    threads, in the namespaces' order, the first error raised; a forked process (another
    pid) makes its own pool, as the parent's threads are not in it (issue 13)."""
    import os
    import threading

    from workers.kube import cluster

    api = KubernetesClusterApi.__new__(KubernetesClusterApi)
    threads: set[int] = set()

    def one(ns: str) -> list[str]:
        threads.add(threading.get_ident())
        if ns == "bad":
            raise TemporaryError(f"listing {ns}")
        return [f"{ns}/a", f"{ns}/b"]

    names = [f"ns{i:02d}" for i in range(20)]
    assert api._per_namespace(names, one) == [f"{n}/{x}" for n in names for x in "ab"]
    pool = cluster.list_pool()
    assert api._per_namespace(names[:3], one) == [f"{n}/{x}" for n in names[:3] for x in "ab"]
    assert cluster.list_pool() is pool
    # both reads ran on the pool's threads, not on threads of a pool made per read
    assert threads and threads <= {t.ident for t in pool._threads}
    assert len(threads) <= cluster.LIST_CONCURRENCY
    with pytest.raises(TemporaryError, match="listing bad"):
        api._per_namespace(["ns00", "bad", "ns01"], one)
    assert api._per_namespace(names[:2], one)  # the pool still works after an error
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a forked pool process
    assert cluster.list_pool() is not pool
