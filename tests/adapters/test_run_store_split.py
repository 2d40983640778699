"""The run store keeps a run split (issue 13): the hash holds the run without its history
and gate samples, which are Redis lists a save appends to, so a tick writes what changed
and not the whole run. Against the real Redis, with keys under the test's own prefix."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.run_store import counting_client
from tests.conftest import REDIS_URL
from workers.store.runs import RedisRunStore
from workflows.errors import ClusterBusy, RunNotFound, StaleRun, TemporaryError
from workflows.model import Check, GateSample, Phase, Run, Verdict, Wave


def sample(at: float, namespaces: list[str]) -> GateSample:
    checks = [Check(namespace=ns, metric="errors:destination", value=0.01 * i, threshold=0.5,
                    op="<=", ok=True, expected=0.01, control=0.02, unit="%", status="ok",
                    confidence=0.99) for i, ns in enumerate(namespaces)]
    return GateSample(at=at, verdict=Verdict.PASS, checks=checks, reason="within the weather")


def long_run(run_id: str = "r-5p11t00001", events: int = 400, waves: int = 5,
             per_wave: int = 20, samples: int = 6) -> Run:
    """A run well into its waves: ``events`` history lines, ``samples`` samples a wave."""
    run = Run(id=run_id, cluster=f"c-{run_id}", requester="UREQ", channel="C1",
              canary_revision="asm-1-26", stable_revision="asm-1-25", phase=Phase.MIGRATING,
              created_at=1e9, updated_at=1e9)
    plan = []
    for w in range(waves):
        namespaces = [f"ns-{w}-{i:03}" for i in range(per_wave)]
        plan.append(Wave(index=w, namespaces=namespaces, workloads=3 * per_wave,
                         samples=[sample(1e9 + 60 * s, namespaces) for s in range(samples)]))
    run = run.evolve(waves=plan, wave_index=waves - 1)
    for i in range(events):
        run = run.log(1e9 + i, "step", f"wave {i % waves}: step {i} done", n=i)
    return run  # type: ignore[no-any-return]


def stripped(run: Run) -> Run:
    """``run`` as it was created: no history, no samples."""
    return run.evolve(  # type: ignore[no-any-return]
        history=[], waves=[w.evolve(samples=[]) for w in run.waves])


def snapshot(store: RedisRunStore, run_id: str) -> dict[str, Any]:
    """Everything Redis holds of the run's state."""
    r, key = store.r, store.key("run", run_id)
    held: dict[str, Any] = {key: r.hgetall(key)}
    for k in r.scan_iter(key + ":*"):
        held[k] = r.lrange(k, 0, -1)
    return held


def counting_store(prefix: str) -> tuple[RedisRunStore, list[int]]:
    """A store whose client counts the bytes it sends to Redis (``sent[0]``)."""
    client, sent = counting_client(REDIS_URL)
    return RedisRunStore(client, prefix), sent


def round_trip_store(prefix: str) -> tuple[RedisRunStore, list[int]]:
    """A store whose client counts the commands (or pipelines) it sends (``sends[0]``)."""
    import redis

    sends = [0]

    class Counting(redis.Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            sends[0] += 1
            super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

    pool = redis.ConnectionPool.from_url(REDIS_URL, connection_class=Counting,
                                         decode_responses=True)
    return RedisRunStore(redis.Redis(connection_pool=pool), prefix), sends


@pytest.fixture
def other(store: RedisRunStore, prefix: str) -> Iterator[RedisRunStore]:
    """A second worker's store: its own client, the same keys."""
    s = RedisRunStore.from_url(REDIS_URL, prefix)
    yield s
    s.r.close()


def test_a_long_run_round_trips_exactly(store: RedisRunStore) -> None:
    run = long_run()
    store.create(run)
    assert store.get(run.id) == run
    saved = store.save(run.log(2e9, "phase", "one more"), run.seq)
    assert store.get(run.id) == saved
    assert len(saved.history) == len(run.history) + 1

    other_run = long_run("r-5p11t00002")
    store.create(stripped(other_run))  # created empty, filled by one save
    assert store.get(other_run.id) == stripped(other_run)
    assert store.save(other_run, 0) == store.get(other_run.id) == other_run.evolve(seq=1)


def test_the_hash_holds_the_run_without_its_history_and_samples(store: RedisRunStore) -> None:
    run = long_run()
    store.create(run)
    saved = store.save(run.log(2e9, "step", "later"), run.seq)
    stored = store.r.hgetall(store.key("run", run.id))
    data = json.loads(stored["data"])
    assert "history" not in data
    assert all("samples" not in w for w in data["waves"])
    assert len(stored["data"]) * 10 < len(saved.model_dump_json())
    assert int(stored["hlen"]) == len(saved.history) == 401
    assert store.r.llen(store.key("run", run.id, "history")) == 401
    for i, wave in enumerate(saved.waves):
        assert int(stored[f"s{i}"]) == len(wave.samples) == 6
        assert store.r.llen(store.key("run", run.id, "samples", str(i))) == 6


def test_a_save_after_one_event_sends_what_changed(store: RedisRunStore,
                                                  prefix: str) -> None:
    counted, sent = counting_store(prefix)
    run = long_run(events=2000)
    counted.create(run)
    run = counted.save(run.log(2e9, "step", "warm"), run.seq)  # the script is loaded now
    full = len(run.model_dump_json())
    data = len(store.r.hget(store.key("run", run.id), "data") or "")

    sent[0] = 0
    run = counted.save(run.log(2e9 + 1, "step", "one more line"), run.seq)
    one_event = sent[0]
    assert one_event < data + 2_000  # the hash's data and one event, not the history
    assert one_event * 20 < full

    sent[0] = 0  # a gate sample on the current wave: that sample, not the wave's others
    wave = run.waves[-1]
    run = counted.save(run.with_wave(wave.evolve(
        samples=[*wave.samples, sample(2e9 + 2, wave.namespaces)])), run.seq)
    assert sent[0] < data + len(run.waves[-1].samples[-1].model_dump_json()) + 2_000

    sent[0] = 0  # fifty ticks of one event each: linear in the ticks, not in the history
    for i in range(50):
        run = counted.save(run.log(2e9 + 10 + i, "step", f"tick {i}"), run.seq)
    assert sent[0] < 50 * (data + 2_000)
    assert store.get(run.id) == run
    counted.r.close()


def test_a_restarted_bake_replaces_the_wave_samples(store: RedisRunStore) -> None:
    run = long_run(samples=6)
    store.create(run)
    wave = run.waves[2]
    restarted = run.with_wave(wave.evolve(samples=[sample(3e9, wave.namespaces)]))
    saved = store.save(restarted, run.seq)
    samples_key = store.key("run", run.id, "samples", "2")
    assert store.r.llen(samples_key) == 1
    assert json.loads(store.r.lindex(samples_key, 0) or "{}")["at"] == 3e9
    assert store.get(run.id) == saved

    emptied = store.save(saved.with_wave(saved.waves[2].evolve(samples=[])), saved.seq)
    assert store.r.llen(samples_key) == 0
    assert store.r.hget(store.key("run", run.id), "s2") == "0"
    assert store.get(run.id) == emptied
    again = store.save(emptied.with_wave(emptied.waves[2].evolve(
        samples=[sample(4e9, wave.namespaces)])), emptied.seq)
    assert store.r.llen(samples_key) == 1
    assert store.get(run.id) == again


def test_waves_the_run_no_longer_has_leave_no_lists(store: RedisRunStore) -> None:
    run = long_run(waves=4)
    store.create(run)
    saved = store.save(run.evolve(waves=run.waves[:2], wave_index=1), run.seq)
    assert not store.r.exists(store.key("run", run.id, "samples", "2"),
                              store.key("run", run.id, "samples", "3"))
    assert store.r.hget(store.key("run", run.id), "s3") is None
    assert store.get(run.id) == saved
    regrown = store.save(saved.evolve(waves=[*saved.waves, Wave(index=2, namespaces=["x"])]),
                         saved.seq)
    assert store.get(run.id) == regrown
    assert regrown.waves[2].samples == []


def test_a_stale_save_raises_and_writes_nothing(store: RedisRunStore) -> None:
    run = long_run()
    store.create(run)
    current = store.save(run.log(2e9, "step", "saved by someone"), run.seq)
    before = snapshot(store, run.id)
    wave = run.waves[0]
    late = run.log(2e9, "step", "late").with_wave(wave.evolve(samples=[]))
    with pytest.raises(StaleRun):
        store.save(late, run.seq)
    assert snapshot(store, run.id) == before
    assert store.get(run.id) == current
    with pytest.raises(RunNotFound):
        store.save(long_run("r-5p11t00009"), 0)


def test_of_two_concurrent_savers_exactly_one_wins(store: RedisRunStore,
                                                   other: RedisRunStore) -> None:
    run = long_run()
    store.create(run)
    workers = [RedisRunStore.from_url(REDIS_URL, store.p) for _ in range(8)]
    start = threading.Barrier(len(workers))
    outcomes: dict[int, Run | Exception] = {}

    def save(i: int) -> None:
        mine = run.log(2e9, "step", f"by worker {i}")
        start.wait()
        try:
            outcomes[i] = workers[i].save(mine, run.seq)
        except StaleRun as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=save, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [o for o in outcomes.values() if isinstance(o, Run)]
    assert len(outcomes) == len(workers) and len(won) == 1
    assert store.get(run.id) == won[0]
    assert store.r.llen(store.key("run", run.id, "history")) == len(run.history) + 1
    for w in workers:
        w.r.close()


def test_a_saver_that_read_before_another_saved_is_refused_by_the_script(
        store: RedisRunStore, other: RedisRunStore) -> None:
    """The other worker saves between this save's read of the counts and its script."""
    run = long_run()
    store.create(run)
    theirs = run.log(2e9, "step", "theirs").with_wave(run.waves[1].evolve(samples=[]))
    script = store._save
    won: list[Run] = []

    def late(**kwargs: Any) -> Any:
        won.append(other.save(theirs, run.seq))
        return script(**kwargs)

    store._save = late  # type: ignore[assignment]
    with pytest.raises(StaleRun):
        store.save(run.log(2e9, "step", "mine"), run.seq)
    assert store.get(run.id) == won[0] == theirs.evolve(seq=1)


def test_a_run_stored_whole_loads_and_its_next_save_splits_it(store: RedisRunStore) -> None:
    run = long_run()  # as every run was stored before the split
    key = store.key("run", run.id)
    store.r.hset(key, mapping={"seq": 0, "data": run.model_dump_json()})
    store.r.sadd(store.key("active"), run.id)
    assert store.get(run.id) == run
    assert [r.id for r in store.list_runs(active_only=True)] == [run.id]

    saved = store.save(run.log(2e9, "step", "first save after the upgrade"), 0)
    stored = store.r.hgetall(key)
    assert "history" not in json.loads(stored["data"])
    assert int(stored["hlen"]) == store.r.llen(key + ":history") == len(run.history) + 1
    assert int(stored["s0"]) == store.r.llen(key + ":samples:0") == 6
    assert store.get(run.id) == saved
    later = store.save(saved.log(2e9 + 1, "step", "and the next"), saved.seq)
    assert store.get(run.id) == later

    empty = stripped(long_run("r-5p11t00003"))  # no history, no samples yet
    store.r.hset(store.key("run", empty.id), mapping={"seq": 0, "data": empty.model_dump_json()})
    saved = store.save(empty.evolve(outcome="x"), 0)
    assert store.r.hget(store.key("run", empty.id), "hlen") == "0"
    assert store.get(empty.id) == saved


def test_an_ended_run_frees_its_cluster(store: RedisRunStore) -> None:
    run = long_run()
    store.create(run)
    assert store.active_run(run.cluster) == run.id
    done = store.save(run.to(Phase.COMPLETED, 2e9), run.seq)
    assert store.active_run(run.cluster) is None
    assert store.list_runs(active_only=True) == []
    listed = store.list_runs()
    # a summary: the run's fields, not its history or samples (the sweep lists every few
    # seconds; a whole run of 2,000 namespaces is megabytes)
    assert [r.id for r in listed] == [done.id] and listed[0].phase == Phase.COMPLETED
    assert listed[0].history == [] and all(not w.samples for w in listed[0].waves)
    assert listed[0].read_from[0] == len(done.history)
    assert listed[0].evolve(history=done.history, waves=done.waves) == done


def test_redis_away_is_a_temporary_error() -> None:
    away = RedisRunStore.from_url("redis://127.0.0.1:1/0", "meshops-test-away")
    run = long_run(events=3)
    for call in (lambda: away.get(run.id), lambda: away.save(run, 0),
                 lambda: away.create(run),
                 # what a Slack sync and the sweep read and write besides the run
                 lambda: away.slack_state(run.id), lambda: away.set_slack_state(run.id, x=1),
                 lambda: away.clear_slack_error(run.id),
                 lambda: away.mark_unsynced(run.id, 1.0), lambda: away.mark_synced(run.id),
                 lambda: away.mark_synced(run.id, 3), lambda: away.is_unsynced(run.id),
                 lambda: away.unsynced(1.0), lambda: away.drop_decision("d")):
        with pytest.raises(TemporaryError, match="Redis unavailable"):
            call()


def test_a_ticks_read_is_the_same_size_late_in_a_run_and_its_save_extends_the_whole(
        store: RedisRunStore) -> None:
    """A tick reads only what a step works on (get(recent=…)): the last events and the
    current wave's samples, as many bytes in the last wave as in the first; saving it
    appends to the stored lists, and the whole run read back is exact."""
    short = long_run("r-7a11000001", events=40, waves=2)
    long = long_run("r-7a11000002", events=4000, waves=40)
    for run in (short, long):
        store.create(run)
    # as many bytes late in a long run as early in a short one
    early, late = store.get(short.id, recent=20), store.get(long.id, recent=20)
    assert len(late.model_dump_json(exclude={"waves"})) < \
        2 * len(early.model_dump_json(exclude={"waves"}))
    partial = store.get(long.id, recent=20)
    assert [e.text for e in partial.history] == [e.text for e in long.history[-20:]]
    assert [len(w.samples) for w in partial.waves[:-1]] == [0] * 39
    assert partial.waves[-1].samples == long.waves[-1].samples  # the current wave: whole
    assert len(partial.model_dump_json()) * 20 < len(long.model_dump_json())
    # a step's work, saved from the partial read: an event, a sample, the next wave
    wave = partial.waves[-1]
    stepped = partial.log(3e9, "gate", "look 7").with_wave(
        wave.evolve(samples=[*wave.samples, sample(3e9, wave.namespaces)]))
    saved = store.save(stepped, partial.seq)
    whole = store.get(long.id)
    assert len(whole.history) == 4001 and whole.history[-1].text == "look 7"
    assert whole.history[:4000] == long.history
    assert whole.waves[-1].samples == [*long.waves[-1].samples,
                                       sample(3e9, wave.namespaces)]
    assert [w.samples for w in whole.waves[:-1]] == [w.samples for w in long.waves[:-1]]
    assert saved.seq == whole.seq == long.seq + 1
    # a recent read that would shorten a list it did not read whole is refused, not saved
    partial = store.get(long.id, recent=5)
    with pytest.raises(ValueError, match="would drop events"):
        store.save(partial.evolve(history=partial.history[:-1]), partial.seq)
    assert store.get(long.id) == whole
    # nor one that would shorten the history of a run read whole (a part taken for whole)
    with pytest.raises(ValueError, match="would drop events"):
        store.save(whole.evolve(history=whole.history[-20:]), whole.seq)
    assert store.get(long.id) == whole
    # what was left out travels with the run through a step's evolve, and only with it
    assert partial.read_from[0] == 4001 - 5 and partial.log(5e9, "x", "y").read_from == \
        partial.read_from and whole.read_from == ()
    # a run read whole saves as before
    assert store.save(whole.log(4e9, "step", "x"), whole.seq).history[-1].text == "x"


def test_a_sync_that_read_the_run_before_a_new_line_keeps_it_unsynced(
        store: RedisRunStore) -> None:
    """The chaos suite's lost thread line: a sync read the run, a tick then saved a line
    and marked the run (already marked: nothing changed), the sync finished and cleared
    the mark, so no one ever posted the line. The mark now stays for the sweep."""
    run = long_run("r-5ync000001", events=3)
    store.create(stripped(run))
    stored = store.save(run, 0)
    store.mark_unsynced(run.id, 1e9)
    read_by_sync = store.get(run.id)
    store.save(stored.log(2e9, "phase", "rolled back"), stored.seq)  # the tick meanwhile
    assert store.mark_synced(run.id, len(read_by_sync.history)) is False
    assert store.is_unsynced(run.id)
    assert run.id in store.unsynced(time.time())  # the sweep picks it up
    latest = store.get(run.id)
    assert store.mark_synced(run.id, len(latest.history)) is True
    assert not store.is_unsynced(run.id)


def test_a_save_marks_the_run_unsynced_in_the_same_write_and_only_when_it_is_stored(
        store: RedisRunStore) -> None:
    run = long_run("r-5ync000003", events=3)
    store.create(stripped(run))
    stored = store.save(run, 0)
    assert not store.is_unsynced(run.id)  # no unsynced_at: no mark
    with pytest.raises(StaleRun):  # a save that loses marks nothing
        store.save(stored.log(2e9, "step", "lost"), 0, unsynced_at=2e9)
    assert not store.is_unsynced(run.id)
    store.save(stored.log(2e9, "step", "kept"), stored.seq, unsynced_at=2e9)
    assert store.is_unsynced(run.id)
    assert store.r.zscore(store.key("unsynced"), run.id) == 2e9
    # a run already marked keeps its first time (the sweep's age of the oldest line)
    again = store.get(run.id)
    store.save(again.log(3e9, "step", "more"), again.seq, unsynced_at=3e9)
    assert store.r.zscore(store.key("unsynced"), run.id) == 2e9


def test_a_sync_of_a_run_read_recent_only_counts_the_lines_before_it(
        store: RedisRunStore) -> None:
    run = long_run("r-5ync000002", events=40)
    store.create(stripped(run))
    store.save(run, 0)
    store.mark_unsynced(run.id, 1e9)
    recent = store.get(run.id, recent=5)
    assert len(recent.history) < 40 and recent.history_len == 40
    assert store.mark_synced(run.id, recent.history_len) is True


def test_a_slack_syncs_read_starts_at_the_first_line_not_yet_posted(
        store: RedisRunStore) -> None:
    """get(history_from=…): the history from that event on, the samples as ``recent``
    says; each line renders as from the whole run, and a save of it extends the whole."""
    from workers.slack.render import render_event
    run = long_run("r-5ync000003", events=400, waves=5).to(
        Phase.ROLLED_BACK, 2e9, "rolled back")  # its last line is marked as a warning
    store.create(run)
    whole = store.get(run.id)
    part = store.get(run.id, recent=1, history_from=390)
    assert part.history_start == 390 and part.history_len == whole.history_len == 401
    assert part.history == whole.history[390:]
    assert [len(w.samples) for w in part.waves] == [0, 0, 0, 0, 6]  # the current wave's
    assert [render_event(part, i) for i in range(390, 401)] == \
        [render_event(whole, i) for i in range(390, 401)]
    assert render_event(part, 400).startswith(":warning:")
    with pytest.raises(IndexError, match="was not read"):
        render_event(part, 389)
    # every wave's samples (a chart is due), still only the new lines
    charted = store.get(run.id, history_from=390)
    assert charted.waves == whole.waves and charted.history == part.history
    # nothing new (every line posted): no history, still the current wave's samples
    none_new = store.get(run.id, recent=1, history_from=401)
    assert none_new.history == [] and none_new.history_len == 401
    assert none_new.waves[-1].samples == whole.waves[-1].samples
    # from the first line: the run whole
    assert store.get(run.id, history_from=0) == whole
    saved = store.save(part.log(3e9, "step", "after"), part.seq)
    assert saved.history_len == 402
    assert store.get(run.id).history[:401] == whole.history


def test_a_new_run_is_stored_leased_and_marked_in_one_round_trip(store: RedisRunStore,
                                                                 prefix: str) -> None:
    """The bot creates a run before it answers Slack: the lease, the run's hash and lists,
    the indexes and the unsynced mark go in one script call. A second run of the same
    cluster is told who holds it, and nothing of it is stored."""
    counted, sends = round_trip_store(prefix)
    counted.create(stripped(long_run("r-5p11t00c00")))  # the script is loaded now
    run = long_run("r-5p11t00c01", events=30)
    sends[0] = 0
    counted.create(run, unsynced_at=1e9 + 5)
    assert sends[0] == 1
    assert store.get(run.id) == run
    assert store.active_run(run.cluster) == run.id
    assert store.r.zscore(store.key("unsynced"), run.id) == 1e9 + 5
    assert store.r.zscore(store.key("runs"), run.id) == run.created_at

    second = long_run("r-5p11t00c02", events=3).evolve(cluster=run.cluster)
    before = snapshot(store, run.id)
    with pytest.raises(ClusterBusy) as busy:
        counted.create(second, unsynced_at=1e9 + 6)
    assert busy.value.run_id == run.id and busy.value.cluster == run.cluster
    with pytest.raises(RunNotFound):
        store.get(second.id)
    assert not list(store.r.scan_iter(store.key("run", second.id) + "*"))
    assert store.r.zscore(store.key("unsynced"), second.id) is None
    assert not store.r.sismember(store.key("active"), second.id)
    assert snapshot(store, run.id) == before
    counted.r.close()


def test_the_save_of_a_step_on_a_run_it_read_is_one_round_trip(
        store: RedisRunStore, other: RedisRunStore, prefix: str) -> None:
    """A tick or a decision reads the run and saves what it made of it: the save starts
    from the seq and counts that read saw (the script, no read before it), and the script
    still refuses it when another worker saved in between, whatever that save changed."""
    counted, sends = round_trip_store(prefix)
    run = long_run()
    counted.create(run)
    read = counted.get(run.id, recent=10)
    counted.save(read.log(2e9, "step", "warm"), read.seq)  # the script is loaded now

    read = counted.get(run.id, recent=10)
    wave = read.waves[-1]
    step = read.log(2e9 + 1, "step", "mine").with_wave(
        wave.evolve(samples=[*wave.samples, sample(2e9 + 1, wave.namespaces)]))
    sends[0] = 0
    saved = counted.save(step, read.seq)
    assert sends[0] == 1
    whole = store.get(run.id)
    assert whole.history_len == len(run.history) + 2
    assert whole.history[-1].text == "mine" and whole.seq == saved.seq == 2
    assert len(whole.waves[-1].samples) == len(run.waves[-1].samples) + 1

    # read, then another worker saves (its bake restarted: a shorter samples list)
    read = counted.get(run.id, recent=10)
    theirs = other.get(run.id)
    other.save(theirs.with_wave(theirs.waves[-1].evolve(samples=[])), theirs.seq)
    before = snapshot(store, run.id)
    with pytest.raises(StaleRun):
        counted.save(read.log(2e9 + 2, "step", "late"), read.seq)
    assert snapshot(store, run.id) == before
    # a run made without a read (no seq and counts of its own) still reads them first
    sends[0] = 0
    fresh = store.get(run.id)
    rebuilt = Run.model_validate_json(fresh.model_dump_json())
    counted.save(rebuilt.log(2e9 + 3, "step", "rebuilt"), fresh.seq)
    assert sends[0] == 2
    assert store.get(run.id, recent=1).history[-1].text == "rebuilt"
    counted.r.close()


def test_what_a_tick_rewrites_is_the_same_size_at_200_and_2000_namespaces(
        store: RedisRunStore, prefix: str) -> None:
    """The hash's ``data`` leaves the waves' namespaces to ``plan``, written when the plan
    changes: a tick of a 2,000-namespace run sends what one of 200 sends."""
    counted, sent = counting_store(prefix)
    per_tick = {}
    for per_wave in (10, 100):  # 20 waves: 200 and 2,000 namespaces
        run = long_run(f"r-p1an{per_wave:06}", events=10, waves=20, per_wave=per_wave,
                       samples=0)
        counted.create(run)
        run = counted.get(run.id, recent=1)  # as a tick reads it
        sent[0] = 0
        run = counted.save(run.log(2e9, "step", "one more line"), run.seq)
        per_tick[per_wave] = sent[0]
        stored = store.r.hgetall(store.key("run", run.id))
        assert "namespaces" not in stored["data"]
        assert json.loads(stored["plan"]) == [w.namespaces for w in run.waves]
        whole = store.get(run.id)
        assert [w.namespaces for w in whole.waves] == [w.namespaces for w in run.waves]
        assert whole.history_len == run.history_len == 11
    assert abs(per_tick[100] - per_tick[10]) < 100, per_tick  # the run ids' digits aside
    # a re-plan (a wave's namespaces changed) is written, and read back
    read = store.get(run.id, recent=1)
    wave = read.waves[-1]
    replanned = read.with_wave(wave.evolve(namespaces=[*wave.namespaces, "ns-extra"]))
    saved = store.save(replanned, read.seq)
    assert store.get(run.id).waves[-1].namespaces[-1] == "ns-extra" == \
        saved.waves[-1].namespaces[-1]
    counted.r.close()


def test_a_run_stored_with_its_namespaces_in_data_loads_and_its_next_save_moves_them(
        store: RedisRunStore) -> None:
    """Runs saved before ``plan`` hold their namespaces in ``data``."""
    run = long_run("r-01dp1an001", events=3, samples=1)
    store.create(run)
    key = store.key("run", run.id)
    store.r.hset(key, "data", run.model_dump_json(exclude={"history": True, "waves": {
        "__all__": {"samples"}}}))
    store.r.hdel(key, "plan")
    assert store.get(run.id) == run
    saved = store.save(store.get(run.id).log(2e9, "step", "after the upgrade"), run.seq)
    stored = store.r.hgetall(key)
    assert "namespaces" not in stored["data"] and "plan" in stored
    assert store.get(run.id) == saved
