"""Following rollouts with Kubernetes watches, so a run waiting on one moves on at once.

A wave's VERIFY step looks at its rollout and, when it is not done, asks for another tick
later: for a wave of at most ``workflows.waves.WATCHED_PAIRS`` (namespace, kind) pairs a
3 s fallback, else a guess at the pods' pace (``workflows.waves.rollout_recheck_s``). The
step also names the workloads it waits for (:attr:`workflows.kind.StepResult.wake`).
:class:`RolloutFollower` watches them, as ``kubectl rollout status`` does (a watch per
namespace and kind, or per object when it is the only one), and as soon as each one is
settled (rolled out as kubectl says, past its progress deadline, or, OnDelete, every
replica ready again for meshops' next deletion) it calls ``on_settled`` once: the worker
enqueues a tick of the run, which looks and decides as any tick does.

A follow is an accelerator only. The recheck the step asked for stays scheduled, so a
watch refused, cut, or lost with its worker process costs time, never a step. Watches end
by themselves after the recheck's delay (``timeoutSeconds``), and a new follow of the same
run replaces the last one. They run in daemon threads of the worker process, apart from
its tasks: a task never waits on them (the worker never sleeps in a task).
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Protocol

import structlog

from workflows.ports import Workload
from workflows.waves import WATCHED_PAIRS

log = structlog.get_logger("meshops.follow")

#: a follow watches at most this many (namespace, kind) pairs, as many as a step counts on
#: being watched (it then looks again only after 3 s); a wave of more waits for its paced
#: looks alone (its rollout is long next to them, and a thread per watch is not free)
FOLLOW_MAX_WATCHES = WATCHED_PAIRS
#: no follow for a recheck due sooner than this (s): the tick comes about as soon
FOLLOW_LEAST_S = 0.3


class Watchable(Protocol):
    """What :class:`RolloutFollower` needs of a cluster's API
    (:meth:`workers.kube.cluster.KubernetesClusterApi.watch_workloads`)."""

    def watch_workloads(self, namespace: str, kind: str, name: str | None, timeout_s: float
                        ) -> Iterator[Workload]: ...


def settled(w: Workload) -> bool:
    """Nothing more to wait for in this workload's rollout: rolled out (``kubectl rollout
    status``), past its progress deadline (the tick fails the wave), or OnDelete with every
    replica available (meshops deletes its next pod)."""
    return w.rolled_out or w.deadline_exceeded or (w.restarts_by_deletion and w.healthy)


class _Follow:
    def __init__(self, waiting: set[tuple[str, str, str]],
                 on_settled: Callable[[], None]) -> None:
        self.waiting = waiting  # (namespace, kind, name) not settled yet
        self.on_settled = on_settled
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.watching = 0  # watch threads still running

    def seen(self, w: Workload) -> bool:
        """Take one event's object; True when this follow is over."""
        if self.stopped.is_set():
            return True
        if not settled(w):
            return False
        with self.lock:
            self.waiting.discard((w.namespace, w.kind, w.name))
            if self.waiting or self.stopped.is_set():
                return self.stopped.is_set()
            self.stopped.set()
        self.on_settled()
        return True


class RolloutFollower:
    """Watches the workloads runs wait for (see the module docstring). One per worker
    process, made after the fork (:func:`follower`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._follows: dict[str, _Follow] = {}
        self.started = 0  # watches started, for tests and logs

    def follow(self, key: str, api: Watchable, workloads: tuple[Workload, ...],
               timeout_s: float, on_settled: Callable[[], None]) -> bool:
        """Watch ``workloads`` for up to ``timeout_s`` seconds and call ``on_settled`` once
        every one of them is settled (:func:`settled`), from a watch thread. ``key`` (the
        run's id) names the follow: a new one for the same key stops the last.

        Returns:
            False when nothing is followed: no workloads, a recheck due within
            :data:`FOLLOW_LEAST_S`, or more than :data:`FOLLOW_MAX_WATCHES` watches needed.
        """
        groups: dict[tuple[str, str], set[str]] = defaultdict(set)
        for w in workloads:
            groups[(w.namespace, w.kind)].add(w.name)
        with self._lock:
            old = self._follows.pop(key, None)
            if old is not None:
                old.stopped.set()
            if not groups or timeout_s < FOLLOW_LEAST_S or len(groups) > FOLLOW_MAX_WATCHES:
                return False
            new = _Follow({(w.namespace, w.kind, w.name) for w in workloads},
                          lambda: self._done(key, new, on_settled))
            new.watching = len(groups)
            self._follows[key] = new
            self.started += len(groups)
        for (namespace, kind), names in groups.items():
            only = next(iter(names)) if len(names) == 1 else None
            threading.Thread(target=self._watch, args=(key, new, api, namespace, kind, only,
                                                       timeout_s),
                             name=f"rollout-watch-{key}", daemon=True).start()
        return True

    def _done(self, key: str, follow: _Follow, on_settled: Callable[[], None]) -> None:
        with self._lock:
            if self._follows.get(key) is follow:
                del self._follows[key]
        on_settled()

    def _watch(self, key: str, follow: _Follow, api: Watchable, namespace: str, kind: str,
               name: str | None, timeout_s: float) -> None:
        try:
            for w in api.watch_workloads(namespace, kind, name, timeout_s):
                if follow.seen(w):
                    return
        except Exception as exc:  # noqa: BLE001  # the recheck stands: a lost watch costs time
            log.info("follow.watch_ended", run_id=key, namespace=namespace, kind=kind,
                     error=str(exc)[:200])
        finally:
            with self._lock:
                follow.watching -= 1
                # every watch over with the follow still waiting: the recheck takes over
                if not follow.watching and self._follows.get(key) is follow:
                    del self._follows[key]

    def following(self, key: str) -> bool:
        with self._lock:
            return key in self._follows


_follower_of: tuple[int, RolloutFollower] | None = None
_follower_lock = threading.Lock()


def follower() -> RolloutFollower:
    """This process' follower, made on first use (a Celery pool process is forked from the
    worker and inherits none of its threads)."""
    global _follower_of
    with _follower_lock:
        if _follower_of is None or _follower_of[0] != os.getpid():
            _follower_of = (os.getpid(), RolloutFollower())
        return _follower_of[1]
