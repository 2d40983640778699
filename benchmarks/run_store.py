"""Run store benchmark (issue 13): bytes a simulated 2,000-namespace upgrade sends to Redis
when each save writes what changed (the split run of :mod:`workers.store.runs`) against
rewriting the whole run document every tick (the store before the split).

Both sides save the same run, tick by tick: each wave's baseline, label, restart and
verify ticks (one history line each), then one gate sample and one history line per bake
interval. Each tick both sides save once, the side that goes first alternating. Bytes are
those the client sends (every command and its arguments), counted at the connection; the
time is that of ``save`` plus the ``get`` the next tick does; both sides' ``get`` parse the
whole run (the store's contract), which is most of that time.

Prints per side the bytes, the time and the final size of the hash's ``data``, and last::

    run store: bytes ratio B, time ratio T (split vs whole, N namespaces, K ticks, final run M MB)

    .venv/bin/python benchmarks/run_store.py [--namespaces 2000] [--waves 20]
        [--samples 10] [--checks 40] [--redis redis://127.0.0.1:6379/0]

Only its own keys (a random prefix) are written, and deleted at the end.
"""

from __future__ import annotations

import argparse
import secrets
import time
from typing import Any

import redis

from workers.store.runs import RedisRunStore
from workflows.errors import RunNotFound, StaleRun
from workflows.model import Check, GateSample, Phase, Run, Verdict, Wave, WaveStep


class WholeRunStore(RedisRunStore):
    """The store before the split: the whole run's JSON in the hash, rewritten each save."""

    _WHOLE = """
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return -1 end
if tonumber(seq) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[3], 'data', ARGV[1])
return 1
"""

    def __init__(self, client: redis.Redis, prefix: str):
        super().__init__(client, prefix)
        self._whole = self.r.register_script(self._WHOLE)

    def create(self, run: Run, unsynced_at: float | None = None) -> None:
        self.r.hset(self.key("run", run.id), mapping={"seq": run.seq,
                                                     "data": run.model_dump_json()})

    def save(self, run: Run, expected_seq: int, unsynced_at: float | None = None) -> Run:
        if unsynced_at is not None:
            self.mark_unsynced(run.id, unsynced_at)
        new: Run = run.evolve(seq=expected_seq + 1)
        ok = self._whole(keys=[self.key("run", run.id)],
                         args=[new.model_dump_json(), expected_seq, expected_seq + 1])
        if ok == -1:
            raise RunNotFound(run.id)
        if ok == 0:
            raise StaleRun(run.id)
        return new


def counting_client(url: str) -> tuple[redis.Redis, list[int]]:
    sent = [0]

    class Counting(redis.Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            chunks = [command] if isinstance(command, (bytes, str)) else command
            sent[0] += sum(len(c) for c in chunks)
            super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

    pool = redis.ConnectionPool.from_url(url, connection_class=Counting, decode_responses=True)
    return redis.Redis(connection_pool=pool), sent


def ticks(run: Run, samples: int, checks: int) -> list[Run]:
    """The run after each tick of its upgrade, from its first wave to its last."""
    out, now = [], run.created_at
    for i, wave in enumerate(run.waves):
        run = run.evolve(wave_index=i)
        for step in (WaveStep.LABEL, WaveStep.RESTART, WaveStep.VERIFY, WaveStep.BAKE):
            now += 5
            run = run.with_wave(run.waves[i].evolve(step=step)).log(
                now, "step", f"wave {i}: {step.value} ({len(wave.namespaces)} namespaces)")
            out.append(run)
        for s in range(samples):
            now += 60
            sample = GateSample(at=now, verdict=Verdict.PASS, reason="within the weather",
                                checks=[Check(namespace=wave.namespaces[c % len(wave.namespaces)],
                                              metric="errors:destination", value=0.01,
                                              threshold=0.5, op="<=", ok=True, expected=0.01,
                                              control=0.02, unit="%", status="ok",
                                              confidence=0.99) for c in range(checks)])
            w = run.waves[i]
            run = run.with_wave(w.evolve(samples=[*w.samples, sample])).log(
                now, "gate", f"wave {i}: sample {s + 1}/{samples} PASS")
            out.append(run)
        run = run.with_wave(run.waves[i].evolve(step=WaveStep.DONE, verdict=Verdict.PASS))
    out.append(run.to(Phase.COMPLETED, now + 5))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--namespaces", type=int, default=2000)
    ap.add_argument("--waves", type=int, default=20)
    ap.add_argument("--samples", type=int, default=10, help="gate samples a wave")
    ap.add_argument("--checks", type=int, default=40, help="checks a gate sample")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    a = ap.parse_args()

    size = a.namespaces // a.waves
    waves = [Wave(index=w, namespaces=[f"team-{w * size + i:04}" for i in range(size)],
                  workloads=3 * size) for w in range(a.waves)]
    run = Run(id="r-" + secrets.token_hex(5), cluster="big", requester="UREQ", channel="C1",
              canary_revision="asm-1-26", stable_revision="asm-1-25", phase=Phase.MIGRATING,
              waves=waves, created_at=1e9, updated_at=1e9)
    states = ticks(run, a.samples, a.checks)

    prefix = "meshops-bench-" + secrets.token_hex(4)
    sides: dict[str, tuple[RedisRunStore, list[int]]] = {}
    for name, cls in (("split", RedisRunStore), ("whole", WholeRunStore)):
        client, sent = counting_client(a.redis)
        sides[name] = (cls(client, f"{prefix}-{name}"), sent)
    elapsed = {name: 0.0 for name in sides}
    seqs = {name: 0 for name in sides}
    try:
        for store, sent in sides.values():
            store.create(run)
            sent[0] = 0
        for t, state in enumerate(states):
            order = list(sides) if t % 2 == 0 else list(reversed(sides))
            for name in order:
                store, _ = sides[name]
                began = time.perf_counter()
                seqs[name] = store.save(state, seqs[name]).seq
                store.get(run.id)
                elapsed[name] += time.perf_counter() - began
        final = states[-1].evolve(seq=seqs["split"])
        assert sides["split"][0].get(run.id) == final, "the split store lost something"
        full = len(final.model_dump_json())
        for name, (store, sent) in sides.items():
            data = len(store.r.hget(store.key("run", run.id), "data") or "")
            print(f"{name:5}: {sent[0] / 1e6:8.1f} MB sent, {elapsed[name]:6.2f} s "
                  f"save+get, hash data {data / 1e3:7.1f} kB at the end")
    finally:
        for store, _ in sides.values():
            keys = list(store.r.scan_iter(store.p + ":*"))
            if keys:
                store.r.delete(*keys)
    ratio = sides["split"][1][0] / sides["whole"][1][0]
    time_ratio = elapsed["split"] / elapsed["whole"]
    print(f"run store: bytes ratio {ratio:.3f}, time ratio {time_ratio:.2f} (split vs whole, "
          f"{a.namespaces} namespaces, {len(states)} ticks, final run {full / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
