"""The forms: ``/mesh upgrade`` and ``/mesh campaign`` typed without arguments open a modal.

The bot builds what it knows without ARM (the clusters the person may act on, from the
fleet file's policy) and opens the modal with the command's ``trigger_id``
(``views.open``; Slack lets a trigger be used once within 3 s, so it is opened right after
the ack); a worker reads ARM and fills in the revisions with ``views.update``
(:func:`workers.tasks.app.form_task`): at once for the campaign form and a one-cluster
upgrade form, and each time the person picks a cluster (the menu's ``block_actions``).

Submitting (``view_submission``) is typing the command the form stands for
(:func:`workers.forms.command_text`): the same parser, the same checks and the same start,
through :mod:`bot.commands`' ``answer``. A refusal keeps the modal open with the reason on
the field it is about (``{"response_action": "errors", "errors": {block_id: text}}``,
https://docs.slack.dev/surfaces/modals#displaying_errors); an accepted command closes it and
its answer goes where a typed one's would (the command's ``response_url``, kept in the
view's ``private_metadata``). Every submission is audited, refused ones included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog
from slack_bolt import Ack, App
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from bot.deps import BotDeps
from workers.forms import (
    CAMPAIGN_FORM,
    CLUSTER_ACTION,
    UPGRADE_FORM,
    Origin,
    campaign_view,
    command_text,
    field_errors,
    field_of,
    may_request_of,
    upgrade_view,
)
from workflows.commands import parse
from workflows.errors import InvalidCommand, MeshopsError, Refusal
from workflows.model import FLEET_SCOPE

log = structlog.get_logger("meshops.bot")

#: the typed commands that open a form instead of the usage
FORM_COMMANDS = {"upgrade": UPGRADE_FORM, "campaign": CAMPAIGN_FORM}
MAX_ERROR = 500  # characters of a field's error; Slack shows it under the field

Answer = Callable[[object, dict[str, Any], str, str], str]


def _say(response_url: str, text: str) -> None:
    """An ephemeral answer through a ``response_url`` (nothing when there is none)."""
    if not response_url:
        return
    try:
        WebhookClient(response_url, timeout=5).send(text=text, response_type="ephemeral")
    except (SlackClientError, OSError) as exc:
        log.warning("form.say_failed", error=str(exc)[:200])


def register(app: App, deps: BotDeps, answer: Answer
             ) -> Callable[[str, dict[str, Any], str, str], None]:
    """Listen for the forms' cluster menu and submissions; return ``open_form(form,
    command, user, channel)`` for :mod:`bot.commands`: it checks the person may use the
    form (raising :class:`Refusal` with what would be right) and opens it after the ack."""
    engine = deps.engine
    client = app.client

    def allowed_clusters(user: str) -> list[str]:
        return may_request_of(engine, user)

    def open_view(trigger_id: str, view: dict[str, Any], user: str, form: str,
                  origin: Origin, fill_cluster: str | None) -> None:
        """After the ack: open the modal, then have a worker fill what needs ARM."""
        try:
            opened = client.views_open(trigger_id=trigger_id, view=view)["view"]
        except (SlackApiError, SlackClientError, OSError) as exc:
            error = exc.response.get("error") if isinstance(exc, SlackApiError) else exc
            log.warning("form.open_failed", form=form, user=user, error=str(error)[:200])
            _say(origin.response_url, f":warning: Slack did not open the form ({error}). "
                                      f"Type `{engine.fleet.slack.command} help` for the "
                                      "commands to type instead.")
            return
        log.info("form.opened", form=form, user=user, view_id=opened["id"])
        if form == CAMPAIGN_FORM or fill_cluster:
            deps.enqueue_form(form, opened["id"], user, fill_cluster or "",
                              view.get("private_metadata", ""), _next_fill(opened["id"]))

    def _next_fill(view_id: str) -> int:
        """The number of this fill of the view: a worker fills only if it is still the
        latest asked for (the person may pick clusters faster than ARM answers)."""
        return deps.form_fills.ask(view_id) if deps.form_fills else 0

    def open_form(form: str, command: dict[str, Any], user: str, channel: str) -> None:
        origin = Origin(channel, str(command.get("response_url", "")))
        trigger_id = str(command.get("trigger_id", ""))
        if not trigger_id:
            raise InvalidCommand("Slack sent no trigger for a form; type the whole command "
                                 f"(`{engine.fleet.slack.command} help`).")
        fill: str | None = None
        if form == UPGRADE_FORM:
            clusters = allowed_clusters(user)
            if not clusters:
                raise Refusal("You may not request changes of any cluster of this fleet; "
                              "each cluster's requesters are in the fleet file.")
            fill = clusters[0] if len(clusters) == 1 else None
            view = upgrade_view(clusters, origin, cluster=fill,
                                defaults=engine.fleet.upgrade_options(fill, {}) if fill
                                else None)
        else:
            if engine.fleet.campaigns is None:
                raise InvalidCommand(
                    "The fleet file has no `campaigns:` section: campaigns need its stages, "
                    "a channel and approvers. See `examples/fleet.azure.yaml`.")
            view = campaign_view(origin, engine.policy(FLEET_SCOPE).may_request(user))
        deps.after_answer(partial(open_view, trigger_id, view, user, form, origin, fill))

    def on_cluster_chosen(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        """The person picked a cluster in the upgrade form: a worker fills in its revisions
        (a cluster they may not act on — a crafted payload — is ignored)."""
        ack()
        view = body.get("view") or {}
        user = str((body.get("user") or {}).get("id", ""))
        cluster = str((action.get("selected_option") or {}).get("value", ""))
        if view.get("callback_id") != UPGRADE_FORM or not view.get("id") \
                or cluster not in engine.fleet.clusters \
                or not engine.policy(cluster).may_request(user):
            log.info("form.cluster_ignored", user=user, cluster=cluster[:80])
            return
        deps.after_answer(partial(
            lambda: deps.enqueue_form(UPGRADE_FORM, view["id"], user, cluster,
                                      view.get("private_metadata", ""),
                                      _next_fill(view["id"]))))

    def on_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = str((body.get("user") or {}).get("id", ""))
        origin = Origin.load(view.get("private_metadata"))
        values = (view.get("state") or {}).get("values") or {}
        text, fields = command_text(str(view.get("callback_id")), values)
        # Slack takes errors only on the view's input blocks: a refusal about a field the
        # view does not show (no revision menu yet) goes on its first input
        inputs = [str(b.get("block_id")) for b in view.get("blocks") or []
                  if isinstance(b, dict) and b.get("type") == "input"]
        first = inputs[0] if inputs else "cluster"

        def on_view(block: str) -> str:
            return block if block in inputs else first

        outcome = "ok"
        try:
            bad = field_errors(str(view.get("callback_id")), values)
            if bad:
                outcome = f"refused: {bad}"
                log.info("form.refused", user=user, text=text[:200], fields=sorted(bad))
                ack(response_action="errors",
                    errors={on_view(b): e[:MAX_ERROR] for b, e in bad.items()})
                return
            cmd = parse(text, engine.fleet.slack.command)
            said = answer(cmd, {"text": text, "response_url": origin.response_url}, user,
                          origin.channel)
        except Refusal as exc:
            outcome = f"refused: {exc}"
            block = on_view(field_of(str(exc), fields, first))
            log.info("form.refused", user=user, text=text[:200], block=block, reason=str(exc))
            ack(response_action="errors", errors={block: str(exc)[:MAX_ERROR]})
        except MeshopsError as exc:
            outcome = f"failed: {exc}"
            ack(response_action="errors", errors={first: (
                f"meshops could not take that now ({exc}). Nothing changed; submit "
                "again.")[:MAX_ERROR]})
        else:
            ack()  # closes the modal
            deps.after_answer(partial(_say, origin.response_url, said))
        finally:
            deps.after_answer(partial(deps.audit.record, "command", user,
                                      f"{engine.fleet.slack.command} {text} (form)",
                                      outcome=outcome, channel=origin.channel, at=time.time()))

    app.action(CLUSTER_ACTION)(on_cluster_chosen)
    app.view(UPGRADE_FORM)(on_submit)
    app.view(CAMPAIGN_FORM)(on_submit)
    return open_form
