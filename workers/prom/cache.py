"""A results cache for a bake's looks, split by time as Prometheus' query frontends split
range queries (Cortex / Grafana Mimir ``query-frontend``: results cached per query and
step, the newest ``max_cache_freshness`` never cached; "Changed
-query-frontend.max-cache-freshness default value from 1m to 10m", grafana/mimir#7161).

Why: every look of a bake reads the wave's windows from the baseline's start (an hour
before the move, :mod:`workflows.canary`) to now, and all but the last minutes of that
answer are the same at every look. With the cache, a look reads from Prometheus only the
windows newer than those held, so its cost follows the bake, not the hour; and what is
held between looks is the windows themselves (compact, :class:`TrafficWindow`), not the
answers' series.

Exactness: a range query is its instant queries at ``start``, ``start + step``, … (the
Prometheus HTTP API, ``/api/v1/query_range``), and a window ``(t - step, t]`` is made from
the evaluation at ``t`` alone (:func:`workers.prom.windows.read_windows`), so the windows
ending up to ``b`` followed by those read from ``b`` on are the windows of one read. What
may still change is only what has not been ingested yet: samples still in flight (a
scrape under way, Azure Monitor's ingestion delay). Windows ending before
``now - max_freshness_s`` are taken as final; newer ones are always read again.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from workers.prom.windows import evaluation_times
from workflows.traffic import TrafficWindow

#: reads the windows ending in ``(start, end]`` (Unix s), as ``read_windows`` with the
#: rest of its arguments bound
WindowRead = Callable[[float, float], list[TrafficWindow]]

#: Grafana Mimir's default ``-query-frontend.max-cache-freshness`` (grafana/mimir#7161)
DEFAULT_MAX_FRESHNESS_S = 600.0
#: windows held in all of a process's entries together, ~600 bytes each (~12 MB): a wave
#: of 40 namespaces' hour at 30 s; a bigger wave's look is read whole, as before (at 100,000
#: the engine benchmark's worker peaked 46 MB higher at 2,000 namespaces, issue 13). The
#: least recently used entry (an earlier wave's) is let go first
DEFAULT_MAX_WINDOWS = 20_000


@dataclass
class _Entry:
    """The windows of one read ending at ``first``..``until`` (inclusive, multiples of
    ``step``), sorted by end."""
    first: int
    until: int
    windows: list[TrafficWindow]


class WindowCache:
    """Windows of repeated reads (a bake's looks), split at a freshness horizon.

    One cache serves a whole process (:func:`process_cache`): every cluster's
    ``PrometheusMetricsApi`` puts its entries in it, keyed by its Prometheus and selector,
    so :data:`DEFAULT_MAX_WINDOWS` bounds the process whatever the number of clusters.

    Args:
        max_freshness_s: windows ending after ``now - max_freshness_s`` are never held
            (seconds; 0 holds everything up to now), unless a read says otherwise.
        max_windows: windows held in all entries together.
        clock: Unix seconds (tests).
    """

    def __init__(self, max_freshness_s: float = DEFAULT_MAX_FRESHNESS_S,
                 max_windows: int = DEFAULT_MAX_WINDOWS,
                 clock: Callable[[], float] = time.time):
        if max_freshness_s < 0:
            raise ValueError("max_freshness_s must be 0 or more")
        self.max_freshness_s = max_freshness_s
        self.max_windows = max_windows
        self.clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self.held = 0  # windows in all entries
        self.hits = 0  # reads served from an entry (and Prometheus asked for the rest only)

    def windows(self, read: WindowRead, key: Hashable, start: float, end: float, step: int,
                max_freshness_s: float | None = None) -> list[TrafficWindow]:
        """The windows ``read(start, end)`` gives (those ending on multiples of ``step``
        within ``[start + step, end]``, sorted by end), taken from the entry of ``key``
        where it holds them and read for the rest. ``key`` names everything else the read
        depends on (the query: subjects, step, Prometheus). ``max_freshness_s``: this
        read's horizon (that Prometheus' ingestion delay), None: the cache's. Errors of
        ``read`` pass through and leave the entry as it was."""
        times = evaluation_times(start, end, step)
        if times is None:
            return read(start, end)
        first, last = times
        fresh = self.max_freshness_s if max_freshness_s is None else max_freshness_s
        horizon = math.floor((self.clock() - fresh) / step) * step
        entry = self._entries.get(key)
        if entry is None or not entry.first <= first <= entry.until + step:
            got = read(start, end)
            self._put(key, _Entry(first, min(horizon, last),
                                  [w for w in got if w.end <= horizon]))
            return got
        self._entries.move_to_end(key)
        self.hits += 1
        held = [w for w in entry.windows if first <= w.end <= last]
        if last <= entry.until:  # all of it held (an earlier end than before)
            return held
        # read from the last window held on: the next evaluation time is until + step
        newer = read(entry.until, end) if entry.until + step <= last else []
        until = max(entry.until, min(horizon, last))
        self._put(key, _Entry(first, until, held + [w for w in newer if w.end <= until]))
        return held + newer

    def _put(self, key: Hashable, entry: _Entry) -> None:
        self._drop(key)
        if entry.until < entry.first or len(entry.windows) > self.max_windows:
            return  # nothing final yet, or too big to hold
        self._entries[key] = entry
        self.held += len(entry.windows)
        while self.held > self.max_windows:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.held -= len(entry.windows)


_process_cache: WindowCache | None = None


def process_cache() -> WindowCache:
    """The process's one :class:`WindowCache` (made on first use; a forked worker child
    makes its own, as it holds nothing before its first look)."""
    global _process_cache
    if _process_cache is None:
        _process_cache = WindowCache()
    return _process_cache
