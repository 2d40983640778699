"""A wrong world file stops ``meshops demo`` and ``meshops sandbox`` before anything starts,
naming the file, where and what was expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("command", ["demo", "sandbox"])
def test_wrong_world_fails_at_start(tmp_path: Path, command: str) -> None:
    world = tmp_path / "shop.yaml"
    world.write_text("clusters:\n  - name: aks-shop\n    location: westeurope\n"
                     "    kubernetes_version: 1.33\n    revisions: [asm-1-25]\n")
    out = subprocess.run([sys.executable, "-m", "meshops", command, "--world", str(world),
                          "--state-dir", str(tmp_path / "state")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert f"{world}: not a valid world file" in out.stderr
    assert "clusters[0].kubernetes_version: Input should be a valid string" in out.stderr
    assert not (tmp_path / "state" / "sandbox.json").exists()
