"""Wiring: builds the processes' objects from the environment and the fleet file."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click
import structlog

from workers.config import Fleet, Settings, load_fleet, settings
from workflows.errors import ConfigError

log = structlog.get_logger("meshops")


def load() -> tuple[Settings, Fleet]:
    env = settings()
    return env, load_fleet(env.meshops_fleet)


def check_config(*required: str) -> tuple[Settings, Fleet]:
    """Validate the environment and the fleet file at start; exit 2 with the reason."""
    try:
        env, fleet = load()
        env.require("slack_bot_token", *required)
        return env, fleet
    except ConfigError as exc:
        click.echo(f"meshops: {exc}", err=True)
        sys.exit(2)


def run_bot(host: str, port: int) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.app import create_app
    from bot.deps import AfterAnswer
    from bot.health import (
        all_ready,
        health_app,
        redis_ready,
        socket_ready,
        start_health_server,
    )
    from bot.http import SlackHandler, exit_on_sigterm, serve
    from bot.push import push_app
    from workers.heap import freeze_heap
    from workers.slack.client import make_client
    from workers.store.connect import redis_client
    from workers.tasks.app import (
        enqueue_answer,
        enqueue_form,
        enqueue_home,
        enqueue_notify,
        enqueue_push,
        enqueue_tick,
    )
    from workers.wiring import build_engine

    env, fleet = check_config()
    socket_mode = bool(env.slack_app_token)
    if not socket_mode and not env.slack_signing_secret:
        click.echo("meshops: HTTP mode needs SLACK_SIGNING_SECRET (or set SLACK_APP_TOKEN for "
                   "Socket Mode)", err=True)
        sys.exit(2)
    client = make_client(env.slack_bot_token, fleet.slack.api_url)
    engine = build_engine(env, fleet, client)
    after_answer = AfterAnswer()
    app = create_app(fleet, engine, client, None if socket_mode else env.slack_signing_secret,
                     enqueue_tick, enqueue_notify, enqueue_answer, enqueue_home,
                     enqueue_form, after_answer)
    redis_check = redis_ready(redis_client(env.redis_url).ping)
    log.info("bot.heap_frozen", objects=freeze_heap())  # before the first request
    try:
        if socket_mode:
            log.info("bot.start", mode="socket", host=host, port=port, paths="/livez /readyz")
            handler = SocketModeHandler(app, env.slack_app_token)
            # no HTTP for Slack; /livez and /readyz alone for the probes, ready once connected
            start_health_server(all_ready(socket_ready(handler.client), redis_check), host,
                                port)
            # a pod stopping (SIGTERM) ends start()'s wait as Ctrl-C does
            signal.signal(signal.SIGTERM, exit_on_sigterm)
            try:
                handler.start()  # type: ignore[no-untyped-call]
            finally:
                close_socket_mode(handler)
        else:
            log.info("bot.start", mode="http", host=host, port=port, path="/slack/events")
            # what listeners do after their ack starts once the answer is written
            wsgi = push_app(env.meshops_releases_push_secret, enqueue_push,
                            after_answer.holding(SlackHandler(app)))
            # /livez and /readyz for the probes (deploy/kubernetes), then Slack and the pushes
            wsgi = health_app(wsgi, redis_check)
            serve(wsgi, host, port)  # waitress capped at MAX_BODY_BYTES, until SIGTERM
    finally:
        # what the listeners queued after their answers (audit records, a run's first
        # tick, answers to send) is done before the process ends; a second SIGTERM does
        # not cut that short (Kubernetes' SIGKILL at the end of the grace period does)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log.info("bot.stopped", after_answer_done=after_answer.drain(AFTER_ANSWER_DRAIN_S))


#: how long a stopping bot waits for its after-answer work (s): with the preStop pause (5 s)
#: and waitress' 5 s for the requests being answered, inside Kubernetes' 30 s grace
AFTER_ANSWER_DRAIN_S = 10.0


#: how long a stopping Socket Mode bot waits for its running listeners to send their acks
#: (s): Slack's 3 s for acknowledging a slash command or an interaction
#: (https://api.slack.com/interactivity/slash-commands#responding_to_commands)
SOCKET_MODE_ACK_S = 3.0


def close_socket_mode(handler: Any) -> None:
    """Close a Socket Mode connection without losing an acknowledgement: take no new
    envelope, let the listeners running finish (their acks go out on the connection, still
    open), then disconnect. slack_sdk's ``close()`` disconnects first and only then stops
    its workers (``slack_sdk/socket_mode/builtin/client.py``), and Slack does not deliver a
    slash command or a click again."""
    client = handler.client
    client.auto_reconnect_enabled = False  # no new session while it stops
    client.closed = True  # ends its message processor's loop (SocketModeClient)
    client.message_processor.shutdown()
    # at most Slack's ack window: an ack later than that is refused anyway, and a listener
    # stuck on Redis must not hold the stop (and the drain after it) until SIGKILL
    waiting = threading.Thread(target=client.message_workers.shutdown, kwargs={"wait": True},
                               daemon=True, name="socket-mode-stop")
    waiting.start()
    waiting.join(SOCKET_MODE_ACK_S)
    handler.close()
