"""Slack posts are exactly-once per history line and per run (issue 11, item 7): a worker
killed between ``chat.postMessage`` and recording it leaves a marker, and the next sync
finds the message by its metadata instead of posting it again. Against the sandbox's Slack
emulator and the real Redis; the kill is a store that dies right after the post."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.slack import SlackEmulator
from tests.core.fakes import FakeWorld
from tests.core.test_real_clusters import approved
from tests.core.test_workflow import drive, new_run
from workers.slack.client import make_client
from workers.slack.notifier import SlackNotifier
from workers.store.runs import RedisRunStore
from workflows.lifecycle import tick


class Killed(BaseException):
    """The worker process dying (not an Exception: nothing may catch it)."""


class DyingStore(RedisRunStore):
    """The real store, whose process dies when it is about to record ``field``."""

    def __init__(self, r: Any, prefix: str, field: str):
        super().__init__(r, prefix)
        self.field = field

    def set_slack_state(self, run_id: str, **fields: str | int) -> None:
        if self.field in fields:
            raise Killed(self.field)
        super().set_slack_state(run_id, **fields)


def posts(slack: SlackEmulator) -> list[dict[str, Any]]:
    return [e for e in slack.log if e["kind"] == "post"]


@pytest.mark.parametrize("dies_recording", ["root_ts", "posted"])
def test_a_post_made_just_before_a_kill_is_not_made_again(
        slack: SlackEmulator, store: RedisRunStore, prefix: str, dies_recording: str) -> None:
    client = make_client("xoxb-test", slack.base_url + "/api/")
    run = new_run().evolve(id="r-0b0b0b0b0b", channel="C1", created_at=1e9)
    run = run.log(1e9, "step", "first line").log(1e9 + 1, "step", "second line")
    store.r.hset(store.key("run", run.id), mapping={"seq": 0, "data": run.model_dump_json()})
    dying = SlackNotifier(client, DyingStore(store.r, prefix, dies_recording),
                          lambda c: ["UAPPROVER"])
    with pytest.raises(Killed):
        dying.sync(run)
    made = len(posts(slack))
    assert made >= 1  # the post went out; its record did not
    SlackNotifier(client, store, lambda c: ["UAPPROVER"]).sync(run)  # the next worker
    roots = [p for p in posts(slack) if not p["thread_ts"]]
    lines = [p["text"] for p in posts(slack) if p["thread_ts"]]
    assert len(roots) == 1, roots
    assert len(lines) == len(run.history), lines  # every line once, none twice
    assert len(set(lines)) == len(lines)
    assert int(store.slack_state(run.id)["posted"]) == len(run.history)


def test_a_chart_shared_just_before_a_kill_is_not_shared_again(
        slack: SlackEmulator, store: RedisRunStore, prefix: str) -> None:
    world = FakeWorld.seeded(["a"])
    run, now = approved(world)
    run, _ = drive(run, world, now)  # wave 0 baked and passed: its chart is due
    run = run.evolve(id="r-0e0e0e0e0e", channel="C1")
    assert [w.verdict for w in run.waves if w.verdict is not None]
    client = make_client("xoxb-test", slack.base_url + "/api/")
    store.r.hset(store.key("run", run.id), mapping={"seq": 0, "data": run.model_dump_json()})
    dying = SlackNotifier(client, DyingStore(store.r, prefix, "charts"), lambda c: ["UA"])
    with pytest.raises(Killed):
        dying.sync(run)
    SlackNotifier(client, store, lambda c: ["UA"]).sync(run)
    files = [e for e in slack.log if e["kind"] == "file"]
    assert len(files) == 1, files
    assert store.slack_state(run.id)["charts"] == "1"


def test_a_sync_reads_the_run_from_its_first_unposted_line_and_posts_each_once(
        slack: SlackEmulator, store: RedisRunStore) -> None:
    """The sync task reads what is new (``SlackNotifier.read``), not the whole run: the
    history from the first line not yet in the thread; the thread still gets every line
    once, in order, and a wave's chart that is due gets that wave's samples and not the
    earlier waves' (each wave has its own chart)."""
    from workers.slack.render import render_event
    world = FakeWorld.seeded(["a", "b", "c"])
    run, now = approved(world)
    run = run.evolve(id="r-0f0f0f0f0f", channel="C1")
    store.create(run.evolve(history=[], waves=[w.evolve(samples=[]) for w in run.waves]))
    stored = store.save(run, 0)
    notifier = SlackNotifier(make_client("xoxb-test", slack.base_url + "/api/"), store,
                             lambda c: ["UA"])
    first = notifier.read(run.id)
    assert first.history_start == 0
    notifier.sync(first)
    posted = len(stored.history)
    for _ in range(200):  # to the end of the waves, as the worker's ticks go
        result = tick(stored, world, now)
        if result.recheck_after is None:
            break
        now += result.recheck_after
        stored = store.save(result.run, stored.seq)
        read = notifier.read(run.id)
        charted = int(store.slack_state(run.id).get("charts", 0))
        due = [i for i, w in enumerate(read.waves) if i >= charted and w.verdict is not None]
        assert read.history_start == posted and read.history_len == stored.history_len
        whole = store.get(run.id).waves
        if due:  # the chart's wave's samples, and still only the new lines
            assert read.waves[due[0]:] == whole[due[0]:]
            assert not any(w.samples for w in read.waves[:due[0]])
        notifier.sync(read)
        posted = read.history_len
    whole = store.get(run.id)
    lines = [p["text"] for p in posts(slack) if p["thread_ts"]]
    assert lines == [render_event(whole, i) for i in range(whole.history_len)]
    assert [e for e in slack.log if e["kind"] == "file"]  # the waves' charts were shared
