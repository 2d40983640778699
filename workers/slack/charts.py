"""Charts of a run's metric gate: success rate and p99 latency per namespace over time.

Rendered with matplotlib (Agg, no display) to PNG bytes for Slack's ``files_upload_v2``
when a wave's bake ends. Wave boundaries (each wave's bake start) are marked, and the
thresholds are drawn, so the picture says why a gate passed or failed.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from workflows.model import Run  # noqa: E402

WIDTH_PX, HEIGHT_PX, DPI = 900, 560, 100


def gate_chart(run: Run) -> bytes:
    """PNG of every gate sample of ``run`` so far: 900 × 560 pixels.

    Top: success rate (%) per namespace, with the absolute floor. Bottom: p99 latency (ms)
    per namespace, with the ceiling. x: seconds since the first wave's bake began.
    """
    samples = [(w, s) for w in run.waves for s in w.samples]
    starts = [w.bake_started_at for w in run.waves if w.bake_started_at is not None]
    t0 = min(starts) if starts else (samples[0][1].at if samples else run.created_at)
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _, sample in samples:
        for c in sample.checks:
            if c.metric in ("success_rate", "p99_ms") and c.value is not None:
                series.setdefault((c.metric, c.namespace), []).append((sample.at - t0, c.value))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI),
                                      dpi=DPI, sharex=True)
    fig.suptitle(f"{run.cluster}: {run.stable_revision} → {run.canary_revision} (run {run.id})",
                 fontsize=10)
    for (metric, ns), points in sorted(series.items()):
        ax = top if metric == "success_rate" else bottom
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=ns)
    top.axhline(run.thresholds.min_success_rate, color="red", linestyle="--", linewidth=0.8)
    bottom.axhline(run.thresholds.max_p99_ms, color="red", linestyle="--", linewidth=0.8)
    for w in run.waves:
        if w.bake_started_at is not None:
            for ax in (top, bottom):
                ax.axvline(w.bake_started_at - t0, color="grey", linewidth=0.8, alpha=0.6)
            top.annotate(f"wave {w.index}", (w.bake_started_at - t0, 1.0),
                         xycoords=("data", "axes fraction"), fontsize=7, va="bottom")
    top.set_ylabel("success rate (%)")
    bottom.set_ylabel("p99 latency (ms)")
    bottom.set_xlabel("seconds since the first bake began")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()
