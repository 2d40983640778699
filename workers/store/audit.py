"""The audit stream: every command, click, decision and step, in a Redis stream.

``{prefix}:audit`` holds one entry per event — who, what, when, run, cluster, outcome — and
outlives the runs (trimmed only beyond ``MAX_ENTRIES``, approximately). ``meshops audit``
prints it as JSON lines. Unlike a chat transcript it records refusals too: a click that was
not allowed is as much a fact as one that was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import redis
import structlog
from redis.typing import EncodableT

log = structlog.get_logger("meshops.audit")

MAX_ENTRIES = 1_000_000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AuditLog:
    """The audit stream of one deployment (``{prefix}:audit``)."""

    def __init__(self, client: redis.Redis, prefix: str = "meshops"):
        self.r = client
        self.key = f"{prefix}:audit"

    def record(self, kind: str, who: str, what: str, *, run: str | None = None,
               cluster: str | None = None, outcome: str = "ok", at: float | None = None,
               **data: Any) -> None:
        """Append one event. ``kind``: command | click | decision | step. Never raises:
        an audit outage is logged, and the action it describes still happens."""
        entry = {"at": f"{time.time() if at is None else at:.3f}", "kind": kind, "who": who,
                 "what": what, "run": run or "", "cluster": cluster or "", "outcome": outcome,
                 "data": json.dumps(data, default=str)}
        fields: dict[EncodableT, EncodableT] = {k: v for k, v in entry.items()}
        try:
            self.r.xadd(self.key, fields, maxlen=MAX_ENTRIES, approximate=True)
        except redis.RedisError as exc:
            log.error("audit.unavailable", error=str(exc), **{k: v for k, v in entry.items()
                                                                if k != "data"})

    def read(self, run: str | None = None, cluster: str | None = None,
             since: float | None = None) -> Iterator[dict[str, Any]]:
        """Entries in order, optionally of one run or cluster, at or after ``since`` (Unix s)."""
        start = f"{int(since * 1000)}-0" if since else "-"
        while True:
            batch = self.r.xrange(self.key, min=start, max="+", count=1000) or []
            for entry_id, fields in batch:
                f = {_text(k): _text(v) for k, v in (fields or {}).items()}
                if run and f.get("run") != run or cluster and f.get("cluster") != cluster:
                    continue
                if since and float(f["at"]) < since:  # recorded late for an earlier time
                    continue
                yield {"id": _text(entry_id),
                       "at": float(f["at"]), "kind": f["kind"], "who": f["who"],
                       "what": f["what"], "run": f["run"] or None,
                       "cluster": f["cluster"] or None, "outcome": f["outcome"],
                       **({"data": json.loads(f["data"])} if f.get("data", "{}") != "{}"
                          else {})}
            if len(batch) < 1000:
                return
            start = "(" + _text(batch[-1][0])
