"""What the bot's listeners need, handed to each listener module once (bolt-python style:
listeners are plain functions; their Slack arguments are injected by name, their meshops
dependencies come from here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workers.engine import Engine
from workers.store.audit import AuditLog
from workflows.model import Run


@dataclass(frozen=True)
class BotDeps:
    """The engine and the ways work reaches the workers (Celery in production).

    ``enqueue_answer(command_text, response_url, user="", channel="")`` has a worker
    answer a slow read-only command through its ``response_url``.
    """

    engine: Engine
    enqueue_tick: Callable[[str, int], None]
    enqueue_notify: Callable[[str], None]
    enqueue_answer: Callable[..., None]

    @property
    def audit(self) -> AuditLog:
        return self.engine.audit

    @property
    def command_name(self) -> str:
        return self.engine.fleet.slack.command

    def after_decision(self, run: Run) -> None:
        """A decision was saved: tick the run if it works, and bring Slack up to date."""
        if not run.phase.terminal and not run.phase.waiting_for_person:
            self.enqueue_tick(run.id, run.seq)
        self.enqueue_notify(run.id)
