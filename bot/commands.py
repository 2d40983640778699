"""The ``/mesh`` slash command: validate, authorise, store, enqueue, ack — within Slack's 3 s.

Nothing here waits on ARM, Kubernetes or Prometheus: a run is stored in PLANNING and the
worker's plan step reads the world; slow read-only commands (status, revisions, plan,
inject) are acked and answered by a worker through the command's ``response_url``. A
command that starts a run is whatever registered kind owns its verb
(:mod:`workflows.kind`), so a new kind needs nothing here. Every refusal is ephemeral and
says what would be right; every command is audited, refused ones included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog
from slack_bolt import Ack, App

from bot.deps import BotDeps
from bot.forms import FORM_COMMANDS
from workers.views import run_history_text, runs_text
from workflows.commands import (
    Decide,
    FleetView,
    Help,
    Inject,
    Plan,
    PlanCampaign,
    Revisions,
    Runs,
    StartRun,
    Status,
    parse,
    usage,
)
from workflows.errors import DecisionRefused, InvalidCommand, MeshopsError, Refusal, RunBusy
from workflows.kind import KINDS
from workflows.syntax import duration_text, timing_problem

log = structlog.get_logger("meshops.bot")


def help_text(command: str) -> str:
    return (f"*meshops* runs canary upgrades of the AKS Istio add-on.\n{usage(command)}\n"
            "A run is planned, approved by an approver other than the requester, migrated "
            "wave by wave with a metric gate on each, and completed or rolled back.")


Answer = Callable[[object, dict[str, Any], str, str], str]
OpenForm = Callable[[str, dict[str, Any], str, str], None]


def make_answer(deps: BotDeps) -> Answer:
    """``answer(cmd, command, user, channel)``: do what a parsed command asks (store, enqueue)
    and return its ephemeral ack text; raises :class:`Refusal` (said to the person) or
    :class:`MeshopsError` (meshops could not take it now). Shared by the typed command and
    the forms (:mod:`bot.forms`), so a submitted form is the typed command."""
    engine, command_name = deps.engine, deps.command_name

    def check_timing(cluster: str, options: dict[str, object]) -> None:
        """A ``--bake`` or ``--interval`` given alone must still fit the cluster's default
        of the other (the parser checks the two when both are given)."""
        if "bake_s" not in options and "interval_s" not in options:
            return
        engine.fleet.cluster(cluster)
        opts = engine.fleet.upgrade_options(cluster, options)
        problem = timing_problem(opts.bake_s, opts.interval_s)
        if problem:
            raise InvalidCommand(f"{problem} (`{cluster}` bakes {duration_text(opts.bake_s)} "
                                 f"with an interval of {duration_text(opts.interval_s)} "
                                 "unless told otherwise.)")

    def answer(cmd: object, command: dict[str, Any], user: str, channel: str) -> str:
        """The ephemeral ack text of a parsed command (its side effects done)."""
        text = command.get("text", "")
        if isinstance(cmd, Help):
            return help_text(command_name)
        if isinstance(cmd, Plan | StartRun):
            check_timing(cmd.cluster, cmd.options)
        if isinstance(cmd, Status | Revisions | Plan | FleetView):
            cluster = None if isinstance(cmd, FleetView) else cmd.cluster
            if cluster:
                engine.fleet.cluster(cluster)
            # read-only: published after the answer (a bot killed in between leaves the
            # person without the answer, nothing half done; they ask again)
            deps.after_answer(partial(deps.enqueue_answer, text,
                                      command.get("response_url", "")))
            return f"Looking at ARM and Kubernetes for `{command_name} {text[:500]}` …"
        if isinstance(cmd, PlanCampaign):
            if engine.fleet.campaigns is None:
                raise InvalidCommand(
                    "The fleet file has no `campaigns:` section: campaigns need its stages "
                    "(clusters by name or labels, in order), a channel and approvers. See "
                    "`examples/fleet.azure.yaml`.")
            deps.after_answer(partial(deps.enqueue_answer, text,
                                      command.get("response_url", "")))
            return (f"Planning a campaign across {len(engine.fleet.clusters)} clusters "
                    "(ARM's revisions, upgrade paths and maintenance windows) …")
        if isinstance(cmd, Runs):
            if cmd.run_id:
                return run_history_text(engine.store.get(cmd.run_id))
            return runs_text(engine, cmd.cluster)
        if isinstance(cmd, StartRun):
            run = engine.start(cmd, user, channel, defer=deps.after_answer)
            # after the answer: the run is stored with its first tick due now, so a bot
            # killed before it published the tick leaves it to beat's sweep
            deps.after_answer(partial(deps.enqueue_tick, run.id, run.seq))
            return KINDS.get(run.kind).accepted(run)
        if isinstance(cmd, Inject):
            engine.fleet.cluster(cmd.cluster)
            if not engine.policy(cmd.cluster).may_request(user):
                raise DecisionRefused(f"You may not change `{cmd.cluster}`.")
            deps.enqueue_answer(text, command.get("response_url", ""), user, channel)
            return (f"{'Removing' if cmd.remove else 'Labelling'} "
                    f"{', '.join(cmd.namespaces)} on `{cmd.cluster}` …")
        if isinstance(cmd, Decide):
            try:
                run = engine.decide(cmd.run_id, cmd.action, user, defer=deps.after_answer)
            except RunBusy:  # persisted before the ack; the sweep applies it
                engine.queue_decision(cmd.run_id, cmd.action, user,
                                      command.get("response_url", ""))
                return (f"Run `{cmd.run_id}` is in the middle of a step; your {cmd.action} is "
                        "recorded and applied in a few seconds.")
            deps.after_answer(partial(deps.after_decision, run))  # as a click's (bot.clicks)
            return (f"Run `{run.id}`: {cmd.action} recorded; it is now "
                    f"{run.phase.value.replace('_', ' ')}.")
        raise DecisionRefused(f"Try `{command_name} help`.")

    return answer


def register(app: App, deps: BotDeps, answer: Answer, open_form: OpenForm) -> None:
    """The ``/mesh`` command: a verb that has a form and nothing after it opens the form
    (:data:`bot.forms.FORM_COMMANDS`); anything else is parsed and answered."""
    command_name = deps.command_name

    def on_command(ack: Ack, command: dict[str, Any]) -> None:
        user, channel = command["user_id"], command.get("channel_id", "")
        text = command.get("text", "")[:500]
        outcome = "ok"
        try:
            form = FORM_COMMANDS.get(" ".join(text.split()).lower())
            if form:
                outcome = "form"
                open_form(form, command, user, channel)
                ack()  # nothing to say: the form opens
                return
            cmd = parse(command.get("text", ""), command_name)
            ack(response_type="ephemeral", text=answer(cmd, command, user, channel))
        except Refusal as exc:
            log.info("command.refused", user=user, text=text[:200], reason=str(exc))
            outcome = f"refused: {exc}"
            ack(response_type="ephemeral", text=f":warning: {exc}")
        except MeshopsError as exc:
            log.warning("command.failed", user=user, error=str(exc))
            outcome = f"failed: {exc}"
            ack(response_type="ephemeral",
                text=f":warning: meshops could not take that now ({exc}). Nothing changed.")
        finally:
            # after the answer: the record keeps the time the command was taken
            deps.after_answer(partial(deps.audit.record, "command", user,
                                      f"{command_name} {text}".strip(), outcome=outcome,
                                      channel=channel, at=time.time()))

    app.command(command_name)(on_command)
