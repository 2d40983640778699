"""``SlackNotifier``: keeps a run's Slack messages in step with the stored run.

One root message per run in the cluster's channel, updated in place with ``chat.update``;
the step log goes to its thread, in order (DESIGN.md §6).
Exactly once: before each post a marker (``root_pending``, ``line_pending``) is stored, and
the message carries Slack message metadata naming the run and line(s); a worker killed
between the post and its record leaves the marker, and the next sync looks for the message
(``conversations.history``/``replies`` with ``include_all_metadata``) before posting; a
gate chart is found by its file name among the thread's file shares.
The channel and ``ts`` of the root message and how many history lines were posted are
persisted in Redis, so a new worker carries on where the last one stopped (unlike Argo's
notifications engine, which keeps them in memory).

Slack's rate limits: with a :class:`workers.slack.budget.SlackBudget` every call first asks
the workspace's budget (shared by all workers); when it must wait, or Slack answers 429,
the sync stops with :class:`SlackOverBudget` / :class:`SlackRateLimited` (``delay_s``) and
``meshops.notify`` re-schedules itself: no worker sleeps. A sync renders the run as it is
then, so the ``chat.update``s a run asked for while it waited become one; a root update
that must wait does not hold back the thread. When more lines are pending than the
channel can take now, they go as one thread message (in order; its metadata names the
first and last line), so nothing is lost or reordered.
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import partial
from typing import Any

import structlog
from slack_sdk import WebClient

from workers.slack.budget import SlackBudget
from workers.slack.charts import gate_chart
from workers.slack.client import find_by_metadata
from workers.slack.errors import (
    SLACK_ERRORS,
    SlackOverBudget,
    SlackRateLimited,
    SlackRefused,
    translate_slack_error,
)
from workers.slack.render import render_event, render_root
from workflows.kind import kind_of
from workflows.model import Phase, Run

log = structlog.get_logger("meshops.slack")

#: after Slack refused a run's messages for good, try again this often (s): a fixed channel
#: (the app invited, the channel unarchived) heals by itself, without a retry storm
REFUSED_RETRY_S = 600.0

#: the most history lines, and characters, one batched thread message carries (Slack
#: advises messages of at most 4,000 characters)
BATCH_LINES = 50
BATCH_CHARS = 4000


class SlackNotifier:
    """Posts and updates a run's messages so Slack shows the run as it is stored."""

    def __init__(self, client: WebClient, store: Any, approvers_of: Any,
                 audit: Any = None, budget: SlackBudget | None = None):
        self.client = client
        self.store = store
        self.approvers_of = approvers_of  # cluster short name -> list of approver ids
        self.audit = audit  # the audit stream (``AuditLog``), to record refusals once
        self.budget = budget  # the workspace's Slack budget; None: unlimited
        self._who = ""  # the run being synced: its place among those waiting

    def _take(self, method: str, channel: str | None = None, urgent: bool = False) -> None:
        """Count a call of ``method`` against the budget (``urgent``: from the share kept
        for urgent calls too, :meth:`SlackBudget.take`); raises :class:`SlackOverBudget`
        (nothing counted) when it must wait."""
        if self.budget is None:
            return
        wait = self.budget.take(method, channel, who=self._who, urgent=urgent)
        if wait > 0:
            raise SlackOverBudget(f"Slack {method}: the workspace's budget is spent for "
                                  f"{wait:.1f} s", wait)

    def call(self, method: str, who: str = "", **kwargs: Any) -> Any:
        """``client.<method>(**kwargs)`` (``views_publish``…) within the workspace's budget,
        for calls that are not a run's messages (the App Home tab, forms, release notices:
        :class:`BudgetedSlack`); ``who`` spreads the wake-ups of callers told to wait.

        Raises:
            SlackOverBudget: the budget says wait (``delay_s``); nothing was called.
            SlackRateLimited: Slack answered 429 (every worker now waits its Retry-After).
            TemporaryError / PermanentError: Slack's other answers, translated.
        """
        previous, self._who = self._who, who
        try:
            return self._call(method, **kwargs)
        finally:
            self._who = previous

    def _call(self, method: str, *, taken: bool = False, urgent: bool = False,
              **kwargs: Any) -> Any:
        """``client.<method>(**kwargs)`` once the budget allows it (already counted when
        ``taken``; ``urgent`` as :meth:`_take`); Slack's errors raised as
        ``TemporaryError`` / ``PermanentError``
        (:func:`workers.slack.errors.translate_slack_error`); a 429 makes every worker
        wait its ``Retry-After`` (:meth:`SlackBudget.back_off`)."""
        name = method.replace("_", ".")
        if not taken:
            self._take(name, kwargs.get("channel"), urgent)
        try:
            return getattr(self.client, method)(**kwargs)
        except SLACK_ERRORS as exc:
            error = translate_slack_error(exc, name)
            if isinstance(error, SlackRateLimited):
                called = _called_method(exc) or name
                log.warning("slack.rate_limited", method=called, retry_after=error.delay_s)
                if self.budget is not None:
                    self.budget.back_off(called, error.delay_s)
            raise error from exc

    def read(self, run_id: str) -> Run:
        """The run as a sync of it needs it: its history from the first line not yet in the
        thread (a sync's cost follows what is new, not how long the run has gone on: a
        2,000-namespace run's history is megabytes) and the current wave's samples (the
        root message shows its last look); when a wave's chart is due, the samples from
        that wave on (its chart draws that wave's only); every wave's once, when the run's
        summary chart is due at its end (:func:`charts_due`).

        Raises:
            RunNotFound / TemporaryError: as ``RunStore.get``.
        """
        state = self.store.slack_state(run_id)
        posted = int(state.get("posted", 0))
        run: Run = self.store.get(run_id, recent=1, history_from=posted)
        held = run.wave_index  # a tick's read holds the current wave's samples on
        for _ in range(2):
            waves, summary = charts_due(run, state)
            first = 0 if summary else waves[0] if waves else held
            if first >= held:
                break
            # the run may have ended since the read before, its summary due: read again
            run = self.store.get(run_id, history_from=posted, samples_from=first)
            held = first
        return run

    def sync(self, run: Run, now: float | None = None) -> None:
        """Bring Slack up to date with ``run``. Idempotent; raises TemporaryError to retry.

        A refusal that will not heal by retrying (``not_in_channel``, ``channel_not_found``,
        ``is_archived``, ``invalid_auth``, ``account_inactive``, …) is recorded once in the
        run's Slack state (``error``, ``error_at``) and in the audit, and the run goes on
        without Slack; the sync is tried again only after :data:`REFUSED_RETRY_S`, so a
        channel that is fixed (the app invited) heals without anyone asking.
        """
        now = time.time() if now is None else now
        state = self.store.slack_state(run.id)
        if state.get("error") and now - float(state.get("error_at", 0)) < REFUSED_RETRY_S:
            self.store.mark_synced(run.id, run.history_len)  # not retried before its time
            return
        try:
            self._sync(run, state)
        except SlackRefused as exc:
            error = f"{exc.method}: {exc.code}"
            if state.get("error") != error:
                log.warning("slack.refused", run_id=run.id, channel=run.channel, error=error)
                if self.audit is not None:
                    self.audit.record("slack", "meshops", f"Slack refused {error}", run=run.id,
                                      cluster=run.cluster, outcome="not retried until "
                                      f"{REFUSED_RETRY_S / 60:g} min have passed")
            self.store.set_slack_state(run.id, error=error, error_at=f"{now:.3f}")
            self.store.mark_synced(run.id, run.history_len)
            return
        if state.get("error"):
            self.store.clear_slack_error(run.id)

    def _sync(self, run: Run, state: dict[str, str]) -> None:
        self._who = run.id
        if run.phase == Phase.REFUSED and not state.get("root_ts"):
            if not state.get("refusal_sent"):
                what = kind_of(run).subject(run)
                self._call("chat_postEphemeral", channel=run.origin_channel or run.channel,
                           user=run.requester,
                           text=f":no_entry: {what} refused: {run.outcome}")
                self.store.set_slack_state(run.id, refusal_sent=1)
            self.store.mark_synced(run.id, run.history_len)
            return
        text, blocks = render_root(run, self.approvers_of(run.cluster))
        digest = hashlib.sha1(json.dumps([text, blocks]).encode()).hexdigest()
        if not state.get("root_ts") and state.get("root_pending", "0") != "0":
            state = {**state, **self._posted_root(run)}  # a crash may have hidden one
        deferred: SlackOverBudget | None = None
        if not state.get("root_ts"):
            self._take("chat.postMessage", run.channel)
            # the marker first: a crash between the post and its record is reconciled
            # from the message's metadata, never answered with a second root
            self.store.set_slack_state(run.id, root_pending=1)
            try:
                resp = self._call("chat_postMessage", taken=True, channel=run.channel,
                                  text=text, blocks=blocks,
                                  metadata=_metadata(ROOT_EVENT, run.id))
            except (SlackRefused, SlackRateLimited):
                self.store.set_slack_state(run.id, root_pending=0)  # nothing posted
                raise
            state = {"root_channel": resp["channel"], "root_ts": resp["ts"], "posted": "0",
                     "digest": digest}
            self.store.set_slack_state(run.id, **state)
        elif state.get("digest") != digest:
            try:
                # a root that now asks someone to act (its buttons) or tells the run's end
                # goes before other runs' progress (the budget's urgent share)
                self._call("chat_update", channel=state["root_channel"], ts=state["root_ts"],
                           text=text, blocks=blocks,
                           urgent=run.phase.waiting_for_person or run.phase.terminal)
                self.store.set_slack_state(run.id, digest=digest)
            except SlackOverBudget as exc:
                # the thread goes on; a later sync shows the run as it is by then, in one
                # update for all those asked for meanwhile
                deferred = exc
        self._post_lines(run, state)
        self._share_charts(run, state)
        if deferred is not None:
            raise deferred
        self.store.mark_synced(run.id, run.history_len)

    def _post_lines(self, run: Run, state: dict[str, str]) -> None:
        """Post the history lines not yet in the thread, in order, each exactly once: one
        message a line while the channel has room, else the pending lines in one message
        (at most :data:`BATCH_LINES` lines of :data:`BATCH_CHARS` characters)."""
        posted = int(state.get("posted", 0))
        pending = state.get("line_pending")
        if pending is not None and int(pending) == posted < run.history_len:
            found = self._posted_lines(run, state)
            if posted in found:
                posted = found[posted] + 1  # posted before a crash, not recorded: not again
                self.store.set_slack_state(run.id, posted=posted)
        channel = state["root_channel"]
        while posted < run.history_len:
            last = posted
            if self.budget is not None and \
                    run.history_len - posted > self.budget.room("chat.postMessage", channel):
                last = self._batch_last(run, posted)
            self._take("chat.postMessage", channel)
            text = "\n".join(render_event(run, i) for i in range(posted, last + 1))
            meta = _metadata(LINE_EVENT, run.id, line=posted) if last == posted else \
                _metadata(LINE_EVENT, run.id, line=posted, last=last)
            self.store.set_slack_state(run.id, line_pending=posted, line_pending_last=last)
            try:
                self._call("chat_postMessage", taken=True, channel=channel,
                           thread_ts=state["root_ts"], text=text, metadata=meta)
            except (SlackRefused, SlackRateLimited):
                self.store.set_slack_state(run.id, line_pending=-1)  # not posted
                raise
            posted = last + 1
            self.store.set_slack_state(run.id, posted=posted)

    @staticmethod
    def _batch_last(run: Run, first: int) -> int:
        """The last history line of a batched thread message that starts at ``first``."""
        last, size = first, len(render_event(run, first))
        while last + 1 < run.history_len and last + 1 - first < BATCH_LINES:
            size += 1 + len(render_event(run, last + 1))
            if size > BATCH_CHARS:
                break
            last += 1
        return last

    def _share_charts(self, run: Run, state: dict[str, str]) -> None:
        """Share each ended wave's chart not shared yet, in wave order, then the run's
        summary chart once it has ended (:func:`charts_due`), each exactly once (a share
        made just before a crash is found by its file name). A wave's chart draws that
        wave's samples only, so its cost follows the wave, not the waves before it."""
        waves, summary = charts_due(run, state)
        pending = state.get("chart_pending")
        for i in waves:
            wave = run.waves[i]
            verdict = wave.verdict.value if wave.verdict else "?"
            self._share(run, state, pending, f"{run.id}-wave-{wave.index}.png",
                        run.evolve(waves=[wave], history=[]),
                        title=f"{run.cluster} wave {wave.index}: gate {verdict}",
                        comment=f"Wave {wave.index} ({verdict}): errors and slow requests of "
                                "its namespaces against the not-yet-migrated ones, look by "
                                "look",
                        charts=i + 1)
        if summary:
            judged = sum(1 for w in run.waves if w.verdict is not None)
            self._share(run, state, pending, f"{run.id}-summary.png",
                        run.evolve(history=[]),
                        title=f"{run.cluster}: the run's gate, {judged} of "
                              f"{len(run.waves)} waves judged",
                        comment=f"The whole run ({run.phase.value}): every wave's looks, "
                                "errors and slow requests of the migrated namespaces "
                                "against the not-yet-migrated ones",
                        summary=1)

    def _share(self, run: Run, state: dict[str, str], pending: str | None, filename: str,
               drawn: Run, title: str, comment: str, **done: int) -> None:
        """Share the chart of ``drawn`` as ``filename`` into the run's thread, then record
        ``done`` in its Slack state; a share whose marker stands and whose file is in the
        thread already was made before a crash: only recorded."""
        if pending == filename and filename in self._shared_files(state):
            self.store.set_slack_state(run.id, **done)
            return
        # files_upload_v2 calls files.getUploadURLExternal, then files.completeUploadExternal,
        # which posts the file into the thread. The channel's second is taken once the chart
        # is drawn: taken before, the share landed up to a drawing later, in the second the
        # channel's next post had taken (two messages in one second, fleet benchmark)
        channel = state["root_channel"]
        if self.budget is not None:  # no drawing for nothing
            wait = max(self.budget.wait_for("files.completeUploadExternal", channel),
                       self.budget.wait_for("files.getUploadURLExternal"))
            if wait > 0:
                raise SlackOverBudget("Slack files.completeUploadExternal: the channel's "
                                      f"budget is spent for {wait:.1f} s", wait)
        png = gate_chart(drawn)
        self._take("files.completeUploadExternal", channel)
        self._take("files.getUploadURLExternal")
        self.store.set_slack_state(run.id, chart_pending=filename)
        try:
            self._call("files_upload_v2", taken=True, channel=channel,
                       thread_ts=state["root_ts"], file=png,
                       filename=filename, title=title, initial_comment=comment)
        except SlackRateLimited:
            self.store.set_slack_state(run.id, chart_pending="")  # nothing shared
            raise
        self.store.set_slack_state(run.id, **done)

    def _posted_root(self, run: Run) -> dict[str, str]:
        """The run's root message if one was posted (found by its metadata) but its record
        was lost with a killed worker; else nothing."""
        m = find_by_metadata(partial(self._call, "conversations_history"), run.channel,
                             run.created_at - 60, ROOT_EVENT, "run", run.id)
        if m is None:
            return {}
        found = {"root_channel": run.channel, "root_ts": m["ts"], "posted": "0"}
        self.store.set_slack_state(run.id, **found)
        log.info("slack.root_reconciled", run_id=run.id, ts=m["ts"])
        return found

    def _shared_files(self, state: dict[str, str]) -> set[str]:
        """Names of the files shared in the run's thread (a chart shared before a crash)."""
        names, cursor = set(), None
        while True:
            page = self._call("conversations_replies", channel=state["root_channel"],
                              ts=state["root_ts"], limit=1000, cursor=cursor)
            for m in page.get("messages", []):
                names |= {str(f.get("name")) for f in m.get("files") or []}
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return names

    def _posted_lines(self, run: Run, state: dict[str, str]) -> dict[int, int]:
        """The run's thread messages found by their metadata: {first line: last line} (the
        same line for a message of one line)."""
        lines: dict[int, int] = {}
        cursor = None
        while True:
            page = self._call("conversations_replies", channel=state["root_channel"],
                              ts=state["root_ts"], limit=1000, include_all_metadata=True,
                              cursor=cursor)
            for m in page.get("messages", []):
                meta = m.get("metadata") or {}
                payload = meta.get("event_payload") or {}
                if meta.get("event_type") == LINE_EVENT and payload.get("run") == run.id:
                    first = int(payload.get("line", -1))
                    lines[first] = int(payload.get("last", first))
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return lines


class BudgetedSlack:
    """``chat_postMessage`` and ``conversations_history`` as a ``WebClient``'s, through
    the workspace's budget
    (:meth:`SlackNotifier.call`): what the release watcher posts its notices with, so they
    count against the same per-channel and per-method limits as the runs' messages, and a
    429 one of them gets makes every worker wait its ``Retry-After`` (issue 13: one Slack
    budget for the workspace).

    Raises what :meth:`SlackNotifier.call` raises: ``SlackOverBudget`` / ``SlackRateLimited``
    (``TemporaryError`` with ``delay_s``), ``PermanentError`` for a refusal."""

    def __init__(self, notifier: SlackNotifier, who: str = "releases") -> None:
        self.notifier = notifier
        self.who = who  # the budget's waiting place: the watcher's, not a run's

    def chat_postMessage(self, **kwargs: Any) -> Any:  # noqa: N802 - WebClient's name
        return self.notifier.call("chat_postMessage", who=self.who, **kwargs)

    def conversations_history(self, **kwargs: Any) -> Any:
        return self.notifier.call("conversations_history", who=self.who, **kwargs)


def charts_due(run: Run, state: dict[str, str]) -> tuple[list[int], bool]:
    """The charts a sync of ``run`` shares, from its Slack ``state``: the positions in
    ``run.waves`` of the waves that ended (a verdict) and whose chart is not shared yet, in
    order (``charts`` in the state: how many waves' charts are shared; waves end in
    order); and whether the run's summary chart is due: the run has ended, the bakes of at
    least two waves began (with one, its wave's chart is the whole run) and it is not
    shared yet (``summary``)."""
    charted = int(state.get("charts", 0))
    waves = [i for i, w in enumerate(run.waves) if i >= charted and w.verdict is not None]
    summary = (run.phase.terminal and not state.get("summary")
               and sum(1 for w in run.waves if w.bake_started_at is not None) >= 2)
    return waves, summary


def _called_method(exc: BaseException) -> str | None:
    """The Web API method of a failed call (``files_upload_v2`` makes several)."""
    response = getattr(exc, "response", None)
    url = str(getattr(response, "api_url", "") or "")
    return url.rstrip("/").rsplit("/", 1)[-1] or None


ROOT_EVENT = "meshops_run"  # message metadata event types (Slack "Message metadata")
LINE_EVENT = "meshops_run_line"


def _metadata(event_type: str, run_id: str, **payload: int) -> dict[str, Any]:
    """Slack message metadata naming the run (and the history line, or the ``line`` …
    ``last`` of a batch) a message shows: how a post made just before a crash is
    recognised afterwards (exactly-once per line)."""
    return {"event_type": event_type, "event_payload": {"run": run_id, **payload}}

