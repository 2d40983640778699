"""The gate chart of a canary gate run: the canary against the control, a bounded legend,
cost linear in the checks; runs of the former gate still draw."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image
import matplotlib.pyplot as plt
import matplotlib.text
import pytest
from matplotlib.figure import Figure

from workers.slack import charts
from workers.slack.charts import (
    HEIGHT_PX,
    TOP_SUBJECTS,
    WIDTH_PX,
    canary_panels,
    gate_chart,
    gate_figure,
)
from workflows.model import Check, GateSample, Phase, Run, Verdict, Wave

INTERVAL_S = 60.0


def canary_checks(ns: str, k: int, *, bad: bool = False, source_only: bool = False
                  ) -> list[Check]:
    """The checks of one subject at look ``k``, as ``SignalCheck.to_check`` records them:
    errors 0.02 %, 2 % slower than 250 ms; ``bad``: 1 % errors, regressed."""
    errors = 1.0 if bad else 0.02 + 0.001 * (int(ns[3:]) % 7)
    out = [
        Check(namespace=ns, metric="errors:source", value=0.5 if source_only else 0.03,
              threshold=0.08, op="<=", ok=True, expected=0.03, control=0.04, unit="%",
              status="ok", confidence=0.999),
        Check(namespace=ns, metric="latency:destination>250ms", value=2.0 + 0.01 * k,
              threshold=2.2, op="<=", ok=True, expected=2.0, control=1.5, unit="%",
              status="ok" if k > 3 else "undecided", confidence=0.99),
        Check(namespace=ns, metric="tail:destination>500ms", value=0.2, threshold=0.22,
              op="<=", ok=True, expected=0.2, unit="%", status="ok", confidence=0.99),
        Check(namespace=ns, metric="restarts:pods", value=0.0, threshold=1.0, op="<=",
              ok=True, expected=0.0, control=0.0, unit="/h", status="undecided",
              confidence=0.3),
    ]
    if not source_only:
        out.insert(0, Check(
            namespace=ns, metric="errors:destination", value=errors, threshold=0.07,
            op="<=", ok=not bad, expected=0.02, control=0.03 + 0.001 * k, unit="%",
            status="regressed" if bad else "ok", confidence=0.9999))
    return out


def canary_run(subjects: int, waves: int = 1, looks: int = 10, bad: str = "") -> Run:
    names = [f"ns-{i:04d}" for i in range(subjects)]
    size = -(-subjects // waves)
    out: list[Wave] = []
    for w in range(waves):
        members = names[w * size:(w + 1) * size]
        start = 1000.0 + w * (looks + 2) * INTERVAL_S
        samples = [GateSample(at=start + k * INTERVAL_S, verdict=Verdict.INCONCLUSIVE,
                              checks=[c for ns in members for c in canary_checks(
                                  ns, k, bad=ns == bad, source_only=ns == names[-1])])
                   for k in range(1, looks + 1)]
        out.append(Wave(index=w, namespaces=members, bake_started_at=start, samples=samples,
                        verdict=Verdict.PASS))
    return Run(id="r-chart1", cluster="prod-eu", requester="U1", channel="C1",
               canary_revision="asm-1-26", stable_revision="asm-1-25", created_at=0,
               updated_at=0, waves=out, wave_index=waves - 1, phase=Phase.MIGRATING)


def test_fifty_subjects_draw_the_worst_four_the_others_and_the_control() -> None:
    run = canary_run(50, bad="ns-0017")
    panels = canary_panels(run)
    assert panels is not None
    errors, slow = panels
    assert errors.ylabel == "5xx/gRPC errors (%)"
    assert slow.ylabel == "slow requests > 250 ms (%)"
    for panel in panels:
        legend = [s.label for s in panel.series if s.legend]
        assert len(legend) <= 7, legend
        assert len(panel.series) <= TOP_SUBJECTS + 4
    by_kind = {s.kind: s for s in errors.series}
    subjects = [s.label for s in errors.series if s.kind == "subject"]
    assert len(subjects) == TOP_SUBJECTS and subjects[0] == "ns-0017"  # regressed first
    assert by_kind["others"].label == "others (46, mean)"
    assert by_kind["others"].xs == tuple(k * INTERVAL_S for k in range(1, 11))
    # the control's rate is the mean of the look's control fields (0.04 on errors:source
    # for the subject without a destination reporter, 0.03 + 0.001 k on the others)
    assert by_kind["control"].label == "control (not migrated)"
    assert by_kind["control"].ys[0] == pytest.approx((49 * 0.031 + 0.04) / 50)
    assert by_kind["expected"].ys[0] == pytest.approx((49 * 0.02 + 0.03) / 50)
    assert by_kind["tolerated"].ys[0] == pytest.approx((49 * 0.07 + 0.08) / 50)
    assert not by_kind["tolerated"].legend  # named on the line instead
    # the subject without a destination reporter is drawn from its source reporter
    worst_by_source = canary_panels(canary_run(50, bad="ns-0017"), top=50)
    assert worst_by_source is not None
    last = next(s for s in worst_by_source[0].series if s.label == "ns-0049")
    assert set(last.ys) == {0.5}


def test_the_canary_chart_has_a_bounded_legend_and_is_a_png(tmp_path) -> None:
    run = canary_run(50, bad="ns-0017")
    fig = gate_figure(run)
    try:
        for ax in fig.axes:
            legend = ax.get_legend()
            assert legend is not None
            labels = [t.get_text() for t in legend.get_texts()]
            assert 1 <= len(labels) <= 7, labels
            assert "control (not migrated)" in labels
            assert len(ax.get_lines()) <= TOP_SUBJECTS + 4
    finally:
        plt.close(fig)
    assert_readable_png(gate_chart(run), tmp_path)


def test_a_waves_chart_draws_its_looks_from_its_own_bake_and_says_which_wave() -> None:
    """The notifier gives a wave's chart the run with that wave only (its cost follows
    the wave); the chart counts from that wave's bake and names it."""
    run = canary_run(9, waves=3)
    wave = run.waves[1]
    fig = gate_figure(run.evolve(waves=[wave]))
    try:
        suptitle = fig.get_suptitle()
        assert suptitle.endswith(", wave 1 (run r-chart1)"), suptitle
        assert fig.axes[1].get_xlabel() == "seconds since wave 1's bake began"
        xs = [x for ax in fig.axes for line in ax.get_lines() for x in line.get_xdata()]
        # wave 1's ten looks, one interval apart from its bake's start; no other wave's
        assert sorted(set(xs)) == [k * INTERVAL_S for k in range(1, 11)]
    finally:
        plt.close(fig)
    whole = gate_figure(run)  # the summary: every wave's looks, from the first bake
    try:
        assert ", wave" not in whole.get_suptitle()
        assert whole.axes[1].get_xlabel() == "seconds since the first bake began"
        xs = {x for ax in whole.axes for line in ax.get_lines() for x in line.get_xdata()}
        # wave 2's bake starts 2 × 12 intervals after wave 0's; its last look 10 later
        assert max(xs) == (2 * 12 + 10) * INTERVAL_S
    finally:
        plt.close(whole)


def assert_readable_png(png: bytes, tmp_path: Path) -> None:
    """A PNG of the chart's size that is not a blank canvas."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    path = tmp_path / "chart.png"
    path.write_bytes(png)
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (HEIGHT_PX, WIDTH_PX)
    assert image.std() > 0.05  # not a blank canvas


def _inside_the_figure(fig: Figure) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    # what is drawn (texts, legends, ticks in view), in inches, inside the figure
    drawn, page = fig.get_tightbbox(renderer), fig.bbox_inches
    assert (page.x0 <= drawn.x0 and drawn.x1 <= page.x1 and page.y0 <= drawn.y0
            and drawn.y1 <= page.y1), (drawn, page)


def _renamed(run: Run, names: dict[str, str]) -> Run:
    return run.evolve(waves=[w.evolve(
        namespaces=[names[n] for n in w.namespaces],
        samples=[s.evolve(checks=[c.model_copy(update={"namespace": names[c.namespace]})
                                  for c in s.checks]) for s in w.samples]) for w in run.waves])


@pytest.mark.parametrize("pad", ["x" * 40, "-commerce-management-webhooks-prod-eu"])
def test_no_text_of_the_widest_chart_leaves_the_figure(pad: str) -> None:
    """The fixed layout (LAYOUT) holds the longest names a legend shows (cut to
    LABEL_CHARS) and the axis names."""
    run = canary_run(8, bad="ns-0003")
    run = _renamed(run, {ns: f"{ns}{pad}" for ns in run.waves[0].namespaces})
    fig = gate_figure(run)
    try:
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible()]
        assert any(len(t.get_text()) == charts.LABEL_CHARS for t in texts)  # a cut name
        _inside_the_figure(fig)
    finally:
        plt.close(fig)


def test_wide_tick_labels_widen_the_left_margin() -> None:
    """Errors of a healthy service (ticks 0.0025 apart) and a former gate's p99 of 30 s:
    the axis name stays inside the figure."""
    run = canary_run(4)
    def scaled(c: Check) -> Check:
        return c.model_copy(update={f: getattr(c, f) / 100 for f in
                                    ("value", "expected", "threshold", "control")
                                    if getattr(c, f) is not None})

    tiny = run.evolve(waves=[w.evolve(samples=[s.evolve(checks=[scaled(c) for c in s.checks])
                                               for s in w.samples]) for w in run.waves])
    fig = gate_figure(tiny)
    try:
        labels = fig.axes[0].yaxis.get_major_formatter().format_ticks(fig.axes[0].get_yticks())
        assert max(len(x) for x in labels) > charts.LEFT_TICK_CHARS  # wide, as meant
        assert fig.subplotpars.left > charts.LAYOUT["left"]
        _inside_the_figure(fig)
    finally:
        plt.close(fig)


def test_two_thousand_namespaces_draw_a_bounded_number_of_artists_quickly() -> None:
    run = canary_run(2000, waves=40, looks=10, bad="ns-1234")
    started = time.perf_counter()
    fig = gate_figure(run)
    try:
        for ax in fig.axes:
            assert len(ax.get_lines()) <= TOP_SUBJECTS + 4
            assert len(ax.get_legend().get_texts()) <= 7
        # the wave boundaries are one collection per panel, at most 16 wave names
        assert len(fig.axes[0].texts) <= 16 + 1
    finally:
        plt.close(fig)
    png = gate_chart(run)
    elapsed = time.perf_counter() - started
    assert png[:4] == b"\x89PNG"
    assert elapsed < 20, f"{elapsed:.1f} s for 2,000 namespaces"


def test_a_run_of_the_former_gate_draws_success_rate_and_p99() -> None:
    samples = [GateSample(at=1000.0 + 60 * k, verdict=Verdict.PASS, checks=[
        Check(namespace="shop", metric="success_rate", value=99.9, threshold=99.5, op=">=",
              ok=True),
        Check(namespace="shop", metric="p99_ms", value=40.0 + k, threshold=60, op="<=",
              ok=True)]) for k in range(1, 4)]
    run = canary_run(1).evolve(waves=[Wave(index=0, namespaces=["shop"],
                                           bake_started_at=1000.0, samples=samples)])
    assert canary_panels(run) is None
    fig = gate_figure(run)
    try:
        top, bottom = fig.axes[:2]
        assert top.get_ylabel() == "success rate (%)"
        assert bottom.get_ylabel() == "p99 latency (ms)"
        (line,) = [ln for ln in bottom.get_lines() if ln.get_label() == "shop"]
        assert list(line.get_ydata()) == [41.0, 42.0, 43.0]
    finally:
        plt.close(fig)


def test_the_worker_draws_in_an_interpreter_of_its_own(tmp_path: Path) -> None:
    """matplotlib (and numpy) stay out of the worker's processes: imported by no module the
    worker loads, and a chart drawn in a child interpreter (issue 13)."""
    run = tmp_path / "run.json"
    run.write_text(canary_run(20, bad="ns-0003").model_dump_json())
    code = ("import sys, workers.tasks.app\n"
            "from pathlib import Path\n"
            "from workers.slack.charts import gate_chart\n"
            "from workflows.model import Run\n"
            f"png = gate_chart(Run.model_validate_json(Path({str(run)!r}).read_text()))\n"
            "assert png[:4] == b'\\x89PNG', png[:20]\n"
            "print(sorted(m for m in ('matplotlib', 'numpy') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_chart_that_cannot_be_drawn_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    drawer = charts.ChartDrawer()
    monkeypatch.setattr(charts.sys, "executable", "/bin/false")
    with pytest.raises(RuntimeError, match="could not be drawn \\(exit 1\\)"):
        drawer.draw(canary_run(3))


def test_the_chart_interpreter_answers_an_error_and_draws_the_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    good = canary_run(3).model_dump_json().encode()
    frames = b"".join(len(d).to_bytes(8, "big") + d for d in (b"{not json", good))
    out = io.BytesIO()
    monkeypatch.setattr(charts.sys, "stdin", SimpleNamespace(buffer=io.BytesIO(frames)))
    monkeypatch.setattr(charts.sys, "stdout", SimpleNamespace(buffer=out))
    charts.main()  # returns when its stdin ends
    answer = out.getvalue()
    status, length = answer[0], int.from_bytes(answer[1:9], "big")
    assert status == 1 and b"ValidationError" in answer[9:9 + length]
    rest = answer[9 + length:]
    assert rest[0] == 0 and rest[9:13] == b"\x89PNG"
    assert int.from_bytes(rest[1:9], "big") == len(rest) - 9


def test_a_draw_interrupted_mid_exchange_stops_its_interpreter(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery's soft time limit raised while the answer is awaited: that answer must not
    be read as the next run's chart."""
    from billiard.exceptions import SoftTimeLimitExceeded

    drawer = charts.ChartDrawer()
    try:
        drawer.draw(canary_run(3))
        first = drawer._proc
        assert first is not None

        def interrupted(fd: int, n: int, deadline: float) -> bytes:
            raise SoftTimeLimitExceeded()

        monkeypatch.setattr(charts, "_read", interrupted)
        with pytest.raises(SoftTimeLimitExceeded):
            drawer.draw(canary_run(4))
        assert drawer._proc is None and first.poll() is not None  # stopped, reaped
        monkeypatch.undo()
        assert drawer.draw(canary_run(5))[:4] == b"\x89PNG" and drawer._proc is not first
    finally:
        drawer.close()


def test_the_chart_interpreter_is_kept_and_replaced_when_it_dies_or_hangs() -> None:
    drawer = charts.ChartDrawer()
    try:
        first = drawer.draw(canary_run(3))
        proc = drawer._proc
        assert first[:4] == b"\x89PNG" and proc is not None
        assert drawer.draw(canary_run(5))[:4] == b"\x89PNG"
        assert drawer._proc is proc  # kept: matplotlib imported once
        # killed between charts: the next chart starts another
        proc.kill()
        proc.wait()
        assert drawer.draw(canary_run(3))[:4] == b"\x89PNG" and drawer._proc is not proc
        # hung: killed after the timeout, and replaced
        hung = drawer._proc
        assert hung is not None
        hung.send_signal(signal.SIGSTOP)
        drawer.timeout_s = 1.0
        with pytest.raises(RuntimeError, match="took more than 1 s"):
            drawer.draw(canary_run(3))
        assert hung.poll() is not None
        drawer.timeout_s = charts.DRAW_TIMEOUT_S
        assert drawer.draw(canary_run(3))[:4] == b"\x89PNG"
    finally:
        drawer.close()
