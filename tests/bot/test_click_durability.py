"""An acknowledged click is never lost (issue 11, item 2): the decision is saved before the
ack (the run has changed when the HTTP answer arrives), and a click on a run busy with a step
is persisted before the ack and applied by the sweep. Real Redis, the real Bolt app and
engine, the sandbox's Slack for response_urls."""

from __future__ import annotations

import json
import time
import urllib.parse

from tests.bot.test_payloads import PAYLOADS, bolt, dispatch, slack  # noqa: F401
from tests.conftest import REDIS_URL, ROOT, eventually
from tests.core.test_workflow import new_run
from workers.config import load_fleet
from workers.engine import Engine
from workers.store.runs import RedisRunStore
from workers.wiring import FleetPorts
from workflows.model import Phase


def worker_engine(prefix: str) -> Engine:
    """A worker's engine on the same Redis and prefix (the sweep runs there)."""
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    return Engine(fleet, RedisRunStore.from_url(REDIS_URL, prefix), FleetPorts(fleet))


def click_body(slack, run_id: str, action: str, user: str) -> str:  # type: ignore[no-untyped-def]  # noqa: F811
    payload = json.loads(PAYLOADS["project"]["button"].read_text())
    payload["api_app_id"] = "A0123456789"
    payload["user"]["id"] = user
    payload["actions"][0].update(action_id=f"meshops_{action}", value=run_id)
    payload["response_url"] = slack.base_url + "/_sandbox/slack/response/abc"
    return "payload=" + urllib.parse.quote(json.dumps(payload))


def waiting_run(store, run_id: str):  # type: ignore[no-untyped-def]
    run = new_run().evolve(id=run_id, cluster="prod-weu", requester="U0DEV",
                           phase=Phase.AWAITING_APPROVAL, stable_revision="asm-1-25")
    store.create(run)
    return run


def test_the_decision_is_saved_before_the_click_is_acknowledged(bolt, slack) -> None:  # noqa: F811
    app, store, enqueued = bolt
    waiting_run(store, "r-0d0d0d0d01")
    resp = dispatch(app, click_body(slack, "r-0d0d0d0d01", "approve", "U0AAAAAAA"))
    assert resp.status == 200
    # no waiting: when Slack has its ack, the approval is already stored
    saved = store.get("r-0d0d0d0d01")
    assert saved.phase == Phase.STARTING_CANARY
    # its tick is due now: were the bot killed before it published the tick (that comes
    # after the answer), beat's sweep would re-enqueue the run once it is that late
    assert saved.next_tick_at is not None and saved.next_tick_at <= time.time()
    assert eventually(lambda: enqueued) == [("r-0d0d0d0d01", saved.seq)]


def test_a_click_on_a_busy_run_is_persisted_before_the_ack_and_applied_later(
        bolt, slack) -> None:  # noqa: F811
    app, store, enqueued = bolt
    waiting_run(store, "r-0d0d0d0d02")
    step = store.lock("r-0d0d0d0d02")  # a worker in the middle of a step
    assert step.acquire(blocking=False)
    try:
        resp = dispatch(app, click_body(slack, "r-0d0d0d0d02", "approve", "U0AAAAAAA"))
        assert resp.status == 200
        deadline = time.time() + 5
        while time.time() < deadline and not slack.log:
            time.sleep(0.05)
        assert "your approve is recorded and applied in a few seconds" in slack.log[-1]["text"]
        assert len(store.queued_decisions()) == 1  # durable before the person was answered
        assert store.get("r-0d0d0d0d02").phase == Phase.AWAITING_APPROVAL
    finally:
        step.release()
    worker = worker_engine(store.p)
    ((entry, applied, refusal),) = worker.apply_queued()  # the sweep
    assert refusal is None and applied is not None
    assert applied.phase == Phase.STARTING_CANARY
    assert entry["user"] == "U0AAAAAAA" and store.queued_decisions() == []
    assert worker.apply_queued() == []  # applied once


def test_a_queued_decision_the_run_no_longer_takes_is_answered(bolt, slack) -> None:  # noqa: F811
    app, store, _ = bolt
    waiting_run(store, "r-0d0d0d0d03")
    worker = worker_engine(store.p)
    worker.queue_decision("r-0d0d0d0d03", "complete", "U0AAAAAAA", "https://hooks/x")
    ((entry, applied, refusal),) = worker.apply_queued()
    assert applied is None and refusal and entry["respond_to"] == "https://hooks/x"
    assert store.queued_decisions() == []


def test_a_click_late_in_a_long_run_reads_what_a_step_reads_and_keeps_the_history(
        bolt, slack) -> None:  # noqa: F811
    """A run paused after 3,000 history lines (a 2,000-namespace run's are megabytes): the
    click's decision reads the last lines only, as a tick does, so its ack does not wait for
    the whole history; the saved run still holds every line, the decision's last."""
    app, store, enqueued = bolt
    run = waiting_run(store, "r-0d0d0d0d03")
    run = run.evolve(phase=Phase.PAUSED, paused_from=Phase.MIGRATING, pause_reason="gate")
    for i in range(3000):
        run = run.log(1e9 + i, "step", f"wave {i // 10}: step {i} " + "x" * 200)
    store.save(run, run.seq)
    reads: list[int] = []
    sent = store.r.connection_pool.connection_class.read_response

    def counted(conn, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = sent(conn, *args, **kwargs)
        reads.append(len(str(response)))
        return response

    store.r.connection_pool.connection_class.read_response = counted
    try:
        resp = dispatch(app, click_body(slack, "r-0d0d0d0d03", "resume", "U0AAAAAAA"))
    finally:
        store.r.connection_pool.connection_class.read_response = sent
    assert resp.status == 200
    assert sum(reads) < 60_000, sum(reads)  # the whole history is ~700 kB
    saved = store.get("r-0d0d0d0d03")
    assert saved.phase == Phase.MIGRATING
    assert len(saved.history) == 3001 and saved.history[1500].text.startswith("wave 150:")
    assert "resume" in saved.history[-1].text.lower()
