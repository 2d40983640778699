"""PrometheusMetricsApi.windows: Istio's series, read back as traffic windows.

The PromQL's shape without I/O, then the windows a real Prometheus (Debian's ``prometheus``)
answers for series shaped like Istio's: backfilled with ``promtool tsdb create-blocks-from
openmetrics`` (the TSDB docs' backfilling), so that every count is known exactly. Scrapes
every 30 s as Azure Monitor's, on pods that carry ``istio_io_rev`` (the pod-annotation job's
labelmap) and export ``istio_build{component="proxy"}``.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import pytest

from sandbox.prom import start_prometheus
from tests.conftest import free_port_base
from workers.prom.cache import WindowCache, process_cache
from workers.prom.metrics import PrometheusMetricsApi, iter_result
from workers.prom.windows import (
    MAX_NAMED_TARGETS,
    SIGNAL_LABEL,
    evaluation_times,
    gateway_revision,
    proxy_revision,
    read_windows,
    targets_query,
    to_windows,
    window_queries,
    window_query,
    window_step_s,
)
from workflows.errors import MetricsUnavailable
from workflows.traffic import TrafficWindow

GW = "aks-istio-ingressgateway-external-asm-1-26"
needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="no prometheus/promtool: apt-get install -y prometheus")


# --- the queries' shape ------------------------------------------------------------------

def test_one_query_per_signal_for_the_whole_wave() -> None:
    q = window_queries({"cluster": "aks-1"}, ["web", "shop"], [f"gateway/{GW}"], 60,
                       revision_label="istio_io_rev")
    assert set(q) == {"requests", "buckets", "tcp_opened", "tcp_failed"}
    for query in q.values():
        arms = query.split(" or ")  # destination, source, gateways
        assert len(arms) == 3
        assert query.count('destination_workload_namespace=~"shop|web"') == 1
        assert query.count('source_workload_namespace=~"shop|web"') == 1
        assert query.count("increase(") == 3 and query.count("[60s])") == 3
        assert query.count('cluster="aks-1"') == 3
        assert arms[0].startswith("sum by (reporter, destination_workload_namespace, "
                                  "istio_io_rev")
        assert 'reporter="destination"' in arms[0]
        assert arms[1].startswith("sum by (reporter, source_workload_namespace, istio_io_rev")
        assert 'reporter="source"' in arms[1]
        assert arms[2].startswith("sum by (reporter, source_workload")
        assert (f'source_workload_namespace="aks-istio-ingress",source_workload=~"{GW}"'
                in arms[2])
    assert q["requests"].startswith(
        "sum by (reporter, destination_workload_namespace, istio_io_rev, response_code, "
        "grpc_response_status) (increase(istio_requests_total{")
    assert "sum by (reporter, source_workload, le) (increase(istio_request_duration_" \
           "milliseconds_bucket{" in q["buckets"]
    assert "istio_tcp_connections_opened_total{" in q["tcp_opened"]
    assert q["tcp_failed"].count('response_flags!="-",response_flags!=""') == 3
    assert "response_flags" not in q["tcp_opened"] + q["requests"]


def test_the_four_signals_are_one_query_each_series_labelled_with_its_signal() -> None:
    args = ({"cluster": "aks-1"}, ["web", "shop"], [f"gateway/{GW}"], 60, "istio_io_rev")
    q = window_query(*args)
    assert q is not None
    per_signal = window_queries(*args)
    # each signal's own expression, whole, inside its label_replace, in one "or"
    assert q == " or ".join(f'label_replace({expr}, "{SIGNAL_LABEL}", "{name}", "", "")'
                            for name, expr in per_signal.items())
    assert [name for name in per_signal] == ["requests", "buckets", "tcp_opened", "tcp_failed"]
    assert window_query({}, [], [], 60) is None


def test_a_query_is_sent_again_once_on_a_gateway_error() -> None:
    """POST is not among the methods urllib3 retries by itself; a query is a read."""
    prom = _Prometheus(503, b'{"status": "error", "errorType": "unavailable", "error": "x"}')
    try:
        with pytest.raises(MetricsUnavailable, match="HTTP 503 unavailable: x"):
            PrometheusMetricsApi(prom.url, revision_label="istio_io_rev").windows(
                ["shop"], [], 1140, 1320, 60)
    finally:
        prom.close()
    assert [(m, p) for m, p, _ in prom.queries] == [("POST", "/api/v1/query_range")] * 2


def test_a_retry_after_is_the_engines_to_wait_not_a_sleep_in_the_worker() -> None:
    """A 429 or 503 with ``Retry-After``: one answer taken (no sleep inside the worker),
    raised with Prometheus' words and the wait it asked for."""
    for status in (429, 503):
        prom = _Prometheus(status, b'{"status": "error", "errorType": "unavailable", '
                           b'"error": "too many queries"}', {"Retry-After": "30"})
        try:
            api = PrometheusMetricsApi(prom.url, revision_label="istio_io_rev")
            started = time.monotonic()
            with pytest.raises(MetricsUnavailable, match="too many queries") as raised:
                api.windows(["shop"], [], 1140, 1320, 60)
            assert time.monotonic() - started < 5
        finally:
            prom.close()
        assert raised.value.delay_s == 30.0
        # the 503 is sent again once at once (a gateway's), the 429 not
        assert len(prom.queries) == (2 if status == 503 else 1)


def test_a_read_that_timed_out_is_not_sent_again() -> None:
    """The query reached Prometheus, which is still at it: sending it again would double
    its load and the step's wait."""
    prom = _Prometheus(200, _answer(MATRIX), delay_s=1.0)
    try:
        api = PrometheusMetricsApi(prom.url, revision_label="istio_io_rev")
        api.range_timeout_s = (1.0, 0.2)
        with pytest.raises(MetricsUnavailable, match="no answer"):
            api.windows(["shop"], [], 1140, 1320, 60)
        time.sleep(1.2)  # the server's answer to the one query, written to no one
    finally:
        prom.close()
    assert len(prom.queries) == 1


def test_without_a_revision_label_the_proxy_version_tells_it() -> None:
    q = window_queries({"cluster": "aks-1"}, ["shop"], [], 60)["requests"]
    # per reporter's arm: its series summed by what the windows keep and the target, then
    # joined with the target's build, or with nothing (no tag) when it exports none
    assert q.count("sum by (reporter, destination_workload_namespace, response_code, "
                   "grpc_response_status, job, instance) (increase(istio_requests_total{") == 1
    assert q.count("increase(") == 2  # once per arm: no second read of the same series
    assert "sum by (reporter, destination_workload_namespace, tag, response_code" in q
    build = 'istio_build{cluster="aks-1",component="proxy"}'  # no targets named: every proxy
    # the targets without a build: those of the arm's own series in the window
    seen = ('group by (job, instance) (last_over_time(istio_requests_total{cluster="aks-1",'
            'reporter="destination",destination_workload_namespace=~"shop"}[60s]))')
    assert q.count("* on (job, instance) group_left (tag) ((topk by (job, instance) (1, "
                   f"timestamp({build})) > bool 0) or on (job, instance) {seen})") == 1
    assert q.count("or on (job, instance) group by (job, instance) (last_over_time(") == 2
    # the buckets' targets are told by their counts' series (a thirteenth as many)
    buckets = window_queries({"cluster": "aks-1"}, ["shop"], [], 60)["buckets"]
    assert buckets.count("last_over_time(istio_requests_total{") == 2
    assert "last_over_time(istio_request_duration" not in buckets
    assert "unless" not in q
    assert "source_workload=~" not in q  # no gateways asked for


def test_the_join_reads_the_build_of_the_waves_targets_only() -> None:
    q = window_queries({"cluster": "aks-1"}, ["shop"], [], 60,
                       instances=["10.0.0.2:15020", "10.0.0.1:15020", "[fd00::1]:15020"])
    # RE2 literals (the dots, an IPv6 address' brackets), in a PromQL string
    named = (r'instance=~"10\\.0\\.0\\.1:15020|10\\.0\\.0\\.2:15020|'
             r'\\[fd00::1\\]:15020"')
    build = f'istio_build{{cluster="aks-1",component="proxy",{named}}}'
    for query in q.values():
        assert query.count(f"timestamp({build})") == 2  # one per reporter's arm
        assert query.count("instance=~") == 2  # only there
        assert "and on" not in query and "unless" not in query
    none = window_queries({}, ["shop"], [], 60, instances=[])["requests"]
    assert 'istio_build{component="proxy",instance=~""}' in none  # no target, no build
    assert "istio_build" not in window_queries({}, ["shop"], [], 60, "istio_io_rev",
                                               ["10.0.0.1:15020"])["requests"]


def test_the_targets_are_named_unless_the_wave_is_as_big_as_the_mesh() -> None:
    sent: list[str] = []

    def query_range(q: str, start: float, end: float, step: int) -> list[dict[str, object]]:
        sent.append(q)
        return []

    def targets(n: int) -> Callable[[str, float], list[dict[str, object]]]:
        def query(q: str, at: float) -> list[dict[str, object]]:
            assert q.startswith("group by (job, instance)") and at == 1260
            return [{"metric": {"job": "workload", "instance": f"10.0.{i // 250}.{i % 250}:15020"},
                     "value": [at, "1"]} for i in range(n)]
        return query

    read_windows(query_range, {}, ["shop"], [], 1000, 1300, 60, query=targets(2))
    assert len(sent) == 1  # the four signals in one query, each with its own join
    # per signal, per reporter's arm: the builds of its targets
    assert sent[0].count(r'instance=~"10\\.0\\.0\\.0:15020|10\\.0\\.0\\.1:15020"') == 8
    sent.clear()
    read_windows(query_range, {}, ["shop"], [], 1000, 1300, 60,
                 query=targets(MAX_NAMED_TARGETS + 1))
    assert len(sent) == 1 and "instance=~" not in sent[0]


def test_the_targets_of_a_wave_in_one_instant_query() -> None:
    q = targets_query({"cluster": "aks-1"}, ["web", "shop"], 360)
    assert q is not None and q.startswith("group by (job, instance) (last_over_time(")
    for metric in ("istio_requests_total", "istio_tcp_connections_opened_total"):
        assert (f'{metric}{{cluster="aks-1",reporter="destination",'
                f'destination_workload_namespace=~"shop|web"}}[360s])') in q
        assert (f'{metric}{{cluster="aks-1",reporter="source",'
                f'source_workload_namespace=~"shop|web"}}[360s])') in q
    assert q.count(" or ") == 3
    assert targets_query({}, [], 360) is None  # gateways only: no join, no targets


def test_revisions_from_names_and_versions() -> None:
    assert gateway_revision(GW) == "asm-1-26"
    assert gateway_revision("aks-istio-ingressgateway-internal-asm-1-25") == "asm-1-25"
    assert gateway_revision("my-gateway") is None
    assert proxy_revision("1.26.4") == "asm-1-26"
    assert proxy_revision("1.25.0-distroless") == "asm-1-25"
    assert proxy_revision("1.3") == "asm-1-3"
    assert proxy_revision("unknown") is None
    assert proxy_revision(None) is None


def test_a_window_holds_two_scrapes_and_ends_on_a_multiple_of_the_step() -> None:
    assert window_step_s(30, 30) == 60  # Azure Monitor's 30 s scrapes: 60 s windows
    assert window_step_s(90, 30) == 90
    assert window_step_s(10.2, 5) == 11
    assert evaluation_times(1000, 1300, 60) == (1080, 1260)  # windows (1020, 1080] …
    assert evaluation_times(960, 1020, 60) == (1020, 1020)
    assert evaluation_times(1000, 1070, 60) is None


def test_nothing_to_read_sends_no_query() -> None:
    def refuse(q: str, start: float, end: float, step: int) -> list[dict[str, object]]:
        raise AssertionError(q)

    assert read_windows(refuse, {}, [], [], 0, 3600, 60) == []
    assert read_windows(refuse, {}, ["shop"], [], 1000, 1070, 60) == []


def test_prometheus_down_is_metrics_unavailable() -> None:
    api = PrometheusMetricsApi("http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(MetricsUnavailable, match="could not be queried"):
        api.windows(["shop"], [], 0, 600, 60)


# --- answers read as they stream in ------------------------------------------------------

MATRIX = [
    {"metric": {"reporter": "destination", "destination_workload_namespace": "shop",
                "istio_io_rev": "asm-1-25", "response_code": "200"},
     "values": [[1200, "10"], [1260, "12.4"], [1320, "NaN"]]},
    {"metric": {"reporter": "destination", "destination_workload_namespace": "shöp-ü",
                "istio_io_rev": "asm-1-26", "response_code": "503"},
     "values": [[1260, "2"]]},
    {"metric": {"reporter": "source", "source_workload": GW, "response_code": "200"},
     "values": [[1200, "3"], [1260, "4"]]},
]


def _answer(result: list[dict[str, Any]], **dumps: Any) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": "matrix",
                                                     "result": result}},
                      ensure_ascii=False, **dumps).encode()


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
@pytest.mark.parametrize("dumps", [{}, {"indent": 2}, {"separators": (",", ":")}])
def test_an_answer_is_read_one_series_at_a_time_however_it_is_cut(
        size: int, dumps: dict[str, Any]) -> None:
    body = _answer(MATRIX, **dumps) + b'\n'
    chunks = [body[i:i + size] for i in range(0, len(body), size)]
    assert list(iter_result(chunks)) == MATRIX
    assert list(iter_result([_answer([], **dumps)])) == []


def test_an_answer_cut_short_or_without_a_result_is_refused() -> None:
    body = _answer(MATRIX)
    with pytest.raises(ValueError, match="ends inside data.result"):
        list(iter_result([body[: len(body) // 2]]))
    with pytest.raises(ValueError, match="no data.result"):
        list(iter_result([b'{"status": "success", "data": {"resultType": "vector"}}']))


class _Prometheus:
    """A local HTTP server answering every query with ``status`` and ``body``; ``queries``:
    each request's method, path and form (its body, form-encoded)."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                 delay_s: float = 0.0):
        self.queries: list[tuple[str, str, dict[str, list[str]]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                assert self.headers["Content-Type"] == "application/x-www-form-urlencoded"
                form = self.rfile.read(int(self.headers["Content-Length"])).decode()
                outer.queries.append((self.command, self.path, parse_qs(form)))
                time.sleep(delay_s)  # evaluating
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for i in range(0, len(body), 5):  # dribbled, as a big answer arrives
                    self.wfile.write(body[i:i + 5])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _scaled(series: list[dict[str, Any]], factor: int) -> list[dict[str, Any]]:
    return [{**s, "values": [[t, str(float(v) * factor)] for t, v in s["values"]]}
            for s in series]


def test_the_adapter_streams_each_answer_into_the_windows() -> None:
    # each signal its own counts, so that one taken for another shows
    per_signal = {signal: _scaled(MATRIX, factor) for signal, factor in
                  (("requests", 1), ("buckets", 2), ("tcp_opened", 3), ("tcp_failed", 5))}
    labelled = [{**s, "metric": {**s["metric"], SIGNAL_LABEL: signal}}
                for signal, series in per_signal.items() for s in series]
    # a series of no signal of ours (a label_replace the query did not make) is left out
    stray = {"metric": {"reporter": "destination", "destination_workload_namespace": "shop",
                        "istio_io_rev": "asm-1-27", SIGNAL_LABEL: "other"},
             "values": [[1200, "1"]]}
    prom = _Prometheus(200, _answer([*labelled, stray]))
    try:
        api = PrometheusMetricsApi(prom.url, revision_label="istio_io_rev")
        windows = api.windows(["shop", "shöp-ü"], [GW], 1140, 1320, 60)
    finally:
        prom.close()
    # one POST, its query in the form body (not the URL)
    assert api.queries == 1 and len(prom.queries) == 1
    method, path, form = prom.queries[0]
    assert (method, path) == ("POST", "/api/v1/query_range")
    # the evaluation times of the whole windows in (1140, 1320]
    assert (form["start"], form["end"], form["step"]) == (["1200"], ["1320"], ["60s"])
    assert form["query"] == [window_query({}, ["shop", "shöp-ü"], [GW], 60, "istio_io_rev")]
    # as the four answers given whole, one by one
    assert windows == to_windows(per_signal, 60, "istio_io_rev")
    assert [(w.end, w.subject, w.requests, w.tcp_opened, w.tcp_failed) for w in windows
            if w.reporter == "destination"] == [
        (1200.0, "shop", 10, 30, 50), (1260.0, "shop", 12, 37, 62),
        (1260.0, "shöp-ü", 2, 6, 10)]


def test_an_error_answer_is_metrics_unavailable_in_prometheus_words() -> None:
    prom = _Prometheus(400, json.dumps({"status": "error", "errorType": "bad_data",
                                        "error": "parse error"}).encode())
    try:
        api = PrometheusMetricsApi(prom.url, revision_label="istio_io_rev")
        with pytest.raises(MetricsUnavailable) as raised:
            api.windows(["shop"], [], 1140, 1320, 60)
    finally:
        prom.close()
    assert str(raised.value) == (f"Prometheus at {prom.url} could not be queried: HTTP 400 "
                                 "bad_data: parse error")
    cut = _Prometheus(200, _answer(MATRIX)[:-20])
    try:
        with pytest.raises(MetricsUnavailable, match="ends inside data.result"):
            PrometheusMetricsApi(cut.url, revision_label="istio_io_rev").windows(
                ["shop"], [], 1140, 1320, 60)
    finally:
        cut.close()


# --- a real Prometheus -------------------------------------------------------------------

SCRAPE_S = 30
SCRAPES = 10  # 300 s: five 60 s windows


@dataclass(frozen=True)
class Pod:
    """A scrape target: a proxy's merged endpoint, labelled as the pod-annotation job does."""

    instance: str
    namespace: str
    revision: str
    version: str | None  # istio_build's tag; None: the target exports none
    cluster: str = "aks-1"

    def labels(self) -> dict[str, str]:
        return {"cluster": self.cluster, "job": "kubernetes-pods", "instance": self.instance,
                "istio_io_rev": self.revision, "kubernetes_namespace": self.namespace}


SHOP_25 = Pod("10.0.0.1:15020", "shop", "asm-1-25", "1.25.3")
SHOP_26 = Pod("10.0.0.2:15020", "shop", "asm-1-26", "1.26.1")
WEB_25 = Pod("10.0.0.3:15020", "web", "asm-1-25", None)
GATEWAY = Pod("10.0.0.9:15020", "aks-istio-ingress", "asm-1-26", "1.26.1")
GATEWAY_25 = Pod("10.0.0.10:15020", "aks-istio-ingress", "asm-1-25", "1.25.3")
OTHER_NS = Pod("10.0.0.4:15020", "other", "asm-1-25", "1.25.3")
OTHER_CLUSTER = Pod("10.0.0.1:15020", "shop", "asm-1-25", "1.25.3", cluster="aks-2")
#: a pod of cart on asm-1-25 replaced by one on asm-1-26 with the same IP, the old one's
#: istio_build still inside the lookback (no staleness marker) when the new one's starts
CART_OLD = Pod("10.0.0.5:15020", "cart", "asm-1-25", "1.25.3")
CART_NEW = Pod("10.0.0.5:15020", "cart", "asm-1-26", "1.26.1")


class Series(NamedTuple):
    metric: str
    labels: dict[str, str]
    incs: list[int]  # increments per scrape in each of the five windows
    first: int = 0  # the scrapes it is in
    last: int = SCRAPES


def _request_labels(pod: Pod, reporter: str, src: tuple[str, str], dst: tuple[str, str],
                    code: str, grpc: str = "") -> dict[str, str]:
    """Istio's standard labels of istio_requests_total (the app's canonical revision v1)."""
    return {**pod.labels(), "reporter": reporter,
            "source_workload": src[1], "source_workload_namespace": src[0],
            "source_canonical_revision": "v1", "destination_workload": dst[1],
            "destination_workload_namespace": dst[0], "destination_canonical_revision": "v1",
            "request_protocol": "grpc" if grpc else "http", "response_code": code,
            "grpc_response_status": grpc, "response_flags": "-"}


def _series() -> list[Series]:
    web, shop, gw = ("web", "web"), ("shop", "cart"), ("aks-istio-ingress", GW)
    req = "istio_requests_total"
    out = [Series(*s) for s in (
        (req, _request_labels(SHOP_25, "destination", web, shop, "200"), [5, 10, 15, 20, 25]),
        (req, _request_labels(SHOP_25, "source", shop, ("web", "web"), "200"), [2] * 5),
        (req, _request_labels(SHOP_26, "destination", web, shop, "200"), [4] * 5),
        (req, _request_labels(SHOP_26, "destination", web, shop, "503"), [1] * 5),
        (req, _request_labels(SHOP_26, "destination", web, shop, "200", "14"), [3] * 5),
        (req, _request_labels(SHOP_26, "destination", web, shop, "200", "0"), [5] * 5),
        (req, _request_labels(WEB_25, "source", web, shop, "200"), [7] * 5),
        (req, _request_labels(GATEWAY, "source", gw, shop, "200"), [6] * 5),
        (req, _request_labels(GATEWAY, "source", gw, shop, "503"), [1] * 5),
        (req, _request_labels(GATEWAY_25, "source", ("aks-istio-ingress",
         "aks-istio-ingressgateway-internal-asm-1-25"), shop, "200"), [9] * 5),
        (req, _request_labels(OTHER_NS, "destination", web, ("other", "x"), "200"), [50] * 5),
        (req, _request_labels(OTHER_CLUSTER, "destination", web, shop, "200"), [100] * 5),
        (req, _request_labels(CART_OLD, "destination", web, ("cart", "cart"), "200"),
         [1] * 5),
    )]
    base = {k: v for k, v in _request_labels(SHOP_25, "destination", web, shop, "").items()
            if k not in ("response_code", "grpc_response_status", "request_protocol")}
    for le, inc in (("1", 1), ("5", 3), ("10", 4), ("+Inf", 5)):
        out.append(Series("istio_request_duration_milliseconds_bucket",
                          {**base, "le": le}, [inc] * 5))
    tcp = {**base, "request_protocol": "tcp"}
    out.append(Series("istio_tcp_connections_opened_total", tcp, [4] * 5))
    out.append(Series("istio_tcp_connections_closed_total", {**tcp, "response_flags": "-"},
                      [3] * 5))
    out.append(Series("istio_tcp_connections_closed_total", {**tcp, "response_flags": "UF"},
                      [1] * 5))
    for pod, first, last in ((SHOP_25, 0, SCRAPES), (SHOP_26, 0, SCRAPES),
                             (GATEWAY, 0, SCRAPES), (GATEWAY_25, 0, SCRAPES),
                             (OTHER_NS, 0, SCRAPES), (OTHER_CLUSTER, 0, SCRAPES),
                             (CART_OLD, 0, 4), (CART_NEW, 5, SCRAPES)):
        assert pod.version
        labels = {**pod.labels(), "component": "proxy", "tag": pod.version}
        labels.pop("istio_io_rev")  # the same target labels for both cart pods
        out.append(Series("istio_build", labels, [0] * 5, first, last))
    return out


def _openmetrics(t0: int) -> str:
    """The series as OpenMetrics text, one sample per 30 s scrape from ``t0`` (counters from
    0; istio_build a gauge of 1). Each family's samples together, each series' in time order."""
    lines = []
    for metric, labels, incs, first, last in sorted(_series(), key=lambda s: s.metric):
        text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        value = 0
        for i in range(SCRAPES + 1):
            if i:
                value += incs[(i - 1) // 2]
            shown = 1 if metric == "istio_build" else value
            if first <= i <= last:
                lines.append(f"{metric}{{{text}}} {shown} {t0 + i * SCRAPE_S}")
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A Prometheus holding the series; (its URL, the first scrape's time)."""
    state: Path = tmp_path_factory.mktemp("prometheus")
    t0 = int(time.time() - 3600) // 300 * 300  # an hour ago, within retention
    source = state / "istio.om"
    source.write_text(_openmetrics(t0))
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--quiet",
                    str(source), str(state / "prometheus-data")], check=True)
    port = free_port_base(15000, 16000)
    proc = start_prometheus(state, port, [], keep_data=True)
    try:
        yield f"http://127.0.0.1:{port}", t0
    finally:
        proc.terminate()
        proc.wait(10)


def _by_key(windows: list[TrafficWindow]) -> dict[tuple[float, str, str | None, str],
                                                  TrafficWindow]:
    out = {(w.end, w.subject, w.revision, w.reporter): w for w in windows}
    assert len(out) == len(windows)  # one window per interval, subject, revision, reporter
    return out


def _expected(t0: int, web_revision: str | None) -> dict[tuple[float, str, str | None, str],
                                                         dict[str, object]]:
    out: dict[tuple[float, str, str | None, str], dict[str, object]] = {}
    for k in range(1, 6):
        end = float(t0 + 60 * k)
        out[(end, "shop", "asm-1-25", "destination")] = {
            "requests": 10 * k, "codes": {"200": 10 * k},
            "buckets": {1.0: 2, 5.0: 6, 10.0: 8, math.inf: 10},
            "tcp_opened": 8, "tcp_failed": 2}
        out[(end, "shop", "asm-1-25", "source")] = {"requests": 4, "codes": {"200": 4}}
        out[(end, "shop", "asm-1-26", "destination")] = {
            "requests": 26, "codes": {"200": 8, "503": 2, "grpc:0": 10, "grpc:14": 6}}
        out[(end, "web", web_revision, "source")] = {"requests": 14, "codes": {"200": 14}}
        out[(end, f"gateway/{GW}", "asm-1-26", "source")] = {
            "requests": 14, "codes": {"200": 12, "503": 2}}
    return out


def _check(windows: list[TrafficWindow], t0: int, web_revision: str | None) -> None:
    got = _by_key(windows)
    expected = _expected(t0, web_revision)
    assert sorted(got, key=str) == sorted(expected, key=str)
    for key, fields in expected.items():
        w = got[key]
        assert w.start == w.end - 60
        assert w.restarts == 0
        assert {f: getattr(w, f) for f in fields} == fields, key
        if "buckets" not in fields:
            assert (w.buckets, w.tcp_opened, w.tcp_failed) == ({}, 0, 0), key
    assert [w.end for w in windows] == sorted(w.end for w in windows)


@needs_prometheus
def test_windows_by_reporter_subject_and_the_pods_revision_label(
        prometheus: tuple[str, int]) -> None:
    url, t0 = prometheus
    api = PrometheusMetricsApi(url, {"cluster": "aks-1"}, revision_label="istio_io_rev")
    windows = api.windows(["shop", "web"], [GW], t0, t0 + SCRAPES * SCRAPE_S, 30)
    assert api.queries == 1  # one for the whole wave and its four signals
    _check(windows, t0, "asm-1-25")
    canary = next(w for w in windows if w.revision == "asm-1-26" and w.subject == "shop")
    assert canary.errors == 8  # the 503s and the gRPC Unavailable (14) inside HTTP 200s


@needs_prometheus
def test_windows_tell_the_revision_from_the_proxys_version(
        prometheus: tuple[str, int]) -> None:
    url, t0 = prometheus
    api = PrometheusMetricsApi(url, {"cluster": "aks-1"})
    windows = api.windows(["shop", "web"], [f"gateway/{GW}"], t0, t0 + SCRAPES * SCRAPE_S, 60)
    assert api.queries == 2  # the wave's targets, then the windows
    _check(windows, t0, None)  # web's proxy exports no istio_build: counted, revision unknown


@needs_prometheus
def test_the_targets_are_those_of_the_waves_namespaces_in_the_range(
        prometheus: tuple[str, int]) -> None:
    url, t0 = prometheus
    api = PrometheusMetricsApi(url, {"cluster": "aks-1"})
    q = targets_query(api.selector, ["shop", "web"], SCRAPES * SCRAPE_S)
    assert q is not None
    got = {(s["metric"]["job"], s["metric"]["instance"])
           for s in api._instant(q, t0 + SCRAPES * SCRAPE_S)}
    # shop's two pods, web's, and the gateways that call shop (source reporter, their own
    # namespace: not shop's); not other's pod, nor shop's pod of the other cluster
    assert got == {("kubernetes-pods", p.instance) for p in (SHOP_25, SHOP_26, WEB_25)}
    assert api._instant(q, t0 - 1) == []  # the range ends at the evaluation time


@needs_prometheus
def test_only_whole_windows_inside_the_range(prometheus: tuple[str, int]) -> None:
    url, t0 = prometheus
    api = PrometheusMetricsApi(url, {"cluster": "aks-1"}, revision_label="istio_io_rev")
    windows = api.windows(["shop"], [], t0 + 10, t0 + 200, 60)
    assert sorted({(w.start, w.end) for w in windows}) == [
        (t0 + 60.0, t0 + 120.0), (t0 + 120.0, t0 + 180.0)]
    assert {w.subject for w in windows} == {"shop"}
    assert api.windows(["shop"], [], t0 + 10, t0 + 100, 60) == []


@needs_prometheus
def test_targets_the_targets_query_did_not_name_keep_their_counts(
        prometheus: tuple[str, int]) -> None:
    """A target missing from the targets query's answer (its samples arrived after it, or
    it found none) is counted on revision None, as one that exports no build."""
    url, t0 = prometheus
    api = PrometheusMetricsApi(url, {"cluster": "aks-1"})
    every = read_windows(api._query_range, api.selector, ["shop", "web"], [], t0,
                         t0 + SCRAPES * SCRAPE_S, 60)  # no targets query: every build read

    def totals(windows: list[TrafficWindow]) -> dict[tuple[float, str, str], tuple[int, ...]]:
        out: dict[tuple[float, str, str], tuple[int, ...]] = {}
        for w in windows:
            key = (w.end, w.subject, w.reporter)
            had = out.get(key, (0, 0, 0, 0))
            out[key] = (had[0] + w.requests, had[1] + w.errors, had[2] + w.tcp_opened,
                        had[3] + w.tcp_failed)
        return out

    assert {w.revision for w in every} > {None}  # builds joined
    for named in ([], [SHOP_25.instance]):
        windows = read_windows(api._query_range, api.selector, ["shop", "web"], [], t0,
                               t0 + SCRAPES * SCRAPE_S, 60, query=lambda q, at: [
                                   {"metric": {"job": "kubernetes-pods", "instance": i}}
                                   for i in named])  # noqa: B023 - called at once
        assert totals(windows) == totals(every), named
        assert {w.revision for w in windows if w.subject == "shop"} == \
            ({None} if not named else {"asm-1-25", None})


@needs_prometheus
def test_a_reused_pod_ip_joins_the_newest_proxy_version(prometheus: tuple[str, int]) -> None:
    url, t0 = prometheus
    api = PrometheusMetricsApi(url, {"cluster": "aks-1"})
    windows = api.windows(["cart"], [], t0, t0 + SCRAPES * SCRAPE_S, 60)
    # both istio_build series of 10.0.0.5 are within the lookback from t0+150 on
    assert [(w.end - t0, w.revision, w.requests) for w in windows] == [
        (60, "asm-1-25", 2), (120, "asm-1-25", 2), (180, "asm-1-26", 2), (240, "asm-1-26", 2),
        (300, "asm-1-26", 2)]


@needs_prometheus
def test_a_bakes_looks_read_only_what_is_newer_and_see_the_same_windows(
        prometheus: tuple[str, int]) -> None:
    """The window cache (workers/prom/cache.py) against the real Prometheus: each look
    of a bake from the same start gives the windows a fresh read gives, while Prometheus
    is asked only for the evaluation times after those already held."""
    url, t0 = prometheus
    cache = WindowCache()  # the test's own, not the process's
    cached = PrometheusMetricsApi(url, {"cluster": "aks-1"}, cache_freshness_s=0,
                                  cache=cache)
    plain = PrometheusMetricsApi(url, {"cluster": "aks-1"}, cache=WindowCache())
    asked: list[tuple[str, str]] = []
    real = cached._query_range

    def spy(q: str, start: float, end: float, step: int) -> Iterator[dict[str, Any]]:
        asked.append((str(round(start - t0)), str(round(end - t0))))
        return real(q, start, end, step)

    cached._query_range = spy  # type: ignore[method-assign]
    for end in (120, 180, 240, 300):
        looked = cached.windows(["shop", "web", "cart"], [GW], t0, t0 + end, 60, repeat=True)
        assert looked == plain.windows(["shop", "web", "cart"], [GW], t0, t0 + end, 60)
        assert looked  # there is traffic to compare
    # the first look read it all; each later one only its new minute
    assert asked == [("60", "120"), ("180", "180"), ("240", "240"), ("300", "300")]
    assert cached.cache.hits == 3
    # the next wave names the same namespaces in another order (its migrated ones first)
    # and the gateway with its prefix: the same entry, nothing read again
    again = cached.windows(["cart", "web", "shop"], [f"gateway/{GW}"], t0, t0 + 300, 60,
                           repeat=True)
    assert again == looked and len(asked) == 4 and cached.cache.hits == 4
    # a read without ``repeat`` (the plan's) does not go through the cache
    cached.windows(["shop"], [], t0, t0 + 300, 60)
    assert cached.cache.hits == 4 and asked[-1] == ("60", "300")
    # another cluster's API shares the cache (one bound a process) but not its entries
    other = PrometheusMetricsApi(url, {"cluster": "aks-2"}, cache_freshness_s=0, cache=cache)
    assert other.windows(["shop", "web", "cart"], [GW], t0, t0 + 300, 60, repeat=True) == \
        PrometheusMetricsApi(url, {"cluster": "aks-2"}).windows(
            ["shop", "web", "cart"], [GW], t0, t0 + 300, 60)
    assert cache.hits == 4


def test_every_cluster_of_a_process_shares_one_window_cache() -> None:
    """The bound on held windows is the process's, whatever the number of clusters."""
    a = PrometheusMetricsApi("http://prom-a:9090", {"cluster": "aks-1"})
    b = PrometheusMetricsApi("http://prom-b:9090", {"cluster": "aks-2"})
    assert a.cache is b.cache is process_cache()
