"""``meshops bot`` stopped as Kubernetes stops its pod (SIGTERM, right after an answer)
exits 0 with what it queued after its answers done: the command's audit record is there
(``meshops.wiring.run_bot``: :func:`bot.http.serve`, then :meth:`bot.deps.AfterAnswer.drain`)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from meshops.demo import Harness
from workers.store.audit import AuditLog
from workers.store.runs import RedisRunStore

pytestmark = pytest.mark.e2e


def test_a_bot_stopped_right_after_an_answer_exits_0_with_its_after_answer_work_done(
        harness: Harness) -> None:
    h = harness
    store = RedisRunStore.from_url(h.redis_url, h.prefix)
    since = time.time()
    bot = h.procs["bot"]
    log = h.state_dir / "bot.log"
    logged = len(log.read_text())
    try:
        resp = h.slash("requester", "runs dev")
        assert resp.status_code == 200
        os.killpg(bot.pid, signal.SIGTERM)  # the audit record is queued after the answer
        assert bot.wait(30) == 0
        tail = log.read_text()[logged:]
        assert "http.stopped" in tail and "bot.stopped" in tail
        assert "after_answer_done=True" in tail
        trail = [(e["kind"], e["what"], e["outcome"])
                 for e in AuditLog(store.r, h.prefix).read(since=since)]
        assert ("command", "/mesh runs dev", "ok") in trail
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.wait(10)
        h.start_bot()  # the other tests of the session go on with a bot
    assert h.slash("requester", "help").status_code == 200
