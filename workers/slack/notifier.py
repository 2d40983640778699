"""``SlackNotifier``: keeps a run's Slack messages in step with the stored run.

One root message per run in the cluster's channel, updated in place with ``chat.update``;
the step log goes to its thread, one message per history line, in order (DESIGN.md §6).
Exactly once: before each post a marker (``root_pending``, ``line_pending``) is stored, and
the message carries Slack message metadata naming the run and line; a worker killed between
the post and its record leaves the marker, and the next sync looks for the message
(``conversations.history``/``replies`` with ``include_all_metadata``) before posting; a
gate chart is found by its file name among the thread's file shares.
The channel and ``ts`` of the root message and how many history lines were posted are
persisted in Redis, so a new worker carries on where the last one stopped (unlike Argo's
notifications engine, which keeps them in memory). Slack 429s are retried after
``Retry-After`` by slack_sdk's handler (:func:`workers.slack.client.make_client`).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import structlog
from slack_sdk import WebClient

from workers.slack.charts import gate_chart
from workers.slack.errors import SLACK_ERRORS, SlackRefused, translate_slack_error
from workers.slack.render import render_event, render_root
from workflows.kind import kind_of
from workflows.model import Phase, Run

log = structlog.get_logger("meshops.slack")

#: after Slack refused a run's messages for good, try again this often (s): a fixed channel
#: (the app invited, the channel unarchived) heals by itself, without a retry storm
REFUSED_RETRY_S = 600.0


class SlackNotifier:
    """Posts and updates a run's messages so Slack shows the run as it is stored."""

    def __init__(self, client: WebClient, store: Any, approvers_of: Any,
                 audit: Any = None):
        self.client = client
        self.store = store
        self.approvers_of = approvers_of  # cluster short name -> list of approver ids
        self.audit = audit  # the audit stream (``AuditLog``), to record refusals once

    def _call(self, method: str, **kwargs: Any) -> Any:
        """``client.<method>(**kwargs)``; Slack's errors raised as ``TemporaryError`` /
        ``PermanentError`` (:func:`workers.slack.errors.translate_slack_error`)."""
        try:
            return getattr(self.client, method)(**kwargs)
        except SLACK_ERRORS as exc:
            raise translate_slack_error(exc, method.replace("_", ".")) from exc

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
            self.store.mark_synced(run.id)  # not retried before its time
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
            self.store.mark_synced(run.id)
            return
        if state.get("error"):
            self.store.clear_slack_error(run.id)

    def _sync(self, run: Run, state: dict[str, str]) -> None:
        if run.phase == Phase.REFUSED and not state.get("root_ts"):
            if not state.get("refusal_sent"):
                what = kind_of(run).subject(run)
                self._call("chat_postEphemeral", channel=run.origin_channel or run.channel,
                           user=run.requester,
                           text=f":no_entry: {what} refused: {run.outcome}")
                self.store.set_slack_state(run.id, refusal_sent=1)
            self.store.mark_synced(run.id)
            return
        text, blocks = render_root(run, self.approvers_of(run.cluster))
        digest = hashlib.sha1(json.dumps([text, blocks]).encode()).hexdigest()
        if not state.get("root_ts") and state.get("root_pending", "0") != "0":
            state = {**state, **self._posted_root(run)}  # a crash may have hidden one
        if not state.get("root_ts"):
            # the marker first: a crash between the post and its record is reconciled
            # from the message's metadata, never answered with a second root
            self.store.set_slack_state(run.id, root_pending=1)
            try:
                resp = self._call("chat_postMessage", channel=run.channel, text=text,
                                  blocks=blocks, metadata=_metadata(ROOT_EVENT, run.id))
            except SlackRefused:
                self.store.set_slack_state(run.id, root_pending=0)  # refused: nothing posted
                raise
            state = {"root_channel": resp["channel"], "root_ts": resp["ts"], "posted": "0",
                     "digest": digest}
            self.store.set_slack_state(run.id, **state)
        elif state.get("digest") != digest:
            self._call("chat_update", channel=state["root_channel"], ts=state["root_ts"],
                       text=text, blocks=blocks)
            self.store.set_slack_state(run.id, digest=digest)
        posted = int(state.get("posted", 0))
        pending = state.get("line_pending")
        if pending is not None and int(pending) == posted < len(run.history) \
                and posted in self._posted_lines(run, state):
            posted += 1  # posted before a crash, not recorded: not posted again
            self.store.set_slack_state(run.id, posted=posted)
        for i in range(posted, len(run.history)):
            self.store.set_slack_state(run.id, line_pending=i)
            try:
                self._call("chat_postMessage", channel=state["root_channel"],
                           thread_ts=state["root_ts"], text=render_event(run, i),
                           metadata=_metadata(LINE_EVENT, run.id, line=i))
            except SlackRefused:
                self.store.set_slack_state(run.id, line_pending=-1)  # refused: not posted
                raise
            self.store.set_slack_state(run.id, posted=i + 1)
        charted = int(state.get("charts", 0))
        ended = [w for w in run.waves if w.verdict is not None]
        if len(ended) > charted:
            wave = ended[-1]
            verdict = wave.verdict.value if wave.verdict else "?"
            filename = f"{run.id}-wave-{wave.index}.png"
            if state.get("chart_pending") == filename and filename in self._shared_files(
                    state):
                self.store.set_slack_state(run.id, charts=len(ended))  # shared before a crash
                self.store.mark_synced(run.id)
                return
            self.store.set_slack_state(run.id, chart_pending=filename)
            self._call("files_upload_v2", channel=state["root_channel"],
                       thread_ts=state["root_ts"], file=gate_chart(run),
                       filename=filename,
                       title=f"{run.cluster} wave {wave.index}: gate {verdict}",
                       initial_comment=f"Errors and slow requests of the migrated "
                                       f"namespaces against the not-yet-migrated ones, up to "
                                       f"wave {wave.index} ({verdict})")
            self.store.set_slack_state(run.id, charts=len(ended))
        self.store.mark_synced(run.id)

    def _posted_root(self, run: Run) -> dict[str, str]:
        """The run's root message if one was posted (found by its metadata) but its record
        was lost with a killed worker; else nothing."""
        cursor = None
        while True:
            page = self._call("conversations_history", channel=run.channel,
                              oldest=f"{run.created_at - 60:.6f}", limit=200,
                              include_all_metadata=True, cursor=cursor)
            for m in page.get("messages", []):
                meta = m.get("metadata") or {}
                if meta.get("event_type") == ROOT_EVENT and \
                        (meta.get("event_payload") or {}).get("run") == run.id:
                    found = {"root_channel": run.channel, "root_ts": m["ts"], "posted": "0"}
                    self.store.set_slack_state(run.id, **found)
                    log.info("slack.root_reconciled", run_id=run.id, ts=m["ts"])
                    return found
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return {}

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

    def _posted_lines(self, run: Run, state: dict[str, str]) -> set[int]:
        """History lines of the run found in its thread (by their metadata)."""
        lines, cursor = set(), None
        while True:
            page = self._call("conversations_replies", channel=state["root_channel"],
                              ts=state["root_ts"], limit=1000, include_all_metadata=True,
                              cursor=cursor)
            for m in page.get("messages", []):
                meta = m.get("metadata") or {}
                payload = meta.get("event_payload") or {}
                if meta.get("event_type") == LINE_EVENT and payload.get("run") == run.id:
                    lines.add(int(payload.get("line", -1)))
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return lines


ROOT_EVENT = "meshops_run"  # message metadata event types (Slack "Message metadata")
LINE_EVENT = "meshops_run_line"


def _metadata(event_type: str, run_id: str, **payload: int) -> dict[str, Any]:
    """Slack message metadata naming the run (and the history line) a message shows: how a
    post made just before a crash is recognised afterwards (exactly-once per line)."""
    return {"event_type": event_type, "event_payload": {"run": run_id, **payload}}
