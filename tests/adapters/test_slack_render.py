"""Every message meshops renders is valid Block Kit within Slack's limits."""

from __future__ import annotations

import pytest
from slack_sdk.models.blocks import Block

from tests.core.fakes import FakeWorld
from tests.core.test_workflow import POLICY, drive, new_run
from workers.slack.render import render_event, render_root
from workflows.lifecycle import decide
from workflows.model import NamespaceMetrics, Phase, Run


def valid(blocks: list[dict]) -> None:
    assert len(blocks) <= 50
    for raw in blocks:
        block = Block.parse(raw)
        assert block is not None, raw
        block.validate_json()
        text = raw.get("text", {}).get("text", "") if isinstance(raw.get("text"), dict) else ""
        assert len(text) <= 3000


def runs_in_every_phase() -> list[Run]:
    world = FakeWorld.seeded([f"ns-{i:03d}" for i in range(120)])
    world.metrics_by_rev[("ns-005", "asm-1-26")] = NamespaceMetrics(
        requests=1000, success_rate=50.0, p99_ms=900)
    run, now = drive(new_run(), world, 0)
    out = [run]
    approved = decide(run, "approve", "UAPPROVER", POLICY, now)
    out.append(approved)
    rolled, _ = drive(approved, world, now)
    out.append(rolled)
    out.append(approved.evolve(phase=Phase.MIGRATING))
    out.append(approved.evolve(phase=Phase.AWAITING_COMPLETION))
    return out


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4])
def test_root_message_is_valid_block_kit(index: int) -> None:
    run = runs_in_every_phase()[index]
    text, blocks = render_root(run, ["U0BEN", "U0ANA"])
    valid(blocks)
    assert run.id in text
    actions = [b for b in blocks if b["type"] == "actions"]
    if run.phase == Phase.AWAITING_APPROVAL:
        assert [e["action_id"] for e in actions[0]["elements"]] == ["meshops_approve",
                                                                    "meshops_cancel"]
        assert all(e["value"] == run.id for e in actions[0]["elements"])
    if run.phase in (Phase.MIGRATING, Phase.AWAITING_COMPLETION):
        buttons = {e["action_id"]: e for e in actions[0]["elements"]}
        rollback = buttons["meshops_rollback"]
        assert rollback["confirm"]["title"]["text"] == "Roll back?"
        assert "back to *asm-1-25*" in rollback["confirm"]["text"]["text"]
        if run.phase == Phase.AWAITING_COMPLETION:
            assert "only *asm-1-26* remains" in buttons["meshops_complete"]["confirm"]["text"][
                "text"]
    if run.phase.terminal:
        assert not actions


def test_thread_lines_show_values_against_thresholds() -> None:
    run = runs_in_every_phase()[2]
    assert run.phase == Phase.ROLLED_BACK
    lines = [render_event(run, i) for i in range(len(run.history))]
    assert all(len(line) <= 3000 for line in lines)
    fail = next(line for line in lines if "FAIL" in line and "gate sample" in line)
    assert "✗ ns-005 success 50.00% ≥ 99.50%" in fail  # baseline 100 % − 0.5 points
    assert "✗ ns-005 p99 900 ms ≤ 60 ms" in fail  # 1.2 × the 50 ms baseline


def test_gate_chart_is_a_readable_png_of_the_right_size(tmp_path) -> None:
    import matplotlib.image

    from workers.slack.charts import HEIGHT_PX, WIDTH_PX, gate_chart

    run = runs_in_every_phase()[2]  # rolled back after a failing wave: several samples
    png = gate_chart(run)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    path = tmp_path / "chart.png"
    path.write_bytes(png)
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (HEIGHT_PX, WIDTH_PX)
    assert image.std() > 0.05  # not a blank canvas


def test_user_groups_among_approvers_are_mentioned_as_groups() -> None:
    run = Run(id="r-abc123", cluster="dev", requester="UREQ", channel="C1",
              canary_revision="asm-1-26", created_at=0, updated_at=0)
    _, blocks = render_root(run, ["U0AAAAAAA", "S0MESHLEADS"])
    assert "<@U0AAAAAAA>, <!subteam^S0MESHLEADS>" in str(blocks)
