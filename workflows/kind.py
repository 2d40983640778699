"""Workflow kinds and their registry: each kind of run is declared once, here is how.

A kind (``upgrade``, ``rollover``, ``enable``, ``ingress``, ``disable``, …) is one class in
its own module under :mod:`workflows.kinds`, registered once in ``workflows/kinds/__init__.py``
(the way Temporal hands a worker its workflow types, or Celery registers tasks). It declares:

- how it is started: the ``/mesh`` verb and usage it answers (:meth:`WorkflowKind.parse`),
  and what the request, the root message's title and a refusal say about it;
- its steps: one step function per phase it passes through (:attr:`WorkflowKind.steps`);
- which decisions it allows in which phase and who may take them
  (:attr:`WorkflowKind.decisions`), and what each does (:meth:`WorkflowKind.apply`);
- the buttons its root message offers in each phase (:attr:`WorkflowKind.buttons`);
- what a failure, an exhausted retry episode or an expired approval request does.

The engine, the Slack rendering, the bot and the release watcher only ever ask the registry
(:func:`kind_of`, :data:`KINDS`); nothing outside a kind's module asks ``if kind == …``.
Phases are the shared lifecycle vocabulary (:class:`workflows.model.Phase`); a kind picks
the ones it uses and keeps finer progress in its own state (waves, an operation).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tenacity import RetryCallState, wait_exponential_jitter

from workflows.errors import InvalidCommand, PermanentError
from workflows.model import Phase, Run
from workflows.policy import Role
from workflows.ports import ClusterPorts, Workload

#: Every decision a person can take on a run (a button's action or a typed command).
ACTIONS = ("approve", "reject", "pause", "resume", "rollback", "complete", "cancel", "halt")

PAST = {"approve": "approved", "reject": "rejected", "cancel": "cancelled",
        "complete": "completion approved", "rollback": "roll back requested",
        "pause": "paused", "resume": "resumed", "halt": "halted"}


@dataclass(frozen=True)
class StepResult:
    """What a step did: the run after it, and when to tick again.

    ``recheck_after`` is seconds until the next tick (0: at once); None when the run waits
    for a person or has ended. ``changed`` is False when the step only observed.
    ``wake``: the workloads whose rollout the run waits for. A worker may watch them and
    tick the run as soon as they are rolled out, before ``recheck_after`` (as ``kubectl
    rollout status`` watches); the recheck stands either way, so a lost watch only costs
    time.
    """

    run: Run
    recheck_after: float | None
    changed: bool = True
    wake: tuple[Workload, ...] = ()


StepFn = Callable[[Run, ClusterPorts, float], StepResult]


@dataclass(frozen=True)
class Decision:
    """A decision a kind allows: in which phases, and who may take it."""

    phases: frozenset[Phase]
    role: Role = Role.PARTICIPANT


@dataclass(frozen=True)
class Confirm:
    """Slack's confirmation dialog on a button (Block Kit ``confirm`` object).

    ``text`` may name ``{stable}`` and ``{canary}``: the run's revisions.
    """

    title: str
    text: str
    yes: str
    danger: bool = False


@dataclass(frozen=True)
class Button:
    action: str  # one of ACTIONS; the button's action_id is ``meshops_<action>``
    label: str
    style: str | None = None  # primary | danger
    confirm: Confirm | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of a step that hits temporary errors (Temporal's ``RetryPolicy``).

    The n-th retry waits ``initial_interval_s × backoff_coefficient^(n-1)`` seconds, capped
    at ``maximum_interval_s``, plus up to ``jitter_s`` of random jitter (tenacity's
    ``wait_exponential_jitter``), and never less than the service's Retry-After. After
    ``maximum_attempts`` temporary errors in a row the kind decides
    (:meth:`WorkflowKind.on_retries_exhausted`): by default the run pauses for a person.
    """

    initial_interval_s: float = 2.0
    backoff_coefficient: float = 2.0
    maximum_interval_s: float = 60.0
    maximum_attempts: int = 8
    jitter_s: float = 1.0

    def delay(self, attempt: int, retry_after: float = 0.0) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        wait = wait_exponential_jitter(multiplier=self.initial_interval_s,
                                       max=self.maximum_interval_s,
                                       exp_base=self.backoff_coefficient, jitter=self.jitter_s)
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return max(float(wait(state)), retry_after)


@dataclass(frozen=True)
class StartRun:
    """A command that starts a run of ``kind`` (what a kind's :meth:`~WorkflowKind.parse`
    returns). ``options`` are upgrade options (``UpgradeOptions`` fields); ``fields`` are
    other ``Run`` fields the kind sets (its ``params`` among them)."""

    kind: str
    cluster: str
    revision: str = ""
    options: dict[str, object] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)


class WorkflowKind:
    """Base of every workflow kind; a kind overrides what differs from these defaults."""

    name: ClassVar[str]
    verb: ClassVar[str | None] = None  # the /mesh verb that starts it; None: not typed
    usage: ClassVar[str] = ""  # e.g. "enable <cluster> [revision]"
    steps: ClassVar[Mapping[Phase, StepFn]] = {}
    decisions: ClassVar[Mapping[str, Decision]] = {}
    buttons: ClassVar[Mapping[Phase, tuple[Button, ...]]] = {}
    retry: ClassVar[RetryPolicy] = RetryPolicy()

    # -- starting -----------------------------------------------------------------------

    def parse(self, args: list[str], wrong: Callable[[str], InvalidCommand]) -> StartRun:
        """The command's arguments (after the verb) as a :class:`StartRun`.

        Raises ``wrong(reason)`` (an :class:`InvalidCommand` with the usage) or
        ``InvalidRevision``.
        """
        raise wrong(f"`{self.name}` is not started by a command.")

    def describe(self, run: Run) -> str:
        """What the request asks, for the run's first history line: "upgrade dev to …"."""
        return f"{self.name} {run.cluster}"

    def title(self, run: Run) -> str:
        """The header of the run's root message."""
        return f"{self.name.capitalize()} of {run.cluster}"

    def subject(self, run: Run) -> str:
        """The run as the subject of a sentence ("Enabling the mesh on `dev`")."""
        return f"The {self.name} of `{run.cluster}`"

    def accepted(self, run: Run) -> str:
        """The ephemeral answer when the command has been stored."""
        return (f"Checking `{run.cluster}` (run `{run.id}`); the plan will be posted in "
                f"<#{run.channel}> for an approver.")

    def plan_note(self, run: Run) -> str:
        """A context line under the plan while it awaits approval ("" for none)."""
        return ""

    def body(self, run: Run) -> str:
        """The root message's own section (mrkdwn, under 2,900 characters; "" for none):
        a kind whose progress is not waves shows it here (a campaign's stages)."""
        return ""

    # -- stepping -----------------------------------------------------------------------

    def step(self, run: Run, ports: ClusterPorts, now: float) -> StepResult:
        """Run the step of the run's phase. Raises the ports' errors."""
        fn = self.steps.get(run.phase)
        if fn is None:
            raise PermanentError(f"a {self.name} run has no step in phase {run.phase.value}")
        return fn(run, ports, now)

    def on_permanent_error(self, run: Run, reason: str, now: float) -> Run:
        """A step failed for good: the run fails with the reason (nothing to undo)."""
        return run.to(Phase.FAILED, now, f"failed: {reason}", outcome=reason)

    def on_retries_exhausted(self, run: Run, reason: str, now: float) -> Run:
        """A step kept failing temporarily: pause and ask (before anything changed, end)."""
        if run.phase == Phase.PLANNING:
            why = f"{reason}; nothing was changed, try again later"
            return run.to(Phase.FAILED, now, f"failed: {why}", outcome=why)
        return run.to(Phase.PAUSED, now, f"paused: {reason}", paused_from=run.phase,
                      pause_reason=reason)

    def on_expired(self, run: Run, what: str, waited: str, now: float) -> Run:
        """A later approval request expired: hold (the run waits as it is)."""
        return run.log(now, "expiry", f"{what} expired after {waited}; holding: the run "
                                      "waits as it is until someone decides")

    # -- decisions ----------------------------------------------------------------------

    def gate(self, run: Run) -> str:
        """The name of the gate a decision in the run's phase is recorded on."""
        return {Phase.AWAITING_APPROVAL: "plan", Phase.AWAITING_COMPLETION: "completion",
                Phase.PAUSED: "pause"}.get(run.phase, f"wave-{run.wave_index + 1}")

    def approve(self, run: Run, by: str, now: float) -> Run:
        """What ``approve`` does in the run's phase (the plan's approval by default)."""
        raise PermanentError(f"a {self.name} run has nothing to approve")

    def apply(self, run: Run, action: str, by: str, now: float) -> Run:
        """Apply an allowed, authorised decision; ``by`` is "by <@U…>"."""
        if action == "approve":
            return self.approve(run, by, now)
        if action == "reject":
            return run.to(Phase.REJECTED, now, f"rejected {by}", outcome=f"rejected {by}")
        if action == "cancel":
            return run.to(Phase.CANCELLED, now, f"cancelled {by}", outcome=f"cancelled {by}")
        if action == "pause":
            return run.to(Phase.PAUSED, now, f"paused {by}", paused_from=run.phase,
                          pause_reason=f"paused {by}")
        if action == "resume":
            return run.to(run.paused_from or Phase.PLANNING, now, f"resumed {by}",
                          paused_from=None, pause_reason="")
        raise PermanentError(f"a {self.name} run cannot {action}")


class Registry:
    """The workflow kinds by name and by ``/mesh`` verb.

    The built-in kinds register themselves when :mod:`workflows.kinds` is first imported;
    the registry imports it lazily on first use, so any part of meshops may ask. ``load``:
    what registers them (that import by default). Thread-safe: the bot answers on several
    threads, and one asking while another imports waits for the kinds (not an empty
    registry: "Unknown command `upgrade`" to the first people after a restart).
    """

    def __init__(self, load: Callable[[], object] | None = None) -> None:
        self._kinds: dict[str, WorkflowKind] = {}
        self._loaded = False
        self._loading = False
        # re-entrant: the import itself registers (and may ask) on the importing thread
        self._lock = threading.RLock()
        self._loader = load or (lambda: importlib.import_module("workflows.kinds"))

    def register(self, *kinds: WorkflowKind) -> None:
        """Register ``kinds``; a name or verb taken by another kind is a programming error."""
        for kind in kinds:
            other = self._kinds.get(kind.name)
            if other is not None and type(other) is not type(kind):
                raise ValueError(f"workflow kind {kind.name!r} is already registered")
            if kind.verb and any(k.verb == kind.verb and k.name != kind.name
                                 for k in self._kinds.values()):
                raise ValueError(f"verb {kind.verb!r} is already taken")
            self._kinds[kind.name] = kind

    def unregister(self, name: str) -> None:
        self._kinds.pop(name, None)

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded or self._loading:  # loaded meanwhile, or asked from the import
                return
            self._loading = True
            try:
                self._loader()
            finally:
                self._loading = False
            self._loaded = True

    def get(self, name: str) -> WorkflowKind:
        """The kind called ``name``; ``PermanentError`` for a kind nobody registered."""
        self._load()
        try:
            return self._kinds[name]
        except KeyError:
            raise PermanentError(
                f"no workflow kind {name!r} is registered (known: "
                f"{', '.join(sorted(self._kinds))})") from None

    def by_verb(self, verb: str) -> WorkflowKind | None:
        self._load()
        return next((k for k in self._kinds.values() if k.verb == verb), None)

    def __iter__(self) -> Iterator[WorkflowKind]:
        self._load()
        return iter(list(self._kinds.values()))


KINDS = Registry()


def kind_of(run: Run) -> WorkflowKind:
    """The registered kind of ``run``."""
    return KINDS.get(run.kind)
