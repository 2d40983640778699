"""The Slack front door: a slack-bolt App with the ``/mesh`` command and the run buttons.

Listeners follow bolt-python's style: plain functions whose dependencies come in by name
(``ack``, ``command``, ``body``, ``action``, ``respond``). A command is validated,
authorised, stored and enqueued, then acked — all within Slack's 3 s, since nothing here
waits on ARM, Kubernetes or Prometheus (the worker's plan step does). A click is acked
first, then applied as one atomic decision; a refused click is answered ephemerally with
what happened instead. Buttons carry only the run id (DESIGN.md §6).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import structlog
from slack_bolt import Ack, App, BoltResponse, Respond
from slack_sdk import WebClient

from workers.config import Fleet
from workers.engine import Engine
from workers.views import run_history_text, runs_text
from workers.watcher import PLAN_ACTION, ROLLOVER_ACTION
from workflows.commands import (
    Decide,
    Disable,
    Enable,
    Help,
    Ingress,
    Inject,
    Plan,
    Revisions,
    Runs,
    Status,
    Upgrade,
    parse,
    usage,
)
from workflows.errors import (
    ClusterBusy,
    DecisionRefused,
    InvalidCommand,
    InvalidRevision,
    MeshopsError,
    RunNotFound,
    UnknownCluster,
)
from workflows.model import Run

log = structlog.get_logger("meshops.bot")

ACTION_RE = re.compile(r"^meshops_(approve|reject|cancel|complete|rollback|pause|resume)$")


def help_text(command: str) -> str:
    return (f"*meshops* runs canary upgrades of the AKS Istio add-on.\n{usage(command)}\n"
            "A run is planned, approved by an approver other than the requester, migrated "
            "wave by wave with a metric gate on each, and completed or rolled back.")


def create_app(fleet: Fleet, engine: Engine, client: WebClient, signing_secret: str | None,
               enqueue_tick: Callable[[str, int], None],
               enqueue_notify: Callable[[str], None],
               enqueue_answer: Callable[..., None] = lambda *args: None) -> App:
    """Build the Bolt app.

    Args:
        signing_secret: HTTP mode verifies every request's ``X-Slack-Signature`` (v0 HMAC,
            5 minutes of clock skew at most) and answers 401 otherwise; None in Socket Mode.
        enqueue_tick / enqueue_notify / enqueue_answer: how work reaches the workers (Celery
            in production); slow read-only commands are answered by a worker.
    """
    # Listeners run in the request's own thread: they only touch Redis, so the ack is as
    # fast as Bolt's own, and no executor queue stands between a request and its ack.
    app = App(client=client, signing_secret=signing_secret,
              request_verification_enabled=signing_secret is not None,
              process_before_response=True)
    command_name = fleet.slack.command

    def after_decision(run: Run) -> None:
        if not run.phase.terminal and not run.phase.waiting_for_person:
            enqueue_tick(run.id, run.seq)
        enqueue_notify(run.id)

    audit = engine.audit

    if fleet.slack.app_id:
        @app.middleware
        def only_our_app(body: dict[str, Any], next: Callable[[], None]  # noqa: A002
                         ) -> BoltResponse | None:
            app_id = body.get("api_app_id")
            if app_id and app_id != fleet.slack.app_id:
                log.warning("request.other_app", api_app_id=app_id)
                audit.record("command", str((body.get("user") or {}).get("id")
                                            or body.get("user_id", "?")),
                             f"request of app {app_id}", outcome="refused: another app")
                return BoltResponse(status=200, headers={"content-type": "application/json"},
                                    body=json.dumps({"response_type": "ephemeral", "text": (
                                        ":warning: That request came from another Slack "
                                        "app; meshops ignores it.")}))
            next()
            return None

    def on_command(ack: Ack, command: dict[str, Any]) -> None:
        user, channel = command["user_id"], command.get("channel_id", "")
        text = command.get("text", "")[:500]
        outcome = "ok"
        try:
            cmd = parse(command.get("text", ""), command_name)
            if isinstance(cmd, Help):
                ack(response_type="ephemeral", text=help_text(command_name))
            elif isinstance(cmd, Status | Revisions | Plan):
                if getattr(cmd, "cluster", None):
                    engine.fleet.cluster(cmd.cluster)  # type: ignore[arg-type]
                enqueue_answer(command.get("text", ""), command.get("response_url", ""))
                ack(response_type="ephemeral",
                    text=f"Looking at ARM and Kubernetes for `{command_name} {text}` …")
            elif isinstance(cmd, Runs):
                if cmd.run_id:
                    answer = run_history_text(engine.store.get(cmd.run_id))
                else:
                    answer = runs_text(engine, cmd.cluster)
                ack(response_type="ephemeral", text=answer)
            elif isinstance(cmd, Upgrade):
                run = engine.start_upgrade(cmd.cluster, cmd.revision, user, channel,
                                           dict(cmd.options))
                enqueue_tick(run.id, run.seq)
                ack(response_type="ephemeral",
                    text=f"Planning the upgrade of `{cmd.cluster}` to `{cmd.revision}` as run "
                         f"`{run.id}`; the plan will be posted in <#{run.channel}>.")
            elif isinstance(cmd, Enable):
                run = engine.start_upgrade(cmd.cluster, cmd.revision or "", user, channel, {},
                                           kind="enable")
                enqueue_tick(run.id, run.seq)
                ack(response_type="ephemeral",
                    text=f"Checking `{cmd.cluster}` before enabling the mesh (run "
                         f"`{run.id}`); the preflight will be posted in <#{run.channel}>.")
            elif isinstance(cmd, Ingress | Disable):
                extra = ({"ingress_mode": cmd.mode, "ingress_enabled": cmd.enabled}
                         if isinstance(cmd, Ingress) else {})
                kind = "ingress" if isinstance(cmd, Ingress) else "disable"
                run = engine.start_upgrade(cmd.cluster, "", user, channel, {}, kind=kind,
                                           **extra)
                enqueue_tick(run.id, run.seq)
                ack(response_type="ephemeral",
                    text=f"Checking `{cmd.cluster}` (run `{run.id}`); the plan will be posted "
                         f"in <#{run.channel}> for an approver.")
            elif isinstance(cmd, Inject):
                engine.fleet.cluster(cmd.cluster)
                if not engine.policy(cmd.cluster).may_request(user):
                    raise DecisionRefused(f"You may not change `{cmd.cluster}`.")
                enqueue_answer(command.get("text", ""), command.get("response_url", ""), user,
                               channel)
                ack(response_type="ephemeral",
                    text=f"{'Removing' if cmd.remove else 'Labelling'} "
                         f"{', '.join(cmd.namespaces)} on `{cmd.cluster}` …")
            elif isinstance(cmd, Decide):
                run = engine.decide(cmd.run_id, cmd.action, user)
                after_decision(run)
                ack(response_type="ephemeral",
                    text=f"Run `{run.id}`: {cmd.action} recorded; it is now "
                         f"{run.phase.value.replace('_', ' ')}.")
        except (InvalidCommand, InvalidRevision, UnknownCluster, ClusterBusy, DecisionRefused,
                RunNotFound) as exc:
            log.info("command.refused", user=user, text=text[:200], reason=str(exc))
            outcome = f"refused: {exc}"
            ack(response_type="ephemeral", text=f":warning: {exc}")
        except MeshopsError as exc:
            log.warning("command.failed", user=user, error=str(exc))
            outcome = f"failed: {exc}"
            ack(response_type="ephemeral",
                text=f":warning: meshops could not take that now ({exc}). Nothing changed.")
        finally:
            audit.record("command", user, f"{command_name} {text}".strip(), outcome=outcome,
                         channel=channel)

    app.command(command_name)(on_command)

    def ack_click(ack: Ack) -> None:
        ack()

    def on_click(body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        """After the ack (a lazy listener): the decision may wait for the run's lock."""
        verb = action["action_id"].removeprefix("meshops_")
        run_id = str(action.get("value", ""))
        user = body["user"]["id"]
        try:
            run = engine.decide(run_id, verb, user)
            audit.record("click", user, verb, run=run_id, cluster=run.cluster)
        except (DecisionRefused, RunNotFound) as exc:
            log.info("click.refused", user=user, run_id=run_id, action=verb, reason=str(exc))
            audit.record("click", user, verb, run=run_id, outcome=f"refused: {exc}")
            respond(text=f":warning: {exc}", response_type="ephemeral", replace_original=False)
            return
        except MeshopsError as exc:
            respond(text=f":warning: meshops could not record that now ({exc}); try again.",
                    response_type="ephemeral", replace_original=False)
            return
        after_decision(run)

    app.action(ACTION_RE)(ack=ack_click, lazy=[on_click])

    def on_plan_click(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        """*Plan upgrade* on a release notice: a worker posts the dry-run plan."""
        ack()
        cluster, _, revision = str(action.get("value", "")).partition("|")
        user = body["user"]["id"]
        if cluster not in fleet.clusters or not revision:
            return
        audit.record("click", user, f"plan {cluster} {revision}", cluster=cluster)
        enqueue_answer(f"plan {cluster} {revision}", body.get("response_url", ""))

    app.action(PLAN_ACTION)(on_plan_click)

    def on_rollover_click(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                          respond: Respond) -> None:
        """*Restart workloads* on a patch notice: a patch rollover run, planned like an
        upgrade and approved by another approver."""
        ack()
        cluster, revision, version = (str(action.get("value", "")).split("|") + ["", ""])[:3]
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id", "")
        try:
            run = engine.start_rollover(cluster, revision, version or None, user, channel)
            audit.record("click", user, f"rollover {cluster} {revision} {version}",
                         run=run.id, cluster=cluster)
        except (UnknownCluster, ClusterBusy, DecisionRefused) as exc:
            audit.record("click", user, f"rollover {cluster} {revision}",
                         outcome=f"refused: {exc}")
            respond(text=f":warning: {exc}", response_type="ephemeral", replace_original=False)
            return
        enqueue_tick(run.id, run.seq)
        respond(text=f"Planning the patch rollover of `{cluster}` as run `{run.id}`; the plan "
                     f"will be posted in <#{run.channel}>.", response_type="ephemeral",
                replace_original=False)

    app.action(ROLLOVER_ACTION)(on_rollover_click)

    return app
