"""Slack Web API: Block Kit rendering of runs and the notifier that keeps Slack in step.

One root message per run in the cluster's channel, updated in place with ``chat.update``;
the step log goes to its thread, one message per history line, in order (DESIGN.md §6).
The channel and ``ts`` of the root message and how many history lines were posted are
persisted in Redis, so a new worker carries on where the last one stopped (unlike Argo's
notifications engine, which keeps them in memory). Buttons carry only the run id; the action
is the ``action_id``. Slack 429s are retried after ``Retry-After`` by slack_sdk's handler.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from workers.charts import gate_chart
from workflows.errors import PermanentError, TemporaryError
from workflows.model import Check, Phase, Run, Verdict, Wave, WaveStep

ACTION_PREFIX = "meshops_"
PAST = {"approve": "approved", "reject": "rejected", "cancel": "cancelled",
        "complete": "completion approved", "rollback": "roll back requested",
        "pause": "paused", "resume": "resumed"}
BUTTONS = {
    Phase.AWAITING_APPROVAL: [("approve", "Approve", "primary"), ("cancel", "Cancel", None)],
    Phase.AWAITING_WAVE_APPROVAL: [("approve", "Approve next wave", "primary"),
                                   ("rollback", "Roll back", "danger")],
    Phase.AWAITING_COMPLETION: [("complete", "Complete", "primary"),
                                ("rollback", "Roll back", "danger")],
    Phase.PAUSED: [("resume", "Resume", "primary"), ("rollback", "Roll back", "danger")],
    Phase.MIGRATING: [("pause", "Pause", None), ("rollback", "Roll back", "danger")],
}
#: Slack's confirmation dialog before the irreversible buttons (Block Kit "confirm" object)
CONFIRM = {
    "complete": ("Complete the upgrade?",
                 "This removes the control plane of *{stable}*; only *{canary}* remains. "
                 "Rolling back afterwards means a new upgrade.", "Complete"),
    "rollback": ("Roll back?",
                 "Every migrated namespace goes back to *{stable}* and its workloads restart; "
                 "then the *{canary}* control plane is removed.", "Roll back"),
}
PHASE_EMOJI = {
    Phase.COMPLETED: ":white_check_mark:", Phase.ROLLED_BACK: ":leftwards_arrow_with_hook:",
    Phase.FAILED: ":x:", Phase.REFUSED: ":no_entry:", Phase.CANCELLED: ":heavy_minus_sign:",
    Phase.REJECTED: ":no_entry_sign:", Phase.PAUSED: ":double_vertical_bar:",
    Phase.ROLLING_BACK: ":rewind:",
}


def make_client(token: str, base_url: str) -> WebClient:
    client = WebClient(token=token, base_url=base_url)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    client.retry_handlers.append(ConnectionErrorRetryHandler(max_retry_count=2))
    return client


def fmt_check(c: Check) -> str:
    unit = "%" if c.metric == "success_rate" else (" ms" if c.metric == "p99_ms" else "")
    name = {"success_rate": "success", "p99_ms": "p99", "requests": "requests"}[c.metric]
    value = "no data" if c.value is None else (
        f"{c.value:.2f}{unit}" if c.metric == "success_rate" else f"{c.value:.0f}{unit}")
    mark = "✓" if c.ok else "✗"
    threshold = f"{c.threshold:.2f}" if c.metric == "success_rate" else f"{c.threshold:.0f}"
    return f"{mark} {c.namespace} {name} {value} {'≥' if c.op == '>=' else '≤'} " \
           f"{threshold}{unit}"


def progress_bar(wave: Wave, run: Run) -> str:
    steps = [WaveStep.BASELINE, WaveStep.LABEL, WaveStep.RESTART, WaveStep.VERIFY,
             WaveStep.BAKE, WaveStep.DONE]
    if wave.index > run.wave_index or (run.phase == Phase.AWAITING_APPROVAL):
        done = 0
    else:
        done = steps.index(wave.step)
    return "▰" * done + "▱" * (len(steps) - 1 - done)


def render_root(run: Run, approvers: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """The root message of a run: (fallback text, blocks)."""
    stable = run.stable_revision or "?"
    emoji = PHASE_EMOJI.get(run.phase, ":arrows_counterclockwise:")
    title = f"Mesh upgrade of {run.cluster}: {stable} → {run.canary_revision}"
    if run.kind == "enable":
        title = (f"Enable the Istio add-on on {run.cluster}: "
                 f"{run.canary_revision or 'the default revision'}")
    elif run.kind == "disable":
        title = f"Disable the Istio add-on on {run.cluster}"
    elif run.kind == "ingress":
        title = (f"{'Enable' if run.ingress_enabled else 'Disable'} the "
                 f"{(run.ingress_mode or '').lower()} ingress gateway of {run.cluster}")
    if run.kind == "rollover":
        title = (f"Patch rollover of {run.cluster}: {run.canary_revision} → "
                 f"{run.target_version or 'latest patch'}")
    text = f"{title} — {run.phase.value.replace('_', ' ')} (run {run.id})"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Phase*\n{emoji} {run.phase.value.replace('_', ' ')}"},
            {"type": "mrkdwn", "text": f"*Run*\n`{run.id}`"},
            {"type": "mrkdwn", "text": f"*Requested by*\n<@{run.requester}>"},
            {"type": "mrkdwn", "text": "*Approvers*\n"
             + (", ".join(f"<@{a}>" for a in approvers) or "none")},
        ]},
    ]
    if run.waves:
        lines = []
        for w in run.waves[:40]:
            status = w.step.value if w.index <= run.wave_index else "waiting"
            if w.verdict:
                status = f"gate {w.verdict.value}"
            lines.append(f"`{progress_bar(w, run)}` *wave {w.index}* "
                         f"{', '.join(w.namespaces)[:200]} ({w.workloads} workloads) — {status}")
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": "\n".join(lines)[:2900]}})
    wave = run.current_wave
    if wave is not None and wave.samples:
        last = wave.samples[-1]
        checks = [fmt_check(c) for c in last.checks if c.metric != "requests" or not c.ok]
        body = f"*Gate, wave {wave.index}*: {last.verdict.value}"
        if checks:
            body += "\n" + "\n".join(checks[:20])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body[:2900]}})
    if run.phase == Phase.AWAITING_APPROVAL:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
            f"Bake {run.options.bake_s:.0f}s per wave, sampled every "
            f"{run.options.interval_s:.0f}s; gate: success ≥ {run.thresholds.min_success_rate:g}%"
            f", p99 ≤ {run.thresholds.max_p99_ms:g} ms, ≥ {run.thresholds.min_requests} "
            "requests per window. An approver other than the requester approves.")}]})
    if run.pause_reason and run.phase == Phase.PAUSED:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"*Paused*: {run.pause_reason}"[:2900]}})
    if run.outcome and run.phase.terminal:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"*Outcome*: {run.outcome}"[:2900]}})
    buttons = BUTTONS.get(run.phase, [])
    if buttons:
        elements = []
        for action, label, style in buttons:
            b: dict[str, Any] = {"type": "button", "action_id": ACTION_PREFIX + action,
                                 "text": {"type": "plain_text", "text": label},
                                 "value": run.id}
            if style:
                b["style"] = style
            confirm = CONFIRM.get(action)
            if action == "approve" and run.kind == "disable":
                confirm = ("Disable the mesh?", "This removes the Istio control plane "
                           "*{stable}* and its gateways from the cluster.", "Disable")
            if confirm:
                title, body, yes = confirm
                b["confirm"] = {
                    "title": {"type": "plain_text", "text": title},
                    "text": {"type": "mrkdwn", "text": body.format(
                        stable=stable, canary=run.canary_revision)},
                    "confirm": {"type": "plain_text", "text": yes},
                    "deny": {"type": "plain_text", "text": "Not now"},
                    **({"style": "danger"} if action == "rollback" else {}),
                }
            elements.append(b)
        blocks.append({"type": "actions", "block_id": f"run:{run.id}", "elements": elements})
    decisions = [f"{PAST.get(a.decision, a.decision).capitalize()} by <@{a.user}>"
                 for a in run.approvals]
    if decisions:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": " · ".join(decisions)[:2900]}]})
    return text, blocks


def render_event(run: Run, index: int) -> str:
    e = run.history[index]
    if e.kind == "gate":
        checks = [Check(**c) for c in e.data.get("checks", [])]
        lines = [f"*{e.text}*"] + [fmt_check(c) for c in checks]
        return "\n".join(lines)[:3000]
    prefix = {"phase": ":large_blue_circle:", "retry": ":hourglass:",
              "arm": ":cloud:"}.get(e.kind, "•")
    if e.kind == "phase" and run.phase in (Phase.ROLLED_BACK, Phase.FAILED) and \
            index == len(run.history) - 1:
        prefix = ":warning:"
    return f"{prefix} {e.text}"[:3000]


class SlackNotifier:
    """Posts and updates a run's messages so Slack shows the run as it is stored."""

    def __init__(self, client: WebClient, store: Any, approvers_of: Any):
        self.client = client
        self.store = store
        self.approvers_of = approvers_of  # cluster short name -> list of approver ids

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else "unknown"
            if error in ("ratelimited", "service_unavailable", "fatal_error",
                         "internal_error", "request_timeout"):
                raise TemporaryError(f"Slack {method}: {error}", 5) from exc
            raise PermanentError(f"Slack {method} refused: {error}") from exc
        except OSError as exc:
            raise TemporaryError(f"Slack unreachable: {exc}", 5) from exc

    def sync(self, run: Run) -> None:
        """Bring Slack up to date with ``run``. Idempotent; raises TemporaryError to retry."""
        state = self.store.slack_state(run.id)
        if run.phase == Phase.REFUSED and not state.get("root_ts"):
            if not state.get("refusal_sent"):
                what = {"enable": f"Enabling the mesh on `{run.cluster}`",
                        "disable": f"Disabling the mesh on `{run.cluster}`",
                        "ingress": f"The ingress gateway change on `{run.cluster}`",
                        "rollover": f"The patch rollover of `{run.cluster}`"}.get(
                    run.kind, f"Upgrade of `{run.cluster}` to `{run.canary_revision}`")
                self._call("chat_postEphemeral", channel=run.origin_channel or run.channel,
                           user=run.requester,
                           text=f":no_entry: {what} refused: {run.outcome}")
                self.store.set_slack_state(run.id, refusal_sent=1)
            self.store.mark_synced(run.id)
            return
        text, blocks = render_root(run, self.approvers_of(run.cluster))
        digest = hashlib.sha1(json.dumps([text, blocks]).encode()).hexdigest()
        if not state.get("root_ts"):
            resp = self._call("chat_postMessage", channel=run.channel, text=text, blocks=blocks)
            state = {"root_channel": resp["channel"], "root_ts": resp["ts"], "posted": "0",
                     "digest": digest}
            self.store.set_slack_state(run.id, **state)
        elif state.get("digest") != digest:
            self._call("chat_update", channel=state["root_channel"], ts=state["root_ts"],
                       text=text, blocks=blocks)
            self.store.set_slack_state(run.id, digest=digest)
        posted = int(state.get("posted", 0))
        for i in range(posted, len(run.history)):
            self._call("chat_postMessage", channel=state["root_channel"],
                       thread_ts=state["root_ts"], text=render_event(run, i))
            self.store.set_slack_state(run.id, posted=i + 1)
        charted = int(state.get("charts", 0))
        ended = [w for w in run.waves if w.verdict is not None]
        if len(ended) > charted:
            wave = ended[-1]
            self._call("files_upload_v2", channel=state["root_channel"],
                       thread_ts=state["root_ts"], file=gate_chart(run),
                       filename=f"{run.id}-wave-{wave.index}.png",
                       title=f"{run.cluster} wave {wave.index}: gate {wave.verdict.value}",
                       initial_comment=f"Success rate and p99 per namespace up to wave "
                                       f"{wave.index} ({wave.verdict.value})")
            self.store.set_slack_state(run.id, charts=len(ended))
        self.store.mark_synced(run.id)


__all__ = ["SlackNotifier", "render_root", "render_event", "make_client", "Verdict"]
