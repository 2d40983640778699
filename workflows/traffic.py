"""Traffic windows: what the metric gate reads, one interval at a time. Pure.

A :class:`TrafficWindow` is one scrape-aligned interval of one subject (a namespace, or an
add-on ingress gateway) on one mesh revision, as one Istio reporter saw it: request counts
by response code (``istio_requests_total``: ``response_code`` and, for gRPC,
``grpc_response_status``), the latency histogram in Istio's own buckets
(``istio_request_duration_milliseconds_bucket``, cumulative counts by ``le``), TCP
connections opened and failed (``istio_tcp_connections_opened_total`` /
``istio_tcp_connections_closed_total`` with a failure ``response_flags``), and container
restarts of its pods. Counts are increases over the window, as ``increase()`` reads them.

The JSON lines file of ``meshops gate replay`` holds one :meth:`TrafficWindow.model_dump`
object per line (one per interval, subject, revision and reporter).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: Istio's default buckets of ``istio_request_duration_milliseconds`` (ms), +Inf last
#: (istio/proxy ``source/extensions/filters/http/istio_stats``: 0.5 ms up to one hour)
ISTIO_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
    600000, 1800000, 3600000, float("inf"))


class TrafficWindow(BaseModel):
    """One interval of one subject on one revision, as one reporter saw it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str  # a namespace, or ``gateway/<deployment>`` for an add-on ingress gateway
    revision: str | None  # the mesh revision of the pods reporting (None: unknown / mixed)
    reporter: str = Field(pattern="^(destination|source)$")
    start: float  # Unix s
    end: float  # Unix s
    requests: int = Field(0, ge=0)
    #: counts by HTTP response code ("200", "503", …); gRPC calls by "grpc:<status>"
    codes: dict[str, int] = Field(default_factory=dict)
    #: cumulative latency bucket counts (``le`` ms → count), Istio's buckets
    buckets: dict[float, int] = Field(default_factory=dict)
    tcp_opened: int = Field(0, ge=0)
    tcp_failed: int = Field(0, ge=0)  # closed with a failure response_flags (UF, UH, URX…)
    restarts: int = Field(0, ge=0)  # container restarts of the subject's pods

    @property
    def errors(self) -> int:
        """HTTP 5xx and gRPC statuses that are failures of the server (Unknown, Internal,
        Unavailable, DataLoss, DeadlineExceeded, Unimplemented, ResourceExhausted)."""
        bad_grpc = {"2", "4", "8", "12", "13", "14", "15"}
        n = 0
        for code, count in self.codes.items():
            if code.startswith("grpc:"):
                n += count if code[5:] in bad_grpc else 0
            elif code.startswith("5"):
                n += count
        return n
