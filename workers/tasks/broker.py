"""The Celery broker transport: kombu's Redis transport, made to survive a Redis restart.

With kombu 5.7.0 (and every release since 3.0, kombu issues #582 and #970), a worker that
holds unacknowledged messages — meshops' workers always do: each run's next tick waits in
the worker as an ETA task — dies for good when Redis goes away: the consumer closes its
channel after the connection was lost, the channel restores its unacked messages through a
new client, and building that client reads ``transport.client``, which kombu has already
set to None (``Connection._do_close_transport``). ``AttributeError: 'NoneType' object has
no attribute 'hostname'`` in ``kombu/transport/redis.py _connparams`` is not a connection
error, so Celery logs "Unrecoverable error" and the process exits.

:class:`Channel` remembers the connection it was made for and builds that client from it.
Redis still being away then raises redis-py's ``ConnectionError``, a connection error kombu
ignores while closing; the unacked messages stay in Redis (with persistence) and come back
after the visibility timeout, and meanwhile beat's sweep re-enqueues every overdue run, so
nothing waits that long. Selected with ``broker_transport`` by
:func:`workers.store.connect.celery_broker` (``SentinelTransport`` for Redis Sentinel).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class _OutlivesItsTransport:
    """Connection parameters that outlive the transport's client (mixed into kombu's
    channels)."""

    connection: Any

    def _remember(self) -> None:
        self._made_for = self.connection.client  # the kombu Connection: URL, TLS, options

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        base: Any = super()
        transport = self.connection
        if transport.client is not None or self._made_for is None:
            return base._connparams(asynchronous)  # type: ignore[no-any-return]
        # closing after the broker went away: build the client from the connection this
        # channel was made for, then leave the transport as kombu left it
        transport.client = self._made_for
        try:
            return base._connparams(asynchronous)  # type: ignore[no-any-return]
        finally:
            transport.client = None


class Channel(_OutlivesItsTransport, kombu_redis.Channel):
    """A Redis channel whose connection parameters outlive its transport's client."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._remember()


class SentinelChannel(_OutlivesItsTransport, kombu_redis.SentinelChannel):
    """The same, for a master found through Redis Sentinel."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._remember()


class Transport(kombu_redis.Transport):
    """kombu's Redis transport (``redis://`` and ``rediss://``) with :class:`Channel`."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport (``sentinel://``) with :class:`SentinelChannel`."""

    Channel = SentinelChannel
