"""``PrometheusMetricsApi``: Istio's standard metrics of one cluster, on prometheus-api-client.

:meth:`PrometheusMetricsApi.windows` reads a wave as traffic windows: one range query for
the whole wave and its four signals, never one per namespace (every signal by reporter and
revision, :mod:`workers.prom.windows`); :meth:`PrometheusMetricsApi.value` answers a team's
metric template. Azure Monitor managed Prometheus is reached with an Entra token
(``auth: azure``). The client's exceptions (its session's, with its retry of 502/503/504,
and an answer other than 200) become ``MetricsUnavailable`` in
:func:`workers.prom.errors.translate_prometheus_error`; so does an answer that is not the
HTTP API's.

A range query's answer is read as it streams in, one series at a time
(:func:`iter_result`), over the client's own session: an hour of a 100-namespace wave's
latency buckets is ~25 MB of JSON, ~170 MB once parsed whole (what the client's
``custom_query_range`` does, with no way to stream), issue 13.

Queries are sent as ``POST`` with a form-encoded body (the Prometheus HTTP API: "useful
when specifying a large query that may breach server-side URL character limits"; Azure
Monitor's query endpoint takes ``POST`` for ``/api/v1/query`` and ``/api/v1/query_range``,
Azure doc ``prometheus-api-promql.md``): a wave's query names its namespaces and, joined on
the proxy's version, its scrape targets, tens of kilobytes for a big wave.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from workers.prom.cache import DEFAULT_MAX_FRESHNESS_S, WindowCache, process_cache
from workers.prom.errors import (
    PROMETHEUS_ERRORS,
    PrometheusAnswerError,
    translate_prometheus_error,
)
from workers.prom.windows import DEFAULT_SCRAPE_INTERVAL_S, read_windows, window_step_s
from workers.retry_after import retry_after_s
from workflows.errors import MetricsBusy, MetricsUnavailable
from workflows.traffic import TrafficWindow

AZURE_PROMETHEUS_SCOPE = "https://prometheus.monitor.azure.com/.default"
#: bytes read from an answer at a time
CHUNK_BYTES = 64 * 1024
#: the ``result`` array of ``data`` (Prometheus HTTP API: ``{"status": "success", "data":
#: {"resultType": "matrix", "result": [...]}}``, status and type written before it)
_RESULT = re.compile(r'"result"\s*:\s*\[')
_SKIP = re.compile(r"[\s,]*")


def iter_result(chunks: Iterable[bytes]) -> Iterator[Any]:
    """The items of an answer's ``data.result`` array, one at a time, from its bytes as
    they arrive (UTF-8 JSON); only the item being read and one chunk are held.

    Raises:
        ValueError: the answer has no ``result`` array, or is cut short or not JSON.
    """
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")()
    source = iter(chunks)
    buf, pos = "", -1

    def more() -> bool:
        nonlocal buf, pos
        chunk = next(source, None)
        if chunk is None:
            return False
        if pos > 0:
            buf, pos = buf[pos:], 0
        buf += text.decode(chunk)
        return True

    while pos < 0:
        m = _RESULT.search(buf)
        if m:
            pos = m.end()
        elif not more():
            raise ValueError("Prometheus' answer has no data.result")
    while True:
        pos = _SKIP.match(buf, pos).end()  # type: ignore[union-attr]
        if pos >= len(buf):
            if not more():
                raise ValueError("Prometheus' answer ends inside data.result")
            continue
        if buf[pos] == "]":
            return
        try:
            item, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError:
            if not more():
                raise ValueError("Prometheus' answer ends inside data.result, or is not "
                                 "JSON") from None
            continue
        yield item
        pos = end


def settled_session(url: str) -> requests.Session:
    """A ``requests.Session`` for ``url`` holding, from the start, what requests would read
    from the environment for it on every request: the proxy (``HTTPS_PROXY``/``HTTP_PROXY``
    unless ``NO_PROXY`` names the host), the CA bundle (``REQUESTS_CA_BUNDLE``,
    ``CURL_CA_BUNDLE``) and ``~/.netrc``'s credentials; it then reads the environment no
    more (``trust_env`` off).

    Why: requests' default (``trust_env``) scans ``os.environ`` and matches ``NO_PROXY`` on
    every request (``Session.merge_environment_settings``): 4 % of a fleet's worker time
    went there, a sixth of what reading Prometheus took (issue 13). The settings are those
    requests itself derives (its ``merge_environment_settings`` and ``get_netrc_auth``, as
    a request would call them), and a process's environment does not change while it runs.
    Only for a session that asks ``url``'s host, as the proxy chosen depends on it; a
    redirect to another host keeps this host's proxy and credentials (requests would look
    them up again for the new host), and Prometheus' API answers without redirects."""
    session = requests.Session()
    settings = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(settings["proxies"])
    session.verify = settings["verify"]
    session.cert = settings["cert"]
    # as requests does when a request carries no auth of its own: netrc's, if it has one
    session.auth = requests.utils.get_netrc_auth(url)
    session.trust_env = False
    return session


class PrometheusMetricsApi:
    """Implements :class:`workflows.ports.MetricsApi`."""

    def __init__(self, url: str, selector: dict[str, str] | None = None,
                 credential: Any | None = None, scope: str = AZURE_PROMETHEUS_SCOPE, *,
                 revision_label: str | None = None,
                 scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S,
                 cache_freshness_s: float = DEFAULT_MAX_FRESHNESS_S,
                 cache: WindowCache | None = None):
        self.url = url
        # how windows tell the reporting proxy's revision (workers.prom.windows)
        self.revision_label = revision_label
        self.scrape_interval_s = scrape_interval_s
        self.scope = scope  # the token audience of the configured cloud
        self.selector = dict(selector or {})
        self.credential = credential
        # A gate sample is retried by the engine (verdict ERROR), so one quick retry here.
        # The session is ours: range queries stream their answers through it (iter_result).
        self.session = settled_session(url)
        self.timeout_s = 10
        # a wave's range query is its four signals at once: Prometheus answers once all are
        # evaluated, so its first byte may take what four queries took (10 s each before)
        self.range_timeout_s: tuple[float, float] = (self.timeout_s, 4 * self.timeout_s)
        self.prom = PrometheusConnect(
            url=url, disable_ssl=False, timeout=self.timeout_s, session=self.session,
            # One quick retry of a gateway's 502/503/504, POST too: the queries are reads,
            # safe to send again (urllib3 retries only the idempotent methods unless told).
            # Not after a read timeout: the query reached Prometheus, which is busy with it;
            # sent again it would double the load and the wait (a step's time is bounded).
            # The last answer is kept, so that what Prometheus said is what the error says
            # (not urllib3's "too many 503s"), and a Retry-After is the engine's to wait
            # (MetricsUnavailable.delay_s), never a sleep inside the worker (urllib3 sleeps
            # it, up to hours, unless told).
            retry=Retry(total=1, read=0, backoff_factor=0.2, status_forcelist=[502, 503, 504],
                        allowed_methods=frozenset({"GET", "POST"}), raise_on_status=False,
                        respect_retry_after_header=False))
        self.queries = 0
        # a bake's looks re-read the same baseline hour: only what is newer is read again;
        # one cache for all clusters of the process, so its bound is the process'
        self.cache = process_cache() if cache is None else cache
        self.cache_freshness_s = cache_freshness_s

    def _post(self, path: str, form: dict[str, str | int | float], stream: bool = False,
              timeout: float | tuple[float, float] | None = None) -> requests.Response:
        """``POST`` ``form`` (form-encoded) to ``path`` of the Prometheus HTTP API, with an
        Entra token when ``auth: azure``; the response when it is 200, else
        :class:`~workers.prom.errors.PrometheusAnswerError` (for
        translate_prometheus_error). ``timeout``: requests', default ``timeout_s``."""
        self.queries += 1
        if self.credential is not None:
            token = self.credential.get_token(self.scope).token
            self.prom.headers = {"Authorization": f"Bearer {token}"}
        response = self.session.post(f"{self.prom.url}{path}", data=form,
                                     headers=self.prom.headers, stream=stream,
                                     timeout=self.timeout_s if timeout is None else timeout)
        if response.status_code != 200:
            with response:
                raise PrometheusAnswerError(response.status_code, response.content,
                                            retry_after_s(response.headers))
        return response

    def _instant(self, q: str, at: float | None = None) -> Any:
        """One instant query (``POST /api/v1/query``) at ``at`` (Unix s; None: now,
        Prometheus' default), its ``result``."""
        return self._instant_data(q, at)["result"]

    def _instant_data(self, q: str, at: float | None = None) -> dict[str, Any]:
        """One instant query, its ``data``: ``{"resultType": "vector" | "scalar" | "string"
        | "matrix", "result": …}`` (Prometheus HTTP API "Expression query result
        formats")."""
        form: dict[str, str | int | float] = {"query": q}
        if at is not None:
            form["time"] = at
        try:
            with self._post("/api/v1/query", form) as response:
                data = response.json()["data"]
                if not isinstance(data, dict) or "result" not in data:
                    raise KeyError("data.result")
                return data
        except PROMETHEUS_ERRORS as exc:
            raise translate_prometheus_error(exc, self.url) from exc
        except (ValueError, KeyError, TypeError) as exc:  # not Prometheus' answer
            raise MetricsUnavailable(f"Prometheus at {self.url}: its answer is not the "
                                     f"HTTP API's ({exc})") from exc

    def value(self, query: str) -> float | None:
        """A metric template's instant query: its one value (Flagger's MetricTemplate
        contract: the query must return a single value); None without data."""
        data = self._instant_data(query)
        kind, result = data.get("resultType"), data["result"]
        try:
            if kind == "scalar":  # [<time>, "<value>"]
                raw = result[1]
            elif kind == "vector" and len(result) > 1:
                raise MetricsUnavailable(
                    f"the metric query returns {len(result)} series, not one value "
                    f"(aggregate it, e.g. sum(...)): {query[:200]}")
            elif kind == "vector" and not result:
                return None
            elif kind == "vector":
                raw = result[0]["value"][1]
            else:
                raise MetricsUnavailable(
                    f"the metric query returns a {kind}, not one value (an instant vector "
                    f"or a scalar, e.g. sum(rate(x[5m])) rather than x[5m]): {query[:200]}")
            value = float(raw)
        except (TypeError, KeyError, IndexError, ValueError) as exc:
            raise MetricsUnavailable(f"Prometheus at {self.url}: its answer to a metric query "
                                     f"is not the HTTP API's ({exc!r})") from exc
        return None if math.isnan(value) else value

    def _query_range(self, q: str, start: float, end: float, step_s: int
                     ) -> Iterator[dict[str, Any]]:
        """One range query (``POST /api/v1/query_range``), its ``result`` series one at a
        time as the answer streams in."""
        form: dict[str, str | int | float] = {"query": q, "start": round(start),
                                              "end": round(end), "step": f"{step_s}s"}
        try:
            with self._post("/api/v1/query_range", form, stream=True,
                            timeout=self.range_timeout_s) as response:
                yield from iter_result(response.iter_content(CHUNK_BYTES))
        except PROMETHEUS_ERRORS as exc:
            raise translate_prometheus_error(exc, self.url) from exc
        except ValueError as exc:  # an answer cut short (a connection dropped mid-body)
            raise MetricsUnavailable(f"Prometheus at {self.url}: {exc}") from exc

    def windows(self, namespaces: list[str], gateways: list[str], start: float, end: float,
                step_s: float, repeat: bool = False, background: bool = False
                ) -> list[TrafficWindow]:
        """Traffic windows of a wave: one range query (requests by code, latency
        buckets, TCP opened, TCP failed: :func:`workers.prom.windows.window_query`), after
        one instant query for the wave's scrape targets when ``istio_build`` tells the
        revision, see :mod:`workers.prom.windows`.
        ``repeat``: the range answers go through the results cache
        (:mod:`workers.prom.cache`), so a bake's next look reads only what is newer.
        ``background``: made only in one of the cache's background slots
        (:meth:`~workers.prom.cache.WindowCache.background_slot`), else ``MetricsBusy``."""
        if background:
            with self.cache.background_slot() as held:
                if not held:
                    raise MetricsBusy(f"Prometheus at {self.url}: as many reads ahead of need "
                                      "as allowed are under way")
                return self.windows(namespaces, gateways, start, end, step_s, repeat)
        read = partial(read_windows, self._query_range, self.selector, namespaces, gateways,
                       step_s=step_s, scrape_interval_s=self.scrape_interval_s,
                       revision_label=self.revision_label, query=self._instant)
        if not repeat:
            return read(start, end)
        step = window_step_s(step_s, self.scrape_interval_s)
        # the queries name the subjects as sets (sorted regex alternatives), so a wave's
        # next look and the next wave of the same namespaces (migrated and control, in
        # another order) are one entry; another Prometheus or selector is another
        key = (self.url, tuple(sorted(self.selector.items())), self.revision_label,
               tuple(sorted(set(namespaces))),
               tuple(sorted({g.removeprefix("gateway/") for g in gateways})), step)
        return self.cache.windows(read, key, start, end, step, self.cache_freshness_s)
