"""The App Home tab: opened by a person, filled by a worker.

Slack sends ``app_home_opened`` (Events API,
https://docs.slack.dev/reference/events/app_home_opened:
``{"type": "app_home_opened", "user": "U…", "channel": "D…", "tab": "home" | "messages",
"event_ts": "…"}``) each time someone opens the app's Home or Messages tab. The bot acks at
once and has a worker publish the fleet at a glance (``views.publish``), as it has slow
read-only commands answered: it never reads ARM itself.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import structlog
from slack_bolt import Ack, App

from bot.deps import BotDeps

log = structlog.get_logger("meshops.bot")


def register(app: App, deps: BotDeps) -> None:
    @app.event("app_home_opened")
    def on_home_opened(ack: Ack, event: dict[str, Any]) -> None:
        """Ack, then (after the HTTP answer) enqueue the Home tab of the person who opened
        it; the Messages tab needs nothing from meshops."""
        ack()
        user = str(event.get("user") or "")
        if event.get("tab") != "home" or not user:
            return
        log.info("home.opened", user=user)
        deps.after_answer(partial(deps.enqueue_home, user))
