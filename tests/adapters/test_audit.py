"""The audit stream in Redis and `meshops audit`."""

from __future__ import annotations

import json
import time

import redis
from click.testing import CliRunner

from meshops.cli import main
from tests.conftest import REDIS_URL
from workers.store.audit import AuditLog


def test_record_read_filter_and_cli(prefix: str, monkeypatch) -> None:
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    log = AuditLog(r, prefix)
    try:
        t0 = time.time()
        log.record("command", "U0ANA", "/mesh upgrade dev asm-1-26", cluster="dev", at=t0 - 7200)
        log.record("click", "U0CARL", "approve", run="r-1", cluster="dev",
                   outcome="refused: Only approvers of `dev` may approve")
        log.record("decision", "U0BEN", "approve", run="r-1", cluster="dev", phase="x")
        log.record("step", "meshops", "wave 0: PASS", run="r-2", cluster="prod")
        assert [e["who"] for e in log.read(run="r-1")] == ["U0CARL", "U0BEN"]
        assert [e["run"] for e in log.read(cluster="prod")] == ["r-2"]
        assert log.read(run="r-1").__next__()["outcome"].startswith("refused")
        assert next(iter(log.read(run="r-1")))["kind"] == "click"

        monkeypatch.setenv("REDIS_URL", REDIS_URL)
        monkeypatch.setenv("MESHOPS_REDIS_PREFIX", prefix)
        out = CliRunner().invoke(main, ["audit", "--cluster", "dev"]).output.splitlines()
        entries = [json.loads(line) for line in out]
        assert [e["kind"] for e in entries] == ["command", "click", "decision"]
        assert entries[2]["data"] == {"phase": "x"}
        recent = CliRunner().invoke(main, ["audit", "--since", "1h"]).output.splitlines()
        assert len(recent) == 3  # the command two hours ago is left out
        bad = CliRunner().invoke(main, ["audit", "--since", "yesterday-ish"])
        assert bad.exit_code == 2 and "--since" in bad.output
    finally:
        r.delete(f"{prefix}:audit")
