"""``RedisRunStore``: durable runs in Redis with compare-and-set and one lease per cluster.

Keys under a prefix (``meshops`` by default; tests use their own):
``{p}:run:{id}`` hash ``{seq, data, plan, hlen, waves, s0, s1, …}`` (below) ·
``{p}:run:{id}:history`` list of the run's events (JSON, oldest first) ·
``{p}:run:{id}:samples:{i}`` list of wave ``i``'s gate samples (JSON, oldest first) ·
``{p}:runs`` zset by creation time ·
``{p}:active`` set of run ids · ``{p}:lease:{cluster}`` the id of the run acting on it ·
``{p}:lock:{id}`` the run's step lock · ``{p}:slack:{id}`` hash of the run's Slack messages ·
``{p}:unsynced`` zset of runs Slack has not caught up with · ``{p}:decisions`` list of
decisions taken while their run was busy (JSON), applied by the sweep.

A run is stored split, so that a tick writes what changed rather than the whole run (at
2,000 namespaces a run ends near 1.2 MB, nearly all of it history and gate samples): the
hash's ``data`` is the run's JSON without ``history`` and without each wave's ``samples``
and ``namespaces``; ``plan`` is the waves' namespaces (a JSON list of lists), written only
when they change (the plan, a re-plan), so that what every tick rewrites stays the same
size whatever the number of namespaces (at 2,000 a plan is ~30 kB); ``hlen`` is the length
of the history list, ``s<i>`` that of wave ``i``'s samples list
(absent: empty) and ``waves`` the number of waves whose counts the hash holds. History
only grows, so a save pushes the new events; a wave's samples grow too, except that a
restarted bake starts them again from empty (:mod:`workflows.waves`): a list shorter than
stored is replaced. Every count bounds its list's reads, so a reader never sees items a
later save pushed.

A save is a Lua script: it writes only if the stored ``seq`` (and the counts its writes
were computed from) are the ones the caller read, and releases the lease when the run has
ended, atomically. A hash without ``hlen`` is a run stored whole, before the split (its
history and samples inside ``data``): it loads as it is, and its next save splits it; one
without ``plan`` holds its namespaces in ``data`` and loads so too. Workers from before the
split (or the ``plan``) read only ``data``: stop them before these start, or they see a
split run without its history and samples (or its waves without namespaces). The workers'
deployment does (``deploy/kubernetes/worker.yaml``: ``strategy: Recreate``); the bot, which
reads and saves runs for commands and clicks too, is rolled pod by pod, so while a rollout
that changes the stored form is under way an old bot pod may fail on a run a new worker
saved (the same click or command works once that pod is replaced).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import BaseModel, TypeAdapter
from redis.exceptions import RedisError
from redis.typing import EncodableT

from workers.store.connect import redis_client
from workers.store.errors import translate_redis_error
from workers.store.lock import LOCK_TTL_S, RenewedLock
from workflows.errors import ClusterBusy, RunNotFound, StaleRun, TemporaryError
from workflows.model import Event, GateSample, Run

# Drop a run from the unsynced set only if its history has not grown past what the sync
# showed: a sync that read the run just before a tick saved a new line must not clear the
# mark that tick set (the line would never reach Slack). KEYS: unsynced zset, run hash;
# ARGV: run id, history lines shown.
_MARK_SYNCED = """
local hlen = redis.call('HGET', KEYS[2], 'hlen')
if hlen and tonumber(hlen) > tonumber(ARGV[2]) then return 0 end
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

# RPUSH ARGV[first .. first + n - 1] onto key, a thousand at a time (Lua's unpack has a
# stack limit): the items of a list both scripts write.
_PUSH = """
local function push(key, first, n)
  local i = 0
  while i < n do
    local j = math.min(i + 1000, n)
    redis.call('RPUSH', key, unpack(ARGV, first + i, first + j - 1))
    i = j
  end
end
"""

# KEYS: the run's hash, {p}:active, the cluster's lease, {p}:unsynced, the lists written
# (one per list header), the lists dropped (waves the run no longer has).
# ARGV: data, expected seq, new seq, terminal (1|0), run id, stored ``waves`` ('' absent),
# new ``waves``, number of lists written, number of lists dropped, unsynced since ('' not
# marked: the mark is part of the save, so no crash can leave new lines unmarked), plan
# ('' unchanged: not written); then per list written
# five headers: its count field, its stored count ('' absent), its new count, a (append) or
# r (replace), its number of items; then the dropped lists' count fields; then the items.
_SAVE = _PUSH + """
local h = KEYS[1]
local seq = redis.call('HGET', h, 'seq')
if not seq then return -1 end
if tonumber(seq) ~= tonumber(ARGV[2]) then return 0 end
local function holds(field, want)
  local got = redis.call('HGET', h, field)
  if want == '' then return got == false end
  return got ~= false and tonumber(got) == tonumber(want)
end
local nlists, ndropped = tonumber(ARGV[8]), tonumber(ARGV[9])
local head = 12
if not holds('waves', ARGV[6]) then return 0 end
for l = 0, nlists - 1 do
  if not holds(ARGV[head + 5 * l], ARGV[head + 5 * l + 1]) then return 0 end
end
redis.call('HSET', h, 'seq', ARGV[3], 'data', ARGV[1], 'waves', ARGV[7])
if ARGV[11] ~= '' then redis.call('HSET', h, 'plan', ARGV[11]) end
local item = head + 5 * nlists + ndropped
for l = 0, nlists - 1 do
  local a = head + 5 * l
  local key, n = KEYS[4 + l + 1], tonumber(ARGV[a + 4])
  if ARGV[a + 3] == 'r' then redis.call('DEL', key) end
  push(key, item, n)
  item = item + n
  redis.call('HSET', h, ARGV[a], ARGV[a + 2])
end
for d = 0, ndropped - 1 do
  redis.call('DEL', KEYS[4 + nlists + d + 1])
  redis.call('HDEL', h, ARGV[head + 5 * nlists + d])
end
if ARGV[4] == '1' then
  redis.call('SREM', KEYS[2], ARGV[5])
  if redis.call('GET', KEYS[3]) == ARGV[5] then redis.call('DEL', KEYS[3]) end
end
if ARGV[10] ~= '' then redis.call('ZADD', KEYS[4], 'NX', ARGV[10], ARGV[5]) end
return 1
"""

# A new run in one round trip: the cluster's lease first, and nothing else when another run
# holds it. KEYS: the lease, the run's hash, {p}:runs, {p}:active, {p}:unsynced, then its
# lists. ARGV: run id, created_at, unsynced since ('' not marked), the number of hash
# field/value pairs, the pairs; then per list its number of items; then the items.
# Returns false when created, else the lease's holder.
_CREATE = _PUSH + """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') == false then
  return redis.call('GET', KEYS[1]) or '?'
end
local nfields = tonumber(ARGV[4])
local head = 5 + 2 * nfields
redis.call('HSET', KEYS[2], unpack(ARGV, 5, head - 1))
local nlists = #KEYS - 5
local item = head + nlists
for l = 1, nlists do
  local key, n = KEYS[5 + l], tonumber(ARGV[head + l - 1])
  redis.call('DEL', key)
  push(key, item, n)
  item = item + n
end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[5], 'NX', ARGV[3], ARGV[1]) end
return false
"""

#: the run's JSON in the hash: what a tick rewrites (history and samples are lists)
_DATA_EXCLUDE: dict[str, Any] = {"history": True,
                                 "waves": {"__all__": {"samples", "namespaces"}}}


def _plan(run: Run) -> str:
    """The hash's ``plan``: each wave's namespaces, as JSON (module docstring)."""
    return json.dumps([w.namespaces for w in run.waves], separators=(",", ":"))


def _load(stored: Mapping[str, Any]) -> Run:
    """The run of a hash's fields, without its lists: ``data``, with each wave's
    namespaces from ``plan`` (absent: in ``data``, as stored before it)."""
    if "plan" not in stored:
        return Run.model_validate_json(stored["data"])
    raw = json.loads(stored["data"])
    for wave, names in zip(raw.get("waves") or [], json.loads(stored["plan"]), strict=True):
        wave["namespaces"] = names
    return Run.model_validate(raw)
_HISTORY: TypeAdapter[list[Event]] = TypeAdapter(list[Event])
_SAMPLES: TypeAdapter[list[GateSample]] = TypeAdapter(list[GateSample])
#: reads of a run whose hash changed between its two round trips, before giving up
_READ_ATTEMPTS = 5


@dataclass(frozen=True)
class _ListWrite:
    """What a save does to one list: push ``items`` (JSON texts), after emptying the list
    when ``replace``; ``stored`` is the count it was computed from (None: field absent)."""

    key: str
    field: str
    stored: int | None
    count: int
    replace: bool
    items: list[str]


def _text(value: Any) -> str:
    """A Redis reply as text: the client decodes replies (``decode_responses=True``), but a
    client that does not hands us bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _texts(values: Iterable[Any]) -> list[str]:
    return [_text(v) for v in values]


def _count(value: Any) -> int | None:
    return None if value is None else int(_text(value))


def _json_list(items: Sequence[Any]) -> str:
    return "[" + ",".join(_text(i) for i in items) + "]"


def _list_write(key: str, field: str, stored: int | None,
                items: Sequence[BaseModel], offset: int = 0) -> _ListWrite | None:
    """The write that takes a list holding ``stored`` items to ``items``; None when none is
    needed. Lists only grow, so the stored items are ``items``' first ``stored`` ones,
    unless ``items`` is shorter (a bake restarted: its samples start again). ``offset``:
    ``items`` are the list's items from that index on (a read of the recent ones only)."""
    if offset:
        if stored is None or offset + len(items) < stored:
            raise ValueError(f"{key}: a list read from item {offset} on cannot be shortened "
                             "or replaced; read the run whole to do that")
        if offset + len(items) == stored:
            return None
        return _ListWrite(key, field, stored, offset + len(items), False,
                          [i.model_dump_json() for i in items[stored - offset:]])
    if stored is None or len(items) < stored:
        if not items and stored is None:
            return None
        return _ListWrite(key, field, stored, len(items), True,
                          [i.model_dump_json() for i in items])
    if len(items) == stored:
        return None
    return _ListWrite(key, field, stored, len(items), False,
                      [i.model_dump_json() for i in items[stored:]])


@contextmanager
def _redis(what: str) -> Iterator[None]:
    """Redis' errors inside as :class:`TemporaryError` saying what could not be done."""
    try:
        yield
    except RedisError as exc:
        raise translate_redis_error(exc, what) from exc


class RedisRunStore:
    """Implements :class:`workflows.ports.RunStore`."""

    def __init__(self, client: redis.Redis, prefix: str = "meshops"):
        self.r = client
        self.p = prefix
        self._save = self.r.register_script(_SAVE)
        self._mark_synced = self.r.register_script(_MARK_SYNCED)
        self._create = self.r.register_script(_CREATE)

    @classmethod
    def from_url(cls, url: str, prefix: str = "meshops") -> RedisRunStore:
        """The store on the Redis at ``url`` (redis://, rediss:// or sentinel://:
        :mod:`workers.store.connect`)."""
        return cls(redis_client(url), prefix)

    def key(self, *parts: str) -> str:
        return ":".join((self.p, *parts))

    def _history_key(self, run_id: str) -> str:
        return self.key("run", run_id, "history")

    def _samples_key(self, run_id: str, wave: int) -> str:
        return self.key("run", run_id, "samples", str(wave))

    def create(self, run: Run, unsynced_at: float | None = None) -> None:
        """Store a new run and take its cluster's lease, in one round trip (a script: the
        bot does this before it answers Slack). ``unsynced_at``: also mark it unsynced
        (:meth:`mark_unsynced`) from then (Unix s).

        Raises:
            ClusterBusy: another run holds the cluster's lease (nothing is stored).
            TemporaryError: Redis did not answer.
        """
        fields: list[EncodableT] = [
            "seq", run.seq, "data", run.model_dump_json(exclude=_DATA_EXCLUDE),
            "plan", _plan(run), "hlen", len(run.history), "waves", len(run.waves)]
        lists: dict[str, Sequence[BaseModel]] = {self._history_key(run.id): run.history}
        for i, wave in enumerate(run.waves):
            fields += [f"s{i}", len(wave.samples)]
            lists[self._samples_key(run.id, i)] = wave.samples
        keys = [self.key("lease", run.cluster), self.key("run", run.id), self.key("runs"),
                self.key("active"), self.key("unsynced"), *lists]
        args: list[EncodableT] = [run.id, run.created_at,
                                  "" if unsynced_at is None else unsynced_at,
                                  len(fields) // 2, *fields,
                                  *(len(items) for items in lists.values())]
        args += [i.model_dump_json() for items in lists.values() for i in items]
        try:
            holder = self._create(keys=keys, args=args)
        except RedisError as exc:
            raise translate_redis_error(exc, f"storing run {run.id}") from exc
        if holder is not None:
            raise ClusterBusy(run.cluster, _text(holder))

    def get(self, run_id: str, recent: int | None = None,
            history_from: int | None = None, samples_from: int | None = None) -> Run:
        """The run as last saved: its hash, then its lists up to the hash's counts, read
        again until the hash's ``seq`` held over both round trips.

        ``recent``: read only what a step works on (a tick, a decision): the last ``recent``
        history events, and the samples of the current wave and later ones only (earlier
        waves' are empty in the run returned). Its cost then stays the same however long
        the run has gone on (at 2,000 namespaces a whole run is megabytes); ``recent=0``
        reads a summary: the fields, no history and no samples at all. The run says
        what was left out (``Run.read_from``, carried through ``evolve``): :meth:`save`
        appends after it; a save that would shorten a list read so raises ``ValueError``.

        ``history_from``: the history from that event on instead of the last ``recent``
        (a Slack sync: from the first line not yet in the thread); the samples are still
        as ``recent`` says.

        ``samples_from``: the samples of that wave and later ones instead of as ``recent``
        says (a Slack sync sharing a wave's chart: that wave's samples, not the run's).

        Raises:
            RunNotFound: no such run.
            TemporaryError: Redis did not answer, or the run kept changing while read.
        """
        key = self.key("run", run_id)
        try:
            for _ in range(_READ_ATTEMPTS):
                stored = {_text(k): v for k, v in self.r.hgetall(key).items()}
                if "data" not in stored:
                    raise RunNotFound(run_id)
                run = _load(stored)
                if "hlen" not in stored:  # stored whole, before the split
                    return run
                # (list key, first index read, count stored)
                hlen = _count(stored["hlen"]) or 0
                if history_from is not None:
                    first_event = min(max(0, history_from), hlen)
                else:
                    first_event = 0 if recent is None else max(0, hlen - recent)
                lists = [(self._history_key(run_id), first_event, hlen)]
                for i in range(len(run.waves)):
                    count = _count(stored.get(f"s{i}")) or 0
                    # a tick reads the samples of the current wave and later ones; a
                    # summary (recent=0) none
                    if samples_from is not None:
                        first = count if i < samples_from else 0
                    else:
                        first = (count if recent is not None
                                 and (recent == 0 or i < run.wave_index) else 0)
                    lists.append((self._samples_key(run_id, i), first, count))
                pipe = self.r.pipeline()
                pipe.hget(key, "seq")
                for list_key, first, count in lists:
                    if count > first:
                        pipe.lrange(list_key, first, count - 1)
                seq, *values = pipe.execute()
                if seq is None:
                    raise RunNotFound(run_id)
                if _text(seq) == _text(stored["seq"]):
                    whole = self._assemble(run, [c - f for _, f, c in lists], values)
                    offsets = tuple(first for _, first, _ in lists)
                    # beside the fields, not as pydantic private attributes: a run read
                    # equals the run saved (pydantic compares those); evolve copies both
                    if any(offsets):  # what a save of it must leave as it is
                        object.__setattr__(whole, "_read_from", offsets)
                    del stored["data"]  # the rest is what a save of it starts from
                    object.__setattr__(whole, "_stored", stored)
                    return whole
        except RedisError as exc:
            raise translate_redis_error(exc, f"reading run {run_id}") from exc
        raise TemporaryError(f"Run {run_id} kept changing while it was read; try again.")

    @staticmethod
    def _assemble(run: Run, counts: list[int], values: list[Any]) -> Run:
        """``run`` (read without its lists) with its history and samples: ``values`` are
        the lists' items, for each of ``counts`` that is not 0 (history first)."""
        read = iter(values)
        history = _HISTORY.validate_json(_json_list(next(read))) if counts[0] else []
        waves = [wave.evolve(samples=_SAMPLES.validate_json(_json_list(next(read))))
                 if count else wave for wave, count in zip(run.waves, counts[1:], strict=True)]
        return run.evolve(history=history, waves=waves)  # type: ignore[no-any-return]

    def save(self, run: Run, expected_seq: int, unsynced_at: float | None = None) -> Run:
        """Store ``run`` as ``seq`` ``expected_seq + 1`` if the stored run is still at
        ``expected_seq``; returns the run as stored. Writes the hash's ``data`` and the
        lists' new items only (module docstring). ``unsynced_at``: also mark the run
        unsynced from then (:meth:`mark_unsynced`), in the same script.

        Raises:
            RunNotFound: no such run.
            StaleRun: someone saved the run since ``expected_seq``.
            TemporaryError: Redis did not answer.
        """
        new = run.evolve(seq=expected_seq + 1)
        key = self.key("run", run.id)
        waves = len(new.waves)
        fields = ["seq", "hlen", "waves", *(f"s{i}" for i in range(waves))]
        read = run.stored_fields
        plan = _plan(new)
        if read is not None and _count(read.get("seq")) == expected_seq:
            # what the read of this run saw at that seq: the counts are the seq's (only a
            # save changes them, and it moves the seq on), and the script checks them all
            seq, hlen, stored_waves, *counts = (read.get(f) for f in fields)
            if read.get("plan") is not None and _text(read["plan"]) == plan:
                plan = ""  # the seq's plan: not written again
        else:
            try:
                seq, hlen, stored_waves, *counts = self.r.hmget(key, fields)
            except RedisError as exc:
                raise translate_redis_error(exc, f"saving run {run.id}") from exc
        if seq is None:
            raise RunNotFound(run.id)
        if int(_text(seq)) != expected_seq:
            raise StaleRun(f"run {run.id} changed since seq {expected_seq}")
        split = hlen is not None  # else stored whole: every list is written in full
        # a run read recent-only (get(recent=…)) holds its lists from these indexes on
        offset = [*run.read_from, *[0] * (1 + waves - len(run.read_from))]
        if _count(hlen) is not None and offset[0] + len(new.history) < (_count(hlen) or 0):
            raise ValueError(f"run {run.id}: its history only grows; this save would drop "
                             "events (a run read in part saved as if whole?)")
        writes = [_list_write(self._history_key(run.id), "hlen", _count(hlen), new.history,
                              offset[0])]
        writes += [_list_write(self._samples_key(run.id, i), f"s{i}",
                               _count(counts[i]) if split else None, wave.samples,
                               offset[1 + i])
                   for i, wave in enumerate(new.waves)]
        lists = [w for w in writes if w is not None]
        if not split and not any(w.field == "hlen" for w in lists):
            lists.insert(0, _ListWrite(self._history_key(run.id), "hlen", None, 0, True, []))
        dropped = range(waves, _count(stored_waves) or 0)
        headers: list[EncodableT] = []
        for w in lists:
            headers += [w.field, "" if w.stored is None else w.stored, w.count,
                        "r" if w.replace else "a", len(w.items)]
        try:
            ok = self._save(
                keys=[key, self.key("active"), self.key("lease", run.cluster),
                      self.key("unsynced"), *(w.key for w in lists),
                      *(self._samples_key(run.id, i) for i in dropped)],
                args=[new.model_dump_json(exclude=_DATA_EXCLUDE), expected_seq,
                      expected_seq + 1, "1" if run.phase.terminal else "0", run.id,
                      "" if stored_waves is None else _text(stored_waves), waves,
                      len(lists), len(dropped), "" if unsynced_at is None else unsynced_at,
                      plan, *headers, *(f"s{i}" for i in dropped),
                      *(item for w in lists for item in w.items)])
        except RedisError as exc:
            raise translate_redis_error(exc, f"saving run {run.id}") from exc
        if ok == -1:
            raise RunNotFound(run.id)
        if ok == 0:
            raise StaleRun(f"run {run.id} changed since seq {expected_seq}")
        return new  # type: ignore[no-any-return]

    def list_runs(self, cluster: str | None = None, active_only: bool = False,
                  limit: int = 50) -> list[Run]:
        """The runs (``active_only``: every active one; else the ``limit`` newest), of
        ``cluster`` if given, newest first, each read as a summary: its fields without its
        history or gate samples (``get(recent=0)``; ``Run.read_from`` says so). Listing is
        the sweep's every few seconds and the metrics' every scrape: a whole run of 2,000
        namespaces is megabytes, and none of them reads more than the fields."""
        if active_only:
            ids = sorted(_texts(self.r.smembers(self.key("active"))))
        else:
            ids = _texts(self.r.zrevrange(self.key("runs"), 0, limit - 1))
        runs = []
        for run_id in ids:
            try:
                run = self.get(run_id, recent=0)
            except RunNotFound:
                continue
            if cluster is None or run.cluster == cluster:
                runs.append(run)
        return sorted(runs, key=lambda r: r.created_at, reverse=True)

    def run_ids_since(self, since: float) -> list[str]:
        """Ids of the runs created at or after ``since`` (Unix s), oldest first."""
        try:
            return _texts(self.r.zrangebyscore(self.key("runs"), since, "+inf"))
        except RedisError as exc:
            raise translate_redis_error(exc, "listing runs") from exc

    def active_run(self, cluster: str) -> str | None:
        holder = self.r.get(self.key("lease", cluster))
        return None if holder is None else _text(holder)

    def lock(self, run_id: str, timeout: float = LOCK_TTL_S,
             blocking_timeout: float | None = None, renew: bool = True) -> RenewedLock:
        """The run's step lock: one tick or decision at a time; renewed while held (unless
        ``renew`` is False, for a holder done well within ``timeout``), so it is free again
        ``timeout`` seconds after its holder died (:mod:`workers.store.lock`)."""
        return RenewedLock(self.r, self.key("lock", run_id), blocking_timeout, timeout,
                           renew=renew)

    def queue_decision(self, entry: str) -> None:
        """Append a decision (JSON) to ``{p}:decisions``; TemporaryError if Redis is away."""
        try:
            self.r.rpush(self.key("decisions"), entry)
        except RedisError as exc:
            raise translate_redis_error(exc, "recording a decision") from exc

    def queued_decisions(self) -> list[str]:
        """The queued decisions, oldest first."""
        return [_text(v) for v in self.r.lrange(self.key("decisions"), 0, -1)]

    def drop_decision(self, entry: str) -> None:
        with _redis("dropping a decision applied"):
            self.r.lrem(self.key("decisions"), 1, entry)

    def mark_unsynced(self, run_id: str, at: float) -> None:
        """Slack has not yet shown everything of this run (kept until a sync completes)."""
        with _redis(f"marking run {run_id} for Slack"):
            self.r.zadd(self.key("unsynced"), {run_id: at}, nx=True)

    def mark_synced(self, run_id: str, shown: int | None = None) -> bool:
        """Slack shows the run: drop it from the unsynced set, unless its stored history
        has grown past the ``shown`` lines the sync read (it stays for the sweep). Returns
        True when dropped; ``shown`` None drops it whatever the history."""
        with _redis(f"marking run {run_id} shown in Slack"):
            if shown is None:
                return bool(self.r.zrem(self.key("unsynced"), run_id))
            return bool(self._mark_synced(
                keys=[self.key("unsynced"), self.key("run", run_id)], args=[run_id, shown]))

    def is_unsynced(self, run_id: str) -> bool:
        """Whether Slack has yet to show something of the run (read only, unlike
        :meth:`unsynced`)."""
        with _redis(f"reading run {run_id}'s Slack state"):
            return self.r.zscore(self.key("unsynced"), run_id) is not None

    def unsynced(self, older_than: float) -> list[str]:
        """Runs whose Slack sync has been pending since before ``older_than``; their score is
        moved to now so each is retried at most once per sweep interval."""
        with _redis("listing runs Slack has yet to show"):
            ids = _texts(self.r.zrangebyscore(self.key("unsynced"), "-inf", older_than))
            if ids:
                self.r.zadd(self.key("unsynced"), {i: older_than for i in ids}, xx=True)
        return ids

    def slack_state(self, run_id: str) -> dict[str, str]:
        """What Slack shows of the run (root message, lines posted, charts, …).

        Raises:
            TemporaryError: Redis did not answer (so do the other Slack-state calls).
        """
        with _redis(f"reading run {run_id}'s Slack state"):
            raw = self.r.hgetall(self.key("slack", run_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    def set_slack_state(self, run_id: str, **fields: str | int) -> None:
        mapping: dict[EncodableT, EncodableT] = {k: v for k, v in fields.items()}
        with _redis(f"recording run {run_id}'s Slack state"):
            self.r.hset(self.key("slack", run_id), mapping=mapping)

    def clear_slack_error(self, run_id: str) -> None:
        """Slack took the run's messages again: forget the recorded refusal."""
        with _redis(f"recording run {run_id}'s Slack state"):
            self.r.hdel(self.key("slack", run_id), "error", "error_at")
