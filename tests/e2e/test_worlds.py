"""``meshops demo --world`` and ``meshops sandbox --world`` end to end: real public sample
apps upgraded from Slack, and a person's kubectl on the sandbox's kubeconfig."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshops.demo import run_demo
from tests.conftest import FIXTURES, REDIS_URL
from tests.sandbox.test_kubectl import KUBECTL

pytestmark = pytest.mark.e2e
WORLDS = FIXTURES / "worlds"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("world", ["online-boutique", "aks-store"])
def test_demo_upgrades_a_real_app_world(world: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    base = random.randrange(26000, 29000, 100)
    lines: list[str] = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    code = run_demo("upgrade", tmp_path, base, base + 80, "5s", "2s", None, 420,
                    world_file=WORLDS / f"{world}.yaml")
    transcript = "\n".join(lines)
    assert re.fullmatch(r"run r-[0-9a-f]{10}: completed", lines[-1]), transcript[-3000:]
    assert code == 0, transcript[-3000:]
    assert "asm-1-27" in lines[1]  # the newest valid upgrade of meshUpgradeProfiles


@pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary: install the dev extras")
def test_sandbox_world_prints_a_kubeconfig_for_kubectl(tmp_path: Path) -> None:
    base = random.randrange(26000, 29000, 100)
    proc = subprocess.Popen([sys.executable, "-m", "meshops", "sandbox", "--world",
                             str(WORLDS / "crashloop.yaml"), "--state-dir", str(tmp_path),
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
