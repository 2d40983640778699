"""A metric template's query against a real Prometheus: one value, none without data, and a
query returning several series refused (a template must aggregate, as Flagger asks)."""

from __future__ import annotations

import pytest

from tests.adapters.test_prom_windows import prometheus  # noqa: F401 - the fixture
from workers.prom.metrics import PrometheusMetricsApi
from workflows.errors import MetricsUnavailable


def test_one_value_none_without_data_and_several_series_refused(
        prometheus: tuple[str, int]) -> None:  # noqa: F811
    api = PrometheusMetricsApi(prometheus[0])
    assert api.value("vector(0.25)") == 0.25
    assert api.value("scalar(vector(0.5))") == 0.5  # resultType "scalar": [time, value]
    assert api.value("0.75") == 0.75
    assert api.value("sum(meshops_no_such_metric_total)") is None
    two = ('label_replace(vector(1), "a", "x", "", "") or '
           'label_replace(vector(2), "a", "y", "", "")')
    with pytest.raises(MetricsUnavailable, match="returns 2 series, not one value"):
        api.value(two)
    with pytest.raises(MetricsUnavailable, match="returns a matrix, not one value"):
        api.value("vector(1)[2m:1m]")
    with pytest.raises(MetricsUnavailable, match="returns a string, not one value"):
        api.value('"text"')
