"""Celery beat that says it is alive, and the check of it (``meshops probe beat``).

Beat has no HTTP server, and its schedule file (a shelve) is written only every few minutes,
so its liveness is stamped by :class:`HeartbeatScheduler` (``beat_scheduler`` in
:mod:`workers.tasks.app`), Celery's persistent scheduler plus, after every tick of beat's
loop (at least every 5 s: the sweep's interval):

- the file ``<schedule file>.alive`` is touched (its mtime is the tick's time): what
  :func:`check_beat` (``meshops probe beat``, beat's liveness probe) reads. Fresh means beat's
  loop is running and getting through its ticks, each of which sends the tasks that are due
  (the sweep that re-enqueues overdue runs and expires approval requests, the release
  watcher). It is a local file: a Redis outage alone does not fail it (beat's sends retry,
  then log, and the loop goes on), so the probe restarts a beat that hangs, not one waiting
  for Redis;
- ``{prefix}:beat:heartbeat`` in Redis is set to the tick's time (at most every 5 s; after
  a failure, tried again in 30 s): ``meshops_beat_last_tick_timestamp_seconds``, so an alert
  sees a beat that is not running at all (no pod, or one that cannot reach Redis).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import structlog
from celery.beat import PersistentScheduler
from redis.exceptions import RedisError

from workers.metrics import beat_key
from workers.store.connect import redis_client

log = structlog.get_logger("meshops.beat")

ALIVE_SUFFIX = ".alive"
REDIS_EVERY_S = 5.0
REDIS_RETRY_S = 30.0
DEFAULT_MAX_AGE_S = 60.0


def alive_path(schedule: Path | str) -> Path:
    """The file beat touches after every tick, beside its schedule file."""
    return Path(f"{schedule}{ALIVE_SUFFIX}")


def check_beat(schedule: Path, max_age_s: float = DEFAULT_MAX_AGE_S,
               now: float | None = None) -> tuple[bool, str]:
    """Whether beat with schedule file ``schedule`` ticked within ``max_age_s`` seconds.

    Returns:
        (ok, a sentence saying when it last ticked or why it is taken to be dead).
    """
    path = alive_path(schedule)
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return False, f"beat has not ticked yet: no {path}"
    if age > max_age_s:
        return False, f"beat last ticked {age:.0f} s ago (more than {max_age_s:g} s): {path}"
    return True, f"beat ticked {max(0.0, age):.0f} s ago"


class HeartbeatScheduler(PersistentScheduler):  # type: ignore[misc]  # Celery is untyped
    """Celery's ``PersistentScheduler`` stamping each tick (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        prefix = os.environ.get("MESHOPS_REDIS_PREFIX", "meshops")
        self._key = beat_key(prefix)
        self._redis: Any = None
        self._next_redis = 0.0

    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval: float = super().tick(*args, **kwargs)
        now = time.time()
        self._touch(now)
        if now >= self._next_redis:
            self._stamp(now)
        return interval

    def _touch(self, now: float) -> None:
        path = alive_path(self.schedule_filename)
        try:
            path.touch()
            os.utime(path, (now, now))
        except OSError as exc:
            log.warning("beat.alive_unwritable", path=str(path), error=str(exc))

    def _stamp(self, now: float) -> None:
        try:
            if self._redis is None:
                self._redis = redis_client(os.environ.get("REDIS_URL",
                                                          "redis://127.0.0.1:6379/0"))
                kwargs = self._redis.connection_pool.connection_kwargs
                kwargs["socket_timeout"] = kwargs["socket_connect_timeout"] = 2.0
            self._redis.set(self._key, f"{now:.3f}")
            self._next_redis = now + REDIS_EVERY_S
        except (RedisError, OSError) as exc:
            log.warning("beat.heartbeat_unavailable", error=str(exc))
            self._next_redis = now + REDIS_RETRY_S
