"""Log lines that say which run they are about: ``run_id`` and ``cluster`` on every line.

While a tick, a decision or a Slack sync of a run is handled, everything logged — by
meshops (structlog) and by the libraries it calls (stdlib ``logging``: azure-core, the
kubernetes client, Celery) — carries ``run_id=… cluster=…``. The values live in structlog's
context variables (``structlog.contextvars``), bound here and reset when the work ends, so
nothing leaks into the next task a process runs; :func:`meshops.logs.configure_logging`
merges them into every line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import Token
from typing import Any

from structlog.contextvars import bind_contextvars, reset_contextvars


class RunContext:
    """The log context of one run's handling: ``run_id`` now, ``cluster`` once known."""

    def __init__(self) -> None:
        self._tokens: list[dict[str, Token[Any]]] = []
        self._bound: dict[str, str] = {}

    def bind(self, **values: str) -> None:
        """Add ``values`` (e.g. ``cluster=…`` once the run is read) until the block ends;
        binding a key again to the same value does nothing."""
        new = {k: v for k, v in values.items() if self._bound.get(k) != v}
        if new:
            self._tokens.append(dict(bind_contextvars(**new)))
            self._bound.update(new)

    def reset(self) -> None:
        for tokens in reversed(self._tokens):
            reset_contextvars(**tokens)
        self._tokens.clear()
        self._bound.clear()


@contextmanager
def run_logging(run_id: str, cluster: str | None = None) -> Iterator[RunContext]:
    """Bind ``run_id`` (and ``cluster``) for the block; the yielded :class:`RunContext`
    binds more once known. Everything bound is reset to what it was before on exit."""
    ctx = RunContext()
    ctx.bind(run_id=run_id, **({"cluster": cluster} if cluster else {}))
    try:
        yield ctx
    finally:
        ctx.reset()
