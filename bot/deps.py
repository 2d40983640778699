"""What the bot's listeners need, handed to each listener module once (bolt-python style:
listeners are plain functions; their Slack arguments are injected by name, their meshops
dependencies come from here)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog

from bot.http import StartResponse, Wsgi
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
    after). Bolt's lazy listeners would copy the whole request for it. In HTTP mode the
    work of a request starts once its answer is written (:meth:`holding`), and yields to the
    requests being answered for up to :attr:`YIELD_MAX_S`. What is queued here and not yet
    done when the process is killed is lost, as it was when the process died before the
    record was written (a run's first tick is then the sweep's to publish).
    """

    #: the longest queued work waits for the requests being answered to be answered (s):
    #: under a steady stream of requests it goes on beside them after this long
    YIELD_MAX_S = 0.25

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[tuple[Callable[[], None], float]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: requests :meth:`holding` is answering now, and its signal when none is
        self._answering = 0
        self._idle = threading.Condition()
        #: the work of the request this thread is answering, while :meth:`holding` holds it
        self._held: ContextVar[list[Callable[[], None]] | None] = ContextVar(
            "meshops_after_answer", default=None)

    def __call__(self, work: Callable[[], None]) -> None:
        """Queue ``work`` (it must not raise: an exception is logged and dropped); while
        :meth:`holding` answers a request in this thread, once its answer is written."""
        held = self._held.get()
        if held is not None:
            held.append(work)
            return
        self._queue(work)

    def holding(self, inner: Wsgi) -> Wsgi:
        """``inner`` (the Slack handler) with the work its listeners queue held until the
        answer is written: the WSGI server closes the response it wrote (PEP 3333: "the
        server or gateway must call that method upon completion of the current request"),
        or it iterates it to its end. Started sooner, the work's thread took the GIL from
        the request's own between its Redis calls, and the ack waited for the audit and
        log lines it had queued. Where a request fails, its work is queued at once."""

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            held: list[Callable[[], None]] = []
            token = self._held.set(held)
            with self._idle:
                self._answering += 1
            try:
                body = inner(environ, start_response)
            except BaseException:
                self._answered(held)
                raise
            finally:
                self._held.reset(token)
            answer = _SizedAnswer if hasattr(body, "__len__") else _Answer
            return answer(body, partial(self._answered, held))

        return app

    def _answered(self, held: list[Callable[[], None]]) -> None:
        while held:
            self._queue(held.pop(0))
        with self._idle:
            self._answering -= 1
            if not self._answering:
                self._idle.notify_all()

    def _queue(self, work: Callable[[], None]) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="meshops-after-answer")
                    self._thread.start()
        self._work.put((work, time.monotonic()))

    def drain(self, timeout_s: float) -> bool:
        """Wait until the work queued so far is done, at most ``timeout_s`` seconds; True if
        it is. A bot that is stopping calls it once it answers no more requests: what its
        listeners queued (audit records, the first tick of a run, answers to send) would
        be lost with the process."""
        deadline = time.monotonic() + timeout_s
        with self._idle:  # a request still being answered queues its work when it ends
            if not self._idle.wait_for(lambda: not self._answering, timeout_s):
                return False
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue(done.set)  # one thread, in order: set once everything before is done
        return done.wait(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            work, queued_at = self._work.get()
            # each piece waits while requests are being answered (up to YIELD_MAX_S): one
            # process, one GIL, so its CPU would delay their acks; a queue of audit records,
            # counters and Celery messages runs in the gaps between requests
            with self._idle:
                self._idle.wait_for(lambda: not self._answering,
                                    queued_at + self.YIELD_MAX_S - time.monotonic())
            try:
                work()
            except Exception as exc:  # noqa: BLE001 - one failure must not stop the rest
                log.error("bot.after_answer_failed", error=str(exc)[:200])


class _Answer:
    """A WSGI response body that calls ``then`` once it is written: at the end of its
    iteration or at its ``close()``, whichever comes first."""

    def __init__(self, body: Iterable[bytes], then: Callable[[], None]) -> None:
        self._body, self._then = body, then
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self._body
        self._finish()

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._then()


class _SizedAnswer(_Answer):
    """An :class:`_Answer` of a body that has a length (a list of chunks, as Bolt's):
    waitress reads a one-chunk body's length as its Content-Length."""

    def __len__(self) -> int:
        return len(self._body)  # type: ignore[arg-type]


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
