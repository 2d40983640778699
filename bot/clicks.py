"""Clicks: the run buttons (approve, reject, cancel, complete, roll back, pause, resume) and
the buttons of release notices (*Plan upgrade*, *Restart workloads*).

A run button carries only the run id; its action is the ``action_id``. The click is applied
as one atomic decision before it is acked (or, while a step holds the run, persisted before
the ack and applied by the sweep), so an acknowledged click is never lost; a click the run
can no longer take — or this person may not — is answered ephemerally with what happened
instead (DESIGN.md §6).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog
from slack_bolt import Ack, App, Respond

from bot.deps import BotDeps
from workers.watcher import CAMPAIGN_ACTION, PLAN_ACTION, ROLLOVER_ACTION
from workflows.errors import MeshopsError, Refusal, RunBusy
from workflows.kind import ACTIONS, KINDS, StartRun
from workflows.model import REVISION_RE

log = structlog.get_logger("meshops.bot")

ACTION_RE = re.compile(r"^meshops_(" + "|".join(ACTIONS) + r")$")


def _ephemeral(respond: Respond, text: str) -> None:
    respond(text=text, response_type="ephemeral", replace_original=False)


def register(app: App, deps: BotDeps) -> None:
    engine, audit = deps.engine, deps.audit

    def on_click(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                 respond: Respond) -> None:
        """Apply the decision, then ack: a bot killed in between leaves the click
        unacknowledged (Slack shows it failed), never acknowledged and lost. A run busy
        with a step gets the decision persisted before the ack (the sweep applies it).

        What follows the ack waits for the HTTP answer (:class:`bot.deps.AfterAnswer`): the
        audit record, the ephemeral reply, and the tick and Slack sync of the decided run.
        A bot killed before it published the tick loses nothing: the decision is stored
        with its next tick due now, and beat's sweep re-enqueues a run that late."""
        verb = action["action_id"].removeprefix("meshops_")
        run_id = str(action.get("value", ""))
        user = body["user"]["id"]
        at = time.time()  # the record keeps the time of the click

        def then(work: Callable[..., None], *args: Any, **kwargs: Any) -> None:
            deps.after_answer(partial(work, *args, **kwargs))

        def unavailable(exc: MeshopsError) -> None:
            ack()
            then(_ephemeral, respond, f":warning: meshops could not take that now ({exc}). "
                                      "Nothing changed; try again.")

        try:
            run = engine.decide(run_id, verb, user, defer=deps.after_answer)
        except RunBusy:
            try:
                engine.queue_decision(run_id, verb, user, body.get("response_url", ""))
            except MeshopsError as exc:
                return unavailable(exc)
            ack()
            then(audit.record, "click", user, verb, run=run_id, outcome="queued: run busy",
                 at=at)
            then(_ephemeral, respond, f"Run `{run_id}` is in the middle of a step; your "
                                      f"{verb} is recorded and applied in a few seconds.")
            return None
        except Refusal as exc:
            ack()
            log.info("click.refused", user=user, run_id=run_id, action=verb, reason=str(exc))
            then(audit.record, "click", user, verb, run=run_id, outcome=f"refused: {exc}",
                 at=at)
            then(_ephemeral, respond, f":warning: {exc}")
            return None
        except MeshopsError as exc:
            return unavailable(exc)
        ack()
        then(audit.record, "click", user, verb, run=run_id, cluster=run.cluster, at=at)
        then(deps.after_decision, run)
        return None

    app.action(ACTION_RE)(on_click)

    def on_plan_click(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        """*Plan upgrade* on a release notice: a worker posts the dry-run plan."""
        ack()
        cluster, _, revision = str(action.get("value", "")).partition("|")
        user = body["user"]["id"]
        if cluster not in engine.fleet.clusters or not revision:
            return
        # read-only, after the answer (as the plan command's, bot.commands)
        deps.after_answer(partial(audit.record, "click", user, f"plan {cluster} {revision}",
                                  cluster=cluster, at=time.time()))
        deps.after_answer(partial(deps.enqueue_answer, f"plan {cluster} {revision}",
                                  body.get("response_url", "")))

    app.action(PLAN_ACTION)(on_plan_click)

    def on_campaign_click(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        """*Plan fleet campaign* on a release notice: a worker posts the campaign's dry
        run (``/mesh campaign plan <revision>``) to the person who clicked."""
        ack()
        revision = str(action.get("value", ""))
        user = body["user"]["id"]
        if engine.fleet.campaigns is None or not REVISION_RE.match(revision):
            return
        deps.after_answer(partial(audit.record, "click", user, f"campaign plan {revision}",
                                  at=time.time()))
        deps.after_answer(partial(deps.enqueue_answer, f"campaign plan {revision}",
                                  body.get("response_url", "")))

    app.action(CAMPAIGN_ACTION)(on_campaign_click)

    def on_rollover_click(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                          respond: Respond) -> None:
        """*Restart workloads* on a patch notice: a patch rollover run, planned like an
        upgrade and approved by another approver."""
        ack()
        cluster, revision, version = (str(action.get("value", "")).split("|") + ["", ""])[:3]
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id", "")
        request = StartRun("rollover", cluster, revision,
                           fields={"target_version": version or None})
        try:
            run = engine.start(request, user, channel, defer=deps.after_answer)
            audit.record("click", user, f"rollover {cluster} {revision} {version}",
                         run=run.id, cluster=cluster)
        except Refusal as exc:
            audit.record("click", user, f"rollover {cluster} {revision}",
                         outcome=f"refused: {exc}")
            _ephemeral(respond, f":warning: {exc}")
            return
        deps.enqueue_tick(run.id, run.seq)
        _ephemeral(respond, KINDS.get(run.kind).accepted(run))

    app.action(ROLLOVER_ACTION)(on_rollover_click)
