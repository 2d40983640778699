"""Advancing any run, whatever its kind: ticks, people's decisions, expiring requests.

``tick(run, ports, now)`` runs the one step the run's kind calls for in its phase. Each step
observes the world through the ports, decides in pure code, then converges the world to an
absolute state, so running a step twice writes nothing the second time. A step never
sleeps: it returns how long to wait before the next tick, or ``None`` when the run waits
for a person or has ended. Errors of the ports are handled here, in the manner of kopf's
``TemporaryError`` / ``PermanentError``: a temporary error is retried with exponential
backoff and jitter (never sooner than the service's Retry-After), one history line per
episode, up to the kind's :class:`~workflows.kind.RetryPolicy`; then the kind decides
(by default the run pauses with the reason and a *Resume* button). A permanent error is the
kind's to handle (an upgrade past its canary start rolls back; others fail).

``decide(run, action, user, policy, now)`` applies a person's decision as one state change,
or raises :class:`DecisionRefused` saying what happened instead (StackStorm's inquiry
failure modes: already responded, unauthorized, timed out).
"""

from __future__ import annotations

from workflows.errors import DecisionRefused, PermanentError, TemporaryError
from workflows.kind import ACTIONS, PAST, StepResult, kind_of
from workflows.model import Approval, Phase, RetryState, Run
from workflows.policy import ClusterPolicy, authorise
from workflows.ports import ClusterPorts


def tick(run: Run, ports: ClusterPorts, now: float) -> StepResult:
    """Advance ``run`` by one step of its kind (see the module docstring)."""
    if run.phase.terminal or run.phase.waiting_for_person:
        return StepResult(run, None, changed=False)
    try:
        kind = kind_of(run)
    except PermanentError as exc:  # stored by a deployment that knew a kind this one does not
        return StepResult(run.to(Phase.FAILED, now, f"failed: {exc}", outcome=str(exc)), None)
    try:
        result = kind.step(run, ports, now)
    except TemporaryError as exc:
        return _retry(run, exc, now)
    except PermanentError as exc:
        ended = kind.on_permanent_error(run.evolve(retry=None), str(exc), now)
        return StepResult(ended, _next_tick(ended))
    if result.run.retry is not None:  # the episode is over: the step went through
        return StepResult(result.run.evolve(retry=None), result.recheck_after, True,
                          result.wake)
    return result


def _next_tick(run: Run) -> float | None:
    """At once while the run works; None once it waits for a person or has ended."""
    return None if run.phase.waiting_for_person or run.phase.terminal else 0.0


def _retry(run: Run, exc: TemporaryError, now: float) -> StepResult:
    kind = kind_of(run)
    policy = kind.retry
    episode = run.retry if run.retry is not None and run.retry.phase == run.phase else None
    attempts = (episode.attempts if episode else 0) + 1
    if attempts > policy.maximum_attempts:
        since = episode.since if episode else now
        reason = (f"{exc} (still failing after {attempts - 1} tries over "
                  f"{_duration(now - since)})")
        ended = kind.on_retries_exhausted(run.evolve(retry=None), reason, now)
        return StepResult(ended, _next_tick(ended))
    delay = policy.delay(attempts, exc.retry_after)
    state = RetryState(phase=run.phase, attempts=attempts,
                       since=episode.since if episode else now, last_error=str(exc))
    run = run.evolve(retry=state)
    if episode is None:  # one line per episode, not per retry
        run = run.log(now, "retry", f"{exc} — retrying with backoff (up to "
                                    f"{policy.maximum_attempts} tries)")
    return StepResult(run, delay)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def expire(run: Run, now: float) -> Run | None:
    """Expire the run's pending approval request if it has waited too long.

    The plan's approval expiring cancels the run (nothing has changed yet). Later requests
    (wave approval, completion, a pause) are the kind's to handle
    (:meth:`~workflows.kind.WorkflowKind.on_expired`: hold by default; a wave workflow
    rolls back when ``options.on_timeout`` is ``rollback``).

    Returns:
        The changed run, or None when nothing expired (no wait, no timeout, not yet, or
        this wait already expired).
    """
    timeout = run.options.approval_timeout_s
    if (not run.phase.waiting_for_person or run.parked_at is None or run.expired_at is not None
            or timeout <= 0 or now - run.parked_at < timeout):
        return None
    waited = _duration(timeout)
    if run.phase == Phase.AWAITING_APPROVAL:
        return run.to(Phase.CANCELLED, now,
                      f"expired: nobody approved the plan within {waited}; nothing was changed",
                      outcome=f"the plan's approval request expired after {waited}")
    what = {Phase.AWAITING_WAVE_APPROVAL: f"the approval of wave {run.wave_index + 1}",
            Phase.AWAITING_COMPLETION: "the completion decision",
            Phase.PAUSED: "the decision on the paused run"}.get(run.phase, "the request")
    return kind_of(run).on_expired(run.evolve(expired_at=now), what, waited, now)


def _already(run: Run, action: str) -> str:
    last = next((a for a in reversed(run.approvals)), None)
    by = f" ({PAST.get(last.decision, last.decision)} by <@{last.user}>)" if last else ""
    if run.phase.terminal:
        return f"Run `{run.id}` has already ended: {run.phase.value}{by}. Nothing to {action}."
    return (f"Run `{run.id}` is {run.phase.value.replace('_', ' ')}{by}; "
            f"`{action}` is not possible now.")


def decide(run: Run, action: str, user: str, policy: ClusterPolicy, now: float) -> Run:
    """Apply a person's decision to ``run``.

    Args:
        action: approve | reject | cancel | complete | rollback | pause | resume.
        user: the Slack user id of the person.
        policy: the cluster's access policy.
    Returns:
        The run after the decision (not yet saved).
    Raises:
        DecisionRefused: the run's kind has no such decision, the run is not in a state that
            allows it (says what happened instead), or this person may not take it (says
            who may).
    """
    if action not in ACTIONS:
        raise DecisionRefused(f"`{action}` is not a decision meshops knows.")
    kind = kind_of(run)
    rule = kind.decisions.get(action)
    if rule is None:
        if run.phase.terminal:
            raise DecisionRefused(_already(run, action))
        raise DecisionRefused(f"Run `{run.id}` ({kind.name}) has no `{action}`; it ends when "
                              "the change is verified in the cluster.")
    if run.phase not in rule.phases:
        raise DecisionRefused(_already(run, action))
    authorise(rule.role, action, user, run.requester, run.cluster, run.id, policy)
    run = run.evolve(approvals=[*run.approvals, Approval(gate=kind.gate(run), decision=action,
                                                         user=user, at=now)],
                     retry=None)
    return kind.apply(run, action, f"by <@{user}>", now)
