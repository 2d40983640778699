"""The rollout follower (workers/kube/follow.py) on a scripted watch: it calls back once,
when every workload it follows is settled, never for a follow replaced or ended, and
leaves too large a wave to its recheck."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

from workers.kube.follow import FOLLOW_MAX_WATCHES, RolloutFollower
from workflows.ports import Workload


def workload(ns: str, name: str, done: bool = False, kind: str = "Deployment") -> Workload:
    return Workload(kind=kind, namespace=ns, name=name, restarted_at=None, generation=2,
                    observed_generation=2 if done else 1, replicas=2,
                    updated=2 if done else 1, available=2, ready=None, strategy="RollingUpdate",
                    partition=0, current_revision=None, update_revision=None,
                    total=2 if done else 3, progress_deadline_s=600.0, deadline_exceeded=False,
                    injection_disabled=False)


class ScriptedWatch:
    """A cluster's watches, fed by the test: each (namespace, kind) has its event queue;
    ``None`` ends the watch, an exception is raised from it."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, str], queue.Queue[object]] = {}
        self.asked: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()

    def feed(self, ns: str, kind: str, item: object) -> None:
        with self.lock:
            q = self.streams.setdefault((ns, kind), queue.Queue())
        q.put(item)

    def watch_workloads(self, namespace: str, kind: str, name: str | None, timeout_s: float
                        ) -> Iterator[Workload]:
        with self.lock:
            self.asked.append((namespace, kind, name))
            q = self.streams.setdefault((namespace, kind), queue.Queue())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                item = q.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            assert isinstance(item, Workload)
            yield item


def wait_for(cond, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.01)


def test_it_calls_back_once_when_every_workload_is_rolled_out() -> None:
    api, calls = ScriptedWatch(), []
    a, b, c = workload("shop", "web"), workload("shop", "api"), workload("pay", "db")
    follower = RolloutFollower()
    assert follower.follow("r-1", api, (a, b, c), 2.0, lambda: calls.append(1))
    wait_for(lambda: len(api.asked) == 2)
    # one watch per namespace and kind; by name when it is the only one there
    assert sorted(api.asked) == [("pay", "Deployment", "db"), ("shop", "Deployment", None)]
    api.feed("shop", "Deployment", workload("shop", "web", done=True))
    api.feed("shop", "Deployment", workload("shop", "other", done=True))  # not followed
    api.feed("pay", "Deployment", replace(workload("pay", "db"), updated=2))  # still rolling
    api.feed("shop", "Deployment", workload("shop", "api", done=True))
    time.sleep(0.3)
    assert calls == []  # pay/db is not rolled out yet
    api.feed("pay", "Deployment", workload("pay", "db", done=True))
    wait_for(lambda: calls)
    api.feed("pay", "Deployment", workload("pay", "db", done=True))
    time.sleep(0.2)
    assert calls == [1]
    wait_for(lambda: not follower.following("r-1"))


def test_a_deadline_passed_or_an_ondelete_workload_ready_again_settles_too() -> None:
    api, calls = ScriptedWatch(), []
    late = workload("shop", "web")
    ondelete = replace(workload("shop", "db", kind="StatefulSet"), strategy="OnDelete",
                       available=1)
    follower = RolloutFollower()
    assert follower.follow("r-1", api, (late, ondelete), 2.0, lambda: calls.append(1))
    api.feed("shop", "Deployment", replace(late, deadline_exceeded=True))
    api.feed("shop", "StatefulSet", ondelete)  # one replica not available yet
    time.sleep(0.2)
    assert calls == []
    api.feed("shop", "StatefulSet", replace(ondelete, available=2))
    wait_for(lambda: calls)


def test_a_new_follow_of_the_run_replaces_the_last() -> None:
    api, first, second = ScriptedWatch(), [], []
    follower = RolloutFollower()
    assert follower.follow("r-1", api, (workload("shop", "web"),), 2.0,
                           lambda: first.append(1))
    assert follower.follow("r-1", api, (workload("pay", "db"),), 2.0,
                           lambda: second.append(1))
    api.feed("shop", "Deployment", workload("shop", "web", done=True))
    api.feed("pay", "Deployment", workload("pay", "db", done=True))
    wait_for(lambda: second)
    time.sleep(0.2)
    assert first == []


def test_a_lost_watch_or_too_large_a_wave_leaves_the_run_to_its_recheck() -> None:
    api, calls = ScriptedWatch(), []
    follower = RolloutFollower()
    assert follower.follow("r-1", api, (workload("shop", "web"),), 2.0,
                           lambda: calls.append(1))
    api.feed("shop", "Deployment", ConnectionResetError("cut"))
    wait_for(lambda: not follower.following("r-1"))
    assert calls == []
    many = tuple(workload(f"ns-{i}", "web") for i in range(FOLLOW_MAX_WATCHES + 1))
    assert not follower.follow("r-2", api, many, 2.0, lambda: calls.append(1))
    assert not follower.follow("r-3", api, (workload("shop", "web"),), 0.1,
                               lambda: calls.append(1))
    assert not follower.follow("r-4", api, (), 2.0, lambda: calls.append(1))
    assert len(api.asked) == 1 and not follower.following("r-2")
