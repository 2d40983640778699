"""The engine: advances stored runs one step at a time and applies people's decisions.

It binds the core's step functions to the adapters and the run store. Every tick and every
decision holds the run's lock and saves with compare-and-set, so a duplicated or late task
(a Celery redelivery after a worker died, a sweep, a double click) changes nothing: a tick
carries the ``seq`` it was scheduled for and is dropped if the run has moved on.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from redis.exceptions import LockError

from workers.apierrors import CountedPorts
from workers.config import Fleet
from workers.logcontext import RunContext, run_logging
from workers.metrics import RunMetrics
from workers.store.audit import AuditLog
from workflows.errors import DecisionRefused, MeshopsError, Refusal, RunBusy, StaleRun
from workflows.kind import KINDS, StartRun
from workflows.lifecycle import decide, expire, tick
from workflows.model import POLICY_REQUESTER, Phase, Run
from workflows.policy import ClusterPolicy, mention
from workflows.ports import ClusterPorts, RunStore, Workload

log = structlog.get_logger("meshops.engine")

#: takes work that may follow the caller's answer (``bot.deps.AfterAnswer``)
Defer = Callable[[Callable[[], None]], None]


def _now(work: Callable[[], None]) -> None:
    work()


def _info(event: str, **values: Any) -> None:
    """``log.info`` for deferred lines: structlog's lazy logger is looked up where the
    line is written (a few dozen microseconds the ack need not wait for)."""
    log.info(event, **values)


SWEEP_GRACE_S = 15.0  # a run this late for its next tick is re-enqueued by the sweep
#: history events a tick reads (steps look at the last; the metrics at the phase's entry,
#: which ``Run.phase_since`` keeps)
TICK_HISTORY = 20


@dataclass(frozen=True)
class Advanced:
    run: Run  # as saved; its recent part only (the last events, the current wave's samples)
    recheck_after: float | None
    logged: bool  # the history grew: Slack has something to show
    #: the workloads whose rollout the run waits for (:attr:`workflows.kind.StepResult.wake`)
    wake: tuple[Workload, ...] = ()


def new_run_id() -> str:
    return "r-" + uuid.uuid4().hex[:10]


class Engine:
    """Runs of every registered kind, on a run store and the fleet's ports.

    Args:
        fleet: the validated fleet file (clusters, access, defaults).
        store: the run store (Redis in production).
        ports: the fleet's adapters (ARM, Kubernetes, Prometheus per cluster).
        clock: Unix seconds; tests pass their own.
        groups: cluster → {Slack user group id → member ids}, to expand groups among the
            cluster's approvers and requesters; the bot and the worker pass the same one
            (see ``workers.wiring.build_engine``).
        audit: the audit stream; by default on the store's Redis.
        metrics: the deployment's counters (:mod:`workers.metrics`); by default on the
            store's Redis. Runs started and ended, gate verdicts, phase durations and
            decisions are counted here, after each save; the ports are wrapped so that every
            API error they raise is counted (:class:`workers.apierrors.CountedPorts`).

    Every tick and decision logs with ``run_id`` and ``cluster`` bound
    (:mod:`workers.logcontext`).
    """

    def __init__(self, fleet: Fleet, store: RunStore, ports: ClusterPorts,
                 clock: Callable[[], float] = time.time,
                 groups: Callable[[str], dict[str, frozenset[str]]] | None = None,
                 audit: AuditLog | None = None, metrics: RunMetrics | None = None):
        self.fleet = fleet
        self.store = store
        self.clock = clock
        self.groups = groups
        if audit is None:
            r, p = getattr(store, "r"), getattr(store, "p")  # noqa: B009 - Redis store only
            audit = AuditLog(r, p)
        self.audit = audit
        if metrics is None:
            r, p = getattr(store, "r"), getattr(store, "p")  # noqa: B009 - Redis store only
            metrics = RunMetrics(r, p)
        self.metrics = metrics
        self.ports: ClusterPorts = CountedPorts(ports, metrics)

    def policy(self, cluster: str) -> ClusterPolicy:
        return self.fleet.policy(cluster, self.groups(cluster) if self.groups else None)

    def start(self, request: StartRun, requester: str, origin_channel: str,
              defer: Defer | None = None) -> Run:
        """Store a new run of ``request.kind`` in PLANNING and take the cluster's lease.

        ``defer`` takes what need not precede the caller's answer (the counters of
        :mod:`workers.metrics`); the bot passes its after-answer queue, None does it now.

        Raises:
            UnknownCluster: not in the fleet file.
            InvalidCommand: a campaign (``FLEET_SCOPE``) and the fleet file has none.
            DecisionRefused: the requester may not request changes of this cluster (never
                for ``POLICY_REQUESTER``: a fleet-file policy, the file's own request).
            ClusterBusy: another run holds the cluster's lease.
        """
        kind = KINDS.get(request.kind)
        cluster = request.cluster
        cfg = self.fleet.access(cluster)  # a cluster, or the fleet's campaigns
        # a fleet-file policy (POLICY_REQUESTER) was asked for by the fleet file itself
        if requester != POLICY_REQUESTER and not self.policy(cluster).may_request(requester):
            raise DecisionRefused(f"You may not request changes of `{cluster}`; ask one of "
                                  + ", ".join(mention(a) for a in cfg.approvers) + ".")
        now = self.clock()
        run = Run(id=new_run_id(), kind=kind.name, cluster=cluster, requester=requester,
                  channel=cfg.channel, origin_channel=origin_channel,
                  canary_revision=request.revision,
                  options=self.fleet.upgrade_options(cluster, dict(request.options)),
                  thresholds=self.fleet.thresholds(cluster), created_at=now, updated_at=now,
                  next_tick_at=now, **request.fields)
        run = run.log(now, "phase", f"requested by {mention(requester)}: {kind.describe(run)}")
        self.store.create(run, unsynced_at=now)  # the plan's first lines are Slack's to show
        # the log line too follows the answer: the person need not wait for a line of ours
        (defer or _now)(partial(_info, "run.created", run_id=run.id, kind=kind.name,
                                cluster=cluster, revision=request.revision,
                                requester=requester))
        (defer or _now)(partial(self.metrics.run_started, kind.name))
        return run

    def advance(self, run_id: str, seq: int) -> Advanced | None:
        """Run one step of ``run_id`` if it is still at ``seq``; None if stale (another
        tick or a decision moved it: whoever did schedules what comes next).

        Raises:
            RunBusy: another tick or a decision holds the run's lock. The caller tries
                again shortly: the holder may be a tick of an older seq that leaves at
                once, while this tick is the one the latest save asked for.
        """
        with run_logging(run_id) as context:
            return self._advance(run_id, seq, context)

    def _advance(self, run_id: str, seq: int, context: RunContext) -> Advanced | None:
        lock = self.store.lock(run_id)
        if not lock.acquire(blocking=False):
            self._bind_cluster(context, run_id)
            log.info("tick.locked", run_id=run_id, seq=seq)
            raise RunBusy(f"run {run_id} is locked (a step or a decision is running)")
        try:
            # what the step works on only: a tick costs the same in a run's last wave as in
            # its first (the whole run is megabytes at 2,000 namespaces)
            run = self.store.get(run_id, recent=TICK_HISTORY)
            context.bind(cluster=run.cluster)
            if run.seq != seq:
                log.info("tick.stale", run_id=run_id, seq=seq, current=run.seq)
                return None
            now = self.clock()
            result = tick(run, self.ports, now)
            if not result.changed and result.recheck_after is None:
                return None
            new = result.run.evolve(
                updated_at=now,
                next_tick_at=None if result.recheck_after is None
                else now + result.recheck_after)
            # new lines are marked for Slack in the save itself: no crash can store them
            # unmarked (the sweep shows what is marked)
            saved = self.store.save(new, run.seq, unsynced_at=now if len(new.history) >
                                    len(run.history) else None)
            for event in saved.history[len(run.history):]:
                self.audit.record("step", "meshops", event.text, run=run_id,
                                  cluster=saved.cluster, at=event.at, event=event.kind)
            if saved.phase != run.phase:
                # a pause waits for a person: its reason belongs in the log with it
                log.info("run.phase_changed", run_id=run_id, phase=saved.phase.value,
                         wave=saved.wave_index,
                         **({"reason": saved.pause_reason} if saved.phase == Phase.PAUSED
                            else {}))
            self.metrics.run_changed(run, saved, now)
            return Advanced(saved, result.recheck_after, len(saved.history) > len(run.history),
                            result.wake)
        finally:
            try:
                lock.release()
            except LockError:  # expired while we worked: the seq check protects the run
                log.warning("tick.lock_expired", run_id=run_id)

    def _bind_cluster(self, context: RunContext, run_id: str) -> None:
        """Bind the run's cluster to the log context when the run can be read."""
        try:
            context.bind(cluster=self.store.get(run_id, recent=0).cluster)
        except MeshopsError:
            pass

    def decide(self, run_id: str, action: str, user: str, defer: Defer | None = None) -> Run:
        """Apply a person's decision atomically; raises ``DecisionRefused``/``RunNotFound``.

        What must hold before the person is answered is done here: the decision saved
        (compare-and-set) and the run marked for a Slack sync. ``defer`` takes the rest
        (the audit record of the decision, its counters); None does it now."""
        with run_logging(run_id) as context:
            return self._decide(run_id, action, user, context, defer or _now)

    def _decide(self, run_id: str, action: str, user: str, context: RunContext,
                defer: Defer) -> Run:
        # applied before Slack's 3 s ack; not renewed: a decision takes milliseconds, and a
        # renewing thread per click cost more than the decision
        lock = self.store.lock(run_id, blocking_timeout=1.5, renew=False)
        if not lock.acquire():
            raise RunBusy(f"Run `{run_id}` is busy (a step is running).")
        try:
            for _ in range(5):
                # what a step works on, as a tick reads it: a click late in a long run
                # does not read (and Slack's ack does not wait for) megabytes of history
                run = self.store.get(run_id, recent=TICK_HISTORY)
                context.bind(cluster=run.cluster)
                decided = decide(run, action, user, self.policy(run.cluster), self.clock())
                decided = decided.evolve(updated_at=self.clock(),
                                         next_tick_at=None if decided.phase.waiting_for_person
                                         or decided.phase.terminal else self.clock())
                try:  # marked for Slack in the save: see tick
                    saved = self.store.save(decided, run.seq, unsynced_at=self.clock())
                except StaleRun:
                    continue
                now = self.clock()
                # bound context does not reach the deferred line: the cluster is named
                defer(partial(_info, "run.decided", run_id=run_id, cluster=saved.cluster,
                              action=action, user=user, phase=saved.phase.value))
                defer(partial(self.audit.record, "decision", user, action, run=run_id,
                              cluster=saved.cluster, phase=saved.phase.value, at=now))
                defer(partial(self.metrics.decided, run, saved, action, now))
                return saved
            raise DecisionRefused(f"Run `{run_id}` keeps changing; try again.")
        finally:
            lock.release()

    def queue_decision(self, run_id: str, action: str, user: str, respond_to: str = ""
                       ) -> None:
        """Persist a decision the run could not take at once (its lock was held), before
        the person is answered: the sweep applies it (:meth:`apply_queued`), so a click
        that was acknowledged is never lost, even if this process dies now. Raises
        ``TemporaryError`` when Redis does not answer (the person is told; nothing is
        acknowledged)."""
        self.store.queue_decision(json.dumps({"run": run_id, "action": action, "user": user,
                                               "respond_to": respond_to, "at": self.clock()}))
        log.info("decision.queued", run_id=run_id, action=action, user=user)

    def apply_queued(self) -> list[tuple[dict[str, Any], Run | None, str | None]]:
        """Apply the queued decisions in the order they were taken; each is removed once
        applied or refused. Returns (entry, run, refusal) for each one handled; one whose
        run is still busy stays for the next sweep."""
        out: list[tuple[dict[str, Any], Run | None, str | None]] = []
        for raw in self.store.queued_decisions():
            entry = json.loads(raw)
            try:
                run, why = self.decide(entry["run"], entry["action"], entry["user"]), None
            except RunBusy:
                continue
            except Refusal as exc:
                run, why = None, str(exc)
            self.store.drop_decision(raw)
            if run is not None:
                self.audit.record("decision", entry["user"], entry["action"],
                                  run=entry["run"], cluster=run.cluster,
                                  outcome="applied from the queue")
            out.append((entry, run, why))
        return out

    def expire_due(self) -> list[Run]:
        """Expire the approval requests that waited too long; returns the changed runs."""
        changed = []
        for run in self.store.list_runs(active_only=True):
            if expire(run, self.clock()) is None:
                continue  # cheap check first; the real one holds the lock
            lock = self.store.lock(run.id, blocking_timeout=5)
            if not lock.acquire():
                continue
            try:
                current = self.store.get(run.id, recent=TICK_HISTORY)
                now = self.clock()
                expired = expire(current, now)
                if expired is None:
                    continue
                expired = expired.evolve(updated_at=now, next_tick_at=None
                                         if expired.phase.waiting_for_person
                                         or expired.phase.terminal else now)
                # marked for Slack in the save: see tick
                saved = self.store.save(expired, current.seq, unsynced_at=now)
                self.audit.record("decision", "meshops", "expire", run=run.id,
                                  cluster=run.cluster, phase=saved.phase.value)
                self.metrics.decided(current, saved, "expire", now, by_person=False)
                log.info("run.expired", run_id=run.id, cluster=run.cluster,
                         phase=saved.phase.value)
                changed.append(saved)
            except StaleRun:
                continue
            finally:
                lock.release()
        return changed

    def overdue(self, grace_s: float = SWEEP_GRACE_S) -> list[Run]:
        """Active runs whose next tick is more than ``grace_s`` seconds late (their task
        was lost with a worker; within the grace it may only be queued behind others)."""
        now = self.clock()
        return [r for r in self.scheduled() if r.next_tick_at is not None
                and r.next_tick_at < now - grace_s]

    def scheduled(self) -> list[Run]:
        """Active runs that wait for a tick (not for a person), each with its
        ``next_tick_at`` (Unix s)."""
        return [r for r in self.store.list_runs(active_only=True)
                if r.next_tick_at is not None
                and not r.phase.waiting_for_person and r.phase != Phase.REFUSED]
