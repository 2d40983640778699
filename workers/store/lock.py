"""``RenewedLock``: a run's step lock that a dead holder frees within seconds.

A redis-py :class:`redis.lock.Lock` with a short time to live (:data:`LOCK_TTL_S`), renewed
by a daemon thread every third of it while held (``Lock.reacquire``, redis-py's documented
way to keep a lock for a holder still working). A process killed while holding it stops
renewing, so the lock is free again after at most ``LOCK_TTL_S`` seconds, not after the
longest step a worker might take. A holder that loses the lock anyway (paused longer than the
TTL) is harmless: every save is a compare-and-set on the run's ``seq``.
Redis errors are :class:`workflows.errors.TemporaryError` (:mod:`workers.store.errors`).
"""

from __future__ import annotations

import threading

import redis
from redis.exceptions import LockError, RedisError

from workers.store.errors import translate_redis_error

LOCK_TTL_S = 6.0  # seconds a lock outlives its last renewal


class RenewedLock:
    """Implements :class:`workflows.ports.RunLock` on one Redis key."""

    def __init__(self, r: redis.Redis, key: str, blocking_timeout: float | None = None,
                 ttl_s: float = LOCK_TTL_S, renew: bool = True):
        self.key, self.ttl_s, self.renew = key, ttl_s, renew
        self.blocking_timeout = blocking_timeout
        self._lock = r.lock(key, timeout=ttl_s, blocking=blocking_timeout is not None,
                            blocking_timeout=blocking_timeout, thread_local=False)
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self, blocking: bool | None = None) -> bool:
        """Take the lock (waiting up to ``blocking_timeout`` when blocking) and keep renewing
        it until :meth:`release`. Raises ``TemporaryError`` when Redis does not answer."""
        try:
            got = bool(self._lock.acquire(blocking=blocking))
        except RedisError as exc:
            raise translate_redis_error(exc, f"taking lock {self.key}") from exc
        if got and self.renew:
            self._stop.clear()
            self._renewer = threading.Thread(target=self._renew, name=f"renew {self.key}",
                                             daemon=True)
            self._renewer.start()
        return got

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self._lock.reacquire()
            except LockError:
                return  # lost it: the seq check protects a run, ``held`` tells the rest
            except RedisError:
                continue  # Redis away for a moment: tried again while the TTL lasts

    def held(self) -> bool:
        """Whether this lock is still ours (one round trip): a holder whose renewals failed
        past the TTL must not act as if it held it. False when Redis does not answer."""
        try:
            return bool(self._lock.owned())
        except RedisError:
            return False

    def release(self) -> None:
        """Stop renewing and free the lock; one that expired meanwhile raises ``LockError``
        (as redis-py's does), a Redis that does not answer ``TemporaryError`` (the lock then
        expires by itself within ``ttl_s``)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=1)
        try:
            self._lock.release()
        except LockError:
            raise
        except RedisError as exc:
            raise translate_redis_error(exc, f"releasing lock {self.key}") from exc
