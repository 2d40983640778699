"""The chaos suite, short version (``scripts/chaos`` runs the long one): an upgrade and a
rollback while the worker, the bot, beat and Redis are killed every few seconds and ARM,
Kubernetes and Slack faults are staged. Nothing acknowledged is lost, nothing happens
twice, no thread line is missing or doubled (:mod:`meshops.chaos`)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from meshops.chaos import run_chaos
from tests.conftest import free_port_base

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="no redis-server binary: ./scripts/setup installs it")]


@pytest.mark.timeout(900)
def test_upgrade_and_rollback_under_chaos_lose_nothing(
        tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    lines: list[str] = []
    # an upgrade of dev and a rollback of staging side by side, one monkey for both
    figures = run_chaos(tmp_path, free_port_base(29000, 32000, 100), rounds=2, parallel=2,
                        seed=11, every=(2.5, 5.0), echo=lines.append)
    report = "\n".join(lines)
    record_property("chaos", lines)  # printed at the end of the test run (conftest)
    assert figures.rounds == 2, report
    assert figures.kills["worker"] >= 1 and figures.kill_phases["migrating"] >= 1, report
    assert sum(figures.kills.values()) >= 4, report  # it did kill things
    assert figures.losses == 0, report
    assert lines[-1].endswith("losses 0"), report
