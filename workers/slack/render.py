"""Block Kit rendering of runs: the root message, its buttons and the thread lines.

One root message per run in the cluster's channel, updated in place; the step log goes to
its thread, one message per history line (DESIGN.md §6). Buttons carry only the run id; the
action is the ``action_id``. Pure functions of the run: no I/O here.
"""

from __future__ import annotations

from typing import Any

from workflows.kind import PAST, Button, kind_of
from workflows.model import Check, Phase, Run, Wave, WaveStep
from workflows.policy import mention

ACTION_PREFIX = "meshops_"
PHASE_EMOJI = {
    Phase.COMPLETED: ":white_check_mark:", Phase.ROLLED_BACK: ":leftwards_arrow_with_hook:",
    Phase.FAILED: ":x:", Phase.REFUSED: ":no_entry:", Phase.CANCELLED: ":heavy_minus_sign:",
    Phase.REJECTED: ":no_entry_sign:", Phase.PAUSED: ":double_vertical_bar:",
    Phase.ROLLING_BACK: ":rewind:",
}


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


def render_button(button: Button, run: Run) -> dict[str, Any]:
    """A run button (Block Kit ``button``): the action in ``action_id``, only the run id as
    ``value``; a ``confirm`` dialog before the irreversible ones."""
    b: dict[str, Any] = {"type": "button", "action_id": ACTION_PREFIX + button.action,
                         "text": {"type": "plain_text", "text": button.label},
                         "value": run.id}
    if button.style:
        b["style"] = button.style
    c = button.confirm
    if c is not None:
        b["confirm"] = {
            "title": {"type": "plain_text", "text": c.title},
            "text": {"type": "mrkdwn", "text": c.text.format(
                stable=run.stable_revision or "?", canary=run.canary_revision)},
            "confirm": {"type": "plain_text", "text": c.yes},
            "deny": {"type": "plain_text", "text": "Not now"},
            **({"style": "danger"} if c.danger else {}),
        }
    return b


def render_root(run: Run, approvers: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """The root message of a run: (fallback text, blocks)."""
    emoji = PHASE_EMOJI.get(run.phase, ":arrows_counterclockwise:")
    kind = kind_of(run)
    title = kind.title(run)
    text = f"{title} — {run.phase.value.replace('_', ' ')} (run {run.id})"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Phase*\n{emoji} {run.phase.value.replace('_', ' ')}"},
            {"type": "mrkdwn", "text": f"*Run*\n`{run.id}`"},
            {"type": "mrkdwn", "text": f"*Requested by*\n<@{run.requester}>"},
            {"type": "mrkdwn", "text": "*Approvers*\n"
             + (", ".join(mention(a) for a in approvers) or "none")},
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
    note = kind.plan_note(run) if run.phase == Phase.AWAITING_APPROVAL else ""
    if note:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    if run.pause_reason and run.phase == Phase.PAUSED:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"*Paused*: {run.pause_reason}"[:2900]}})
    if run.outcome and run.phase.terminal:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"*Outcome*: {run.outcome}"[:2900]}})
    buttons = kind.buttons.get(run.phase, ())
    if buttons:
        elements = [render_button(b, run) for b in buttons]
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
