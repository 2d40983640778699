"""What the bot's listeners need, handed to each listener module once (bolt-python style:
listeners are plain functions; their Slack arguments are injected by name, their meshops
dependencies come from here)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from workers.engine import Engine
from workers.forms import FormFills
from workers.store.audit import AuditLog
from workflows.model import Run

log = structlog.get_logger("meshops.bot")


class AfterAnswer:
    """Work that must not delay the HTTP answer to Slack, done in order by one daemon thread.

    The bot acks in the request's own thread (``process_before_response``), so whatever a
    listener does after ``ack()`` still holds the answer back; the audit record of a command
    is such work (DESIGN §6: validate, authorise, store, enqueue, ack — the record comes
    after). Bolt's lazy listeners would copy the whole request for it. What is queued here
    and not yet done when the process is killed is lost, as it was when the process died
    before the record was written.
    """

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __call__(self, work: Callable[[], None]) -> None:
        """Queue ``work`` (it must not raise: an exception is logged and dropped)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="meshops-after-answer")
                    self._thread.start()
        self._work.put(work)

    def _run(self) -> None:
        while True:
            work = self._work.get()
            try:
                work()
            except Exception as exc:  # noqa: BLE001 - one failure must not stop the rest
                log.error("bot.after_answer_failed", error=str(exc)[:200])


@dataclass(frozen=True)
class BotDeps:
    """The engine and the ways work reaches the workers (Celery in production).

    ``enqueue_answer(command_text, response_url, user="", channel="")`` has a worker
    answer a slow read-only command through its ``response_url``; ``enqueue_home(user_id)``
    has one publish that person's App Home tab.
    """

    engine: Engine
    enqueue_tick: Callable[[str, int], None]
    enqueue_notify: Callable[[str], None]
    enqueue_answer: Callable[..., None]
    #: runs work after the HTTP answer (:class:`AfterAnswer`); at once where none is given
    after_answer: Callable[[Callable[[], None]], None] = field(
        default=lambda work: work())
    enqueue_home: Callable[[str], None] = lambda user_id: None
    #: ``enqueue_form(form, view_id, user, cluster, private_metadata, fill)``: a worker
    #: fills in a form's revisions from ARM (:mod:`bot.forms`)
    enqueue_form: Callable[..., None] = lambda *args: None
    form_fills: FormFills | None = None

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
