"""The window cache of a bake's looks (workers/prom/cache.py): each look answers as one
whole read would, and reads only the windows after those held, never one newer than the
freshness horizon from the cache. The reads stand in for ``read_windows`` (windows ending
on the step grid within the range, sorted by end); the real Prometheus case is in
test_prom_windows.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import REDIS_URL
from workers.prom.cache import (
    BACKGROUND_READS,
    IDLE_STEPS,
    MIN_IDLE_S,
    RedisWindowCache,
    WindowCache,
    decode_windows,
    encode_windows,
)
from workers.prom.metrics import PrometheusMetricsApi
from workers.prom.windows import evaluation_times
from workflows.errors import MetricsBusy, MetricsUnavailable
from workflows.traffic import TrafficWindow

STEP = 10
T0 = 1_700_000_000  # a multiple of STEP


class Windows:
    """Windows of subjects ``a``, ``b`` and ``c`` (a canary pod that starts later), their
    requests a function of (subject, end) unless a late sample changed one. Records the
    ranges it was asked for."""

    def __init__(self) -> None:
        self.born = {"a": T0, "b": T0, "c": T0 + 300}
        self.late: dict[tuple[str, int], int] = {}
        self.asked: list[tuple[int, int]] = []
        self.down = False

    def __call__(self, start: float, end: float) -> list[TrafficWindow]:
        self.asked.append((round(start) - T0, round(end) - T0))
        if self.down:
            raise MetricsUnavailable("Prometheus at http://prom: connection reset")
        times = evaluation_times(start, end, STEP)
        if times is None:
            return []
        return [TrafficWindow(subject=s, revision="asm-1-26", reporter="destination",
                              start=t - STEP, end=t,
                              requests=self.late.get((s, t), hash((s, t)) % 1000))
                for t in range(times[0], times[1] + 1, STEP)
                for s in sorted(self.born) if t >= self.born[s]]


def shown(windows: list[TrafficWindow]) -> list[tuple[str, float, int]]:
    return [(w.subject, w.end, w.requests) for w in windows]


@pytest.fixture
def r(prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["process", "redis"])
def make(request: pytest.FixtureRequest, prefix: str) -> Callable[..., WindowCache]:
    """A factory of either cache: each test below holds for the process's and the shared."""
    if request.param == "process":
        return WindowCache
    r = request.getfixturevalue("r")
    return lambda **kw: RedisWindowCache(r, prefix, **kw)


def test_each_look_answers_as_a_whole_read_and_reads_only_the_newer_windows(
        make: Callable[..., WindowCache]) -> None:
    read, now = Windows(), [0.0]
    cache = make(max_freshness_s=30, clock=lambda: now[0])
    for end in range(T0 + 200, T0 + 800, STEP * 3):
        now[0] = end + 4.0  # the horizon: end - 30, the last window taken as final
        got = cache.windows(read, "wave-1", T0, end, STEP)
        assert shown(got) == shown(Windows()(T0, end)), end
        if end > T0 + 200:  # the windows after the previous look's horizon, and no more
            assert read.asked[-1] == (end - STEP * 3 - 30 - T0, end - T0)
    assert cache.hits == len(read.asked) - 1
    assert {w.subject for w in got} == {"a", "b", "c"}  # c came in the newer part


def test_windows_newer_than_the_freshness_horizon_are_read_again(
        make: Callable[..., WindowCache]) -> None:
    """A sample ingested late (a scrape under way, Azure Monitor's delay) changes a recent
    window: the next look sees it; an old window is never asked for again."""
    read, now = Windows(), [T0 + 400.0]
    cache = make(max_freshness_s=60, clock=lambda: now[0])
    cache.windows(read, "wave-1", T0, T0 + 400, STEP)
    read.late[("a", T0 + 380)] = 9999
    now[0] = T0 + 430.0
    got = cache.windows(read, "wave-1", T0, T0 + 430, STEP)
    assert ("a", T0 + 380.0, 9999) in shown(got)
    assert read.asked[-1] == (340, 430)  # after the first look's horizon, T0 + 340


def test_a_failed_read_leaves_the_entry_and_the_next_look_reads_the_same_part(
        make: Callable[..., WindowCache]) -> None:
    read, now = Windows(), [T0 + 300.0]
    cache = make(max_freshness_s=0, clock=lambda: now[0])
    cache.windows(read, "wave-1", T0, T0 + 300, STEP)
    read.down, now[0] = True, T0 + 330.0
    with pytest.raises(MetricsUnavailable):
        cache.windows(read, "wave-1", T0, T0 + 330, STEP)
    read.down = False
    got = cache.windows(read, "wave-1", T0, T0 + 330, STEP)
    assert read.asked[-2:] == [(300, 330)] * 2
    assert shown(got) == shown(Windows()(T0, T0 + 330))


def test_another_key_or_a_start_before_the_entry_is_read_whole(
        make: Callable[..., WindowCache]) -> None:
    read, now = Windows(), [T0 + 300.0]
    cache = make(max_freshness_s=0, clock=lambda: now[0])
    cache.windows(read, "wave-1", T0 + 100, T0 + 300, STEP)
    cache.windows(read, "wave-2", T0 + 100, T0 + 300, STEP)
    cache.windows(read, "wave-1", T0, T0 + 300, STEP)
    assert read.asked == [(100, 300), (100, 300), (0, 300)] and cache.hits == 0


def test_a_later_start_or_an_earlier_end_is_served_from_what_is_held() -> None:
    read, now = Windows(), [T0 + 300.0]
    cache = WindowCache(max_freshness_s=0, clock=lambda: now[0])
    cache.windows(read, "wave-1", T0, T0 + 300, STEP)
    assert shown(cache.windows(read, "wave-1", T0, T0 + 200, STEP)) == \
        shown(Windows()(T0, T0 + 200))
    assert len(read.asked) == 1
    before, now[0] = cache.held, T0 + 330.0
    assert shown(cache.windows(read, "wave-1", T0 + 200, T0 + 330, STEP)) == \
        shown(Windows()(T0 + 200, T0 + 330))
    assert read.asked[-1] == (300, 330)
    assert cache.held < before  # what ends before the new start is let go


def test_nothing_final_yet_holds_nothing() -> None:
    read, now = Windows(), [T0 + 300.0]
    cache = WindowCache(max_freshness_s=600, clock=lambda: now[0])
    cache.windows(read, "wave-1", T0, T0 + 300, STEP)
    cache.windows(read, "wave-1", T0, T0 + 300, STEP)
    assert read.asked == [(0, 300)] * 2 and cache.held == 0


def test_the_cache_holds_at_most_max_windows() -> None:
    read, now = Windows(), [T0 + 300.0]
    cache = WindowCache(max_freshness_s=0, max_windows=70, clock=lambda: now[0])
    cache.windows(read, "one", T0, T0 + 300, STEP)  # a, b: 30 windows each; c: 1
    assert cache.held == 61
    cache.windows(read, "two", T0, T0 + 300, STEP)  # the first let go
    assert cache.held == 61
    cache.windows(read, "one", T0, T0 + 300, STEP)
    assert read.asked[-1] == (0, 300)  # read whole again
    small = WindowCache(max_freshness_s=0, max_windows=10, clock=lambda: now[0])
    assert shown(small.windows(read, "one", T0, T0 + 300, STEP)) == \
        shown(Windows()(T0, T0 + 300))
    assert small.held == 0  # too big to hold: passed through


def test_a_negative_freshness_is_refused() -> None:
    with pytest.raises(ValueError, match="max_freshness_s"):
        WindowCache(max_freshness_s=-1)


def test_a_windows_chunk_gives_back_the_windows_it_was_made_of() -> None:
    windows = [TrafficWindow(subject="shop", revision=None, reporter="source", start=T0,
                             end=T0 + 10.5, requests=7, codes={"200": 5, "grpc:14": 2},
                             buckets={0.5: 1, 10.0: 4, 1e300: 7}, tcp_opened=3, tcp_failed=1,
                             restarts=2),
               TrafficWindow(subject="gateway/aks-istio-ingressgateway-external",
                             revision="asm-1-26", reporter="source", start=T0, end=T0 + 10)]
    again = decode_windows(encode_windows(windows))
    assert again == windows
    assert [w.bucket_counts()[0] for w in again] == [(0.5, 10.0, 1e300), ()]
    # a chunk of the first version (rows), one of columns of different lengths, not one
    rows = '{"les":[],"w":[["shop",null,"source",1,2,0,{},0,[],0,0,0]]}'
    uneven = json.loads(encode_windows(windows))
    uneven["requests"].pop()
    listed = json.loads(encode_windows(windows))  # counts as lists: the first version's
    listed["counts"] = [[1, 4, 7], []]
    for bad in ("[]", rows, json.dumps(uneven), json.dumps(listed), "not json", '{"v": 2}'):
        with pytest.raises((ValueError, KeyError, TypeError, IndexError)):
            decode_windows(bad)


def test_the_windows_of_a_chunk_share_their_names_and_times() -> None:
    """A look decodes its wave's hour at once (~90,000 windows at 100 namespaces): each
    distinct subject, revision, reporter, time and tuple of edges is one object for all."""
    windows = [TrafficWindow(subject=f"shop-{i % 2}", revision="asm-1-26", reporter="source",
                             start=T0 + 10 * (i // 2), end=T0 + 10 * (i // 2) + 10, requests=3,
                             codes={"200": 3}, buckets={0.5: 1, 10.0: 3})
               for i in range(6)]
    chunk = encode_windows(windows)
    again = decode_windows(chunk)
    assert again == windows
    assert again[0].subject is again[2].subject is again[4].subject
    assert again[0].revision is again[5].revision and again[0].reporter is again[5].reporter
    assert again[0].end is again[2].start and again[0].start is again[1].start
    assert again[0].bucket_counts()[0] is again[5].bucket_counts()[0]
    assert chunk.count("shop-0") == 1 and chunk.count("asm-1-26") == 1


def test_the_looks_of_a_bake_share_the_windows_across_worker_processes(
        r: redis.Redis, prefix: str) -> None:
    """Celery hands each look to whichever pool process is free: the process that takes
    the second look reads from Prometheus only what the first did not hold, and each look
    adds one chunk to the shared entry instead of writing it whole."""
    read, now = Windows(), [0.0]
    first, second = (RedisWindowCache(r, prefix, max_freshness_s=30, idle_s=120,
                                      clock=lambda: now[0]) for _ in range(2))
    looks = [first, second, first, second]
    for n, (cache, end) in enumerate(zip(looks, range(T0 + 200, T0 + 800, STEP * 3),
                                         strict=False)):
        now[0] = end + 4.0
        got = cache.windows(read, ("wave-1", 10), T0, end, STEP)
        assert shown(got) == shown(Windows()(T0, end))
        if n:
            assert read.asked[-1] == (end - STEP * 3 - 30 - T0, end - T0)
    assert first.hits + second.hits == 3
    entry = r.hgetall(first.key(("wave-1", 10)))
    assert entry["n"] == "4"  # the first look's chunk and one per look since
    assert int(entry["count"]) == sum(len(decode_windows(entry[f"c{i}"])) for i in range(4))
    assert 0 < r.pttl(first.key(("wave-1", 10))) <= 120_000  # let go when no look comes


def test_an_entry_is_let_go_a_few_steps_after_its_last_look(r: redis.Redis,
                                                            prefix: str) -> None:
    """A wave that ended is not looked at again: its entry lives IDLE_STEPS steps (two
    minutes at the least), not as long as the run."""
    read, now = Windows(), [T0 + 3000.0]
    cache = RedisWindowCache(r, prefix, max_freshness_s=0, clock=lambda: now[0])
    cache.windows(read, "fine", T0, T0 + 3000, STEP)
    assert 110_000 < r.pttl(cache.key("fine")) <= MIN_IDLE_S * 1000
    cache.windows(read, "coarse", T0, T0 + 3000, 60)
    assert (IDLE_STEPS * 60 - 10) * 1000 < r.pttl(cache.key("coarse")) <= IDLE_STEPS * 60_000


def test_an_entry_replaced_meanwhile_is_not_extended(r: redis.Redis, prefix: str) -> None:
    read, now = Windows(), [T0 + 300.0]
    one, other = (RedisWindowCache(r, prefix, max_freshness_s=0, clock=lambda: now[0])
                  for _ in range(2))
    one.windows(read, "wave-1", T0, T0 + 300, STEP)
    seen = one._get("wave-1")
    assert seen is not None and seen.until == T0 + 300
    other.windows(read, "wave-1", T0 - 100, T0 + 300, STEP)  # replaced: an earlier start
    one._extend("wave-1", seen, T0 + 330, Windows()(T0 + 300, T0 + 330))
    held = one._get("wave-1")
    assert held is not None and (held.first, held.until) == (T0 - 90, T0 + 300)
    assert shown(held.windows) == shown(Windows()(T0 - 100, T0 + 300))


def test_a_broken_entry_or_redis_down_reads_prometheus(r: redis.Redis, prefix: str) -> None:
    read, now = Windows(), [T0 + 300.0]
    cache = RedisWindowCache(r, prefix, max_freshness_s=0, clock=lambda: now[0])
    cache.windows(read, "wave-1", T0, T0 + 300, STEP)
    r.hset(cache.key("wave-1"), "c0", '{"les": [], "w": [[1]]}')  # not one we wrote
    assert shown(cache.windows(read, "wave-1", T0, T0 + 300, STEP)) == \
        shown(Windows()(T0, T0 + 300))
    assert read.asked == [(0, 300)] * 2
    assert r.hget(cache.key("wave-1"), "c0") != '{"les": [], "w": [[1]]}'  # written anew
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2,
                       retry=Retry(NoBackoff(), 0))
    gone = RedisWindowCache(down, prefix, max_freshness_s=0, clock=lambda: now[0])
    assert shown(gone.windows(read, "wave-1", T0, T0 + 300, STEP)) == \
        shown(Windows()(T0, T0 + 300))


def test_a_shared_entry_holds_at_most_max_windows(r: redis.Redis, prefix: str) -> None:
    read, now = Windows(), [T0 + 300.0]
    cache = RedisWindowCache(r, prefix, max_freshness_s=0, max_windows=70,
                             clock=lambda: now[0])
    cache.windows(read, "wave-1", T0, T0 + 300, STEP)  # 61 windows
    assert r.hget(cache.key("wave-1"), "count") == "61"
    now[0] = T0 + 360.0
    cache.windows(read, "wave-1", T0, T0 + 360, STEP)  # 61 + 12: too many
    assert not r.exists(cache.key("wave-1"))
    cache.windows(read, "wave-1", T0, T0 + 360, STEP)
    assert read.asked[-1] == (0, 360)  # read whole again


def test_reads_ahead_of_need_share_a_few_slots_across_workers(r: redis.Redis,
                                                             prefix: str) -> None:
    """Background reads (a wave's baseline read while the run waits) take one of
    BACKGROUND_READS slots, shared by every worker through Redis, and never wait for one;
    a slot is free again when its read ends, also by an exception; Redis down: no slot."""
    workers = [RedisWindowCache(r, prefix) for _ in range(BACKGROUND_READS + 1)]
    with ExitStack() as held:
        assert [held.enter_context(w.background_slot()) for w in workers] == \
            [True] * BACKGROUND_READS + [False]
    with pytest.raises(RuntimeError), workers[0].background_slot() as first:
        assert first
        raise RuntimeError("the read failed")
    with workers[1].background_slot() as again:
        assert again
    local = WindowCache()
    with local.background_slot() as one, local.background_slot() as two, \
            local.background_slot() as three:
        assert (one, two, three) == (True, True, False)
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2,
                       retry=Retry(NoBackoff(), 0))
    with RedisWindowCache(down, prefix).background_slot() as none:
        assert not none


def test_a_background_read_with_no_slot_asks_prometheus_nothing(r: redis.Redis,
                                                               prefix: str) -> None:
    cache = RedisWindowCache(r, prefix)
    api = PrometheusMetricsApi("http://127.0.0.1:1", {"cluster": "dev"}, cache=cache)
    others = [RedisWindowCache(r, prefix) for _ in range(BACKGROUND_READS)]
    with ExitStack() as held:
        for other in others:
            assert held.enter_context(other.background_slot())
        with pytest.raises(MetricsBusy):
            api.windows(["a"], [], T0, T0 + 300, STEP, repeat=True, background=True)
    assert api.queries == 0
    # a slot free: the read is made (here, against no Prometheus)
    with pytest.raises(MetricsUnavailable):
        api.windows(["a"], [], T0, T0 + 300, STEP, repeat=True, background=True)
