"""Gate charts in a run's thread (issue 13): each wave's chart draws that wave's looks only,
so its cost follows the wave and not the waves before it; every ended wave gets one, in
order, even when several ended between two syncs; a run that ends after two waves or more
gets one summary chart of every wave's looks. Each exactly once. Against the sandbox's Slack
emulator, the real Redis store and the real chart interpreter; the notifier's call of
``gate_chart`` is recorded on its way through, to see what each chart was given."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.http import serve
from sandbox.slack import SlackEmulator
from tests.adapters.test_slack_exactly_once import DyingStore, Killed
from tests.conftest import free_port_base
from tests.core.fakes import FakeWorld
from tests.core.test_real_clusters import approved
from tests.core.test_workflow import POLICY
from workers.slack import charts
from workers.slack import notifier as notifier_module
from workers.slack.client import make_client
from workers.slack.notifier import SlackNotifier
from workers.store.runs import RedisRunStore
from workflows.lifecycle import decide, tick
from workflows.model import Phase, Run


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    """A Slack with one channel (C1) whose clock moves 1.5 s at each of its reads: its
    limits (a post a second per channel) hold as they do, and a run's few dozen thread
    lines go without waiting them out in real time."""
    port = free_port_base(15000, 16000)
    ticks = itertools.count()
    emu = SlackEmulator("xoxb-test", {"C1": "mesh"}, {"UREQ": "ana"},
                        base_url=f"http://127.0.0.1:{port}",
                        clock=lambda: 1.5 * next(ticks))
    server = serve(emu.router(), "slack", "127.0.0.1", port)
    yield emu
    server.shutdown()


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Run]:
    """The runs the notifier had charts drawn of, in order (each still drawn for real)."""
    seen: list[Run] = []

    def recording(run: Run) -> bytes:
        seen.append(run)
        return charts.gate_chart(run)

    monkeypatch.setattr(notifier_module, "gate_chart", recording)
    return seen


def shared(slack: SlackEmulator) -> list[str]:
    return [str(e.get("name")) for e in slack.log if e["kind"] == "file"]


def stored_run(store: RedisRunStore, world: FakeWorld, run_id: str) -> Run:
    """An approved run over ``world``, stored as the worker stores it (lists apart)."""
    run, _ = approved(world)
    run = run.evolve(id=run_id, channel="C1")
    store.create(run.evolve(history=[], waves=[w.evolve(samples=[]) for w in run.waves]))
    return store.save(run, 0)


def advance(store: RedisRunStore, world: FakeWorld, run: Run, now: float,
            notifier: SlackNotifier | None = None) -> tuple[Run, float]:
    """Tick ``run`` as the worker does (saving each step) until it waits for a person or
    ends; with ``notifier``, a Slack sync after every step, as the worker's notify task."""
    for _ in range(300):
        result = tick(run, world, now)
        run = store.save(result.run, run.seq)
        if notifier is not None:
            notifier.sync(notifier.read(run.id))
        if result.recheck_after is None:
            return run, now
        now += result.recheck_after
    raise AssertionError(f"the run did not settle: {run.phase}")


def complete(store: RedisRunStore, world: FakeWorld, run: Run, now: float,
             notifier: SlackNotifier | None = None) -> Run:
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    run = store.save(decide(run, "complete", "UAPPROVER", POLICY, now), run.seq)
    run, _ = advance(store, world, run, now, notifier)
    assert run.phase == Phase.COMPLETED
    return run


def test_each_wave_is_charted_alone_and_the_ended_run_once_whole(
        slack: SlackEmulator, store: RedisRunStore, drawn: list[Run]) -> None:
    world = FakeWorld.seeded(["a", "b", "c", "d"])  # waves [a], [b, c], [d]
    run = stored_run(store, world, "r-0c1c2c3c4c")
    notifier = SlackNotifier(make_client("xoxb-test", slack.base_url + "/api/"), store,
                             lambda c: ["UA"])
    run, now = advance(store, world, run, 0.0, notifier)
    assert shared(slack) == [f"{run.id}-wave-{i}.png" for i in range(3)]
    complete(store, world, run, now, notifier)
    assert shared(slack) == [f"{run.id}-wave-{i}.png" for i in range(3)] + [
        f"{run.id}-summary.png"]
    whole = store.get(run.id)
    assert all(w.samples for w in whole.waves)
    *waves, summary = drawn
    for i, chart in enumerate(waves):  # a wave's chart is given that wave's looks only
        assert [w.index for w in chart.waves] == [i]
        assert chart.waves[0].samples == whole.waves[i].samples
        assert chart.history == []
    assert summary.waves == whole.waves  # the summary: every wave's looks
    titles = [str(e.get("title")) for e in slack.log if e["kind"] == "file"]
    assert titles[:3] == [f"{run.cluster} wave {i}: gate PASS" for i in range(3)]
    assert "3 of 3 waves judged" in titles[3]
    notifier.sync(notifier.read(run.id))  # a later sync shares nothing again
    assert len(shared(slack)) == 4


def test_waves_that_ended_between_two_syncs_each_get_their_chart_in_order(
        slack: SlackEmulator, store: RedisRunStore, drawn: list[Run]) -> None:
    """Before, a sync shared the last ended wave's chart only: a wave that ended while its
    run's syncs waited for Slack's budget was never charted."""
    world = FakeWorld.seeded(["a", "b", "c", "d"])
    run = stored_run(store, world, "r-0d1d2d3d4d")
    notifier = SlackNotifier(make_client("xoxb-test", slack.base_url + "/api/"), store,
                             lambda c: ["UA"])
    run, now = advance(store, world, run, 0.0)  # no sync until every wave has ended
    read = notifier.read(run.id)
    assert [len(w.samples) for w in read.waves] == [
        len(w.samples) for w in store.get(run.id).waves]  # from wave 0 on: all of them
    notifier.sync(read)
    assert shared(slack) == [f"{run.id}-wave-{i}.png" for i in range(3)]
    assert [[w.index for w in chart.waves] for chart in drawn] == [[0], [1], [2]]
    complete(store, world, run, now)
    notifier.sync(notifier.read(run.id))
    assert shared(slack)[-1] == f"{run.id}-summary.png" and len(shared(slack)) == 4


def test_a_run_of_one_wave_has_no_summary_beside_its_waves_chart(
        slack: SlackEmulator, store: RedisRunStore, drawn: list[Run]) -> None:
    world = FakeWorld.seeded(["a"])
    run = stored_run(store, world, "r-0e1e2e3e4e")
    assert len(run.waves) == 1
    notifier = SlackNotifier(make_client("xoxb-test", slack.base_url + "/api/"), store,
                             lambda c: ["UA"])
    run, now = advance(store, world, run, 0.0, notifier)
    complete(store, world, run, now, notifier)
    assert shared(slack) == [f"{run.id}-wave-0.png"]


def test_a_summary_shared_just_before_a_kill_is_not_shared_again(
        slack: SlackEmulator, store: RedisRunStore, prefix: str, drawn: list[Run]) -> None:
    world = FakeWorld.seeded(["a", "b", "c"])
    run = stored_run(store, world, "r-0f1f2f3f4f")
    client = make_client("xoxb-test", slack.base_url + "/api/")
    notifier = SlackNotifier(client, store, lambda c: ["UA"])
    run, now = advance(store, world, run, 0.0, notifier)
    run = complete(store, world, run, now)
    dying = SlackNotifier(client, DyingStore(store.r, prefix, "summary"), lambda c: ["UA"])
    with pytest.raises(Killed):
        dying.sync(dying.read(run.id))
    assert shared(slack)[-1] == f"{run.id}-summary.png"
    notifier.sync(notifier.read(run.id))  # the next worker
    names: list[Any] = shared(slack)
    assert names.count(f"{run.id}-summary.png") == 1, names
    assert store.slack_state(run.id)["summary"] == "1"


def test_a_run_that_ends_between_a_syncs_two_reads_gets_its_whole_summary(
        slack: SlackEmulator, store: RedisRunStore, prefix: str, drawn: list[Run]) -> None:
    """A sync reads the run in its last wave, sees the wave before's chart due and reads
    that wave's samples on; a person's rollback ends the run in between: the summary due
    then is drawn with every wave's looks, not only those from that wave on."""
    world = FakeWorld.seeded(["a", "b", "c", "d"])  # waves [a], [b, c], [d]
    run = stored_run(store, world, "r-1a2a3a4a5a")
    client = make_client("xoxb-test", slack.base_url + "/api/")
    notifier = SlackNotifier(client, store, lambda c: ["UA"])
    now = 0.0
    while run.wave_index < 2 or run.waves[2].bake_started_at is None:
        result = tick(run, world, now)  # synced while wave 0 ends, not once wave 1 has
        run = store.save(result.run, run.seq)
        if run.waves[1].verdict is None:
            notifier.sync(notifier.read(run.id))
        now += result.recheck_after or 0.0
    assert store.slack_state(run.id)["charts"] == "1"
    baking = run

    class Racing(RedisRunStore):
        """The store as the sync's worker sees it: the run rolled back by another worker
        right after the sync's first read."""

        reads = 0

        def get(self, *args: Any, **kwargs: Any) -> Run:
            got: Run = super().get(*args, **kwargs)
            self.reads += 1
            if self.reads == 1:
                back = store.save(decide(baking, "rollback", "UREQ", POLICY, now), baking.seq)
                back, _ = advance(store, world, back, now)
                assert back.phase == Phase.ROLLED_BACK
            return got

    racing = SlackNotifier(client, Racing(store.r, prefix), lambda c: ["UA"])
    racing.sync(racing.read(run.id))
    assert shared(slack)[-2:] == [f"{run.id}-wave-1.png", f"{run.id}-summary.png"]
    whole = store.get(run.id)
    assert whole.waves[0].samples and whole.waves[1].samples  # the earlier waves' looks
    assert drawn[-1].waves == whole.waves
