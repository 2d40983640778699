"""Istio's standard metrics as :class:`workflows.traffic.TrafficWindow` objects.

Why: the metric gate judges a wave on windows — one scrape-aligned interval of one subject
on one mesh revision as one Istio reporter saw it — and this module is where Prometheus'
answers become those windows, with one range query for the whole wave and its four signals
(never one per namespace, nor one per signal: each HTTP request costs the worker more than
the parsing of its answer, and Azure Monitor counts queries against a workspace's limits).

The queries (each ``sum by (…)`` of ``increase(…[step])``, evaluated every ``step`` seconds;
Istio doc "Istio Standard Metrics", istio.io/latest/docs/reference/config/metrics/):

- ``requests``: ``istio_requests_total`` by reporter, subject, revision, ``response_code``
  and ``grpc_response_status``;
- ``buckets``: ``istio_request_duration_milliseconds_bucket`` by reporter, subject, revision
  and ``le`` (cumulative, Istio's buckets);
- ``tcp_opened``: ``istio_tcp_connections_opened_total``;
- ``tcp_failed``: ``istio_tcp_connections_closed_total`` closed with a ``response_flags``
  other than ``-`` (Envoy's ``%RESPONSE_FLAGS%``, "-" when none is set: UF upstream
  connection failure, UH no healthy upstream, URX maximum connect attempts, UO overflow, NR
  no route…; Envoy doc "Access logging", envoyproxy.io/docs/envoy/latest/configuration/
  observability/access_log/usage).

Each signal's expression has up to three arms joined by ``or``, because each reporter
names its own pod's namespace in a different label: ``reporter="destination"`` series by
``destination_workload_namespace`` (the server's proxy reports), ``reporter="source"`` by
``source_workload_namespace`` (the client's proxy), and the add-on's ingress gateways, which
report only as source, by ``source_workload`` in ``aks-istio-ingress``
(``aks-istio-ingressgateway-external-asm-1-26`` → subject
``gateway/aks-istio-ingressgateway-external-asm-1-26``, revision ``asm-1-26`` from the name;
AKS doc ``istio-deploy-ingress.md``). The arms' label sets differ, so ``or`` keeps them all.
The four signals' expressions are sent as one, each labelled with its name by
``label_replace(…, "meshops_signal", "<signal>", "", "")`` (an empty source label's value ""
matches the empty regex, so the label is always set; Prometheus docs "Query functions") and
joined by ``or``: the label keeps apart series that would otherwise carry the same labels
(TCP opened and TCP failed), and tells the reader which signal each series is.

The revision of the reporting proxy. Istio's ``*_canonical_revision`` labels are the
application's version (``service.istio.io/canonical-revision``, else ``app.kubernetes.io/
version``, else ``version``, else ``latest``: Istio's injection template), not the mesh's;
no standard label carries the mesh revision. Two ways to tell it, ``revision_label``
choosing:

- a label name (e.g. ``istio_io_rev``): the scrape job copies the pod's labels onto its
  series, and the sidecar injector labels every injected pod ``istio.io/rev: <revision>``
  (``manifests/charts/istio-control/istio-discovery/files/injection-template.yaml``).
  Azure Monitor managed Prometheus' own pod-annotation job (``kubernetes-pods``, turned on
  per namespace by ``podannotationnamespaceregex`` in ``ama-metrics-settings-configmap``)
  does ``labelmap: __meta_kubernetes_pod_label_(.+)``, so there the label is
  ``istio_io_rev`` (Azure/prometheus-collector ``podannotationsDefault.yml``).
- ``None`` (the default): the proxy's version. Every proxy exports
  ``istio_build{component="proxy", tag="1.26.4"}`` on the endpoint its Istio series come
  from, so the series are joined with it on the scrape target (``job``, ``instance``) and
  ``1.26.x`` becomes ``asm-1-26`` (AKS names a revision after the Istio minor it runs).
  This needs no pod labels, which the scrape config of the AKS doc
  ``istio-metrics-managed-prometheus.md`` (job ``workload``, no ``labelmap``) does not keep.
  A target with no ``istio_build`` keeps its counts, on revision None. Each arm's series
  are summed by the labels the windows keep and the target before the join, and their
  ``increase`` is read once (:func:`_by_revision`): on Istio-shaped series with 16 series a
  target per bucket (8 callers, 2 codes) that made the same answer in 0.2 × Prometheus'
  evaluation time. (A series label named ``tag`` of the scrape job's, a pod label, is not
  kept: only ``istio_build``'s tells the revision.)

  The join reads only the ``istio_build`` of the wave's own targets: one instant query first
  (:func:`targets_query`) names the targets (``instance``) that exported the wave's series
  during the range, and ``istio_build`` is selected by those instances. ``timestamp()`` of a
  selector (which keeps the newest build of a target, below) is evaluated sample by sample at
  every step, so ranking every proxy of a 2,000-namespace mesh over an hour's baseline cost
  Prometheus seconds per arm, growing with the history, for a wave of a hundred namespaces.

Windows: every evaluation time ``t`` (a multiple of the step, Unix s) reads the increase over
``(t - step, t]``; at least two scrapes must fall in it for ``increase()`` to answer, so the
step is at least twice the scrape interval (Azure Monitor managed Prometheus scrapes every
30 s: a 60 s window). Counts are ``increase()``'s, rounded to whole requests.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from workflows.traffic import TrafficWindow

#: where the add-on runs its ingress gateways (AKS doc istio-deploy-ingress.md)
INGRESS_NAMESPACE = "aks-istio-ingress"
#: Azure Monitor managed Prometheus' default scrape interval, seconds
DEFAULT_SCRAPE_INTERVAL_S = 30.0
#: what the join on the proxy's version adds: ``istio_build``'s ``tag`` label
PROXY_VERSION_LABEL = "tag"
#: the labels of one scrape target (the proxy whose series they are)
TARGET_LABELS = "job, instance"
SIGNALS = ("requests", "buckets", "tcp_opened", "tcp_failed")
#: the label naming the signal of each series of :func:`window_query`'s answer
SIGNAL_LABEL = "meshops_signal"

_GATEWAY_REVISION = re.compile(r"-(asm-\d+-\d+)$")
_ISTIO_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.|$)")

#: ``query_range(query, start, end, step_s)`` → Prometheus' ``result`` (matrix), its series
#: as a list or one at a time
QueryRange = Callable[[str, float, float, int], Iterable[dict[str, Any]]]
#: ``query(query, time)`` → Prometheus' ``result`` of an instant query (vector)
Query = Callable[[str, float], list[dict[str, Any]]]
#: the series that tell the targets of a wave: Istio records a request's duration with its
#: count (``istio_request_duration_milliseconds`` beside ``istio_requests_total``), and a
#: connection is closed by the proxy that opened it, so every target of the four signals
#: exports one of these two
TARGET_METRICS = ("istio_requests_total", "istio_tcp_connections_opened_total")
#: above this many targets (a wave as big as the mesh: the plan reads every namespace) the
#: join reads every proxy's ``istio_build``: naming them would only lengthen the query
#: (~40 characters a target, in each of the four signals' two joined arms) for a selector
#: that then keeps nearly all
MAX_NAMED_TARGETS = 1000
#: characters with a meaning in RE2 (Prometheus' regular expressions), escaped in a literal
_RE2_META = frozenset("\\.+*?()|[]{}^$")


def gateway_revision(workload: str) -> str | None:
    """``asm-1-26`` of ``aks-istio-ingressgateway-external-asm-1-26``; None for other names."""
    m = _GATEWAY_REVISION.search(workload)
    return m.group(1) if m else None


def proxy_revision(tag: str | None) -> str | None:
    """The add-on revision running Istio version ``tag``: ``1.26.4`` → ``asm-1-26``."""
    m = _ISTIO_VERSION.match(tag or "")
    return f"asm-{m.group(1)}-{m.group(2)}" if m else None


def window_step_s(step_s: float, scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S) -> int:
    """The step (and window length) used, in whole seconds: ``step_s``, but at least two
    scrape intervals so that every window holds two scrapes."""
    return max(1, math.ceil(max(step_s, 2 * scrape_interval_s)))


def evaluation_times(start: float, end: float, step: int) -> tuple[int, int] | None:
    """First and last evaluation time (multiples of ``step``, Unix s) whose window
    ``(t - step, t]`` lies within ``[start, end]``; None when no window fits."""
    first = math.ceil(start / step) * step + step
    last = math.floor(end / step) * step
    return (first, last) if first <= last else None


@dataclass(frozen=True)
class _Signal:
    metric: str
    by: tuple[str, ...] = ()  # the signal's own labels, after reporter, subject, revision
    matchers: tuple[str, ...] = ()  # the signal's own matchers
    #: the metric whose series (the arm's reporter and namespaces) tell the targets the
    #: join keeps without a build; None: the signal's own selector
    seen: str | None = None


_SIGNALS = {
    "requests": _Signal("istio_requests_total", ("response_code", "grpc_response_status")),
    # a proxy records a request's duration with its count: the count's series (a
    # thirteenth as many) tell the buckets' targets
    "buckets": _Signal("istio_request_duration_milliseconds_bucket", ("le",),
                       seen="istio_requests_total"),
    "tcp_opened": _Signal("istio_tcp_connections_opened_total"),
    # Istio writes "-" when Envoy set no flag; an empty one is no failure either
    "tcp_failed": _Signal("istio_tcp_connections_closed_total",
                          matchers=('response_flags!="-"', 'response_flags!=""')),
}


def _selector(metric: str, matchers: Sequence[str]) -> str:
    return f"{metric}{{{','.join(matchers)}}}"


def _literal(text: str) -> str:
    """``text`` as a PromQL string holding an RE2 expression that matches it exactly."""
    regex = "".join(f"\\{c}" if c in _RE2_META else c for c in text)
    return regex.replace("\\", "\\\\").replace('"', '\\"')


def _build(common: list[str], instances: Sequence[str] | None) -> str:
    """The proxies' ``istio_build`` selector: of ``instances`` only (none: no target), or of
    every proxy when ``instances`` is None."""
    matchers = [*common, 'component="proxy"']
    if instances is not None:
        matchers.append(_instances_matcher(instances))
    return _selector("istio_build", matchers)


def _instances_matcher(instances: Sequence[str]) -> str:
    """The matcher of exactly ``instances`` (none: no series)."""
    return f'instance=~"{"|".join(_literal(i) for i in sorted(set(instances)))}"'


def _by_revision(increase: str, common: list[str], revision_label: str | None,
                 instances: Sequence[str] | None, by: str, seen: str) -> str:
    """``increase`` as is when the series carry the revision label; else summed by ``by``
    (the labels the caller sums by, comma-separated, without the revision's) and the scrape
    target, and joined on the target with the proxy's ``istio_build``, the targets without
    one kept as they are (no ``tag``: revision None).

    ``instances``: the targets whose build is read (:func:`targets_query`), so the join
    costs what the wave holds; None reads every proxy's. ``topk by (job, instance) (1,
    timestamp(…))`` keeps one build per target (the newest), so that a pod IP reused within
    the lookback cannot make the join many-to-many. ``seen``: an expression whose series
    name every target of ``increase`` at each step (the arm's series with a sample in the
    window, ``last_over_time``); the targets without a build at a step are those of
    ``seen`` that ``istio_build`` does not name then (``or`` keeps what its right side has
    of the targets its left side lacks), whether or not the targets query named them.

    Why summed first: a proxy exports its series by peer workload, service, response flags,
    mTLS policy…, which the windows do not keep, and a join costs Prometheus per series and
    step. Why one join, not a join ``or`` the same increase ``unless`` a build: the
    increase of the buckets, the costly part, is read once.
    """
    if revision_label is not None:
        return increase
    summed = f"sum by ({by}, {TARGET_LABELS}) ({increase})"
    build = _build(common, instances)
    # timestamp() of the selector itself: of anything else it is the evaluation time
    one = f"(topk by ({TARGET_LABELS}) (1, timestamp({build})) > bool 0)"
    return (f"({summed} * on ({TARGET_LABELS}) group_left ({PROXY_VERSION_LABEL}) "
            f"({one} or on ({TARGET_LABELS}) group by ({TARGET_LABELS}) ({seen})))")


def targets_query(selector: dict[str, str], namespaces: Sequence[str], range_s: int
                  ) -> str | None:
    """The instant query naming the scrape targets of ``namespaces``' series: ``group by
    (job, instance)`` of :data:`TARGET_METRICS` reported by a proxy of one of them (either
    reporter) over the ``range_s`` seconds before its evaluation time; None when there are no
    namespaces. ``last_over_time`` (Prometheus docs "Query functions") keeps every series
    with a sample in the range, also those of pods gone since."""
    if not namespaces:
        return None
    common = [f'{k}="{v}"' for k, v in sorted(selector.items())]
    ns_re = "|".join(sorted(set(namespaces)))
    terms = []
    for metric in TARGET_METRICS:
        for reporter, label in (("destination", "destination_workload_namespace"),
                                ("source", "source_workload_namespace")):
            sel = _selector(metric, [*common, f'reporter="{reporter}"', f'{label}=~"{ns_re}"'])
            terms.append(f"last_over_time({sel}[{range_s}s])")
    return f"group by ({TARGET_LABELS}) ({' or '.join(terms)})"


def window_queries(selector: dict[str, str], namespaces: Sequence[str],
                   gateways: Sequence[str], step_s: int, revision_label: str | None = None,
                   instances: Sequence[str] | None = None) -> dict[str, str]:
    """The four PromQL expressions of a wave's windows, one per signal.

    Args:
        selector: label matchers of every series (e.g. ``{"cluster": "aks-prod"}``).
        namespaces: the wave's namespaces (destination and source reporters).
        gateways: the add-on's ingress gateway Deployments in ``aks-istio-ingress``
            (``aks-istio-ingressgateway-<external|internal>-<revision>``).
        step_s: the window length and query step, whole seconds.
        revision_label: the series' label with the reporting pod's ``istio.io/rev``; None:
            the proxy's version (``istio_build``), see the module docstring.
        instances: without ``revision_label``, the scrape targets whose ``istio_build`` is
            joined (what :func:`targets_query` answers); None: every proxy's.

    Returns:
        ``{"requests" | "buckets" | "tcp_opened" | "tcp_failed": PromQL}``; empty when there
        are neither namespaces nor gateways.
    """
    common = [f'{k}="{v}"' for k, v in sorted(selector.items())]
    rev = revision_label or PROXY_VERSION_LABEL
    ns_re = "|".join(sorted(set(namespaces)))
    gw_re = "|".join(sorted({g.removeprefix("gateway/") for g in gateways}))
    window = f"[{step_s}s]"
    out = {}
    for name, sig in _SIGNALS.items():
        arms = []
        own = ", ".join(sig.by)
        tail = f", {own}" if own else ""
        if ns_re:
            for reporter, ns_label in (("destination", "destination_workload_namespace"),
                                       ("source", "source_workload_namespace")):
                arm = [*common, f'reporter="{reporter}"', f'{ns_label}=~"{ns_re}"']
                sel = _selector(sig.metric, [*arm, *sig.matchers])
                seen = sel if sig.seen is None else _selector(sig.seen, arm)
                inc = _by_revision(f"increase({sel}{window})", common, revision_label,
                                   instances, f"reporter, {ns_label}{tail}",
                                   f"last_over_time({seen}{window})")
                arms.append(f"sum by (reporter, {ns_label}, {rev}{tail}) ({inc})")
        if gw_re:
            sel = _selector(sig.metric, [*common, 'reporter="source"',
                                         f'source_workload_namespace="{INGRESS_NAMESPACE}"',
                                         f'source_workload=~"{gw_re}"', *sig.matchers])
            arms.append(f"sum by (reporter, source_workload{tail}) (increase({sel}{window}))")
        if arms:
            out[name] = " or ".join(arms)
    return out


def window_query(selector: dict[str, str], namespaces: Sequence[str],
                 gateways: Sequence[str], step_s: int, revision_label: str | None = None,
                 instances: Sequence[str] | None = None) -> str | None:
    """The four signals' expressions (:func:`window_queries`, same arguments) as one,
    each series labelled :data:`SIGNAL_LABEL` with its signal's name; None when there are
    neither namespaces nor gateways."""
    queries = window_queries(selector, namespaces, gateways, step_s, revision_label, instances)
    if not queries:
        return None
    return " or ".join(f'label_replace({q}, "{SIGNAL_LABEL}", "{name}", "", "")'
                       for name, q in queries.items())


def _subject(metric: dict[str, str], revision_label: str | None
             ) -> tuple[str, str | None, str] | None:
    """(subject, revision, reporter) of one result series; None for one of no subject."""
    reporter = metric.get("reporter", "")
    if reporter not in ("destination", "source"):
        return None
    workload = metric.get("source_workload")
    if reporter == "source" and workload:  # the gateways' arm
        return f"gateway/{workload}", gateway_revision(workload), reporter
    ns = metric.get(f"{reporter}_workload_namespace")
    if not ns:
        return None
    revision = (metric.get(revision_label) if revision_label is not None
                else proxy_revision(metric.get(PROXY_VERSION_LABEL)))
    return ns, revision or None, reporter


def _whole(value: float) -> int:
    return max(0, round(value))


class WindowBuilder:
    """Windows accumulated from range query results one series at a time, so that a
    wave's answers never need to be held whole (an hour of a 100-namespace wave's latency
    buckets is ~900,000 samples: ~170 MB as parsed JSON, issue 13).

    Per (subject, revision, reporter) and per column (a response code, a bucket's ``le``,
    TCP opened, TCP failed) an array of sums, one slot per evaluation time seen; NaN where
    no series had a sample. Sums are taken in the order the series come, as
    :func:`to_windows` always summed them.
    """

    def __init__(self, revision_label: str | None = None):
        self.revision_label = revision_label
        self._times: dict[float, int] = {}  # evaluation time (Unix s) -> slot
        # (subject, revision, reporter) -> column -> sums by slot; columns: ("code", c),
        # ("le", float), ("tcp_opened", None), ("tcp_failed", None)
        self._acc: dict[tuple[str, str | None, str], dict[tuple[str, Any], array[float]]] = {}

    def add(self, signal: str, series: Iterable[dict[str, Any]]) -> None:
        """Take in one signal's result (Prometheus' ``matrix``), series by series."""
        for item in series:
            self._take(signal, item)

    def add_labelled(self, series: Iterable[dict[str, Any]]) -> None:
        """Take in :func:`window_query`'s result, series by series, each as the signal its
        :data:`SIGNAL_LABEL` names; a series naming none of :data:`SIGNALS` is left out."""
        for item in series:
            signal = item.get("metric", {}).get(SIGNAL_LABEL)
            if signal in _SIGNALS:
                self._take(signal, item)

    def _take(self, signal: str, item: dict[str, Any]) -> None:
        """One series of ``signal``."""
        metric = item.get("metric", {})
        key = _subject(metric, self.revision_label)
        if key is None:
            return
        if signal == "requests":
            grpc = metric.get("grpc_response_status", "")
            column: tuple[str, Any] = ("code", f"grpc:{grpc}" if grpc
                                       else metric.get("response_code", ""))
        elif signal == "buckets":
            le = float(metric.get("le", "nan"))
            column = ("le", le)
        elif signal in ("tcp_opened", "tcp_failed"):
            column = (signal, None)
        else:  # no column of its own: its samples only make windows exist
            column = ("le", math.nan)
        # per series what does not change from sample to sample: an hour of a wave's
        # buckets is ~900,000 samples, and this loop was a third of a tick's CPU
        skip = column[0] == "le" and math.isnan(column[1])
        times = self._times
        present: array[float] | None = None
        sums: array[float] | None = None
        for t, raw in item.get("values", []):
            value = float(raw)
            if value != value:  # NaN: no sample
                continue
            at = float(t)
            slot = times.get(at)
            if slot is None:
                slot = times[at] = len(times)
            if present is None:
                columns = self._acc.get(key)
                if columns is None:
                    columns = self._acc[key] = {}
                present = columns.get(("", None))
                if present is None:
                    present = columns[("", None)] = array("d")
                if not skip:
                    sums = columns.get(column)
                    if sums is None:
                        sums = columns[column] = array("d")
            if slot >= len(present):
                present.extend([math.nan] * (slot + 1 - len(present)))
            if present[slot] != present[slot]:
                present[slot] = 0.0  # the window exists
            if sums is None:
                continue  # (as a bucket without a number for its edge)
            if slot >= len(sums):
                sums.extend([math.nan] * (slot + 1 - len(sums)))
            before = sums[slot]
            sums[slot] = value if before != before else before + value

    def windows(self, step_s: int) -> list[TrafficWindow]:
        """The windows: as :func:`to_windows` returns them. Takes the sums apart as it goes
        (each subject's let go once its windows are made): call it once."""
        times = list(self._times)
        out = []
        while self._acc:
            (subject, revision, reporter), columns = self._acc.popitem()
            present = columns[("", None)]
            codes_of = sorted((c[1], sums) for c, sums in columns.items() if c[0] == "code")
            les_of = sorted((c[1], sums) for c, sums in columns.items() if c[0] == "le")
            opened = columns.get(("tcp_opened", None))
            failed = columns.get(("tcp_failed", None))
            for slot, here in enumerate(present):
                if math.isnan(here):
                    continue
                t = times[slot]
                codes = {}
                for code, sums in codes_of:
                    v = _at(sums, slot)
                    if v is not None and _whole(v) > 0:
                        codes[code] = _whole(v)
                buckets = {}
                for le, sums in les_of:
                    v = _at(sums, slot)
                    if v is not None:
                        buckets[le] = _whole(v)
                out.append(TrafficWindow.of_counts(
                    subject, revision, reporter, t - step_s, t, codes, buckets,
                    _whole(_at(opened, slot) or 0.0), _whole(_at(failed, slot) or 0.0)))
        out.sort(key=lambda w: (w.end, w.subject, w.reporter, w.revision or ""))
        return out


def _at(sums: array[float] | None, slot: int) -> float | None:
    if sums is None or slot >= len(sums):
        return None
    v = sums[slot]
    return None if math.isnan(v) else v


def to_windows(results: dict[str, Iterable[dict[str, Any]]], step_s: int,
               revision_label: str | None = None) -> list[TrafficWindow]:
    """Windows from the range queries' results (Prometheus' ``matrix``, per signal).

    Returns one window per (evaluation time, subject, revision, reporter) that any signal has
    a value for, sorted by end, subject, reporter, revision; counts rounded to integers,
    ``requests`` the sum of ``codes`` (a gRPC call counted once, under ``grpc:<status>``),
    zero codes left out, ``restarts`` 0 (not Prometheus').
    """
    builder = WindowBuilder(revision_label)
    for signal, series in results.items():
        builder.add(signal, series)
    return builder.windows(step_s)


def read_windows(query_range: QueryRange, selector: dict[str, str],
                 namespaces: Sequence[str], gateways: Sequence[str], start: float,
                 end: float, step_s: float,
                 scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S,
                 revision_label: str | None = None, query: Query | None = None
                 ) -> list[TrafficWindow]:
    """The wave's windows between ``start`` and ``end`` (Unix s): one range query
    (:func:`window_query`), after one instant query for the wave's scrape targets when the
    proxy's version tells the revision (``revision_label`` None and ``query`` given).

    Args:
        query_range: runs one range query (``start``/``end`` Unix s, step whole seconds)
            and returns its ``result``; raises ``MetricsUnavailable`` when it cannot.
        query: runs one instant query at a time (Unix s), the same way; None: the join
            reads every proxy's ``istio_build``.
        step_s: the window length wanted; widened to two scrape intervals at least, whole
            seconds (the windows' ``start``/``end`` say what was used).
        The rest: as :func:`window_queries`.

    Returns:
        :func:`to_windows` of the answers; empty, with no query, when no whole window fits
        between ``start`` and ``end`` or there is nothing to read.
    """
    step = window_step_s(step_s, scrape_interval_s)
    times = evaluation_times(start, end, step)
    if times is None or not (namespaces or gateways):
        return []
    first, last = times
    instances = None
    targets = targets_query(selector, namespaces, last - first + step)
    if revision_label is None and query is not None and targets is not None:
        # the windows' samples: (first - step, last]
        instances = sorted({s["metric"]["instance"] for s in query(targets, last)
                            if s.get("metric", {}).get("instance")})
        if len(instances) > MAX_NAMED_TARGETS:
            instances = None
    q = window_query(selector, namespaces, gateways, step, revision_label, instances)
    builder = WindowBuilder(revision_label)
    if q is not None:
        builder.add_labelled(query_range(q, first, last, step))  # taken in as it comes
    return builder.windows(step)
