"""``RedisRunStore``: durable runs in Redis with compare-and-set and one lease per cluster.

Keys under a prefix (``meshops`` by default; tests use their own):
``{p}:run:{id}`` hash ``{seq, data}`` · ``{p}:runs`` zset by creation time ·
``{p}:active`` set of run ids · ``{p}:lease:{cluster}`` the id of the run acting on it ·
``{p}:lock:{id}`` the run's step lock · ``{p}:slack:{id}`` hash of the run's Slack messages ·
``{p}:unsynced`` zset of runs Slack has not caught up with · ``{p}:decisions`` list of
decisions taken while their run was busy (JSON), applied by the sweep.
A save is a Lua script: it writes only if the stored ``seq`` is the one the caller read,
and releases the lease when the run has ended, atomically.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis
from redis.exceptions import RedisError
from redis.typing import EncodableT

from workers.store.connect import redis_client
from workers.store.errors import translate_redis_error
from workers.store.lock import LOCK_TTL_S, RenewedLock
from workflows.errors import ClusterBusy, RunNotFound, StaleRun
from workflows.model import Run

_SAVE = """
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return -1 end
if tonumber(seq) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[3], 'data', ARGV[1])
if ARGV[4] == '1' then
  redis.call('SREM', KEYS[2], ARGV[5])
  if redis.call('GET', KEYS[3]) == ARGV[5] then redis.call('DEL', KEYS[3]) end
end
return 1
"""


def _text(value: Any) -> str:
    """A Redis reply as text: the client decodes replies (``decode_responses=True``), but a
    client that does not hands us bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _texts(values: Iterable[Any]) -> list[str]:
    return [_text(v) for v in values]


class RedisRunStore:
    """Implements :class:`workflows.ports.RunStore`."""

    def __init__(self, client: redis.Redis, prefix: str = "meshops"):
        self.r = client
        self.p = prefix
        self._save = self.r.register_script(_SAVE)

    @classmethod
    def from_url(cls, url: str, prefix: str = "meshops") -> RedisRunStore:
        """The store on the Redis at ``url`` (redis://, rediss:// or sentinel://:
        :mod:`workers.store.connect`)."""
        return cls(redis_client(url), prefix)

    def key(self, *parts: str) -> str:
        return ":".join((self.p, *parts))

    def create(self, run: Run) -> None:
        try:
            lease = self.key("lease", run.cluster)
            if not self.r.set(lease, run.id, nx=True):
                holder = self.r.get(lease)
                raise ClusterBusy(run.cluster, "?" if holder is None else _text(holder))
            pipe = self.r.pipeline()
            pipe.hset(self.key("run", run.id), mapping={"seq": run.seq,
                                                        "data": run.model_dump_json()})
            pipe.zadd(self.key("runs"), {run.id: run.created_at})
            pipe.sadd(self.key("active"), run.id)
            pipe.execute()
        except RedisError as exc:
            raise translate_redis_error(exc, f"storing run {run.id}") from exc

    def get(self, run_id: str) -> Run:
        try:
            data = self.r.hget(self.key("run", run_id), "data")
        except RedisError as exc:
            raise translate_redis_error(exc, f"reading run {run_id}") from exc
        if data is None:
            raise RunNotFound(run_id)
        return Run.model_validate_json(data)

    def save(self, run: Run, expected_seq: int) -> Run:
        new = run.evolve(seq=expected_seq + 1)
        try:
            ok = self._save(
                keys=[self.key("run", run.id), self.key("active"),
                      self.key("lease", run.cluster)],
                args=[new.model_dump_json(), expected_seq, expected_seq + 1,
                      "1" if run.phase.terminal else "0", run.id])
        except RedisError as exc:
            raise translate_redis_error(exc, f"saving run {run.id}") from exc
        if ok == -1:
            raise RunNotFound(run.id)
        if ok == 0:
            raise StaleRun(f"run {run.id} changed since seq {expected_seq}")
        return new  # type: ignore[no-any-return]

    def list_runs(self, cluster: str | None = None, active_only: bool = False,
                  limit: int = 50) -> list[Run]:
        if active_only:
            ids = sorted(_texts(self.r.smembers(self.key("active"))))
        else:
            ids = _texts(self.r.zrevrange(self.key("runs"), 0, limit - 1))
        runs = []
        for run_id in ids:
            try:
                run = self.get(run_id)
            except RunNotFound:
                continue
            if cluster is None or run.cluster == cluster:
                runs.append(run)
        return sorted(runs, key=lambda r: r.created_at, reverse=True)

    def active_run(self, cluster: str) -> str | None:
        holder = self.r.get(self.key("lease", cluster))
        return None if holder is None else _text(holder)

    def lock(self, run_id: str, timeout: float = LOCK_TTL_S,
             blocking_timeout: float | None = None) -> RenewedLock:
        """The run's step lock: one tick or decision at a time; renewed while held, so it
        is free again ``timeout`` seconds after its holder died (:mod:`workers.store.lock`)."""
        return RenewedLock(self.r, self.key("lock", run_id), blocking_timeout, timeout)

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
        self.r.lrem(self.key("decisions"), 1, entry)

    def mark_unsynced(self, run_id: str, at: float) -> None:
        """Slack has not yet shown everything of this run (kept until a sync completes)."""
        self.r.zadd(self.key("unsynced"), {run_id: at}, nx=True)

    def mark_synced(self, run_id: str) -> None:
        self.r.zrem(self.key("unsynced"), run_id)

    def unsynced(self, older_than: float) -> list[str]:
        """Runs whose Slack sync has been pending since before ``older_than``; their score is
        moved to now so each is retried at most once per sweep interval."""
        ids = _texts(self.r.zrangebyscore(self.key("unsynced"), "-inf", older_than))
        if ids:
            self.r.zadd(self.key("unsynced"), {i: older_than for i in ids}, xx=True)
        return ids

    def slack_state(self, run_id: str) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in self.r.hgetall(self.key("slack", run_id)).items()}

    def set_slack_state(self, run_id: str, **fields: str | int) -> None:
        mapping: dict[EncodableT, EncodableT] = {k: v for k, v in fields.items()}
        self.r.hset(self.key("slack", run_id), mapping=mapping)

    def clear_slack_error(self, run_id: str) -> None:
        """Slack took the run's messages again: forget the recorded refusal."""
        self.r.hdel(self.key("slack", run_id), "error", "error_at")
