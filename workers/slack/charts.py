"""Charts of a run's gate: each look at a wave over time, the picture of why it passed or not.

Rendered with matplotlib (Agg, no display) to PNG bytes for Slack's ``files_upload_v2``:
when a wave's bake ends, that wave's looks (the caller passes the run with that wave only,
so a chart's cost follows its wave, not the waves before it); once the run ends, its
summary, every wave's (:mod:`workers.slack.notifier`). Wave boundaries (each wave's bake
start) are marked.

Runs judged by the canary gate (:mod:`workflows.canary`, checks ``<signal>:<reporter>…``)
show the canary against the control: 5xx/gRPC errors (%) on top, slow requests (%) below;
per panel the four worst canary subjects by name (highest value against what is tolerated),
the rest as one mean line, the control's rate (the namespaces not migrated yet), the mean
expected rate and the mean tolerated rate. The legend is bounded and the cost is linear in
the number of checks, so a run over 2,000 namespaces draws as fast as one over three.
Runs of the former gate (``success_rate``, ``p99_ms``) draw success rate and p99 per
namespace against the fixed thresholds.

The worker draws in an interpreter of its own (:func:`gate_chart`, :class:`ChartDrawer`:
``python -m workers.slack.charts``, one per worker process, kept between charts):
matplotlib and numpy are ~60 MB of every process that imports them, and a worker process
that had drawn one chart kept them while it judged the next wave's traffic (issue 13).
Nothing here imports matplotlib until a figure is drawn.
"""

from __future__ import annotations

import io
import math
import os
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from workflows.model import Check, Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WIDTH_PX, HEIGHT_PX, DPI = 900, 560, 100
TOP_SUBJECTS = 4  # canary subjects drawn by name per panel; the rest are one mean line
WAVE_LABELS = 16  # wave names written above the top panel, at most
LABEL_CHARS = 28
ERRORS_PREFIX = "errors:destination"
ERRORS_FALLBACK = "errors:source"
LATENCY_PREFIX = "latency:destination>"
_CANARY_SIGNALS = ("errors:", "latency:", "tail:", "tcp:", "restarts:")
#: the axes' place in the figure (fractions): room on the right for a legend of names of
#: LABEL_CHARS at fontsize 7, on the left for the tick labels and the axis' name. Fixed, not
#: ``tight_layout``, which measured every text of every chart again: a quarter of a
#: chart's CPU, and charts were most of a fleet's worker CPU (issue 13).
#: ``test_slack_charts.py`` checks that no text of the widest chart leaves the figure.
LAYOUT = {"left": 0.075, "right": 0.745, "top": 0.9, "bottom": 0.105, "hspace": 0.12}
#: the y tick labels' characters LAYOUT's left margin holds (10 pt digits ~8.9 px each,
#: beside the axis' name); wider ones widen the margin (:func:`_left_margin`)
LEFT_TICK_CHARS = 4
#: the most seconds a chart may take to draw in its own interpreter (2,000 namespaces: ~2 s)
DRAW_TIMEOUT_S = 120.0


def _pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class Series:
    """One line of a panel: seconds since the first bake began → rate (%).

    ``kind``: subject | others | control | expected | tolerated; ``legend``: whether the
    legend names it."""

    label: str
    kind: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    legend: bool = True


@dataclass(frozen=True)
class Panel:
    ylabel: str
    series: tuple[Series, ...]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _clip(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _origin(run: Run) -> float:
    """t0: the first wave's bake start (else the first sample, else the run's creation)."""
    starts = [w.bake_started_at for w in run.waves if w.bake_started_at is not None]
    if starts:
        return min(starts)
    first = next((s.at for w in run.waves for s in w.samples), None)
    return first if first is not None else run.created_at


def _errors_of(checks: Iterable[Check]) -> list[Check]:
    """A look's error checks: the destination reporter's per subject, the source's where the
    subject has no destination one with data."""
    dest: dict[str, Check] = {}
    source: dict[str, Check] = {}
    for c in checks:
        if c.metric.startswith(ERRORS_PREFIX):
            dest[c.namespace] = c
        elif c.metric.startswith(ERRORS_FALLBACK):
            source[c.namespace] = c
    chosen = dict(dest)
    for ns, c in source.items():
        d = chosen.get(ns)
        if d is None or (d.value is None and c.value is not None):
            chosen[ns] = c
    return list(chosen.values())


def _latency_of(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if c.metric.startswith(LATENCY_PREFIX)]


def _panel(ylabel: str, looks: list[tuple[float, list[Check]]], top: int) -> Panel:
    """The series of one panel from each look's checks (x, checks); O(checks)."""
    worst: dict[str, tuple[bool, float]] = {}
    for _, checks in looks:
        for c in checks:
            if c.value is None:
                continue
            ratio = c.value / c.threshold if c.threshold > 0 and c.status != "thin" else 0.0
            regressed = c.status == "regressed"
            before = worst.get(c.namespace)
            worst[c.namespace] = (regressed, ratio) if before is None else (
                before[0] or regressed, max(before[1], ratio))
    named = sorted(worst, key=lambda ns: (not worst[ns][0], -worst[ns][1], ns))[:top]
    lines: dict[str, tuple[list[float], list[float]]] = {ns: ([], []) for ns in named}
    others: tuple[list[float], list[float]] = ([], [])
    sides: dict[str, tuple[list[float], list[float]]] = {
        k: ([], []) for k in ("control", "expected", "tolerated")}
    pick: dict[str, Callable[[Check], float | None]] = {
        "control": lambda c: c.control, "expected": lambda c: c.expected,
        "tolerated": lambda c: None if c.status == "thin" else c.threshold}
    for x, checks in sorted(looks, key=lambda look: look[0]):
        rest: list[float] = []
        for c in checks:
            if c.value is None:
                continue
            if c.namespace in lines:
                lines[c.namespace][0].append(x)
                lines[c.namespace][1].append(c.value)
            else:
                rest.append(c.value)
        mean = _mean(rest)
        if mean is not None:
            others[0].append(x)
            others[1].append(mean)
        for kind, get in pick.items():
            mean = _mean([v for v in map(get, checks) if v is not None])
            if mean is not None:
                sides[kind][0].append(x)
                sides[kind][1].append(mean)
    series = [Series(_clip(ns), "subject", tuple(xs), tuple(ys))
              for ns, (xs, ys) in lines.items() if xs]
    n_others = len(worst) - len(named)
    if n_others and others[0]:
        series.append(Series(f"others ({n_others}, mean)", "others", tuple(others[0]),
                             tuple(others[1])))
    labels = {"control": "control (not migrated)", "expected": "expected (mean)",
              "tolerated": "tolerated (mean)"}
    for kind, (xs, ys) in sides.items():
        if xs:
            series.append(Series(labels[kind], kind, tuple(xs), tuple(ys),
                                 legend=kind != "tolerated"))
    return Panel(ylabel, tuple(series))


def canary_panels(run: Run, top: int = TOP_SUBJECTS) -> tuple[Panel, Panel] | None:
    """The canary gate's two panels of ``run``: (5xx/gRPC errors, slow requests), rates in
    percent of requests, x in seconds since the first bake began; None when no look of
    the run has a canary gate check (a run of the former gate).

    Per panel: the ``top`` canary subjects with the highest value/threshold (those that
    regressed first), one line of the others' mean, the control's mean rate, the mean
    expected and tolerated rates — at most ``top + 4`` series, ``top + 3`` in the legend,
    however many subjects. Linear in the number of checks.
    """
    t0 = _origin(run)
    errors: list[tuple[float, list[Check]]] = []
    latency: list[tuple[float, list[Check]]] = []
    canary = False
    edges: set[str] = set()
    for w in run.waves:
        for sample in w.samples:
            x = sample.at - t0
            canary = canary or any(c.metric.startswith(_CANARY_SIGNALS)
                                   for c in sample.checks)
            errors.append((x, _errors_of(sample.checks)))
            slow = _latency_of(sample.checks)
            edges.update(c.metric[len(LATENCY_PREFIX):].removesuffix("ms") for c in slow)
            latency.append((x, slow))
    if not canary:
        return None
    slow_label = (f"slow requests > {next(iter(edges))} ms (%)" if len(edges) == 1
                  else "slow requests (%)")
    return (_panel("5xx/gRPC errors (%)", errors, top), _panel(slow_label, latency, top))


_STYLES: dict[str, dict[str, object]] = {
    "subject": {"marker": "o", "markersize": 3, "linewidth": 1.2},
    "others": {"color": "tab:purple", "linewidth": 1.0, "alpha": 0.6},
    "control": {"color": "black", "linestyle": "--", "linewidth": 2.4},
    "expected": {"color": "grey", "linestyle": ":", "linewidth": 1.6},
    "tolerated": {"color": "red", "linestyle": "--", "linewidth": 0.8},
}


def _draw_panel(ax: Axes, panel: Panel) -> None:
    for s in panel.series:
        label = s.label if s.legend else "_" + s.label
        ax.plot(s.xs, s.ys, label=label, **_STYLES[s.kind])  # type: ignore[arg-type]
        if s.kind == "tolerated":  # named on the line, not in the legend
            ax.annotate("tolerated", (s.xs[-1], s.ys[-1]), fontsize=7, color="red",
                        xytext=(2, 2), textcoords="offset points")
    if not panel.series:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
                color="grey")
    ax.set_ylabel(panel.ylabel)


def _former_panels(run: Run, top: Axes, bottom: Axes, t0: float) -> None:
    """The former gate's picture: success rate and p99 per namespace, fixed thresholds."""
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for w in run.waves:
        for sample in w.samples:
            for c in sample.checks:
                if c.metric in ("success_rate", "p99_ms") and c.value is not None:
                    series.setdefault((c.metric, c.namespace), []).append(
                        (sample.at - t0, c.value))
    for (metric, ns), points in sorted(series.items()):
        ax = top if metric == "success_rate" else bottom
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=_clip(ns))
    top.axhline(run.thresholds.min_success_rate, color="red", linestyle="--", linewidth=0.8)
    bottom.axhline(run.thresholds.max_p99_ms, color="red", linestyle="--", linewidth=0.8)
    top.set_ylabel("success rate (%)")
    bottom.set_ylabel("p99 latency (ms)")


def _wave_marks(run: Run, top: Axes, bottom: Axes, t0: float) -> None:
    """Each wave's bake start: one line collection per panel, at most WAVE_LABELS names."""
    starts = [(w.index, w.bake_started_at - t0) for w in run.waves
              if w.bake_started_at is not None]
    if not starts:
        return
    xs = [x for _, x in starts]
    for ax in (top, bottom):
        ax.vlines(xs, 0, 1, transform=ax.get_xaxis_transform(), colors="grey",
                  linewidth=0.8, alpha=0.6)
    step = max(1, math.ceil(len(starts) / WAVE_LABELS))
    for index, x in starts[::step]:
        top.annotate(f"wave {index}", (x, 1.0), xycoords=("data", "axes fraction"),
                     fontsize=7, va="bottom")


def gate_figure(run: Run) -> Figure:
    """The figure of :func:`gate_chart` (the caller closes it with ``plt.close``)."""
    t0 = _origin(run)
    fig: Figure
    fig, (top, bottom) = _pyplot().subplots(2, 1, figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI),
                                            dpi=DPI, sharex=True)
    one = run.waves[0] if len(run.waves) == 1 else None
    fig.suptitle(f"{run.cluster}: {run.stable_revision} → {run.canary_revision}"
                 f"{f', wave {one.index}' if one else ''} (run {run.id})", fontsize=10)
    panels = canary_panels(run)
    if panels is None:
        _former_panels(run, top, bottom, t0)
    else:
        _draw_panel(top, panels[0])
        _draw_panel(bottom, panels[1])
    _wave_marks(run, top, bottom, t0)
    bottom.set_xlabel(f"seconds since wave {one.index}'s bake began" if one else
                      "seconds since the first bake began")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.subplots_adjust(**{**LAYOUT, "left": _left_margin(top, bottom)})
    return fig


def _left_margin(*axes: Axes) -> float:
    """LAYOUT's left margin, widened by ~8.9 px (a 10 pt digit) for each character of the
    widest y tick label past LEFT_TICK_CHARS (``0.0025``, ``10000``): the labels as the
    axis' formatter writes them, without drawing anything."""
    chars = max((len(label) for ax in axes for label in
                 ax.yaxis.get_major_formatter().format_ticks(list(ax.get_yticks()))), default=0)
    return LAYOUT["left"] + max(0, chars - LEFT_TICK_CHARS) * 8.9 / WIDTH_PX


def gate_png(run: Run) -> bytes:
    """:func:`gate_chart`'s PNG, drawn in this process (matplotlib imported here)."""
    fig = gate_figure(run)
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
    finally:
        _pyplot().close(fig)
    return buf.getvalue()


def gate_chart(run: Run) -> bytes:
    """PNG of every gate sample of ``run``'s waves: 900 × 560 pixels (a wave's chart:
    the run with that wave only; the title then names it).

    Canary gate runs: top, 5xx/gRPC errors (% of requests); bottom, requests slower than
    the latency edge (%); the worst four canary subjects, the others' mean, the control
    (not migrated; thick black dashes), the expected rate (grey dots) and the tolerated
    rate (thin red dashes). Former gate runs: success rate (%) and p99 latency (ms) per
    namespace with the fixed thresholds. x: seconds since the first of its waves' bakes
    began.

    Drawn by :func:`gate_png` in this process' chart interpreter (:class:`ChartDrawer`:
    ``python -m workers.slack.charts``, started on first use and kept), so that this
    process never imports matplotlib (the module docstring).

    Raises:
        RuntimeError: the drawing failed or took more than :data:`DRAW_TIMEOUT_S`, with
            the last lines of what it wrote to stderr.
    """
    return _DRAWER.draw(run)


_HEADER = struct.Struct(">BQ")  # status (0 a PNG, 1 an error's text), length in bytes
_LENGTH = struct.Struct(">Q")


class ChartDrawer:
    """One long-lived chart interpreter per worker process.

    A new interpreter for each chart paid matplotlib's import (~1 s of CPU) every time; this
    one is started on the first chart and kept, fed one run at a time over its stdin (an
    8-byte length, then the run's JSON) and answering on its stdout (a status byte, an
    8-byte length, then the PNG or the error's text). It ends when its stdin closes, so a
    worker process that dies (even by SIGKILL) takes it along; one that stops answering
    within :data:`DRAW_TIMEOUT_S`, dies or garbles an answer is killed and the next chart
    starts another. A forked worker process never uses its parent's (checked by pid).
    """

    def __init__(self, timeout_s: float = DRAW_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _child(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._pid == os.getpid() and self._proc.poll() is None:
            return self._proc
        root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root if not path else root + os.pathsep + path}
        self._proc = subprocess.Popen([sys.executable, "-m", "workers.slack.charts"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=env)
        self._pid = os.getpid()
        return self._proc

    def close(self) -> None:
        """Stop the chart interpreter (the next chart starts another)."""
        proc, self._proc = self._proc, None
        if proc is not None and self._pid == os.getpid():
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()

    def draw(self, run: Run) -> bytes:
        """The PNG of :func:`gate_png` for ``run``, drawn by the chart interpreter.

        Raises:
            RuntimeError: as :func:`gate_chart` says.
        """
        payload = run.model_dump_json().encode()
        with self._lock:
            proc = self._child()
            deadline = time.monotonic() + self.timeout_s
            try:
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(_LENGTH.pack(len(payload)) + payload)
                proc.stdin.flush()
                status, length = _HEADER.unpack(
                    _read(proc.stdout.fileno(), _HEADER.size, deadline))
                body = _read(proc.stdout.fileno(), length, deadline)
            except TimeoutError as exc:
                self.close()
                raise RuntimeError(f"the gate chart of run {run.id} took more than "
                                   f"{self.timeout_s:g} s to draw") from exc
            except (OSError, EOFError, struct.error) as exc:
                try:  # an interpreter that ended says why on stderr
                    code: int | None = proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    code = None
                stderr = (proc.stderr.read() or b"") if proc.stderr and code is not None \
                    else b""
                self.close()
                tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"the gate chart of run {run.id} could not be drawn "
                                   f"(exit {code}): {' / '.join(tail) or exc}") from exc
            except BaseException:
                # interrupted mid-exchange (Celery's soft time limit, a signal): the answer
                # still to come would be read as the next run's chart
                self.close()
                raise
        if status != 0 or not body.startswith(b"\x89PNG"):
            raise RuntimeError(f"the gate chart of run {run.id} could not be drawn: "
                               f"{body.decode(errors='replace')[-300:] or 'no PNG'}")
        return body


def _read(fd: int, n: int, deadline: float) -> bytes:
    """Exactly ``n`` bytes from ``fd`` before ``deadline`` (monotonic s).

    Raises:
        TimeoutError: not all by then. EOFError: the other end closed first.
    """
    out = bytearray()
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError
        chunk = os.read(fd, min(n - len(out), 1 << 20))
        if not chunk:
            raise EOFError("the chart interpreter ended")
        out += chunk
    return bytes(out)


_DRAWER = ChartDrawer()


def close_chart_interpreter() -> None:
    """Stop this process' chart interpreter, if it started one, and reap it: a pool
    process about to end calls it, or the interpreter (ending at its stdin's close) would
    be left to whoever adopts orphans. (A pool process killed outright cannot call it; its
    interpreter ends at the closed stdin and is reaped by the image's init, tini: the
    worker's main process would wait for its pool processes only.)"""
    _DRAWER.close()


def main() -> None:
    """The chart interpreter of :class:`ChartDrawer`: draw each run read from stdin until
    it closes; a run that cannot be drawn is answered with the error, and the next one is
    drawn still."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return  # the worker process went away
        (length,) = _LENGTH.unpack(head)
        data = stdin.read(length)
        try:
            status, body = 0, gate_png(Run.model_validate_json(data))
        except Exception as exc:  # noqa: BLE001 - told to the worker, which logs it
            status, body = 1, f"{type(exc).__name__}: {exc}".encode()
        stdout.write(_HEADER.pack(status, len(body)) + body)
        stdout.flush()


if __name__ == "__main__":
    main()
