"""The Istio traffic simulator: Istio's standard metrics for every sandbox workload.

Serves ``/metrics`` in the Prometheus text format with the series an Istio sidecar reports
(``reporter="destination"``): ``istio_requests_total`` (counter, by ``response_code``) and
``istio_request_duration_milliseconds`` (histogram with Istio's default buckets), labelled
with ``destination_workload``, ``destination_workload_namespace`` and the rest of Istio's
standard labels, plus ``cluster`` as Azure Monitor's managed Prometheus adds it.

Which workloads serve and how many requests a second each revision of their pods gets is the
world's (:meth:`sandbox.world.World.workloads_traffic`: workloads behind a Service, ready
pods only, ``rps_per_pod`` each or the namespace's ``traffic.rps``). Error rate and latency
depend on (cluster, namespace, workload, sidecar revision) through the namespace's traffic
and the world's faults, which is how a bad canary is staged: a fault on ``asm-1-26`` in one
namespace shows only once that namespace's pods run the asm-1-26 sidecar.
Counters advance by elapsed time at each scrape, so they are exact rates, free of random noise.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import defaultdict

from sandbox.http import Response, Router
from sandbox.world import World

BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
           300000, 600000, 1800000, 3600000]
SIGMA = 0.5  # log-normal spread of latencies: p99 ≈ 3.2 × median


def default_latency_ms(workload: str) -> float:
    """A stable median latency per workload, 10–40 ms."""
    return 10.0 + int(hashlib.sha1(workload.encode()).hexdigest()[:4], 16) % 30


def lognormal_cdf(x: float, median: float) -> float:
    return 0.5 * (1 + math.erf((math.log(x) - math.log(median)) / (SIGMA * math.sqrt(2))))


Key = tuple[str, str, str]


class TrafficSimulator:
    def __init__(self, world: World):
        self.world = world
        self.lock = threading.Lock()
        self.last = time.time()
        self.requests: dict[tuple[str, str, str, str], float] = defaultdict(float)
        self.buckets: dict[Key, list[float]] = defaultdict(lambda: [0.0] * len(BUCKETS))
        self.sums: dict[Key, float] = defaultdict(float)
        self.counts: dict[Key, float] = defaultdict(float)

    def advance(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.lock:
            dt, self.last = max(0.0, now - self.last), now
            for cluster, ns, workload, revs in self.world.workloads_traffic():
                for rev, rps in revs.items():
                    error_rate, latency = self.world.profile(cluster, ns, workload, rev)
                    n = rps * dt
                    if n <= 0:
                        continue
                    errors = n * error_rate
                    self.requests[(cluster, ns, workload, "200")] += n - errors
                    if errors:
                        self.requests[(cluster, ns, workload, "503")] += errors
                    median = latency or default_latency_ms(workload)
                    key = (cluster, ns, workload)
                    for i, le in enumerate(BUCKETS):
                        self.buckets[key][i] += n * lognormal_cdf(le, median)
                    self.sums[key] += n * median * math.exp(SIGMA**2 / 2)
                    self.counts[key] += n

    def render(self) -> str:
        self.advance()
        lines = [
            "# HELP istio_requests_total Total requests.",
            "# TYPE istio_requests_total counter",
        ]
        with self.lock:
            for (cluster, ns, wl, code), value in sorted(self.requests.items()):
                lines.append(f"istio_requests_total{{{_labels(cluster, ns, wl)},"
                             f'response_code="{code}"}} {value:.3f}')
            lines += ["# HELP istio_request_duration_milliseconds Request duration.",
                      "# TYPE istio_request_duration_milliseconds histogram"]
            for key, counts in sorted(self.buckets.items()):
                base = _labels(*key)
                for le, c in zip(BUCKETS, counts, strict=True):
                    lines.append(f'istio_request_duration_milliseconds_bucket{{{base},le="{le}"}}'
                                 f" {c:.3f}")
                lines.append(f'istio_request_duration_milliseconds_bucket{{{base},le="+Inf"}}'
                             f" {self.counts[key]:.3f}")
                lines.append(f"istio_request_duration_milliseconds_sum{{{base}}} "
                             f"{self.sums[key]:.3f}")
                lines.append(f"istio_request_duration_milliseconds_count{{{base}}} "
                             f"{self.counts[key]:.3f}")
        return "\n".join(lines) + "\n"

    def router(self) -> Router:
        r = Router()
        r.add("GET", "/metrics", lambda req: Response(
            200, self.render(), content_type="text/plain; version=0.0.4; charset=utf-8"))
        return r


def _labels(cluster: str, ns: str, workload: str) -> str:
    app = workload.rsplit("-v", 1)[0]
    version = workload.rsplit("-", 1)[-1] if "-v" in workload else "latest"
    return (f'cluster="{cluster}",reporter="destination",source_workload="istio-ingressgateway",'
            f'source_workload_namespace="aks-istio-ingress",destination_workload="{workload}",'
            f'destination_workload_namespace="{ns}",'
            f'destination_service="{app}.{ns}.svc.cluster.local",'
            f'destination_canonical_service="{app}",destination_canonical_revision="{version}",'
            f'request_protocol="http",response_flags="-",'
            f'connection_security_policy="mutual_tls"')

