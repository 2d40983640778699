"""Block Kit rendering of runs: the root message, its buttons and the thread lines.

One root message per run in the cluster's channel, updated in place; the step log goes to
its thread, one message per history line (DESIGN.md §6). Buttons carry only the run id; the
action is the ``action_id``. Pure functions of the run: no I/O here.
"""

from __future__ import annotations

import re
from typing import Any

from workflows.kind import PAST, Button, kind_of
from workflows.model import Check, Phase, Run, Wave, WaveStep
from workflows.policy import mention

ACTION_PREFIX = "meshops_"
PHASE_EMOJI = {
    Phase.COMPLETED: ":white_check_mark:", Phase.ROLLED_BACK: ":leftwards_arrow_with_hook:",
    Phase.FAILED: ":x:", Phase.REFUSED: ":no_entry:", Phase.CANCELLED: ":heavy_minus_sign:",
    Phase.REJECTED: ":no_entry_sign:", Phase.PAUSED: ":double_vertical_bar:",
    Phase.ROLLING_BACK: ":rewind:", Phase.HALTED: ":octagonal_sign:",
}


#: the canary gate's check metric: ``<signal>:<reporter>`` and, for latency, ``>EDGEms``
CANARY_METRIC = re.compile(
    r"^(?P<signal>errors|latency|tail|tcp|restarts):(?P<reporter>[a-z]+)"
    r"(?:>(?P<edge>[0-9.]+)ms)?$")
FORMER_METRICS = ("success_rate", "p99_ms", "requests")
_SIGNAL_LABELS = {"errors": "5xx/gRPC errors", "tcp": "TCP connection failures",
                  "restarts": "container restarts"}
_STATUS_MARKS = {"ok": "✓", "regressed": "✗", "undecided": "…", "thin": "?"}
_STATUS_RANK = {"regressed": 0, "undecided": 1, "thin": 2}
GATE_LINES_DECIDED = 12  # check lines of a look that ends a bake, "… and N more" included
GATE_LINES_OPEN = 6  # of an intermediate look: only its open signals
ROOT_GATE_LINES = 8
ROOT_REASON_CHARS = 600
MESSAGE_CHARS = 3000  # Slack's limit for a section's text
DECIDED_TEXT_CHARS = 1200  # a decided look's text keeps at least this much
OPEN_TEXT_CHARS = 400  # an intermediate look's text, at most
CHECK_LINE_CHARS = 240


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…"


def fmt_rate(value: float | None, unit: str) -> str:
    """A canary gate rate as the gate's reasons show it: ``0.012%``, ``1.25%``, ``0.3/h``."""
    if value is None:
        return "no data"
    if unit == "/h":
        return f"{value:.1f}/h"
    return f"{value:.3f}%" if abs(value) < 1 else f"{value:.2f}%"


def fmt_confidence(p: float) -> str:
    """0.995 → ``99.50%``; ``>99.99%`` from 0.9999 (as :mod:`workflows.canary` says it)."""
    return ">99.99%" if p >= 0.9999 else f"{100 * p:.2f}%"


def signal_label(metric: str) -> str | None:
    """What a canary gate metric measures, in words (``latency:destination>250ms`` →
    ``slower than 250 ms (destination)``); None for any other metric."""
    m = CANARY_METRIC.match(metric)
    if m is None:
        return None
    signal, reporter, edge = m.group("signal", "reporter", "edge")
    if signal in ("latency", "tail"):
        label = f"slower than {float(edge):g} ms" if edge else (
            "latency" if signal == "latency" else "tail latency")
    else:
        label = _SIGNAL_LABELS[signal]
    return label if reporter == "pods" else f"{label} ({reporter})"


def check_is_open(c: Check) -> bool:
    """A regressed or undecided signal, or a failed check of a gate without statuses."""
    return c.status in ("regressed", "undecided") if c.status else not c.ok


def _severity(c: Check) -> tuple[int, float]:
    rank = _STATUS_RANK.get(c.status, 3) if c.status else (3 if c.ok else 0)
    ratio = (c.value / c.threshold if c.value is not None and c.threshold > 0
             and c.op == "<=" else 0.0)
    return rank, -ratio


def worst_first(checks: list[Check]) -> list[Check]:
    """Checks in the order a person reads them: regressed, undecided, too little data,
    then the ok ones; within each, the highest value against its threshold first (the
    order is otherwise kept)."""
    return sorted(checks, key=_severity)


def check_lines(checks: list[Check], limit: int, what: str = "signals") -> list[str]:
    """At most ``limit`` lines: the checks' lines, the last replaced by "… and N more
    ``what``" when they do not fit."""
    if len(checks) <= limit:
        return [fmt_check(c) for c in checks]
    shown = max(0, limit - 1)
    return [fmt_check(c) for c in checks[:shown]] + [
        f"… and {len(checks) - shown} more {what}"]


def fmt_check(c: Check) -> str:
    """One line per check, whichever gate made it.

    The canary gate's (``metric`` ``<signal>:<reporter>[>EDGEms]``): the canary's rate
    since the bake began, what the weather predicts, the control's rate, the tolerated
    rate, the status and the test's confidence, e.g. ``✗ shop 5xx/gRPC errors
    (destination) 1.20% — expected 0.010%, control 0.011%, tolerated ≤ 0.060%,
    regressed at >99.99% confidence``. The former gate's (``success_rate``, ``p99_ms``,
    ``requests``): value against threshold. A team metric template's (its name as
    ``metric``): value, operator, threshold.
    """
    op = {">=": "≥", "<=": "≤"}.get(c.op, c.op)
    if c.metric in FORMER_METRICS:
        unit = "%" if c.metric == "success_rate" else (" ms" if c.metric == "p99_ms" else "")
        name = {"success_rate": "success", "p99_ms": "p99", "requests": "requests"}[c.metric]
        value = "no data" if c.value is None else (
            f"{c.value:.2f}{unit}" if c.metric == "success_rate" else f"{c.value:.0f}{unit}")
        mark = "✓" if c.ok else "✗"
        threshold = f"{c.threshold:.2f}" if c.metric == "success_rate" else f"{c.threshold:.0f}"
        return f"{mark} {c.namespace} {name} {value} {op} {threshold}{unit}"
    label = signal_label(c.metric)
    if label is None:  # a team metric template
        value = "no data" if c.value is None else f"{c.value:g}"
        return f"{'✓' if c.ok else '✗'} {c.namespace} {c.metric} {value} {op} {c.threshold:g}"
    unit = c.unit or ("/h" if c.metric.startswith("restarts:") else "%")
    mark = _STATUS_MARKS.get(c.status, "✓" if c.ok else "✗")
    sides = []
    if c.expected is not None:
        sides.append(f"expected {fmt_rate(c.expected, unit)}")
    if c.control is not None:
        sides.append(f"control {fmt_rate(c.control, unit)}")
    if c.status != "thin":
        sides.append(f"tolerated {op} {fmt_rate(c.threshold, unit)}")
    if c.status == "thin":
        sides.append("too little data to judge")
    elif c.status in ("ok", "regressed") and c.confidence is not None:
        sides.append(f"{c.status} at {fmt_confidence(c.confidence)} confidence")
    elif c.status:
        sides.append(c.status)
    line = f"{mark} {c.namespace} {label} {fmt_rate(c.value, unit)}"
    return line + (" — " + ", ".join(sides) if sides else "")


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
            {"type": "mrkdwn", "text": f"*Requested by*\n{mention(run.requester)}"},
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
        shown = worst_first([c for c in last.checks if c.metric != "requests" or not c.ok])
        body = f"*Gate, wave {wave.index}*: {last.verdict.value}"
        if last.reason:
            body += "\n" + clip(last.reason, ROOT_REASON_CHARS)
        lines = [clip(line, CHECK_LINE_CHARS)
                 for line in check_lines(shown, ROOT_GATE_LINES)]
        if lines:
            body += "\n" + "\n".join(lines)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body[:2900]}})
    own = kind.body(run)
    if own:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": own[:2900]}})
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


def _bold_first_line(text: str, limit: int) -> str:
    """``text`` with its first line in bold (mrkdwn), at most ``limit`` characters; a
    one-line text in the worker's form ``<which look>: <state> — <reason>`` is split at the
    dash, so the reason is not one long bold paragraph."""
    head, sep, rest = text.strip().partition("\n")
    if not sep:
        head, _, rest = head.partition(" — ")
    head = clip(head.strip(), max(1, limit - 2))
    out = f"*{head}*" if head else ""
    room = limit - len(out) - 1
    if rest.strip() and room > 1:
        out = (out + "\n" if out else "") + clip(rest.strip(), room)
    return out


def render_gate_event(text: str, checks: list[Check], decided: bool) -> str:
    """A look at a wave in the thread: the text's first line (or what precedes its " — ")
    in bold, the rest of it, then check lines.

    The look that ends the bake (``decided``) lists every signal, not-ok first, in at most
    :data:`GATE_LINES_DECIDED` lines; an intermediate look only its regressed and undecided
    ones, in at most :data:`GATE_LINES_OPEN` lines, and its text is cut to
    :data:`OPEN_TEXT_CHARS`, so the thread stays readable over a long bake. At most
    3,000 characters (Slack's limit for a section's text): check lines give way first,
    the text keeps at least :data:`DECIDED_TEXT_CHARS`.
    """
    if decided:
        chosen, limit, what = worst_first(checks), GATE_LINES_DECIDED, "signals"
        text_chars = DECIDED_TEXT_CHARS
    else:
        chosen = worst_first([c for c in checks if check_is_open(c)])
        limit, what, text_chars = GATE_LINES_OPEN, "open signals", OPEN_TEXT_CHARS
    lines: list[str] = []
    for k in range(limit, 0, -1):
        lines = [clip(line, CHECK_LINE_CHARS) for line in check_lines(chosen, k, what)]
        if sum(len(line) + 1 for line in lines) + text_chars <= MESSAGE_CHARS:
            break
    room = MESSAGE_CHARS - sum(len(line) + 1 for line in lines)
    body = _bold_first_line(text, room if decided else min(room, text_chars))
    return "\n".join(([body] if body else []) + lines)[:MESSAGE_CHARS]


def render_event(run: Run, index: int) -> str:
    """The thread line of the run's event ``index`` (counted from its first event, also in
    a run read from a later one: :attr:`Run.history_start`): at most 3,000 characters.

    Raises:
        IndexError: the event was not read (before ``history_start``) or does not exist.
    """
    if index < run.history_start:
        raise IndexError(f"event {index} of run {run.id} was not read (its history was "
                         f"read from {run.history_start})")
    e = run.history[index - run.history_start]
    if e.kind == "gate":
        checks = [Check(**c) for c in e.data.get("checks", [])]
        if "decided" in e.data:
            return render_gate_event(e.text, checks, bool(e.data["decided"]))
        lines = [f"*{e.text}*"] + [fmt_check(c) for c in checks]
        return "\n".join(lines)[:MESSAGE_CHARS]
    prefix = {"phase": ":large_blue_circle:", "retry": ":hourglass:",
              "arm": ":cloud:"}.get(e.kind, "•")
    if e.kind == "phase" and run.phase in (Phase.ROLLED_BACK, Phase.FAILED) and \
            index == run.history_len - 1:
        prefix = ":warning:"
    return f"{prefix} {e.text}"[:MESSAGE_CHARS]
