"""The run's step lock (issue 11, item 4): short, renewed while held, so a holder that is
killed frees it within seconds; Redis away is a TemporaryError, never a raw redis error.
Against the real Redis, with keys under the test's own prefix."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import redis

from tests.conftest import REDIS_URL, ROOT
from workers.store.lock import RenewedLock
from workers.store.runs import RedisRunStore
from workflows.errors import TemporaryError


def test_a_holder_working_longer_than_the_ttl_keeps_the_lock(store: RedisRunStore) -> None:
    held = store.lock("r-0000000001", timeout=1.0)
    assert held.acquire(blocking=False)
    try:
        time.sleep(2.5)  # well past its time to live: renewed meanwhile
        other = store.lock("r-0000000001", timeout=1.0)
        assert not other.acquire(blocking=False)
    finally:
        held.release()
    assert store.lock("r-0000000001").acquire(blocking=False)


def test_a_killed_holder_frees_the_lock_within_its_ttl(store: RedisRunStore,
                                                       prefix: str) -> None:
    script = (
        "import sys, time\n"
        "from workers.store.runs import RedisRunStore\n"
        f"s = RedisRunStore.from_url({REDIS_URL!r}, {prefix!r})\n"
        "lock = s.lock('r-0000000002')\n"
        "assert lock.acquire(blocking=False)\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        time.sleep(1)
        assert not store.lock("r-0000000002").acquire(blocking=False)  # renewed: still held
        holder.kill()
        holder.wait(10)
        killed = time.monotonic()
        lock = store.lock("r-0000000002", blocking_timeout=15)
        assert lock.acquire()
        freed_after = time.monotonic() - killed
        lock.release()
        assert freed_after < 7.0, f"the dead holder's lock lasted {freed_after:.1f}s"
    finally:
        if holder.poll() is None:
            holder.kill()


def test_redis_away_is_a_temporary_error() -> None:
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    with pytest.raises(TemporaryError, match="Redis unavailable while taking lock"):
        RenewedLock(gone, "meshops-test:lock:r-x").acquire(blocking=False)


def test_a_holder_knows_when_its_lock_is_gone(store: RedisRunStore) -> None:
    """``held``: a holder whose lock expired (its renewals failed past the TTL) or was
    taken over must not act as if it held it."""
    key = store.key("lock", "held-test")
    lock = RenewedLock(store.r, key, ttl_s=30, renew=False)
    assert lock.acquire(blocking=False) and lock.held()
    store.r.delete(key)  # expired
    assert not lock.held()
    other = RenewedLock(store.r, key, ttl_s=30, renew=False)
    assert other.acquire(blocking=False)  # another worker's now
    assert not lock.held() and other.held()
    other.release()
