"""The domain model: runs, waves, gates, verdicts, approvals (DESIGN.md §4).

A run is an immutable value (a frozen pydantic model): a step returns a new run and the store
saves it with compare-and-set on ``seq``, the way kopf persists ``HandlerState`` between
attempts. Every field is plain JSON so the run store needs no custom codec.

Times are Unix seconds (float); durations are seconds; latencies milliseconds; success
rates percent (0-100).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from workflows.errors import InvalidRevision

REVISION_RE = re.compile(r"^asm-1-(\d{1,3})$")

#: Namespaces that are never part of the data-plane rollover: the control plane's own and
#: Kubernetes' system namespaces (the add-on refuses injection there).
SYSTEM_NAMESPACES = frozenset(
    {
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "gatekeeper-system",
        "aks-istio-system",
        "aks-istio-ingress",
        "aks-istio-egress",
        "calico-system",
        "tigera-operator",
    }
)


def parse_revision(text: str) -> str:
    """Return ``text`` if it is an add-on revision name (``asm-1-NN``).

    Raises:
        InvalidRevision: with the expected shape, e.g. for ``1.26`` or ``asm-126``.
    """
    if not REVISION_RE.match(text):
        hint = ""
        m = re.match(r"^v?1[.-](\d+)", text)
        if m:
            hint = f" Did you mean `asm-1-{m.group(1)}`?"
        raise InvalidRevision(
            f"`{text}` is not a mesh revision: revisions are named `asm-1-NN`, e.g. `asm-1-26`."
            + hint
        )
    return text


def revision_minor(revision: str) -> int:
    """``asm-1-26`` → 26."""
    m = REVISION_RE.match(revision)
    if not m:
        raise InvalidRevision(f"`{revision}` is not a mesh revision (`asm-1-NN`).")
    return int(m.group(1))


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def evolve(self, **changes: Any) -> Any:
        """A copy with ``changes`` applied, like ``dataclasses.replace``.

        Values must already have the field's type (models, not dicts): the copy is not
        validated again, which keeps a step on a 1,000-namespace run cheap.
        """
        return self.model_copy(update=changes)


class Verdict(StrEnum):
    """How a gate ends (Argo Rollouts' analysis phases, DESIGN.md §4)."""

    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"  # no or too little data: a person decides
    ERROR = "ERROR"  # could not measure: retry, then pause


class Phase(StrEnum):
    PLANNING = "planning"
    AWAITING_APPROVAL = "awaiting_approval"
    STARTING_CANARY = "starting_canary"
    ENABLING = "enabling"
    APPLYING = "applying"  # an ingress gateway or disable change is being applied
    CONTROL_PLANE = "waiting_control_plane"
    MIGRATING = "migrating"
    AWAITING_WAVE_APPROVAL = "awaiting_wave_approval"
    AWAITING_COMPLETION = "awaiting_completion"
    COMPLETING = "completing"
    PAUSED = "paused"
    HALTED = "halted"  # a campaign stopped by its failure budget or a person; resumable
    ROLLING_BACK = "rolling_back"
    # terminal
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    REFUSED = "refused"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_PHASES

    @property
    def waiting_for_person(self) -> bool:
        return self in PARKED_PHASES


TERMINAL_PHASES = frozenset(
    {Phase.COMPLETED, Phase.ROLLED_BACK, Phase.CANCELLED, Phase.REJECTED, Phase.REFUSED,
     Phase.FAILED}
)
PARKED_PHASES = frozenset(
    {Phase.AWAITING_APPROVAL, Phase.AWAITING_WAVE_APPROVAL, Phase.AWAITING_COMPLETION,
     Phase.PAUSED, Phase.HALTED}
)
#: the "cluster" of a run that spans the fleet (a campaign): its lease is the fleet's (one
#: campaign at a time), its channel and approvers the fleet file's ``campaigns``
FLEET_SCOPE = "@fleet"
#: the requester of runs a fleet-file policy starts (``auto: patch|minor``), not a person: no
#: requester check applies (the fleet file asked), and every approver may approve
POLICY_REQUESTER = "meshops"


class WaveStep(StrEnum):
    BASELINE = "baseline"
    LABEL = "label"
    RESTART = "restart"
    VERIFY = "verify"
    BAKE = "bake"
    DONE = "done"


class RollbackStep(StrEnum):
    RELABEL = "relabel"
    RESTART = "restart"
    VERIFY = "verify"
    REVERT = "revert"  # PUT [stable] and follow the operation
    DONE = "done"


class MetricTemplate(Frozen):
    """A team's own gate metric, like Flagger's MetricTemplate or Argo Rollouts'
    AnalysisTemplate: a PromQL query evaluated for each namespace of a wave at every gate
    sample (``{{ namespace }}`` and ``{{ interval }}`` are filled in), which must return
    one value within ``min``/``max``. A ``dry_run`` metric is evaluated and reported, never
    gating (Argo Rollouts' ``dryRun``)."""

    name: str
    query: str
    min: float | None = None
    max: float | None = None
    dry_run: bool = False


class CanaryThresholds(Frozen):
    """The canary gate's parameters (:mod:`workflows.canary`); rates in percentage points,
    restarts per hour, times in seconds."""

    false_rollback: float = Field(0.01, gt=0, lt=1)  # P(FAIL) of a healthy wave, at most
    missed: float = Field(0.01, gt=0, lt=1)  # P(PASS) of a detection-size regression
    error_tolerance_pts: float = 0.05  # errors above the weather that are not a regression
    error_detect_pts: float = 0.5  # errors above the weather that must not pass
    latency_tolerance: float = 0.1  # relative growth of a slow fraction tolerated
    latency_detect: float = 1.0  # growth at the ~1 % edge that must not pass (×2)
    tail_detect: float = 1.2  # growth at the next edge up that must not pass (×2.2)
    latency_floor_pts: tuple[float, float] = (0.02, 0.1)  # added to both (fractions ~0)
    tcp_tolerance_pts: float = 0.1
    tcp_detect_pts: float = 1.0
    restart_tolerance_per_h: float = 1.0
    restart_detect_per_h: float = 6.0
    tail_target: float = 0.01  # the latency edge: baseline slow fraction closest to this
    baseline_s: float = 3600.0  # the windows before the move that make the baseline
    max_extension: float = 1.0  # the bake may grow by this × the bake time
    material_share: float = 0.25  # a reporter with this share of requests must be judged
    error_limit: int = 3  # ERROR looks in a row → ERROR (Argo's consecutiveErrorLimit)
    max_control: int = 20  # not-yet-migrated namespaces read as the control, at most


class GateThresholds(Frozen):
    """The metric gate of DESIGN.md §5.2; every field overridable per cluster.

    ``canary`` parameterizes the gate the workers run (:mod:`workflows.canary`);
    ``failure_threshold`` counts looks in a row whose team metrics (``metrics``) fail;
    the other numbers are the former per-window gate's (:mod:`workflows.gates`), kept for
    the gate benchmark's comparison.
    """

    min_success_rate: float = 99.0  # percent
    max_success_rate_drop: float = 0.5  # percentage points below the baseline
    max_p99_ms: float = 500.0
    max_p99_ratio: float = 1.2  # × baseline p99
    min_requests: int = 100  # in the window; fewer → INCONCLUSIVE
    failure_threshold: int = 2  # failed samples in a row → FAIL (Flagger's `threshold`)
    error_limit: int = 3  # ERROR samples in a row → pause and ask
    rollout_deadline_s: float = 600.0
    metrics: list[MetricTemplate] = Field(default_factory=list)  # the team's own metrics
    canary: CanaryThresholds = Field(default_factory=CanaryThresholds)


class UpgradeOptions(Frozen):
    bake_s: float = 600.0
    interval_s: float = 60.0
    wave_size: int = 3
    pilot: list[str] = Field(default_factory=list)  # namespaces of wave 0; default: first one
    waves: list[list[str]] = Field(default_factory=list)  # explicit waves win over size
    approve_waves: bool = False  # an approval gate between waves
    only: list[str] = Field(default_factory=list)  # plan only these namespaces (inject)
    approval_timeout_s: float = 0.0  # an approval request expires after this; 0: never
    on_timeout: str = "hold"  # hold | rollback (what an expired request does after the plan)


class NamespaceMetrics(Frozen):
    """One namespace over one window: request count, success rate (%) and p99 (ms)."""

    requests: float
    success_rate: float | None  # None when there were no requests
    p99_ms: float | None  # None when the histogram had no data


class Check(Frozen):
    """One comparison of a gate: ``value`` against ``threshold`` with ``op`` (>= or <=).

    The canary gate's checks (``metric`` ``<signal>:<reporter>[>EDGEms]``, e.g.
    ``errors:destination``, ``latency:destination>250ms``; ``namespace`` a namespace or
    ``gateway/<deployment>``) give ``value`` (the canary's rate since the bake began),
    ``expected`` (its baseline moved by the control's change: the weather), ``threshold``
    (what is tolerated), ``control`` (the control's rate over the same windows) in ``unit``
    (``%`` of requests or connections, ``/h`` restarts), the ``status`` (ok | regressed |
    undecided | thin) and the test's ``confidence`` (0–1). A team metric's check has the
    template's name as ``metric``.
    """

    namespace: str
    metric: str  # success_rate | p99_ms | requests | <signal>:<reporter>… | a template
    value: float | None
    threshold: float
    op: str
    ok: bool
    expected: float | None = None
    control: float | None = None
    unit: str = ""
    status: str = ""
    confidence: float | None = None


class GateSample(Frozen):
    at: float
    verdict: Verdict
    checks: list[Check] = Field(default_factory=list)
    reason: str = ""


class Wave(Frozen):
    index: int
    namespaces: list[str]
    workloads: int = 0
    step: WaveStep = WaveStep.BASELINE
    baseline: dict[str, NamespaceMetrics] = Field(default_factory=dict)  # the former gate's
    baseline_wait_from: float | None = None  # waiting for a bake's worth of history since
    #: what the baseline step waits for: "history" (the longest bake's worth),
    #: "decidable" (enough for a bake to decide, :func:`workflows.waves._baseline_gaps`) or
    #: "control" (an earlier wave's namespaces to become one, ``_control_due``)
    baseline_wait_reason: Literal["history", "decidable", "control"] | None = None
    #: the baseline read ahead of the BASELINE step, while the run waited anyway
    #: (:func:`workflows.waves.read_baseline_ahead`): "ready" (nothing short or thin: the
    #: step does not read it again) or "short" (the step reads and waits as it does)
    baseline_ahead: Literal["ready", "short"] | None = None
    labelled: bool = False
    restart_token: str | None = None  # the restartedAt value this run writes
    restarted_at: float | None = None
    deleted_at: float | None = None  # the last pod meshops deleted (OnDelete workloads)
    preexisting: list[str] = Field(default_factory=list)  # workloads failing before the move
    bake_started_at: float | None = None
    #: the canary gate's comparison, fixed when the bake starts: the namespaces read as the
    #: control (not yet migrated) and the add-on ingress gateway Deployments of the canary
    #: and stable revisions
    control: list[str] = Field(default_factory=list)
    gateways: list[str] = Field(default_factory=list)
    samples: list[GateSample] = Field(default_factory=list)
    verdict: Verdict | None = None


class Approval(Frozen):
    """Who decided what on which gate, when (DESIGN.md §4)."""

    gate: str  # plan | wave-N | completion | inconclusive
    decision: str  # approve | reject | complete | rollback | cancel | pause | resume
    user: str
    at: float


class Event(Frozen):
    """One line of the run's history; the step log in the Slack thread is made of these."""

    at: float
    kind: str  # e.g. phase, step, gate, decision, error
    text: str
    data: dict[str, Any] = Field(default_factory=dict)


class Operation(Frozen):
    """A long-running ARM operation this run started (a managedCluster PUT), to follow.

    ``token`` is what :meth:`workflows.ports.MeshApi.operation_status` resumes the operation
    from in any worker, as a ``set_*`` call returned it: for AKS, azure-core's continuation
    token (the PUT's request and first answer, base64 JSON of a few kilobytes). The core
    never reads it. ``url`` is the field's older name, still read: callers that pass
    ``url=`` hold the same token there, and runs stored before tokens hold the operation's
    ``Azure-AsyncOperation`` URL.
    """

    revisions: list[str]
    token: str | None = None
    url: str | None = None
    #: when the poll schedule counts from (Unix s): the start of the step chained right
    #: after the PUT, which follows ARM's answer (``answered``), as azure-core's pollers
    #: count from the answer; until that step, the PUT's own step's start
    started_at: float
    #: False from the PUT until that chained step (runs stored before it: True)
    answered: bool = True

    @property
    def handle(self) -> str | None:
        """What to follow the operation by: ``token``, else ``url``; None when ARM gave none."""
        return self.token or self.url


class RetryState(Frozen):
    """One retry episode: the temporary errors in a row of one phase's step.

    Kept in the run so the bound holds across workers and restarts; cleared by the first
    tick that does not fail.
    """

    phase: Phase
    attempts: int  # temporary errors so far in this episode
    since: float  # when the episode began (Unix s)
    last_error: str


class Rollback(Frozen):
    reason: str
    step: RollbackStep = RollbackStep.RELABEL
    namespaces: list[str] = Field(default_factory=list)
    restart_token: str | None = None
    restarted_at: float | None = None
    deleted_at: float | None = None  # the last pod meshops deleted (OnDelete workloads)
    preexisting: list[str] = Field(default_factory=list)  # workloads failing before


class Run(Frozen):
    """One execution of a workflow (DESIGN.md §4–5)."""

    id: str
    # the registered workflow kind (workflows.kind.KINDS): upgrade | rollover | enable |
    # ingress | disable | ... ; a kind's own parameters go in ``params``
    kind: str = "upgrade"
    cluster: str
    requester: str
    channel: str  # the cluster's channel: the root message and its thread
    origin_channel: str = ""  # where the command was typed: ephemeral refusals go there
    canary_revision: str
    stable_revision: str | None = None
    target_version: str | None = None  # rollover: every sidecar must end on this patch
    ingress_mode: str | None = None  # ingress runs: External | Internal
    ingress_enabled: bool = True
    options: UpgradeOptions = Field(default_factory=UpgradeOptions)
    thresholds: GateThresholds = Field(default_factory=GateThresholds)
    phase: Phase = Phase.PLANNING
    paused_from: Phase | None = None  # what resume returns to
    pause_reason: str = ""
    waves: list[Wave] = Field(default_factory=list)
    wave_index: int = 0
    operation: Operation | None = None
    rollback: Rollback | None = None
    approvals: list[Approval] = Field(default_factory=list)
    history: list[Event] = Field(default_factory=list)
    outcome: str = ""
    created_at: float
    updated_at: float
    params: dict[str, Any] = Field(default_factory=dict)  # the kind's own parameters (JSON)
    retry: RetryState | None = None  # the current retry episode, if a step keeps failing
    seq: int = 0
    next_tick_at: float | None = None
    parked_at: float | None = None  # when the run began waiting for a person
    #: when the run entered its phase (:meth:`to`); None for runs stored before it was kept
    #: (the phase's last history entry says)
    phase_since: float | None = None
    expired_at: float | None = None  # when that wait's approval request expired
    #: a run read in part (the run store's recent-only read, for a tick): the index each of
    #: its lists starts at (history, then each wave's samples); () when read whole. Carried
    #: by :meth:`evolve`, so the save of what a step made of it knows what was left out.
    _read_from: tuple[int, ...] = PrivateAttr(default=())
    #: the run store's own fields of the stored run this was read from (its sequence number
    #: and list counts as the client returns them: ``{"seq": "7", "hlen": "40", …}``),
    #: carried by :meth:`evolve` like ``_read_from``: the save of what a step made of it
    #: need not read them again (its compare-and-set checks them where it writes). None:
    #: not read from a store.
    _stored: Mapping[str, Any] | None = PrivateAttr(default=None)

    @property
    def read_from(self) -> tuple[int, ...]:
        return self._read_from

    @property
    def stored_fields(self) -> Mapping[str, Any] | None:
        return self._stored

    @property
    def history_start(self) -> int:
        """The index of ``history[0]`` among all the run's events (0 when read whole)."""
        return self._read_from[0] if self._read_from else 0

    @property
    def history_len(self) -> int:
        """How many events the run has, those left out of a partial read included."""
        return self.history_start + len(self.history)

    @property
    def current_wave(self) -> Wave | None:
        if 0 <= self.wave_index < len(self.waves):
            return self.waves[self.wave_index]
        return None

    @property
    def migrated_namespaces(self) -> list[str]:
        """Namespaces this run has relabelled to the canary revision, in order."""
        return [ns for w in self.waves if w.labelled for ns in w.namespaces]

    def with_wave(self, wave: Wave) -> Run:
        waves = list(self.waves)
        waves[wave.index] = wave
        return self.evolve(waves=waves)  # type: ignore[no-any-return]

    def log(self, now: float, kind: str, text: str, **data: Any) -> Run:
        event = Event(at=now, kind=kind, text=text, data=data)
        return self.evolve(history=[*self.history, event])  # type: ignore[no-any-return]

    def to(self, phase: Phase, now: float, text: str | None = None, **changes: Any) -> Run:
        """The run in ``phase``, with a history line saying so."""
        if phase.waiting_for_person and not self.phase.waiting_for_person:
            changes.setdefault("parked_at", now)
            changes.setdefault("expired_at", None)
        elif not phase.waiting_for_person:
            changes.setdefault("parked_at", None)
            changes.setdefault("expired_at", None)
        if phase != self.phase:
            changes.setdefault("phase_since", now)
        run: Run = self.evolve(phase=phase, **changes)
        return run.log(now, "phase", text or f"phase → {phase.value}", phase=phase.value)


def system_namespace(name: str) -> bool:
    return name in SYSTEM_NAMESPACES or name.startswith("aks-istio-")
