"""Structured key-value logs (structlog) for every process: ``event key=value ...``.

Values bound with ``structlog.contextvars`` (``run_id`` and ``cluster`` while a run's tick,
decision or Slack sync is handled: :mod:`workers.logcontext`) are on every line: merged into
meshops' own events, and appended to the lines of the libraries it calls (stdlib logging:
azure-core, the kubernetes client, Celery).
"""

from __future__ import annotations

import logging
import sys

import structlog

CONTEXT_KEYS = ("run_id", "cluster")


class RunContextFilter(logging.Filter):
    """Appends the bound ``run_id=… cluster=…`` to stdlib lines of other libraries."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("meshops") or getattr(record, "meshops_context", False):
            return True  # structlog's lines have them already; a record is changed once
        bound = structlog.contextvars.get_contextvars()
        # as structlog's KeyValueRenderer writes them: one grep finds both kinds of line
        extra = " ".join(f"{k}={bound[k]!r}" for k in CONTEXT_KEYS if k in bound)
        if extra:
            record.msg, record.args = f"{record.getMessage()} {extra}", None
            record.meshops_context = True
        return True


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RunContextFilter) for f in handler.filters):
            handler.addFilter(RunContextFilter())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
