"""Upgrade options typed in Slack against the cluster's defaults: a ``--bake`` shorter than
the cluster's gate interval (or an ``--interval`` longer than its bake) is refused with the
numbers, before a run is stored; the interval's bound stays below the broker's visibility
timeout."""

from __future__ import annotations

import json

import pytest

from tests.bot.test_payloads import PAYLOADS, bolt, dispatch, slack, slash_body  # noqa: F401
from tests.conftest import eventually
from workflows.syntax import INTERVAL_BOUNDS_S


@pytest.mark.parametrize(("text", "needle"), [
    ("upgrade prod-weu asm-1-26 --bake=30s",
     "The gate interval (1m) is longer than the bake (30s): the gate would not sample once "
     "per wave. Make `--interval` at most `--bake`. (`prod-weu` bakes 30s with an interval "
     "of 1m unless told otherwise.)"),
    ("plan dev-weu asm-1-26 --interval=4m", "The gate interval (4m) is longer than the bake "
                                            "(3m)"),
    ("upgrade prod-weu asm-1-26 --bake=5m --bake=10m", "`--bake` is given more than once"),
    ("upgrade prod-weu asm-1-26 --bake=0", "`--bake` must be between 5s and 24h"),
])
def test_options_that_do_not_fit_are_refused_and_store_nothing(bolt, text: str,  # noqa: F811
                                                               needle: str) -> None:
    app, store, enqueued = bolt
    body = slash_body(PAYLOADS["project"]["slash"].read_text(), text, user="U0AAAAAAA")
    resp = dispatch(app, body)
    answer = json.loads(resp.body)
    assert resp.status == 200 and answer["response_type"] == "ephemeral"
    assert needle in answer["text"]
    assert enqueued == [] and store.list_runs() == []


def test_options_that_fit_the_cluster_start_the_run(bolt) -> None:  # noqa: F811
    app, store, enqueued = bolt
    body = slash_body(PAYLOADS["project"]["slash"].read_text(),
                      "upgrade prod-weu asm-1-26 --bake=30s --interval=10s", user="U0AAAAAAA")
    assert "Planning the upgrade" in json.loads(dispatch(app, body).body)["text"]
    run = store.get(eventually(lambda: enqueued)[-1][0])  # published after the answer
    assert (run.options.bake_s, run.options.interval_s) == (30, 10)


def test_the_longest_interval_is_well_below_the_brokers_visibility_timeout() -> None:
    """The next gate sample is a Celery task with the interval as countdown; Redis
    redelivers a task held longer than ``visibility_timeout``."""
    from workers.tasks.app import app

    assert INTERVAL_BOUNDS_S[1] <= app.conf.broker_transport_options["visibility_timeout"] / 2
