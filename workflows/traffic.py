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

A window is a small slotted object, not a pydantic model: a gate look at a wave of a
2,000-namespace mesh reads ~45,000 of them (an hour of baseline at 10 s for ~120 subjects),
and as models with their dicts they took ~115 MB of the worker (issue 13); the latency
buckets are kept as one array of counts against a shared tuple of edges. Its JSON (and the
validation of what is read) is the pydantic model :class:`TrafficWindowJson`'s, unchanged.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Istio's default buckets of ``istio_request_duration_milliseconds`` (ms), +Inf last
#: (istio/proxy ``source/extensions/filters/http/istio_stats``: 0.5 ms up to one hour)
ISTIO_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
    600000, 1800000, 3600000, float("inf"))

#: failures of the server among gRPC statuses: Unknown, DeadlineExceeded, ResourceExhausted,
#: Unimplemented, Internal, Unavailable, DataLoss
_BAD_GRPC = frozenset({"2", "4", "8", "12", "13", "14", "15"})


class TrafficWindowJson(BaseModel):
    """A window as the JSON lines of a replay hold it, and what validates one."""

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


_FIELDS = tuple(TrafficWindowJson.model_fields)
#: the bucket edges of every window, each distinct tuple kept once
_EDGES: dict[tuple[float, ...], tuple[float, ...]] = {}


def _edges(keys: Iterable[float]) -> tuple[float, ...]:
    """``keys`` as floats, the tuple shared with every window of the same edges (equal
    floats are the same edge, but for the signs of zeros: those are never shared)."""
    les = tuple(map(float, keys))
    if len(_EDGES) > 1000 or 0.0 in les:  # arbitrary buckets: stop sharing, never grow
        return les
    return _EDGES.setdefault(les, les)


class TrafficWindow:
    """One interval of one subject on one revision, as one reporter saw it.

    Its fields are :class:`TrafficWindowJson`'s (``subject``, ``revision``, ``reporter``,
    ``start``/``end`` Unix s, ``requests``, ``codes``, ``buckets`` cumulative counts by
    ``le`` ms, ``tcp_opened``, ``tcp_failed``, ``restarts``), read-only; ``TrafficWindow(
    **fields)`` validates them as that model does (``pydantic.ValidationError``).
    ``buckets`` is a new dict at each read: :meth:`bucket_counts` reads them without one.
    """

    __slots__ = ("subject", "revision", "reporter", "start", "end", "requests", "codes",
                 "_les", "_counts", "tcp_opened", "tcp_failed", "restarts")

    subject: str
    revision: str | None
    reporter: str
    start: float
    end: float
    requests: int
    codes: dict[str, int]
    _les: tuple[float, ...]
    _counts: array[int]
    tcp_opened: int
    tcp_failed: int
    restarts: int

    def __init__(self, **fields: Any):
        m = TrafficWindowJson(**fields)
        self._set(m.subject, m.revision, m.reporter, m.start, m.end, m.requests, m.codes,
                  m.buckets, m.tcp_opened, m.tcp_failed, m.restarts)

    def _set(self, subject: str, revision: str | None, reporter: str, start: float,
             end: float, requests: int, codes: dict[str, int], buckets: Mapping[float, int],
             tcp_opened: int, tcp_failed: int, restarts: int) -> None:
        put = object.__setattr__
        put(self, "subject", subject)
        put(self, "revision", revision)
        put(self, "reporter", reporter)
        put(self, "start", start)
        put(self, "end", end)
        put(self, "requests", requests)
        put(self, "codes", codes)
        put(self, "_les", _edges(buckets))
        put(self, "_counts", array("q", list(buckets.values())))  # (sized exactly)
        put(self, "tcp_opened", tcp_opened)
        put(self, "tcp_failed", tcp_failed)
        put(self, "restarts", restarts)

    @classmethod
    def of_counts(cls, subject: str, revision: str | None, reporter: str, start: float,
                  end: float, codes: dict[str, int], buckets: Mapping[float, int],
                  tcp_opened: int, tcp_failed: int) -> TrafficWindow:
        """A window from counts already whole and non-negative (an adapter's), not
        validated again; ``requests`` is the sum of ``codes``, ``restarts`` 0."""
        w = cls.__new__(cls)
        w._set(subject, revision, reporter, float(start), float(end), sum(codes.values()),
               codes, buckets, tcp_opened, tcp_failed, 0)
        return w

    @classmethod
    def of_parts(cls, subject: str, revision: str | None, reporter: str, start: float,
                 end: float, requests: int, codes: dict[str, int], les: Iterable[float],
                 counts: Iterable[int], tcp_opened: int, tcp_failed: int,
                 restarts: int) -> TrafficWindow:
        """A window from the parts of one a worker made (a shared cache's entry,
        :mod:`workers.prom.cache`), not validated again: ``les`` the bucket edges (ms),
        ``counts`` their cumulative counts, in the same order."""
        w = cls.__new__(cls)
        w._set(subject, revision, reporter, float(start), float(end), requests, codes,
               dict(zip(les, counts, strict=True)), tcp_opened, tcp_failed, restarts)
        return w

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a TrafficWindow is read-only ({name}): use model_copy")

    @property
    def buckets(self) -> dict[float, int]:
        """Cumulative latency bucket counts, ``le`` (ms) → count (a new dict)."""
        return dict(zip(self._les, self._counts, strict=True))

    def bucket_counts(self) -> tuple[tuple[float, ...], array[int]]:
        """(the ``le`` edges, ms; their cumulative counts), in the order of ``buckets``."""
        return self._les, self._counts

    @property
    def errors(self) -> int:
        """HTTP 5xx and gRPC statuses that are failures of the server (Unknown, Internal,
        Unavailable, DataLoss, DeadlineExceeded, Unimplemented, ResourceExhausted)."""
        n = 0
        for code, count in self.codes.items():
            if code.startswith("grpc:"):
                n += count if code[5:] in _BAD_GRPC else 0
            elif code.startswith("5"):
                n += count
        return n

    def model_dump(self) -> dict[str, Any]:
        """The fields as a dict (``buckets`` keyed by ``le`` floats), as pydantic's."""
        return {f: getattr(self, f) for f in _FIELDS}

    def model_dump_json(self) -> str:
        """One line of a replay file (:class:`TrafficWindowJson`'s JSON)."""
        return TrafficWindowJson.model_construct(**self.model_dump()).model_dump_json()

    @classmethod
    def model_validate(cls, data: Mapping[str, Any]) -> TrafficWindow:
        return cls(**data)

    @classmethod
    def model_validate_json(cls, text: str | bytes) -> TrafficWindow:
        """A window from one JSON object; raises ``pydantic.ValidationError``."""
        m = TrafficWindowJson.model_validate_json(text)
        w = cls.__new__(cls)
        w._set(m.subject, m.revision, m.reporter, m.start, m.end, m.requests, m.codes,
               m.buckets, m.tcp_opened, m.tcp_failed, m.restarts)
        return w

    def model_copy(self, update: Mapping[str, Any] | None = None) -> TrafficWindow:
        """A copy with ``update``'s fields replaced (not validated, as pydantic's)."""
        fields = {**self.model_dump(), **(update or {})}
        w = TrafficWindow.__new__(TrafficWindow)
        w._set(*(fields[f] for f in _FIELDS))
        return w

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrafficWindow):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]  # (as the model's: its dicts are not hashable)

    def __repr__(self) -> str:
        return "TrafficWindow(" + ", ".join(f"{k}={v!r}" for k, v in self.model_dump().items()) \
            + ")"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (tuple(self.model_dump().values()),))


def _rebuild(values: tuple[Any, ...]) -> TrafficWindow:
    w = TrafficWindow.__new__(TrafficWindow)
    w._set(*values)
    return w
