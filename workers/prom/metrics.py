"""``PrometheusMetricsApi``: Istio's standard metrics of one cluster, on prometheus-api-client.

:meth:`PrometheusMetricsApi.windows` reads a wave as traffic windows: one range query per
signal for the whole wave, never one per namespace (every signal by reporter and revision,
:mod:`workers.prom.windows`); :meth:`PrometheusMetricsApi.value` answers a team's metric
template. Azure Monitor managed Prometheus is reached with an Entra token
(``auth: azure``). The client's exceptions, and only those, become ``MetricsUnavailable``
in :func:`workers.prom.errors.translate_prometheus_error`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from workers.prom.errors import PROMETHEUS_ERRORS, translate_prometheus_error
from workers.prom.windows import DEFAULT_SCRAPE_INTERVAL_S, read_windows
from workflows.errors import MetricsUnavailable
from workflows.traffic import TrafficWindow

AZURE_PROMETHEUS_SCOPE = "https://prometheus.monitor.azure.com/.default"


class PrometheusMetricsApi:
    """Implements :class:`workflows.ports.MetricsApi`."""

    def __init__(self, url: str, selector: dict[str, str] | None = None,
                 credential: Any | None = None, scope: str = AZURE_PROMETHEUS_SCOPE, *,
                 revision_label: str | None = None,
                 scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S):
        self.url = url
        # how windows tell the reporting proxy's revision (workers.prom.windows)
        self.revision_label = revision_label
        self.scrape_interval_s = scrape_interval_s
        self.scope = scope  # the token audience of the configured cloud
        self.selector = dict(selector or {})
        self.credential = credential
        # A gate sample is retried by the engine (verdict ERROR), so one quick retry here.
        self.prom = PrometheusConnect(
            url=url, disable_ssl=False, timeout=10,
            retry=Retry(total=1, backoff_factor=0.2, status_forcelist=[502, 503, 504]))
        self.queries = 0

    def _instant(self, q: str, at: float | None = None) -> Any:
        """One instant query (with an Entra token when ``auth: azure``) at ``at`` (Unix s;
        None: now, Prometheus' default), its ``result``."""
        self.queries += 1
        try:
            if self.credential is not None:
                token = self.credential.get_token(self.scope).token
                self.prom.headers = {"Authorization": f"Bearer {token}"}
            return self.prom.custom_query(q, params=None if at is None else {"time": at})
        except PROMETHEUS_ERRORS as exc:
            raise translate_prometheus_error(exc, self.url) from exc

    def value(self, query: str) -> float | None:
        """A metric template's instant query: its one value (Flagger's MetricTemplate
        contract: the query must return a single value); None without data."""
        result = self._instant(query)
        if isinstance(result, list) and len(result) > 1:
            raise MetricsUnavailable(f"the metric query returns {len(result)} series, not one "
                                     f"value (aggregate it, e.g. sum(...)): {query[:200]}")
        if not result:
            return None
        raw = result[0]["value"][1] if isinstance(result, list) else result[1]
        value = float(raw)
        return None if math.isnan(value) else value

    def _query_range(self, q: str, start: float, end: float, step_s: int
                     ) -> list[dict[str, Any]]:
        self.queries += 1
        try:
            if self.credential is not None:
                token = self.credential.get_token(self.scope).token
                self.prom.headers = {"Authorization": f"Bearer {token}"}
            result: list[dict[str, Any]] = self.prom.custom_query_range(
                q, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC),
                f"{step_s}s")
        except PROMETHEUS_ERRORS as exc:
            raise translate_prometheus_error(exc, self.url) from exc
        return result

    def windows(self, namespaces: list[str], gateways: list[str], start: float, end: float,
                step_s: float) -> list[TrafficWindow]:
        """Traffic windows of a wave: four range queries (requests by code, latency
        buckets, TCP opened, TCP failed), after one instant query for the wave's scrape
        targets when ``istio_build`` tells the revision, see :mod:`workers.prom.windows`."""
        return read_windows(self._query_range, self.selector, namespaces, gateways, start,
                            end, step_s, self.scrape_interval_s, self.revision_label,
                            self._instant)
