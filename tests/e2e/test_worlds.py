"""``meshops demo --world`` and ``meshops sandbox --world`` end to end: real public sample
apps upgraded from Slack, and a person's kubectl on the sandbox's kubeconfig."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshops.demo import run_demo
from tests.conftest import FIXTURES, REDIS_URL, free_port_base
from tests.sandbox.test_kubectl import KUBECTL

pytestmark = pytest.mark.e2e
# gate windows of 3 s: each holds several scrapes of pods that were just replaced (their
# series start anew), so a wave that just moved is not judged on a sliver of its traffic
WORLDS = FIXTURES / "worlds"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("world", ["aks-store"])  # Online Boutique: the rollback test below
def test_demo_upgrades_a_real_app_world(world: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    base = free_port_base(26000, 29000, 100)
    lines: list[str] = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    code = run_demo("upgrade", tmp_path, base, base + 80, "6s", "3s", None, 420,
                    world_file=WORLDS / f"{world}.yaml")
    transcript = "\n".join(lines)
    assert re.fullmatch(r"run r-[0-9a-f]{10}: completed", lines[-1]), transcript[-3000:]
    assert code == 0, transcript[-3000:]
    assert "asm-1-27" in lines[1]  # the newest valid upgrade of meshUpgradeProfiles
    # B4: store-staging is labelled with the revision tag prod-stable: the tag moves, once
    assert "revision tag prod-stable (asm-1-26; namespaces store-staging)" in transcript
    assert transcript.count("revision tag prod-stable points at asm-1-27") == 1, transcript
    # B5: the Gateway API gateway of `store` is in the plan and moves with its namespace
    assert "Gateway API gateways (deployed by istiod as <name>-istio" in transcript
    assert "store/store-gateway" in transcript
    left = [line for line in lines if "not on the asm-1-27 sidecar" in line]
    assert not any("store-gateway" in line or "store-staging" in line for line in left), left


def demo(scenario: str, world: str, tmp_path: Path) -> list[str]:
    base = free_port_base(26000, 29000, 100)
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REDIS_URL", REDIS_URL)
        mp.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
        run_demo(scenario, tmp_path, base, base + 80, "6s", "3s", None, 420,
                 world_file=WORLDS / f"{world}.yaml")
    return lines


BUSY_WAIT = ("waiting: the cluster is Updating (another operation runs on it); meshops "
             "looks again every 15s and goes on when it has finished")


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("world", "needles"), [
    # B2: an OnDelete StatefulSet (pods deleted one at a time) and CronJobs/Jobs (never
    # restarted) named in the plan
    ("batch-and-stateful", ["OnDelete update strategy (meshops deletes their pods one at a "
                            "time", "Jobs and CronJobs (not restarted", "(OnDelete: one pod "
                            "at a time, each replacement ready before the next)"]),
    # B1: a cluster with Microsoft Entra ID and no local accounts, reached with an Entra
    # token; B3: a crash loop that was there before the upgrade is not the canary's fault;
    # B6: the team's MeshConfig is copied to the canary's before it starts; B8: a node pool
    # update keeps the cluster busy (ARM 409), meshops waits for it
    ("entra", ["already failing before",
               "MeshConfig: istio-shared-configmap-asm-1-25 will be copied to "
               "istio-shared-configmap-{canary} before the canary starts",
               "MeshConfig: copied istio-shared-configmap-asm-1-25 to "
               "istio-shared-configmap-{canary} in aks-istio-system",
               "(MeshConfig: istio-shared-configmap-{canary} holds the same data as "
               "istio-shared-configmap-asm-1-25: {{\"mesh\": \"accessLogFile: /dev/stdout\\n"
               "defaultConfig:\\n  holdApplicationUntilProxyStarts: true\\n\"}})",
               BUSY_WAIT]),
])
def test_demo_handles_what_real_clusters_hold(world: str, needles: list[str],
                                             tmp_path: Path) -> None:
    lines = demo("upgrade", world, tmp_path)
    transcript = "\n".join(lines)
    assert re.fullmatch(r"run r-[0-9a-f]{10}: completed", lines[-1]), transcript[-3000:]
    canary = re.search(r"plan: asm-1-\d+ → (asm-1-\d+)", transcript)
    assert canary, transcript[-3000:]
    for needle in needles:
        needle = needle.format(canary=canary.group(1))
        assert needle in transcript, (needle, transcript[-3000:])
    if world == "entra":  # the wait is said once, though meshops looked more than once
        assert transcript.count(BUSY_WAIT) == 1, transcript[-3000:]


@pytest.mark.timeout(600)
def test_demo_goes_on_when_slack_refuses_the_clusters_channel(tmp_path: Path) -> None:
    """B10: the app was never invited to the cluster's channel, so Slack answers every post
    there with not_in_channel; the run goes on, people decide by typing, ``/mesh status``
    says why they see nothing, and the refusal is recorded once."""
    lines = demo("upgrade", "unreachable-channels", tmp_path)
    transcript = "\n".join(lines)
    assert re.fullmatch(r"run r-[0-9a-f]{10}: completed", lines[-1]), transcript[-3000:]
    run_id = lines[-1].split()[1].rstrip(":")
    assert f"types: /mesh approve {run_id}" in transcript
    assert f"types: /mesh complete {run_id}" in transcript
    assert not any(line.startswith("[#mesh-quiet") for line in lines), transcript[-3000:]
    assert transcript.count("Slack refused this run's messages in <#C0QUIET> "
                            "(chat.postMessage: not_in_channel, since ") == 1, transcript
    assert f"(audit: 1 Slack refusal(s) recorded for run {run_id}: Slack refused " \
           "chat.postMessage: not_in_channel)" in transcript, transcript[-3000:]


@pytest.mark.timeout(600)
def test_a_broken_canary_on_a_real_app_world_rolls_back(tmp_path: Path) -> None:
    lines = demo("rollback", "online-boutique", tmp_path)
    transcript = "\n".join(lines)
    assert re.fullmatch(r"run r-[0-9a-f]{10}: rolled_back", lines[-1]), transcript[-3000:]


@pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary: install the dev extras")
def test_sandbox_world_prints_a_kubeconfig_for_kubectl(tmp_path: Path) -> None:
    base = free_port_base(26000, 29000, 100)
    proc = subprocess.Popen([sys.executable, "-m", "meshops", "sandbox", "--world",
                             str(WORLDS / "entra.yaml"), "--state-dir", str(tmp_path),
                             "--port-base", str(base)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        kubeconfig = None
        deadline = time.time() + 60
        assert proc.stdout is not None
        while time.time() < deadline and kubeconfig is None:
            line = proc.stdout.readline()
            m = re.search(r"export KUBECONFIG=(\S+)", line)
            kubeconfig = m.group(1) if m else None
        assert kubeconfig, "meshops sandbox did not say where the kubeconfig is"
        env = {**os.environ, "KUBECONFIG": kubeconfig, "HOME": str(tmp_path)}
        out = subprocess.run([str(KUBECTL), "get", "pods", "-n", "reviews"], env=env,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert re.search(r"ratings-v1-\S+\s+1/2\s+CrashLoopBackOff\s+4", out.stdout), out.stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
