"""PrometheusMetricsApi: one query per metric for a whole wave; an outage is an ERROR."""

from __future__ import annotations

import pytest

from workers.prom.metrics import PrometheusMetricsApi, wave_queries
from workflows.errors import MetricsUnavailable


def test_one_query_per_metric_for_the_whole_wave() -> None:
    q = wave_queries({"cluster": "aks-1"}, ["b", "a"], 60)
    assert set(q) == {"requests", "errors", "p99_ms"}
    for query in q.values():
        assert 'destination_workload_namespace=~"a|b"' in query
        assert 'reporter="destination"' in query and 'cluster="aks-1"' in query
        assert "[60s]" in query
    assert 'response_code=~"5.."' in q["errors"]
    assert q["p99_ms"].startswith("histogram_quantile(0.99, sum by (destination_workload_"
                                  "namespace, le)")


def test_prometheus_down_is_metrics_unavailable() -> None:
    api = PrometheusMetricsApi("http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(MetricsUnavailable, match="could not be queried"):
        api.sample(["a"], 5)
