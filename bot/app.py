"""The Slack front door: a slack-bolt App with the ``/mesh`` command, the run buttons and
the App Home tab.

Listeners follow bolt-python's style: plain functions whose dependencies come in by name
(``ack``, ``command``, ``body``, ``action``, ``respond``), split by concern:
:mod:`bot.commands` (the slash command), :mod:`bot.clicks` (run buttons and release-notice
buttons), :mod:`bot.home` (the App Home tab), :mod:`bot.signing` (Slack's request signature,
checked without logging bodies), and here the one middleware that refuses requests of
another Slack app.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import structlog
from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware
from slack_sdk import WebClient

from bot import clicks, commands, forms, home
from bot.commands import help_text
from bot.deps import AfterAnswer, BotDeps
from bot.signing import SeenRequests, SignedRequests
from workers.config import Fleet
from workers.engine import Engine
from workers.forms import FormFills
from workers.store.audit import AuditLog
from workflows.kind import KINDS

log = structlog.get_logger("meshops.bot")

__all__ = ["create_app", "help_text"]


class OnlyOurApp(Middleware):
    """Answers a request of another Slack app (its ``api_app_id``) with an ephemeral
    refusal and an audit record, and passes every other on. A class, as Bolt's own
    middleware: a function middleware has its arguments built by inspection on every
    request, before the ack."""

    def __init__(self, app_id: str, audit: AuditLog) -> None:
        self.app_id = app_id
        self.audit = audit

    def process(self, *, req: BoltRequest, resp: BoltResponse,
                next: Callable[[], BoltResponse],  # noqa: A002 - Bolt's name
                ) -> BoltResponse | None:
        body = req.body
        app_id = body.get("api_app_id")
        if not app_id or app_id == self.app_id:
            return next()
        log.warning("request.other_app", api_app_id=app_id)
        self.audit.record("command", str((body.get("user") or {}).get("id")
                                         or body.get("user_id", "?")),
                          f"request of app {app_id}", outcome="refused: another app")
        return BoltResponse(status=200, headers={"content-type": "application/json"},
                            body=json.dumps({"response_type": "ephemeral", "text": (
                                ":warning: That request came from another Slack app; "
                                "meshops ignores it.")}))


def create_app(fleet: Fleet, engine: Engine, client: WebClient, signing_secret: str | None,
               enqueue_tick: Callable[[str, int], None],
               enqueue_notify: Callable[[str], None],
               enqueue_answer: Callable[..., None] = lambda *args: None,
               enqueue_home: Callable[[str], None] = lambda user_id: None,
               enqueue_form: Callable[..., None] = lambda *args: None,
               after_answer: AfterAnswer | None = None) -> App:
    """Build the Bolt app.

    Args:
        signing_secret: HTTP mode verifies every request's ``X-Slack-Signature`` (v0 HMAC,
            5 minutes of clock skew at most) and answers 401 otherwise
            (:class:`bot.signing.SignedRequests`, in place of Bolt's own check, which logs
            whole bodies), 409 to a replay of a slash command or click already taken;
            None in Socket Mode.
        enqueue_tick / enqueue_notify / enqueue_answer: how work reaches the workers (Celery
            in production); slow read-only commands are answered by a worker.
        enqueue_home(user_id): has a worker publish a person's App Home tab (the fleet at a
            glance) when they open it (:mod:`bot.home`).
        enqueue_form(form, view_id, user, cluster, private_metadata, fill): has a worker
            fill in what a form needs from ARM (:mod:`bot.forms`).
        after_answer: where listeners put what follows their answer; HTTP mode serves
            the app behind its :meth:`~bot.deps.AfterAnswer.holding` (a new one if None).
    """
    list(KINDS)  # the workflow kinds imported now, not by the first person's command
    # Listeners run in the request's own thread: they only touch Redis, so the ack is as
    # fast as Bolt's own, and no executor queue stands between a request and its ack.
    # requests already taken are remembered where the runs are (a Redis run store)
    seen = SeenRequests(getattr(engine.store, "r"), getattr(engine.store, "p"))  # noqa: B009
    app = App(client=client, signing_secret=signing_secret,
              request_verification_enabled=False,
              before_authorize=SignedRequests(signing_secret, seen) if signing_secret else None,
              process_before_response=True)
    deps = BotDeps(engine, enqueue_tick, enqueue_notify, enqueue_answer,
                   after_answer or AfterAnswer(),
                   enqueue_home, enqueue_form,
                   FormFills(getattr(engine.store, "r"), getattr(engine.store, "p")))  # noqa: B009
    audit = engine.audit

    if fleet.slack.app_id:
        app.use(OnlyOurApp(fleet.slack.app_id, audit))

    answer = commands.make_answer(deps)
    # Bolt tries the listeners in the order they were registered, and each try builds its
    # matcher's arguments (a tenth of a millisecond): the slash command first, then the
    # run buttons, then the forms and the Home tab, which people use less
    opener: list[commands.OpenForm] = []
    commands.register(app, deps, answer, lambda *args: opener[0](*args))
    clicks.register(app, deps)
    opener.append(forms.register(app, deps, answer))
    home.register(app, deps)
    return app
