"""Redis as teams run it on Azure: one ``REDIS_URL`` for the run store and the Celery broker.

- ``redis://[:password@]host:6379/0`` — plain (a Redis next to meshops).
- ``rediss://[:password@]host:6380/0[?ssl_ca_certs=/path/ca.pem]`` — TLS, as Azure Cache
  for Redis (port 6380) and Azure Managed Redis (port 10000) require; the server's
  certificate is always verified (against the system's CAs, or ``ssl_ca_certs``).
- ``sentinel://[:password@]host1:26379;sentinel://host2:26379/0[?master_name=mymaster]`` —
  Redis Sentinel: the client asks the sentinels for the current master (and again after a
  failover). This is kombu's form for the broker (Celery "Using Redis: Sentinel"), read the
  same way for the store with redis-py's :class:`redis.sentinel.Sentinel`. ``master_name``
  defaults to ``mymaster``; the password is the master's.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from redis.sentinel import Sentinel

from workflows.errors import ConfigError

DEFAULT_MASTER = "mymaster"


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is, parsed from a ``REDIS_URL``."""

    url: str  # without the query string
    scheme: str  # redis | rediss | sentinel
    db: int = 0
    password: str | None = None
    sentinels: list[tuple[str, int]] = field(default_factory=list)
    master_name: str = DEFAULT_MASTER
    ca_certs: str | None = None


def parse(url: str) -> RedisTarget:
    """Parse ``url``; ``ConfigError`` saying what a valid one looks like."""
    base, _, query = url.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    scheme = base.split("://", 1)[0] if "://" in base else ""
    if scheme not in ("redis", "rediss", "sentinel"):
        raise ConfigError(f"REDIS_URL {url!r}: expected redis://host:6379/0, "
                          "rediss://host:6380/0 (TLS) or sentinel://host:26379;sentinel://"
                          "host2:26379/0?master_name=mymaster")
    parts = [urlsplit(p) for p in base.split(";")]
    try:
        db = int((parts[-1].path or "/0").strip("/") or 0)
        sentinels = [(p.hostname or "127.0.0.1", p.port or 26379) for p in parts] \
            if scheme == "sentinel" else []
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL {url!r}: {exc}") from exc
    if scheme != "sentinel" and len(parts) > 1:
        raise ConfigError(f"REDIS_URL {url!r}: several hosts need sentinel://")
    return RedisTarget(url=base, scheme=scheme, db=db, password=parts[0].password,
                       sentinels=sentinels,
                       master_name=params.get("master_name", DEFAULT_MASTER),
                       ca_certs=params.get("ssl_ca_certs"))


def redis_client(url: str, decode_responses: bool = True) -> redis.Redis:
    """A redis-py client for ``url`` (any of the forms above)."""
    target = parse(url)
    if target.scheme == "sentinel":
        # redis-py types Sentinel from 8.2 on, not before: called as Any, so that mypy
        # passes with either (a type: ignore would be unused with one of them)
        make_sentinel: Any = Sentinel
        sentinel = make_sentinel(target.sentinels, socket_timeout=5)
        client: redis.Redis = sentinel.master_for(
            target.master_name, db=target.db, password=target.password,
            decode_responses=decode_responses, socket_timeout=10)
        return client
    kwargs: dict[str, Any] = {"decode_responses": decode_responses,
                              "socket_connect_timeout": 5, "socket_timeout": 10}
    if target.scheme == "rediss":
        kwargs["ssl_cert_reqs"] = "required"
        if target.ca_certs:
            kwargs["ssl_ca_certs"] = target.ca_certs
    return redis.Redis.from_url(target.url, **kwargs)


def celery_broker(url: str, keyprefix: str) -> dict[str, Any]:
    """Celery settings for the broker at ``url``: the URL, kombu's transport (made to
    outlive a Redis restart, :mod:`workers.tasks.broker`), TLS and Sentinel options."""
    target = parse(url)
    options: dict[str, Any] = {"visibility_timeout": 600, "global_keyprefix": keyprefix}
    settings: dict[str, Any] = {"broker_url": target.url,
                                "broker_transport": "workers.tasks.broker:Transport"}
    if target.scheme == "sentinel":
        settings["broker_transport"] = "workers.tasks.broker:SentinelTransport"
        options["master_name"] = target.master_name
    if target.scheme == "rediss":
        use_ssl: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if target.ca_certs:
            use_ssl["ssl_ca_certs"] = target.ca_certs
        settings["broker_use_ssl"] = use_ssl
    settings["broker_transport_options"] = options
    return settings
