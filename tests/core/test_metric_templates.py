"""The team's own gate metrics (issue 12: configurable metrics like Flagger's
MetricTemplate and Argo Rollouts' AnalysisTemplate, some dry-run). No I/O."""

from __future__ import annotations

from tests.core.fakes import FakeWorld
from tests.core.test_real_clusters import approved
from tests.core.test_workflow import drive
from workflows.metric_templates import render
from workflows.model import GateThresholds, MetricTemplate, Phase

QUEUE = MetricTemplate(name="queue-errors", max=0.01,
                       query='sum(rate(app_queue_errors_total{namespace="{{ namespace }}"}'
                             '[{{interval}}]))')
SHADOW = MetricTemplate(name="shadow-latency", max=100, dry_run=True,
                        query='max(app_latency{namespace="{{namespace}}"})')


def world_with(values: dict[str, float | None]) -> FakeWorld:
    world = FakeWorld.seeded(["a"])
    world.template_values = values
    return world


def with_metrics(run, *templates: MetricTemplate):  # type: ignore[no-untyped-def]
    return run.evolve(thresholds=GateThresholds(metrics=list(templates)))


def test_placeholders_are_filled_in() -> None:
    assert render(QUEUE, "shop", 60) == \
        'sum(rate(app_queue_errors_total{namespace="shop"}[60s]))'


def test_a_failing_template_fails_the_wave_and_says_why() -> None:
    world = world_with({render(QUEUE, "a", 10): 0.2})
    run, now = approved(world)
    run, now = drive(with_metrics(run, QUEUE), world, now)
    assert run.phase == Phase.ROLLED_BACK, run.history[-1].text
    assert "a queue-errors 0.2 not <= 0.01" in run.outcome


def test_a_dry_run_template_is_reported_never_gating() -> None:
    world = world_with({render(QUEUE, "a", 10): 0.0, render(SHADOW, "a", 10): 900.0})
    run, now = approved(world)
    run, now = drive(with_metrics(run, QUEUE, SHADOW), world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    checks = [c for w in run.waves for s in w.samples for c in s.checks]
    shadow = [c for c in checks if c.metric == "shadow-latency (dry run)"]
    assert shadow and not shadow[0].ok and shadow[0].value == 900.0
    assert all(c.ok for c in checks if c.metric == "queue-errors")


def test_no_data_fails_a_template_as_flagger_does() -> None:
    world = world_with({})
    run, now = approved(world)
    run, now = drive(with_metrics(run, QUEUE), world, now)
    assert run.phase == Phase.ROLLED_BACK
    assert "a queue-errors no data not <= 0.01" in run.outcome
