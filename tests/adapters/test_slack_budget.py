"""One Slack budget for the workspace (issue 13): shared by every worker through the real
Redis (under the test's own prefix), asked before each call, never slept on. Against the
sandbox's Slack emulator, which answers Slack's limits with 429 and Retry-After.

Time passing is the budget's window emptied (``limits``' ``clear``), so no test waits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError

from sandbox.http import serve
from sandbox.slack import SlackEmulator
from tests.adapters.test_slack_exactly_once import DyingStore, Killed
from tests.conftest import free_port_base
from tests.core.test_workflow import new_run
from workers.slack.budget import BudgetLimits, SlackBudget
from workers.slack.client import make_client
from workers.slack.errors import SlackOverBudget, SlackRateLimited
from workers.slack.notifier import SlackNotifier
from workers.slack.render import render_event
from workers.store.runs import RedisRunStore
from workflows.model import Phase, Run

TOKEN = "xoxb-test"


def emulator(**limits: Any) -> tuple[SlackEmulator, Any]:
    port = free_port_base(15000, 16000)
    emu = SlackEmulator(TOKEN, {"C1": "mesh"}, {"UREQ": "ana"},
                        base_url=f"http://127.0.0.1:{port}", **limits)
    return emu, serve(emu.router(), "slack", "127.0.0.1", port)


@pytest.fixture
def roomy_slack() -> Iterator[SlackEmulator]:
    """Slack's per-method limits, and a channel that takes bursts of 100 posts."""
    emu, server = emulator(channel_burst=100)
    yield emu
    server.shutdown()


def notifier(slack: SlackEmulator, store: RedisRunStore, budget: SlackBudget | None
             ) -> SlackNotifier:
    # the worker's client: a 429 reaches the notifier, nothing sleeps on it
    client = make_client(TOKEN, slack.base_url + "/api/", rate_limit_wait_s=0)
    return SlackNotifier(client, store, lambda c: ["UAPPROVER"], budget=budget)


def stored(store: RedisRunStore, run: Run) -> Run:
    store.r.hset(store.key("run", run.id), mapping={"seq": 0, "data": run.model_dump_json()})
    return run


def a_slot_frees(budget: SlackBudget, method: str, channel: str | None = None) -> None:
    """The budget's window for ``method`` (in ``channel``) passes."""
    for item, ids in budget._limits_of(method, channel):
        budget.limiter.clear(item, *ids)
    spacing = budget._channel_key(method, channel)
    if spacing is not None:
        budget.r.delete(spacing)


def posts(slack: SlackEmulator, thread: bool) -> list[dict[str, Any]]:
    return [e for e in slack.log if e["kind"] == "post" and bool(e["thread_ts"]) == thread]


def in_worker(monkeypatch: pytest.MonkeyPatch, tasks: Any, ctx: Any
              ) -> list[tuple[Any, Any, Any]]:
    """Run the worker's tasks on ``ctx``; the notify syncs they re-schedule are kept in the
    returned list as ``(args, kwargs, countdown)`` instead of being sent."""
    scheduled: list[tuple[Any, Any, Any]] = []
    monkeypatch.setattr(tasks, "context", lambda: ctx)
    monkeypatch.setattr(tasks.notify_task, "apply_async",
                        lambda args, kwargs=None, countdown=None:
                        scheduled.append((args, kwargs, countdown)))
    return scheduled


def test_two_workers_share_one_budget(store: RedisRunStore, prefix: str) -> None:
    limits = BudgetLimits(per_minute={"chat.update": 3})
    one, two = (SlackBudget(store.r, prefix, TOKEN, limits) for _ in range(2))
    assert one.take("chat.update") == 0 and two.take("chat.update") == 0
    assert one.take("chat.update") == 0
    assert two.take("chat.update") > 0  # the third went to the other worker
    assert one.take("chat.update") > 0
    assert two.room("chat.update") == 0
    assert SlackBudget(store.r, prefix, "xoxb-other-app", limits).take("chat.update") == 0
    # one post a second into a channel, whoever posts; another channel has its own second
    assert one.take("chat.postMessage", "C1") == 0
    wait = two.take("chat.postMessage", "C1")
    assert 1.0 < wait <= 1.25  # a second, and a quarter for the posts' transit
    assert two.take("chat.postMessage", "C2") == 0
    # a 429 seen by one worker makes every worker wait its Retry-After
    one.back_off("chat.postEphemeral", 30)
    assert 29 < two.take("chat.postEphemeral") <= 30
    assert two.take("chat.postEphemeral", "C9") > 29
    # without a per-channel number, a channel's posts are limited by nothing
    free = SlackBudget(store.r, prefix, "xoxb-unspaced", BudgetLimits(channel_posts_per_s=None))
    assert [free.take("chat.postMessage", "C1") for _ in range(5)] == [0.0] * 5
    assert free.room("chat.postMessage", "C1") >= 5


def test_those_waiting_for_a_slot_are_told_successive_times(store: RedisRunStore,
                                                           prefix: str) -> None:
    budget = SlackBudget(store.r, prefix, TOKEN, BudgetLimits(per_minute={"chat.update": 1}))
    assert budget.take("chat.update", who="r-1") == 0
    first = budget.take("chat.update", who="r-2")
    second = budget.take("chat.update", who="r-3")
    assert second - first == pytest.approx(61, abs=1)  # one slot (61 s) after the other
    assert budget.take("chat.update", who="r-2") == pytest.approx(first, abs=1)  # its place
    a_slot_frees(budget, "chat.update")
    assert budget.take("chat.update", who="r-2") == 0


def test_a_share_of_each_minute_is_kept_for_urgent_calls(store: RedisRunStore,
                                                        prefix: str) -> None:
    budget = SlackBudget(store.r, prefix, TOKEN, BudgetLimits(per_minute={"chat.update": 10}))
    assert [budget.take("chat.update", who=f"r-{i}") for i in range(8)] == [0.0] * 8
    assert budget.take("chat.update", who="r-8") > 0  # routine: the last 20 % are kept
    assert budget.room("chat.update") == 2
    assert budget.take("chat.update", who="r-9", urgent=True) == 0
    assert budget.take("chat.update", urgent=True) == 0
    assert budget.take("chat.update", urgent=True) > 0  # the limit itself holds
    # a limit too small to keep a whole call from keeps none
    small = SlackBudget(store.r, prefix, "xoxb-small", BudgetLimits(per_minute={"chat.update": 4}))
    assert [small.take("chat.update") for _ in range(4)] == [0.0] * 4


def test_a_root_that_asks_someone_to_act_goes_before_other_runs_progress(
        roomy_slack: SlackEmulator, store: RedisRunStore, prefix: str) -> None:
    budget = SlackBudget(store.r, prefix, TOKEN, BudgetLimits(per_minute={"chat.update": 5},
                                                              channel_posts_per_s=None))
    notify = notifier(roomy_slack, store, budget)
    busy = stored(store, new_run().evolve(id="r-0b0b0b0b0b", channel="C1", created_at=1e9,
                                          phase=Phase.MIGRATING))
    waiting = stored(store, new_run().evolve(id="r-0a0a0a0a0a", channel="C1", created_at=1e9,
                                             phase=Phase.MIGRATING))
    notify.sync(busy)
    notify.sync(waiting)
    for i in range(4):  # progress of one run spends the routine share (4 of 5)
        busy = busy.log(1e9 + i, "step", f"step {i}").evolve(
            phase=(Phase.CONTROL_PLANE, Phase.MIGRATING)[i % 2])
        notify.sync(busy)
    updates = len([e for e in roomy_slack.log if e["kind"] == "update"])
    assert updates == 4
    waiting = waiting.log(1e9 + 5, "step", "istiod up").evolve(phase=Phase.CONTROL_PLANE)
    with pytest.raises(SlackOverBudget):  # more progress: it waits for the minute
        notify.sync(waiting)
    # the other run now waits for someone's click: its root (its buttons) goes at once
    waiting = waiting.evolve(phase=Phase.AWAITING_COMPLETION)
    notify.sync(waiting)
    last = [e for e in roomy_slack.log if e["kind"] == "update"][-1]
    assert len([e for e in roomy_slack.log if e["kind"] == "update"]) == 5
    assert "meshops_complete" in str(last["blocks"])


def test_a_burst_of_syncs_ends_in_one_update_per_slot_showing_the_latest(
        roomy_slack: SlackEmulator, store: RedisRunStore, prefix: str) -> None:
    budget = SlackBudget(store.r, prefix, TOKEN, BudgetLimits(per_minute={"chat.update": 1},
                                                              channel_posts_per_s=None))
    notify = notifier(roomy_slack, store, budget)
    run = stored(store, new_run().evolve(id="r-0c0c0c0c0c", channel="C1", created_at=1e9))
    run = run.log(1e9, "step", "line 0")
    notify.sync(run)  # the root, and its first line
    deferred = 0
    for i in range(1, 7):  # the run moves on six times, a sync asked for each time
        run = run.log(1e9 + i, "step", f"line {i}").evolve(phase=Phase.PAUSED,
                                                          pause_reason=f"reason {i}")
        store.mark_unsynced(run.id, 1e9 + i)
        try:
            notify.sync(run)
        except SlackOverBudget as exc:
            assert exc.delay_s > 0
            deferred += 1
    updates = [e for e in roomy_slack.log if e["kind"] == "update"]
    assert len(updates) == 1  # one slot: one chat.update
    assert deferred == 5
    assert store.r.zscore(store.key("unsynced"), run.id) is not None  # not yet shown
    # the thread did not wait for the root message
    assert [p["text"] for p in posts(roomy_slack, thread=True)] == \
        [render_event(run, i) for i in range(len(run.history))]
    a_slot_frees(budget, "chat.update")
    notify.sync(run)  # the deferred sync
    updates = [e for e in roomy_slack.log if e["kind"] == "update"]
    assert len(updates) == 2  # the five updates asked for meanwhile came to one
    root = posts(roomy_slack, thread=False)[0]
    assert roomy_slack.messages[("C1", root["ts"])]["text"] == updates[-1]["text"]
    assert "reason 6" in str(updates[-1]["blocks"])  # the run as it is now
    assert "reason 1" in str(updates[0]["blocks"])
    assert store.r.zscore(store.key("unsynced"), run.id) is None
    notify.sync(run)  # nothing new: nothing sent
    assert len([e for e in roomy_slack.log if e["kind"] == "update"]) == 2


def test_batched_lines_keep_order_and_exactly_once_across_a_kill(
        store: RedisRunStore, prefix: str) -> None:
    slack, server = emulator()  # Slack's numbers: one post a second, bursts of 3
    try:
        budget = SlackBudget(store.r, prefix, TOKEN)  # Slack's numbers
        run = stored(store, new_run().evolve(id="r-0d0d0d0d0d", channel="C1", created_at=1e9))
        run = run.log(1e9, "step", "line 0")
        with pytest.raises(SlackOverBudget):  # the root took the channel's second
            notifier(slack, store, budget).sync(run)
        for i in range(1, 6):
            run = run.log(1e9 + i, "step", f"line {i}")
        a_slot_frees(budget, "chat.postMessage", "C1")
        dying = notifier(slack, DyingStore(store.r, prefix, "posted"), budget)
        with pytest.raises(Killed):  # killed right after posting the batch
            dying.sync(run)
        assert len(posts(slack, thread=True)) == 1
        a_slot_frees(budget, "chat.postMessage", "C1")
        notify = notifier(slack, store, budget)
        notify.sync(run)  # the next worker finds the batch by its metadata
        assert len(posts(slack, thread=True)) == 1
        assert int(store.slack_state(run.id)["posted"]) == 6
        run = run.log(1e9 + 6, "step", "line 6")
        notify.sync(run)  # a line alone, when the channel has room for it
        thread = [p["text"] for p in posts(slack, thread=True)]
        assert thread == ["\n".join(render_event(run, i) for i in range(6)),
                          render_event(run, 6)]
        metadata = [m["metadata"]["event_payload"] for m in slack.messages.values()
                    if m["thread_ts"]]
        assert metadata == [{"run": run.id, "line": 0, "last": 5},
                            {"run": run.id, "line": 6}]
        assert slack.throttled == []  # the budget kept meshops within Slack's limits
    finally:
        server.shutdown()


def test_a_429_from_slack_reschedules_the_sync_with_its_retry_after(
        store: RedisRunStore, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.tasks import app as tasks

    # Slack takes one post every 30 s; meshops' budget thinks it may post freely
    slack, server = emulator(channel_burst=1, channel_posts_per_s=1 / 30)
    try:
        budget = SlackBudget(store.r, prefix, TOKEN, BudgetLimits(channel_posts_per_s=None))
        run = stored(store, new_run().evolve(id="r-0f0f0f0f0f", channel="C1", created_at=1e9))
        run = run.log(1e9, "step", "line 0")
        store.r.hset(store.key("run", run.id), "data", run.model_dump_json())
        ctx = SimpleNamespace(store=store, notifier=notifier(slack, store, budget))
        scheduled = in_worker(monkeypatch, tasks, ctx)
        tasks.notify_task.apply(args=(run.id,)).get()  # the root goes; its line gets 429
        assert slack.calls.count("chat.postMessage") == 2  # the 429 was not retried
        assert [t["retry_after"] for t in slack.throttled] == [30]
        assert scheduled == [((run.id,), {"deferred": True}, 30.0)]
        assert store.slack_state(run.id)["line_pending"] == "-1"  # Slack posted nothing
        assert budget.take("chat.postMessage", "C1") > 29  # every worker backs off
        tasks.notify_task.apply(args=(run.id,)).get()  # asked again meanwhile
        assert len(scheduled) == 1  # already scheduled: not twice
        assert slack.calls.count("chat.postMessage") == 2  # nor called
    finally:
        store.r.delete(store.key("notify-deferred", "r-0f0f0f0f0f"))
        server.shutdown()


def test_without_a_budget_a_429_still_stops_the_sync(store: RedisRunStore) -> None:
    slack, server = emulator(channel_burst=1, channel_posts_per_s=1 / 30)
    try:
        run = stored(store, new_run().evolve(id="r-0a0a0a0a0a", channel="C1", created_at=1e9))
        with pytest.raises(SlackRateLimited) as caught:
            notifier(slack, store, None).sync(run.log(1e9, "step", "a").log(1e9, "step", "b"))
        assert caught.value.delay_s == 30
    finally:
        server.shutdown()


def test_the_bots_client_waits_out_a_short_429_but_never_a_long_one() -> None:
    from slack_sdk.errors import SlackApiError

    slack, server = emulator(channel_burst=1, channel_posts_per_s=1 / 30)
    try:
        bot = make_client(TOKEN, slack.base_url + "/api/")  # the bot's: 2 s at most
        bot.chat_postMessage(channel="C1", text="first")
        with pytest.raises(SlackApiError):  # Retry-After 30: not slept on
            bot.chat_postMessage(channel="C1", text="second")
        assert slack.calls.count("chat.postMessage") == 2
        slack.rate_limit_next = 1  # a 429 with Retry-After 1: waited out, then posted
        bot.chat_update(channel="C1", ts=posts(slack, thread=False)[0]["ts"], text="edited")
        assert slack.calls.count("chat.update") == 2
    finally:
        server.shutdown()


def test_a_chart_waits_behind_its_lines_and_a_deferral_leaves_no_marker(
        store: RedisRunStore, prefix: str) -> None:
    from tests.core.fakes import FakeWorld
    from tests.core.test_real_clusters import approved
    from tests.core.test_workflow import drive

    world = FakeWorld.seeded(["a"])
    run, now = approved(world)
    run, _ = drive(run, world, now)  # wave 0 baked and passed: its chart is due
    run = stored(store, run.evolve(id="r-0e0e0e0e0e", channel="C1"))
    slack, server = emulator()  # Slack's numbers
    try:
        budget = SlackBudget(store.r, prefix, TOKEN)
        notify = notifier(slack, store, budget)
        for _ in range(2):  # the root, then the lines: the channel's second is spent
            with pytest.raises(SlackOverBudget):
                notify.sync(run)
            assert [e["kind"] for e in slack.log if e.get("thread_ts")] in ([], ["post"])
            a_slot_frees(budget, "chat.postMessage", "C1")
        notify.sync(run)  # the chart
        kinds = [e["kind"] for e in slack.log if e.get("thread_ts")]
        assert kinds == ["post", "file"]  # every line, in one message, then the chart
        assert posts(slack, thread=True)[0]["text"] == \
            "\n".join(render_event(run, i) for i in range(len(run.history)))
        # a call the budget held back left no marker: nothing was searched for
        assert "conversations.history" not in slack.calls
        assert "conversations.replies" not in slack.calls
        assert slack.throttled == []
    finally:
        server.shutdown()


def test_a_sync_that_finds_the_runs_sync_lock_held_comes_back_without_waiting(
        store: RedisRunStore, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed mid-sync leaves the run's sync lock behind: the next sync must not
    wait for it in the worker (two such waits held both worker processes for 30 s, no run
    ticking), and the lock is free again within seconds (renewed, short-lived)."""
    from workers.store.lock import LOCK_TTL_S
    from workers.tasks import app as tasks

    slack, server = emulator()
    try:
        run = stored(store, new_run().evolve(id="r-1e1e1e1e1e", channel="C1", created_at=1e9))
        ctx = SimpleNamespace(store=store, notifier=notifier(slack, store, None))
        scheduled = in_worker(monkeypatch, tasks, ctx)
        # the lock a killed sync left: held, never renewed again
        key = store.key("notify-lock", run.id)
        store.r.set(key, "dead-holder", px=int(LOCK_TTL_S * 1000))
        started = time.monotonic()
        tasks.notify_task.apply(args=(run.id,)).get()
        assert time.monotonic() - started < 1.0  # came back at once
        assert slack.calls == []  # synced nothing while another sync held the run
        assert scheduled == [((run.id,), {"deferred": True}, tasks.LOCKED_SYNC_RETRY_S)]
        assert 0 < store.r.pttl(key) <= LOCK_TTL_S * 1000  # gone within seconds
        store.r.delete(key, store.key("notify-deferred", run.id))
        tasks.notify_task.apply(args=(run.id,)).get()  # free: it syncs
        assert slack.calls.count("chat.postMessage") == 1
        assert store.r.exists(key) == 0  # and lets go
    finally:
        store.r.delete(store.key("notify-deferred", "r-1e1e1e1e1e"))
        server.shutdown()


def test_the_sweep_leaves_a_run_whose_sync_is_already_scheduled(
        store: RedisRunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """At fleet load the budget holds runs' root updates for tens of seconds: the sweep
    must not enqueue, every 5 s, a sync that would only be deferred to the one scheduled."""
    from workers.tasks import app as tasks

    waiting, lost = "r-5c5c5c5c5c", "r-5d5d5d5d5d"
    for run_id in (waiting, lost):
        store.mark_unsynced(run_id, time.time() - 3 * tasks.SYNC_RETRY_S)
    idle = SimpleNamespace(apply_queued=lambda: [], expire_due=lambda: [], overdue=lambda: [])
    ctx = SimpleNamespace(store=store, engine=idle)
    scheduled = in_worker(monkeypatch, tasks, ctx)
    enqueued: list[str] = []
    monkeypatch.setattr(tasks.notify_task, "delay", lambda run_id: enqueued.append(run_id))
    try:
        assert tasks.defer_notify(ctx, waiting, 40.0)  # the budget said: in 40 s
        assert scheduled == [((waiting,), {"deferred": True}, 40.0)]
        tasks.sweep_task.apply().get()
        # the run whose sync is scheduled is left to it; the other (its sync lost with a
        # worker, or never scheduled) is synced again
        assert enqueued == [lost]
        store.r.delete(store.key("notify-deferred", waiting))  # the marker ran out
        tasks.sweep_task.apply().get()
        assert sorted(enqueued) == sorted([lost, waiting, lost])
    finally:
        store.r.delete(store.key("notify-deferred", waiting))


def dev_slack() -> tuple[SlackEmulator, Any]:
    """A Slack with the dev cluster's channel (C0DEV0001), and its server."""
    port = free_port_base(15000, 16000)
    slack = SlackEmulator(TOKEN, {"C0DEV0001": "mesh-dev"}, {"UREQ": "ana"},
                          base_url=f"http://127.0.0.1:{port}")
    return slack, serve(slack.router(), "slack", "127.0.0.1", port)


def dev_fleet() -> Any:
    """A fleet of one cluster, dev, whose channel is C0DEV0001."""
    from workers.config import Fleet

    return Fleet.model_validate({"clusters": {"dev": {
        "subscription": "11111111-2222-3333-4444-555555555555", "resource_group": "rg",
        "location": "westeurope", "name": "aks-dev", "approvers": ["U0LEAD001"],
        "channel": "C0DEV0001", "prometheus": {"url": "http://127.0.0.1:9"}}}})


def test_release_notices_count_against_the_workspace_budget_and_wait_their_turn(
        store: RedisRunStore, prefix: str) -> None:
    """The worker's release watcher posts through the budget (``BudgetedSlack``): a notice
    for a channel a run just posted in waits its second, nothing is lost meanwhile, and a
    429 a notice gets makes every worker's posts wait."""
    from tests.adapters.test_error_seams import OneRevisionMesh
    from workers.slack.notifier import BudgetedSlack
    from workers.watcher import Watcher
    from workflows.releases import ReleaseEvent

    slack, server = dev_slack()
    try:
        budget = SlackBudget(store.r, prefix, TOKEN, BudgetLimits())
        fleet = dev_fleet()
        watcher = Watcher(fleet, store.r, prefix, OneRevisionMesh(),
                          BudgetedSlack(notifier(slack, store, budget)), None)  # type: ignore[arg-type]
        assert budget.take("chat.postMessage", "C0DEV0001") == 0  # a run's line, just now
        patched = ReleaseEvent("2025-01-10", "patched", "asm-1-25", "1.25.3")
        with pytest.raises(SlackOverBudget) as waited:
            watcher.run_once(pushed=[patched])
        assert 0 < waited.value.delay_s <= 1.5
        assert not posts(slack, thread=False)  # nothing went over the channel's limit
        a_slot_frees(budget, "chat.postMessage", "C0DEV0001")
        new, channels = watcher.run_once(pushed=[])  # a next poll bringing nothing new
        assert new == [patched] and channels == {"C0DEV0001"}
        (notice,) = posts(slack, thread=False)
        assert "1.25.3" in notice["text"]

        other = make_client(TOKEN, slack.base_url + "/api/", rate_limit_wait_s=0)
        with pytest.raises(SlackApiError):  # another app fills the channel's burst
            for _ in range(100):
                other.chat_postMessage(channel="C0DEV0001", text="someone else's news")
        a_slot_frees(budget, "chat.postMessage", "C0DEV0001")
        deprecated = ReleaseEvent("2025-01-11", "deprecated", "asm-1-25")
        with pytest.raises(SlackRateLimited):
            watcher.run_once(pushed=[deprecated])
        # every worker's posts now wait Slack's Retry-After, a run's thread line too
        assert budget.take("chat.postMessage", "C2") > 0
    finally:
        server.shutdown()


@pytest.mark.parametrize(("delay_s", "expected_s"), [(0.0, 5.0), (1.0, 5.0), (30.0, 30.0),
                                                     (3600.0, 300.0)])
def test_a_poll_whose_notices_slack_could_not_take_is_followed_by_one_when_it_can(
        store: RedisRunStore, delay_s: float, expected_s: float) -> None:
    """Not a whole interval later: as soon as Slack said (at least the 5 s beat sends the
    watch at, doubled for each poll in a row that could not; at most the interval)."""
    from workers.tasks import app as tasks

    ctx = SimpleNamespace(store=store, fleet=SimpleNamespace(
        releases=SimpleNamespace(interval=300.0)))
    key = store.key("releases", "next_poll")
    store.r.set(key, "1", px=300_000)  # the poll that just ran holds the interval
    tasks.poll_soon(ctx, SlackOverBudget("Slack chat.postMessage: spent", delay_s))  # type: ignore[arg-type]
    assert expected_s - 0.5 < store.r.pttl(key) / 1000 <= expected_s
    # a second poll in a row that could not: twice the least wait (the outage goes on)
    tasks.poll_soon(ctx, SlackOverBudget("Slack chat.postMessage: spent", delay_s))  # type: ignore[arg-type]
    again = min(max(10.0, delay_s), 300.0)
    assert again - 0.5 < store.r.pttl(key) / 1000 <= again


def test_a_push_while_another_worker_polls_is_kept_and_posted_by_the_next_poll(
        store: RedisRunStore, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker posts release notices at a time (a push and a poll would both post the
    same kept events); a push that finds the watcher busy loses nothing."""
    from tests.adapters.test_error_seams import OneRevisionMesh
    from workers.tasks import app as tasks
    from workers.watcher import Watcher
    from workflows.releases import ReleaseEvent

    slack, server = dev_slack()
    try:
        fleet = dev_fleet()
        watcher = Watcher(fleet, store.r, prefix, OneRevisionMesh(),
                          make_client(TOKEN, slack.base_url + "/api/"), None)  # type: ignore[arg-type]
        ctx = SimpleNamespace(store=store, fleet=fleet)
        monkeypatch.setattr(tasks, "watcher", lambda c: watcher)
        busy = store.r.lock(store.key("releases", "lock"), timeout=60)
        assert busy.acquire(blocking=False)  # another worker's poll
        patched = ReleaseEvent("2025-01-10", "patched", "asm-1-25", "1.25.3")
        tasks.run_watcher(ctx, [patched])  # type: ignore[arg-type]
        assert not posts(slack, thread=False)
        assert 0 < store.r.pttl(store.key("releases", "next_poll")) <= 5000  # soon
        busy.release()
        tasks.run_watcher(ctx, [])  # type: ignore[arg-type]  # the next poll (a push of nothing)
        (notice,) = posts(slack, thread=False)
        assert "1.25.3" in notice["text"]
        assert not store.r.exists(store.key("releases", "retries"))  # a poll went through
    finally:
        server.shutdown()
