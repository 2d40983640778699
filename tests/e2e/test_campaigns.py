"""Fleet campaigns end to end (issue 14), through the bot, the Celery worker and beat, the
sandbox's ARM, Kubernetes, Prometheus and Slack: ``meshops demo --scenario fleet-halt`` on
a small fleet (tests/fixtures/worlds/campaign-halt.yaml). The full nine-cluster
``--scenario fleet`` and ``fleet-halt`` take minutes each: ``meshops demo`` plays them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meshops.demo import run_demo
from tests.conftest import FIXTURES, REDIS_URL, free_port_base

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(420)
def test_a_campaign_halts_on_its_budget_and_leaves_the_next_stage_untouched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    base = free_port_base(26000, 29000, 100)
    lines: list[str] = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    code = run_demo("fleet-halt", tmp_path, base, base + 80, "6s", "3s", None, 360,
                    world_file=FIXTURES / "worlds" / "campaign-halt.yaml")
    transcript = "\n".join(lines)
    assert re.fullmatch(r"campaign r-[0-9a-f]{10}: halted", lines[-1]), transcript[-4000:]
    assert code == 0, transcript[-4000:]  # the demo's own checks: see campaign_problems
    # the plan, read-only, says what will happen to each cluster and why
    assert "blocked: asm-1-27 supports Kubernetes 1.31, 1.32, 1.33, 1.34 (this cluster " \
           "runs 1.30)" in transcript
    # dev's run was approved and completed on the campaign's behalf, by its approver
    assert re.search(r"dev-1: approve run r-[0-9a-f]{10} on the campaign's behalf", transcript)
    # both bad canaries rolled back by their own gates; the campaign says why it stopped
    assert transcript.count("staging-1 failed: rolled back: metric gate FAIL") + \
        transcript.count("staging-2 failed: rolled back: metric gate FAIL") == 2, \
        transcript[-4000:]
    assert re.search(r"halted: 2 clusters of stage staging failed", transcript), \
        transcript[-4000:]
    (runs,) = [ln for ln in lines if re.match(r"\(campaign r-[0-9a-f]{10}: \d+ cluster runs", ln)]
    assert "staging-1 asm-1-27 rolled_back" in runs and "staging-2 asm-1-27 rolled_back" in runs
    assert "prod-" not in runs  # the third stage never started
