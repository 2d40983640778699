"""A fleet campaign (issue 14): ``/mesh campaign start [revision]``.

A campaign moves every cluster of the fleet to one add-on revision, stage by stage (rings:
``dev`` before ``prod``). It never touches a cluster itself: each cluster's move is an
ordinary ``upgrade`` run, one per hop, that the campaign starts through the
:class:`~workflows.campaign.CampaignApi` port (``ports.campaign``) and then observes; the
upgrade keeps its own plan, waves, metric gate and rollback. The campaign is a run with
``kind="campaign"``, ``cluster=FLEET_SCOPE`` and its whole state in ``run.params``.

State machine::

    PLANNING ──(nothing to upgrade)──────────────────────────────▶ COMPLETED
       │  plan_campaign over api.facts(); PermanentError ─────────▶ FAILED
       ▼
    AWAITING_APPROVAL ──approve──▶ MIGRATING ──all stages done───▶ COMPLETED
       │ reject / cancel           │   ▲   │
       ▼                           │   │   └─ failures > budget ─▶ HALTED ──resume──▶ MIGRATING
    REJECTED / CANCELLED           │   │                             (failures accepted)
                  stage approval ◀─┘   └─ approve ── AWAITING_WAVE_APPROVAL
                  pause ▶ PAUSED ──resume──▶ where it was;  halt (a person) ▶ HALTED

In MIGRATING each tick drives the current stage (observe, decide, converge; never sleeps):
children are observed (``get_run``) and their parked decisions taken as the campaign's
approver would (``decide``: approve the plan; complete inside the cluster's maintenance
window); pending clusters start, at most ``max_concurrency`` at a time and only inside their
window, each hop adopting a run the campaign already started (``find_child``) before starting
one; once every cluster of the stage has settled, the stage soaks for ``soak_s`` while each
upgraded cluster is watched (``soak_check``), then the next stage begins. More than
``max_failures`` failed or rolled-back clusters in a stage halt the campaign: nothing new
starts, later stages stay untouched, runs already started go on (they roll back by
themselves), and a person decides.

Sources of this behaviour:

- Azure Kubernetes Fleet Manager update runs (learn.microsoft.com/azure/kubernetes-fleet/
  update-orchestration): an update run goes stage by stage, groups of clusters inside a
  stage, and an "after-stage wait" before the next stage starts; a run can be stopped and
  started again. Here the groups are bounded by ``max_concurrency`` and the after-stage wait
  is a soak that watches the stage's clusters.
- Argo Rollouts (analysis runs, ``failureLimit``) and Flagger (``threshold``): a measured
  regression during the watch fails the step, a failure budget decides when to stop.
- AKS planned maintenance (learn.microsoft.com/azure/aks/planned-maintenance): clusters are
  changed only inside their maintenance window (:mod:`workflows.maintenance`).

``params`` (JSON only)::

    {"revision": str, "why": str, "stage": int (index of the current stage),
     "approver": str | None (who approved the campaign; decides children's gates),
     "stages": [{"name", "max_concurrency", "max_failures", "approval": bool, "soak_s",
                 "state": pending | running | soaking | halted | done, "failures": int,
                 "approved_by": str | None, "soak_from", "soak_until": float | None,
                 "soak_note": bool (metrics unavailable already logged),
                 "clusters": [ENTRY, ...]}],
     "unstaged": [{"cluster", "status", "reason"}],
     "only": [str] (given at start: plan only these clusters; see ``_only``)}

    ENTRY = {"cluster", "status", "current": str | None, "hops": [str], "hop": int,
             "run": str | None, "runs": [str], "reason": str, "namespaces": [str],
             "done_at": float | None, "window_opens": float | None,
             "window": ARM maintenanceWindow dict | None, "window_source": str,
             "refused": str | None (the child phase whose decision was refused)}

An entry's ``status``: ``pending`` → ``running`` ⇄ ``awaiting_person`` → ``done`` | ``failed``;
the planner's ``current``, ``blocked``, ``unreachable``, ``no mesh`` and ``busy`` are settled
from the start.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from workflows.campaign import (
    UPGRADE,
    CampaignApi,
    CampaignPlan,
    ClusterFacts,
    StageSpec,
    campaign_api,
    compact_duration,
    plan_campaign,
)
from workflows.errors import (
    ClusterBusy,
    DecisionRefused,
    InvalidCommand,
    InvalidRevision,
    MeshopsError,
    MetricsUnavailable,
    PermanentError,
    RunBusy,
    RunNotFound,
)
from workflows.kind import Button, Confirm, Decision, StartRun, StepResult, WorkflowKind
from workflows.maintenance import (
    MaintenanceWindow,
    MaintenanceWindowError,
    in_window,
    next_window,
    parse_arm_window,
)
from workflows.model import FLEET_SCOPE, Phase, Run, parse_revision
from workflows.policy import Role
from workflows.ports import ClusterPorts

#: seconds between looks while a child run works (its own steps tick far more often)
OBSERVE_S = 3.0
#: seconds between looks during a soak, at most
SOAK_LOOK_S = 5.0
#: seconds between looks while waiting only for maintenance windows: at most / at least
WINDOW_LOOK_MAX_S = 60.0
WINDOW_LOOK_MIN_S = 1.0
#: seconds before trying again to start a cluster another run holds
BUSY_RETRY_S = 30.0
#: the root message's own section must stay under Slack's 3,000 characters per section
BODY_LIMIT = 2_900

PENDING = "pending"
RUNNING = "running"
AWAITING = "awaiting_person"
DONE = "done"
FAILED = "failed"
#: entry statuses the stage is done with
SETTLED = frozenset({DONE, FAILED, "current", "blocked", "unreachable", "no mesh", "busy"})
_ACTIVE = frozenset({RUNNING, AWAITING})

#: a child run's terminal phases other than COMPLETED: the cluster failed
_CHILD_FAILED = frozenset({Phase.ROLLED_BACK, Phase.FAILED, Phase.CANCELLED, Phase.REJECTED,
                           Phase.REFUSED})

Entry = dict[str, Any]
Stage = dict[str, Any]


# ------------------------------------------------------------------ small helpers


def _utc(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def _at(ts: float) -> str:
    return _utc(ts).strftime("%Y-%m-%d %H:%MZ")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _hop_text(e: Entry) -> str:
    """``asm-1-26 → asm-1-27``: the hop the entry is on (the last one once done)."""
    hops: list[str] = e["hops"]
    if not hops:
        return e.get("current") or "?"
    i = min(e["hop"], len(hops) - 1)
    start = (e.get("current") or "?") if i == 0 else hops[i - 1]
    return f"{start} → {hops[i]}"


def _window(e: Entry) -> MaintenanceWindow | None:
    """The entry's maintenance window, or None (any time)."""
    body = e.get("window")
    return None if body is None else parse_arm_window(body, f"{e['cluster']}'s window")


# ------------------------------------------------------------------ planning


def _stages_params(plan: CampaignPlan, facts: list[ClusterFacts]) -> list[Stage]:
    by_name = {f.name: f for f in facts}
    stages: list[Stage] = []
    for sp in plan.stages:
        entries: list[Entry] = []
        for c in sp.clusters:
            f = by_name.get(c.cluster)
            window = f.window if f is not None else None
            entries.append({
                "cluster": c.cluster,
                "status": PENDING if c.status == UPGRADE else c.status,
                "current": c.current, "hops": list(c.hops), "hop": 0, "run": None, "runs": [],
                "reason": c.reason, "namespaces": [], "done_at": None, "window_opens": None,
                "window": window.to_arm() if window is not None else None,
                "window_source": f.window_source if f is not None else "",
                "refused": None,
            })
        spec = sp.spec
        stages.append({"name": spec.name, "max_concurrency": max(1, spec.max_concurrency),
                       "max_failures": spec.max_failures, "approval": spec.approval,
                       "soak_s": spec.soak_s, "state": PENDING, "failures": 0,
                       "approved_by": None, "soak_from": None, "soak_until": None,
                       "soak_note": False, "clusters": entries})
    return stages


def _tally(stages: list[Stage], unstaged: list[dict[str, Any]], revision: str) -> list[str]:
    """``["1 failed", "2 blocked", …]``: the clusters not upgraded, by status."""
    entries = [e for s in stages for e in s["clusters"]]
    parts = []
    for status, label in ((FAILED, "failed"), ("blocked", "blocked"),
                          ("unreachable", "unreachable"), ("busy", "busy"),
                          ("no mesh", "without a mesh"),
                          ("current", f"already on {revision}")):
        n = sum(e["status"] == status for e in entries)
        if n:
            parts.append(f"{n} {label}")
    if unstaged:
        parts.append(f"{len(unstaged)} not in any stage")
    return parts


def _only(only: Any, facts: list[ClusterFacts], stages: list[StageSpec]
          ) -> tuple[list[ClusterFacts], list[StageSpec]]:
    """The fleet narrowed to the clusters ``only`` names (a list: a policy campaign of the
    clusters with ``auto: minor``), stages keeping the names of the other clusters out;
    anything else: the whole fleet. A stage naming a cluster not in the fleet still fails
    the plan."""
    if not isinstance(only, list):
        return facts, stages
    keep = {str(name) for name in only}
    dropped = {f.name for f in facts} - keep
    return ([f for f in facts if f.name in keep],
            [replace(s, clusters=tuple(n for n in s.clusters if n not in dropped))
             for s in stages])


def plan_fleet(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """Plan the campaign over the fleet's facts, store it in ``params``, await approval.

    Raises:
        PermanentError: no campaign API, a stage naming an unknown cluster, nothing to
            propose, or a malformed revision (the run fails with the reason).
    """
    api = campaign_api(ports)
    facts, stages_spec = _only(run.params.get("only"), api.facts(), api.stages())
    try:
        plan = plan_campaign(facts, stages_spec, run.canary_revision or None,
                             api.end_of_support(), _utc(now))
    except InvalidRevision as exc:  # a Refusal to a person; here the run cannot go on
        raise PermanentError(str(exc)) from exc
    stages = _stages_params(plan, facts)
    unstaged = [{"cluster": c.cluster, "status": c.status, "reason": c.reason}
                for c in plan.unstaged]
    params = {"revision": plan.revision, "why": plan.why, "stage": 0, "approver": None,
              "stages": stages, "unstaged": unstaged}
    if isinstance(run.params.get("only"), list):
        params["only"] = run.params["only"]
    run = run.evolve(canary_revision=plan.revision, params=params)
    moves = plan.to_upgrade
    hops = sum(len(c.hops) for c in moves)
    by_stage = "; ".join(
        f"{s['name']}: " + (", ".join(e["cluster"] for e in s["clusters"]
                                      if e["status"] == PENDING) or "nothing")
        for s in stages)
    text = (f"plan: → {plan.revision} — {plan.why} {_plural(len(moves), 'cluster')} to "
            f"upgrade ({_plural(hops, 'hop')}) in {_plural(len(stages), 'stage')}: {by_stage}")
    run = run.log(now, "step", text)
    if not moves:
        why = "nothing to upgrade: " + (", ".join(_tally(stages, unstaged, plan.revision))
                                        or "the fleet has no cluster in a stage")
        return StepResult(run.to(Phase.COMPLETED, now, f"completed: {why}", outcome=why), None)
    return StepResult(run.to(Phase.AWAITING_APPROVAL, now,
                             f"the campaign to {plan.revision} awaits approval; nothing "
                             "starts before it"), None)


# ------------------------------------------------------------------ migrating


class _Tick:
    """One tick of the driver over a deep copy of ``params`` (the run is immutable)."""

    def __init__(self, run: Run, api: CampaignApi, now: float) -> None:
        self.run = run
        self.api = api
        self.now = now
        self.params: dict[str, Any] = copy.deepcopy(run.params)
        self.lines: list[str] = []
        self.busy_wait = False

    @property
    def stage(self) -> Stage:
        stage: Stage = self.params["stages"][self.params["stage"]]
        return stage

    def approver(self) -> str:
        """Who takes the children's decisions: the stage's approver, else the campaign's."""
        return str(self.stage.get("approved_by") or self.params.get("approver") or "")

    def log(self, text: str) -> None:
        self.lines.append(text)

    def result(self, phase_change: Callable[[Run], Run] | None,
               recheck: float | None) -> StepResult:
        run = self.run
        changed = self.params != run.params or bool(self.lines) or phase_change is not None
        if not changed:
            return StepResult(run, recheck, changed=False)
        run = run.evolve(params=self.params)
        for line in self.lines:
            run = run.log(self.now, "step", line)
        if phase_change is not None:
            run = phase_change(run)
        return StepResult(run, recheck)

    # -- children ------------------------------------------------------------------

    def _fail(self, e: Entry, reason: str) -> None:
        e["status"] = FAILED
        e["reason"] = reason
        self.stage["failures"] += 1
        self.log(f"{e['cluster']} failed: {reason}")

    def _decide(self, e: Entry, child: Run, action: str) -> None:
        """Take ``action`` on the child as the approver; a refusal hands it to a person."""
        if e.get("refused") == child.phase.value:
            return  # refused for this very wait already: asking again changes nothing
        try:
            self.api.decide(child.id, action, self.approver())
        except RunBusy:
            return  # the child is mid-step: ask on the next tick
        except DecisionRefused as exc:
            e["status"] = AWAITING
            e["refused"] = child.phase.value
            e["reason"] = f"a person must {action} it in its channel: {exc}"
            self.log(f"{e['cluster']}: could not {action} run {child.id} ({exc}); "
                     "someone of that cluster must decide in its channel")
            return
        e["status"] = RUNNING
        e["refused"] = None
        e["reason"] = ""
        self.log(f"{e['cluster']}: {action} run {child.id} on the campaign's behalf")

    def observe(self, e: Entry) -> None:
        try:
            child = self.api.get_run(e["run"])
        except RunNotFound:
            self._fail(e, f"its run {e['run']} is gone from the store")
            return
        if child.phase == Phase.COMPLETED:
            e["namespaces"] = list(dict.fromkeys([*e["namespaces"],
                                                  *child.migrated_namespaces]))
            e["refused"] = None
            e["reason"] = ""
            if e["hop"] + 1 < len(e["hops"]):
                e["hop"] += 1
                e["status"] = PENDING
                e["run"] = None
                self.log(f"{e['cluster']} is on {e['hops'][e['hop'] - 1]} (run {child.id}); "
                         f"next hop {_hop_text(e)}")
            else:
                e["status"] = DONE
                e["done_at"] = self.now
                self.log(f"{e['cluster']} is on {e['hops'][-1]} (run {child.id})")
            return
        if child.phase in _CHILD_FAILED:
            outcome = child.outcome or "no outcome given"
            self._fail(e, f"{child.phase.value.replace('_', ' ')}: {outcome} (run {child.id})")
            return
        if child.phase == Phase.AWAITING_APPROVAL:
            self._decide(e, child, "approve")
            return
        if child.phase == Phase.AWAITING_COMPLETION:
            self.refresh_window(e)
            window = _window(e)
            if window is not None and not in_window(window, _utc(self.now)):
                try:
                    opens = next_window(window, _utc(self.now))[0].timestamp()
                    reason = f"completion waits for its window (opens {_at(opens)})"
                except MaintenanceWindowError as exc:
                    reason = f"completion waits for its window, which never opens: {exc}"
                if e["reason"] != reason:
                    e["reason"] = reason
                    self.log(f"{e['cluster']}: {reason}")
                e["status"] = RUNNING
                return
            self._decide(e, child, "complete")
            return
        if child.phase.waiting_for_person:  # wave approval, paused: the cluster's people
            reason = (f"run {child.id} is {child.phase.value.replace('_', ' ')}: people "
                      "decide in the cluster's channel")
            if e["status"] != AWAITING or e["reason"] != reason:
                e["status"] = AWAITING
                e["reason"] = reason
                self.log(f"{e['cluster']}: {reason}")
            return
        if e["status"] != RUNNING:  # the child works again (someone decided)
            e["status"] = RUNNING
            e["refused"] = None
            e["reason"] = ""

    def refresh_window(self, e: Entry) -> None:
        """Take the cluster's window as it stands now (``api.window``): one changed in ARM
        or the fleet file since the plan counts from here, said once in the history; ARM
        not answering keeps the window the campaign had."""
        try:
            window, source = self.api.window(e["cluster"])
        except MeshopsError:
            return  # looked at again on the next tick; the planned window holds meanwhile
        body = window.to_arm() if window is not None else None
        if body == e["window"]:
            return
        e["window"], e["window_source"], e["window_opens"] = body, source, None
        self.log(f"{e['cluster']}'s maintenance window changed since the plan: "
                 + (f"{source}: {window.describe()}" if window is not None else
                    "none now, any time will do"))

    def start(self, e: Entry) -> None:
        """Start the entry's hop inside its window (as it stands now), adopting a run
        already started."""
        self.refresh_window(e)
        window = _window(e)
        if window is not None and not in_window(window, _utc(self.now)):
            try:
                opens = next_window(window, _utc(self.now))[0].timestamp()
            except MaintenanceWindowError as exc:
                e["status"] = "blocked"
                e["reason"] = str(exc)
                self.log(f"{e['cluster']} is blocked: {exc}")
                return
            if e["window_opens"] != opens:
                e["window_opens"] = opens
                self.log(f"{e['cluster']} waits for its maintenance window, opening "
                         f"{_at(opens)}")
            return
        revision = e["hops"][e["hop"]]
        child = self.api.find_child(self.run.id, e["cluster"], revision)
        verb = "adopted"
        if child is None:
            try:
                child = self.api.start_child(self.run, e["cluster"], revision)
            except ClusterBusy as exc:
                reason = f"another run holds the cluster ({exc.run_id}); retrying"
                if e["reason"] != reason:
                    e["reason"] = reason
                    self.log(f"{e['cluster']}: {reason}")
                self.busy_wait = True
                return
            except DecisionRefused as exc:
                self._fail(e, f"could not start its run: {exc}")
                return
            verb = "started"
        e["run"] = child.id
        if child.id not in e["runs"]:
            e["runs"].append(child.id)
        e["status"] = RUNNING
        e["reason"] = ""
        e["window_opens"] = None
        e["refused"] = None
        self.log(f"{verb} run {child.id} on {e['cluster']} ({_hop_text(e)})")

    # -- the stage -----------------------------------------------------------------

    def over_budget(self) -> bool:
        s = self.stage
        return bool(s["failures"] > s["max_failures"])

    def halt(self) -> StepResult:
        s = self.stage
        s["state"] = "halted"
        reason = (f"halted: {_plural(s['failures'], 'cluster')} of stage {s['name']} failed "
                  f"(budget {s['max_failures']}); later stages untouched")
        return self.result(lambda r: r.to(Phase.HALTED, self.now, reason, pause_reason=reason,
                                          paused_from=None), None)

    def soak(self) -> None:
        s = self.stage
        for e in s["clusters"]:
            if e["status"] != DONE:
                continue
            try:
                regression = self.api.soak_check(e["cluster"], e["namespaces"],
                                                 float(e["done_at"] or s["soak_from"]),
                                                 self.now)
            except MetricsUnavailable as exc:
                if not s["soak_note"]:
                    s["soak_note"] = True
                    self.log(f"stage {s['name']} soak: metrics unavailable ({exc}); the "
                             "look is skipped, the soak goes on")
                continue
            if regression is not None:
                self._fail(e, f"regressed during the soak: {regression}")

    def drive(self) -> StepResult:
        if self.params["stage"] >= len(self.params["stages"]):
            return self.finish()
        s = self.stage
        entries: list[Entry] = s["clusters"]
        if s["state"] == PENDING:
            if not any(e["status"] not in SETTLED for e in entries):
                s["state"] = DONE  # nothing to upgrade here: no approval, no soak
                self.log(f"stage {s['name']}: nothing to upgrade")
                return self.next_stage()
            if s["approval"] and not s["approved_by"]:
                return self.result(lambda r: r.to(
                    Phase.AWAITING_WAVE_APPROVAL, self.now,
                    f"stage {s['name']} awaits approval"), None)
            s["state"] = RUNNING
            self.log(f"stage {s['name']} begins: "
                     f"{_plural(sum(e['status'] == PENDING for e in entries), 'cluster')}, "
                     f"{s['max_concurrency']} at a time")
        for e in entries:
            if e["status"] in _ACTIVE:
                self.observe(e)
        if self.over_budget():
            return self.halt()
        if s["state"] == "soaking":
            self.soak()
            if self.over_budget():
                return self.halt()
        else:
            for e in entries:
                if e["status"] != PENDING:
                    continue
                if sum(x["status"] in _ACTIVE for x in entries) >= s["max_concurrency"]:
                    break
                self.start(e)
                if self.over_budget():
                    return self.halt()
        if any(e["status"] not in SETTLED for e in entries):
            return self.result(None, self.recheck())
        if s["soak_s"] > 0 and any(e["status"] == DONE for e in entries):
            if s["soak_until"] is None:
                s["state"] = "soaking"
                s["soak_from"] = self.now
                until = self.now + float(s["soak_s"])
                s["soak_until"] = until
                self.log(f"stage {s['name']} soaks for {compact_duration(s['soak_s'])}, until "
                         f"{_at(until)}: its upgraded clusters are watched")
                return self.result(None, min(float(s["soak_s"]), SOAK_LOOK_S))
            if self.now < s["soak_until"]:
                s["state"] = "soaking"
                return self.result(None, max(0.0, min(s["soak_until"] - self.now, SOAK_LOOK_S)))
        s["state"] = DONE
        done = sum(e["status"] == DONE for e in entries)
        failed = sum(e["status"] == FAILED for e in entries)
        self.log(f"stage {s['name']} done: {done} upgraded, {failed} failed"
                 + (" after its soak" if s["soak_until"] is not None else ""))
        return self.next_stage()

    def next_stage(self) -> StepResult:
        self.params["stage"] += 1
        if self.params["stage"] >= len(self.params["stages"]):
            return self.finish()
        return self.result(None, 0.0)

    def finish(self) -> StepResult:
        stages: list[Stage] = self.params["stages"]
        revision = self.params["revision"]
        done = sum(e["status"] == DONE for s in stages for e in s["clusters"])
        outcome = "; ".join([f"{revision} on {_plural(done, 'cluster')}",
                             *_tally(stages, self.params["unstaged"], revision)])
        return self.result(lambda r: r.to(Phase.COMPLETED, self.now, f"completed: {outcome}",
                                          outcome=outcome), None)

    def recheck(self) -> float:
        entries: list[Entry] = self.stage["clusters"]
        if any(e["status"] in _ACTIVE for e in entries):
            return OBSERVE_S
        opens = [e["window_opens"] for e in entries
                 if e["status"] == PENDING and e["window_opens"] is not None]
        # a cluster another run holds is tried again after BUSY_RETRY_S
        cap = BUSY_RETRY_S if self.busy_wait or any(
            e["status"] == PENDING and e["reason"] for e in entries) else WINDOW_LOOK_MAX_S
        if opens:
            return min(cap, max(WINDOW_LOOK_MIN_S, float(min(opens)) - self.now))
        return cap if cap == BUSY_RETRY_S else OBSERVE_S


def migrate_fleet(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """Drive the current stage one tick (see the module docstring); idempotent.

    Returns:
        the run with its ``params`` updated; ``recheck_after`` 3 s while a child works, the
        seconds to the next window opening (1–60) while waiting only for windows, up to 5 s
        while soaking, 0 after a stage ends; ``changed`` False when it only observed.
    Raises:
        the CampaignApi's temporary errors (retried by the lifecycle); PermanentError when
        these ports have no campaign API.
    """
    return _Tick(run, campaign_api(ports), now).drive()


# ------------------------------------------------------------------ the kind

_ACTIVE_TEXT = {RUNNING: "upgrading", AWAITING: "waits for a person"}
_EMOJI = {PENDING: ":hourglass:", RUNNING: ":arrows_counterclockwise:",
          AWAITING: ":raising_hand:", DONE: ":white_check_mark:", FAILED: ":x:",
          "current": ":white_check_mark:"}
#: which entries a clipped stage shows first: those a person should look at
_ORDER = {FAILED: 0, AWAITING: 0, RUNNING: 1, PENDING: 2, "blocked": 3, "unreachable": 3,
          "busy": 3, "no mesh": 4, DONE: 5, "current": 6}


def _clip(line: str, limit: int = 300) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _entry_line(e: Entry, revision: str) -> str:
    name = e["cluster"]
    status = e["status"]
    emoji = _EMOJI.get(status, ":no_entry:")
    if status in _ACTIVE:
        hops = f" (hop {e['hop'] + 1} of {len(e['hops'])})" if len(e["hops"]) > 1 else ""
        text = f"{name} {_hop_text(e)}{hops}: {_ACTIVE_TEXT[status]} (run {e['run']})"
        if e["reason"]:
            text += f" — {e['reason']}"
    elif status == PENDING:
        if e["window_opens"] is not None:
            text = f"{name}: waiting for its window (opens {_at(e['window_opens'])})"
        else:
            text = f"{name} {_hop_text(e)}: pending" + (f" — {e['reason']}" if e["reason"]
                                                        else "")
    elif status == DONE:
        text = f"{name} {e.get('current') or '?'} → {revision}: upgraded (runs " \
               f"{', '.join(e['runs'])})"
    elif status == FAILED:
        text = f"{name} {_hop_text(e)}: {e['reason']}"
    elif status == "current":
        text = f"{name}: already on {e.get('current') or revision}"
    else:
        text = f"{name} {status}: {e['reason']}"
    return _clip(f"{emoji} {text}")


def _stage_header(s: Stage, current: bool, phase: Phase) -> str:
    entries: list[Entry] = s["clusters"]
    moving = [e for e in entries if e["hops"]]
    done = sum(e["status"] == DONE for e in entries)
    failed = sum(e["status"] == FAILED for e in entries)
    state = str(s["state"])
    if current and phase == Phase.AWAITING_WAVE_APPROVAL:
        state = "awaiting approval"
    elif state == "soaking" and s["soak_until"] is not None:
        state = f"soaking until {_at(s['soak_until'])}"
    return (f"*Stage {s['name']}* — {state} ({done} of {_plural(len(moving), 'cluster')} "
            f"done, {failed} failed, budget {s['max_failures']})")


def _render(run: Run, cap: int | None) -> str:
    params = run.params
    revision = params.get("revision") or run.canary_revision
    lines = []
    for i, s in enumerate(params.get("stages", [])):
        lines.append(_stage_header(s, i == params.get("stage"), run.phase))
        entries: list[Entry] = s["clusters"]
        shown = entries
        if cap is not None and len(entries) > cap:
            order = sorted(range(len(entries)),
                           key=lambda k: (_ORDER.get(entries[k]["status"], 3), k))
            shown = [entries[k] for k in sorted(order[:cap])]
        lines.extend(_entry_line(e, revision) for e in shown)
        if len(shown) < len(entries):
            lines.append(f"… {len(entries) - len(shown)} more")
    unstaged = params.get("unstaged", [])
    if unstaged:
        lines.append("*Not in any stage* (left as they are)")
        shown_u = unstaged if cap is None else unstaged[:cap]
        lines.extend(_clip(f":heavy_minus_sign: {u['cluster']} {u['status']}"
                           + (f": {u['reason']}" if u["reason"] else "")) for u in shown_u)
        if len(shown_u) < len(unstaged):
            lines.append(f"… {len(unstaged) - len(shown_u)} more")
    return "\n".join(lines)


class Campaign(WorkflowKind):
    """``/mesh campaign start [revision]``: move the fleet to one revision, stage by stage."""

    name = "campaign"
    verb = "campaign"
    usage = "campaign plan|start [revision]"
    steps = {Phase.PLANNING: plan_fleet, Phase.MIGRATING: migrate_fleet}
    decisions = {
        "approve": Decision(frozenset({Phase.AWAITING_APPROVAL, Phase.AWAITING_WAVE_APPROVAL}),
                            Role.APPROVER),
        "reject": Decision(frozenset({Phase.AWAITING_APPROVAL}), Role.APPROVER),
        "cancel": Decision(frozenset({Phase.PLANNING, Phase.AWAITING_APPROVAL,
                                      Phase.MIGRATING, Phase.AWAITING_WAVE_APPROVAL,
                                      Phase.PAUSED, Phase.HALTED})),
        "pause": Decision(frozenset({Phase.MIGRATING, Phase.AWAITING_WAVE_APPROVAL})),
        # one role per decision: resuming a halted campaign accepts its failures, an
        # approver's call, so resuming a paused one is an approver's too
        "resume": Decision(frozenset({Phase.PAUSED, Phase.HALTED}), Role.APPROVER),
        "halt": Decision(frozenset({Phase.MIGRATING, Phase.AWAITING_WAVE_APPROVAL,
                                    Phase.PAUSED}), Role.APPROVER),
    }
    _HALT = Button("halt", "Halt", "danger", Confirm(
        "Halt the campaign?", "No new cluster starts and later stages stay untouched; runs "
        "already started go on in their clusters' channels.", "Halt", danger=True))
    buttons = {
        Phase.AWAITING_APPROVAL: (
            Button("approve", "Approve", "primary", Confirm(
                "Start the campaign?", "Every cluster of the plan moves to *{canary}*, stage "
                "by stage, each by its own upgrade run.", "Approve")),
            Button("reject", "Reject")),
        Phase.AWAITING_WAVE_APPROVAL: (Button("approve", "Approve stage", "primary"),
                                       Button("pause", "Pause"), _HALT,
                                       Button("cancel", "Cancel")),
        Phase.MIGRATING: (Button("pause", "Pause"), _HALT),
        Phase.PAUSED: (Button("resume", "Resume", "primary"), _HALT),
        Phase.HALTED: (Button("resume", "Resume", "primary", Confirm(
            "Resume despite the failures?", "The failures of the halted stage are accepted "
            "and the campaign goes on to *{canary}*.", "Resume", danger=True)),
            Button("cancel", "Cancel")),
    }

    def parse(self, args: list[str], wrong: Callable[[str], InvalidCommand]) -> StartRun:
        """``start [revision]`` → ``StartRun("campaign", FLEET_SCOPE, revision or "")``.

        Raises ``wrong(…)`` for other words, ``InvalidRevision`` for a malformed revision.
        """
        if not args or args[0].lower() != "start":
            raise wrong("`campaign` takes `plan [revision]` or `start [revision]`"
                        + (f", not `{args[0]}`." if args else "."))
        if len(args) > 2:
            raise wrong("`campaign start` takes at most one revision.")
        return StartRun(self.name, FLEET_SCOPE, parse_revision(args[1]) if len(args) == 2
                        else "")

    def describe(self, run: Run) -> str:
        return (f"campaign moving the fleet to {run.canary_revision}" if run.canary_revision
                else "campaign moving the fleet to the revision meshops proposes")

    def title(self, run: Run) -> str:
        return f"Campaign to {run.canary_revision}" if run.canary_revision else "Fleet campaign"

    def subject(self, run: Run) -> str:
        return (f"The campaign to `{run.canary_revision}`" if run.canary_revision
                else "The fleet campaign")

    def accepted(self, run: Run) -> str:
        to = f" to `{run.canary_revision}`" if run.canary_revision else ""
        return (f"Planning a campaign{to} (run `{run.id}`) over the fleet; the plan will be "
                f"posted in <#{run.channel}> for an approver.")

    def plan_note(self, run: Run) -> str:
        why = run.params.get("why")
        return f"Why {run.canary_revision}: {why}" if why else ""

    def body(self, run: Run) -> str:
        """Each stage's state and each cluster's line, under :data:`BODY_LIMIT` characters
        (the same number of clusters per stage, those needing a look first, "… N more")."""
        if not run.params.get("stages"):
            return ""
        text = _render(run, None)
        longest = max([len(s["clusters"]) for s in run.params["stages"]]
                      + [len(run.params.get("unstaged", []))])
        cap = longest
        while len(text) > BODY_LIMIT and cap > 0:
            cap -= 1
            text = _render(run, cap)
        return text[:BODY_LIMIT]

    def gate(self, run: Run) -> str:
        if run.phase in (Phase.PLANNING, Phase.AWAITING_APPROVAL):
            return "plan"
        if run.phase == Phase.PAUSED:
            return "pause"
        if run.phase == Phase.HALTED:
            return "halt"
        stages = run.params.get("stages", [])
        index = run.params.get("stage", 0)
        return f"stage-{stages[index]['name']}" if index < len(stages) else "campaign"

    def approve(self, run: Run, by: str, now: float) -> Run:
        params = copy.deepcopy(run.params)
        user = run.approvals[-1].user if run.approvals else None
        if run.phase == Phase.AWAITING_APPROVAL:
            params["approver"] = user
            return run.to(Phase.MIGRATING, now, f"approved {by}", params=params)
        stage = params["stages"][params["stage"]]
        stage["approved_by"] = user
        stage["state"] = RUNNING
        return run.to(Phase.MIGRATING, now, f"stage {stage['name']} approved {by}",
                      params=params)

    def apply(self, run: Run, action: str, by: str, now: float) -> Run:
        if action == "halt":
            params = copy.deepcopy(run.params)
            stages = params.get("stages", [])
            if params.get("stage", 0) < len(stages):
                stage = stages[params["stage"]]
                if stage["state"] in (RUNNING, "soaking"):
                    stage["state"] = "halted"
            reason = f"halted {by}; no new cluster starts, runs already started go on"
            return run.to(Phase.HALTED, now, reason, params=params, pause_reason=reason,
                          paused_from=None)
        if action == "resume" and run.phase == Phase.HALTED:
            params = copy.deepcopy(run.params)
            stage = params["stages"][params["stage"]]
            failures = stage["failures"]
            stage["failures"] = 0
            if stage["state"] == "halted":
                stage["state"] = RUNNING
            text = (f"resumed {by}: the {_plural(failures, 'failure')} of stage "
                    f"{stage['name']} accepted; the campaign goes on")
            return run.to(Phase.MIGRATING, now, text, params=params, pause_reason="",
                          paused_from=None)
        if action == "cancel":
            running = [e["run"] for s in run.params.get("stages", []) for e in s["clusters"]
                       if e["status"] in _ACTIVE]
            outcome = f"cancelled {by}"
            if running:
                outcome += (f"; runs already started go on in their clusters' channels: "
                            f"{', '.join(running)}")
            return run.to(Phase.CANCELLED, now, outcome, outcome=outcome)
        return super().apply(run, action, by, now)
