"""The one translation of redis-py's exceptions into meshops'.

Every ``RedisError`` the run store meets (``ConnectionError``, ``TimeoutError``, a server
busy loading its data, a failover in progress) is temporary: the data is in Redis and will
be there when it answers again; nothing is lost by waiting. Redis sends no Retry-After, so
``delay_s`` is 0 and the caller's retry policy decides.
"""

from __future__ import annotations

from redis.exceptions import RedisError

from workflows.errors import TemporaryError


def translate_redis_error(exc: RedisError, what: str) -> TemporaryError:
    """``exc`` as a :class:`TemporaryError` saying what could not be done (``what``:
    "saving run r-…")."""
    return TemporaryError(f"Redis unavailable while {what}: {type(exc).__name__}: {exc}")
