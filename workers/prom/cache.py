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

import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from workers.prom.windows import evaluation_times
from workflows.traffic import TrafficWindow

log = structlog.get_logger("meshops.prom")

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
#: windows one shared entry holds at most (~160 bytes each in Redis, ~600 in a worker
#: while a look reads them; ~16 MB): an hour of a 100-namespace wave and 20 control
#: namespaces at 10 s, both reporters, is ~86,000
DEFAULT_MAX_SHARED_WINDOWS = 100_000
#: a shared entry not read for this many steps (a bake looks about once a step) is let go
#: by Redis, :data:`MIN_IDLE_S` at the least: a wave that ended is not looked at again,
#: and its entry must not hold Redis' memory for long (a 2,000-namespace run has 21 waves)
IDLE_STEPS = 4
MIN_IDLE_S = 120
#: reads ahead of need (``background``) under way at once, in all of a deployment's
#: workers: 30 upgrades started together read their first wave's baseline while ARM
#: works, and with no bound those reads held every pool process, so the others' polls of
#: ARM waited 1.5 s behind them (issue 13). Two leave the rest of a worker's processes
#: (four by default) to the runs' own steps
BACKGROUND_READS = 2
#: seconds a background slot is held at most when its worker dies holding it (a read
#: takes seconds at 2,000 namespaces; a task is stopped after 150 s)
BACKGROUND_SLOT_S = 150


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
        self._background = threading.BoundedSemaphore(BACKGROUND_READS)

    @contextmanager
    def background_slot(self) -> Iterator[bool]:
        """One of the :data:`BACKGROUND_READS` slots for a read ahead of need, held while
        the ``with`` block runs: yields False, without waiting, when all are taken (here,
        by this process' threads; :class:`RedisWindowCache`: by every worker's)."""
        held = self._background.acquire(blocking=False)
        try:
            yield held
        finally:
            if held:
                self._background.release()

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
        entry = self._get(key)
        if entry is None or not entry.first <= first <= entry.until + step:
            got = read(start, end)
            self._put(key, _Entry(first, min(horizon, last),
                                  [w for w in got if w.end <= horizon]))
            return got
        self.hits += 1
        held = [w for w in entry.windows if first <= w.end <= last]
        if last <= entry.until:  # all of it held (an earlier end than before)
            return held
        # read from the last window held on: the next evaluation time is until + step
        newer = read(entry.until, end) if entry.until + step <= last else []
        until = max(entry.until, min(horizon, last))
        added = [w for w in newer if w.end <= until]
        if first == entry.first:  # the same start: what is held grows by what is added
            self._extend(key, entry, until, added)
        else:  # a later start: what ends before it is let go
            self._put(key, _Entry(first, until, held + added))
        return held + newer

    def _get(self, key: Hashable) -> _Entry | None:
        """The entry of ``key`` (the most recently used now), or None."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def _extend(self, key: Hashable, entry: _Entry, until: int,
                added: list[TrafficWindow]) -> None:
        """``entry`` (as :meth:`_get` gave it) held until ``until``, with ``added``."""
        self._put(key, _Entry(entry.first, until, entry.windows + added))

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


# the entry grows by a chunk only if it is still the one this look read (another worker
# may have replaced it meanwhile: then the chunk is not added, and the next look reads
# the part again)
_EXTEND = """
if redis.call('HGET', KEYS[1], 'first') ~= ARGV[1]
   or redis.call('HGET', KEYS[1], 'until') ~= ARGV[2] then return 0 end
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
redis.call('HSET', KEYS[1], 'c' .. n, ARGV[4], 'n', n + 1, 'until', ARGV[3],
           'count', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
"""


#: the chunk format :func:`encode_windows` writes (an entry of another is read again)
CHUNK_VERSION = 2
#: a chunk's columns, one value per window each, in :meth:`TrafficWindow.of_parts`' order
_COLUMNS = ("subject", "revision", "reporter", "start", "end", "requests", "codes", "edges",
            "counts", "tcp_opened", "tcp_failed", "restarts")


def encode_windows(windows: list[TrafficWindow]) -> str:
    """``windows`` as one compact JSON chunk of columns: ``{"v": 2, "names": [subjects,
    revisions, reporters], "times": [starts and ends, Unix s], "les": [bucket edges, …],
    "subject": [index in names, …], "revision": [index in names or -1 for None, …],
    "reporter", "start", "end" (indices), "requests", "codes", "edges" (index in les),
    "counts" (each window's cumulative bucket counts, space-separated), "tcp_opened",
    "tcp_failed", "restarts"}``, each distinct name, time and tuple of edges written once.

    Why columns: a look at a 100-namespace wave decodes ~90,000 windows of its hour at
    once. As rows, ``json.loads`` made a list per window and an int per bucket count before
    the first window was built (a peak of ~117 MB for ~70 MB of windows), and every window
    had its own copies of its subject, revision, reporter and times; here the names and
    times of all windows are the same few objects, and a window's counts become its
    ``array`` straight from their text (issue 13: the worker's peak at 2,000 namespaces).
    """
    names: dict[str | None, int] = {None: -1}
    times: dict[float, int] = {}
    les: dict[tuple[float, ...], int] = {}
    cols: dict[str, list[Any]] = {c: [] for c in _COLUMNS}
    for w in windows:
        edges, counts = w.bucket_counts()
        for col, value in (("subject", w.subject), ("revision", w.revision),
                           ("reporter", w.reporter)):
            cols[col].append(names.setdefault(value, len(names) - 1))
        cols["start"].append(times.setdefault(w.start, len(times)))
        cols["end"].append(times.setdefault(w.end, len(times)))
        cols["requests"].append(w.requests)
        cols["codes"].append(w.codes)
        cols["edges"].append(les.setdefault(edges, len(les)))
        cols["counts"].append(" ".join(map(str, counts)))
        cols["tcp_opened"].append(w.tcp_opened)
        cols["tcp_failed"].append(w.tcp_failed)
        cols["restarts"].append(w.restarts)
    return json.dumps({"v": CHUNK_VERSION, "names": [n for n in names if n is not None],
                       "times": list(times), "les": list(les), **cols},
                      separators=(",", ":"))


def decode_windows(chunk: str | bytes) -> list[TrafficWindow]:
    """The windows of a chunk :func:`encode_windows` wrote.

    Raises:
        ValueError / KeyError / TypeError / IndexError: not such a chunk (another
        version's, or not one at all).
    """
    data: dict[str, Any] = json.loads(chunk)
    if not isinstance(data, dict) or data.get("v") != CHUNK_VERSION:
        raise ValueError(f"not a version {CHUNK_VERSION} chunk of windows")
    names: list[str | None] = [*data["names"], None]  # -1: no revision
    times = [float(t) for t in data["times"]]
    les = [tuple(map(float, e)) for e in data["les"]]
    cols = [data[c] for c in _COLUMNS]
    if len({len(c) for c in cols}) != 1 or not all(isinstance(c, list) for c in cols):
        raise ValueError("the chunk's columns are not lists of one length")
    return [TrafficWindow.of_parts(names[s], names[r], names[p], times[a], times[b], req,
                                   codes, les[e], map(int, str.split(counts)), to, tf, rs)
            for s, r, p, a, b, req, codes, e, counts, to, tf, rs in zip(*cols, strict=True)]


class RedisWindowCache(WindowCache):
    """A :class:`WindowCache` whose entries every worker process shares, in Redis.

    Why: a bake's looks are ticks, and Celery gives each tick to whichever pool process is
    free; with a cache per process, a look found the windows of the looks before it about
    once in as many processes as the worker has, and read the rest from Prometheus again
    (at 30 runs at once, Prometheus was the busiest process on the machine). Cortex's and
    Grafana Mimir's query frontends share their results cache the same way, in memcached
    or Redis (``-query-frontend.results-cache.backend``), for the same reason: the
    queriers are many.

    An entry is one Redis hash, ``{prefix}:prom-windows:{sha256 of the key}``: ``first``,
    ``until`` (the evaluation times held, Unix s), ``count`` (windows), ``n`` and chunks
    ``c0`` … ``c{n-1}`` (:func:`encode_windows`), each look's newer windows added as one
    chunk (a script that checks the entry is still the one the look read), so a look
    writes what it read, not the whole entry. Redis lets an entry go :data:`IDLE_STEPS`
    steps after its last read (:data:`MIN_IDLE_S` at the least). The cache only saves
    reads: when Redis does not answer, or an entry is not one this class wrote, the look
    reads Prometheus. Redis holds ~160 bytes a window: a run's current wave, about 7 MB
    for an hour of 100 namespaces and their control at 10 s.

    One instance serves one thread at a time (a Celery pool process runs one task).

    Args:
        client: the run store's Redis client; prefix: its key prefix.
        max_windows: windows one entry holds at most (a bigger read is not held).
        idle_s: seconds an entry is kept after its last use; None: :data:`IDLE_STEPS`
            steps of the read, :data:`MIN_IDLE_S` at the least.
        max_freshness_s / clock: as :class:`WindowCache`'s.
    """

    def __init__(self, client: redis.Redis, prefix: str = "meshops",
                 max_freshness_s: float = DEFAULT_MAX_FRESHNESS_S,
                 max_windows: int = DEFAULT_MAX_SHARED_WINDOWS,
                 idle_s: float | None = None, clock: Callable[[], float] = time.time):
        super().__init__(max_freshness_s, max_windows, clock)
        self.r = client
        self.p = f"{prefix}:prom-windows"
        self.idle_s = idle_s
        self.idle_ms = 1000 * MIN_IDLE_S  # of the read under way (:meth:`windows`)
        self._extend_script = client.register_script(_EXTEND)

    @contextmanager
    def background_slot(self) -> Iterator[bool]:
        """As :meth:`WindowCache.background_slot`, the slots shared by every worker through
        Redis: one lock each (``{p}:background:{i}``, redis-py's ``Lock``, let go after
        :data:`BACKGROUND_SLOT_S` if its holder died). Redis not answering: no slot (the
        read is made when needed)."""
        lock = None
        try:
            for i in range(BACKGROUND_READS):
                candidate = self.r.lock(f"{self.p}:background:{i}", timeout=BACKGROUND_SLOT_S)
                if candidate.acquire(blocking=False):
                    lock = candidate
                    break
        except redis.RedisError:
            lock = None
        try:
            yield lock is not None
        finally:
            if lock is not None:
                try:
                    lock.release()
                except redis.RedisError:  # it lapses by itself
                    pass

    def windows(self, read: WindowRead, key: Hashable, start: float, end: float, step: int,
                max_freshness_s: float | None = None) -> list[TrafficWindow]:
        idle = self.idle_s if self.idle_s is not None else max(MIN_IDLE_S, IDLE_STEPS * step)
        self.idle_ms = max(1, int(idle * 1000))
        return super().windows(read, key, start, end, step, max_freshness_s)

    def key(self, key: Hashable) -> str:
        """The Redis key of ``key`` (its ``repr``: the same in every process)."""
        return f"{self.p}:{hashlib.sha256(repr(key).encode()).hexdigest()[:32]}"

    def _get(self, key: Hashable) -> _Entry | None:
        rkey = self.key(key)
        try:
            pipe = self.r.pipeline()
            pipe.hgetall(rkey)
            pipe.pexpire(rkey, self.idle_ms)
            raw = {_text(k): v for k, v in pipe.execute()[0].items()}
        except redis.RedisError as exc:
            log.warning("prom.cache_unavailable", error=str(exc)[:200])
            return None
        if not raw:
            return None
        try:
            windows = [w for i in range(int(raw["n"])) for w in decode_windows(raw[f"c{i}"])]
            return _Entry(int(raw["first"]), int(raw["until"]), windows)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("prom.cache_entry_dropped", key=rkey, error=str(exc)[:200])
            self._forget(rkey)
            return None

    def _put(self, key: Hashable, entry: _Entry) -> None:
        rkey = self.key(key)
        if entry.until < entry.first or len(entry.windows) > self.max_windows:
            self._forget(rkey)  # nothing final yet, or too big to hold
            return
        try:
            pipe = self.r.pipeline()  # MULTI/EXEC: a reader sees the old entry or the new
            pipe.delete(rkey)
            pipe.hset(rkey, mapping={"first": entry.first, "until": entry.until, "n": 1,
                                     "count": len(entry.windows),
                                     "c0": encode_windows(entry.windows)})
            pipe.pexpire(rkey, self.idle_ms)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("prom.cache_unavailable", error=str(exc)[:200])

    def _extend(self, key: Hashable, entry: _Entry, until: int,
                added: list[TrafficWindow]) -> None:
        if until == entry.until and not added:
            return  # nothing new is final: the entry stays as it is
        count = len(entry.windows) + len(added)
        if count > self.max_windows:
            self._forget(self.key(key))
            return
        try:
            self._extend_script(keys=[self.key(key)], args=[
                entry.first, entry.until, until, encode_windows(added), count, self.idle_ms])
        except redis.RedisError as exc:
            log.warning("prom.cache_unavailable", error=str(exc)[:200])

    def _forget(self, rkey: str) -> None:
        try:
            self.r.delete(rkey)
        except redis.RedisError as exc:
            log.warning("prom.cache_unavailable", error=str(exc)[:200])


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
